//! The corporate proxy hop: which proxy (config or environment), and the CONNECT through
//! it — HTTP CONNECT with Basic or NTLM auth (the answer parsed by hyper, early bytes
//! kept) or
//! SOCKS5 with username/password (fast-socks5). The server's name goes to the proxy
//! unresolved.

pub mod http_connect;
#[cfg(feature = "negotiate")]
pub mod negotiate;
#[cfg(feature = "ntlm")]
pub mod ntlm;
pub mod scheme;

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;

use tokio::net::TcpStream;

use burrow_common::config::Secret;
use burrow_common::net::{connect_any, resolve, SocketOpts};
use burrow_common::prefixed::Prefixed;
use burrow_common::timeout::with_timeout;

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5 (`socks5://` and `socks5h://` alike: the name is always sent unresolved).
    Socks5,
}

/// A proxy to reach the server through.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// HTTP or SOCKS5.
    pub kind: ProxyKind,
    /// Proxy host.
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// Credentials, if the URL has `user:pass@`.
    pub auth: Option<(String, Secret)>,
    /// The scheme to answer the proxy with, if pinned (`outbound_auth`); else the
    /// strongest it offers that can be done.
    pub scheme: Option<http_connect::Scheme>,
    /// Who named it, which decides what it may be told.
    pub named_by: NamedBy,
}

/// Who named a proxy. The user's credentials (Basic, NTLM, Negotiate) go only to a proxy
/// the user named, or to one a PAC answer named whose host the user listed in
/// `proxy_auth_hosts`: a PAC comes over plain HTTP and WPAD from whoever answers for
/// `wpad` on the LAN, so a PAC alone cannot make burrow-local hand the password out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedBy {
    /// The config, the command line, the environment or the OS's proxy settings.
    User,
    /// A PAC (or WPAD) answer; `listed`: its host is in `proxy_auth_hosts`.
    Pac {
        /// In `proxy_auth_hosts`: NTLM and Negotiate may go to it, Basic (and a SOCKS5
        /// password) only when `outbound_auth = "basic"` is pinned.
        listed: bool,
    },
}

impl NamedBy {
    /// Whether the user's credentials may go to it, in a scheme that does not show them
    /// to the proxy (NTLMv2, Negotiate).
    pub fn may_authenticate(self) -> bool {
        !matches!(self, NamedBy::Pac { listed: false })
    }
}

/// A proxy that asked for credentials which were kept from it: it was named by a PAC
/// answer and is not allowed them (see [`NamedBy`]). The hop passes to the PAC's next
/// entry, as for a proxy that cannot be reached.
#[derive(Debug)]
pub struct Withheld(pub String);

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Withheld {}

impl Withheld {
    /// Whether `e` is one.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|r| r.is::<Withheld>())
    }

    /// The error for `proxy`, said once per proxy in the log (at warn) however often it
    /// asks: `why` is what it asked for and why none was sent.
    pub fn error(proxy: &ProxyUrl, why: &str) -> io::Error {
        static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let msg = format!("proxy {proxy} {why}; trying the next way");
        let key = format!("{}:{}", proxy.host, proxy.port);
        let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
        if !said.contains(&key) {
            said.push(key);
            tracing::warn!("{msg}");
        }
        io::Error::new(io::ErrorKind::PermissionDenied, Withheld(msg))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ProxyUrl {
    /// The URL without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
        };
        let user = self
            .auth
            .as_ref()
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

impl ProxyUrl {
    /// Parses `http://[user:pass@]host[:port]`, `socks5://…`, `socks5h://…` (a bare
    /// `host:port` is taken as http, as curl does).
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("proxy URL {:?}: {why}", redact(url));
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let (kind, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (ProxyKind::Http, 80),
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            "https" => return Err(bad("TLS to the proxy itself is not supported; use http://")),
            _ => return Err(bad("scheme must be http, socks5 or socks5h")),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let dec = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (Some((dec(u), Secret::new(dec(p)))), hp)
            }
            None => (None, rest),
        };
        let burrow_common::HostPort { host, port } =
            burrow_common::HostPort::parse(hostport, Some(default_port))
                .map_err(|_| bad("no host:port"))?;
        Ok(ProxyUrl {
            kind,
            host,
            port,
            auth,
            scheme: None,
            named_by: NamedBy::User,
        })
    }
}

