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

use burrow_common::timeout::within;
use std::io;
use std::time::{Duration, Instant};

use crate::outbound::hop::ServerIo;
use crate::outbound::pool::Taken;
use burrow_common::timeout::with_timeout;
use burrow_common::{EncryptedStream, TargetAddr};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

mod error;
mod first;

pub use crate::outbound::plan::{Confirm, Learned, Plan};
use crate::outbound::servers::Server;
use crate::settings::Settings;
pub use error::{report, DialError};
pub use first::{add_first_bytes, settle, watch_for};

/// Extra time the server gets, on top of its own connect timeout, to answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

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
    let conn = fresh(srv, plan).await?;
    start(target, s, srv, plan, conn, started.elapsed()).await
}

/// A fresh connection to `srv`, not one of the pool's. A tunnel that sends its request
/// at once and waits for the server's word lets the request ride the SYN where it can
/// (TCP Fast Open): that word then comes one round trip sooner.
async fn fresh(srv: &Server, plan: Plan) -> Result<ServerIo, DialError> {
    let dial = srv.pool.dial();
    let made = match plan {
        Plan::Wait { .. } => dial.connect_sending().await,
        Plan::Go | Plan::Send => dial.connect().await,
    };
    made.map_err(|e| server_err(srv, e))
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
    mut connect_time: Duration,
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
            let sent = Instant::now();
            with_timeout("sending the request", s.connect_timeout, tunnel.flush())
                .await
                .map_err(server_err)?;
            let Plan::Wait { learning } = plan else {
                return Ok(tunnel);
            };
            // Only a tunnel that waits may have sent its request in the SYN (`fresh`):
            // the server is reached when its TCP answers (a refusal or silence is the
            // server's failure, as a connect's would be).
            with_timeout("connect", s.connect_timeout, tunnel.get_ref().established())
                .await
                .map_err(server_err)?;
            connect_time = connect_time.max(sent.elapsed());
            learning
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
    let answered = match within(wait, word).await {
        Some(Ok(Some(w))) => Some(Ok(w)),
        Some(Ok(None)) => {
            tunnel.get_ref().unwatch();
            return Ok(tunnel);
        }
        Some(Err(e)) => Some(Err(e)),
        None => None,
    };
    // Whatever the answer, the watch ends here: a long tunnel must not keep it.
    tunnel.get_ref().unwatch();
    match answered {
        Some(Ok(true)) => {
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
        Some(Ok(false)) => {
            learned.forget(target);
            Err(DialError::Target(target.clone()))
        }
        Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            learned.forget(target);
            Err(DialError::Target(target.clone()))
        }
        Some(Err(e)) => Err(server_err(e)),
        None if learning => {
            if learned.saw_silence() {
                tracing::info!(
                    "the server did not confirm the first connection within {wait:?}: taking it \
                     for a server that never answers first (not burrow-server), and no longer \
                     waiting; if nothing comes back, check the password and method"
                );
            }
            Ok(tunnel)
        }
        None => Err(DialError::NoAnswer(wait)),
    }
}
