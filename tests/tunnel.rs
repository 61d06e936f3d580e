//! The whole path with real binaries: curl → burrow-local (SOCKS5) → burrow-server → target.

mod common;

use std::time::Duration;

use burrow::kit::{self, pattern, sha256_hex};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: usize = 20 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_and_uploads_20_mb_byte_exact_with_every_cipher() {
    let target = kit::http_target().await;
    let dir = temp_dir("curl");
    let upload = dir.join("upload.bin");
    let body = pattern(BIG, 99);
    std::fs::write(&upload, &body).expect("write upload file");
    for method in [
        "2022-blake3-chacha20-poly1305",
        "chacha20-ietf-poly1305",
        "aes-256-gcm",
    ] {
        let p = pair(method);
        let proxy = p.local_addr.to_string();
        // Down: the name "localhost" travels to the server unresolved.
        let url = format!("http://localhost:{}/bytes/{BIG}", target.port());
        let (code, out, err) = curl(&["--socks5-hostname", &proxy, &url]).await;
        assert_eq!(
            code,
            0,
            "{method} download: {err}\nserver:\n{}",
            p.server.output()
        );
        assert_eq!(out.len(), BIG, "{method}");
        assert_eq!(
            sha256_hex(&out),
            sha256_hex(&pattern(BIG, BIG as u64)),
            "{method} download"
        );
        // Up.
        let url = format!("http://{target}/sha256");
        let data = format!("@{}", upload.display());
        let (code, out, err) =
            curl(&["--socks5-hostname", &proxy, "--data-binary", &data, &url]).await;
        assert_eq!(code, 0, "{method} upload: {err}");
        assert_eq!(
            String::from_utf8_lossy(&out),
            sha256_hex(&body),
            "{method} upload"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_target_without_allow_private_gets_a_socks_failure_and_no_connection() {
    let counter = kit::Counter::start("127.0.0.1:0").await;
    let (server, server_addr) = server("chacha20-ietf-poly1305", "pw", &[]);
    let (_local, local_addr) = local(server_addr, "chacha20-ietf-poly1305", "pw", &[]);
    let port = counter.addr.port();
    for host in ["127.0.0.1", "localhost", "127.9.9.9"] {
        let (_s, reply) = kit::socks5_connect(local_addr, host, port)
            .await
            .expect("SOCKS5 exchange");
        assert_eq!(reply, 4, "{host}: SOCKS5 'host unreachable'");
    }
    let url = format!("http://127.0.0.1:{port}/");
    let (code, _, err) = curl(&["--socks5-hostname", &local_addr.to_string(), &url]).await;
    assert_eq!(code, 97, "curl reports a SOCKS failure: {err}");
    assert_eq!(counter.count(), 0, "the target saw no connection");
    assert!(
        server.output().contains("refused by egress policy"),
        "{}",
        server.output()
    );
}

/// A client that sends its first bytes right behind its CONNECT request, before the
/// reply: they reach the target, in order, after the handshake's buffered reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_bytes_sent_with_the_request_reach_the_target() {
    let target = kit::half_close_target().await;
    let p = pair("chacha20-ietf-poly1305");
    let mut s = TcpStream::connect(p.local_addr).await.expect("connect");
    s.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut method = [0u8; 2];
    s.read_exact(&mut method).await.expect("method");
    assert_eq!(method, [5, 0]);
    let mut request = vec![5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&target.port().to_be_bytes());
    let early = b"sent before the reply";
    request.extend_from_slice(early);
    s.write_all(&request)
        .await
        .expect("request and data in one write");
    s.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut back))
        .await
        .expect("answer in time")
        .expect("answer");
    assert!(back.len() > 10 && back[..2] == [5, 0], "reply: {back:?}");
    let answer = String::from_utf8_lossy(&back[10..]);
    assert_eq!(
        answer,
        format!("got {} bytes, sha256 {}", early.len(), sha256_hex(early))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_answer_after_eof_arrives_whole() {
    let target = kit::half_close_target().await;
    let p = pair("aes-256-gcm");
    let (mut s, reply) = kit::socks5_connect(p.local_addr, "127.0.0.1", target.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    let data = pattern(300_000, 5);
    s.write_all(&data).await.expect("send");
    s.shutdown().await.expect("half-close");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_string(&mut answer))
        .await
        .expect("answer in time")
        .expect("answer arrives whole, ended by a FIN");
    assert_eq!(
        answer,
        format!("got 300000 bytes, sha256 {}", sha256_hex(&data))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_password_get_silence_then_fin_and_others_are_served() {
    use burrow_common::{MasterKey, Method, TargetAddr};

    let dir = temp_dir("bad");
    let cfg = dir.join("server.toml");
    std::fs::write(&cfg, "handshake_timeout = \"2s\"\nallow_private = true\n").expect("config");
    let (server, server_addr) = server(
        "chacha20-ietf-poly1305",
        "right",
        &["-c", cfg.to_str().expect("utf8")],
    );
    let (_local, local_addr) = local(server_addr, "chacha20-ietf-poly1305", "right", &[]);
    let target = kit::http_target().await;

    let garbage = pattern(300, 1);
    let wrong_key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "wrong");
    let wrong = flight(
        &wrong_key,
        &TargetAddr::Ip(target),
        b"GET / HTTP/1.0\r\n\r\n",
    );

    let bad = tokio::spawn(async move {
        let a = assert_silent_fin(server_addr, &garbage).await;
        let b = assert_silent_fin(server_addr, &wrong).await;
        (a, b)
    });
    // While those two are being drained, a real client is served.
    let url = format!("http://{target}/bytes/1000");
    let (code, out, err) = curl(&["--socks5-hostname", &local_addr.to_string(), &url]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, pattern(1000, 1000));
    let (a, b) = bad.await.expect("join");
    for t in [a, b] {
        assert!(
            t >= Duration::from_millis(1700),
            "closed at {t:?}, before the ~2 s deadline"
        );
    }
    assert!(!server.output().contains("panicked"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let (mut server, _) = server("chacha20-ietf-poly1305", "pw", &[]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(server.wait_exit(), Some(0), "{}", server.output());
    assert!(server.output().contains("stopped accepting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_username_password_is_enforced() {
    let target = kit::http_target().await;
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
    let proxy = local_addr.to_string();
    let url = format!("http://{target}/");
    let (code, out, err) = curl(&[
        "--socks5-hostname",
        &proxy,
        "--proxy-user",
        "alice:s3cret",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"hello from burrow\n");
    for creds in [Some("alice:wrong"), Some("bob:s3cret"), None] {
        let mut args = vec!["--socks5-hostname", proxy.as_str()];
        if let Some(c) = creds {
            args.extend(["--proxy-user", c]);
        }
        args.push(&url);
        let (code, out, _) = curl(&args).await;
        assert_eq!(code, 97, "{creds:?} must be refused");
        assert!(out.is_empty());
    }
    assert!(!local.output().contains("s3cret"), "no password in the log");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_prints_a_curl_line_that_works() {
    let qs = kit::Proc::spawn(
        env!("CARGO_BIN_EXE_burrow"),
        &["quickstart", "--port", "0"],
        &[],
    );
    let line = qs.wait_for("curl --socks5-hostname");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "curl");
    let (code, out, err) = curl(&words[1..]).await;
    assert_eq!(code, 0, "{line}: {err}\n{}", qs.output());
    assert_eq!(out, b"hello from burrow\n");
    // Only the demo origin is allowed: another service on this machine's loopback is not.
    let other = kit::http_target().await;
    let proxy = words[2];
    let url = format!("http://{other}/");
    let (code, _, _) = curl(&["--socks5-hostname", proxy, &url]).await;
    assert_ne!(code, 0, "quickstart let a tunnel reach {other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_connection_refused_for_the_app() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let (local, local_addr) = local(dead_addr, "aes-256-gcm", "pw", &[]);
    let (_s, reply) = kit::socks5_connect(local_addr, "example.com", 80)
        .await
        .expect("socks");
    assert_eq!(reply, 5, "SOCKS5 'connection refused'");
    local.wait_for("cannot reach the server");
}
