//! CONNECT edge cases against scripted proxies on loopback: bytes after the 200, no
//! password before the proxy asks, refusals named, a silent proxy, a PAC-named proxy
//! that asks for credentials.

use super::*;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A scripted proxy: reads the request head, answers `reply` in one write, then echoes.
async fn scripted_proxy(
    reply: &'static [u8],
) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if c.read(&mut b).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(b[0]);
        }
        c.write_all(reply).await.expect("reply");
        let mut buf = [0u8; 64];
        while let Ok(n) = c.read(&mut buf).await {
            if n == 0 || c.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, task)
}

#[tokio::test]
async fn bytes_that_come_with_the_200_are_kept() {
    let (addr, task) =
        scripted_proxy(b"HTTP/1.1 200 Connection established\r\n\r\nEARLY-BYTES").await;
    // Basic pinned: sent at once, with no 407 first.
    let mut proxy = ProxyUrl::parse(&format!("http://bob:pw@{addr}")).expect("url");
    proxy.scheme = Some(super::http_connect::Scheme::Basic);
    let mut s = connect(
        &proxy,
        "vps.example",
        8388,
        Duration::from_secs(10),
        &SocketOpts::default(),
    )
    .await
    .expect("tunnel");
    let mut early = [0u8; 11];
    s.read_exact(&mut early).await.expect("early bytes");
    assert_eq!(&early, b"EARLY-BYTES");
    s.write_all(b"then echo").await.expect("write");
    let mut back = [0u8; 9];
    s.read_exact(&mut back).await.expect("echo");
    assert_eq!(&back, b"then echo");
    drop(s);
    let head = task.await.expect("join");
    assert!(
        head.starts_with("CONNECT vps.example:8388 HTTP/1.1\r\n"),
        "{head}"
    );
    let token = base64::engine::general_purpose::STANDARD.encode("bob:pw");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "proxy-authorization: basic {}",
            token.to_ascii_lowercase()
        )),
        "{head}"
    );
}

/// Unpinned, the first CONNECT carries no password: the proxy says what it offers first.
#[tokio::test]
async fn no_password_goes_out_before_the_proxy_asks() {
    let (addr, task) = scripted_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
    let proxy = ProxyUrl::parse(&format!("http://bob:pw@{addr}")).expect("url");
    let s = connect(
        &proxy,
        "vps.example",
        8388,
        Duration::from_secs(10),
        &SocketOpts::default(),
    )
    .await
    .expect("tunnel");
    drop(s);
    let head = task.await.expect("join");
    assert!(head.starts_with("CONNECT vps.example:8388"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("proxy-authorization"),
        "{head}"
    );
}

#[tokio::test]
async fn refusals_are_named() {
    let cases: [(&'static [u8], bool, &str); 4] = [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n", false, "wants credentials (407 Proxy Authentication Required; it offers: Basic, NTLM)"),
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n", true, "refused the credentials (407"),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", false, "refused CONNECT to vps.example:443 (403 Forbidden)"),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", false, "answered CONNECT vps.example:443 with 502 Bad Gateway"),
    ];
    for (reply, creds, want) in cases {
        let (addr, _task) = scripted_proxy(reply).await;
        let url = if creds {
            format!("http://u:wrong@{addr}")
        } else {
            format!("http://{addr}")
        };
        let mut proxy = ProxyUrl::parse(&url).expect("url");
        proxy.scheme = creds.then_some(super::http_connect::Scheme::Basic);
        let err = connect(
            &proxy,
            "vps.example",
            443,
            Duration::from_secs(10),
            &SocketOpts::default(),
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains(want), "{err}");
        assert!(
            !err.to_string().contains("wrong"),
            "no password in errors: {err}"
        );
    }
}

#[tokio::test]
async fn a_silent_proxy_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let _hold = tokio::spawn(async move {
        let conn = l.accept().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(conn);
    });
    let proxy = ProxyUrl::parse(&format!("http://{addr}")).expect("url");
    let err = connect(
        &proxy,
        "vps.example",
        443,
        Duration::from_millis(300),
        &SocketOpts::default(),
    )
    .await
    .expect_err("timeout");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(err.to_string().contains("proxy CONNECT timed out"), "{err}");
}

/// A proxy that answers every request on a connection with `reply`, keeping the
/// connection; what it was sent, once the client hangs up.
async fn asking_proxy(
    reply: &'static [u8],
) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut b = [0u8; 1];
        while c.read(&mut b).await.unwrap_or(0) == 1 {
            seen.push(b[0]);
            if seen.ends_with(b"\r\n\r\n") && c.write_all(reply).await.is_err() {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    (addr, task)
}

/// A PAC-named proxy that asks for credentials gets a CONNECT without any, and the
/// error that moves the hop on to the next entry; listed, it gets NTLM (never Basic
/// unpinned).
#[tokio::test]
async fn a_pac_named_proxy_asking_for_credentials_is_passed_over() {
    let ask: &'static [u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n";
    let creds = ProxyAuth {
        credentials: Some(("alice".into(), Secret::new("s3cret"))),
        scheme: None,
    };
    for listed in [false, true] {
        let (addr, task) = asking_proxy(ask).await;
        let list = parse_list(&format!("PROXY {addr}")).expect("list");
        let p = named_by_pac(list, &creds, |_| listed)[0]
            .clone()
            .expect("proxy");
        let err = connect(
            &p,
            "vps.example",
            443,
            Duration::from_secs(10),
            &SocketOpts::default(),
        )
        .await
        .map(|_| ())
        .expect_err("no tunnel");
        let ntlm_sent = listed && cfg!(feature = "ntlm");
        assert_eq!(Withheld::is(&err), !ntlm_sent, "{err}");
        if !ntlm_sent {
            assert!(err.to_string().contains("proxy_auth_hosts"), "{err}");
        }
        let seen = task.await.expect("join").to_ascii_lowercase();
        assert_eq!(
            seen.contains("proxy-authorization: ntlm "),
            ntlm_sent,
            "{seen}"
        );
        assert!(!seen.contains("basic "), "{seen}");
    }
}