/// The URL with any userinfo replaced by `***`, with or without a scheme.
fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |s| s + 3);
    match url.rfind('@') {
        Some(at) if at >= start => format!("{}***@{}", &url[..start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The environment's proxy for reaching `host`: `ALL_PROXY` / `SOCKS_PROXY` first, then
/// `HTTPS_PROXY`, then `HTTP_PROXY` (lower case before upper case, as curl reads them),
/// unless `NO_PROXY` covers `host`. `Ok(None)`: go direct.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
    host: &str,
) -> Result<Option<ProxyUrl>, String> {
    let var = |name: &'static str| {
        get(&name.to_ascii_lowercase())
            .or_else(|| get(name))
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    };
    if let Some((_, no)) = var("NO_PROXY") {
        if no_proxy_matches(&no, host) {
            return Ok(None);
        }
    }
    let chosen = var("ALL_PROXY")
        .or_else(|| var("SOCKS_PROXY"))
        .or_else(|| var("HTTPS_PROXY"))
        .or_else(|| var("HTTP_PROXY"));
    match chosen {
        None => Ok(None),
        Some((name, v)) => ProxyUrl::parse(&v)
            .map(Some)
            .map_err(|e| format!("{name}: {e}")),
    }
}

/// `NO_PROXY`: `*`, or a comma list of names (matching the name and its subdomains, a
/// leading dot allowed), IP addresses and CIDR blocks.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = burrow_common::hostport::unbracket(host).to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            let entry = entry
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map_or(entry.as_str(), |(h, _)| h);
            if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
                return cidr_contains(net, bits, ip);
            }
            let name = entry.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

fn cidr_contains(net: &str, bits: &str, ip: std::net::IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

pub(super) fn proxy_error(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

/// Connects to `host:port` through `proxy`, each step under `timeout`.
pub async fn connect(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<Prefixed<TcpStream>> {
    let tcp = reach(proxy, timeout, opts).await?;
    through(proxy, tcp, host, port, timeout, opts).await
}

/// A TCP connection to the proxy itself; an error means the proxy is not reachable.
pub async fn reach(
    proxy: &ProxyUrl,
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<TcpStream> {
    let addrs = resolve(&proxy.host, proxy.port, timeout)
        .await
        .map_err(|e| proxy_error(e.kind(), format!("proxy {proxy}: {e}")))?;
    connect_any(&addrs, timeout, opts)
        .await
        .map_err(|e| proxy_error(e.kind(), format!("proxy {proxy}: {e}")))
}

/// The CONNECT (or SOCKS5 request) to `host:port` on a connection to the proxy.
pub async fn through(
    proxy: &ProxyUrl,
    tcp: TcpStream,
    host: &str,
    port: u16,
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<Prefixed<TcpStream>> {
    let what = match proxy.kind {
        ProxyKind::Http => "proxy CONNECT",
        ProxyKind::Socks5 => "proxy SOCKS5 handshake",
    };
    with_timeout(what, timeout, async {
        match proxy.kind {
            ProxyKind::Http => {
                let redial = || reach(proxy, timeout, opts);
                http_connect::http_connect(proxy, tcp, redial, host, port).await
            }
            ProxyKind::Socks5 => socks5_connect(proxy, tcp, host, port)
                .await
                .map(|t| Prefixed::new(Bytes::new(), t)),
        }
    })
    .await
    .map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            proxy_error(e.kind(), format!("proxy {proxy}: {e}"))
        } else {
            e
        }
    })
}

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

async fn socks5_connect(
    proxy: &ProxyUrl,
    tcp: TcpStream,
    host: &str,
    port: u16,
) -> io::Result<TcpStream> {
    use fast_socks5::client::{Config, Socks5Stream};
    use fast_socks5::util::target_addr::TargetAddr;
    use fast_socks5::{AuthenticationMethod, Socks5Command};
    let auth = proxy
        .auth
        .as_ref()
        .map(|(u, p)| AuthenticationMethod::Password {
            username: u.clone(),
            password: p.expose().to_owned(),
        });
    let fail = |e: fast_socks5::SocksError| {
        if proxy.named_by != NamedBy::User
            && proxy.auth.is_none()
            && matches!(&e, fast_socks5::SocksError::AuthMethodUnacceptable(_))
        {
            return Withheld::error(
                proxy,
                &format!(
                    "asked for a SOCKS5 password ({e}); a proxy named by the PAC gets the password only when \
                     its host is in proxy_auth_hosts and outbound_auth = \"basic\""
                ),
            );
        }
        let kind = match &e {
            fast_socks5::SocksError::AuthenticationRejected(_)
            | fast_socks5::SocksError::AuthMethodUnacceptable(_) => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::ConnectionAborted,
        };
        proxy_error(kind, format!("proxy {proxy}: {e}"))
    };
    let mut s = Socks5Stream::use_stream(tcp, auth, Config::default())
        .await
        .map_err(fail)?;
    let target = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => TargetAddr::Ip(std::net::SocketAddr::new(ip, port)),
        Err(_) => TargetAddr::Domain(host.to_owned(), port),
    };
    s.request(Socks5Command::TCPConnect, target)
        .await
        .map_err(fail)?;
    Ok(s.get_socket())
}

#[cfg(test)]
mod tests;
