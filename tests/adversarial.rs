//! burrow-server attacked the way the world will: probes, replays, reflections, floods,
//! malformed frames, slowloris, descriptor exhaustion, hostile targets and clients. Each
//! case checks what came back, how and when the connection closed, how often the target
//! was dialled, and that descriptors and memory return to their baseline.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow::kit::{
    self, cpu_seconds, fd_count, pattern, rss_kib, wait_fds_at_most, Proc, Recorder,
};
use burrow_common::cipher::Cipher;
use burrow_common::{MasterKey, Method, TargetAddr};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PW: &str = "adversarial-pw";
const DEADLINE: Duration = Duration::from_secs(2);

fn key() -> MasterKey {
    MasterKey::from_password(Method::ChaCha20IetfPoly1305, PW)
}

struct Srv {
    proc: Proc,
    addr: SocketAddr,
    metrics: SocketAddr,
    _dir: std::path::PathBuf,
}

/// A server with a 2 s handshake deadline, a metrics endpoint, and `extra` config lines.
fn srv(method: &str, secret: &str, extra: &str) -> Srv {
    let dir = temp_dir("adv");
    let cfg = dir.join("server.toml");
    std::fs::write(
        &cfg,
        format!("handshake_timeout = \"2s\"\nconnect_timeout = \"1s\"\nallow_private = true\nmetrics = \"127.0.0.1:0\"\n{extra}"),
    )
    .expect("config");
    let proc = Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-m",
            method,
            "-k",
            secret,
            "-c",
            cfg.to_str().expect("utf8"),
        ],
        &[],
    );
    let addr = proc.listening();
    let metrics = proc.listening();
    // The UDP relay's thread and runtime are up: what the server holds at rest.
    proc.wait_seen("UDP relay on");
    Srv {
        proc,
        addr,
        metrics,
        _dir: dir,
    }
}

impl Srv {
    async fn metric(&self, line: &str) -> u64 {
        let (code, out, err) = curl(&[&format!("http://{}/metrics", self.metrics)]).await;
        assert_eq!(code, 0, "{err}");
        let text = String::from_utf8_lossy(&out);
        text.lines()
            .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    }
}

