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

    // No credentials in the config: NTLM with the logged-on user's, through SSPI. Wine
    // has no logon session to take them from (it would need winbindd's cached
    // credentials): the app gets a clean error, and the log says where it ended.
    let (local, local_addr) =
        local_exe(&format!("{base}outbound_proxy = \"http://{ntlm_addr}\"\n"));
    let (code, _, _) = socks_fetch(local_addr, target, 1000).await;
    assert_ne!(code, 0);
    let said = local.wait_for("Windows SSPI");
    assert!(said.contains("NTLM"), "{said}");
}

/// The wss hop from the Windows program through nginx (TLS verified against a CA read
/// from a Windows path) to burrow-server's WebSocket listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_over_wss_through_nginx() {
    let target = kit::http_target().await;
    let dir = temp_dir("win-wss");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let (server, _tcp) = server_with_config(
        METHOD,
        PW,
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\n",
    );
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

/// burrow-local.exe speaks v2ray-plugin (WebSocket over TLS, Mux.Cool) itself, with no
/// plugin program on the Windows side: against ss-server with ss-v2ray-plugin's TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_speaks_v2ray_plugin_over_tls() {
    let target = kit::http_target().await;
    let dir = temp_dir("win-v2ray-plugin");
    let (cert, key, ca) = origins::write_pki(&dir, &["localhost"]);
    let port = kit::free_port();
    let opts = format!(
        "server;path=/ws;tls;host=localhost;cert={};key={}",
        cert.display(),
        key.display()
    );
    let ss = Proc::spawn(
        "ss-server",
        &[
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-k",
            PW,
            "-m",
            METHOD,
            "--plugin",
            "ss-v2ray-plugin",
            "--plugin-opts",
            &opts,
        ],
        &[],
    );
    ss.wait_for("listening at");
    kit::wait_for_port(format!("127.0.0.1:{port}").parse().expect("addr"));
    let ca = windows_path(&ca).replace('\\', "\\\\");
    let (local, local_addr) = local_exe(&format!(
        "server = \"127.0.0.1:{port}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
         plugin = \"v2ray-plugin.exe\"\nplugin_opts = \"tls;host=localhost;path=/ws;cert={ca}\"\n"
    ));
    let n = 2_000_000;
    assert_exact(&socks_fetch(local_addr, target, n).await, n, &local);
    let all: Vec<_> = (0..4)
        .map(|i| tokio::spawn(socks_fetch(local_addr, target, 100_000 + i)))
        .collect();
    for (i, t) in all.into_iter().enumerate() {
        assert_exact(&t.await.expect("task"), 100_000 + i, &local);
    }
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

const INTERNET_SETTINGS: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings";
const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";

/// Wine's `reg` on the test prefix; its output.
fn reg(args: &[&str]) -> String {
    wine(&[&["reg"][..], args].concat()).1
}

/// `args` under Wine (one of Wine's own programs, or a path) to its end: whether it
/// succeeded, its stdout and its stderr.
fn wine(args: &[&str]) -> (bool, String, String) {
    let wine = std::env::var("BURROW_WINE").expect("BURROW_WINE (scripts/test.sh)");
    let out = std::process::Command::new(wine)
        .args(args)
        .output()
        .expect("wine");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A value under `key` as `reg query` shows it (`None`: absent).
fn reg_value(key: &str, name: &str) -> Option<String> {
    let out = reg(&["query", key, "/v", name]);
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with(name) && l.contains("REG_"))
        .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
}

fn reg_set(key: &str, name: &str, kind: &str, data: &str) {
    reg(&["add", key, "/v", name, "/t", kind, "/d", data, "/f"]);
    assert_eq!(
        reg_value(key, name).as_deref().map(str::is_empty),
        Some(false)
    );
}

fn reg_delete(key: &str, name: &str) {
    reg(&["delete", key, "/v", name, "/f"]);
}

