//! The corporate proxy hop: which proxy (config or environment), and the CONNECT through
//! it — HTTP CONNECT with Basic or NTLM auth (the answer parsed by hyper, early bytes
//! kept) or
//! SOCKS5 with username/password (fast-socks5). The server's name goes to the proxy
//! unresolved.

use std::fmt;
use std::io;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Secret;
use crate::net::{connect_any, resolve, SocketOpts};
use crate::outbound::prefixed::Prefixed;
use crate::timeout::with_timeout;

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
        let (host, port) = match crate::config::split_host_port(hostport) {
            Some(hp) => hp,
            None if !hostport.is_empty() && !hostport.contains([':', '/', ' ']) => {
                (hostport.to_owned(), default_port)
            }
            None => return Err(bad("no host:port")),
        };
        Ok(ProxyUrl {
            kind,
            host,
            port,
            auth,
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
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
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

fn proxy_error(kind: io::ErrorKind, msg: String) -> io::Error {
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
    through(proxy, tcp, host, port, timeout).await
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
) -> io::Result<Prefixed<TcpStream>> {
    let what = match proxy.kind {
        ProxyKind::Http => "proxy CONNECT",
        ProxyKind::Socks5 => "proxy SOCKS5 handshake",
    };
    with_timeout(what, timeout, async {
        match proxy.kind {
            ProxyKind::Http => http_connect(proxy, tcp, host, port).await,
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

/// Gives `auth` to every proxy of `list` named without credentials.
pub fn with_credentials(
    list: Vec<Option<ProxyUrl>>,
    auth: Option<&(String, Secret)>,
) -> Vec<Option<ProxyUrl>> {
    list.into_iter()
        .map(|hop| {
            hop.map(|mut p| {
                if p.auth.is_none() {
                    p.auth = auth.cloned();
                }
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
    for entry in list
        .split([';', ','])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
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

/// Proxies that asked for NTLM: later connections to them start with it (no Basic
/// credentials sent first).
static NTLM_PROXIES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn wants_ntlm(proxy: &ProxyUrl) -> bool {
    let key = format!("{}:{}", proxy.host, proxy.port);
    let known = NTLM_PROXIES.lock().unwrap_or_else(|p| p.into_inner());
    known.contains(&key)
}

fn remember_ntlm(proxy: &ProxyUrl) {
    let key = format!("{}:{}", proxy.host, proxy.port);
    let mut known = NTLM_PROXIES.lock().unwrap_or_else(|p| p.into_inner());
    if !known.contains(&key) {
        known.push(key);
    }
}

/// The schemes a proxy's answer offers, by name (`Basic`, `NTLM`, `Negotiate`…).
fn offered(resp: &http::Response<hyper::body::Incoming>) -> Vec<String> {
    resp.headers()
        .get_all(header::PROXY_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_owned())
        .collect()
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>;

/// One `CONNECT authority` on the connection, with `auth` as Proxy-Authorization.
async fn send_connect(
    sender: &mut Sender,
    proxy: &ProxyUrl,
    authority: &str,
    auth: Option<String>,
) -> io::Result<http::Response<hyper::body::Incoming>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(authority)
        .header(header::HOST, authority);
    if let Some(a) = auth {
        req = req.header(header::PROXY_AUTHORIZATION, a);
    }
    let req = req.body(http_body_util::Empty::new()).map_err(|e| {
        proxy_error(
            io::ErrorKind::InvalidInput,
            format!("CONNECT {authority}: {e}"),
        )
    })?;
    sender.ready().await.map_err(|e| {
        proxy_error(
            io::ErrorKind::ConnectionAborted,
            format!("proxy {proxy} closed the connection before the next step: {e}"),
        )
    })?;
    sender.send_request(req).await.map_err(|e| {
        proxy_error(
            io::ErrorKind::ConnectionAborted,
            format!("proxy {proxy}: {e}"),
        )
    })
}

/// Reads and drops a refusal's body (at most 64 KiB), so the connection can carry the
/// next step of an exchange.
async fn drain(resp: http::Response<hyper::body::Incoming>) {
    use http_body_util::BodyExt;
    let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await;
}

/// NTLM left out of this build (the `ntlm` feature): say so.
#[cfg(not(feature = "ntlm"))]
async fn ntlm_connect(
    _sender: &mut Sender,
    proxy: &ProxyUrl,
    _authority: &str,
    _user: &str,
    _pass: &Secret,
) -> io::Result<http::Response<hyper::body::Incoming>> {
    Err(proxy_error(
        io::ErrorKind::PermissionDenied,
        format!("proxy {proxy} wants NTLM, which this build leaves out"),
    ))
}

/// NTLM on one kept-alive connection: Type 1 → the proxy's 407 with Type 2 → Type 3.
#[cfg(feature = "ntlm")]
async fn ntlm_connect(
    sender: &mut Sender,
    proxy: &ProxyUrl,
    authority: &str,
    user: &str,
    pass: &Secret,
) -> io::Result<http::Response<hyper::body::Incoming>> {
    let mut x = super::ntlm::Exchange::new(user, pass, &proxy.host)?;
    let first = send_connect(sender, proxy, authority, Some(x.negotiate()?)).await?;
    if first.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Ok(first);
    }
    let challenge = first
        .headers()
        .get_all(header::PROXY_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("NTLM "))
        .map(str::to_owned)
        .ok_or_else(|| {
            proxy_error(
                io::ErrorKind::PermissionDenied,
                format!("proxy {proxy} answered the NTLM negotiate without a challenge (407)"),
            )
        })?;
    drain(first).await;
    let answer = x.authenticate(&challenge)?;
    send_connect(sender, proxy, authority, Some(answer)).await
}

/// `CONNECT host:port` over `tcp`; on 200 the tunnel, with any bytes that came with it.
/// With credentials: Basic at once, unless the proxy is known to want NTLM; a 407 that
/// offers NTLM is answered with the NTLM exchange on the same connection (and the proxy
/// remembered).
pub async fn http_connect(
    proxy: &ProxyUrl,
    tcp: TcpStream,
    host: &str,
    port: u16,
) -> io::Result<Prefixed<TcpStream>> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(|e| proxy_error(io::ErrorKind::Other, format!("proxy {proxy}: {e}")))?;
    let driver = tokio::spawn(conn.with_upgrades());
    let mut scheme = "Basic";
    let resp = match &proxy.auth {
        Some((user, pass)) if wants_ntlm(proxy) => {
            scheme = "NTLM";
            ntlm_connect(&mut sender, proxy, &authority, user, pass).await?
        }
        auth => {
            let basic = auth.as_ref().map(|(user, pass)| {
                let raw = format!("{user}:{}", pass.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            });
            let resp = send_connect(&mut sender, proxy, &authority, basic).await?;
            let ntlm = offered(&resp)
                .iter()
                .any(|s| s.eq_ignore_ascii_case("NTLM"));
            match &proxy.auth {
                Some((user, pass))
                    if resp.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED && ntlm =>
                {
                    remember_ntlm(proxy);
                    scheme = "NTLM";
                    drain(resp).await;
                    ntlm_connect(&mut sender, proxy, &authority, user, pass).await?
                }
                _ => resp,
            }
        }
    };
    let status = resp.status();
    if status != StatusCode::OK {
        driver.abort();
        let offered = offered(&resp).join(", ");
        let line = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let msg = match status {
            StatusCode::PROXY_AUTHENTICATION_REQUIRED if proxy.auth.is_some() => format!(
                "proxy {proxy} refused the credentials ({line}; it offers: {}); sent with {scheme}",
                if offered.is_empty() { "no scheme" } else { &offered }
            ),
            StatusCode::PROXY_AUTHENTICATION_REQUIRED => format!(
                "proxy {proxy} wants credentials ({line}; it offers: {}); put user:pass@ in the proxy URL",
                if offered.is_empty() { "no scheme" } else { &offered }
            ),
            StatusCode::FORBIDDEN => format!("proxy {proxy} refused CONNECT to {authority} ({line})"),
            _ => format!("proxy {proxy} answered CONNECT {authority} with {line}"),
        };
        return Err(proxy_error(io::ErrorKind::PermissionDenied, msg));
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| {
        proxy_error(
            io::ErrorKind::ConnectionAborted,
            format!("proxy {proxy}: {e}"),
        )
    })?;
    let parts = upgraded.downcast::<TokioIo<TcpStream>>().map_err(|_| {
        proxy_error(
            io::ErrorKind::Other,
            "proxy tunnel: unexpected stream type".into(),
        )
    })?;
    Ok(Prefixed::new(parts.read_buf, parts.io.into_inner()))
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
#[path = "proxy_tests.rs"]
mod tests;
