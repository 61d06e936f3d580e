//! `CONNECT host:port` through an HTTP corporate proxy, answering its 407 with the
//! strongest scheme it offers that we can do — Negotiate (Kerberos, the user's ticket
//! cache) > NTLM (credentials) > Basic (credentials) — unless `outbound_auth` pins one.
//! Every step runs on one kept-alive proxy connection; a proxy that asked for a scheme is
//! remembered, so later connections start with it.

use std::io;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{proxy_error, NamedBy, ProxyUrl, Withheld};
use burrow_common::prefixed::Prefixed;

use super::scheme::{choose, learned, offered, probe_lock, remember};
pub use super::scheme::{scheme_in_use, Scheme};

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>;
type Response = http::Response<hyper::body::Incoming>;

/// One `CONNECT authority` on the connection, with `auth` as Proxy-Authorization.
async fn send_connect(
    sender: &mut Sender,
    proxy: &ProxyUrl,
    authority: &str,
    auth: Option<String>,
) -> io::Result<Response> {
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
async fn drain(resp: Response) {
    use http_body_util::BodyExt;
    let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await;
}

/// The CONNECT answered with `scheme`.
async fn attempt(
    scheme: Scheme,
    sender: &mut Sender,
    proxy: &ProxyUrl,
    authority: &str,
) -> io::Result<Response> {
    match (scheme, &proxy.auth) {
        (Scheme::Basic, Some((user, pass))) => {
            let raw = format!("{user}:{}", pass.expose());
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            );
            send_connect(sender, proxy, authority, Some(basic)).await
        }
        #[cfg(windows)]
        (Scheme::Ntlm | Scheme::Negotiate, _) => windows(scheme, sender, proxy, authority).await,
        #[cfg(not(windows))]
        (Scheme::Ntlm, Some(_)) => ntlm(sender, proxy, authority).await,
        #[cfg(not(windows))]
        (Scheme::Negotiate, _) => negotiate(sender, proxy, authority).await,
        (_, None) => send_connect(sender, proxy, authority, None).await,
    }
}

/// NTLM or Negotiate through Windows's SSPI: the configured user, else the logged-on one;
/// as many legs as the package needs (NTLM two, Kerberos one), at most four.
#[cfg(windows)]
async fn windows(
    scheme: Scheme,
    sender: &mut Sender,
    proxy: &ProxyUrl,
    authority: &str,
) -> io::Result<Response> {
    use super::windows_auth::Exchange;
    let name = scheme.name();
    let (host, auth) = (proxy.host.clone(), proxy.auth.clone());
    let said = |e: io::Error| proxy_error(e.kind(), format!("proxy {proxy}: {e}"));
    // SSPI may ask a domain controller (a Kerberos ticket): off the runtime.
    let (mut x, mut value) = tokio::task::spawn_blocking(move || {
        let who = auth.as_ref().map(|(u, p)| (u.as_str(), p));
        let mut x = Exchange::new(name, who, &host)?;
        let first = x.first()?;
        Ok::<_, io::Error>((x, first))
    })
    .await
    .map_err(io::Error::other)?
    .map_err(said)?;
    for _ in 0..4 {
        let resp = send_connect(sender, proxy, authority, Some(value)).await?;
        if resp.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Ok(resp);
        }
        let prefix = format!("{name} ");
        let Some(challenge) = resp
            .headers()
            .get_all(header::PROXY_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&prefix))
            .map(str::to_owned)
        else {
            return Ok(resp);
        };
        drain(resp).await;
        let (back, next) = tokio::task::spawn_blocking(move || {
            let next = x.next(&challenge);
            (x, next)
        })
        .await
        .map_err(io::Error::other)?;
        x = back;
        match next.map_err(said)? {
            Some(v) => value = v,
            None => {
                return Err(proxy_error(
                    io::ErrorKind::PermissionDenied,
                    format!("proxy {proxy} refused {name} (407 after the last leg)"),
                ))
            }
        }
    }
    Err(proxy_error(
        io::ErrorKind::PermissionDenied,
        format!("proxy {proxy}: {name} did not finish in four legs"),
    ))
}

