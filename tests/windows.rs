//! burrow-local.exe and burrow-server.exe, the Windows programs, under Wine: what a
//! laptop needs of them, against real peers on loopback — SOCKS5 and the HTTP proxy
//! byte-exact against burrow-server on Linux, the hop through squid (Basic) and through
//! the verifying NTLM proxy, the wss hop through nginx, UDP ASSOCIATE, a config file
//! read from a Windows path, Ctrl-C draining an open tunnel; and burrow-server.exe
//! serving a Linux burrow-local.
//!
//! scripts/test.sh builds the programs (scripts/windows.sh) and exports where they are;
//! without them these tests fail, they never skip.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use burrow::kit::{self, pattern, sha256_hex, Proc, Socks5Udp};
use burrow::origins;
use burrow::peers::{Nginx, Squid};
use common::*;

const METHOD: &str = "chacha20-ietf-poly1305";
const PW: &str = "a-long-test-password";

/// `NAME.exe` under Wine with `args`.
fn exe(name: &str, args: &[&str]) -> Proc {
    let why = "run the tests through scripts/test.sh, which builds the Windows programs \
               (scripts/windows.sh) and exports BURROW_WINE and BURROW_WINE_TEST_DIR";
    let wine = std::env::var("BURROW_WINE").unwrap_or_else(|_| panic!("no BURROW_WINE: {why}"));
    let dir = std::env::var("BURROW_WINE_TEST_DIR")
        .unwrap_or_else(|_| panic!("no BURROW_WINE_TEST_DIR: {why}"));
    let path = format!("{dir}/{name}.exe");
    assert!(Path::new(&path).is_file(), "{path} missing: {why}");
    assert!(
        std::env::var_os("WINEPREFIX").is_some(),
        "no WINEPREFIX: {why}"
    );
    Proc::spawn(&wine, &[&[path.as_str()][..], args].concat(), &[])
}

/// A Linux path as the Windows program sees it (Wine's Z: drive is `/`).
fn windows_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// burrow-local.exe with `config` (TOML) read from a Windows path.
fn local_exe(config: &str) -> (Proc, SocketAddr) {
    let dir = temp_dir("win-local");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!("local_address = \"127.0.0.1\"\nlocal_port = 0\n{config}"),
    )
    .expect("config");
    let p = exe("burrow-local", &["-c", &windows_path(&cfg)]);
    let addr = p.listening();
    (p, addr)
}

async fn socks_fetch(local: SocketAddr, target: SocketAddr, n: usize) -> (i32, Vec<u8>, String) {
    curl(&[
        "--socks5-hostname",
        &local.to_string(),
        &format!("http://{target}/bytes/{n}"),
    ])
    .await
}

fn assert_exact(got: &(i32, Vec<u8>, String), n: usize, local: &Proc) {
    assert_eq!(got.0, 0, "{}\n{}", got.2, local.output());
    assert_eq!(
        sha256_hex(&got.1),
        sha256_hex(&pattern(n, n as u64)),
        "{n} bytes byte-exact"
    );
}

/// SOCKS5, HTTP CONNECT and plain HTTP forwarding through burrow-local.exe to
/// burrow-server on Linux, byte-exact; the config read from a Windows path; then UDP
/// ASSOCIATE; then Ctrl-C while a tunnel is open: the tunnel finishes, the program exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_serves_socks5_http_and_udp_and_drains_on_ctrl_c() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = kit::http_target().await;
    let (_server, server_addr) = server(METHOD, PW, &["--allow-private"]);
    let (mut local, local_addr) = local_exe(&format!(
        "server = \"{server_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n"
    ));
    let n = 3_000_000;
    assert_exact(&socks_fetch(local_addr, target, n).await, n, &local);
    let proxy = format!("http://{local_addr}");
    let url = format!("http://{target}/bytes/{n}");
    for extra in [&["--proxytunnel"][..], &[]] {
        let got = curl(&[&["-x", proxy.as_str()][..], extra, &[url.as_str()]].concat()).await;
        assert_exact(&got, n, &local);
    }

    let (echo, _) = kit::udp_echo().await;
    let via = Socks5Udp::associate(local_addr).await.expect("associate");
    for size in [1, 500, 1400] {
        let data = pattern(size, size as u64);
        via.send(echo, &data).await;
        let (from, back) = via
            .recv(std::time::Duration::from_secs(30))
            .await
            .expect("an answer");
        assert_eq!((from, back), (echo, data), "{size} bytes");
    }

    // Ctrl-C (Wine makes a SIGINT one) with a tunnel open: it drains.
    let half = kit::half_close_target().await;
    let (mut s, reply) = kit::socks5_connect(local_addr, "127.0.0.1", half.port())
        .await
        .expect("socks");
    assert_eq!(reply, 0);
    s.write_all(b"before ctrl-c").await.expect("write");
    let pid = local.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    local.wait_for("signal received");
    s.write_all(b", after").await.expect("write after ctrl-c");
    s.shutdown().await.expect("half-close");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("answer");
    assert_eq!(
        answer,
        format!(
            "got 20 bytes, sha256 {}",
            sha256_hex(b"before ctrl-c, after")
        )
    );
    drop(s);
    assert_eq!(local.wait_exit(), Some(0), "{}", local.output());
}

