//! The HTTP proxy (hyper): CONNECT, absolute-form forwarding with keep-alive, Basic proxy
//! auth, and `/proxy.pac`. Every request on a kept-alive connection passes the same checks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use burrow_common::config::ct_eq;
use burrow_common::relay::relay;
use burrow_common::TargetAddr;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::{debug, info, Instrument, Span};

use crate::dial::open_tunnel;
use crate::hop::{is_websocket_upgrade, strip_hop_by_hop};
use crate::Settings;

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

/// Per client connection: the origin connection of the last forwarded request, reused
/// while requests keep going to the same host.
#[derive(Default)]
struct Conn {
    origin: Mutex<Option<(String, SendRequest<Incoming>)>>,
}

/// Serves HTTP/1 on `conn` until the client leaves.
pub async fn serve(settings: Arc<Settings>, conn: TcpStream) {
    let local = conn
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let state = Arc::new(Conn::default());
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
}

async fn handle(
    req: Request<Incoming>,
    s: Arc<Settings>,
    st: Arc<Conn>,
    local: SocketAddr,
) -> Response<Body> {
    if let Some(denied) = check_auth(&req, &s) {
        return denied;
    }
    if req.method() == Method::CONNECT {
        return connect(req, s).await;
    }
    match req.uri().scheme_str() {
        None if req.uri().path() == "/proxy.pac" => pac(local),
        None => text(
            StatusCode::NOT_FOUND,
            format!("burrow-local: nothing at {}", req.uri().path()),
        ),
        Some("http") => forward(req, s, st).await,
        Some(other) => text(
            StatusCode::BAD_REQUEST,
            format!("burrow-local forwards http:// URLs; use CONNECT for {other}://"),
        ),
    }
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

fn pac(local: SocketAddr) -> Response<Body> {
    let script = format!(
        "function FindProxyForURL(url, host) {{\n  return \"PROXY {local}; SOCKS5 {local}\";\n}}"
    );
    let mut r = text(StatusCode::OK, script);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    r
}

/// `host:port` of a CONNECT or absolute-form request (port from the scheme if absent).
fn target_of(uri: &Uri, default_port: u16) -> Option<TargetAddr> {
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

async fn connect(req: Request<Incoming>, s: Arc<Settings>) -> Response<Body> {
    let Some(target) = target_of(req.uri(), 443).filter(|_| req.uri().port_u16().is_some()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "burrow-local: CONNECT needs host:port",
        );
    };
    Span::current().record("target", tracing::field::display(&target));
    let mut tunnel = match open_tunnel(&target, &s).await {
        Ok(t) => t,
        Err(e) => {
            info!("{e}");
            return text(e.http_status(), format!("burrow-local: {e}"));
        }
    };
    let idle = s.idle_timeout;
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    let (moved, r) = relay(&mut TokioIo::new(up), &mut tunnel, idle).await;
                    info!(
                        up = moved.a_to_b,
                        down = moved.b_to_a,
                        "CONNECT closed{}",
                        r.err().map(|e| format!(": {e}")).unwrap_or_default()
                    );
                }
                Err(e) => debug!("CONNECT upgrade: {e}"),
            }
        }
        .instrument(Span::current()),
    );
    Response::new(BoxBody::default())
}

async fn forward(mut req: Request<Incoming>, s: Arc<Settings>, st: Arc<Conn>) -> Response<Body> {
    let Some(target) = target_of(req.uri(), 80) else {
        return text(StatusCode::BAD_REQUEST, "burrow-local: bad request target");
    };
    Span::current().record("target", tracing::field::display(&target));
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let key = target.to_string();
    let ws = is_websocket_upgrade(req.headers());
    let client_upgrade = ws.then(|| hyper::upgrade::on(&mut req));

    let cached = st.origin.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut sender = match cached {
        Some((k, sender)) if k == key && sender.is_ready() => sender,
        _ => match origin(&target, &s).await {
            Ok(sender) => sender,
            Err(resp) => return resp,
        },
    };

    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
    strip_hop_by_hop(&mut parts.headers, ws);
    // Framing is hyper's to decide from the body: never two lengths, never CL with TE.
    parts.headers.remove(header::CONTENT_LENGTH);
    match HeaderValue::from_str(&authority) {
        Ok(h) => {
            parts.headers.insert(header::HOST, h);
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "burrow-local: bad host"),
    }
    parts.version = http::Version::HTTP_11;
    let mut resp = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("burrow-local: origin {key}: {e}"),
            )
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let origin_upgrade = hyper::upgrade::on(&mut resp);
            let idle = s.idle_timeout;
            tokio::spawn(
                async move {
                    match tokio::try_join!(client_upgrade, origin_upgrade) {
                        Ok((c, o)) => {
                            let (moved, _) =
                                relay(&mut TokioIo::new(c), &mut TokioIo::new(o), idle).await;
                            info!(up = moved.a_to_b, down = moved.b_to_a, "websocket closed");
                        }
                        Err(e) => debug!("websocket upgrade: {e}"),
                    }
                }
                .instrument(Span::current()),
            );
        }
    } else {
        *st.origin.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, sender));
    }
    let (mut parts, body) = resp.into_parts();
    info!(status = parts.status.as_u16(), "forwarded {method}");
    strip_hop_by_hop(
        &mut parts.headers,
        parts.status == StatusCode::SWITCHING_PROTOCOLS,
    );
    Response::from_parts(parts, body.boxed())
}

/// A new HTTP/1 client connection to `target` through a fresh tunnel.
async fn origin(
    target: &TargetAddr,
    s: &Settings,
) -> Result<SendRequest<Incoming>, Response<Body>> {
    let tunnel = open_tunnel(target, s).await.map_err(|e| {
        info!("{e}");
        text(e.http_status(), format!("burrow-local: {e}"))
    })?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .handshake(TokioIo::new(tunnel))
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
