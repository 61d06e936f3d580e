//! One connection, top to bottom: SOCKS5 handshake → tunnel to the server → reply → relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_common::relay::relay;
use burrow_common::timeout::with_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, Span};

use crate::dial::open_tunnel;
use crate::socks5;
use crate::Settings;

/// Without `confirm_connect`: how long to wait for the app's first bytes so they leave in
/// one packet with the request header.
const FIRST_BYTES_WAIT: Duration = Duration::from_millis(20);

/// Serves one SOCKS5 client until its tunnel ends.
pub async fn serve(settings: Arc<Settings>, conn: TcpStream) {
    let started = std::time::Instant::now();
    let s = &*settings;
    let handshake = socks5::handshake(conn, s.socks_auth.as_ref());
    let (proto, target) = match tokio::time::timeout(s.handshake_timeout, handshake).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return debug!("SOCKS5 handshake: {e}"),
        Err(_) => return debug!("SOCKS5 handshake timed out"),
    };
    Span::current().record("target", tracing::field::display(&target));

    let mut tunnel = match open_tunnel(&target, s).await {
        Ok(t) => t,
        Err(e) => {
            info!("{e}");
            let _ = tokio::time::timeout(s.handshake_timeout, proto.reply_error(&e.socks_reply()))
                .await;
            return;
        }
    };
    let bound = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut client =
        match tokio::time::timeout(s.handshake_timeout, proto.reply_success(bound)).await {
            Ok(Ok(c)) => c,
            _ => return debug!("client left before the SOCKS5 reply"),
        };
    if !s.confirm_connect {
        let mut first = vec![0u8; 16 * 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(FIRST_BYTES_WAIT, client.read(&mut first)).await {
            tunnel.buffer(&first[..n]);
        }
        if let Err(e) = with_timeout("sending the request", s.connect_timeout, tunnel.flush()).await
        {
            return info!("server: {e}");
        }
    }
    let (moved, result) = relay(&mut client, &mut tunnel, s.idle_timeout).await;
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => info!(up = moved.a_to_b, down = moved.b_to_a, secs, "closed"),
        Err(e) => info!(up = moved.a_to_b, down = moved.b_to_a, secs, "closed: {e}"),
    }
}