/// The hop through the corporate proxy from the Windows program: squid with Basic, and
/// the NTLM-only proxy that verifies CORP\alice's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_through_squid_basic_and_a_verifying_ntlm_proxy() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server(METHOD, PW, &["--allow-private"]);
    let squid = Squid::start(temp_dir("win-squid"), &[server_addr.port()]);
    let base = format!("server = \"{server_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n");
    let (local, local_addr) = local_exe(&format!(
        "{base}outbound_proxy = \"http://alice:s3cret@{}\"\n",
        squid.addr
    ));
    assert_exact(
        &socks_fetch(local_addr, target, 100_000).await,
        100_000,
        &local,
    );
    let connect = format!("CONNECT {server_addr} alice");
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "{log}");

    let (ntlm, ntlm_addr) = burrow::peers::ntlm_proxy(&temp_dir("win-ntlm"));
    let (local, local_addr) = local_exe(&format!(
        "{base}outbound_proxy = \"http://{ntlm_addr}\"\n\
         outbound_username = 'CORP\\alice'\noutbound_password = \"s3cret\"\n"
    ));
    assert_exact(
        &socks_fetch(local_addr, target, 100_000).await,
        100_000,
        &local,
    );
    let line = ntlm.wait_for("status=200");
    assert!(line.contains("user=CORP\\alice"), "{line}");
    assert!(!local.output().contains("s3cret"));
}

/// The wss hop from the Windows program through nginx (TLS verified against a CA read
/// from a Windows path) to burrow-server's WebSocket listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_over_wss_through_nginx() {
    let target = kit::http_target().await;
    let dir = temp_dir("win-wss");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let scfg = dir.join("server.toml");
    std::fs::write(&scfg, "allow_private = true\nws_listen = \"127.0.0.1:0\"\n").expect("cfg");
    let server = Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-m",
            METHOD,
            "-k",
            PW,
            "-c",
            scfg.to_str().expect("utf8"),
        ],
        &[],
    );
    let _tcp = server.listening();
    let ws_addr = server.listening();
    let nginx = Nginx::start(&dir, &cert, &key, ws_addr, 30);
    let ca = windows_path(&ca).replace('\\', "\\\\");
    let (local, local_addr) = local_exe(&format!(
        "server = \"localhost:{}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
         transport = \"wss\"\n[websocket]\npath = \"/tunnel\"\nca_file = \"{ca}\"\n",
        nginx.addr.port()
    ));
    let n = 2_000_000;
    assert_exact(&socks_fetch(local_addr, target, n).await, n, &local);
}

/// burrow-server.exe serves a Linux burrow-local (and refuses what its policy refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_server_exe_serves_a_linux_burrow_local() {
    let target = kit::http_target().await;
    let server = exe(
        "burrow-server",
        &[
            "-s",
            "127.0.0.1:0",
            "-m",
            METHOD,
            "-k",
            PW,
            "--allow-private",
        ],
    );
    let server_addr = server.listening();
    let (linux_local, local_addr) = local(server_addr, METHOD, PW, &[]);
    let n = 3_000_000;
    assert_exact(&socks_fetch(local_addr, target, n).await, n, &linux_local);
    let refusing = exe(
        "burrow-server",
        &["-s", "127.0.0.1:0", "-m", METHOD, "-k", PW],
    );
    let refusing_addr = refusing.listening();
    let (_l, l_addr) = local(refusing_addr, METHOD, PW, &[]);
    let (code, _, _) = socks_fetch(l_addr, target, 1000).await;
    assert_ne!(code, 0, "loopback targets are refused by default");
}
