//! A request for a reverse route: the WebSocket handshake checked (RFC 6455 §4.2.1,
//! §4.1), the request rewritten for the upstream and sent to it through the tunnel.

use std::net::SocketAddr;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Span;

use crate::inbound::headers::{is_websocket_upgrade, strip_hop_by_hop};
use crate::inbound::origin::{self, Cache, Origin, Upgrade};
use crate::inbound::respond::{text, Body};
use crate::inbound::route::{self, Route};
use crate::settings::Settings;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A request for a reverse route: checked, rewritten for the upstream, sent through the
/// tunnel (TLS inside it for wss/https).
pub async fn serve(
    req: Request<Incoming>,
    route: &Route,
    s: &Settings,
    peer: SocketAddr,
    cache: &Cache,
) -> Response<Body> {
    let up = &route.upstream;
    Span::current().record("target", tracing::field::display(&up.target));
    let upgrade = match check(req.method(), req.headers()) {
        Ok(Kind::Plain) => Upgrade::No,
        Ok(Kind::WebSocket { accept }) => Upgrade::Checked(accept),
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
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    // A route's upstream is reached through the tunnel, whatever the rules say.
    let origin = Origin {
        target: up.target.clone(),
        tls: up.tls.clone(),
        via: crate::outbound::rules::Via::Tunnel,
    };
    origin::send(Request::from_parts(parts, body), &origin, upgrade, s, cache).await
}

/// What kind of request came to a route.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A plain HTTP request.
    Plain,
    /// A valid WebSocket opening handshake; the upstream must answer with this accept.
    WebSocket {
        /// The Sec-WebSocket-Accept the upstream's 101 must carry.
        accept: String,
    },
}

/// A broken WebSocket opening handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400 with the reason.
    Bad(&'static str),
    /// 426: only version 13 is spoken.
    Version,
}

impl Refusal {
    /// The answer for the client.
    pub fn response(&self) -> http::Response<Body> {
        match self {
            Refusal::Bad(why) => text(
                StatusCode::BAD_REQUEST,
                format!("burrow-local: bad WebSocket handshake: {why}"),
            ),
            Refusal::Version => {
                let mut r = text(
                    StatusCode::UPGRADE_REQUIRED,
                    "burrow-local: WebSocket version 13 required",
                );
                r.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                r
            }
        }
    }
}

/// Classifies a request; a broken WebSocket handshake is refused (400, or 426 for another
/// version).
pub fn check(method: &Method, h: &HeaderMap) -> Result<Kind, Refusal> {
    let wants_ws = h
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        });
    if !wants_ws {
        return Ok(Kind::Plain);
    }
    if method != Method::GET {
        return Err(Refusal::Bad("method must be GET"));
    }
    if !is_websocket_upgrade(h) {
        return Err(Refusal::Bad("Connection must include upgrade"));
    }
    let version = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version.map(str::trim) != Some("13") {
        return Err(Refusal::Version);
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|raw| raw.len() == 16)
        })
        .ok_or(Refusal::Bad("Sec-WebSocket-Key must be 16 bytes in base64"))?;
    Ok(Kind::WebSocket {
        accept: accept_for(key),
    })
}

/// `base64(SHA-1(key + GUID))`.
pub fn accept_for(key: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).expect("n"),
                HeaderValue::from_str(v).expect("v"),
            );
        }
        h
    }

    #[test]
    fn rfc6455_example_accept() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake_checks() {
        let good = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            check(&Method::GET, &headers(&good)).ok(),
            Some(Kind::WebSocket {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            })
        );
        assert_eq!(
            check(&Method::GET, &headers(&[("accept", "*/*")])).ok(),
            Some(Kind::Plain)
        );
        let status = |pairs: &[(&str, &str)], m: &Method| {
            check(m, &headers(pairs))
                .err()
                .map(|r| r.response().status().as_u16())
        };
        assert_eq!(status(&good, &Method::POST), Some(400));
        let mut no_key = good.to_vec();
        no_key.pop();
        assert_eq!(status(&no_key, &Method::GET), Some(400));
        let mut short_key = no_key.clone();
        short_key.push(("sec-websocket-key", "AAEC"));
        assert_eq!(status(&short_key, &Method::GET), Some(400));
        let mut v8 = good.to_vec();
        v8[2] = ("sec-websocket-version", "8");
        assert_eq!(status(&v8, &Method::GET), Some(426));
    }
}
