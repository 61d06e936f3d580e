//! HTTP on a listener (hyper). Proxy requests — CONNECT and absolute-form forwarding with
//! keep-alive — pass Basic proxy auth, each one on a kept-alive connection. Origin-form
//! requests are for burrow-local itself: a reverse route, else `/proxy.pac`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use burrow_common::config::ct_eq;
use burrow_common::relay::{relay_tunnel, report};
use burrow_common::TargetAddr;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::{debug, Instrument, Span};

use crate::dial::{add_first_bytes, open_tunnel, Plan};
use crate::hop::{is_websocket_upgrade, strip_hop_by_hop};
use crate::metrics::Inbound;
use crate::origin::{self, Cache, Origin, Upgrade};
use crate::route::{self, Route};
use crate::{reverse, Settings};

/// Bodies we send back: forwarded ones and our own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A short text response.
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut body = msg.into();
    body.push('\n');
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|n: Infallible| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Per client connection: who it is, and the origin connection of its last request.
struct Conn {
    peer: SocketAddr,
    cache: Cache,
}

/// Serves HTTP/1 on `conn` until the client leaves.
pub async fn serve(settings: Arc<Settings>, conn: TcpStream) {
    let local = conn
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let peer = conn
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let state = Arc::new(Conn {
        peer,
        cache: Cache::default(),
    });
    let relays = state.cache.tasks.clone();
    let header_timeout = settings.handshake_timeout;
    let svc = service_fn(move |req| {
        let (s, st) = (settings.clone(), state.clone());
        async move { Ok::<_, Infallible>(handle(req, s, st, local).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .preserve_header_case(true)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(conn), svc)
        .with_upgrades();
    if let Err(e) = served.await {
        debug!("http connection: {e}");
    }
    // CONNECT tunnels and upgraded WebSockets outlive the HTTP connection that started
    // them; this task (and its connection permit) lasts until they end.
    relays.close();
    relays.wait().await;
}

async fn handle(
    req: Request<Incoming>,
    s: Arc<Settings>,
    st: Arc<Conn>,
    local: SocketAddr,
) -> Response<Body> {
    // Origin-form: a request to burrow-local itself — a reverse route, or the PAC file.
    if req.method() != Method::CONNECT && req.uri().scheme().is_none() {
        let path = req.uri().path().to_owned();
        let upgrade = req.headers().contains_key(header::UPGRADE);
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let mut resp = match route::find(&s.routes, &path) {
            _ if !host_is_ours(&req, local, &s) => text(
                StatusCode::MISDIRECTED_REQUEST,
                "burrow-local: this Host is not one of burrow-local's names (host_names)",
            ),
            _ if route::check_path(&path).is_err() => text(
                StatusCode::BAD_REQUEST,
                "burrow-local: dot segments and encoded slashes are not allowed in paths",
            ),
            Some(r) if !route::origin_allowed(r, origin) => text(
                StatusCode::FORBIDDEN,
                "burrow-local: origin not allowed on this route",
            ),
            Some(r) => {
                let r = r.clone();
                s.metrics.request(Inbound::Reverse);
                reverse(req, &r, s, st).await
            }
            None if path == "/proxy.pac" => pac(local, &s.bypass),
            None => text(
                StatusCode::NOT_FOUND,
                format!("burrow-local: no route for {path}"),
            ),
        };
        if upgrade && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // A refused upgrade ends the connection, whoever refused it.
            let close = HeaderValue::from_static("close");
            resp.headers_mut().insert(header::CONNECTION, close);
        }
        return resp;
    }
    // Proxy requests; with proxy credentials configured, every one of them needs them.
    if let Some(denied) = check_auth(&req, &s) {
        return denied;
    }
    if req.method() == Method::CONNECT {
        s.metrics.request(Inbound::Connect);
        return connect(req, s, &st.cache.tasks).await;
    }
    match req.uri().scheme_str() {
        Some("http") => forward(req, s, st).await,
        other => text(
            StatusCode::BAD_REQUEST,
            format!(
                "burrow-local forwards http:// URLs; use CONNECT for {}://",
                other.unwrap_or("other")
            ),
        ),
    }
}

/// True if the request's `Host` names this listener: its address, localhost or a loopback
/// literal (with its port or none), or one of `host_names`. A web page that rebinds its
/// own name to 127.0.0.1 sends its own name, and is refused.
fn host_is_ours(req: &Request<Incoming>, local: SocketAddr, s: &Settings) -> bool {
    let Some(host) = req.headers().get(header::HOST) else {
        return true; // HTTP/1.0 without Host: not a browser
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host.as_str(), None),
    };
    if port.is_some_and(|p| p != local.port()) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let literal = name.parse::<std::net::IpAddr>().ok();
    name == "localhost"
        || literal.is_some_and(|ip| ip.is_loopback() || ip == local.ip())
        || s.host_names.iter().any(|n| n == name)
}

fn check_auth(req: &Request<Incoming>, s: &Settings) -> Option<Response<Body>> {
    let (user, pass) = s.proxy_auth.as_ref()?;
    let ok = req
        .headers()
        .get(header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(burrow_common::aead::decode_base64)
        .map(|raw| {
            let (u, p) = match raw.iter().position(|&b| b == b':') {
                Some(i) => (&raw[..i], &raw[i + 1..]),
                None => (&raw[..], &[][..]),
            };
            ct_eq(u, user.as_bytes()) & ct_eq(p, pass.expose().as_bytes())
        })
        .unwrap_or(false);
    if ok {
        return None;
    }
    let mut r = text(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "burrow-local: proxy authentication required",
    );
    r.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"burrow\""),
    );
    Some(r)
}

