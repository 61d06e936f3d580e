//! One tunnel, whatever the app spoke: dial → reply → relay → report. Each inbound kind
//! brings its target and an [`Answer`] (the SOCKS5 reply in `socks5.rs`, the CONNECT
//! status in `connect.rs`); the order of dialling and answering is the plan's
//! (`dial.rs`).

use std::future::Future;
use std::io;

use burrow_common::prefixed::Prefixed;
use burrow_common::relay::{relay, relay_tunnel, reported};
use burrow_common::TargetAddr;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, Span};

use crate::outbound::dial::{add_first_bytes, dial, settle, DialError, Plan, Tunnel};
use crate::outbound::rules::Via;
use crate::settings::Settings;

/// How the app hears whether its tunnel opened, and what its stream is once it has.
pub trait Answer {
    /// The app's stream after the answer.
    type App: AsyncRead + AsyncWrite + Unpin;

    /// Tells the app its tunnel is open; returns its stream and any bytes it sent before
    /// hearing so.
    fn open(self) -> impl Future<Output = io::Result<(Bytes, Self::App)>> + Send;

    /// Tells the app its tunnel could not be opened, and why.
    fn failed(self, e: &DialError) -> impl Future<Output = ()> + Send;
}

/// One tunnel to `target`, whatever the app spoke: dial → reply → relay → report (`what`
/// names it in the close report, [`reported`]). The dial and the reply are boxed and gone
/// once the relay runs: the future a tunnel's task holds for its whole life keeps only
/// the two streams and the relay (the answer is not kept in it either).
pub fn tunnel<'a, A: Answer + 'a>(
    what: &'a str,
    target: &'a TargetAddr,
    answer: A,
    s: &'a Settings,
) -> impl Future<Output = ()> + 'a {
    Span::current().record("target", tracing::field::display(target));
    async move {
        let (via, why) = Box::pin(crate::outbound::around::decide(target, s)).await;
        if via != Via::Tunnel {
            // Around the tunnel (or nowhere): its own boxed future, so that a tunnel's
            // task is laid out for the tunnel alone.
            return Box::pin(around(what, target, via, why, answer, s)).await;
        }
        let opening = Box::pin(dial_and_reply(target, answer, s));
        let Some((mut app, mut tunnel)) = opening.await else {
            return;
        };
        reported(what, relay_tunnel(&mut app, &mut *tunnel, s.idle_timeout)).await;
    }
}

/// A target the rules send `direct`, through the corporate `proxy` alone, or `block`:
/// dialled first (a failure is the app's real error), then answered and relayed.
async fn around<A: Answer>(
    what: &str,
    target: &TargetAddr,
    via: Via,
    why: String,
    answer: A,
    s: &Settings,
) {
    if via == Via::Block {
        let e = DialError::Blocked {
            target: target.clone(),
            rule: why,
        };
        info!("{e}");
        return answer.failed(&e).await;
    }
    debug!("{target} goes {} ({why})", via.name());
    let mut conn = match crate::outbound::around::connect(target, via, s).await {
        Ok(c) => c,
        Err(e) => {
            crate::outbound::dial::report(&e);
            return answer.failed(&e).await;
        }
    };
    let Some((early, app)) = answered(answer.open().await) else {
        return;
    };
    let mut app = Prefixed::new(early, app);
    reported(what, relay(&mut app, &mut conn, s.idle_timeout)).await;
}

/// Opens the tunnel and answers the app, in the order the plan says; `None` if either
/// failed (the app has its failure answer; the log says why). The app's stream comes
/// back with whatever it sent early in front, or sealed behind the request header.
async fn dial_and_reply<A: Answer>(
    target: &TargetAddr,
    answer: A,
    s: &Settings,
) -> Option<(Prefixed<A::App>, Tunnel)> {
    let plan = Plan::for_target(target, &s.servers.current().learned, s.confirm);
    if plan == Plan::Go {
        // The app hears "connected" now and sends its first bytes while the hop to the
        // server is made; they leave together with the request header.
        let (early, mut app) = answered(answer.open().await)?;
        let mut tunnel = dial(target, s, plan)
            .await
            .map_err(|e| crate::outbound::dial::report(&e))
            .ok()?;
        let first = match add_first_bytes(&mut tunnel, early, &mut app).await {
            Ok(first) => first,
            Err(e) => {
                debug!("the app left: {e}");
                return None;
            }
        };
        // On a warm connection that may have died silently: the server's word, or a
        // fresh connection (the app has heard "connected"; its first bytes go again).
        if let Err(e) = settle(&mut tunnel, target, &first, s).await {
            crate::outbound::dial::report(&e);
            return None;
        }
        return Some((Prefixed::new(Bytes::new(), app), tunnel));
    }
    let tunnel = match dial(target, s, plan).await {
        Ok(t) => t,
        Err(e) => {
            crate::outbound::dial::report(&e);
            answer.failed(&e).await;
            return None;
        }
    };
    let (early, app) = answered(answer.open().await)?;
    Some((Prefixed::new(early, app), tunnel))
}

fn answered<T>(r: io::Result<T>) -> Option<T> {
    r.map_err(|e| debug!("the app left before its answer: {e}"))
        .ok()
}
