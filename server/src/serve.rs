//! One connection, top to bottom: (WebSocket upgrade →) handshake → dial → relay, each
//! under its own timeout.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use burrow_common::aead::{AeadError, Decoder, Encoder};
use burrow_common::mux;
use burrow_common::prefixed::Prefixed;
use burrow_common::relay::{relay_tunnel, report};
use burrow_common::timeout::with_timeout;
use burrow_common::udp;
use burrow_common::ws;
use burrow_common::{EncryptedStream, TargetAddr};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn, Span};

use crate::dial::{dial, DialError};
use crate::handshake::{
    close_quietly, drain_silently, jittered_deadline, read_request, readable, BadRequest, Request,
};
use crate::metrics::Rejected;
use crate::Shared;

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
pub(crate) async fn serve_inner<S>(shared: Arc<Shared>, mut conn: S, counted: bool)
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
            crate::mux::serve_mux(shared, Prefixed::new(head.freeze(), io)).await
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
        return Box::pin(udp_over_tcp(shared, conn, req)).await;
    }
    if mux::is_carrier(&req.target) {
        return Box::pin(crate::mux::carrier(shared, conn, req)).await;
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
    tunnel(shared, conn, *req, target, started).await;
}

/// The tunnel's stream once its target is connected: the response's salt recorded (our
/// own salts too: a server stream reflected back at us is then a replay) and the client
/// told at once that the target is connected — burrow-local waits for this. SIP004: the
/// salt alone, harmless to any client. SIP022: only when asked, since a header with an
/// empty first chunk is ours alone to expect.
pub(crate) fn response_stream<S>(
    shared: &Shared,
    conn: S,
    key: &burrow_common::MasterKey,
    dec: Decoder,
    rbuf: BytesMut,
) -> EncryptedStream<S> {
    let asked = dec.confirmation_asked();
    let enc = Encoder::response(key, dec.salt().unwrap_or_default());
    if let Some(f) = shared.replay.as_ref() {
        f.check_and_insert(enc.salt());
    }
    let mut tunnel = EncryptedStream::from_parts(conn, enc, dec, rbuf);
    if !key.method().is_2022() || asked {
        tunnel.announce();
    }
    tunnel
}

/// UDP carried in this tunnel (sing-box UDP-over-TCP v2): announced at once (there is
/// no target to wait for), then datagrams both ways.
async fn udp_over_tcp<S>(shared: &Shared, conn: S, req: Box<Request>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The word goes now, as for a tunnel whose target is connected: a client that waits
    // for it does not wait for the first datagram back.
    let Some((tunnel, user, payload)) = answered_now(shared, conn, req, true).await else {
        return;
    };
    tokio::select! {
        _ = crate::udp::over_tcp(shared, tunnel, payload, &user.counters) => {}
        _ = user.removed.cancelled() => debug!("user {} removed: UDP over TCP closed", user.name),
    }
}

/// A request with no target to dial (UDP over TCP, a shared connection), answered at
/// once — counted as one of the user's tunnels if `tunnel` (a shared connection is not
/// one: each of its sessions is); the stream, the user and the bytes that came after the
/// request. `None`: the client is gone.
pub(crate) async fn answered_now<S>(
    shared: &Shared,
    conn: S,
    req: Box<Request>,
    tunnel: bool,
) -> Option<(EncryptedStream<S>, Arc<crate::users::User>, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Request {
        user,
        dec,
        rbuf,
        payload,
        ..
    } = *req;
    if tunnel {
        user.counters.tunnels.fetch_add(1, Relaxed);
    }
    let mut stream = response_stream(shared, conn, &user.key, dec, rbuf);
    tokio::io::AsyncWriteExt::flush(&mut stream).await.ok()?;
    Some((stream, user, payload))
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
        r = tokio::time::timeout_at(deadline, readable(conn)) => {
            if r.is_ok() {
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
    match tokio::time::timeout_at(deadline, read_request(conn, &users, replay)).await {
        Ok(Ok(req)) => Some(req),
        Ok(Err(bad)) => {
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
        Err(_) => {
            shared.metrics.rejected(Rejected::Timeout);
            debug!("no whole request before the handshake deadline");
            Box::pin(close_quietly(conn)).await;
            None
        }
    }
}

/// The target is connected: answer the client (if it asked), send the first bytes on,
/// then relay both ways.
///
/// Not an `async fn`: its arguments would be stored twice in the future (once as
/// arguments, once as the locals they move into). The stream is built first and only what
/// the relay uses is captured.
fn tunnel<'a, S>(
    shared: &'a Shared,
    conn: S,
    req: Request,
    mut target: TcpStream,
    started: std::time::Instant,
) -> impl std::future::Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
{
    let Request {
        user,
        dec,
        rbuf,
        payload,
        ..
    } = req;
    let s = &shared.settings;
    let mut tunnel = response_stream(shared, conn, &user.key, dec, rbuf);
    async move {
        let m = &shared.metrics;
        let first = payload.len() as u64;
        let first_write = async {
            tunnel.flush().await?;
            target.write_all(&payload).await
        };
        if let Err(e) = with_timeout("first write", s.idle_timeout, first_write).await {
            info!("tunnel ended before relaying: {e}");
            return;
        }
        drop(payload);
        // A user taken out by a reload: their tunnels close after the grace.
        let relay = relay_tunnel(&mut target, &mut tunnel, s.idle_timeout);
        let (moved, result) = tokio::select! {
            done = relay => done,
            _ = user.removed.cancelled() => {
                debug!("user {} removed: tunnel closed", user.name);
                return;
            }
        };
        let (up, down) = (moved.b_to_a + first, moved.a_to_b);
        m.bytes_up.fetch_add(up, Relaxed);
        m.bytes_down.fetch_add(down, Relaxed);
        user.counters.moved(up, down);
        report("tunnel", up, down, started, result);
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
