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
        Inbound::Http => http::serve(settings, conn).await,
    }
}
