//! Where apps' targets go: `bypass` and `[[rule]]`s (names, IPv4 and IPv6 networks),
//! `block` refused with the right SOCKS5 and HTTP answers and nothing sent to the
//! server, an ACL file in shadowsocks-rust's format, the defaults (private addresses
//! direct), UDP ASSOCIATE by the same rules, `/proxy.pac` from the same rules and
//! `doctor --route`. The server's own counters say which tunnels reached it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use burrow::kit::{self, metric, metric_until, pattern, sha256_hex, Proc, Socks5Udp};
use common::*;

const METHOD: &str = "chacha20-ietf-poly1305";
const PW: &str = "routing-test-password";
const TUNNELS: &str = "burrow_connections_total";

/// burrow-server allowing loopback targets, with metrics: its address and metrics.
fn counted_server() -> (Proc, SocketAddr, SocketAddr) {
    let toml = "allow_private = true\nmetrics = \"127.0.0.1:0\"\n";
    let (p, addr) = server_with_config(METHOD, PW, toml);
    let metrics = p.listening();
    (p, addr, metrics)
}

/// burrow-local with `config`, no warm connections (every tunnel the server counts is
/// one an app asked for), and the product's default for private addresses.
fn routed_local(server: SocketAddr, config: &str) -> (Proc, SocketAddr) {
    let cfg = temp_dir("route-local").join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{server}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
             local_address = \"127.0.0.1\"\nlocal_port = 0\nwarm_connections = 0\n{config}"
        ),
    )
    .expect("config");
    let p = Proc::spawn(
        LOCAL,
        &["-c", cfg.to_str().expect("utf8")],
        &[("BURROW_PRIVATE_TARGETS", "direct")],
    );
    let a = p.listening();
    (p, a)
}

async fn socks_get(local: SocketAddr, url: &str) -> (i32, Vec<u8>, String) {
    curl(&["--socks5-hostname", &local.to_string(), url]).await
}

/// Tunnels the server has taken so far.
async fn tunnels(metrics: SocketAddr) -> u64 {
    metric(metrics, TUNNELS).await.unwrap_or(0)
}

/// `bypass` names go direct (the server sees no tunnel for them) while other targets go
/// through it; a `[[rule]]` sends an IPv4 network through the tunnel before the default
/// would take it direct; an IPv6 network rule and the default for ::1 go direct; `block`
/// is refused at once with SOCKS5 reply 2 and HTTP 403, nothing sent to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_send_each_target_its_way() {
    let target = kit::http_target().await;
    let port = target.port();
    let (_server, server_addr, metrics) = counted_server();
    let (local, local_addr) = routed_local(
        server_addr,
        "bypass = [\"localhost\"]\n\
         [[rule]]\nhosts = [\"blocked.example\", \"127.0.0.3/32\"]\nvia = \"block\"\n\
         [[rule]]\nhosts = [\"127.0.0.1/32\"]\nvia = \"tunnel\"\n",
    );
    local.wait_for("routing: 4 host entries in 3 rules (direct 1, tunnel 1, proxy 0, block 2)");

    // localhost: in bypass, direct.
    let n = 200_000;
    let (code, out, err) =
        socks_get(local_addr, &format!("http://localhost:{port}/bytes/{n}")).await;
    assert_eq!(code, 0, "{err}\n{}", local.output());
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(n, n as u64)));
    assert_eq!(tunnels(metrics).await, 0, "no tunnel for a bypassed name");
    // 127.0.0.1: a rule sends it through the tunnel.
    let (code, out, err) =
        socks_get(local_addr, &format!("http://127.0.0.1:{port}/bytes/{n}")).await;
    assert_eq!((code, out.len()), (0, n), "{err}");
    assert_eq!(metric_until(metrics, TUNNELS, |v| v >= 1).await, 1);
    // The HTTP proxy follows the same rules: forwarding and CONNECT to localhost direct.
    let proxy = format!("http://{local_addr}");
    let url = format!("http://localhost:{port}/bytes/1000");
    for extra in [&["--proxytunnel"][..], &[]] {
        let (code, out, err) =
            curl(&[&["-x", proxy.as_str()][..], extra, &[url.as_str()]].concat()).await;
        assert_eq!((code, out.len()), (0, 1000), "{extra:?}: {err}");
    }
    assert_eq!(tunnels(metrics).await, 1, "still the one tunnel");

    // Blocked: SOCKS5 reply 2 (not allowed by the ruleset), HTTP 403, nothing to the server.
    for (host, port) in [("blocked.example", 80), ("127.0.0.3", port)] {
        let started = std::time::Instant::now();
        let reply = kit::socks5_connect(local_addr, host, port).await;
        let reply = match reply {
            Ok((_, r)) => r,
            Err(e) => panic!("{host}: {e}"),
        };
        assert_eq!(reply, 2, "{host}: SOCKS5 reply");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{host}: at once"
        );
        let (_, status, _) = curl(&[
            "-x",
            &proxy,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{host}:{port}/"),
        ])
        .await;
        assert_eq!(
            String::from_utf8_lossy(&status),
            "403",
            "{host}: HTTP answer"
        );
    }
    local.wait_for("blocked.example:80 is blocked by [[rule]] 1");
    assert_eq!(
        tunnels(metrics).await,
        1,
        "nothing sent to the server for a block"
    );

    // IPv6: ::1 by default direct, a network rule blocks another one.
    let v6 = tokio::net::TcpListener::bind("[::1]:0")
        .await
        .expect("bind ::1");
    let v6_addr = v6.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut c, _)) = v6.accept().await {
            let _ = c.write_all(b"hello over ipv6").await;
        }
    });
    let (mut s, reply) = kit::socks5_connect(local_addr, "::1", v6_addr.port())
        .await
        .expect("socks ::1");
    assert_eq!(reply, 0);
    let mut got = String::new();
    use tokio::io::AsyncReadExt;
    s.read_to_string(&mut got).await.expect("read");
    assert_eq!(got, "hello over ipv6");
    assert_eq!(tunnels(metrics).await, 1, "::1 went direct");
}

