//! One connection, top to bottom: detect the protocol by its first byte, then hand the
//! connection to SOCKS5 or HTTP, each of which runs handshake → tunnel → reply → relay.

use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{debug, Span};

use crate::detect::{detect, Inbound};
use crate::{http, socks5, Settings};

/// Serves one accepted connection until it ends.
pub async fn serve(settings: Arc<Settings>, conn: TcpStream) {
    let kind = match tokio::time::timeout(settings.handshake_timeout, detect(&conn)).await {
        Ok(Ok(kind)) => kind,
        Ok(Err(e)) => return debug!("before the first byte: {e}"),
        Err(_) => return debug!("no first byte within the handshake timeout"),
    };
    Span::current().record("inbound", kind.name());
    match kind {
        Inbound::Socks5 => socks5::serve(settings, conn).await,
        // Boxed: a kept-alive HTTP connection's state (hyper's, and the relays it started)
        // is not laid out in every SOCKS5 tunnel's task too.
        Inbound::Http => Box::pin(http::serve(settings, conn)).await,
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
