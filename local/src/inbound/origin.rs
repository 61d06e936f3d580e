//! Sending a request to an origin through the tunnel: one HTTP/1 client connection per
//! origin, reused while a client connection keeps asking the same origin; TLS on top
//! when the origin wants it; a WebSocket upgrade relayed byte for byte after its 101.

use std::sync::{Arc, Mutex};

use burrow_common::relay::{relay, reported};
use burrow_common::timeout::with_timeout;
use burrow_common::TargetAddr;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, Instrument, Span};

use crate::inbound::headers::strip_hop_by_hop;
use crate::inbound::respond::{text, Body};
use crate::outbound::dial::{dial, DialError, Plan};
use crate::outbound::rules::Via;
use crate::outbound::tls::TlsTarget;
use crate::settings::Settings;

/// Where a request goes.
pub struct Origin {
    /// host:port, dialled by the server.
    pub target: TargetAddr,
    /// TLS made here, inside the tunnel.
    pub tls: Option<Arc<TlsTarget>>,
    /// Through the tunnel (reverse routes, always), or as the rules say (forwarding).
    pub via: Via,
}

impl Origin {
    fn key(&self) -> String {
        format!(
            "{}{}",
            if self.tls.is_some() { "tls:" } else { "" },
            self.target
        )
    }
}

/// How to treat a WebSocket upgrade.
pub enum Upgrade {
    /// Not an upgrade request.
    No,
    /// Relay it after any 101 (the forward proxy: the app checks the accept itself).
    Relay,
    /// Relay only after a 101 with this Sec-WebSocket-Accept; any other answer is passed
    /// back and both connections close (reverse routes).
    Checked(String),
}

/// Per client connection: the origin connection of its last request, and the relays it
/// started (upgraded WebSockets, CONNECT tunnels), which the connection's task waits for
/// so that they count against max_connections and drain on shutdown like any tunnel.
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<(String, SendRequest<Incoming>)>>,
    /// Relays started on behalf of this client connection.
    pub tasks: tokio_util::task::TaskTracker,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Sends `req` (already rewritten for the origin, hop-by-hop headers still in) and returns
/// the origin's answer for the client.
pub async fn send(
    mut req: Request<Incoming>,
    origin: &Origin,
    upgrade: Upgrade,
    s: &Settings,
    cache: &Cache,
) -> Response<Body> {
    let ws = !matches!(upgrade, Upgrade::No);
    let client_upgrade = ws.then(|| hyper::upgrade::on(&mut req));
    strip_hop_by_hop(req.headers_mut(), ws);
    // Framing is hyper's to decide from the body: never two lengths, never CL with TE.
    req.headers_mut().remove(header::CONTENT_LENGTH);
    *req.version_mut() = http::Version::HTTP_11;

    let key = origin.key();
    let cached = cache.last.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (mut sender, fresh) = match cached {
        Some((k, sender)) if k == key && sender.is_ready() => (sender, false),
        _ => match connect(origin, s).await {
            Ok(sender) => (sender, true),
            Err(resp) => return resp,
        },
    };
    let method = req.method().clone();
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) if fresh && e.is_incomplete_message() => {
            let msg = format!(
                "burrow-local: the server could not open {} (refused by its egress policy, or \
                 unreachable from it: the tunnel closed without an answer), or it does not take \
                 our key",
                origin.target
            );
            info!("{msg}");
            return text(StatusCode::BAD_GATEWAY, msg);
        }
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("burrow-local: origin {}: {e}", origin.target),
            )
        }
    };
    info!(status = resp.status().as_u16(), "{method} answered");
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    match (&upgrade, client_upgrade) {
        (Upgrade::Checked(want), Some(_)) if switching && !accept_matches(&resp, want) => {
            return text(
                StatusCode::BAD_GATEWAY,
                "burrow-local: the upstream's Sec-WebSocket-Accept is wrong",
            );
        }
        (_, Some(client_upgrade)) if switching => {
            let origin_upgrade = hyper::upgrade::on(&mut resp);
            let idle = s.idle_timeout;
            cache.tasks.spawn(
                async move {
                    match tokio::try_join!(client_upgrade, origin_upgrade) {
                        Ok((c, o)) => {
                            let (mut c, mut o) = (TokioIo::new(c), TokioIo::new(o));
                            reported("websocket", relay(&mut c, &mut o, idle)).await;
                        }
                        Err(e) => debug!("websocket upgrade: {e}"),
                    }
                }
                .instrument(Span::current()),
            );
        }
        (Upgrade::Checked(_), Some(_)) => {
            // Refused upgrade: pass the answer back, then both connections close.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Response::from_parts(parts, body.boxed());
        }
        _ => *cache.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, sender)),
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    Response::from_parts(parts, body.boxed())
}

fn accept_matches(resp: &Response<Incoming>, want: &str) -> bool {
    resp.headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == want)
}

/// A new HTTP/1 client connection to the origin: tunnel, then TLS if asked.
async fn connect(origin: &Origin, s: &Settings) -> Result<SendRequest<Incoming>, Response<Body>> {
    let target = &origin.target;
    let failed = |e: DialError| {
        crate::outbound::dial::report(&e);
        text(e.http_status(), format!("burrow-local: {e}"))
    };
    let tunnel: Box<dyn Io> = match origin.via {
        // No wait for the server's word: the origin's answer (or its absence) says it all.
        // The origin's answer says it all; kept-alive origin connections and relayed
        // WebSockets must not keep a warm connection's watch.
        Via::Tunnel => {
            let tunnel = dial(target, s, Plan::Go).await.map_err(failed)?;
            tunnel.get_ref().unwatch();
            Box::new(tunnel)
        }
        Via::Block => {
            let (_, rule) = s.rules.route(target);
            let e = DialError::Blocked {
                target: target.clone(),
                rule,
            };
            info!("{e}");
            return Err(text(e.http_status(), format!("burrow-local: {e}")));
        }
        via => Box::new(
            crate::outbound::around::connect(target, via, s)
                .await
                .map_err(failed)?,
        ),
    };
    let io: Box<dyn Io> = match &origin.tls {
        None => tunnel,
        Some(tls) => {
            let handshake = with_timeout("TLS", s.connect_timeout, tls.connect(tunnel));
            match handshake.await {
                Ok(stream) => Box::new(stream),
                Err(e) => {
                    info!("TLS with {target}: {e}");
                    let status = if e.kind() == std::io::ErrorKind::TimedOut {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    return Err(text(
                        status,
                        format!("burrow-local: TLS with {target}: {e}"),
                    ));
                }
            }
        }
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| {
            text(
                StatusCode::BAD_GATEWAY,
                format!("burrow-local: origin {target}: {e}"),
            )
        })?;
    tokio::spawn(
        async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!("origin connection: {e}");
            }
        }
        .instrument(Span::current()),
    );
    Ok(sender)
}