/// Waits (up to a minute) until `name` under `key` reads `want`.
fn reg_until(key: &str, name: &str, want: Option<&str>) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while reg_value(key, name).as_deref() != want {
        assert!(
            std::time::Instant::now() < end,
            "{key} {name}: {:?}, want {want:?}",
            reg_value(key, name)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn ctrl_c(p: &mut Proc) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &p.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    assert_eq!(p.wait_exit(), Some(0), "{}", p.output());
}

/// The Windows settings, one after the other (they share the user's registry):
/// `--system-proxy` points WinINet at burrow-local while it runs and gives back a prior
/// corporate AutoConfigURL with ProxyEnable=0 exactly after Ctrl-C, and after a kill at
/// the next start; `outbound_proxy = "system"` reaches the server through the squid named
/// only in WinINet's ProxyServer, and takes WPAD when only auto-detection is on;
/// `install --autostart` writes its Run entry and
/// `uninstall` removes exactly that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_at_home_in_windows_settings() {
    let k = INTERNET_SETTINGS;
    let corporate = "http://wpad.corp.example/proxy.pac";
    reg_set(k, "AutoConfigURL", "REG_SZ", corporate);
    reg_set(k, "ProxyEnable", "REG_DWORD", "0");
    reg_delete(k, "ProxyServer");
    reg_delete(k, "ProxyOverride");
    let before = |why: &str| {
        assert_eq!(
            reg_value(k, "AutoConfigURL").as_deref(),
            Some(corporate),
            "{why}"
        );
        assert_eq!(reg_value(k, "ProxyEnable").as_deref(), Some("0x0"), "{why}");
        assert_eq!(reg_value(k, "ProxyServer"), None, "{why}");
        assert_eq!(reg_value(k, "ProxyOverride"), None, "{why}");
    };
    let args = [
        "-b",
        "127.0.0.1:0",
        "-s",
        "127.0.0.1:9",
        "-k",
        PW,
        "--system-proxy",
    ];
    let mut local = exe("burrow-local", &args);
    let addr = local.listening().to_string();
    // The values are written one by one: each is waited for.
    reg_until(k, "ProxyServer", Some(&addr));
    reg_until(k, "ProxyEnable", Some("0x1"));
    reg_until(k, "ProxyOverride", Some("<local>"));
    reg_until(k, "AutoConfigURL", None);
    local.wait_for("system proxy set to burrow-local");
    ctrl_c(&mut local);
    before("after Ctrl-C");

    // Killed without a word: the next start gives the settings back.
    let mut local = exe("burrow-local", &args);
    let addr = local.listening().to_string();
    reg_until(k, "ProxyServer", Some(&addr));
    local.wait_for("system proxy set to burrow-local");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &local.pid().to_string()])
        .status();
    let _ = local.wait_exit();
    assert_eq!(reg_value(k, "ProxyServer").as_deref(), Some(addr.as_str()));
    let mut next = exe(
        "burrow-local",
        &["-b", "127.0.0.1:0", "-s", "127.0.0.1:9", "-k", PW],
    );
    next.listening();
    next.wait_for("were given back");
    before("after a kill and a new start");
    ctrl_c(&mut next);

    // outbound_proxy = "system": squid, named only in WinINet.
    let target = kit::http_target().await;
    let (_server, server_addr) = server(METHOD, PW, &["--allow-private"]);
    let squid = Squid::start(temp_dir("win-system-squid"), &[server_addr.port()]);
    reg_delete(k, "AutoConfigURL");
    reg_set(k, "ProxyServer", "REG_SZ", &squid.addr.to_string());
    reg_set(k, "ProxyEnable", "REG_DWORD", "1");
    let (local, local_addr) = local_exe(&format!(
        "server = \"{server_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
         outbound_proxy = \"system\"\noutbound_username = \"alice\"\noutbound_password = \"s3cret\"\n"
    ));
    assert_exact(
        &socks_fetch(local_addr, target, 50_000).await,
        50_000,
        &local,
    );
    // Named by the machine's own settings: the user's credentials go to it.
    let connect = format!("CONNECT {server_addr} alice");
    let log = squid.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "{log}");
    // The settings change while it runs (another network's proxy): it follows.
    let other = Squid::start(temp_dir("win-system-squid2"), &[server_addr.port()]);
    reg_set(k, "ProxyServer", "REG_SZ", &other.addr.to_string());
    local.wait_for("config reloaded");
    assert_exact(
        &socks_fetch(local_addr, target, 50_000).await,
        50_000,
        &local,
    );
    let log = other.access_log_with(&connect, 1).await;
    assert!(log.contains(&connect), "the new proxy carries it: {log}");
    drop(local);
    // No proxy set by hand, no script, "Automatically detect settings" on (the flag 0x08
    // of DefaultConnectionSettings): WPAD.
    let connections = format!(r"{k}\Connections");
    reg_set(k, "ProxyEnable", "REG_DWORD", "0");
    reg_set(
        &connections,
        "DefaultConnectionSettings",
        "REG_BINARY",
        "4600000002000000090000000000000000000000",
    );
    let mut wpad = exe(
        "burrow-local",
        &[
            "-b",
            "127.0.0.1:0",
            "-s",
            "127.0.0.1:9",
            "-k",
            PW,
            "--outbound-proxy",
            "system",
        ],
    );
    let said = wpad.wait_for("http://wpad/wpad.dat");
    assert!(said.contains("PAC"), "{said}");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &wpad.pid().to_string()])
        .status();
    let _ = wpad.wait_exit();
    reg_delete(&connections, "DefaultConnectionSettings");
    reg_set(k, "AutoConfigURL", "REG_SZ", corporate);
    reg_set(k, "ProxyEnable", "REG_DWORD", "0");
    reg_delete(k, "ProxyServer");

    // Start at logon: its own Run entry, and only that one, comes and goes.
    reg_set(RUN_KEY, "SomethingElse", "REG_SZ", "C:\\other.exe");
    let cfg = temp_dir("win-autostart").join("local.toml");
    std::fs::write(
        &cfg,
        format!("server = \"127.0.0.1:9\"\npassword = \"{PW}\"\n"),
    )
    .expect("config");
    let cfg = windows_path(&cfg);
    let mut install = exe("burrow-local", &["install", "--autostart", "-c", &cfg]);
    assert_eq!(install.wait_exit(), Some(0), "{}", install.output());
    let line = reg_value(RUN_KEY, "burrow-local").expect("the Run entry");
    assert!(
        line.contains("burrow-local.exe\" --background") && line.contains(&cfg),
        "{line}"
    );
    let mut uninstall = exe("burrow-local", &["uninstall"]);
    assert_eq!(uninstall.wait_exit(), Some(0), "{}", uninstall.output());
    assert_eq!(reg_value(RUN_KEY, "burrow-local"), None);
    assert_eq!(
        reg_value(RUN_KEY, "SomethingElse").as_deref(),
        Some("C:\\other.exe")
    );
    reg_delete(RUN_KEY, "SomethingElse");
}

