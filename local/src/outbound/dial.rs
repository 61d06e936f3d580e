//! The hop to the server: connect, seal the request header, and — when that is the
//! plan — learn whether the server reached the target.
//!
//! The Shadowsocks protocol carries no dial result. burrow-server sends its salt as soon
//! as the target is connected (asked for in SIP022 padding) and closes without a byte
//! when it is not; other servers send nothing until the target speaks. With the default
//! `confirm_connect = "auto"` burrow-local learns which kind it talks to: the first
//! tunnel waits a few round trips for the word; a server that gives it is asked again
//! for targets not reached lately (a dead target then still gets a real error), and
//! tunnels to targets reached lately start at once; a server that stays silent is
//! never waited for again. A tunnel that does not wait keeps its header back so that
//! it leaves in one write with the app's first bytes.

use std::io;
use std::time::{Duration, Instant};

use crate::outbound::hop::ServerIo;
use crate::outbound::pool::Taken;
use burrow_common::timeout::with_timeout;
use burrow_common::{EncryptedStream, TargetAddr};
use bytes::{Bytes, BytesMut};
use fast_socks5::ReplyError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub use crate::outbound::plan::{Confirm, Learned, Plan};
use crate::outbound::servers::Server;
use crate::settings::Settings;

/// Extra time the server gets, on top of its own connect timeout, to answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// Why no tunnel could be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
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
    /// A target routed around the tunnel (`direct`, or `proxy`: the corporate proxy
    /// alone) could not be reached.
    #[error("cannot reach {target} {via}: {source}")]
    Around {
        /// The app's target.
        target: TargetAddr,
        /// `directly` or `through the corporate proxy`.
        via: &'static str,
        /// What went wrong.
        source: io::Error,
    },
    /// A rule blocks the target.
    #[error("{target} is blocked by {rule}")]
    Blocked {
        /// The app's target.
        target: TargetAddr,
        /// Which rule.
        rule: String,
    },
    /// The server did not answer in time.
    #[error(
        "the server did not answer within {0:?} (a wrong password or method gets silence; \
             a server other than burrow-server needs confirm_connect = \"auto\" or false)"
    )]
    NoAnswer(Duration),
}

