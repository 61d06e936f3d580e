//! burrow-local as an HTTP proxy, on the same port as SOCKS5: curl -x, CONNECT to TLS,
//! hop-by-hop headers, Basic auth, PAC, WebSocket upgrade, request smuggling.

mod common;

use std::time::Duration;

use burrow::kit::{self, pattern, sha256_hex, Proc};
use burrow::origins;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_http_proxy_chunked_post_keepalive_and_close_delimited() {
    let (origin, _) = origins::hyper_origin().await;
    let raw = kit::http_target().await;
    let p = pair("chacha20-ietf-poly1305");
    let proxy = format!("http://{}", p.local_addr);

    // Chunked response, 3 MB.
    let n = 3_000_000;
    let (code, out, err) = curl(&["-x", &proxy, &format!("http://{origin}/chunked/{n}")]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sha256_hex(&out),
        sha256_hex(&pattern(n, n as u64)),
        "chunked body"
    );

    // Close-delimited response.
    let (code, out, err) = curl(&["-x", &proxy, &format!("http://{raw}/close/{n}")]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sha256_hex(&out),
        sha256_hex(&pattern(n, n as u64)),
        "close-delimited body"
    );

    // POST 10 MB.
    let dir = temp_dir("post");
    let f = dir.join("body.bin");
    let body = pattern(10 * 1024 * 1024, 7);
    std::fs::write(&f, &body).expect("write");
    let data = format!("@{}", f.display());
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "--data-binary",
        &data,
        &format!("http://{origin}/sha256"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), sha256_hex(&body));

    // Two requests on one kept-alive client connection.
    let u1 = format!("http://{origin}/bytes/1000");
    let u2 = format!("http://{origin}/bytes/2000");
    let (code, out, err) = curl(&["-v", "-x", &proxy, &u1, &u2]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, [pattern(1000, 1000), pattern(2000, 2000)].concat());
    assert!(
        err.contains("Re-using existing connection"),
        "curl reused the proxy connection:\n{err}"
    );

    // Different hosts on one client connection: each gets its own tunnel.
    let u3 = format!("http://{raw}/bytes/3000");
    let (code, out, err) = curl(&["-v", "-x", &proxy, &u1, &u3, &u2]).await;
    assert_eq!(code, 0, "{err}");
    let want = [
        pattern(1000, 1000),
        pattern(3000, 3000),
        pattern(2000, 2000),
    ]
    .concat();
    assert_eq!(out, want);
    assert!(err.contains("Re-using existing connection"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_through_connect_to_a_local_tls_server() {
    let pki = origins::test_pki(&["localhost", "127.0.0.1"]);
    let origin = origins::tls_origin(&pki).await;
    let dir = temp_dir("tls");
    let ca = dir.join("ca.pem");
    origins::write_ca(&pki, &ca);
    let p = pair("aes-256-gcm");
    let proxy = format!("http://{}", p.local_addr);
    let url = format!("https://localhost:{}/", origin.port());
    let (code, out, err) =
        curl(&["-x", &proxy, "--cacert", ca.to_str().expect("utf8"), &url]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"secret over tls\n");
    // A refused target is a 502 with a reason, not a hang.
    let (code, _, err) = curl(&["-x", &proxy, "-p", "-v", "http://127.0.0.1:1/"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("502"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_sees_no_hop_by_hop_header_and_no_proxy_credentials() {
    let (origin, _) = origins::hyper_origin().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let dir = temp_dir("auth");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        "proxy_username = \"alice\"\nproxy_password = \"s3cret\"\n",
    )
    .expect("config");
    let (local, local_addr) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["-c", cfg.to_str().expect("utf8")],
    );
    let proxy = format!("http://{local_addr}");
    let url = format!("http://{origin}/headers");
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "--proxy-user",
        "alice:s3cret",
        "-H",
        "Connection: keep-alive, X-Drop-Me",
        "-H",
        "X-Drop-Me: secret",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "TE: trailers",
        "-H",
        "Trailer: X-T",
        "-H",
        "Upgrade: h2c",
        "-H",
        "X-Kept: yes",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let seen = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(seen.contains("x-kept: yes"), "{seen}");
    assert!(
        seen.contains(&format!("host: {origin}")),
        "Host from the absolute URI: {seen}"
    );
    for hop in [
        "connection:",
        "x-drop-me",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te:",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !seen.lines().any(|l| l.starts_with(hop)),
            "{hop} reached the origin:\n{seen}"
        );
    }
    // Without or with wrong credentials: 407 with a Basic challenge, every request.
    for creds in [None, Some("alice:nope")] {
        let mut args = vec!["-v", "-x", proxy.as_str()];
        if let Some(c) = creds {
            args.extend(["--proxy-user", c]);
        }
        args.push(&url);
        let (_, _, err) = curl(&args).await;
        assert!(err.contains("407"), "{err}");
        assert!(
            err.contains("Proxy-Authenticate: Basic realm=\"burrow\""),
            "{err}"
        );
    }
    assert!(!local.output().contains("s3cret"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pac_file_several_listeners_and_socks5_on_the_same_port() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let (l, first) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["-b", "127.0.0.1:0"],
    );
    let second = l.listening();
    assert_ne!(first, second, "two listeners");
    for addr in [first, second] {
        let (code, out, err) = curl(&[&format!("http://{addr}/proxy.pac")]).await;
        assert_eq!(code, 0, "{err}");
        let pac = String::from_utf8_lossy(&out);
        assert!(
            pac.contains("FindProxyForURL") && pac.contains(&format!("PROXY {addr}")),
            "{pac}"
        );
        let url = format!("http://{target}/");
        let (code, out, _) = curl(&["--socks5-hostname", &addr.to_string(), &url]).await;
        assert_eq!(
            (code, out.as_slice()),
            (0, &b"hello from burrow\n"[..]),
            "SOCKS5 on {addr}"
        );
        let (code, out, _) = curl(&["-x", &format!("http://{addr}"), &url]).await;
        assert_eq!(
            (code, out.as_slice()),
            (0, &b"hello from burrow\n"[..]),
            "HTTP on {addr}"
        );
    }
}

/// burrow-local's own PAC, evaluated by node: loopback, the `bypass` list and NO_PROXY go
/// DIRECT, everything else through burrow-local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_pac_sends_intranet_direct_by_bypass_and_no_proxy() {
    let dir = temp_dir("own-pac");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        "server = \"127.0.0.1:9\"\npassword = \"pw\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
         bypass = [\"<local>\", \"*.corp.example\", \"10.0.0.0/8\", \"intra-*\", \"192.168.7.7\"]\n",
    )
    .expect("config");
    let p = Proc::spawn(
        LOCAL,
        &["-c", cfg.to_str().expect("utf8")],
        &[("NO_PROXY", ".lab.example, 172.16.0.0/12")],
    );
    let addr = p.listening();
    let (code, out, err) = curl(&[&format!("http://{addr}/proxy.pac")]).await;
    assert_eq!(code, 0, "{err}");
    let pac = dir.join("proxy.pac");
    std::fs::write(&pac, &out).expect("pac");
    let helpers = concat!(env!("CARGO_MANIFEST_DIR"), "/local/src/pac/helpers.js");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pac_eval.js");
    let through = format!("PROXY {addr}; SOCKS5 {addr}");
    let table = [
        ("localhost", "DIRECT"),
        ("127.0.0.1", "DIRECT"),
        ("127.8.9.10", "DIRECT"),
        ("wiki", "DIRECT"),
        ("corp.example", "DIRECT"),
        ("git.corp.example", "DIRECT"),
        ("GIT.Corp.Example", "DIRECT"),
        ("10.20.30.40", "DIRECT"),
        ("intra-hr.example", "DIRECT"),
        ("192.168.7.7", "DIRECT"),
        ("build.lab.example", "DIRECT"),
        ("172.20.1.1", "DIRECT"),
        ("example.com", &through),
        ("corp.example.com", &through),
        ("notcorp.example", &through),
        ("11.0.0.1", &through),
        ("192.168.7.8", &through),
        ("172.32.0.1", &through),
        ("lab.example.org", &through),
    ];
    let mut args = vec![script, helpers, pac.to_str().expect("utf8")];
    args.extend(table.iter().map(|(h, _)| *h));
    let out = tokio::process::Command::new("node")
        .args(&args)
        .output()
        .await
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = String::from_utf8_lossy(&out.stdout);
    let got: Vec<(&str, &str)> = answers.lines().filter_map(|l| l.split_once('\t')).collect();
    let want: Vec<(&str, &str)> = table.iter().map(|(h, a)| (*h, *a)).collect();
    assert_eq!(
        got,
        want,
        "{}",
        String::from_utf8_lossy(&std::fs::read(&pac).unwrap_or_default())
    );
    let _ = std::fs::remove_dir_all(dir);
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut b))
            .await
            .expect("head in time")
            .expect("read");
        assert_eq!(
            n,
            1,
            "closed inside the head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_over_plain_forwarding_is_relayed() {
    let origin = origins::upgrade_echo_origin().await;
    let p = pair("chacha20-ietf-poly1305");
    let mut s = TcpStream::connect(p.local_addr).await.expect("connect");
    let req = format!(
        "GET http://{origin}/chat HTTP/1.1\r\nHost: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let msg = pattern(100_000, 3);
    s.write_all(&msg).await.expect("frames up");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("echo");
    assert_eq!(back, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_and_duplicate_content_length_cannot_smuggle_a_request() {
    let (origin, seen) = origins::hyper_origin().await;
    let p = pair("chacha20-ietf-poly1305");
    // CL + TE: the body is chunked-empty, then a second request hides behind it for a
    // reader that trusts Content-Length. RFC 9112 §6.1: process by Transfer-Encoding,
    // forward without the Content-Length, and close the connection afterwards, so the
    // hidden request is never read (not even as a request of our own).
    let hidden = format!("GET http://{origin}/smuggled HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let smuggle = format!(
        "POST http://{origin}/first HTTP/1.1\r\nHost: {origin}\r\nContent-Length: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
        5 + hidden.len()
    );
    let out = burrow::kit::send_raw(p.local_addr, &smuggle).await;
    assert!(out.starts_with("HTTP/1.1 "), "{out}");
    // Two different Content-Lengths: refused outright.
    let hidden = format!("GET http://{origin}/smuggled2 HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let dup = format!(
        "POST http://{origin}/second HTTP/1.1\r\nHost: {origin}\r\nContent-Length: 5\r\n\
         Content-Length: {}\r\n\r\nhello{hidden}",
        5 + hidden.len()
    );
    let out = burrow::kit::send_raw(p.local_addr, &dup).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // A normal request afterwards, so the origin has surely seen all that came before.
    let (code, _, err) = curl(&[
        "-x",
        &format!("http://{}", p.local_addr),
        &format!("http://{origin}/last"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let lines = seen.lines();
    assert!(
        lines.iter().all(|l| !l.contains("smuggled")),
        "smuggled through: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("/second")), "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with("/last")), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.ends_with("/first")).count(),
        1,
        "{lines:?}"
    );
}
