//! The corporate proxy hop: which proxy (config or environment), and the CONNECT through
//! it — HTTP CONNECT with Basic or NTLM auth (the answer parsed by hyper, early bytes
//! kept) or
//! SOCKS5 with username/password (fast-socks5). The server's name goes to the proxy
//! unresolved.

mod env;
pub mod http_connect;
mod list;
#[cfg(feature = "negotiate")]
pub mod negotiate;
#[cfg(all(feature = "ntlm", not(windows)))]
pub mod ntlm;
pub mod scheme;
mod socks5;
#[cfg(windows)]
mod windows_auth;

pub use env::{from_env, no_proxy_matches};
pub use list::{named_by_pac, parse_list, with_auth, ProxyAuth};

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
            ProxyKind::Socks5 => socks5::connect(proxy, tcp, host, port)
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod connect_tests;
