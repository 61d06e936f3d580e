//! UDP: SOCKS5 UDP ASSOCIATE through burrow-local and burrow-server (the Shadowsocks UDP
//! relay, and UDP over the TCP tunnel through squid and the wss dress), interop with
//! shadowsocks-rust and -libev, the egress policy, block_quic, idle sessions freed.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use burrow::kit::{self, free_port, metric, metric_until, Proc, Socks5Udp};
use burrow::origins;
use burrow::peers::{Nginx, Squid};
use common::*;

const METHOD: &str = "chacha20-ietf-poly1305";
const WAIT: Duration = Duration::from_secs(10);

/// `n` datagrams of sizes 1 to 1 400 through `via` to `echo`, one at a time: each comes
/// back intact, from the echo.
async fn echo_each(via: &Socks5Udp, echo: SocketAddr, n: usize) {
    echo_each_said(via, echo, n, "").await
}

/// [`echo_each`], naming `what` in a failure.
async fn echo_each_said(via: &Socks5Udp, echo: SocketAddr, n: usize, what: &str) {
    for i in 0..n {
        let data: Vec<u8> = (0..(1 + i * 7 % 1400)).map(|j| (i + j) as u8).collect();
        via.send(echo, &data).await;
        let (from, back) = via
            .recv(WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: datagram {i} lost"));
        assert_eq!((from, back.len()), (echo, data.len()), "datagram {i}");
        assert_eq!(back, data, "datagram {i}");
    }
}

/// `n` DNS-sized queries with `window` in flight at once; every one answered.
async fn queries(via: &Socks5Udp, echo: SocketAddr, n: u32, window: u32) {
    let mut answered = vec![false; n as usize];
    let (mut sent, mut got) = (0u32, 0u32);
    while got < n {
        while sent < n && sent - got < window {
            let mut q = sent.to_be_bytes().to_vec();
            q.extend_from_slice(&[0x5a; 60]);
            via.send(echo, &q).await;
            sent += 1;
        }
        let (_, back) = via
            .recv(WAIT)
            .await
            .unwrap_or_else(|| panic!("{got} of {n} answered, then nothing"));
        let id = u32::from_be_bytes([back[0], back[1], back[2], back[3]]) as usize;
        assert!(!answered[id], "query {id} answered twice");
        answered[id] = true;
        got += 1;
    }
}

/// burrow-server with metrics and `toml`; its address and metrics address.
fn server_with(toml: &str) -> (Proc, SocketAddr, SocketAddr) {
    server_keyed(METHOD, "pw", toml)
}

/// [`server_with`] for `method` and its `secret`.
fn server_keyed(method: &str, secret: &str, toml: &str) -> (Proc, SocketAddr, SocketAddr) {
    let toml = format!("metrics = \"127.0.0.1:0\"\n{toml}");
    let (p, addr) = server_with_config(method, secret, &toml);
    let metrics = p.listening();
    p.wait_for("UDP relay on");
    (p, addr, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_datagrams_each_way_both_transports_only_from_the_app() {
    let (echo, seen) = kit::udp_echo().await;
    let (_server, server_addr, metrics) = server_with("allow_private = true\n");
    for transport in ["auto", "tcp"] {
        let (local, local_addr) = local_with(
            &server_addr.to_string(),
            &format!("udp_transport = \"{transport}\"\n"),
        );
        let via = Socks5Udp::associate(local_addr).await.expect("associate");
        echo_each(&via, echo, 1000).await;
        // A datagram from another port of the app's host, and a fragment: neither
        // reaches the echo (the next good one does, and is the only one counted).
        let before = seen.load(SeqCst);
        let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut d = kit::socks5_udp_header(echo);
        d.extend_from_slice(b"not from the app");
        stranger.send_to(&d, via.relay).await.expect("send");
        let mut frag = kit::socks5_udp_header(echo);
        frag[2] = 1;
        frag.extend_from_slice(b"a fragment");
        via.socket.send_to(&frag, via.relay).await.expect("send");
        echo_each(&via, echo, 1).await;
        assert_eq!(
            seen.load(SeqCst),
            before + 1,
            "{transport}: {}",
            local.output()
        );
    }
    let up = metric(metrics, "burrow_udp_datagrams_total{direction=\"up\"}").await;
    assert!(up.is_some_and(|n| n >= 2002), "{up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_interop_with_shadowsocks_rust_and_libev() {
    let (echo, _) = kit::udp_echo().await;
    for method in ["chacha20-ietf-poly1305", "2022-blake3-chacha20-poly1305"] {
        let secret = secret_for(method);
        // sslocal -U → burrow-server.
        let (_server, server_addr, _) = server_keyed(method, secret, "allow_private = true\n");
        let lport = free_port();
        let sslocal = Proc::spawn(
            "sslocal",
            &[
                "-U",
                "-v",
                "-b",
                &format!("127.0.0.1:{lport}"),
                "-s",
                &server_addr.to_string(),
                "-m",
                method,
                "-k",
                secret,
            ],
            &[],
        );
        sslocal.wait_for("UDP listening on");
        let via = Socks5Udp::associate(format!("127.0.0.1:{lport}").parse().expect("addr"))
            .await
            .expect("associate");
        echo_each_said(
            &via,
            echo,
            200,
            &format!("sslocal -U → burrow-server, {method}"),
        )
        .await;

        // burrow-local (defaults) → ssserver -U.
        let sport = free_port();
        let ssserver = Proc::spawn(
            "ssserver",
            &[
                "-U",
                "-s",
                &format!("127.0.0.1:{sport}"),
                "-m",
                method,
                "-k",
                secret,
            ],
            &[],
        );
        ssserver.wait_for("udp server listening on");
        let (l, local_addr) = local(
            format!("127.0.0.1:{sport}").parse().expect("addr"),
            method,
            secret,
            &["-v"],
        );
        let via = Socks5Udp::associate(local_addr).await.expect("associate");
        let what = format!("burrow-local → ssserver -U, {method}\n{}", l.output());
        echo_each_said(&via, echo, 200, &what).await;
        l.wait_for("carried over the server's UDP port");
    }

    // burrow-local (defaults) → ss-server -u (libev), both SIP004 ciphers.
    for method in ["chacha20-ietf-poly1305", "aes-256-gcm"] {
        let port = free_port();
        let ss = Proc::spawn(
            "ss-server",
            &[
                "-u",
                "-s",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-k",
                "pw",
                "-m",
                method,
            ],
            &[],
        );
        ss.wait_for("udp server listening at");
        let (l, local_addr) = local(
            format!("127.0.0.1:{port}").parse().expect("addr"),
            method,
            "pw",
            &["-v"],
        );
        let via = Socks5Udp::associate(local_addr).await.expect("associate");
        l.wait_for("carried over the server's UDP port");
        let what = format!("burrow-local → ss-server -u, {method}");
        echo_each_said(&via, echo, 200, &what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_queries_over_tcp_through_squid_and_through_wss() {
    let (echo, _) = kit::udp_echo().await;
    let dir = temp_dir("udp-wss");
    std::fs::write(
        dir.join("server.toml"),
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    let server = Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-m",
            METHOD,
            "-k",
            "pw",
            "-c",
            dir.join("server.toml").to_str().expect("utf8"),
        ],
        &[],
    );
    let (tcp, ws) = (server.listening(), server.listening());
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let nginx = Nginx::start(&dir, &cert, &key, ws, 30);
    // squid lets CONNECT out to the server's TCP port and nginx only: no UDP gets out.
    let squid = Squid::start(temp_dir("squid"), &[tcp.port(), nginx.addr.port()]);
    let proxy = format!("outbound_proxy = \"http://alice:s3cret@{}\"\n", squid.addr);
    let hops = [
        (tcp.to_string(), proxy.clone()),
        (
            format!("localhost:{}", nginx.addr.port()),
            format!(
                "{proxy}transport = \"wss\"\n[websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
                ca.display()
            ),
        ),
    ];
    for (server_at, toml) in hops {
        let (local, local_addr) = local_with(&server_at, &toml);
        let via = Socks5Udp::associate(local_addr).await.expect("associate");
        queries(&via, echo, 10_000, 64).await;
        drop(via);
        let closed = local.wait_for("UDP association closed");
        assert!(
            closed.contains("10000 datagrams up, 10000 down"),
            "{closed}"
        );
    }
    let log = squid.access_log_with("CONNECT", 2).await;
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{}", tcp.port())),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_policy_block_quic_and_idle_sessions_freed() {
    let (echo, seen) = kit::udp_echo().await;
    // Loopback is refused but for the echo's own address.
    let (_server, server_addr, metrics) = server_with(&format!(
        "allow = [\"{}/32\"]\nblock_quic = true\nudp_timeout = \"3s\"\n",
        echo.ip()
    ));
    let (_local, local_addr) = local_with(&server_addr.to_string(), "");
    let via = Socks5Udp::associate(local_addr).await.expect("associate");
    echo_each(&via, echo, 3).await;
    assert!(metric(metrics, "burrow_udp_sessions ")
        .await
        .is_some_and(|n| n >= 1));
    let dropped = |reason: &str| format!("burrow_udp_dropped_total{{reason=\"{reason}\"}}");
    // 127.0.0.2 (loopback, not allowed) and port 443 (QUIC) are not sent on.
    let other: SocketAddr = format!("127.0.0.2:{}", echo.port()).parse().expect("addr");
    via.send(other, b"to a refused address").await;
    let quic: SocketAddr = format!("{}:443", echo.ip()).parse().expect("addr");
    via.send(quic, b"QUIC initial").await;
    assert_eq!(
        metric_until(metrics, &dropped("policy"), |n| n >= 1).await,
        1
    );
    assert_eq!(metric_until(metrics, &dropped("quic"), |n| n >= 1).await, 1);
    assert!(via.recv(Duration::from_millis(300)).await.is_none());
    assert_eq!(
        seen.load(SeqCst),
        3,
        "only the allowed datagrams reached the echo"
    );
    // Idle past udp_timeout: the session is freed.
    assert_eq!(
        metric_until(metrics, "burrow_udp_sessions ", |n| n == 0).await,
        0
    );
    // And a new datagram opens a new one that works.
    echo_each(&via, echo, 1).await;
}

/// `dns = ADDR`: queries to the forwarder come back answered by the resolver named in
/// `dns_upstream`, reached from the server (an echo on loopback stands for it here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_forwarder_asks_through_the_server() {
    let (resolver, seen) = kit::udp_echo().await;
    let (_server, server_addr, metrics) = server_with("allow_private = true\n");
    let (local, _) = local_with(
        &server_addr.to_string(),
        &format!("dns = \"127.0.0.1:0\"\ndns_upstream = \"{resolver}\"\n"),
    );
    let dns_at = local.listening();
    let app = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for id in 0u16..20 {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        app.send_to(&q, dns_at).await.expect("send");
        let mut buf = [0u8; 512];
        let (n, from) = tokio::time::timeout(WAIT, app.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("query {id} unanswered\n{}", local.output()))
            .expect("recv");
        assert_eq!((from, &buf[..n]), (dns_at, &q[..]), "query {id}");
    }
    assert_eq!(seen.load(SeqCst), 20);
    let up = metric(metrics, "burrow_udp_datagrams_total{direction=\"up\"}").await;
    assert_eq!(up, Some(20), "the queries went through the server");
}

/// A captured datagram sent again from other source ports (a spoofed victim's, say)
/// opens no session and reaches nothing, SIP004 and SIP022; and a datagram under
/// another user's key from an address that has a session is dropped, never re-keying
/// the answers to that address; a user's UDP sessions count against their cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_datagram_opens_nothing_and_a_session_keeps_its_user() {
    use burrow_common::udp::ClientCodec;
    use burrow_common::{MasterKey, TargetAddr};
    use tokio::net::UdpSocket;
    let dropped = |reason: &str| format!("burrow_udp_dropped_total{{reason=\"{reason}\"}}");
    for method in [METHOD, "2022-blake3-chacha20-poly1305"] {
        let secret = secret_for(method);
        let (echo, seen) = kit::udp_echo().await;
        let (_server, server_addr, metrics) =
            server_keyed(method, secret, &format!("allow = [\"{}/32\"]\n", echo.ip()));
        let m = burrow_common::aead::Method::ALL
            .into_iter()
            .find(|m| m.name() == method)
            .expect("method");
        let key = MasterKey::from_secret(m, secret).expect("key");
        let mut codec = ClientCodec::new(&key);
        let packet = codec.seal(&TargetAddr::Ip(echo), b"captured once");
        let first = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        first.send_to(&packet, server_addr).await.expect("send");
        let mut buf = vec![0u8; 2048];
        let (n, _) = tokio::time::timeout(WAIT, first.recv_from(&mut buf))
            .await
            .expect("an answer")
            .expect("recv");
        let (_, data) = codec.open(&buf[..n]).expect("opens");
        assert_eq!(&data[..], b"captured once");
        // The same bytes from two other sources.
        let others = [
            UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
        ];
        for o in &others {
            o.send_to(&packet, server_addr).await.expect("send");
        }
        assert_eq!(
            metric_until(metrics, &dropped("replay"), |n| n >= 2).await,
            2,
            "{method}"
        );
        assert_eq!(
            seen.load(SeqCst),
            1,
            "{method}: the echo saw the capture once"
        );
        for o in &others {
            let mut b = [0u8; 64];
            assert!(o.try_recv_from(&mut b).is_err(), "{method}: no answer");
        }
    }

    // Two users: bob's datagram from alice's address is dropped.
    let (echo, seen) = kit::udp_echo().await;
    let users = format!(
        "method = \"{METHOD}\"\nmetrics = \"127.0.0.1:0\"\nallow = [\"{}/32\"]\n\
         [[user]]\nname = \"alice\"\npassword = \"pa\"\nmax_connections = 1\n\
         [[user]]\nname = \"bob\"\npassword = \"pb\"\n",
        echo.ip()
    );
    let cfg = temp_dir("udp-users").join("server.toml");
    std::fs::write(&cfg, users).expect("config");
    let server = Proc::spawn(
        SERVER,
        &["-s", "127.0.0.1:0", "-c", cfg.to_str().expect("utf8")],
        &[],
    );
    let (server_addr, metrics) = (server.listening(), server.listening());
    server.wait_for("UDP relay on");
    let m = burrow_common::aead::Method::ChaCha20IetfPoly1305;
    let mut alice = ClientCodec::new(&MasterKey::from_password(m, "pa"));
    let mut bob = ClientCodec::new(&MasterKey::from_password(m, "pb"));
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(&alice.seal(&TargetAddr::Ip(echo), b"alice"), server_addr)
        .await
        .expect("send");
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .expect("recv");
    assert_eq!(&alice.open(&buf[..n]).expect("alice's key").1[..], b"alice");
    let probes = metric(metrics, &dropped("probe")).await.unwrap_or(0);
    sock.send_to(&bob.seal(&TargetAddr::Ip(echo), b"bob"), server_addr)
        .await
        .expect("send");
    metric_until(metrics, &dropped("probe"), |n| n > probes).await;
    assert_eq!(seen.load(SeqCst), 1, "bob's datagram went nowhere");
    // Alice's session goes on under her key.
    sock.send_to(&alice.seal(&TargetAddr::Ip(echo), b"again"), server_addr)
        .await
        .expect("send");
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .expect("recv");
    assert_eq!(&alice.open(&buf[..n]).expect("alice's key").1[..], b"again");
    // Alice's cap is one tunnel: a second session of hers (another source) is refused.
    let full = metric(metrics, &dropped("sessions")).await.unwrap_or(0);
    let other = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut alice2 = ClientCodec::new(&MasterKey::from_password(m, "pa"));
    other
        .send_to(&alice2.seal(&TargetAddr::Ip(echo), b"second"), server_addr)
        .await
        .expect("send");
    metric_until(metrics, &dropped("sessions"), |n| n > full).await;
    assert_eq!(seen.load(SeqCst), 2, "the second session sent nothing on");
}

/// UDP over the TCP tunnel right after a TCP tunnel: the server is known to confirm and a
/// warm connection is at hand, and the association still answers at once (its tunnel
/// does not wait for a word the server gives only with its first datagram back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_over_tcp_after_a_tcp_tunnel_answers_at_once() {
    let (echo, _) = kit::udp_echo().await;
    let target = kit::http_target().await;
    let (_server, server_addr, _) = server_with("allow_private = true\n");
    let (local, local_addr) = local_with(&server_addr.to_string(), "udp_transport = \"tcp\"\n");
    let (code, _, err) = curl(&[
        "--socks5-hostname",
        &local_addr.to_string(),
        &format!("http://{target}/bytes/100"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let via = Socks5Udp::associate(local_addr).await.expect("associate");
    via.send(echo, b"right after").await;
    let (from, back) = via
        .recv(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no answer within 5 s\n{}", local.output()));
    assert_eq!((from, back.as_slice()), (echo, &b"right after"[..]));
}

/// Datagram `i` of app `who`: its tag and number first, then a size from 1 to 1 400 bytes
/// of a pattern of its own.
fn tagged(who: u8, i: u32) -> Vec<u8> {
    let len = 5 + (i as usize * 97 + who as usize * 31) % 1396;
    let mut d = vec![who];
    d.extend_from_slice(&i.to_be_bytes());
    d.extend((5..len).map(|j| (j as u32 ^ i ^ who as u32) as u8));
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_interleaved_mixed_sizes_each_gets_only_its_own_byte_exact() {
    // Two associations through one burrow-local are two client addresses at the server:
    // two sessions, whose datagrams go out and come back while the other's are in flight
    // (16 each at once), with sizes from 1 to 1 400 bytes.
    const N: u32 = 1000;
    let (echo, seen) = kit::udp_echo().await;
    for method in [METHOD, "2022-blake3-chacha20-poly1305"] {
        let secret = secret_for(method);
        let (_server, server_addr, metrics) =
            server_keyed(method, secret, "allow_private = true\n");
        let (_local, local_addr) = local(server_addr, method, secret, &[]);
        let apps = [
            Socks5Udp::associate(local_addr).await.expect("associate"),
            Socks5Udp::associate(local_addr).await.expect("associate"),
        ];
        let before = seen.load(SeqCst);
        let mut sent = [0u32; 2];
        let mut got = [vec![false; N as usize], vec![false; N as usize]];
        let mut done = [0u32; 2];
        while done != [N, N] {
            for who in 0..2 {
                while sent[who] < N && sent[who] - done[who] < 16 {
                    apps[who].send(echo, &tagged(who as u8, sent[who])).await;
                    sent[who] += 1;
                }
            }
            for who in 0..2 {
                if done[who] == N {
                    continue;
                }
                let Some((from, back)) = apps[who].recv(WAIT).await else {
                    let mut drops = String::new();
                    for why in ["probe", "policy", "sessions", "busy", "replay"] {
                        let name = format!("burrow_udp_dropped_total{{reason=\"{why}\"}}");
                        drops += &format!(" {why}={:?}", metric(metrics, &name).await);
                    }
                    let up = metric(metrics, "burrow_udp_datagrams_total{direction=\"up\"}").await;
                    let down =
                        metric(metrics, "burrow_udp_datagrams_total{direction=\"down\"}").await;
                    panic!(
                        "{method}: app {who}: {} of {N} back, then nothing; the server: up {up:?} down {down:?}, dropped{drops}; the echo saw {}",
                        done[who],
                        seen.load(SeqCst) - before
                    )
                };
                assert_eq!(from, echo, "{method}");
                assert_eq!(
                    back.first(),
                    Some(&(who as u8)),
                    "{method}: another app's datagram"
                );
                let i = u32::from_be_bytes(back[1..5].try_into().expect("4 bytes"));
                assert_eq!(
                    back,
                    tagged(who as u8, i),
                    "{method}: app {who} datagram {i}"
                );
                assert!(
                    !got[who][i as usize],
                    "{method}: app {who} datagram {i} twice"
                );
                got[who][i as usize] = true;
                done[who] += 1;
            }
        }
        assert_eq!(seen.load(SeqCst) - before, 2 * N as usize, "{method}");
    }
}