/// Closed at the handshake deadline (jittered ±10 %): never before it, and not long after
/// (generous above, for a loaded machine).
fn in_deadline(t: Duration) -> bool {
    t >= DEADLINE.mul_f64(0.85) && t <= DEADLINE.mul_f64(2.5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_every_length_get_silence_then_a_fin_at_the_same_deadline() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let base_fds = fd_count(s.proc.pid());
    let mut lengths: Vec<usize> = (1..=300).collect();
    lengths.extend([221; 20]);
    let tasks: Vec<_> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let addr = s.addr;
            tokio::spawn(async move {
                (
                    n,
                    assert_silent_fin(addr, &pattern(n, 1000 + i as u64)).await,
                )
            })
        })
        .collect();
    for t in tasks {
        let (n, took) = t.await.expect("join");
        assert!(
            in_deadline(took),
            "{n}-byte probe closed after {took:?}, not at the ~2 s deadline"
        );
    }
    assert!(s.metric("burrow_rejected_total{kind=\"probe\"}").await >= 250);
    let fds = wait_fds_at_most(s.proc.pid(), base_fds + 2);
    assert!(fds <= base_fds + 2, "descriptors {base_fds} → {fds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_one_byte_at_a_time_is_served() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let f = flight(&key(), &TargetAddr::Ip(target.addr), b"slow but valid");
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    for b in &f {
        c.write_all(&[*b]).await.expect("byte");
    }
    let mut salt = [0u8; 32];
    tokio::time::timeout(Duration::from_secs(30), c.read_exact(&mut salt))
        .await
        .expect("answer")
        .expect("salt");
    let end = Instant::now() + Duration::from_secs(30);
    while target.received(0) != b"slow but valid" && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(target.received(0), b"slow but valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_tampered_replays_are_silent_and_never_dial() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let f = flight(&key(), &TargetAddr::Ip(target.addr), b"first flight");
    // The original is served (the salt comes back: the target is connected).
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&f).await.expect("send");
    let mut salt = [0u8; 32];
    c.read_exact(&mut salt).await.expect("answered");
    // The identical replay, and the replay with one byte changed anywhere after the salt.
    assert!(in_deadline(assert_silent_fin(s.addr, &f).await));
    for i in [40, f.len() / 2, f.len() - 1] {
        let mut bent = f.clone();
        bent[i] ^= 0x40;
        assert!(
            in_deadline(assert_silent_fin(s.addr, &bent).await),
            "byte {i}"
        );
    }
    assert_eq!(
        target.wait_count(1),
        1,
        "dialled once, for the original only"
    );
    assert_eq!(s.metric("burrow_rejected_total{kind=\"replay\"}").await, 1);
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_reflected_back_is_a_replay() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start(
        "127.0.0.1:0",
        b"hello from the target, long enough to fill a chunk",
    )
    .await;
    let f = flight(&key(), &TargetAddr::Ip(target.addr), b"");
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&f).await.expect("send");
    let mut answer = vec![0u8; 32 + 18 + 50 + 16];
    c.read_exact(&mut answer).await.expect("server stream");
    assert!(in_deadline(assert_silent_fin(s.addr, &answer).await));
    assert_eq!(target.wait_count(1), 1);
    assert_eq!(
        s.metric("burrow_rejected_total{kind=\"replay\"}").await,
        1,
        "own salts are recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_salt_twice_at_once_dials_once() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let f = flight(&key(), &TargetAddr::Ip(target.addr), b"twin");
    let (a, b) = (
        TcpStream::connect(s.addr).await.expect("a"),
        TcpStream::connect(s.addr).await.expect("b"),
    );
    let send = |mut c: TcpStream, f: Vec<u8>| async move {
        c.write_all(&f).await.expect("send");
        let mut one = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(10), c.read(&mut one)).await;
        (c, matches!(r, Ok(Ok(1))))
    };
    let ((_a, ra), (_b, rb)) = tokio::join!(send(a, f.clone()), send(b, f));
    assert!(ra ^ rb, "exactly one of the twins is answered ({ra}, {rb})");
    assert_eq!(target.wait_count(1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_junk_salts_then_a_real_client() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for i in 0..10_000u64 {
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            if let Ok(mut c) = TcpStream::connect(addr).await {
                let _ = c.write_all(&pattern(32 + 18, i)).await;
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let f = flight(&key(), &TargetAddr::Ip(target.addr), b"after the flood");
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&f).await.expect("send");
    let mut salt = [0u8; 32];
    tokio::time::timeout(Duration::from_secs(30), c.read_exact(&mut salt))
        .await
        .expect("served")
        .expect("salt");
    assert_eq!(target.wait_count(1), 1);
    assert!(s.metric("burrow_rejected_total{kind=\"probe\"}").await >= 9_000);
    assert_eq!(
        s.metric("burrow_rejected_total{kind=\"replay\"}").await,
        0,
        "junk never enters the filter"
    );
}

/// A first flight whose framing is valid AEAD but whose content is not.
fn sealed(plain_chunks: &[&[u8]], raw_len: Option<u16>) -> Vec<u8> {
    let salt = [7u8; 32];
    let mut c = Cipher::new(&key(), &salt);
    let mut out = salt.to_vec();
    for p in plain_chunks {
        let mut len = raw_len.unwrap_or(p.len() as u16).to_be_bytes().to_vec();
        let tag = c.seal(&mut len);
        out.extend_from_slice(&len);
        out.extend_from_slice(&tag);
        let mut data = p.to_vec();
        let tag = c.seal(&mut data);
        out.extend_from_slice(&data);
        out.extend_from_slice(&tag);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_atyp_and_oversized_length_are_silent() {
    let s = srv("chacha20-ietf-poly1305", PW, "replay_filter = false\n");
    assert!(in_deadline(
        assert_silent_fin(s.addr, &sealed(&[&[9, 1, 2, 3, 4, 0, 80]], None)).await
    ));
    assert!(
        in_deadline(assert_silent_fin(s.addr, &sealed(&[&[3, 0, 0, 80]], None)).await),
        "empty domain"
    );
    assert!(in_deadline(
        assert_silent_fin(s.addr, &sealed(&[&[1, 2, 3]], Some(0x4000))).await
    ));
    assert_eq!(s.metric("burrow_rejected_total{kind=\"probe\"}").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_tag_mid_stream_ends_the_tunnel_and_nothing_after_it_passes() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let mut plain = bytes::BytesMut::new();
    TargetAddr::Ip(target.addr).encode(&mut plain);
    plain.extend_from_slice(b"good part|");
    let mut enc = burrow_common::frame::Encoder::new(&key());
    let mut wire = bytes::BytesMut::new();
    enc.encode(&plain, &mut wire);
    let first_len = wire.len();
    enc.encode(b"tampered part", &mut wire);
    enc.encode(b"after the tamper", &mut wire);
    wire[first_len + 20] ^= 1;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&wire).await.expect("send");
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut rest))
        .await
        .expect("server ends it");
    assert!(
        r.is_ok()
            || r.as_ref().err().map(|e| e.kind()) == Some(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(rest.len(), 32, "only the salt came back");
    assert_eq!(
        target.received_until_closed(0),
        b"good part|",
        "nothing after the bad chunk reached the target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip022_probes_replays_and_skewed_clocks() {
    let psk = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let s = srv("2022-blake3-chacha20-poly1305", psk, "");
    let key = MasterKey::from_secret(Method::Blake3ChaCha20Poly1305, psk).expect("psk");
    let target = Recorder::start("127.0.0.1:0", b"hi").await;
    for n in [1, 31, 32, 58, 59, 100, 221] {
        assert!(
            in_deadline(assert_silent_fin(s.addr, &pattern(n, n as u64)).await),
            "{n}"
        );
    }
    let f = flight(&key, &TargetAddr::Ip(target.addr), b"x");
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&f).await.expect("send");
    let mut one = [0u8; 1];
    let served = c.read_exact(&mut one).await;
    assert!(served.is_ok(), "served: {served:?}\n{}", s.proc.output());
    assert!(in_deadline(assert_silent_fin(s.addr, &f).await), "replay");
    // A clock 45 s off: refused, and the log says by how much.
    let mut enc = burrow_common::frame::Encoder::with_salt(
        &key,
        &[3u8; 32],
        burrow_common::frame::unix_now() - 45,
    );
    let mut plain = bytes::BytesMut::new();
    TargetAddr::Ip(target.addr).encode(&mut plain);
    let mut wire = bytes::BytesMut::new();
    enc.encode(&plain, &mut wire);
    assert!(
        in_deadline(assert_silent_fin(s.addr, &wire).await),
        "skewed"
    );
    assert_eq!(target.wait_count(1), 1);
    drop(c);
    s.proc.wait_for("timestamp -4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_handshakes_do_not_stop_service() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let base_fds = fd_count(s.proc.pid());
    let mut held = Vec::new();
    for i in 0..2000u64 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(&pattern(20, i)).await.expect("part of a salt");
        held.push(c);
    }
    // A real client is served while they hang.
    let f = flight(&key(), &TargetAddr::Ip(target.addr), b"real");
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&f).await.expect("send");
    let mut salt = [0u8; 32];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut salt))
        .await
        .expect("served")
        .expect("salt");
    // At the deadline every half-open one is closed with a FIN.
    let mut buf = [0u8; 8];
    for mut h in held {
        let r = tokio::time::timeout(Duration::from_secs(30), h.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(r, Ok(0)), "{r:?}");
    }
    drop(c);
    let fds = wait_fds_at_most(s.proc.pid(), base_fds + 2);
    assert!(fds <= base_fds + 2, "descriptors {base_fds} → {fds}");
    assert!(s.metric("burrow_rejected_total{kind=\"timeout\"}").await >= 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_backs_off_quietly_and_service_recovers() {
    let dir = temp_dir("emfile");
    let cfg = dir.join("server.toml");
    // max_connections above what 48 descriptors allow: the default would stay under them.
    let toml = "handshake_timeout = \"30s\"\nallow_private = true\nmax_connections = 1000\n";
    std::fs::write(&cfg, toml).expect("config");
    let p = Proc::spawn(
        "prlimit",
        &[
            "--nofile=48:48",
            SERVER,
            "-s",
            "127.0.0.1:0",
            "-k",
            PW,
            "-c",
            cfg.to_str().expect("utf8"),
        ],
        &[],
    );
    let addr = p.listening();
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(
            TcpStream::connect(addr)
                .await
                .expect("connect (the backlog takes it)"),
        );
    }
    p.wait_for("accept: ");
    let cpu0 = cpu_seconds(p.pid());
    tokio::time::sleep(Duration::from_secs(2)).await; // the window over which CPU is measured
    let spent = cpu_seconds(p.pid()) - cpu0;
    assert!(spent < 0.5, "accept loop spun: {spent:.2} CPU-s in 2 s");
    drop(held);
    let mut served = false;
    for _ in 0..30 {
        // A fresh salt each try: a flight the server took once is a replay the next time.
        let f = flight(&key(), &TargetAddr::Ip(target.addr), b"recovered");
        let Ok(mut c) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = c.write_all(&f).await;
        let mut salt = [0u8; 32];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut salt)).await
        {
            served = true;
            break;
        }
    }
    assert!(served, "service recovered\n{}", p.output());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_refuse_blackhole_and_reset() {
    let s = srv("chacha20-ietf-poly1305", PW, "idle_timeout = \"2s\"\n");
    let (_local, local_addr) = local(s.addr, "chacha20-ietf-poly1305", PW, &[]);
    // Refuses: the app gets a SOCKS failure.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let (_c, reply) = kit::socks5_connect(local_addr, "127.0.0.1", dead_port)
        .await
        .expect("socks");
    assert_eq!(reply, 4, "SOCKS5 'host unreachable'");
    // Blackholes (accepts, never answers): the idle timeout ends the tunnel.
    let hole = Recorder::start("127.0.0.1:0", b"").await;
    let (mut c, reply) = kit::socks5_connect(local_addr, "127.0.0.1", hole.addr.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    c.write_all(b"anyone?").await.expect("write");
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf))
        .await
        .expect("ended by idle timeout");
    assert!(
        buf.is_empty() && t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // Resets: the app's connection ends promptly.
    let rst = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let rst_port = rst.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((c, _)) = rst.accept().await {
            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
            drop(c);
        }
    });
    let (mut c, _) = kit::socks5_connect(local_addr, "127.0.0.1", rst_port)
        .await
        .expect("socks");
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the reset ends the app's connection promptly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_mid_stream_frees_everything() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let (local, local_addr) = local(s.addr, "chacha20-ietf-poly1305", PW, &[]);
    let target = Recorder::start("127.0.0.1:0", b"").await;
    let (base_s, base_l) = (fd_count(s.proc.pid()), fd_count(local.pid()));
    for _ in 0..20 {
        let (mut c, reply) = kit::socks5_connect(local_addr, "127.0.0.1", target.addr.port())
            .await
            .expect("socks");
        assert_eq!(reply, 0);
        c.write_all(&pattern(100_000, 1)).await.expect("write");
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(c);
    }
    assert!(
        wait_fds_at_most(s.proc.pid(), base_s + 2) <= base_s + 2,
        "server descriptors back"
    );
    assert!(
        wait_fds_at_most(local.pid(), base_l + 2) <= base_l + 2,
        "local descriptors back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_keeps_memory_bounded() {
    let s = srv("chacha20-ietf-poly1305", PW, "");
    let (local, local_addr) = local(s.addr, "chacha20-ietf-poly1305", PW, &[]);
    let http = kit::http_target().await;
    let before = rss_kib(s.proc.pid()) + rss_kib(local.pid());
    let (mut c, reply) = kit::socks5_connect(local_addr, "127.0.0.1", http.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    c.write_all(b"GET /bytes/300000000 HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    // Read nothing for a while: backpressure must hold the bytes at the target.
    tokio::time::sleep(Duration::from_secs(3)).await; // the stall itself is the case under test
    let during = rss_kib(s.proc.pid()) + rss_kib(local.pid());
    assert!(
        during < before + 16 * 1024,
        "memory grew from {before} KiB to {during} KiB while the reader stalled"
    );
    let mut buf = vec![0u8; 1 << 16];
    let n = c.read(&mut buf).await.expect("still alive");
    assert!(n > 0);
}

/// Egress ranges, tested where a bug cannot send a packet anywhere: a network namespace
/// with each address bound on its own loopback and a listener counting connections.
#[test]
fn every_egress_range_is_refused_inside_a_namespace() {
    let ns = kit::NetNs::new("egress");
    let v4 = [
        "10.1.2.3",
        "172.16.5.5",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "192.0.0.8",
        "198.18.0.1",
    ];
    let v6 = [
        "fd00::1",
        "64:ff9b::a01:203",
        "2002:a01:203::1",
        "::ffff:10.1.2.4",
    ];
    for a in v4 {
        assert!(
            ns.run("ip", &["addr", "add", &format!("{a}/32"), "dev", "lo"])
                .0,
            "{a}"
        );
    }
    for a in v6 {
        assert!(
            ns.run(
                "ip",
                &["-6", "addr", "add", &format!("{a}/128"), "dev", "lo"]
            )
            .0,
            "{a}"
        );
    }
    let counter = ns.spawn(
        "python3",
        &["-c", "import socket,sys\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',8080))\ns.listen(64)\nprint('listening on 127.0.0.1:8080',flush=True)\nwhile True:\n c,a=s.accept()\n print('ACCEPTED',a,flush=True)\n c.close()\n"],
        &[],
    );
    counter.listening();
    // A name that resolves to a private address, through the namespace's own hosts file.
    let hosts_dir =
        std::path::PathBuf::from(format!("/etc/netns/burrow-egress-{}", std::process::id()));
    std::fs::create_dir_all(&hosts_dir).expect("netns etc");
    std::fs::write(
        hosts_dir.join("hosts"),
        "127.0.0.1 localhost\n10.1.2.3 internal.example\n",
    )
    .expect("hosts");
    let server = ns.spawn(SERVER, &["-s", "127.0.0.1:0", "-k", PW], &[]);
    let server_addr = server.listening().to_string();
    let local = ns.spawn(
        LOCAL,
        &["-b", "127.0.0.1:0", "-s", &server_addr, "-k", PW],
        &[],
    );
    let proxy = local.listening().to_string();
    let mut targets: Vec<String> = v4.iter().map(|a| format!("{a}:8080")).collect();
    targets.extend(
        [
            "[fd00::1]:8080",
            "[64:ff9b::a01:203]:8080",
            "[2002:a01:203::1]:8080",
            "[::ffff:10.1.2.3]:8080",
        ]
        .map(String::from),
    );
    targets.extend(
        [
            "127.0.0.1:8080",
            "[::1]:8080",
            "internal.example:8080",
            "localhost:8080",
        ]
        .map(String::from),
    );
    for t in &targets {
        let (ok, out) = ns.run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "20",
                "--socks5-hostname",
                &proxy,
                &format!("http://{t}/"),
            ],
        );
        assert!(!ok, "{t} must be refused: {out}");
        assert!(
            out.contains("(97)") || out.contains("SOCKS"),
            "{t}: SOCKS failure expected: {out}"
        );
    }
    let _ = std::fs::remove_dir_all(&hosts_dir);
    assert!(
        !counter.output().contains("ACCEPTED"),
        "a refused address was dialled:\n{}",
        counter.output()
    );
    let refused = server.output().matches("refused by egress policy").count();
    assert_eq!(refused, targets.len(), "{}", server.output());
}
