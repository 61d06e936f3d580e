//! The wss hop's TLS: sessions resumed across the pool's connections (measured at nginx,
//! not assumed), the WebSocket upgrade sent as 0-RTT early data on them, and a server
//! restart (new ticket keys: the ticket and its early data refused) falls back to a full
//! handshake that works; a captured first flight with its early data, sent again, opens
//! no tunnel.

mod common;

use burrow::kit::{self, Proc};
use burrow::origins;
use burrow::peers::Nginx;
use common::*;

/// Lines of nginx's log for the tunnel's path, and how many resumed their TLS session.
fn resumed(nginx: &Nginx) -> (usize, usize) {
    let log = nginx.access_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("GET /tunnel")).collect();
    let resumed = lines.iter().filter(|l| l.starts_with("r ")).count();
    (lines.len(), resumed)
}

/// burrow-local over wss to nginx at `localhost:port` (path /tunnel, trusting `ca`), with
/// `password`; it and its SOCKS5 address.
fn local_wss(
    dir: &std::path::Path,
    port: u16,
    ca: &std::path::Path,
    password: &str,
) -> (Proc, std::net::SocketAddr) {
    let lcfg = dir.join("local.toml");
    std::fs::write(
        &lcfg,
        format!(
            "server = \"localhost:{port}\"\npassword = \"{password}\"\n\
             method = \"chacha20-ietf-poly1305\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             share_bursts = false\ntransport = \"wss\"\n[websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    )
    .expect("local.toml");
    let local = Proc::spawn(LOCAL, &["-c", lcfg.to_str().expect("utf8")], &[]);
    let addr = local.listening();
    (local, addr)
}

/// Upgrades nginx logged as come in 0-RTT early data on a resumed session.
fn early_upgrades(nginx: &Nginx) -> usize {
    nginx
        .access_log()
        .lines()
        .filter(|l| l.starts_with("r 1 ") && l.contains("GET /tunnel"))
        .count()
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
    let (local, l) = local_wss(&dir, port, &ca, "tls-hop-password");
    for i in 0..5 {
        socks_get_exact(l, target, 10_000 + i).await;
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
    let early = early_upgrades(&nginx);
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
        socks_get_exact(l, target, 20_000 + i).await;
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

/// A TCP relay in front of `to` that keeps what each client sent before the first byte
/// came back: its first flight (with TLS 1.3 0-RTT, the ClientHello and the early data).
async fn recorder(
    to: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let flights = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = flights.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let Ok(mut b) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                // Until the server's first byte, what the client sends is its first flight.
                let mut flight = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut one = [0u8; 1];
                loop {
                    tokio::select! {
                        r = a.read(&mut buf) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                flight.extend_from_slice(&buf[..n]);
                                if b.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        },
                        r = b.read(&mut one) => {
                            let Ok(1) = r else { return };
                            kept.lock().expect("flights").push(flight);
                            if a.write_all(&one).await.is_err() {
                                return;
                            }
                            break;
                        }
                    }
                }
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
        }
    });
    (addr, flights)
}

/// What an observer of the hop could do with 0-RTT: capture a resumed connection's first
/// flight (ClientHello and the early WebSocket upgrade) and send it again. Early data
/// carries the upgrade alone — the tunnel's request and bytes come after the handshake,
/// under keys the replay cannot have — so the replays open no tunnel at burrow-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_0rtt_first_flight_opens_no_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The target, behind a door that counts who comes in: a tunnel the server opens.
    let origin = kit::http_target().await;
    let door = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = door.local_addr().expect("addr");
    let dialled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = dialled.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = door.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(origin).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    let dir = temp_dir("tls-replay");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let (server, _tcp) = server_with_config(
        "chacha20-ietf-poly1305",
        "tls-replay-password",
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\n",
    );
    let ws = server.listening();
    let port = kit::free_port();
    let nginx = Nginx::start_on(port, &dir.join("nginx"), &cert, &key, ws, 30);
    let (front, flights) = recorder(([127, 0, 0, 1], port).into()).await;
    let (local, l) = local_wss(&dir, front.port(), &ca, "tls-replay-password");
    for i in 0..5 {
        socks_get_exact(l, target, 10_000 + i).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let early = || early_upgrades(&nginx);
    while early() < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        early() >= 1,
        "no upgrade as early data:\n{}",
        nginx.access_log()
    );
    drop(local);
    let before = dialled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before >= 5, "{before} tunnels reached the target");
    let captured = flights.lock().expect("flights").clone();
    assert!(captured.len() >= 2, "{} first flights", captured.len());
    // Every captured flight sent again at once, each on a connection of its own.
    let replays = captured.iter().map(|flight| async move {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        c.write_all(flight).await.expect("replay");
        // Whatever comes back is sealed under keys the replay does not have; read until
        // nginx gives up on the handshake that cannot be finished.
        let mut sink = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), async {
            while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
    futures_util::future::join_all(replays).await;
    assert_eq!(
        dialled.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "a replayed first flight opened a tunnel:\n{}",
        nginx.access_log()
    );
}
