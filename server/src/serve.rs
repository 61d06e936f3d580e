//! One connection, top to bottom: (WebSocket upgrade →) handshake → dial → the tunnel
//! (`tunnel.rs`), each under its own timeout; a shared connection's sessions (`mux.rs`)
//! are each served here as a connection of their own.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use burrow_common::aead::AeadError;
use burrow_common::mux;
use burrow_common::prefixed::Prefixed;
use burrow_common::timeout::{before, with_timeout};
use burrow_common::udp;
use burrow_common::ws;
use burrow_common::TargetAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn, Span};

use crate::dial::{dial, DialError};
use crate::handshake::{
    close_quietly, drain_silently, jittered_deadline, read_request, readable, BadRequest, Request,
};
use crate::metrics::Rejected;
use crate::{tunnel, Shared};

/// Serves one accepted connection until its tunnel ends.
///
/// A connection's task holds only what a silent connection needs (a boxed wait for its
/// first bytes) until bytes arrive; the rest of its story is boxed from then on. That
/// future lives as long as the tunnel, so it is kept small: the handshake's state is
/// boxed while it runs, the rare refusal paths are boxed, and the relay phase holds only
/// what it uses.
pub fn serve<S>(shared: Arc<Shared>, conn: S) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_inner(shared, conn, true)
}

/// [`serve`]; `counted`: as a connection (a session of a shared one is not).
async fn serve_inner<S>(shared: Arc<Shared>, mut conn: S, counted: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let m = &shared.metrics;
    let _open = counted.then(|| {
        m.connections.fetch_add(1, Relaxed);
        m.open.fetch_add(1, Relaxed);
        OpenGuard(&m.open)
    });
    let Some(deadline) = Box::pin(first_bytes(&shared, &mut conn)).await else {
        return;
    };
    let Some(req) = Box::pin(handshake(&shared, &mut conn, deadline)).await else {
        return;
    };
    Box::pin(serve_request(&shared, conn, req)).await;
}

/// One session of a shared connection, served as a connection (boxed: a session may
/// itself carry a shared connection).
fn serve_session(shared: Arc<Shared>, stream: mux::MuxStream) -> crate::mux::Served {
    Box::pin(serve_inner(shared, stream, false))
}

/// Serves one connection to the WebSocket listener: the upgrade (a handshake like the
/// Shadowsocks one: it holds a handshake permit and has the same timeout), then [`serve`]
/// on the WebSocket's byte stream.
pub async fn serve_websocket(shared: Arc<Shared>, conn: TcpStream) {
    let s = &shared.settings;
    let Some(handshaking) = start_handshake(&shared) else {
        return;
    };
    let upgrade = ws::accept(conn, &s.ws_path, Some(s.ws_ping));
    let upgraded = with_timeout("WebSocket handshake", s.handshake_timeout, upgrade).await;
    drop(handshaking);
    let io = match upgraded {
        Ok(io) => io,
        Err(e) => return debug!("{e}"),
    };
    // v2ray-plugin's clients frame their streams with Mux.Cool by default; burrow-local
    // and other Shadowsocks clients send a salt. The first bytes tell which.
    let head = with_timeout(
        "first bytes",
        s.handshake_timeout,
        crate::mux::peek_head(io),
    )
    .await;
    match head {
        Ok((head, io)) if mux::looks_like_mux(&head) => {
            crate::mux::serve_mux(shared, Prefixed::new(head.freeze(), io), serve_session).await
        }
        Ok((head, io)) => serve(shared, Prefixed::new(head.freeze(), io)).await,
        Err(e) => debug!("WebSocket: {e}"),
    }
}

