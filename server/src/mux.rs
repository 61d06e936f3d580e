//! Connections shared by several tunnels (Mux.Cool): v2ray-plugin's WebSockets, told
//! from a Shadowsocks salt by their first bytes, and burrow-local's bursts, a tunnel to
//! `v1.mux.cool` with Mux.Cool inside. Each session is served as a connection of its own.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use burrow_common::mux;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::handshake::Request;
use crate::tunnel::answered_now;
use crate::Shared;

/// Bytes enough to tell a Mux.Cool frame from a Shadowsocks salt (fewer if the client
/// ends first), and the stream.
pub(crate) async fn peek_head<S: AsyncRead + Unpin>(mut io: S) -> std::io::Result<(BytesMut, S)> {
    use tokio::io::AsyncReadExt;
    let mut head = BytesMut::with_capacity(32);
    while head.len() < MUX_PEEK {
        if io.read_buf(&mut head).await? == 0 {
            break;
        }
    }
    Ok((head, io))
}

/// A session served as a connection of its own (`serve`'s way, handed in).
pub(crate) type Served = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What `mux::looks_like_mux` reads (the first frame's metadata up to a name's length).
const MUX_PEEK: usize = 11;

/// Sessions one Mux.Cool connection may have open at once.
const MUX_SESSIONS: usize = 128;

/// A Mux.Cool connection with no session for this long is closed.
const MUX_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// One Mux.Cool connection (v2ray-plugin's framing): each session is served as a
/// connection of its own — its own handshake, authentication and tunnel — within this
/// connection's task, so that the connection's limit and the shutdown grace hold them.
pub(crate) async fn serve_mux<S>(
    shared: Arc<Shared>,
    io: S,
    session: fn(Arc<Shared>, mux::MuxStream) -> Served,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    shared.metrics.shared.fetch_add(1, Relaxed);
    let (tx, mut accepted) = tokio::sync::mpsc::channel(8);
    let conn = mux::Mux::server(io, MUX_IDLE, MUX_SESSIONS, tx);
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // Stopping: no new session; the open ones drain like any tunnel.
            _ = shared.shutdown.cancelled() => break,
            next = accepted.recv() => match next {
                Some((stream, _target)) => {
                    shared.metrics.shared_sessions.fetch_add(1, Relaxed);
                    sessions.spawn(session(shared.clone(), stream));
                }
                None => break,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    while sessions.join_next().await.is_some() {}
    conn.close();
}

/// Tunnels sharing this one (burrow-local's bursts; v2ray's `v1.mux.cool`): announced
/// at once, then Mux.Cool inside, each session served as a connection of its own (its
/// own Shadowsocks request, key and target) — until the user is removed.
pub(crate) async fn carrier<S>(
    shared: &Arc<Shared>,
    conn: S,
    req: Box<Request>,
    session: fn(Arc<Shared>, mux::MuxStream) -> Served,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some((tunnel, user, _)) = answered_now(shared, conn, req, false).await else {
        return;
    };
    tokio::select! {
        _ = serve_mux(shared.clone(), tunnel, session) => {}
        _ = user.removed.cancelled() => debug!("user {} removed: shared connection closed", user.name),
    }
}