impl DialError {
    /// The HTTP status for this failure: 504 for timeouts, else 502.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            DialError::Server { source, .. } | DialError::Around { source, .. }
                if source.kind() == io::ErrorKind::TimedOut =>
            {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            DialError::Blocked { .. } => http::StatusCode::FORBIDDEN,
            DialError::NoAnswer(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The SOCKS5 reply for this failure.
    pub fn socks_reply(&self) -> ReplyError {
        match self {
            DialError::Blocked { .. } => ReplyError::ConnectionNotAllowed,
            DialError::Server { source, .. } | DialError::Around { source, .. } => {
                match source.kind() {
                    io::ErrorKind::ConnectionRefused => ReplyError::ConnectionRefused,
                    io::ErrorKind::PermissionDenied => ReplyError::ConnectionNotAllowed,
                    io::ErrorKind::TimedOut => ReplyError::TtlExpired,
                    io::ErrorKind::NetworkUnreachable => ReplyError::NetworkUnreachable,
                    io::ErrorKind::HostUnreachable | io::ErrorKind::NotFound => {
                        ReplyError::HostUnreachable
                    }
                    _ => ReplyError::GeneralFailure,
                }
            }
            DialError::Target(_) => ReplyError::HostUnreachable,
            DialError::NoAnswer(_) => ReplyError::TtlExpired,
        }
    }
}

/// Opens an encrypted tunnel to `target` through the server as `plan` says. After a
/// `Wait` the request is out and the server has answered (the target is connected), or
/// it is a server that never answers first; after `Go` the request header is sealed and
/// leaves with the first bytes written.
pub async fn dial(target: &TargetAddr, s: &Settings, plan: Plan) -> Result<Tunnel, DialError> {
    // Boxed: the dial's state (proxy, TLS, WebSocket handshakes) lives on the heap only
    // while dialling, not in every tunnel's task for its whole life.
    Box::pin(dial_inner(target, s, plan)).await.map(Box::new)
}

/// An open tunnel. Boxed: a stream held inline would be laid out more than once in the
/// state of every task that awaits before and after opening it.
pub type Tunnel = Box<EncryptedStream<ServerIo>>;

/// Through the server in use; when it cannot be reached, through the next (nothing has
/// reached the app yet), which is then the one in use.
async fn dial_inner(
    target: &TargetAddr,
    s: &Settings,
    plan: Plan,
) -> Result<EncryptedStream<ServerIo>, DialError> {
    let mut last = None;
    for (i, srv) in s.servers.in_order().into_iter().enumerate() {
        // The plan was made for the first; the next ones are dialled on their own terms.
        let plan = if i == 0 {
            plan
        } else {
            plan.on(&srv.learned, s.confirm)
        };
        match open_on(target, s, &srv, plan).await {
            Err(e @ DialError::Server { .. }) => {
                s.servers.failed(&srv);
                if s.servers.list.len() > 1 {
                    tracing::debug!("{e}; trying the next server");
                }
                last = Some(e);
            }
            done => {
                if done.is_ok() {
                    s.servers.worked(&srv);
                }
                return done;
            }
        }
    }
    Err(last.unwrap_or(DialError::NoAnswer(Duration::ZERO)))
}

async fn open_on(
    target: &TargetAddr,
    s: &Settings,
    srv: &Server,
    plan: Plan,
) -> Result<EncryptedStream<ServerIo>, DialError> {
    if let Some(muxes) = srv.pool.muxes() {
        // A session on a shared WebSocket: up already, so the tunnel starts at once.
        let (conn, made_in) = muxes
            .open(&srv.pool)
            .await
            .map_err(|e| server_err(srv, e))?;
        return start(target, s, srv, plan, conn, made_in).await;
    }
    // burrow-server carries a burst's tunnels on a shared connection.
    let shares = s.share_bursts && srv.learned.confirms() && s.confirm != Confirm::Never;
    let warm = match srv
        .pool
        .take_or_share(shares, &srv.key, srv.response_salts.as_ref())
    {
        Taken::Shared(conn, made_in) => {
            return start(target, s, srv, plan, conn, made_in).await;
        }
        Taken::Own(io, made_in) => Some((io, made_in)),
        Taken::None => None,
    };
    if let Some((warm, made_in)) = warm {
        // A warm connection may have died silently since it was made: what is sent on
        // it must be acknowledged in a few of its round trips, or it fails (TimedOut)
        // and the tunnel moves to a fresh one below — certain that the server never got
        // the request, since its TCP never acknowledged it.
        // A tunnel that goes at once is watched only where the server's word comes at
        // once too (it confirms): that word ends the watch (see `settle`).
        let watched = match plan {
            Plan::Wait { .. } => true,
            Plan::Go => srv.learned.confirms() && s.confirm != Confirm::Never,
            Plan::Send => false,
        };
        if watched {
            warm.watch_sent(watch_for(made_in, s.connect_timeout));
        }
        // Its own setup time stands for a fresh one's: the learning wait scales with it.
        match start(target, s, srv, plan, warm, made_in).await {
            // The server or a proxy may have dropped the warm connection a moment ago
            // (the request could not be sent): one more try on a fresh one before the
            // app hears of a failure. A server that closes without a byte after reading
            // the request has answered; that is not retried (it would dial twice).
            Err(e @ DialError::Server { .. }) => {
                tracing::debug!("on a warm connection: {e}; trying a fresh one");
            }
            done => return done,
        }
    }
    let started = Instant::now();
    let conn = fresh(srv).await?;
    start(target, s, srv, plan, conn, started.elapsed()).await
}

/// A fresh connection to `srv`, not one of the pool's.
async fn fresh(srv: &Server) -> Result<ServerIo, DialError> {
    srv.pool
        .dial()
        .connect()
        .await
        .map_err(|e| server_err(srv, e))
}

fn server_err(srv: &Server, source: io::Error) -> DialError {
    DialError::Server {
        server: srv.name(),
        source,
    }
}

/// Sends the request on `conn` (made in `connect_time`) and follows `plan`.
async fn start(
    target: &TargetAddr,
    s: &Settings,
    srv: &Server,
    plan: Plan,
    conn: ServerIo,
    connect_time: Duration,
) -> Result<EncryptedStream<ServerIo>, DialError> {
    let server_err = |e| server_err(srv, e);
    let mut tunnel = EncryptedStream::new(conn, &srv.key);
    if s.confirm != Confirm::Never {
        // Harmless to other servers: SIP022 padding they skip; SIP004 has no field.
        tunnel.ask_confirmation();
    }
    if let Some(filter) = &srv.response_salts {
        tunnel.check_peer_salt(filter.clone());
    }
    let mut header = BytesMut::with_capacity(target.encoded_len());
    target.encode(&mut header);
    tunnel.buffer(&header);
    let learning = match plan {
        Plan::Go => return Ok(tunnel),
        Plan::Send | Plan::Wait { .. } => {
            with_timeout("sending the request", s.connect_timeout, tunnel.flush())
                .await
                .map_err(server_err)?;
            match plan {
                Plan::Wait { learning } => learning,
                _ => return Ok(tunnel),
            }
        }
    };
    let full = s.connect_timeout + ANSWER_MARGIN;
    // Learning: burrow-server answers one round trip after the request (plus its dial of
    // a target beside it); five connect times, at least a second, is ample.
    let wait = if learning {
        (connect_time * 5).clamp(Duration::from_secs(1), full)
    } else {
        full
    };
    let learned = &srv.learned;
    // While learning, what the question asked at start finds out ends the wait too: a
    // server known never to answer first is not waited for.
    let word = async {
        if !learning {
            return tunnel.peer_answered().await.map(Some);
        }
        tokio::select! {
            r = tunnel.peer_answered() => r.map(Some),
            _ = learned.silent() => Ok(None),
        }
    };
    let answered = match tokio::time::timeout(wait, word).await {
        Ok(Ok(Some(w))) => Ok(Ok(w)),
        Ok(Ok(None)) => {
            tunnel.get_ref().unwatch();
            return Ok(tunnel);
        }
        Ok(Err(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    };
    // Whatever the answer, the watch ends here: a long tunnel must not keep it.
    tunnel.get_ref().unwatch();
    match answered {
        Ok(Ok(true)) => {
            if s.confirm == Confirm::Auto {
                if learned.saw_confirmation() {
                    tracing::debug!(
                        "the server confirms connections: targets reached lately start at once"
                    );
                }
                learned.mark_reached(target);
            }
            Ok(tunnel)
        }
        Ok(Ok(false)) => {
            learned.forget(target);
            Err(DialError::Target(target.clone()))
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            learned.forget(target);
            Err(DialError::Target(target.clone()))
        }
        Ok(Err(e)) => Err(server_err(e)),
        Err(_) if learning => {
            if learned.saw_silence() {
                tracing::info!(
                    "the server did not confirm the first connection within {wait:?}: taking it \
                     for a server that never answers first (not burrow-server), and no longer \
                     waiting; if nothing comes back, check the password and method"
                );
            }
            Ok(tunnel)
        }
        Err(_) => Err(DialError::NoAnswer(wait)),
    }
}

/// How long what is sent on a warm connection may stay unacknowledged before the
/// connection counts as dead: four times the time it took to make (a round trip per hop,
/// so several round trips), at least a second (a retransmission or two on a lossy Wi-Fi)
/// and at most the connect timeout.
pub fn watch_for(made_in: Duration, connect_timeout: Duration) -> Duration {
    (made_in * 4).clamp(
        Duration::from_secs(1),
        connect_timeout.max(Duration::from_secs(1)),
    )
}

/// How long a tunnel that does not wait gives the app to send its first bytes, so that
/// they leave in one write with the request header. Apps on this machine send theirs
/// within microseconds of the reply; a protocol where the server speaks first pays this
/// once.
const FIRST_BYTES_WAIT: Duration = Duration::from_millis(20);

/// For a tunnel opened with [`Plan::Go`]: seals `early` (bytes the app sent with its
/// request) or else the app's first bytes, if they come within a moment, behind the
/// request header, so that both leave in one write.
pub async fn add_first_bytes<R: AsyncRead + Unpin>(
    tunnel: &mut Tunnel,
    early: Bytes,
    app: &mut R,
) -> io::Result<Bytes> {
    if !early.is_empty() {
        tunnel.buffer(&early);
        return Ok(early);
    }
    let mut first = vec![0u8; FIRST_BYTES_MAX];
    if let Ok(read) = tokio::time::timeout(FIRST_BYTES_WAIT, app.read(&mut first)).await {
        let n = read?;
        first.truncate(n);
        tunnel.buffer(&first);
        return Ok(first.into());
    }
    Ok(Bytes::new())
}

/// For a tunnel that went at once on a watched warm connection (see `open_on`): sends
/// the request and first bytes now and waits for the server's word. `Ok` once it came
/// (the watch ends) or did not come in time with nothing known to be wrong. A tunnel
/// whose flight — small enough to be one segment, so acknowledged whole or not at all —
/// the server's TCP never acknowledged (the warm connection had died silently) is moved
/// to a fresh connection with the same request and first bytes; a larger flight is not
/// sent again (part of it may have arrived): the tunnel fails cleanly instead.
pub async fn settle(
    tunnel: &mut Tunnel,
    target: &TargetAddr,
    first: &[u8],
    s: &Settings,
) -> Result<(), DialError> {
    if !tunnel.get_ref().watched() {
        return Ok(());
    }
    let limit = s.connect_timeout + ANSWER_MARGIN;
    let answered = async {
        tunnel.flush().await?;
        tunnel.peer_answered().await
    };
    match tokio::time::timeout(limit, answered).await {
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut && first.len() <= ONE_SEGMENT => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
            return Err(server_err(s.servers.current(), e));
        }
        _ => {
            tunnel.get_ref().unwatch();
            return Ok(());
        }
    }
    let srv = s.servers.current();
    tracing::info!(
        "a warm connection to {} had died silently (nothing acknowledged): {target} moves to a fresh one",
        srv.name()
    );
    let conn = fresh(srv).await?;
    let mut again = start(target, s, srv, Plan::Go, conn, Duration::ZERO).await?;
    again.buffer(first);
    **tunnel = again;
    Ok(())
}

/// First bytes sent again on a fresh connection at most: with the request header and
/// the AEAD overhead they fit one TCP segment on any path (IPv6's minimum MTU less
/// headers), so the peer's TCP acknowledged all of them or none.
const ONE_SEGMENT: usize = 1024;

/// The most first bytes taken that way (the rest follow on the relay's path).
const FIRST_BYTES_MAX: usize = 16 * 1024;

/// Logs a failed tunnel. Trouble reaching the server (a proxy refusing, a timeout) is
/// said once as a warning, not once per connection; repeats go to debug.
pub fn report(e: &DialError) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    match e {
        DialError::Server { .. } => {
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
