//! Through the corporate proxy: squid (HTTP CONNECT, Basic auth, CONNECT only to allowed
//! ports), microsocks (SOCKS5 with a password), and the WebSocket-over-TLS transport
//! through squid → nginx → burrow-server.

mod common;

use std::net::SocketAddr;

use burrow::kit::{self, free_port, pattern, sha256_hex, wait_for_port, Proc};
use burrow::origins;
use burrow::peers::{Kdc, Nginx, Squid};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_squid_with_basic_auth_and_clear_refusals() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let (_other, other_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let squid = Squid::start(temp_dir("squid"), &[server_addr.port()]);

    let proxy = format!("http://alice:s3cret@{}", squid.addr);
    let (_l, local_addr) = local(
        server_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["--outbound-proxy", &proxy],
    );
    let (code, out, err) = socks_get(local_addr, target, 1_000_000).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(1_000_000, 1_000_000)));
    let connect = format!("CONNECT {server_addr} alice");
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "squid saw the CONNECT:\n{log}");

    // The same from the environment, no flag.
    let env_proxy = Proc::spawn(
        LOCAL,
        &[
            "-b",
            "127.0.0.1:0",
            "-s",
            &server_addr.to_string(),
            "-k",
            "pw",
        ],
        &[("HTTPS_PROXY", proxy.as_str())],
    );
    let (code, _, err) = socks_get(env_proxy.listening(), target, 1000).await;
    assert_eq!(code, 0, "HTTPS_PROXY: {err}");
    let log = squid.access_log_with(&connect, 2).await;
    assert_eq!(log.matches(&connect).count(), 2, "{log}");

    // Wrong password: the app gets a failure, the log says why, once.
    let wrong = format!("http://alice:nope@{}", squid.addr);
    let (l, local_addr) = local_via(server_addr, &wrong);
    for _ in 0..3 {
        let (code, _, _) = socks_get(local_addr, target, 1000).await;
        assert_eq!(code, 97, "SOCKS failure for the app");
    }
    let said = l.output();
    let needle = "refused the credentials (407 Proxy Authentication Required; it offers: Basic)";
    assert!(said.contains(needle), "{said}");
    assert_eq!(
        said.lines()
            .filter(|l| l.contains(needle) && l.contains("WARN"))
            .count(),
        1,
        "said once:\n{said}"
    );
    assert!(!said.contains("nope"), "no password in the log");

    // No credentials at all.
    let anon = format!("http://{}", squid.addr);
    let (l, local_addr) = local_via(server_addr, &anon);
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_eq!(code, 97);
    l.wait_for("wants credentials (407 Proxy Authentication Required; it offers: Basic)");

    // A port the proxy does not allow CONNECT to.
    let (l, local_addr) = local(
        other_addr,
        "chacha20-ietf-poly1305",
        "pw",
        &["--outbound-proxy", &proxy],
    );
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_eq!(code, 97);
    l.wait_for(&format!("refused CONNECT to {other_addr} (403 Forbidden)"));
    drop(squid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_microsocks_with_username_and_password() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("aes-256-gcm", "pw", &["--allow-private"]);
    let port = free_port();
    let socks = Proc::spawn(
        "microsocks",
        &[
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            "bob",
            "-P",
            "hunter2",
        ],
        &[],
    );
    let socks_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for_port(socks_addr);
    let url = format!("socks5h://bob:hunter2@{socks_addr}");
    let (_l, local_addr) = local(
        server_addr,
        "aes-256-gcm",
        "pw",
        &["--outbound-proxy", &url],
    );
    let (code, out, err) = socks_get(local_addr, target, 2_000_000).await;
    assert_eq!(code, 0, "{err}\n{}", socks.output());
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(2_000_000, 2_000_000)));

    let bad = format!("socks5://bob:wrong@{socks_addr}");
    let (l, local_addr) = local(
        server_addr,
        "aes-256-gcm",
        "pw",
        &["--outbound-proxy", &bad],
    );
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_eq!(code, 97);
    l.wait_for(&format!("proxy socks5://bob@{socks_addr}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_transport_through_squid_and_nginx_20_mb_and_pings_outlive_idle_cutoffs() {
    let target = kit::http_target().await;
    let dir = temp_dir("wss");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);

    let scfg = dir.join("server.toml");
    std::fs::write(
        &scfg,
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\nws_ping = \"500ms\"\n",
    )
    .expect("server.toml");
    let server = Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-k",
            "pw",
            "-c",
            scfg.to_str().expect("utf8"),
        ],
        &[],
    );
    let _tcp = server.listening();
    let ws_addr = server.listening();
    let nginx = Nginx::start(&dir, &cert, &key, ws_addr, 2);
    let squid = Squid::start(temp_dir("squid"), &[nginx.addr.port()]);

    let lcfg = dir.join("local.toml");
    std::fs::write(
        &lcfg,
        format!(
            "server = \"localhost:{}\"\npassword = \"pw\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             outbound_proxy = \"http://alice:s3cret@{}\"\ntransport = \"wss\"\n\n\
             [websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\nping = \"500ms\"\n",
            nginx.addr.port(),
            squid.addr,
            ca.display()
        ),
    )
    .expect("local.toml");
    let local = Proc::spawn(LOCAL, &["-c", lcfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();

    let n = 20 * 1024 * 1024;
    let (code, out, err) = socks_get(local_addr, target, n).await;
    assert_eq!(
        code,
        0,
        "{err}\nlocal:\n{}\nserver:\n{}",
        local.output(),
        server.output()
    );
    assert_eq!(
        sha256_hex(&out),
        sha256_hex(&pattern(n, n as u64)),
        "20 MB byte-exact"
    );
    let connect = format!("CONNECT localhost:{} alice", nginx.addr.port());
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "{log}");
    // The target is known now: the next tunnels go without waiting, their request header
    // held back to leave with the app's first bytes, and still answered.
    for _ in 0..2 {
        let (code, out, err) = socks_get(local_addr, target, 1000).await;
        assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", local.output());
    }

    // An idle tunnel across nginx's 2 s read timeout: pings keep it open.
    let target2 = kit::half_close_target().await;
    let (mut s, reply) = kit::socks5_connect(local_addr, "127.0.0.1", target2.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"before the pause").await.expect("write");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await; // the idle period itself is what is tested
    s.write_all(b", after").await.expect("write after idle");
    s.shutdown().await.expect("half-close");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("answer");
    assert_eq!(
        answer,
        format!(
            "got 23 bytes, sha256 {}",
            sha256_hex(b"before the pause, after")
        )
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// burrow-local towards `server` through the corporate `proxy` (a URL or a list).
fn local_via(server: SocketAddr, proxy: &str) -> (Proc, SocketAddr) {
    local(
        server,
        "chacha20-ietf-poly1305",
        "pw",
        &["--outbound-proxy", proxy],
    )
}

/// The verifying NTLM-only proxy (CORP\alice / s3cret).
fn ntlm_proxy() -> (Proc, SocketAddr) {
    burrow::peers::ntlm_proxy(&temp_dir("ntlm"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_ntlm_only_proxy_with_domain_credentials() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let (proxy, proxy_addr) = ntlm_proxy();
    // DOMAIN\user as a proxy URL writes it, percent-encoded.
    let url = format!("http://CORP%5Calice:s3cret@{proxy_addr}");
    let (l, local_addr) = local_via(server_addr, &url);
    for _ in 0..3 {
        let (code, out, err) = socks_get(local_addr, target, 1000).await;
        assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", l.output());
    }
    let line = proxy.wait_for("status=200");
    assert!(line.contains("user=CORP\\alice"), "{line}");
    assert!(!l.output().contains("s3cret"), "{}", l.output());
    // A wrong password: the app gets a failure, the log names the scheme and the answer.
    let wrong = format!("http://CORP%5Calice:nope@{proxy_addr}");
    let (l, local_addr) = local_via(server_addr, &wrong);
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_eq!(code, 97, "SOCKS failure for the app");
    let said = l.wait_for("refused the credentials");
    assert!(said.contains("407") && said.contains("NTLM"), "{said}");
    assert!(!l.output().contains("nope"), "{}", l.output());
    // No credentials at all: one line naming what the proxy offers.
    let anon = format!("http://{proxy_addr}");
    let (l, local_addr) = local_via(server_addr, &anon);
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_eq!(code, 97, "SOCKS failure for the app");
    l.wait_for("it offers: NTLM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_list_fails_over_past_a_proxy_that_is_down() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let squid = Squid::start(temp_dir("squid-list"), &[server_addr.port()]);
    let down = free_port();
    // A PAC answer's form: the first proxy is down, the second is squid.
    let list = format!(
        "PROXY 127.0.0.1:{down}; PROXY alice:s3cret@{}; DIRECT",
        squid.addr
    );
    let (l, local_addr) = local_via(server_addr, &list);
    for _ in 0..2 {
        let (code, out, err) = socks_get(local_addr, target, 1000).await;
        assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", l.output());
    }
    let connect = format!("CONNECT {server_addr} alice");
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "{log}");
    // Every proxy down: DIRECT, the last entry, still reaches the server.
    let list = format!("http://127.0.0.1:{down}, socks5://127.0.0.1:{down}, direct");
    let (l, local_addr) = local_via(server_addr, &list);
    let (code, out, err) = socks_get(local_addr, target, 1000).await;
    assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", l.output());
}

/// A corporate PAC served by an origin chooses the proxy: the dead proxy it names first is
/// passed over, squid carries the tunnel with the configured credentials (its host listed
/// in proxy_auth_hosts, Basic pinned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pac_file_chooses_the_proxy_passing_over_a_dead_one() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let squid = Squid::start(temp_dir("squid"), &[server_addr.port()]);
    let dead = free_port();
    let pac = format!(
        "function FindProxyForURL(url, host) {{\n\
           if (isPlainHostName(host) || dnsDomainIs(host, \".intranet.example\")) return \"DIRECT\";\n\
           if (shExpMatch(url, \"https://127.0.0.1:*\") && isInNet(host, \"127.0.0.0\", \"255.0.0.0\"))\n\
             return \"PROXY 127.0.0.1:{dead}; PROXY {}; DIRECT\";\n\
           return \"DIRECT\";\n}}\n",
        squid.addr
    );
    let (pac_addr, served) = kit::text_origin(pac, "application/x-ns-proxy-autoconfig").await;
    let (local, local_addr) = local_with(
        &server_addr.to_string(),
        &format!(
            "outbound_proxy = \"pac+http://{pac_addr}/proxy.pac\"\n\
             outbound_username = \"alice\"\noutbound_password = \"s3cret\"\n\
             proxy_auth_hosts = [\"127.0.0.1:{}\"]\noutbound_auth = \"basic\"\n",
            squid.addr.port()
        ),
    );
    let said = local.wait_for("PAC http://");
    assert!(
        said.contains(&format!(
            "is \"PROXY 127.0.0.1:{dead}; PROXY {}; DIRECT\"",
            squid.addr
        )),
        "{said}"
    );
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let (code, out, err) = socks_get(local_addr, target, 100_000).await;
    assert_eq!((code, out.len()), (0, 100_000), "{err}\n{}", local.output());
    let connect = format!("CONNECT 127.0.0.1:{} alice", server_addr.port());
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "{log}");
    assert!(!local.output().contains("s3cret"));
}

/// A PAC answering DIRECT goes direct; a PAC that does not parse, or cannot be fetched,
/// is said in one line and the hop goes direct meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_pac_goes_direct_and_a_broken_one_is_said() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let direct = "function FindProxyForURL(url, host) { return \"DIRECT\"; }".to_string();
    let broken = "function FindProxyForURL(url, host) { return \"DIRECT\"".to_string();
    let (direct_at, _) = kit::text_origin(direct, "application/x-ns-proxy-autoconfig").await;
    let (broken_at, _) = kit::text_origin(broken, "application/x-ns-proxy-autoconfig").await;
    let nobody = free_port();
    let cases = [
        (format!("pac+http://{direct_at}/p.pac"), "is \"DIRECT\""),
        (
            format!("pac+http://{broken_at}/p.pac"),
            "the PAC file does not run: ",
        ),
        (
            format!("pac+http://127.0.0.1:{nobody}/p.pac"),
            "going DIRECT until it answers",
        ),
    ];
    for (location, said) in cases {
        let (local, local_addr) = local_with(
            &server_addr.to_string(),
            &format!("outbound_proxy = \"{location}\"\n"),
        );
        let line = local.wait_for("PAC http://");
        assert!(line.contains(said), "{location}: {line}");
        let (code, out, err) = socks_get(local_addr, target, 1000).await;
        assert_eq!(
            (code, out.len()),
            (0, 1000),
            "{location}: {err}\n{}",
            local.output()
        );
    }
}

/// mitmproxy as a TLS-inspecting corporate proxy: the wss hop says who re-signed the
/// certificate, in one line; with the inspecting CA in ca_file the hop works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_inspecting_proxy_is_named_and_its_ca_lets_the_hop_through() {
    let target = kit::http_target().await;
    let dir = temp_dir("inspect");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let scfg = dir.join("server.toml");
    std::fs::write(&scfg, "allow_private = true\nws_listen = \"127.0.0.1:0\"\n").expect("toml");
    let server = Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-k",
            "pw",
            "-c",
            scfg.to_str().expect("utf8"),
        ],
        &[],
    );
    let _tcp = server.listening();
    let ws_addr = server.listening();
    let nginx = Nginx::start(&dir, &cert, &key, ws_addr, 30);

    let confdir = dir.join("mitmproxy");
    std::fs::create_dir_all(&confdir).expect("confdir");
    let port = free_port();
    let _mitm = Proc::spawn(
        "mitmdump",
        &[
            "--mode",
            "regular",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
            "--set",
            &format!("confdir={}", confdir.display()),
            "--set",
            "ssl_insecure=true",
            "--set",
            "connection_strategy=lazy",
        ],
        &[],
    );
    let mitm: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for_port(mitm);
    let hop = |ca_file: &std::path::Path| {
        format!(
            "outbound_proxy = \"http://{mitm}\"\ntransport = \"wss\"\nwarm_connections = 0\n\n\
             [websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
            ca_file.display()
        )
    };
    let server_at = format!("localhost:{}", nginx.addr.port());

    let (local, local_addr) = local_with(&server_at, &hop(&ca));
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_ne!(code, 0, "the inspected hop must not pass");
    let line = local.wait_for("certificate refused");
    assert!(
        line.contains("issued by \"CN=mitmproxy, O=mitmproxy\"") && line.contains("inspects TLS"),
        "{line}"
    );

    let mitm_ca = confdir.join("mitmproxy-ca-cert.pem");
    let (local, local_addr) = local_with(&server_at, &hop(&mitm_ca));
    let (code, out, err) = socks_get(local_addr, target, 1_000_000).await;
    assert_eq!(
        (code, out.len()),
        (0, 1_000_000),
        "{err}\n{}",
        local.output()
    );
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(1_000_000, 1_000_000)));
    let _ = std::fs::remove_dir_all(dir);
}