/// IPv6 networks and an ACL file in shadowsocks-rust's format: its bypass list direct,
/// its proxy list and everything else ([proxy_all]) through the tunnel, its block list
/// refused; doctor --route says which line decided; the log says what was loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_file_as_shadowsocks_rust_writes_it() {
    let target = kit::http_target().await;
    let port = target.port();
    let (_server, server_addr, metrics) = counted_server();
    let dir = temp_dir("acl");
    let acl = dir.join("bypass.acl");
    std::fs::write(
        &acl,
        "[proxy_all]\n\n[bypass_list]\n(^|\\.)localhost$\n::1/128\n\n\
         [proxy_list]\n127.0.0.0/8\n\n[outbound_block_list]\n(^|\\.)ads\\.example$\nfd00::/8\n",
    )
    .expect("acl");
    let acl = acl.to_str().expect("utf8");
    let (local, local_addr) = routed_local(server_addr, &format!("acl = \"{acl}\"\n"));
    let said = local.wait_for("routing:");
    assert!(
        said.contains("2 bypass, 1 proxy, 2 block entries, the rest tunnelled ([proxy_all])"),
        "{said}"
    );
    let (code, out, err) =
        socks_get(local_addr, &format!("http://localhost:{port}/bytes/1000")).await;
    assert_eq!((code, out.len()), (0, 1000), "{err}");
    assert_eq!(tunnels(metrics).await, 0, "the bypass list goes direct");
    let (code, out, err) =
        socks_get(local_addr, &format!("http://127.0.0.1:{port}/bytes/1000")).await;
    assert_eq!((code, out.len()), (0, 1000), "{err}");
    assert_eq!(metric_until(metrics, TUNNELS, |v| v >= 1).await, 1);
    for (host, p) in [("x.ads.example", 80), ("fd00::5", 80)] {
        let (_, reply) = kit::socks5_connect(local_addr, host, p)
            .await
            .expect("socks");
        assert_eq!(reply, 2, "{host}");
    }
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!("server = \"{server_addr}\"\npassword = \"{PW}\"\nacl = \"{acl}\"\n"),
    )
    .expect("cfg");
    let doctor = |route: &str| {
        let out = std::process::Command::new(LOCAL)
            .args([
                "doctor",
                "-c",
                cfg.to_str().expect("utf8"),
                "--route",
                route,
            ])
            .output()
            .expect("doctor");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = doctor("www.localhost:80");
    assert!(
        said.contains("direct") && said.contains("[bypass_list]"),
        "{said}"
    );
    let said = doctor("example.com");
    assert!(
        said.contains("example.com:443 goes through the tunnel") && said.contains("[proxy_all]"),
        "{said}"
    );
    let said = doctor("[fd00::1]:80");
    assert!(said.contains("blocked"), "{said}");
}

/// UDP ASSOCIATE follows the same rules: a datagram to a private address goes direct
/// (the server's relay never sees it), one to a blocked address is dropped; with the
/// tests' setting (private addresses tunnelled) it goes through the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_follows_the_rules() {
    let (echo, seen) = kit::udp_echo().await;
    let (_server, server_addr, metrics) = counted_server();
    let (_local, local_addr) = routed_local(
        server_addr,
        "[[rule]]\nhosts = [\"127.0.0.5\"]\nvia = \"block\"\n",
    );
    let via = Socks5Udp::associate(local_addr).await.expect("associate");
    for size in [1, 700, 1400] {
        let data = pattern(size, size as u64);
        via.send(echo, &data).await;
        let (from, back) = via.recv(Duration::from_secs(10)).await.expect("echo");
        assert_eq!((from, back), (echo, data));
    }
    assert_eq!(
        metric(metrics, "burrow_udp_sessions ").await.unwrap_or(0),
        0,
        "direct: no session on the server"
    );
    let blocked: SocketAddr = format!("127.0.0.5:{}", echo.port()).parse().expect("addr");
    via.send(blocked, b"blocked").await;
    via.send(echo, b"after").await;
    let (_, back) = via.recv(Duration::from_secs(10)).await.expect("echo");
    assert_eq!(back, b"after");
    assert_eq!(seen.load(SeqCst), 4, "the blocked datagram went nowhere");
}

