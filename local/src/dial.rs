//! The hop to the server: connect, send the request header, learn whether the server
//! reached the target.
//!
//! The Shadowsocks protocol carries no dial result. burrow-server sends its salt as soon
//! as the target is connected and closes without a byte when it is not, so with
//! `confirm_connect` burrow-local waits for that first byte before telling the app the
//! connection is up: the app gets a real failure instead of an empty stream. Other
//! servers send nothing until the target speaks, so for them `confirm_connect = false`.

use std::io;
use std::time::Duration;

use burrow_common::outbound::{self, ServerIo};
use burrow_common::timeout::with_timeout;
use burrow_common::{EncryptedStream, TargetAddr};
use bytes::BytesMut;
use fast_socks5::ReplyError;
use tokio::io::AsyncWriteExt;

use crate::Settings;

/// Extra time the server gets, on top of its own connect timeout, to answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// Why no tunnel could be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// burrow-server itself could not be reached.
    #[error("cannot reach the server {server}: {source}")]
    Server {
        /// host:port of the server.
        server: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The server closed without a byte: its egress policy refused the target, or the
    /// target did not answer it.
    #[error(
        "the server could not open {0} (refused by its egress policy, or unreachable from it)"
    )]
    Target(TargetAddr),
    /// The server did not answer in time.
    #[error(
        "the server did not answer within {0:?} (a wrong password or method gets silence; \
             a server other than burrow-server needs confirm_connect = false)"
    )]
    NoAnswer(Duration),
}

impl TunnelError {
    /// The HTTP status for this failure: 504 for timeouts, else 502.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            TunnelError::Server { source, .. } if source.kind() == io::ErrorKind::TimedOut => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            TunnelError::NoAnswer(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The SOCKS5 reply for this failure.
    pub fn socks_reply(&self) -> ReplyError {
        match self {
            TunnelError::Server { source, .. } => match source.kind() {
                io::ErrorKind::ConnectionRefused => ReplyError::ConnectionRefused,
                io::ErrorKind::PermissionDenied => ReplyError::ConnectionNotAllowed,
                io::ErrorKind::TimedOut => ReplyError::TtlExpired,
                io::ErrorKind::NetworkUnreachable => ReplyError::NetworkUnreachable,
                io::ErrorKind::HostUnreachable | io::ErrorKind::NotFound => {
                    ReplyError::HostUnreachable
                }
                _ => ReplyError::GeneralFailure,
            },
            TunnelError::Target(_) => ReplyError::HostUnreachable,
            TunnelError::NoAnswer(_) => ReplyError::TtlExpired,
        }
    }
}

/// Opens an encrypted tunnel to `target` through the server and sends the request. With
/// `confirm_connect` the server has also answered, so the target is connected.
pub async fn open_tunnel(target: &TargetAddr, s: &Settings) -> Result<Tunnel, TunnelError> {
    // Boxed: the dial's state (proxy, TLS, WebSocket handshakes) lives on the heap only
    // while dialling, not in every tunnel's task for its whole life.
    Box::pin(open_tunnel_inner(target, s)).await.map(Box::new)
}

/// An open tunnel. Boxed: a stream held inline would be laid out more than once in the
/// state of every task that awaits before and after opening it.
pub type Tunnel = Box<EncryptedStream<ServerIo>>;

async fn open_tunnel_inner(
    target: &TargetAddr,
    s: &Settings,
) -> Result<EncryptedStream<ServerIo>, TunnelError> {
    let server_err = |source| TunnelError::Server {
        server: format!("{}:{}", s.server_host, s.server_port),
        source,
    };
    let conn = outbound::connect(
        &s.outbound,
        &s.server_host,
        s.server_port,
        s.connect_timeout,
        &s.socket,
    )
    .await
    .map_err(server_err)?;
    let mut tunnel = EncryptedStream::new(conn, &s.key);
    if s.confirm_connect {
        tunnel.ask_confirmation();
    }
    if let Some(filter) = &s.response_salts {
        tunnel.check_peer_salt(filter.clone());
    }
    let mut header = BytesMut::with_capacity(target.encoded_len());
    target.encode(&mut header);
    tunnel.buffer(&header);
    with_timeout("sending the request", s.connect_timeout, tunnel.flush())
        .await
        .map_err(server_err)?;
    if !s.confirm_connect {
        return Ok(tunnel);
    }
    let wait = s.connect_timeout + ANSWER_MARGIN;
    match tokio::time::timeout(wait, tunnel.peer_answered()).await {
        Ok(Ok(true)) => Ok(tunnel),
        Ok(Ok(false)) => Err(TunnelError::Target(target.clone())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            Err(TunnelError::Target(target.clone()))
        }
        Ok(Err(e)) => Err(server_err(e)),
        Err(_) => Err(TunnelError::NoAnswer(wait)),
    }
}

/// Logs a failed tunnel. Trouble reaching the server (a proxy refusing, a timeout) is
/// said once as a warning, not once per connection; repeats go to debug.
pub fn report(e: &TunnelError) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    match e {
        TunnelError::Server { .. } => {
            let msg = e.to_string();
            let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
            if *last == msg {
                tracing::debug!("{msg}");
            } else {
                tracing::warn!("{msg}");
                *last = msg;
            }
        }
        _ => tracing::info!("{e}"),
    }
}
