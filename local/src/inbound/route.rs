//! Reverse routes: which upstream serves a request path. Pure.
//!
//! A route maps a path prefix to an upstream URL (`ws`, `wss`, `http`, `https`). The
//! scheme picks TLS or not; the same route carries WebSocket upgrades (ws/wss) and plain
//! requests (http/https) to that upstream. The longest matching prefix wins, matching on
//! whole path segments; the path after the prefix and the query are appended to the
//! upstream's path.

use std::sync::Arc;

use burrow_common::hostport::{bracket, HostPort};
use burrow_common::TargetAddr;

use crate::outbound::tls::TlsTarget;

/// One reverse route, validated.
#[derive(Clone, Debug)]
pub struct Route {
    /// Path prefix, starting with `/`.
    pub path: String,
    /// Where matching requests go.
    pub upstream: Upstream,
    /// Forward the client's Host header instead of the upstream's.
    pub preserve_host: bool,
    /// TLS verification is off for this route (warned about at start).
    pub insecure: bool,
    /// If set, a request with an `Origin` header must name one of these.
    pub origins: Option<Vec<String>>,
}

/// An upstream: host, port, TLS or not, and a path prefix.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The URL as configured (for logs).
    pub url: String,
    /// host:port, dialled by the server.
    pub target: TargetAddr,
    /// `Host` header value for the upstream (port omitted when it is the scheme's default).
    pub authority: String,
    /// TLS made by burrow-local inside the tunnel (wss, https).
    pub tls: Option<Arc<TlsTarget>>,
    /// Path prefix on the upstream, without a trailing `/`.
    pub path: String,
}

/// The parts of an upstream URL, before TLS settings are attached.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Whether the scheme is wss or https.
    pub tls: bool,
    /// Host, IPv6 without brackets.
    pub host: String,
    /// Port (from the URL or the scheme).
    pub port: u16,
    /// Path without a trailing `/` (empty for the root).
    pub path: String,
}