/// `/proxy.pac` says what the rules say: direct rules DIRECT, block a dead proxy, tunnel
/// rules burrow-local, bypass DIRECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pac_file_follows_the_rules() {
    let (_server, server_addr, _) = counted_server();
    let (_local, local_addr) = routed_local(
        server_addr,
        "bypass = [\"*.corp.example\"]\n\
         [[rule]]\nhosts = [\"ads.example\"]\nvia = \"block\"\n\
         [[rule]]\nhosts = [\"git.corp.example\"]\nvia = \"tunnel\"\n\
         [[rule]]\nhosts = [\"10.0.0.0/8\"]\nvia = \"direct\"\n",
    );
    let (code, body, err) = curl(&[&format!("http://{local_addr}/proxy.pac")]).await;
    assert_eq!(code, 0, "{err}");
    let pac = String::from_utf8_lossy(&body).into_owned();
    let ours = format!("PROXY {local_addr}; SOCKS5 {local_addr}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pac_eval.js");
    let helpers = concat!(env!("CARGO_MANIFEST_DIR"), "/local/src/pac/helpers.js");
    let file = temp_dir("route-pac").join("proxy.pac");
    std::fs::write(&file, &pac).expect("pac");
    let cases = [
        ("ads.example", "PROXY 127.0.0.1:1"),
        ("git.corp.example", ours.as_str()),
        ("wiki.corp.example", "DIRECT"),
        ("10.1.2.3", "DIRECT"),
        ("example.com", ours.as_str()),
    ];
    let mut args = vec![script, helpers, file.to_str().expect("utf8")];
    args.extend(cases.iter().map(|(h, _)| *h));
    let out = std::process::Command::new("node")
        .args(&args)
        .output()
        .expect("node");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    for (host, want) in cases {
        let answer = said
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{host}\t")))
            .unwrap_or_default();
        assert_eq!(
            answer,
            want,
            "{host}\n{pac}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The corporate PAC knows the intranet: while it sends the server through squid, a
/// target it answers DIRECT for goes direct and the others through the tunnel (via
/// squid); a PAC that answers DIRECT for everything keeps everything in the tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corporate_pac_sends_intranet_targets_direct() {
    use burrow::peers::Squid;
    let target = kit::http_target().await;
    let port = target.port();
    let (_server, server_addr, metrics) = counted_server();
    let squid = Squid::start(temp_dir("route-squid"), &[server_addr.port()]);
    let corporate = format!(
        "function FindProxyForURL(url, host) {{\n\
           if (host === \"localhost\") return \"DIRECT\";\n\
           return \"PROXY {}\";\n}}\n",
        squid.addr
    );
    let everything_direct = "function FindProxyForURL(url, host) { return \"DIRECT\"; }".to_owned();
    let mut expected_tunnels = 0;
    for (pac, localhost_tunnelled) in [(corporate, false), (everything_direct, true)] {
        let (pac_addr, _) = kit::text_origin(pac, "application/x-ns-proxy-autoconfig").await;
        let cfg = temp_dir("route-pac-local").join("local.toml");
        std::fs::write(
            &cfg,
            format!(
                "server = \"{server_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
                 local_address = \"127.0.0.1\"\nlocal_port = 0\nwarm_connections = 0\n\
                 outbound_proxy = \"pac+http://{pac_addr}/proxy.pac\"\n\
                 outbound_username = \"alice\"\noutbound_password = \"s3cret\"\n\
                 outbound_auth = \"basic\"\nproxy_auth_hosts = [\"127.0.0.1:{}\"]\n",
                squid.addr.port()
            ),
        )
        .expect("config");
        // The kit's setting: 127.0.0.1 through the tunnel, so the PAC decides for names.
        let local = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
        let local_addr = local.listening();
        local.wait_for("PAC http://");
        let (code, out, err) =
            socks_get(local_addr, &format!("http://localhost:{port}/bytes/1000")).await;
        assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", local.output());
        if localhost_tunnelled {
            expected_tunnels += 1;
        }
        assert_eq!(
            metric_until(metrics, TUNNELS, |v| v >= expected_tunnels).await,
            expected_tunnels,
            "localhost tunnelled: {localhost_tunnelled}"
        );
        let (code, out, err) =
            socks_get(local_addr, &format!("http://127.0.0.1:{port}/bytes/1000")).await;
        assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", local.output());
        expected_tunnels += 1;
        assert_eq!(
            metric_until(metrics, TUNNELS, |v| v >= expected_tunnels).await,
            expected_tunnels
        );
    }
    let connect = format!("CONNECT 127.0.0.1:{} alice", server_addr.port());
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "the tunnel went via squid: {log}");
}