fn pac(local: SocketAddr, bypass: &[crate::own_pac::Bypass]) -> Response<Body> {
    let mut r = text(StatusCode::OK, crate::own_pac::script(local, bypass));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    r
}

/// `host:port` of a CONNECT or absolute-form request (port from the scheme if absent).
pub fn target_of(uri: &Uri, default_port: u16) -> Option<TargetAddr> {
    let auth = uri.authority()?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    format!(
        "{}:{}",
        bracket(host),
        auth.port_u16().unwrap_or(default_port)
    )
    .parse()
    .ok()
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

async fn connect(
    req: Request<Incoming>,
    s: Arc<Settings>,
    tasks: &tokio_util::task::TaskTracker,
) -> Response<Body> {
    let Some(target) = target_of(req.uri(), 443).filter(|_| req.uri().port_u16().is_some()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "burrow-local: CONNECT needs host:port",
        );
    };
    Span::current().record("target", tracing::field::display(&target));
    let plan = Plan::for_target(&target, &s);
    // Without a wait the app hears 200 now and its first bytes leave with the header.
    let mut early = None;
    if plan != Plan::Go {
        match open_tunnel(&target, &s, plan).await {
            Ok(t) => early = Some(t),
            Err(e) => {
                crate::dial::report(&e);
                return text(e.http_status(), format!("burrow-local: {e}"));
            }
        }
    }
    let idle = s.idle_timeout;
    tasks.spawn(
        async move {
            let up = match hyper::upgrade::on(req).await {
                Ok(up) => up,
                Err(e) => return debug!("CONNECT upgrade: {e}"),
            };
            let mut up = TokioIo::new(up);
            let mut tunnel = match early {
                Some(t) => t,
                None => match open_tunnel(&target, &s, plan).await {
                    Ok(mut t) => {
                        if let Err(e) = add_first_bytes(&mut t, Bytes::new(), &mut up).await {
                            return debug!("CONNECT client left: {e}");
                        }
                        t
                    }
                    Err(e) => return crate::dial::report(&e),
                },
            };
            let started = std::time::Instant::now();
            let (moved, r) = relay_tunnel(&mut up, &mut *tunnel, idle).await;
            report("CONNECT tunnel", moved.a_to_b, moved.b_to_a, started, r);
        }
        .instrument(Span::current()),
    );
    Response::new(BoxBody::default())
}

async fn forward(req: Request<Incoming>, s: Arc<Settings>, st: Arc<Conn>) -> Response<Body> {
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
    let origin = Origin { target, tls: None };
    origin::send(
        Request::from_parts(parts, body),
        &origin,
        upgrade,
        &s,
        &st.cache,
    )
    .await
}

/// A request for a reverse route: checked, rewritten for the upstream, sent through the
/// tunnel (TLS inside it for wss/https).
async fn reverse(
    req: Request<Incoming>,
    route: &Route,
    s: Arc<Settings>,
    st: Arc<Conn>,
) -> Response<Body> {
    let up = &route.upstream;
    Span::current().record("target", tracing::field::display(&up.target));
    let upgrade = match reverse::check(req.method(), req.headers()) {
        Ok(reverse::Kind::Plain) => Upgrade::No,
        Ok(reverse::Kind::WebSocket { accept }) => Upgrade::Checked(accept),
        Err(refusal) => return refusal.response(),
    };
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, !matches!(upgrade, Upgrade::No));
    let path = route::upstream_path(route, parts.uri.path(), parts.uri.query());
    parts.uri = match path.parse() {
        Ok(u) => u,
        Err(_) => return text(StatusCode::BAD_REQUEST, "burrow-local: bad path"),
    };
    if !route.preserve_host {
        if let Ok(h) = HeaderValue::from_str(&up.authority) {
            parts.headers.insert(header::HOST, h);
        }
    }
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", st.peer.ip()),
        None => st.peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let origin = Origin {
        target: up.target.clone(),
        tls: up.tls.clone(),
    };
    origin::send(
        Request::from_parts(parts, body),
        &origin,
        upgrade,
        &s,
        &st.cache,
    )
    .await
}
