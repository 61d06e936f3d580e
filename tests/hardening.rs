//! What an attacker who has read the code tries: headers held back past their window,
//! oversized WebSocket frames before any authentication, and the like. Each case drives
//! the real server over real sockets and checks what the target and the prober saw.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use burrow::kit::{rss_kib, Proc, Recorder};
use burrow_common::{MasterKey, Method, TargetAddr};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A server allowed to dial loopback, with `extra` config lines; the listeners in the
/// order the binary reports them.
fn server_with(method: &str, secret: &str, extra: &str) -> (Proc, Vec<SocketAddr>, usize) {
    let dir = temp_dir("hard");
    let cfg = dir.join("server.toml");
    std::fs::write(&cfg, format!("allow_private = true\n{extra}")).expect("config");
    let cfg = cfg.to_str().expect("utf8").to_owned();
    let args = ["-s", "127.0.0.1:0", "-m", method, "-k", secret, "-c", &cfg];
    let p = Proc::spawn(SERVER, &args, &[]);
    let n = 1 + extra.matches("listen").count() + extra.matches("metrics").count();
    let addrs = (0..n).map(|_| p.listening()).collect();
    (p, addrs, n)
}

/// A SIP022 first flight stamped `age` seconds ago.
fn stale_flight(key: &MasterKey, target: SocketAddr, age: u64, payload: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut salt[..]);
    let stamp = burrow_common::frame::unix_now() - age;
    let mut enc = burrow_common::frame::Encoder::with_salt(key, &salt, stamp);
    let mut plain = bytes::BytesMut::new();
    TargetAddr::Ip(target).encode(&mut plain);
    plain.extend_from_slice(payload);
    let mut wire = bytes::BytesMut::new();
    enc.encode(&plain, &mut wire);
    wire.to_vec()
}

/// Sends `flight` on `c` and reads until the server closes: the bytes it answered.
async fn answer_to(mut c: TcpStream, flight: &[u8]) -> Vec<u8> {
    c.write_all(flight).await.expect("send");
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the server closes in time");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip022_header_held_back_past_its_window_is_refused() {
    let (s, addrs, _) = server_with(
        "2022-blake3-chacha20-poly1305",
        PSK,
        "handshake_timeout = \"8s\"\n",
    );
    let key = MasterKey::from_secret(Method::Blake3ChaCha20Poly1305, PSK).expect("psk");
    let target = Recorder::start("127.0.0.1:0", b"answer").await;

    // A flight recorded 28 s ago: still inside the window when the connection opens.
    let flight = stale_flight(&key, target.addr, 28, b"GET / again");
    let held = TcpStream::connect(addrs[0]).await.expect("connect");
    // The prober holds the connection open; 3 s later the header is 31 s old.
    tokio::time::sleep(Duration::from_secs(3)).await; // the stall is the case under test
    let got = answer_to(held, &flight).await;
    assert!(got.is_empty(), "the prober got {} bytes", got.len());

    // The same held-open replay of a flight that was served once: no second dial.
    let served = stale_flight(&key, target.addr, 27, b"first");
    let mut c = TcpStream::connect(addrs[0]).await.expect("connect");
    c.write_all(&served).await.expect("send");
    let mut one = [0u8; 1];
    c.read_exact(&mut one)
        .await
        .expect("the original is served");
    let held = TcpStream::connect(addrs[0]).await.expect("connect");
    tokio::time::sleep(Duration::from_secs(4)).await; // the stall is the case under test
    let got = answer_to(held, &served).await;
    assert!(got.is_empty(), "the replay got {} bytes", got.len());
    assert_eq!(target.wait_count(1), 1, "the target was dialled once");
    assert_eq!(target.received(0), b"first");
    s.wait_for("timestamp -3");
}

/// A client's WebSocket upgrade on `addr`, answered with 101.
async fn ws_upgraded(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /tunnel HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.expect("upgrade");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            c.read(&mut b).await.expect("answer"),
            1,
            "closed mid-answer"
        );
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    c
}

/// A masked client frame header: `fin`, `opcode`, a 64-bit length.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | opcode, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