/// Dial → tunnel, for a request that authenticated (the tunnel's time counted from then).
async fn serve_request<S>(shared: &Arc<Shared>, mut conn: S, req: Box<Request>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = std::time::Instant::now();
    let m = &shared.metrics;
    Span::current().record("target", tracing::field::display(&req.target));
    // A user at their cap of open tunnels: refused as a failed dial is (closed, no byte).
    let Some(_slot) = req.user.open_slot() else {
        let u = &req.user;
        u.counters.capped.fetch_add(1, Relaxed);
        info!(
            "user {} has {} tunnels open (max_connections): refused",
            u.name,
            u.max_connections.unwrap_or_default()
        );
        Box::pin(close_quietly(&mut conn)).await;
        return;
    };
    if matches!(&req.target, TargetAddr::Domain(name, _) if name == udp::UOT_MAGIC) {
        return Box::pin(tunnel::udp_over_tcp(shared, conn, req)).await;
    }
    if mux::is_carrier(&req.target) {
        return Box::pin(crate::mux::carrier(shared, conn, req, serve_session)).await;
    }
    let counters = &req.user.counters;
    counters.tunnels.fetch_add(1, Relaxed);
    let target = match dial(&req.target, &shared.settings).await {
        Ok(t) => t,
        Err(e) => {
            match e {
                DialError::Refused { .. } => m.dial_refused.fetch_add(1, Relaxed),
                DialError::Io(_) => m.dial_failed.fetch_add(1, Relaxed),
            };
            counters.dial_errors.fetch_add(1, Relaxed);
            info!("dial failed: {e}");
            // Closing without a single byte tells burrow-local the dial failed.
            Box::pin(close_quietly(&mut conn)).await;
            return;
        }
    };
    tunnel::tunnel(shared, conn, *req, target, started).await;
}

/// A handshake permit, or `None` (counted) when as many connections as allowed are
/// still in their handshake: the connection is then closed at once, before anything is
/// allocated for it, so a flood of silent connections cannot hold the whole budget.
pub fn start_handshake(shared: &Shared) -> Option<tokio::sync::SemaphorePermit<'_>> {
    let permit = shared.handshakes.try_acquire().ok();
    if permit.is_none() {
        shared.metrics.rejected(Rejected::Busy);
        debug!("too many connections in their handshake: closed");
    }
    permit
}

/// Waits for the connection's first bytes under the jittered handshake deadline, which it
/// returns; `None`: nothing came (the connection is closed). Nothing is allocated for a
/// connection that stays silent but this wait.
async fn first_bytes<S>(shared: &Shared, conn: &mut S) -> Option<Instant>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = jittered_deadline(shared.settings.handshake_timeout);
    tokio::select! {
        r = before(deadline, readable(conn)) => {
            if r.is_some() {
                return Some(deadline);
            }
            shared.metrics.rejected(Rejected::Timeout);
            debug!("nothing before the handshake deadline");
        }
        // Stopping: a connection that has sent nothing is not a tunnel to drain (a
        // client's warm connection, say); it is closed now.
        _ = shared.shutdown.cancelled() => debug!("stopping: closed before any byte"),
    }
    close_quietly(conn).await;
    None
}

/// Reads the first flight under the jittered deadline. `None`: refused (already drained
/// silently or closed).
async fn handshake<S>(shared: &Shared, conn: &mut S, deadline: Instant) -> Option<Box<Request>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _handshaking = start_handshake(shared)?;
    let s = &shared.settings;
    let replay = shared.replay.as_ref();
    let users = s.users.get();
    match before(deadline, read_request(conn, &users, replay)).await {
        Some(Ok(req)) => Some(req),
        Some(Err(bad)) => {
            shared.metrics.rejected(bad.kind());
            if let BadRequest::Aead(AeadError::Clock { .. }) = bad {
                // The header authenticated: a real client whose clock is off, or a
                // recorded flight replayed. Say so, but not once per replay.
                if clock_warning_due() {
                    warn!("refused a request: {bad} (said at most every 10 s)");
                } else {
                    debug!("refused a request: {bad}");
                }
            } else {
                debug!(reason = %bad, "not a valid request: draining silently");
            }
            Box::pin(drain_silently(conn, deadline)).await;
            None
        }
        None => {
            shared.metrics.rejected(Rejected::Timeout);
            debug!("no whole request before the handshake deadline");
            Box::pin(close_quietly(conn)).await;
            None
        }
    }
}

/// True at most once every 10 s: a replay loop must not flood the log.
fn clock_warning_due() -> bool {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = burrow_common::frame::unix_now();
    let last = LAST.load(Relaxed);
    now.saturating_sub(last) >= 10 && LAST.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
}

/// Keeps the open-connections gauge right however `serve` ends.
struct OpenGuard<'a>(&'a AtomicI64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
