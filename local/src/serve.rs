//! One connection, top to bottom. The first byte says what the app speaks; its handshake
//! yields the target and a way to answer the app (an [`Answer`]); then, the same for
//! every kind, [`tunnel`]: dial → reply → relay → report (`tunnel.rs`).
//!
//! [`Answer`]: crate::tunnel::Answer
//!
//! - SOCKS5 CONNECT: handshake here, answered with a SOCKS5 reply (`socks5.rs`);
//! - SOCKS5 UDP ASSOCIATE: a UDP port for the app instead of a tunnel (`udp.rs`);
//! - HTTP: hyper reads the requests (`http.rs`); a CONNECT becomes a [`tunnel`] answered
//!   with a status line (`connect.rs`); absolute-form requests and reverse routes are
//!   exchanges with an origin through the tunnel (`forward.rs`, `reverse.rs`, `origin.rs`),
//!   whose upgraded WebSockets close through the same report as every tunnel.

use burrow_common::timeout::within;
use std::sync::Arc;

use tokio::io::BufReader;
use tokio::net::TcpStream;
use tracing::{debug, Span};

use crate::inbound::detect::{detect, Inbound};
use crate::inbound::socks5::{Command, HANDSHAKE_BUF};
use burrow_common::timeout::with_timeout;

use crate::inbound::{http, socks5, udp};
use crate::settings::Settings;
use crate::tools::metrics::Inbound as Kind;
use crate::tunnel::tunnel;

/// Serves one accepted connection until it ends.
pub async fn serve(settings: Arc<Settings>, conn: TcpStream) {
    let first = with_timeout("the first byte", settings.handshake_timeout, detect(&conn));
    let kind = match first.await {
        Ok(kind) => kind,
        Err(e) => return debug!("before the first byte: {e}"),
    };
    Span::current().record("inbound", kind.name());
    match kind {
        Inbound::Socks5 => serve_socks5(settings, conn).await,
        // Boxed: a kept-alive HTTP connection's state (hyper's, and the relays it started)
        // is not laid out in every SOCKS5 tunnel's task too.
        Inbound::Http => Box::pin(http::serve(settings, conn)).await,
    }
}

/// SOCKS5: handshake, then a tunnel (CONNECT) or a UDP port (UDP ASSOCIATE).
async fn serve_socks5(settings: Arc<Settings>, conn: TcpStream) {
    let s = &*settings;
    let (peer, local) = match (conn.peer_addr(), conn.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return debug!("SOCKS5: the connection is gone"),
    };
    // Buffered while the handshake lasts: fast-socks5 reads each field on its own, and
    // each read would be a system call.
    let conn = BufReader::with_capacity(HANDSHAKE_BUF, conn);
    let greeting = Box::pin(socks5::handshake(conn, s.proxy_auth.as_ref()));
    let (proto, command, target) = match within(s.handshake_timeout, greeting).await {
        Some(Ok(x)) => x,
        Some(Err(e)) => return debug!("SOCKS5 handshake: {e}"),
        None => return debug!("SOCKS5 handshake timed out"),
    };
    match command {
        Command::Connect => {
            s.metrics.request(Kind::Socks5);
            let answer = socks5::Answer::new(proto, s.handshake_timeout);
            tunnel("tunnel", &target, answer, s).await;
        }
        Command::UdpAssociate => {
            s.metrics.request(Kind::Udp);
            let associate = udp::associate(settings.clone(), proto, peer, local, target);
            Box::pin(associate).await;
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every tunnel's task holds this future for its whole life: the dial, the handshakes
    /// and their buffers are boxed and gone once the relay runs. A regression here is
    /// memory per idle tunnel.
    #[tokio::test]
    async fn a_tunnel_task_stays_small() {
        use clap::Parser;
        let cli = crate::config::Cli::try_parse_from(["x", "-s", "h:1", "-k", "p"]).expect("cli");
        let s = std::sync::Arc::new(crate::config::load(&cli).expect("load").settings);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let c = tokio::net::TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let f = super::serve(s, c);
        let size = std::mem::size_of_val(&f);
        assert!(size <= 1024, "serve() future is {size} bytes");
    }
}