/// Negotiate with the user's Kerberos ticket cache, against squid offering Negotiate
/// ahead of Basic and a KDC of a test realm: with a ticket the tunnel opens as
/// alice@BURROW.TEST (Negotiate chosen over the Basic credentials also configured);
/// without one, one line says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_kerberos_with_the_ticket_cache_over_basic() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let dir = temp_dir("krb");
    let kdc = Kdc::start(&dir);
    let squid = Squid::start_with(
        temp_dir("squid"),
        &[server_addr.port()],
        &kdc.squid_negotiate(),
    );
    let cache = kdc.kinit();
    let krb5_conf = kdc.krb5_conf.to_str().expect("utf8");
    // The service name is HTTP/<proxy host as written>: the proxy is named localhost.
    let config = format!(
        "outbound_proxy = \"http://localhost:{}\"\noutbound_username = \"alice\"\n\
         outbound_password = \"s3cret\"\n",
        squid.addr.port()
    );
    let server_at = server_addr.to_string();
    let (local, local_addr) = local_with_env(
        &server_at,
        &config,
        &[("KRB5_CONFIG", krb5_conf), ("KRB5CCNAME", &cache)],
    );
    for _ in 0..2 {
        let (code, out, err) = socks_get(local_addr, target, 10_000).await;
        assert_eq!((code, out.len()), (0, 10_000), "{err}\n{}", local.output());
    }
    let user = format!(
        "CONNECT 127.0.0.1:{} alice@{}",
        server_addr.port(),
        Kdc::REALM
    );
    let log = squid.access_log_with(&user, 2).await;
    assert!(log.matches(&user).count() >= 2, "{log}");

    // No ticket, no password: one line naming the scheme and what to do.
    let none = format!("FILE:{}/nobody.cc", dir.display());
    let config = format!(
        "outbound_proxy = \"http://localhost:{}\"\n",
        squid.addr.port()
    );
    let (local, local_addr) = local_with_env(
        &server_at,
        &config,
        &[("KRB5_CONFIG", krb5_conf), ("KRB5CCNAME", &none)],
    );
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_ne!(code, 0);
    let line = local.wait_for("Negotiate");
    assert!(
        line.contains("kinit") && line.contains("localhost") && line.contains("407"),
        "{line}"
    );
}

