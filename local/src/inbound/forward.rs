//! An absolute-form request (`GET http://host/path`) forwarded to its origin through the
//! tunnel: the request rewritten to origin form, `Host` from the URL, hop-by-hop headers
//! dropped; a WebSocket upgrade relayed after the origin's 101.

use burrow_common::hostport::unbracket;
use burrow_common::TargetAddr;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tracing::Span;

use crate::inbound::headers::{is_websocket_upgrade, strip_hop_by_hop};
use crate::inbound::origin::{self, Cache, Origin, Upgrade};
use crate::inbound::respond::{text, Body};
use crate::settings::Settings;
use crate::tools::metrics::Inbound;

/// Forwards `req` to the origin its URL names.
pub async fn forward(req: Request<Incoming>, s: &Settings, cache: &Cache) -> Response<Body> {
    s.metrics.request(Inbound::Forward);
    let Some(target) = target_of(req.uri(), 80) else {
        return text(StatusCode::BAD_REQUEST, "burrow-local: bad request target");
    };
    Span::current().record("target", tracing::field::display(&target));
    // host[:port] only: user:pass@ in an absolute URI is never forwarded.
    let authority = req
        .uri()
        .authority()
        .map(|a| match a.port() {
            Some(p) => format!("{}:{p}", a.host()),
            None => a.host().to_owned(),
        })
        .unwrap_or_default();
    let Ok(host) = HeaderValue::from_str(&authority) else {
        return text(StatusCode::BAD_REQUEST, "burrow-local: bad host");
    };
    let upgrade = if is_websocket_upgrade(req.headers()) {
        Upgrade::Relay
    } else {
        Upgrade::No
    };
    let (mut parts, body) = req.into_parts();
    // The client's hop-by-hop headers go before ours are added: its `Connection` must not
    // name and so delete Host or X-Forwarded-For.
    strip_hop_by_hop(&mut parts.headers, !matches!(upgrade, Upgrade::No));
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
    // Host from the absolute URI, whatever the client put in its Host header.
    parts.headers.insert(header::HOST, host);
    let (via, why) = crate::outbound::around::decide(&target, s).await;
    if via != crate::outbound::rules::Via::Tunnel {
        tracing::debug!("{target} goes {} ({why})", via.name());
    }
    let origin = Origin {
        target,
        tls: None,
        via,
    };
    origin::send(Request::from_parts(parts, body), &origin, upgrade, s, cache).await
}

/// `host:port` of a CONNECT or absolute-form request (port from the scheme if absent).
pub fn target_of(uri: &Uri, default_port: u16) -> Option<TargetAddr> {
    let auth = uri.authority()?;
    let host = unbracket(auth.host());
    TargetAddr::new(host, auth.port_u16().unwrap_or(default_port)).ok()
}
