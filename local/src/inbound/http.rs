//! HTTP on a listener (hyper): reads each request and sends it where it belongs. Proxy
//! requests pass Basic proxy auth when it is configured: a CONNECT is a tunnel
//! (`connect.rs`), an absolute-form request is forwarded (`forward.rs`). Origin-form
//! requests are for burrow-local itself: a reverse route (`reverse.rs`), else
//! `/proxy.pac`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use burrow_common::config::ct_eq;
use burrow_common::HostPort;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use super::{reverse, route};
use crate::inbound::connect::connect;
use crate::inbound::forward::forward;
use crate::inbound::origin::Cache;
use crate::inbound::respond::{closing, text, Body};
use crate::settings::Settings;
use crate::tools::metrics::Inbound;

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
        let resp = match route::find(&s.routes, &path) {
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
                reverse::serve(req, &r, &s, st.peer, &st.cache).await
            }
            None if path == "/proxy.pac" => pac(local, &s),
            None => text(
                StatusCode::NOT_FOUND,
                format!("burrow-local: no route for {path}"),
            ),
        };
        if upgrade && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // A refused upgrade ends the connection, whoever refused it.
            return closing(resp);
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
        Some("http") => forward(req, &s, &st.cache).await,
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
    let Ok(hp) = HostPort::parse(&host.to_ascii_lowercase(), Some(local.port())) else {
        return false;
    };
    if hp.port != local.port() {
        return false;
    }
    let name = hp.host.as_str();
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
        .and_then(burrow_common::key::decode_base64)
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

fn pac(local: SocketAddr, s: &Settings) -> Response<Body> {
    let mut r = text(
        StatusCode::OK,
        crate::inbound::own_pac::script(local, &s.bypass, s.rules.rules()),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    r
}