/// The wss hop through an NTLM-only proxy that verifies the password (the Type 1/2/3
/// exchange on one kept-alive connection, then TLS and the WebSocket through the tunnel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_through_an_ntlm_only_proxy() {
    let target = kit::http_target().await;
    let dir = temp_dir("wss-ntlm");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let scfg = dir.join("server.toml");
    std::fs::write(&scfg, "allow_private = true\nws_listen = \"127.0.0.1:0\"\n").expect("toml");
    let server = Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-k",
            "pw",
            "-c",
            scfg.to_str().expect("utf8"),
        ],
        &[],
    );
    let _tcp = server.listening();
    let ws_addr = server.listening();
    let nginx = Nginx::start(&dir, &cert, &key, ws_addr, 30);
    let (proxy, proxy_addr) = ntlm_proxy();
    let (local, local_addr) = local_with(
        &format!("localhost:{}", nginx.addr.port()),
        &format!(
            "outbound_proxy = \"http://{proxy_addr}\"\noutbound_username = \"CORP\\\\alice\"\n\
             outbound_password = \"s3cret\"\ntransport = \"wss\"\n\n\
             [websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    );
    for n in [1000, 2_000_000] {
        let (code, out, err) = socks_get(local_addr, target, n).await;
        assert_eq!((code, out.len()), (0, n), "{err}\n{}", local.output());
    }
    let line = proxy.wait_for("status=200");
    assert!(
        line.contains(&format!("CONNECT localhost:{}", nginx.addr.port()))
            && line.contains("user=CORP\\alice"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// squid's ntlm_fake_auth sends a challenge without target information (an NTLMv1
/// server): burrow does not fall back to v1/LM, and says so in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ntlmv1_only_proxy_is_refused_with_the_reason() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let ntlm = "auth_param ntlm program /usr/lib/squid/ntlm_fake_auth\n\
                auth_param ntlm children 2\nauth_param ntlm keep_alive on\n";
    let squid = Squid::start_with(temp_dir("squid"), &[server_addr.port()], ntlm);
    let (local, local_addr) = local_via(
        server_addr,
        &format!("http://CORP%5Calice:s3cret@{}", squid.addr),
    );
    let (code, _, _) = socks_get(local_addr, target, 1000).await;
    assert_eq!(code, 97, "SOCKS failure for the app");
    let line = local.wait_for("NTLMv1");
    assert!(
        line.contains("no target information") && line.contains("407"),
        "{line}"
    );
}

/// `burrow-local doctor` walks the way as a user's config says and says where it stops:
/// the PAC and its answer, a dead proxy, squid and the scheme it took, the tunnel; and
/// with a wrong proxy password, the refusal (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_where_the_way_stops() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let squid = Squid::start(temp_dir("squid"), &[server_addr.port()]);
    let dead = free_port();
    let pac = format!(
        "function FindProxyForURL(url, host) {{ return \"PROXY 127.0.0.1:{dead}; PROXY {}\"; }}",
        squid.addr
    );
    let (pac_addr, _) = kit::text_origin(pac, "application/x-ns-proxy-autoconfig").await;
    let dir = temp_dir("doctor");
    let doctor = |password: &str| {
        let cfg = dir.join(format!("local-{password}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "server = \"{server_addr}\"\npassword = \"pw\"\n\
                 outbound_proxy = \"pac+http://{pac_addr}/proxy.pac\"\n\
                 outbound_username = \"alice\"\noutbound_password = \"{password}\"\n\
                 proxy_auth_hosts = [\"127.0.0.1\"]\noutbound_auth = \"basic\"\n"
            ),
        )
        .expect("config");
        let out = std::process::Command::new(LOCAL)
            .args(["doctor", "-c", cfg.to_str().expect("utf8"), "--target"])
            .arg(target.to_string())
            .env_remove("HTTP_PROXY")
            .env_remove("ALL_PROXY")
            .output()
            .expect("doctor");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = doctor("s3cret");
    assert_eq!(code, Some(0), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    let find = |step: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(step))
            .map(|l| l.to_string())
            .unwrap_or_else(|| panic!("no {step} line: {said}"))
    };
    assert!(
        find("PAC").contains(&format!(
            "answers \"PROXY 127.0.0.1:{dead}; PROXY {}\"",
            squid.addr
        )),
        "{said}"
    );
    let first = find("way 1/2");
    assert!(
        first.contains("FAIL") && first.contains(&dead.to_string()),
        "{said}"
    );
    let second = find("way 2/2");
    assert!(
        second.contains("ok") && second.contains("the proxy took Basic"),
        "{said}"
    );
    assert!(
        find("tunnel").contains(&format!("the server opened {target}")),
        "{said}"
    );

    let (code, said) = doctor("wrong");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("refused the credentials")
            && said.contains("Basic")
            && !said.contains("wrong"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A hostile PAC (a WPAD answer on the LAN) names a proxy of its own that asks for
/// credentials: offering Basic or NTLM, it gets none, the hop moves on to the PAC's next
/// entry, and the log says why once; doctor says the same. A proxy the PAC names that
/// the user listed in proxy_auth_hosts (the verifying NTLM proxy) gets them, after the
/// unlisted one was passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_named_only_by_the_pac_gets_no_credentials() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let asks: [&'static [u8]; 2] = [
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\nProxy-Authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n",
    ];
    let creds = "outbound_username = 'CORP\\alice'\noutbound_password = \"s3cret\"\n";
    for ask in asks {
        let evil = kit::Recorder::answering("127.0.0.1:0", ask).await;
        let pac = format!(
            "function FindProxyForURL(url, host) {{ return \"PROXY {}; DIRECT\"; }}",
            evil.addr
        );
        let (pac_addr, _) = kit::text_origin(pac, "application/x-ns-proxy-autoconfig").await;
        let config = format!("outbound_proxy = \"pac+http://{pac_addr}/wpad.dat\"\n{creds}");
        let (local, local_addr) = local_with(&server_addr.to_string(), &config);
        local.wait_for("PAC http://");
        for _ in 0..2 {
            let (code, out, err) = socks_get(local_addr, target, 1000).await;
            assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", local.output());
        }
        assert!(evil.wait_count(1) >= 1, "the PAC's proxy was tried first");
        for i in 0..evil.count() {
            let seen = String::from_utf8_lossy(&evil.received(i)).to_ascii_lowercase();
            assert!(!seen.contains("proxy-authorization"), "{seen}");
        }
        let line = local.wait_for("named only by the PAC");
        assert!(
            line.contains(&evil.addr.to_string()) && line.contains("proxy_auth_hosts"),
            "{line}"
        );
        assert_eq!(
            local.output().matches("named only by the PAC").count(),
            1,
            "said once per proxy:\n{}",
            local.output()
        );
        assert!(!local.output().contains("s3cret"));
        // doctor: the way through it fails with the same reason, DIRECT works.
        let cfg = temp_dir("doctor-pac").join("local.toml");
        std::fs::write(
            &cfg,
            format!("server = \"{server_addr}\"\npassword = \"pw\"\n{config}"),
        )
        .expect("config");
        let out = std::process::Command::new(LOCAL)
            .args(["doctor", "-c", cfg.to_str().expect("utf8"), "--target"])
            .arg(target.to_string())
            .output()
            .expect("doctor");
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{said}");
        assert!(
            said.lines().any(|l| l.contains("way 1/2")
                && l.contains("FAIL")
                && l.contains("named only by the PAC")),
            "{said}"
        );
    }

    // Listed: the verifying NTLM proxy, second in the answer, gets the credentials.
    let evil = kit::Recorder::answering("127.0.0.1:0", asks[1]).await;
    let (ntlm, ntlm_addr) = ntlm_proxy();
    let pac = format!(
        "function FindProxyForURL(url, host) {{ return \"PROXY {}; PROXY {ntlm_addr}\"; }}",
        evil.addr
    );
    let (pac_addr, _) = kit::text_origin(pac, "application/x-ns-proxy-autoconfig").await;
    let (local, local_addr) = local_with(
        &server_addr.to_string(),
        &format!(
            "outbound_proxy = \"pac+http://{pac_addr}/proxy.pac\"\n{creds}\
             proxy_auth_hosts = [\"127.0.0.1:{}\"]\n",
            ntlm_addr.port()
        ),
    );
    local.wait_for("PAC http://");
    let (code, out, err) = socks_get(local_addr, target, 1000).await;
    assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", local.output());
    let line = ntlm.wait_for("status=200");
    assert!(line.contains("user=CORP\\alice"), "{line}");
    let seen = String::from_utf8_lossy(&evil.received(0)).to_ascii_lowercase();
    assert!(!seen.contains("proxy-authorization"), "{seen}");
}

/// A PAC server that redirects elsewhere is not followed: a PAC comes only from where it
/// was named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pac_redirect_is_refused() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server("chacha20-ietf-poly1305", "pw", &["--allow-private"]);
    let moved = kit::Recorder::answering(
        "127.0.0.1:0",
        b"HTTP/1.1 302 Found\r\nLocation: http://wpad.evil.example/wpad.dat\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let (local, local_addr) = local_with(
        &server_addr.to_string(),
        &format!("outbound_proxy = \"pac+http://{}/proxy.pac\"\n", moved.addr),
    );
    let line = local.wait_for("PAC http://");
    assert!(
        line.contains("302") && line.contains("not followed") && line.contains("going DIRECT"),
        "{line}"
    );
    let (code, out, err) = socks_get(local_addr, target, 1000).await;
    assert_eq!((code, out.len()), (0, 1000), "{err}\n{}", local.output());
}
