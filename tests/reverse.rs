//! Reverse routes: WebSocket and HTTP services reached by path, through the tunnel.

mod common;

use std::time::Duration;

use burrow::kit::{fd_count, pattern, Proc};
use burrow::origins;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(60);

async fn ws_echo_checks(url: &str) {
    let (mut ws, resp) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 101);
    let mut send_recv = async |m: Message| {
        ws.send(m.clone()).await.expect("send");
        let back = tokio::time::timeout(T, ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("frame");
        assert_eq!(back, m);
    };
    send_recv(Message::text("hello through burrow")).await;
    send_recv(Message::binary(pattern(1000, 1))).await;
    send_recv(Message::binary(pattern(1024 * 1024, 2))).await;
    // 1000 messages in order.
    for i in 0..1000u32 {
        ws.send(Message::text(format!("m{i}"))).await.expect("send");
    }
    for i in 0..1000u32 {
        let m = tokio::time::timeout(T, ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("frame");
        assert_eq!(m, Message::text(format!("m{i}")), "order");
    }
    ws.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_and_wss_echo_through_routes() {
    let dir = temp_dir("reverse");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let (_ws, ws_addr) = node_echo(None);
    let (_wss, wss_addr) = node_echo(Some((&cert, &key)));
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[route]]\npath = \"/secure\"\nupstream = \"wss://localhost:{}/echo\"\nca_file = \"{}\"\n",
            wss_addr.port(),
            ca.display()
        ),
    )
    .expect("config");
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let route = format!("/plain=ws://{ws_addr}/echo");
    let (_local, local_addr) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["-c", cfg.to_str().expect("utf8"), "--route", &route],
    );
    ws_echo_checks(&format!("ws://{local_addr}/plain")).await;
    ws_echo_checks(&format!("ws://{local_addr}/secure")).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A raw WebSocket handshake to `path` on local; returns the whole answer (local closes).
async fn raw_ws_request(local: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(local).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {local}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("local closes the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

const GOOD: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusals_pass_back_intact_and_nothing_leaks() {
    let (origin, _) = origins::hyper_origin().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let r1 = format!("/app=ws://{origin}/status");
    let r2 = "/down=ws://127.0.0.1:1/".to_string();
    let (local, local_addr) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["--route", &r1, "--route", &r2],
    );

    let out = raw_ws_request(local_addr, "/app/502", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        out.ends_with("status 502 from the origin\n"),
        "body intact: {out}"
    );
    let out = raw_ws_request(local_addr, "/app/404", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert!(out.ends_with("status 404 from the origin\n"), "{out}");
    let out = raw_ws_request(local_addr, "/app/403", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");

    // Unreachable upstream: 502 with a reason.
    let out = raw_ws_request(local_addr, "/down", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(out.contains("could not open 127.0.0.1:1"), "{out}");

    // Broken handshakes never reach the upstream.
    let out = raw_ws_request(local_addr, "/app/200", "Sec-WebSocket-Version: 13\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "no key: {out}");
    let out = raw_ws_request(
        local_addr,
        "/app/200",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 426"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{out}"
    );
    // No route: 404.
    let out = raw_ws_request(local_addr, "/nowhere", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");

    // Any non-101 answer is passed back as is, a 200 too.
    let out = raw_ws_request(local_addr, "/app/200", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // Descriptors do not grow over 100 refused upgrades.
    let before = fd_count(local.pid());
    for _ in 0..100 {
        let out = raw_ws_request(local_addr, "/app/502", GOOD).await;
        assert!(out.starts_with("HTTP/1.1 502"));
    }
    let after = fd_count(local.pid());
    assert!(
        after <= before + 4,
        "descriptors grew from {before} to {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_the_wrong_name_is_refused_unless_insecure() {
    let dir = temp_dir("wrongname");
    let (cert, key, ca) = origins::write_pki(&dir, &["other.example"]);
    let (_wss, wss_addr) = node_echo(Some((&cert, &key)));
    let cfg = dir.join("local.toml");
    let url = format!("wss://localhost:{}/echo", wss_addr.port());
    std::fs::write(
        &cfg,
        format!(
            "[[route]]\npath = \"/checked\"\nupstream = \"{url}\"\nca_file = \"{ca}\"\n\n\
             [[route]]\npath = \"/unchecked\"\nupstream = \"{url}\"\ninsecure_skip_verify = true\n",
            ca = ca.display()
        ),
    )
    .expect("config");
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let (local, local_addr) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["-c", cfg.to_str().expect("utf8")],
    );
    local.wait_for("insecure_skip_verify is on");
    let out = raw_ws_request(local_addr, "/checked", GOOD).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(out.contains("TLS"), "{out}");
    ws_echo_checks(&format!("ws://{local_addr}/unchecked")).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_host_alone_is_a_catch_all_route() {
    let (_ws, ws_addr) = node_echo(None);
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let upstream = ws_addr.to_string();
    let local = Proc::spawn(
        LOCAL,
        &[
            "-b",
            "127.0.0.1:0",
            "-s",
            &server_addr.to_string(),
            "-k",
            "pw",
        ],
        &[("UPSTREAM_HOST", &upstream)],
    );
    let local_addr = local.listening();
    ws_echo_checks(&format!("ws://{local_addr}/echo")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_route_is_reverse_proxied_with_forwarded_headers() {
    let (origin, seen) = origins::hyper_origin().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let route = format!("/api=http://{origin}");
    let (_local, local_addr) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["--route", &route],
    );
    let u1 = format!("http://{local_addr}/api/headers");
    let u2 = format!("http://{local_addr}/api/bytes/5000?x=1");
    let (code, out, err) = curl(&["-v", "-H", "X-Forwarded-For: 10.9.9.9", &u1, &u2]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Re-using existing connection"),
        "keep-alive: {err}"
    );
    assert!(out.len() > 5000, "{}\n{err}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out[..out.len() - 5000]).to_ascii_lowercase();
    assert!(
        text.contains(&format!("host: {origin}")),
        "Host rewritten: {text}"
    );
    assert!(
        text.contains("x-forwarded-for: 10.9.9.9, 127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto: http"), "{text}");
    assert_eq!(&out[out.len() - 5000..], &pattern(5000, 5000)[..]);
    let lines = seen.lines();
    assert!(lines.contains(&"GET /headers".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"GET /bytes/5000?x=1".to_string()),
        "path and query: {lines:?}"
    );
}