/// Parses `ws://h[:p]/path`, `wss://…`, `http://…`, `https://…`.
pub fn parse_upstream(url: &str) -> Result<ParsedUrl, String> {
    let bad = |why: &str| format!("upstream {url:?}: {why}");
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        _ => return Err(bad("scheme must be ws, wss, http or https")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains('?') {
        return Err(bad("a query belongs to requests, not to the upstream"));
    }
    let default_port = if tls { 443 } else { 80 };
    let HostPort { host, port } = HostPort::parse(authority, Some(default_port))
        .map_err(|_| bad("no host[:port], or a bad one"))?;
    Ok(ParsedUrl {
        tls,
        host,
        port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

/// `UPSTREAM_HOST=host:port` (simple-proxy): one catch-all route; port 443 means TLS.
pub fn upstream_host_url(value: &str) -> Result<String, String> {
    let hp: HostPort = value
        .parse()
        .map_err(|_| format!("UPSTREAM_HOST {value:?} is not host:port"))?;
    Ok(if hp.port == 443 {
        format!("wss://{}", bracket(&hp.host))
    } else {
        format!("ws://{hp}")
    })
}

/// Refuses a request path that could climb out of a route's prefix at the upstream:
/// `.` or `..` segments, in plain or percent-encoded form, encoded slashes and
/// backslashes (which some upstreams decode into separators).
pub fn check_path(path: &str) -> Result<(), &'static str> {
    // Double encodings (`%252e`) are undone first: an upstream may decode twice.
    let mut lower = path.to_ascii_lowercase();
    while lower.contains("%25") {
        lower = lower.replace("%25", "%");
    }
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Err("an encoded slash or a backslash in the path");
    }
    let dots = lower.split('/').any(|seg| {
        let decoded = seg.replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if dots {
        return Err("a dot segment in the path");
    }
    Ok(())
}

/// True if `origin` may use `route`: no allow-list, no `Origin` header, or a listed one.
pub fn origin_allowed(route: &Route, origin: Option<&str>) -> bool {
    match (&route.origins, origin) {
        (Some(list), Some(o)) => list.iter().any(|a| a.eq_ignore_ascii_case(o.trim())),
        _ => true,
    }
}

/// The route for `path`: the longest prefix that matches whole segments.
pub fn find<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    routes
        .iter()
        .filter(|r| prefix_matches(&r.path, path))
        .max_by_key(|r| r.path.len())
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The upstream path for a request: upstream prefix + what follows the route prefix +
/// the query.
pub fn upstream_path(route: &Route, path: &str, query: Option<&str>) -> String {
    let rest = &path[route.path.trim_end_matches('/').len().min(path.len())..];
    let mut out = format!("{}{}", route.upstream.path, rest);
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, url: &str) -> Route {
        let u = parse_upstream(url).expect("url");
        Route {
            path: path.into(),
            upstream: Upstream {
                url: url.into(),
                target: TargetAddr::Domain(u.host.clone(), u.port),
                authority: u.host,
                tls: None,
                path: u.path,
            },
            preserve_host: false,
            insecure: false,
            origins: None,
        }
    }

    #[test]
    fn dot_segments_in_any_spelling_are_refused() {
        for bad in [
            "/chat/../admin",
            "/chat/%2e%2e/admin",
            "/chat/%2E%2e/admin",
            "/chat/.%2e/admin",
            "/chat/./x",
            "/chat/%2e/x",
            "/chat%2f..%2fadmin",
            "/chat/..",
            "/chat/%252e%252e/admin",
            "/chat\\..\\admin",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in ["/chat", "/chat/room.1", "/chat/..x", "/chat/a...b", "/"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn origin_allow_list() {
        let mut r = route("/chat", "ws://b");
        assert!(origin_allowed(&r, Some("https://evil.example")));
        r.origins = Some(vec!["https://app.example".into()]);
        assert!(origin_allowed(&r, Some("https://app.example")));
        assert!(!origin_allowed(&r, Some("https://evil.example")));
        assert!(
            origin_allowed(&r, None),
            "non-browser clients send no Origin"
        );
    }

    #[test]
    fn parses_upstream_urls() {
        let u = parse_upstream("wss://example.com/chat/").expect("wss");
        assert_eq!(
            u,
            ParsedUrl {
                tls: true,
                host: "example.com".into(),
                port: 443,
                path: "/chat".into()
            }
        );
        let u = parse_upstream("ws://[::1]:8080").expect("v6");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "")
        );
        assert_eq!(parse_upstream("http://h:81/x").expect("http").port, 81);
        for bad in ["ftp://h", "h:80", "ws://", "ws://h/x?q=1", "ws://h:99999"] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let routes = [
            route("/", "ws://a"),
            route("/chat", "ws://b"),
            route("/chat/admin", "ws://c"),
        ];
        let pick = |p| find(&routes, p).map(|r| r.upstream.url.as_str());
        assert_eq!(pick("/chat"), Some("ws://b"));
        assert_eq!(pick("/chat/room"), Some("ws://b"));
        assert_eq!(pick("/chat/admin/x"), Some("ws://c"));
        assert_eq!(pick("/chatroom"), Some("ws://a"), "not a segment boundary");
        assert_eq!(pick("/other"), Some("ws://a"));
        let only_chat = [route("/chat", "ws://b")];
        assert!(find(&only_chat, "/nope").is_none());
    }

    #[test]
    fn path_and_query_are_forwarded() {
        let r = route("/chat", "wss://h/socket");
        assert_eq!(upstream_path(&r, "/chat", None), "/socket");
        assert_eq!(
            upstream_path(&r, "/chat/room1", Some("a=1")),
            "/socket/room1?a=1"
        );
        let root = route("/", "ws://h:1");
        assert_eq!(upstream_path(&root, "/x/y", Some("q")), "/x/y?q");
        assert_eq!(upstream_path(&root, "/", None), "/");
    }

    #[test]
    fn upstream_host_variable() {
        assert_eq!(
            upstream_host_url("api.example.com:443").expect("443"),
            "wss://api.example.com"
        );
        assert_eq!(
            upstream_host_url("127.0.0.1:8080").expect("plain"),
            "ws://127.0.0.1:8080"
        );
        assert!(upstream_host_url("nohost").is_err());
    }
}
