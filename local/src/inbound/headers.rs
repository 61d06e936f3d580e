//! Hop-by-hop headers (RFC 9110 §7.6.1): they belong to one connection and are never
//! forwarded, except the WebSocket upgrade pair, which is relayed.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const ALWAYS: [HeaderName; 7] = [
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// True for `Connection: upgrade` + `Upgrade: websocket`.
pub fn is_websocket_upgrade(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Removes Connection and every header it names, and the fixed hop-by-hop set. With
/// `keep_websocket` the `Upgrade: websocket` header stays and `Connection: upgrade` is set.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_websocket: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        h.remove(name);
    }
    h.remove(header::CONNECTION);
    for name in ALWAYS {
        h.remove(name);
    }
    if keep_websocket {
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn strips_connection_named_and_fixed_headers() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn websocket_upgrade_is_kept() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("upgrade").and_then(|v| v.to_str().ok()),
            Some("websocket")
        );
        assert_eq!(
            h.get("connection").and_then(|v| v.to_str().ok()),
            Some("upgrade")
        );
        assert!(h.contains_key("sec-websocket-key"));
    }
}