/// Writes what the server takes of `bytes`; a server that hangs up is fine.
async fn push(c: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(20), c.write_all(bytes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_websocket_frames_and_messages_are_not_buffered() {
    let (s, addrs, _) = server_with(
        "chacha20-ietf-poly1305",
        "pw",
        "handshake_timeout = \"60s\"\nws_listen = \"127.0.0.1:0\"\n",
    );
    let ws = addrs[1];
    let payload = vec![0x5au8; 15 << 20];
    let before = rss_kib(s.pid());
    // One 16 MiB frame of which 15 MiB arrive, on eight connections, then a stall.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = ws_upgraded(ws).await;
        push(&mut c, &frame_header(true, 2, 16 << 20)).await;
        push(&mut c, &payload).await;
        held.push(c);
    }
    let during = rss_kib(s.pid());
    assert!(
        during < before + 8 * 1024,
        "RSS grew from {before} KiB to {during} KiB on 8 oversized frames"
    );
    // One message in 60 KiB fragments, 15 MiB in all, on eight more.
    let piece = vec![0x5au8; 60 << 10];
    for _ in 0..8 {
        let mut c = ws_upgraded(ws).await;
        let mut wire = frame_header(false, 2, piece.len() as u64);
        wire.extend_from_slice(&piece);
        for _ in 0..(15 << 20) / piece.len() {
            push(&mut c, &wire).await;
            wire[0] = 0; // continuation frames from here on
        }
        held.push(c);
    }
    let after = rss_kib(s.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB on 8 fragmented messages"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_pages_answer_only_their_names_and_paths_stay_inside_routes() {
    let (origin, seen) = burrow::origins::hyper_origin().await;
    let secret = secret_for("chacha20-ietf-poly1305");
    let (_srv, server_addr) = server("chacha20-ietf-poly1305", secret, &["--allow-private"]);
    let dir = temp_dir("hosts");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "host_names = [\"Burrow.test\"]\n\
             [[route]]\npath = \"/app\"\nupstream = \"http://{origin}/base\"\n\
             [[route]]\npath = \"/h\"\nupstream = \"http://{origin}\"\n\
             [[route]]\npath = \"/strict\"\nupstream = \"http://{origin}/strict\"\n\
             origins = [\"https://ok.example\"]\n"
        ),
    )
    .expect("config");
    let (_local, l) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        secret,
        &["-c", cfg.to_str().expect("utf8")],
    );
    let get = |path: &str, host: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };
    let port = l.port();
    // Host: the listener, localhost, a configured name — anything else is 421.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "burrow.test".into(),
    ] {
        let out = burrow::kit::send_raw(l, &get("/app/x", &host, "")).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{host}: {out}");
    }
    for (path, host) in [
        ("/app/rebound", "attacker.example".to_string()),
        ("/proxy.pac", format!("attacker.example:{port}")),
        (
            "/app/rebound",
            format!("127.0.0.1:{}", port.wrapping_add(1)),
        ),
    ] {
        let out = burrow::kit::send_raw(l, &get(path, &host, "")).await;
        assert!(out.starts_with("HTTP/1.1 421"), "{path} {host}: {out}");
    }
    // Dot segments in any spelling never leave the route's prefix.
    for path in [
        "/app/../admin",
        "/app/%2e%2e/admin",
        "/app/.%2E/admin",
        "/app/%252e%252e/admin",
    ] {
        let out = burrow::kit::send_raw(l, &get(path, "localhost", "")).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
    }
    // The route's Origin allow-list.
    let out = burrow::kit::send_raw(
        l,
        &get("/strict/x", "localhost", "Origin: https://evil.example\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let out = burrow::kit::send_raw(
        l,
        &get("/strict/x", "localhost", "Origin: https://ok.example\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let lines = seen.lines();
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("admin") && !l.contains("rebound")),
        "{lines:?}"
    );
    // The client's Connection header cannot delete what burrow adds; userinfo never
    // reaches the origin's Host.
    let out = burrow::kit::send_raw(
        l,
        &get(
            "/h/headers",
            "localhost",
            "Connection: x-forwarded-for, host\r\n",
        ),
    )
    .await;
    assert!(out.contains("x-forwarded-for: 127.0.0.1"), "{out}");
    let out = burrow::kit::send_raw(
        l,
        &format!(
            "GET http://user:secret@{origin}/headers HTTP/1.1\r\nHost: {origin}\r\n\
             Connection: close, host\r\n\r\n"
        ),
    )
    .await;
    assert!(out.contains(&format!("host: {origin}\n")), "{out}");
    assert!(!out.contains("secret"), "{out}");
}

