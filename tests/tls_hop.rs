//! The wss hop's TLS: sessions resumed across the pool's connections (measured at nginx,
//! not assumed), the WebSocket upgrade sent as 0-RTT early data on them, and a server
//! restart (new ticket keys: the ticket and its early data refused) falls back to a full
//! handshake that works.

mod common;

use burrow::kit::{self, pattern, sha256_hex, Proc};
use burrow::origins;
use burrow::peers::Nginx;
use common::*;

async fn fetch(local: std::net::SocketAddr, target: std::net::SocketAddr, n: usize) {
    let (code, out, err) = curl(&[
        "--socks5-hostname",
        &local.to_string(),
        &format!("http://{target}/bytes/{n}"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(n, n as u64)));
}

/// Lines of nginx's log for the tunnel's path, and how many resumed their TLS session.
fn resumed(nginx: &Nginx) -> (usize, usize) {
    let log = nginx.access_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("GET /tunnel")).collect();
    let resumed = lines.iter().filter(|l| l.starts_with("r ")).count();
    (lines.len(), resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_across_connections_and_survive_a_server_restart() {
    let target = kit::http_target().await;
    let dir = temp_dir("tls-hop");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let (server, _tcp) = server_with_config(
        "chacha20-ietf-poly1305",
        "tls-hop-password",
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\n",
    );
    let ws = server.listening();
    let port = kit::free_port();
    let ndir = dir.join("nginx");
    let nginx = Nginx::start_on(port, &ndir, &cert, &key, ws, 30);
    let lcfg = dir.join("local.toml");
    std::fs::write(
        &lcfg,
        format!(
            "server = \"localhost:{port}\"\npassword = \"tls-hop-password\"\n\
             method = \"chacha20-ietf-poly1305\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             share_bursts = false\ntransport = \"wss\"\n[websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    )
    .expect("local.toml");
    let local = Proc::spawn(LOCAL, &["-c", lcfg.to_str().expect("utf8")], &[]);
    let l = local.listening();
    for i in 0..5 {
        fetch(l, target, 10_000 + i).await;
    }
    // Each tunnel's WebSocket is logged when it closes; after the first, sessions resume.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while resumed(&nginx).1 < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (lines, again) = resumed(&nginx);
    assert!(
        again >= 2,
        "{again} of {lines} TLS sessions resumed:\n{}",
        nginx.access_log()
    );
    // On a resumed session the WebSocket upgrade left with the ClientHello (0-RTT).
    let early = nginx
        .access_log()
        .lines()
        .filter(|l| l.starts_with("r 1 ") && l.contains("GET /tunnel"))
        .count();
    assert!(
        early >= 1,
        "no upgrade came as early data:\n{}\n{}",
        nginx.access_log(),
        local.output()
    );

    // nginx restarts with new ticket keys: the tickets burrow-local holds are refused,
    // a full handshake follows, and tunnels go on.
    drop(nginx);
    let nginx = Nginx::start_on(port, &dir.join("nginx2"), &cert, &key, ws, 30);
    for i in 0..5 {
        fetch(l, target, 20_000 + i).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while resumed(&nginx).0 < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = nginx.access_log();
    let first = log
        .lines()
        .find(|l| l.contains("GET /tunnel"))
        .unwrap_or_default();
    assert!(
        first.starts_with(". "),
        "the first after the restart is a full handshake:\n{log}"
    );
}