#[cfg(all(feature = "ntlm", not(windows)))]
async fn ntlm(sender: &mut Sender, proxy: &ProxyUrl, authority: &str) -> io::Result<Response> {
    let Some((user, pass)) = &proxy.auth else {
        return send_connect(sender, proxy, authority, None).await;
    };
    // Type 1 → the proxy's 407 with Type 2 → Type 3.
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

#[cfg(not(any(feature = "ntlm", windows)))]
async fn ntlm(_: &mut Sender, proxy: &ProxyUrl, _: &str) -> io::Result<Response> {
    Err(proxy_error(
        io::ErrorKind::PermissionDenied,
        format!("proxy {proxy} wants NTLM, which this build leaves out"),
    ))
}

#[cfg(all(feature = "negotiate", not(windows)))]
async fn negotiate(sender: &mut Sender, proxy: &ProxyUrl, authority: &str) -> io::Result<Response> {
    let host = proxy.host.clone();
    let token = tokio::task::spawn_blocking(move || super::negotiate::token(&host))
        .await
        .map_err(io::Error::other)?
        .map_err(|e| proxy_error(e.kind(), format!("proxy {proxy}: {e}")))?;
    send_connect(sender, proxy, authority, Some(token)).await
}

#[cfg(not(any(feature = "negotiate", windows)))]
async fn negotiate(_: &mut Sender, proxy: &ProxyUrl, _: &str) -> io::Result<Response> {
    Err(proxy_error(
        io::ErrorKind::PermissionDenied,
        format!("proxy {proxy} wants Negotiate (Kerberos), which this build leaves out (the negotiate feature)"),
    ))
}

/// A connection to the proxy speaking HTTP/1.1.
struct Conn {
    sender: Sender,
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

impl Conn {
    async fn new(proxy: &ProxyUrl, tcp: TcpStream) -> io::Result<Conn> {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| proxy_error(io::ErrorKind::Other, format!("proxy {proxy}: {e}")))?;
        Ok(Conn {
            sender,
            driver: tokio::spawn(conn.with_upgrades()),
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Whether the proxy keeps the connection open after this answer.
fn keeps_alive(resp: &Response) -> bool {
    let says_close = |name: &str| {
        resp.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    };
    resp.version() != http::Version::HTTP_10
        && !says_close("connection")
        && !says_close("proxy-connection")
}

/// `CONNECT host:port` over `tcp`; on 200 the tunnel, with any bytes that came with it.
/// A proxy that closes its connection after a 407 is dialled again (`redial`) for the
/// next step.
pub async fn http_connect<F, Fut>(
    proxy: &ProxyUrl,
    tcp: TcpStream,
    redial: F,
    host: &str,
    port: u16,
) -> io::Result<Prefixed<TcpStream>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = io::Result<TcpStream>>,
{
    let authority = format!("{}:{port}", burrow_common::hostport::bracket(host));
    let mut conn = Conn::new(proxy, tcp).await?;
    // A proxy not learned yet is asked by one connection at a time.
    let _probe = match (proxy.scheme, learned(proxy)) {
        (None, None) => Some(probe_lock(proxy).lock_owned().await),
        _ => None,
    };
    // First: the pinned scheme, or what this proxy took before; else nothing (no password
    // goes out before the proxy says what it offers); then the strongest each 407 offers.
    let first = proxy
        .scheme
        .or_else(|| learned(proxy).flatten())
        .filter(|s| s.possible(proxy));
    let mut tried: Vec<Scheme> = first.into_iter().collect();
    let mut failed: Option<io::Error> = None;
    let mut resp = match first {
        Some(s) => attempt(s, &mut conn.sender, proxy, &authority).await?,
        None => send_connect(&mut conn.sender, proxy, &authority, None).await?,
    };
    while resp.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let Some(next) = choose(&offered(&resp), proxy, &tried) else {
            break;
        };
        tried.push(next);
        let keep = keeps_alive(&resp);
        drain(resp).await;
        if !keep || conn.sender.is_closed() {
            conn = Conn::new(proxy, redial().await?).await?;
        }
        let mut answered = attempt(next, &mut conn.sender, proxy, &authority).await;
        if matches!(&answered, Err(e) if e.kind() == io::ErrorKind::ConnectionAborted) {
            // The proxy closed the connection after its 407 without saying so.
            conn = Conn::new(proxy, redial().await?).await?;
            answered = attempt(next, &mut conn.sender, proxy, &authority).await;
        }
        match answered {
            Ok(r) => resp = r,
            // No ticket for Negotiate, say: the next scheme may do, on a new CONNECT.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let again = send_connect(&mut conn.sender, proxy, &authority, None).await;
                resp = match again {
                    Ok(r) => r,
                    Err(_) => return Err(e),
                };
                failed = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let status = resp.status();
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED && tried.is_empty() {
        if let Some(why) = withheld(proxy, &offered(&resp)) {
            return Err(Withheld::error(proxy, &why));
        }
    }
    if status != StatusCode::OK {
        return Err(refusal(
            proxy,
            &authority,
            &resp,
            tried.last().copied(),
            failed,
        ));
    }
    remember(proxy, tried.last().copied());
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

/// Why nothing was sent to a proxy that asked for credentials, when it was kept from
/// them (named by a PAC answer); `None` for a proxy the user named.
fn withheld(proxy: &ProxyUrl, offers: &[String]) -> Option<String> {
    let NamedBy::Pac { listed } = proxy.named_by else {
        return None;
    };
    let offers = if offers.is_empty() {
        "no scheme".to_owned()
    } else {
        offers.join(", ")
    };
    Some(if listed {
        format!(
            "asked for credentials (it offers: {offers}); it was named by the PAC and is in \
             proxy_auth_hosts, but Basic (the password in clear) goes to such a proxy only \
             with outbound_auth = \"basic\""
        )
    } else {
        format!(
            "asked for credentials (it offers: {offers}); none sent: it was named only by the \
             PAC — list its host in proxy_auth_hosts to allow it"
        )
    })
}

/// The one line that says why the proxy did not open the tunnel.
fn refusal(
    proxy: &ProxyUrl,
    authority: &str,
    resp: &Response,
    sent: Option<Scheme>,
    failed: Option<io::Error>,
) -> io::Error {
    let status = resp.status();
    let offered = offered(resp).join(", ");
    let offered = if offered.is_empty() {
        "no scheme".to_owned()
    } else {
        offered
    };
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let msg = match (status, sent, failed) {
        (StatusCode::PROXY_AUTHENTICATION_REQUIRED, _, Some(e)) => {
            format!("{e} (the proxy answered {line}; it offers: {offered})")
        }
        (StatusCode::PROXY_AUTHENTICATION_REQUIRED, Some(s), None) => format!(
            "proxy {proxy} refused the credentials ({line}; it offers: {offered}); sent with {}",
            s.name()
        ),
        (StatusCode::PROXY_AUTHENTICATION_REQUIRED, None, None) => format!(
            "proxy {proxy} wants credentials ({line}; it offers: {offered}); put user:pass@ in the proxy URL, \
             or kinit for Negotiate"
        ),
        (StatusCode::FORBIDDEN, _, _) => format!("proxy {proxy} refused CONNECT to {authority} ({line})"),
        _ => format!("proxy {proxy} answered CONNECT {authority} with {line}"),
    };
    proxy_error(io::ErrorKind::PermissionDenied, msg)
}