/// Started as `install --autostart` starts it (`--background`): no console, nothing on
/// stderr, the log in %LOCALAPPDATA%\\burrow\\burrow-local.log, and it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_exe_in_the_background_logs_to_localappdata() {
    let target = kit::http_target().await;
    let (_server, server_addr) = server(METHOD, PW, &["--allow-private"]);
    let dir = temp_dir("win-background");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "local_address = \"127.0.0.1\"\nlocal_port = 0\nserver = \"{server_addr}\"\n\
             password = \"{PW}\"\nmethod = \"{METHOD}\"\n"
        ),
    )
    .expect("config");
    // Wine's %LOCALAPPDATA% for this user, as a Linux path.
    let prefix = std::env::var("WINEPREFIX").expect("WINEPREFIX");
    let users = Path::new(&prefix).join("drive_c/users");
    let logs: Vec<_> = std::fs::read_dir(&users)
        .expect("Wine's users")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("AppData/Local/burrow/burrow-local.log"))
        .collect();
    for l in &logs {
        let _ = std::fs::remove_file(l);
    }
    let local = exe("burrow-local", &["--background", "-c", &windows_path(&cfg)]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let log = loop {
        if let Some(l) = logs.iter().find(|l| l.is_file()) {
            break l.clone();
        }
        assert!(
            std::time::Instant::now() < end,
            "no log under {users:?}: {}",
            local.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let addr = kit::listening_in_file(&log);
    let got = socks_fetch(addr, target, 100_000).await;
    assert_exact(&got, 100_000, &local);
    assert!(
        !local.output().contains("listening on"),
        "stderr: {}",
        local.output()
    );
}

/// `NAME.exe args` under Wine, to its end: whether it succeeded, and what it printed.
fn exe_once(name: &str, args: &[&str]) -> (bool, String) {
    let dir = std::env::var("BURROW_WINE_TEST_DIR").expect("BURROW_WINE_TEST_DIR");
    let path = format!("{dir}/{name}.exe");
    let (ok, out, err) = wine(&[&[path.as_str()][..], args].concat());
    (ok, out + &err)
}

/// burrow-server.exe as a Windows service: `install --service` records the options given
/// before it and starts it under the Service Control Manager (Wine's), which runs it with
/// no console, logging to the file named; burrow-local.exe reaches the internet through
/// it; `uninstall` drains it (a tunnel open at that moment finishes) and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_server_exe_as_a_windows_service() {
    let target = kit::http_target().await;
    let dir = temp_dir("win-service");
    let port = kit::free_port();
    let cfg = dir.join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"127.0.0.1:{port}\"\npassword = \"{PW}\"\nmethod = \"{METHOD}\"\n\
             allow_private = true\nshutdown_grace = \"60s\"\n"
        ),
    )
    .expect("config");
    let log = dir.join("server.log");
    // The client first: Wine stops its services when its last ordinary program ends.
    let (local, local_addr) = local_exe(&format!(
        "server = \"127.0.0.1:{port}\"\npassword = \"{PW}\"\nmethod = \"{METHOD}\"\n"
    ));
    let (ok, said) = exe_once(
        "burrow-server",
        &[
            "-c",
            &windows_path(&cfg),
            "--log-file",
            &windows_path(&log),
            "install",
            "--service",
        ],
    );
    assert!(ok && said.contains("installed and started"), "{said}");
    assert!(said.contains("--service"), "{said}");
    let at = kit::listening_in_file(&log);
    assert_eq!(at.port(), port);
    let got = socks_fetch(local_addr, target, 2_000_000).await;
    assert_exact(&got, 2_000_000, &local);
    // A download open while the service is asked to stop finishes whole: its first
    // bytes read, the rest left waiting in the tunnel until the stop is under way.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 20_000_000;
    let (mut s, reply) = kit::socks5_connect(local_addr, "127.0.0.1", target.port())
        .await
        .expect("SOCKS5");
    assert_eq!(reply, 0);
    let ask = format!("GET /bytes/{n} HTTP/1.0\r\nHost: t\r\n\r\n");
    s.write_all(ask.as_bytes()).await.expect("request");
    let mut all = vec![0u8; 64 * 1024];
    let first = s.read(&mut all).await.expect("first bytes");
    assert!(first > 0);
    all.truncate(first);
    let uninstall = tokio::task::spawn_blocking(|| exe_once("burrow-server", &["uninstall"]));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("asked to stop")
    {
        assert!(
            std::time::Instant::now() < end,
            "the service was not asked to stop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.read_to_end(&mut all).await.expect("the rest");
    // The app's half closed too: the tunnel ends, and with it the drain.
    drop(s);
    let at = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert_eq!(
        sha256_hex(&all[at..]),
        sha256_hex(&pattern(n, n as u64)),
        "the open download whole"
    );
    let (ok, said) = uninstall.await.expect("uninstall");
    assert!(ok && said.contains("stopped and removed"), "{said}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("asked to stop"), "{text}");
    let (_, query, _) = wine(&["sc", "query", "burrow-server"]);
    assert!(!query.contains("RUNNING"), "{query}");
    let (ok, said) = exe_once("burrow-server", &["uninstall"]);
    assert!(!ok && said.contains("no service burrow-server"), "{said}");
}
