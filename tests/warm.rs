//! Warm connections: opened ahead of use through the corporate proxy, sized by demand,
//! gone when the laptop idles, never stale, never dead when handed to an app.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use burrow::kit::{self, free_port};
use burrow::peers::Squid;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHOD: &str = "chacha20-ietf-poly1305";
const PW: &str = "warm-connections-pw";

/// One sample of `name` at `metrics`; there must be one.
async fn metric(metrics: SocketAddr, name: &str) -> u64 {
    kit::metric(metrics, name)
        .await
        .unwrap_or_else(|| panic!("no {name}"))
}

/// One HTTP GET through the SOCKS5 listener at `local`; the answer's last line.
async fn get(local: SocketAddr, target: SocketAddr) -> Vec<u8> {
    let (mut c, reply) = kit::socks5_connect(local, "127.0.0.1", target.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0, "SOCKS reply");
    c.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.expect("answer");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_squid_costs_at_most_the_burst_plus_the_pool_then_nothing() {
    let target = kit::http_target().await;
    let (_server, server_addr, metrics) = server_metered("127.0.0.1:0", METHOD, "pw", "");
    let squid = Squid::start(temp_dir("squid"), &[server_addr.port()]);
    let toml = format!(
        "outbound_proxy = \"http://alice:s3cret@{}\"\nwarm_connections = 8\n\
         warm_idle_after = \"3s\"\n",
        squid.addr
    );
    let (mut local, l) = local_with(&server_addr.to_string(), &toml);
    const BURST: u64 = 50;
    let answers = futures_util::future::join_all((0..BURST).map(|_| get(l, target))).await;
    for a in &answers {
        assert!(
            a.ends_with(b"hello from burrow\n"),
            "{:?}",
            String::from_utf8_lossy(a)
        );
    }
    // Right after the burst, connections wait warm at the server with no tunnel open.
    let warm = kit::metric_until(metrics, "burrow_open_connections ", |v| v >= 1).await;
    assert!(warm >= 1, "no warm connection after a burst");
    // The laptop idles: every warm connection is closed, and none is made again.
    assert_eq!(
        kit::metric_until(metrics, "burrow_open_connections ", |v| v == 0).await,
        0,
        "pool emptied"
    );
    let made = metric(metrics, "burrow_connections_total ").await;
    // The burst, the pool, and the question burrow-local asks the server at start.
    assert!(
        made <= BURST + 8 + 1,
        "{made} connections for a burst of {BURST}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // idle: nothing may be opened now
    assert_eq!(
        metric(metrics, "burrow_connections_total ").await,
        made,
        "traffic while idle"
    );
    let refused = metric(metrics, "burrow_rejected_total{kind=\"timeout\"} ").await;
    assert_eq!(
        refused, 0,
        "a pooled connection reached the server's deadline"
    );
    // squid saw the same: one CONNECT per connection, no more.
    let pid = local.pid().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(stopped.is_ok_and(|s| s.success()));
    assert_eq!(local.wait_exit(), Some(0));
    // The first CONNECT asks squid what it offers (a 407, once; the rest of the burst
    // waits for that answer and starts with Basic).
    let connect = format!("CONNECT {server_addr}");
    let log = squid.access_log_with(&connect, made as usize).await;
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&connect)).collect();
    let tunnels = lines.iter().filter(|l| l.contains("/200 ")).count() as u64;
    let asked = lines.iter().filter(|l| l.contains("/407 ")).count();
    assert!(tunnels <= BURST + 8 + 1, "squid logged {tunnels} tunnels");
    assert!(
        asked <= 1,
        "squid answered {asked} CONNECTs with 407:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_and_warm_connections_past_their_age_never_reach_an_app() {
    let target = kit::http_target().await;
    let port = free_port();
    // The server's handshake deadline is 3 s; warm connections live at most 1 s.
    let (server, server_addr, _) = server_metered(
        &format!("127.0.0.1:{port}"),
        METHOD,
        "pw",
        "handshake_timeout = \"3s\"\n",
    );
    let (_local, l) = local_with(&server_addr.to_string(), "warm_max_age = \"1s\"\n");
    assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
    // Past the server's deadline: the first warm connections are long recycled.
    tokio::time::sleep(Duration::from_secs(4)).await; // time passing is the case under test
    assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
    // The server restarts on the same port: the warm connections it held are dead.
    drop(server);
    let (_server, _, metrics) = server_metered(
        &format!("127.0.0.1:{port}"),
        METHOD,
        "pw",
        "handshake_timeout = \"3s\"\n",
    );
    assert!(
        get(l, target).await.ends_with(b"hello from burrow\n"),
        "after restart"
    );
    // The pool refills from the new server; the next tunnels start on warm connections.
    assert!(kit::metric_until(metrics, "burrow_open_connections ", |v| v >= 1).await >= 1);
    for _ in 0..3 {
        assert!(
            get(l, target).await.ends_with(b"hello from burrow\n"),
            "after restart"
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await; // time passing is the case under test
    assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
    let timeouts = metric(metrics, "burrow_rejected_total{kind=\"timeout\"} ").await;
    assert_eq!(
        timeouts, 0,
        "a warm connection reached the server's deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_and_the_apps_first_bytes_leave_in_one_write() {
    let target = kit::http_target().await;
    let (_server, server_addr, _) = server_metered("127.0.0.1:0", METHOD, "pw", "");
    // A recording link between local and server (20 ms round trip).
    let link = burrow::link::Link::start("127.0.0.1:0", server_addr, Duration::from_millis(20))
        .await
        .expect("link");
    let (_local, l) = local_with(&link.addr.to_string(), "");
    // The first tunnel teaches local that the target is reachable; the next ones go at
    // once, on warm connections, with the request header and the GET in one write.
    for _ in 0..4 {
        assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
    }
    let reads = link.client_reads.lock().expect("reads").clone();
    // salt 32, a sealed header chunk (address of 7 bytes: 18 + 23), then the 18-byte GET
    // sealed (18 + 34): one read holding all of it.
    let together = 32 + 18 + 7 + 16 + 18 + 34;
    let firsts: Vec<usize> = reads.iter().filter_map(|r| r.first().copied()).collect();
    assert!(
        firsts.iter().filter(|&&n| n >= together).count() >= 2,
        "first reads per connection: {firsts:?} (header alone is {})",
        32 + 18 + 7 + 16
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_an_error_on_its_first_use_through_every_inbound() {
    // The server refuses loopback targets (no allow_private).
    let (_server, server_addr) = server(METHOD, PW, &[]);
    let (_local, l) = local(server_addr, METHOD, PW, &[]);
    let refused = "127.0.0.1:9";
    // SOCKS5: a real failure reply, not a success followed by nothing.
    let (_, reply) = kit::socks5_connect(l, "127.0.0.1", 9).await.expect("socks");
    assert_eq!(reply, 4, "host unreachable");
    // CONNECT and plain forwarding: a 502 naming the target.
    let proxy = format!("http://{l}");
    for extra in [&["--proxytunnel"][..], &[]] {
        let url = format!("http://{refused}/");
        let mut args = vec!["-sS", "-i", "-x", &proxy];
        args.extend_from_slice(extra);
        args.push(&url);
        let (_, out, err) = curl(&args).await;
        let text = String::from_utf8_lossy(&out).into_owned() + &err;
        assert!(text.contains("502"), "{extra:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_does_not_wait_for_warm_connections() {
    let target = kit::http_target().await;
    let (mut server, server_addr, metrics) =
        server_metered("127.0.0.1:0", METHOD, "pw", "shutdown_grace = \"30s\"\n");
    let (_local, l) = local_with(&server_addr.to_string(), "");
    assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
    // Warm connections wait at the server, having sent nothing.
    assert!(kit::metric_until(metrics, "burrow_open_connections ", |v| v >= 1).await >= 1);
    let pid = server.pid().to_string();
    let stop = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    assert_eq!(server.wait_exit(), Some(0), "{}", server.output());
    assert!(
        stop.elapsed() < Duration::from_secs(20),
        "the server waited {:?} for connections that sent nothing (grace 30 s)",
        stop.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_outrunning_the_pool_shares_a_connection_byte_exact_with_a_reset_among_them() {
    let target = kit::http_target().await;
    let (server, server_addr, metrics) = server_metered("127.0.0.1:0", METHOD, "pw", "");
    let (local, local_addr) = local_with(&server_addr.to_string(), "warm_connections = 2\n");
    // The first tunnel learns that the server is burrow-server (it confirms).
    let first = kit::socks5_get_body(local_addr, target, 1000)
        .await
        .expect("first");
    assert_eq!(first, kit::pattern(1000, 1000));
    assert_eq!(metric(metrics, "burrow_shared_sessions_total").await, 0);
    // The pool refilled to its two (the server accepted them: the first tunnel's, two).
    kit::metric_until(metrics, "burrow_connections_total", |v| v >= 3).await;
    // A burst of 40 (the pool holds 2), one of them reset half-way.
    let doomed = tokio::spawn(async move {
        let (mut s, _) = kit::socks5_connect(local_addr, "127.0.0.1", target.port())
            .await
            .expect("socks");
        s.write_all(b"GET /bytes/8000000 HTTP/1.0\r\nHost: t\r\n\r\n")
            .await
            .expect("request");
        let mut some = vec![0u8; 64 * 1024];
        s.read_exact(&mut some).await.expect("some of it");
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    });
    let burst = all_at_once_exact(
        local_addr,
        target,
        (0..40).map(|i| 10_000 + i * 30_011),
        &local,
    );
    let (_, done) = tokio::join!(burst, doomed);
    done.expect("reset");
    let shared = metric(metrics, "burrow_shared_sessions_total").await;
    assert!(
        shared >= 20,
        "{shared} of the burst's tunnels shared a connection\n{}",
        server.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_known_before_the_first_app_and_a_dead_target_is_still_an_error() {
    let target = kit::http_target().await;
    let (_server, server_addr, metrics) = server_metered("127.0.0.1:0", METHOD, "pw", "");
    let (local, local_addr) = local_with(&server_addr.to_string(), "");
    // Before any app: burrow-local asked, and burrow-server keeps a shared connection.
    let shared = kit::metric_until(metrics, "burrow_shared_connections_total", |v| v >= 1).await;
    assert_eq!(shared, 1, "{}", local.output());
    // The very first tunnel goes to a port where nothing listens: a real SOCKS5 error.
    let dead = free_port();
    let (_, reply) = kit::socks5_connect(local_addr, "127.0.0.1", dead)
        .await
        .expect("socks");
    assert_ne!(reply, 0, "a dead target must not look connected");
    // And a live one works.
    let body = kit::socks5_get_body(local_addr, target, 5000)
        .await
        .expect("live");
    assert_eq!(body, kit::pattern(5000, 5000));
}

/// A corporate proxy that closes idle tunnels after 3 s (squid's `read_timeout`): the
/// pool learns it from two such closes and retires warm connections well before it, and
/// tunnels go on through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cut_off_on_the_way_is_learned_and_warm_connections_retire_before_it() {
    let target = kit::http_target().await;
    let (_server, server_addr, _metrics) = server_metered("127.0.0.1:0", METHOD, "pw", "");
    // squid takes any directive here; this one closes a tunnel idle for 3 s.
    let squid = Squid::start_with(
        temp_dir("squid-cut"),
        &[server_addr.port()],
        "read_timeout 3 seconds\n",
    );
    let toml = format!(
        "outbound_proxy = \"http://alice:s3cret@{}\"\nwarm_connections = 2\n",
        squid.addr
    );
    let (local, l) = local_with(&server_addr.to_string(), &toml);
    assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
    let said = local.wait_for("closes idle connections after about");
    let secs = |after: &str| -> f64 {
        said.split(after)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure after {after:?} in {said:?}"))
    };
    let cut = secs("after about ");
    assert!((2.0..=4.0).contains(&cut), "{said}");
    assert!(secs("retire before ") < cut, "{said}");
    assert!(get(l, target).await.ends_with(b"hello from burrow\n"));
}

/// After a pause long enough for the demand to fall back and the burst's shared
/// connection to close, the pool still holds two warm connections: a page's next burst
/// takes one for its first tunnel and shares the other, so its tunnels ride connections
/// made before it (one round trip each) instead of new ones (two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_after_a_pause_rides_the_warm_connections_kept() {
    let target = kit::http_target().await;
    let (_server, server_addr, _metrics) = server_metered("127.0.0.1:0", METHOD, "pw", "");
    let link = burrow::link::Link::start("127.0.0.1:0", server_addr, Duration::from_millis(2))
        .await
        .expect("link");
    let (local, local_addr) = local_with(&link.addr.to_string(), "warm_max_age = \"1h\"\n");
    // The first tunnel learns that the server is burrow-server (it confirms).
    let first = kit::socks5_get_body(local_addr, target, 1000)
        .await
        .expect("first");
    assert_eq!(first, kit::pattern(1000, 1000));
    // The demand falls back after 10 s; a shared connection closes after 16 s idle.
    tokio::time::sleep(Duration::from_secs(18)).await;
    let before = *link.accepted.lock().expect("count") as usize;
    // 130 KB in all: the shared connection does not turn busy under the burst.
    all_at_once_exact(local_addr, target, (0..20).map(|i| 2_000 + i * 509), &local).await;
    // Connections made during the burst that carried any of it: at most the two the
    // pool may have refilled in time for the burst's second and third own tunnels.
    let reads = link.client_reads.lock().expect("reads").clone();
    let new_used = reads.iter().skip(before).filter(|r| !r.is_empty()).count();
    assert!(
        new_used <= 2,
        "{new_used} connections made during the burst carried it (of {} made)\n{}",
        reads.len() - before,
        local.output()
    );
}

/// `name`'s count in the namespace's `/proc/net/netstat` (TcpExt).
fn tcp_ext(ns: &kit::NetNs, name: &str) -> u64 {
    let (ok, text) = ns.run("cat", &["/proc/net/netstat"]);
    assert!(ok, "netstat: {text}");
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// In a namespace whose kernel takes SYN data: a tunnel to a new target on a fresh
/// connection sends its request in the SYN once the server's cookie is held (the server
/// took it, the answer is whole, a dead target is still a SOCKS5 error); a server that
/// swallows the SYN (a cookie held, nothing answers) is a failed connect, so the tunnel
/// moves to the next server instead of passing for one that never answers first; and
/// `fast_open = false` sends no SYN data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_targets_request_rides_the_syn_and_a_silent_server_is_still_a_failed_connect() {
    let ns = kit::NetNs::new("fastopen");
    // net.ipv4.tcp_fastopen = 3 in the namespace only (no procps needed).
    let (ok, out) = ns.run("sh", &["-c", "echo 3 > /proc/sys/net/ipv4/tcp_fastopen"]);
    assert!(ok, "tcp_fastopen: {out}");
    let origin = ns.spawn(
        "python3",
        &["-c", "import socket\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(64)\n\
         print('listening on 127.0.0.1:%d'%s.getsockname()[1],flush=True)\nwhile True:\n c,a=s.accept()\n \
         c.recv(4096)\n c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n'+b'fast-open-body'*1000)\n c.close()\n"],
        &[],
    );
    let target = origin.listening();
    let dir = temp_dir("fastopen");
    let scfg = dir.join("server.toml");
    std::fs::write(&scfg, "allow_private = true\n").expect("server config");
    let server = ns.spawn(
        SERVER,
        &["-s", "127.0.0.1:0", "-k", PW, "-c", &scfg.to_string_lossy()],
        &[],
    );
    let server_at = server.listening();
    let local_in_ns = |name: &str, toml: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "password = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
                 warm_connections = 0\nconnect_timeout = \"2s\"\n{toml}"
            ),
        )
        .expect("local config");
        ns.spawn(
            LOCAL,
            &["-c", &path.to_string_lossy()],
            &[("BURROW_PRIVATE_TARGETS", "tunnel"), ("RUST_LOG", "info")],
        )
    };
    let get = |proxy: SocketAddr, host: &str, port: u16| {
        let url = format!("http://{host}:{port}/");
        ns.run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "20",
                "--socks5-hostname",
                &proxy.to_string(),
                &url,
            ],
        )
    };
    let whole = |out: &str| out.matches("fast-open-body").count() == 1000;

    let local = local_in_ns("one.toml", &format!("server = \"{server_at}\"\n"));
    let proxy = local.listening();
    // The first new target asks for the cookie; the next ones use it.
    let (ok, out) = get(proxy, "127.0.0.1", target.port());
    assert!(ok && whole(&out), "first: {out}");
    let before = tcp_ext(&ns, "TCPFastOpenPassive");
    let (ok, out) = get(proxy, "127.0.0.2", target.port());
    assert!(!ok, "127.0.0.2 has no listener here: {out}");
    let (ok, out) = get(proxy, "localhost", target.port());
    assert!(ok && whole(&out), "by name: {out}");
    let taken = tcp_ext(&ns, "TCPFastOpenPassive") - before;
    assert!(
        taken >= 2,
        "SYNs with data taken: {taken}\n{}",
        local.output()
    );
    drop(local);

    // A cookie is held for 127.0.0.1: a server there that drops every packet lets the
    // connect return at once; the handshake is what fails.
    let silent = free_port();
    let rule = format!("add rule inet silent in tcp dport {silent} drop");
    for cmd in [
        "add table inet silent",
        "add chain inet silent in { type filter hook input priority 0; }",
        &rule,
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        let (ok, out) = ns.run("nft", &args);
        assert!(ok, "nft {cmd}: {out}");
    }
    let local = local_in_ns(
        "two.toml",
        &format!("server = [\"127.0.0.1:{silent}\", \"{server_at}\"]\n"),
    );
    let proxy = local.listening();
    let (ok, out) = get(proxy, "127.0.0.3", target.port());
    assert!(!ok, "127.0.0.3 has no listener here: {out}");
    let (ok, out) = get(proxy, "127.0.0.1", target.port());
    assert!(
        ok && whole(&out),
        "on the next server: {out}\n{}",
        local.output()
    );
    assert!(
        !local.output().contains("never answers first"),
        "{}",
        local.output()
    );
    drop(local);

    let active = tcp_ext(&ns, "TCPFastOpenActive");
    let local = local_in_ns(
        "off.toml",
        &format!("server = \"{server_at}\"\nfast_open = false\n"),
    );
    let (ok, out) = get(local.listening(), "127.0.0.1", target.port());
    assert!(ok && whole(&out), "without: {out}");
    assert_eq!(
        tcp_ext(&ns, "TCPFastOpenActive"),
        active,
        "fast_open = false sent SYN data"
    );
}