/// Opens a CONNECT tunnel through the HTTP proxy at `proxy` to `target`.
async fn http_connect(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(proxy).await.expect("connect");
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    c.write_all(req.as_bytes()).await.expect("CONNECT");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            c.read(&mut b).await.expect("answer"),
            1,
            "closed mid-answer"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_connect_and_socks_tunnels_and_max_connections_counts_them() {
    let target = burrow::kit::http_target().await;
    let secret = secret_for("chacha20-ietf-poly1305");
    let (_srv, server_addr) = server("chacha20-ietf-poly1305", secret, &["--allow-private"]);
    let dir = temp_dir("drain");
    let cfg = dir.join("local.toml");
    std::fs::write(&cfg, "shutdown_grace = \"30s\"\nmax_connections = 2\n").expect("config");
    let (mut local, l) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        secret,
        &["-c", cfg.to_str().expect("utf8")],
    );
    let mut tunnel = http_connect(l, target).await;
    let (mut socks, reply) = burrow::kit::socks5_connect(l, "127.0.0.1", target.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    // Both permits are held by open tunnels: a third connection waits in the backlog.
    let mut third = TcpStream::connect(l).await.expect("backlog");
    third.write_all(b"\x05\x01\x00").await.expect("greeting");
    let mut two = [0u8; 2];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut two)).await;
    assert!(
        waited.is_err(),
        "a third connection was served past max_connections"
    );
    drop(third);

    let status = std::process::Command::new("kill")
        .args(["-TERM", &local.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    local.wait_for("stopped accepting");
    // Both tunnels still carry a whole exchange after SIGTERM.
    for c in [&mut tunnel, &mut socks] {
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("answer");
        assert!(
            got.ends_with(b"hello from burrow\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    drop((tunnel, socks));
    assert_eq!(local.wait_exit(), Some(0), "{}", local.output());
    assert!(
        local.output().contains("all connections closed"),
        "{}",
        local.output()
    );
}

/// Connections accepted so far, from the metrics endpoint.
async fn accepted(metrics: SocketAddr) -> u64 {
    let (code, out, err) = curl(&[&format!("http://{metrics}/metrics")]).await;
    assert_eq!(code, 0, "{err}");
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix("burrow_connections_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_silent_connections_cost_little_each() {
    const N: usize = 10_000;
    burrow_common::net::raise_descriptor_limit();
    let (s, addrs, _) = server_with(
        "chacha20-ietf-poly1305",
        "pw",
        "handshake_timeout = \"120s\"\nmax_connections = 12000\nmax_handshakes = 11000\n\
         metrics = \"127.0.0.1:0\"\n",
    );
    let (tcp, metrics) = (addrs[0], addrs[1]);
    // One connection first, so the runtime's own first-use allocations are in the baseline.
    let warm = TcpStream::connect(tcp).await.expect("warm-up");
    while accepted(metrics).await < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = rss_kib(s.pid());
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        held.push(TcpStream::connect(tcp).await.expect("connect"));
    }
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while accepted(metrics).await < N as u64 + 1 && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted(metrics).await, N as u64 + 1, "all accepted");
    let after = rss_kib(s.pid());
    let each = (after.saturating_sub(before)) * 1024 / N as u64;
    assert!(
        each < 4096,
        "{each} bytes per silent connection ({before} → {after} KiB)"
    );
    drop((held, warm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_flooded_at_a_small_descriptor_limit_stays_cheap_and_recovers() {
    let dir = temp_dir("flood");
    let cfg = dir.join("server.toml");
    let toml = "handshake_timeout = \"30s\"\nallow_private = true\nmax_connections = 1000\n\
                ws_listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n";
    std::fs::write(&cfg, toml).expect("config");
    let cfg = cfg.to_str().expect("utf8").to_owned();
    let args = [
        "--nofile=64:64",
        SERVER,
        "-s",
        "127.0.0.1:0",
        "-k",
        "pw",
        "-c",
        &cfg,
    ];
    let p = Proc::spawn("prlimit", &args, &[]);
    let listeners: Vec<SocketAddr> = (0..3).map(|_| p.listening()).collect();
    let mut held = Vec::new();
    for l in &listeners {
        for _ in 0..60 {
            held.push(
                TcpStream::connect(l)
                    .await
                    .expect("connect (the backlog takes it)"),
            );
        }
    }
    p.wait_for("accept: ");
    let cpu0 = burrow::kit::cpu_seconds(p.pid());
    tokio::time::sleep(Duration::from_secs(2)).await; // the window over which CPU is measured
    let spent = burrow::kit::cpu_seconds(p.pid()) - cpu0;
    assert!(spent < 0.5, "accept loops spun: {spent:.2} CPU-s in 2 s");
    drop(held);
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let mut served = false;
    for _ in 0..30 {
        // A fresh salt each try: a flight the server took once is a replay the next time.
        let f = flight(&key, &TargetAddr::Ip(target.addr), b"recovered");
        let Ok(mut c) = TcpStream::connect(listeners[0]).await else {
            continue;
        };
        let _ = c.write_all(&f).await;
        let mut salt = [0u8; 32];
        let answer = tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut salt));
        if let Ok(Ok(_)) = answer.await {
            served = true;
            break;
        }
    }
    assert!(served, "service recovered\n{}", p.output());
    let (code, _, err) = curl(&["-m", "20", &format!("http://{}/metrics", listeners[2])]).await;
    assert_eq!(code, 0, "metrics recovered: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_sip004_server_stream_played_back_to_local_is_refused() {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
    // One server stream, recorded: salt and a chunk saying "recorded answer".
    let mut answer = bytes::BytesMut::new();
    burrow_common::frame::Encoder::new(&key).encode(b"recorded answer", &mut answer);
    let answer = answer.to_vec();
    // A fake server that plays it back to every connection after the request arrives.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake_addr = fake.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = fake.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 64];
                let _ = c.read(&mut req).await;
                let _ = c.write_all(&answer).await;
                let mut rest = Vec::new();
                let _ = c.read_to_end(&mut rest).await;
            });
        }
    });
    // Not asking at start what kind of server it is: that question would see the
    // recording first.
    let (_local, l) = local(fake_addr, "chacha20-ietf-poly1305", "pw", &["--no-confirm"]);
    let mut got = Vec::new();
    for _ in 0..2 {
        let (mut c, reply) = burrow::kit::socks5_connect(l, "example.com", 80)
            .await
            .expect("socks");
        assert_eq!(reply, 0);
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf))
            .await
            .expect("an answer or a close")
            .unwrap_or(0);
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got[0], b"recorded answer", "the first time it is new");
    assert!(got[1].is_empty(), "the replay was passed on: {:?}", got[1]);
}

