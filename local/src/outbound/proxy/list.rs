//! Lists of ways to the server (proxy URLs, PAC answers' entries, `direct`) and what
//! credentials each proxy of a list is given.

use burrow_common::config::Secret;

use super::{http_connect, NamedBy, ProxyKind, ProxyUrl};

/// What to answer corporate proxies with when their URL does not say
/// (`outbound_username` / `outbound_password`, `outbound_auth`).
#[derive(Clone, Debug, Default)]
pub struct ProxyAuth {
    /// Credentials for proxies named without them (a PAC answer, a list).
    pub credentials: Option<(String, Secret)>,
    /// The one scheme to use, if pinned.
    pub scheme: Option<http_connect::Scheme>,
}

/// Marks every proxy of a PAC answer as named by it; `listed(host)`: whether the user
/// listed that proxy (`proxy_auth_hosts`). An unlisted one keeps nothing, not even
/// userinfo the answer carried; a listed one gets `auth` as a user-named one does, except
/// that a password sent as it is (HTTP Basic, a SOCKS5 password) needs `outbound_auth =
/// "basic"` pinned.
pub fn named_by_pac(
    list: Vec<Option<ProxyUrl>>,
    auth: &ProxyAuth,
    listed: impl Fn(&ProxyUrl) -> bool,
) -> Vec<Option<ProxyUrl>> {
    list.into_iter()
        .map(|hop| {
            hop.map(|mut p| {
                let listed = listed(&p);
                p.named_by = NamedBy::Pac { listed };
                p.auth = None;
                p.scheme = None;
                if !listed {
                    return p;
                }
                let clear_ok = auth.scheme == Some(http_connect::Scheme::Basic);
                if p.kind == ProxyKind::Http || clear_ok {
                    p.auth = auth.credentials.clone();
                }
                p.scheme = auth.scheme;
                p
            })
        })
        .collect()
}

/// Gives `auth` to every proxy of `list` (named by the user): credentials where the URL
/// has none, the pinned scheme to all.
pub fn with_auth(list: Vec<Option<ProxyUrl>>, auth: &ProxyAuth) -> Vec<Option<ProxyUrl>> {
    list.into_iter()
        .map(|hop| {
            hop.map(|mut p| {
                if p.auth.is_none() {
                    p.auth = auth.credentials.clone();
                }
                p.scheme = auth.scheme.or(p.scheme);
                p
            })
        })
        .collect()
}

/// A list of ways to the server, tried in order: proxy URLs (`http://…`, `socks5://…`)
/// and `direct`, or a PAC answer's entries (`PROXY host:port`, `SOCKS5 host:port`,
/// `SOCKS host:port`, `DIRECT`), separated by `;` or `,`.
pub fn parse_list(list: &str) -> Result<Vec<Option<ProxyUrl>>, String> {
    let mut out = Vec::new();
    for entry in entries(list).map(str::trim).filter(|e| !e.is_empty()) {
        let (word, rest) = entry.split_once(char::is_whitespace).unwrap_or((entry, ""));
        let rest = rest.trim();
        let hop = match word.to_ascii_uppercase().as_str() {
            "DIRECT" if rest.is_empty() => None,
            "PROXY" | "HTTP" if !rest.is_empty() => {
                Some(ProxyUrl::parse(&format!("http://{rest}"))?)
            }
            "SOCKS" | "SOCKS5" if !rest.is_empty() => {
                Some(ProxyUrl::parse(&format!("socks5://{rest}"))?)
            }
            "HTTPS" if !rest.is_empty() => {
                return Err(format!(
                    "proxy list entry {entry:?}: TLS to the proxy itself is not supported"
                ))
            }
            "PROXY" | "HTTP" | "SOCKS" | "SOCKS5" | "HTTPS" => {
                return Err(format!("proxy list entry {entry:?}: no host:port"))
            }
            _ => Some(ProxyUrl::parse(entry)?),
        };
        out.push(hop);
    }
    if out.is_empty() {
        return Err("the proxy list is empty (use direct)".into());
    }
    Ok(out)
}

/// The entries of a list, split at `;` and `,` — except inside a URL's userinfo, where
/// RFC 3986 allows both unescaped (`http://u:pa,ss@proxy:3128`): a password is never cut
/// in two, one half of it shown as a host or a port.
fn entries(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = list;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // A URL's userinfo ends at its last `@` before any space or the next URL.
        let from = match rest.find("://") {
            Some(i) if !rest[..i].contains([';', ',']) => {
                let after = &rest[i + 3..];
                let span = after
                    .find(char::is_whitespace)
                    .into_iter()
                    .chain(after.find("://"))
                    .min()
                    .unwrap_or(after.len());
                after[..span].rfind('@').map_or(0, |at| i + 3 + at)
            }
            _ => 0,
        };
        let end = rest[from..]
            .find([';', ','])
            .map_or(rest.len(), |e| from + e);
        let entry = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        Some(entry)
    })
}