/// Threads of process `pid` now.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The host's own addresses, tested where a bug cannot send a packet anywhere: a network
/// namespace with a public-looking address on its loopback and services bound to it.
#[test]
fn the_servers_own_addresses_are_refused_in_every_form_and_slow_names_stay_bounded() {
    let ns = burrow::kit::NetNs::new("own");
    let own = "203.0.113.5";
    assert!(
        ns.run("ip", &["addr", "add", &format!("{own}/32"), "dev", "lo"])
            .0
    );
    let counter = ns.spawn(
        "python3",
        &["-c", "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',9100))\ns.listen(64)\nprint('listening on 127.0.0.1:9100',flush=True)\nwhile True:\n c,a=s.accept()\n print('ACCEPTED',a,flush=True)\n c.close()\n"],
        &[],
    );
    counter.listening();
    // A DNS server that never answers, and a name for the host's own address.
    let dns = ns.spawn(
        "python3",
        &["-c", "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('127.0.0.53',53))\nprint('listening on 127.0.0.53:53',flush=True)\nwhile True:\n s.recvfrom(512)\n"],
        &[],
    );
    dns.listening();
    let etc = std::path::PathBuf::from(format!("/etc/netns/burrow-own-{}", std::process::id()));
    std::fs::create_dir_all(&etc).expect("netns etc");
    std::fs::write(
        etc.join("hosts"),
        format!("127.0.0.1 localhost\n{own} vps.example\n"),
    )
    .expect("hosts");
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.53\noptions timeout:5 attempts:2\n",
    )
    .expect("resolv.conf");
    // Listening on every address, with the default egress policy.
    let server = ns.spawn(SERVER, &["-s", "0.0.0.0:0", "-k", "own-address-pw"], &[]);
    let server_port = server.listening().port();
    let s = format!("127.0.0.1:{server_port}");
    let local = ns.spawn(
        LOCAL,
        &["-b", "127.0.0.1:0", "-s", &s, "-k", "own-address-pw"],
        &[],
    );
    let proxy = local.listening().to_string();
    let targets = [
        format!("{own}:9100"),
        format!("[::ffff:{own}]:9100"),
        "vps.example:9100".to_string(),
        format!("{own}:{server_port}"),
    ];
    for t in &targets {
        let url = format!("http://{t}/");
        let (ok, out) = ns.run(
            "curl",
            &["-sS", "--max-time", "20", "--socks5-hostname", &proxy, &url],
        );
        assert!(!ok, "{t} must be refused: {out}");
    }
    assert!(
        !counter.output().contains("ACCEPTED"),
        "dialled:\n{}",
        counter.output()
    );
    let refused = server
        .output()
        .matches("one of the server's own addresses")
        .count();
    assert_eq!(refused, targets.len() - 1, "{}", server.output());
    assert!(
        server.output().contains("the server's own listen address"),
        "{}",
        server.output()
    );

    // 100 tunnels to names the resolver never answers: lookups are bounded, so are threads.
    let before = threads(server.pid());
    let host = proxy.split(':').next().unwrap_or("127.0.0.1").to_string();
    let port = proxy.rsplit(':').next().unwrap_or("0").to_string();
    let script = format!(
        "import socket\nheld=[]\nfor i in range(100):\n c=socket.create_connection(('{host}',{port}))\n \
         c.sendall(b'\\x05\\x01\\x00')\n c.recv(2)\n n=('slow%d.example'%i).encode()\n \
         c.sendall(b'\\x05\\x01\\x00\\x03'+bytes([len(n)])+n+b'\\x00\\x50')\n held.append(c)\n\
         print('sent 100',flush=True)\nimport time\ntime.sleep(60)\n"
    );
    let clients = ns.spawn("python3", &["-c", &script], &[]);
    clients.wait_for("sent 100");
    let mut most = 0;
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        most = most.max(threads(server.pid()));
        std::thread::sleep(Duration::from_millis(50)); // sampling the thread count
    }
    assert!(
        most <= before + 40,
        "{before} threads at rest, {most} with 100 slow lookups"
    );
    let _ = std::fs::remove_dir_all(&etc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filter_off_keeps_the_sip022_salt_set() {
    let (_s, addrs, _) = server_with(
        "2022-blake3-chacha20-poly1305",
        PSK,
        "replay_filter = false\nhandshake_timeout = \"3s\"\n",
    );
    let key = MasterKey::from_secret(Method::Blake3ChaCha20Poly1305, PSK).expect("psk");
    let target = Recorder::start("127.0.0.1:0", b"answer").await;
    let flight = stale_flight(&key, target.addr, 0, b"once");
    let mut c = TcpStream::connect(addrs[0]).await.expect("connect");
    c.write_all(&flight).await.expect("send");
    let mut one = [0u8; 1];
    c.read_exact(&mut one)
        .await
        .expect("the original is served");
    let again = TcpStream::connect(addrs[0]).await.expect("connect");
    assert!(
        answer_to(again, &flight).await.is_empty(),
        "the replay was answered"
    );
    assert_eq!(target.wait_count(1), 1, "dialled once");
}

/// Waits (10 s at most) for `n` Ping frames on `ws`, sending nothing: the peer pings an
/// idle tunnel by itself. The tunnel's own bytes (the server's announcement) are let by;
/// a close or an error fails.
async fn pings<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, n: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut seen = 0;
    // Well past the 300 ms asked for, well short of the 20 s default.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen < n {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Ping(_)))) => seen += 1,
            Ok(Some(Ok(Message::Pong(_) | Message::Binary(_)))) => {}
            other => panic!("after {seen} pings: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_an_idle_websocket_tunnel() {
    use futures_util::SinkExt;
    let (s, addrs, _) = server_with(
        "chacha20-ietf-poly1305",
        "pw",
        "ws_listen = \"127.0.0.1:0\"\nws_ping = \"300ms\"\n",
    );
    let target = burrow::kit::half_close_target().await;
    let tcp = TcpStream::connect(addrs[1]).await.expect("connect");
    let url = format!("ws://{}/tunnel", addrs[1]);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade");
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
    let first = flight(&key, &TargetAddr::Ip(target), b"hello");
    ws.send(tokio_tungstenite::tungstenite::Message::binary(first))
        .await
        .expect("send the request");
    // The tunnel is open (the target waits for a half-close that never comes): idle.
    pings(&mut ws, 2).await;
    assert!(!s.output().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_pings_an_idle_websocket_hop() {
    // A WebSocket peer standing in for the server's listener: it takes burrow-local's
    // hop and then only watches.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hop = listener.local_addr().expect("addr");
    let dir = temp_dir("ping");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{hop}\"\npassword = \"pw\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             transport = \"ws\"\nconfirm_connect = false\nwarm_connections = 0\n\n[websocket]\npath = \"/tunnel\"\nping = \"300ms\"\n"
        ),
    )
    .expect("local.toml");
    let local = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();
    let (mut app, reply) = burrow::kit::socks5_connect(local_addr, "example.com", 80)
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    app.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let (conn, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("burrow-local dials its hop")
        .expect("accept");
    let mut ws = tokio_tungstenite::accept_async(conn)
        .await
        .expect("upgrade");
    {
        use futures_util::StreamExt;
        let request = tokio::time::timeout(Duration::from_secs(20), ws.next()).await;
        assert!(
            matches!(&request, Ok(Some(Ok(m))) if m.is_binary()),
            "the request first: {request:?}\n{}",
            local.output()
        );
    }
    pings(&mut ws, 2).await;
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}
