//! Shared by the end-to-end tests: start the real binaries and wait for readiness.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use burrow::kit::Proc;

pub const SERVER: &str = env!("CARGO_BIN_EXE_burrow-server");
pub const LOCAL: &str = env!("CARGO_BIN_EXE_burrow-local");

pub struct Pair {
    pub server: Proc,
    pub server_addr: SocketAddr,
    pub local: Proc,
    pub local_addr: SocketAddr,
}

/// burrow-server on 127.0.0.1:0 with `extra` arguments.
pub fn server(method: &str, password: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["-s", "127.0.0.1:0", "-m", method, "-k", password];
    args.extend_from_slice(extra);
    let p = Proc::spawn(SERVER, &args, &[]);
    let addr = p.listening();
    (p, addr)
}

/// burrow-server on 127.0.0.1:0 for `method` and `secret`, with `toml` as its config
/// file; the process (whose later `listening on` lines — the WebSocket listener, the
/// metrics — its caller reads) and its tunnel address.
pub fn server_with_config(method: &str, secret: &str, toml: &str) -> (Proc, SocketAddr) {
    let cfg = temp_dir("server-cfg").join("server.toml");
    std::fs::write(&cfg, toml).expect("server.toml");
    let p = Proc::spawn(
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
    let addr = p.listening();
    (p, addr)
}

/// burrow-local on 127.0.0.1:0 towards `server`.
pub fn local(
    server: SocketAddr,
    method: &str,
    password: &str,
    extra: &[&str],
) -> (Proc, SocketAddr) {
    let server = server.to_string();
    let mut args = vec![
        "-b",
        "127.0.0.1:0",
        "-s",
        &server,
        "-m",
        method,
        "-k",
        password,
    ];
    args.extend_from_slice(extra);
    let p = Proc::spawn(LOCAL, &args, &[]);
    let addr = p.listening();
    (p, addr)
}

/// A PSK for SIP022 methods, a password for the others.
pub fn secret_for(method: &str) -> &'static str {
    if method.starts_with("2022-") {
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    } else {
        "test-password"
    }
}

/// A server allowed to reach loopback targets, and a local in front of it.
pub fn pair(method: &str) -> Pair {
    let secret = secret_for(method);
    let (server, server_addr) = server(method, secret, &["--allow-private"]);
    let (local, local_addr) = local(server_addr, method, secret, &[]);
    Pair {
        server,
        server_addr,
        local,
        local_addr,
    }
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("{tag}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs curl with `args`; returns (exit code, stdout, stderr).
pub async fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .await
        .expect("curl must be installed (scripts/test.sh installs it)");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Node `ws` echo server (tests/browser/echo-server.js): page at `/`, echo at
/// `/echo`; wss when given a certificate and key.
pub fn node_echo(tls: Option<(&std::path::Path, &std::path::Path)>) -> (Proc, SocketAddr) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/ws").exists(),
        "run scripts/test.sh (it installs the Node peers in tests/browser)"
    );
    let script = dir.join("echo-server.js");
    let mut args = vec![script.to_str().expect("utf8").to_owned()];
    if let Some((cert, key)) = tls {
        args.extend([
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc::spawn("node", &args, &[]);
    let addr = p.listening();
    (p, addr)
}

/// What the server sends back to a bad first flight: nothing, then a FIN (read = 0), the
/// time it took. Panics on any byte back or on a reset.
pub async fn assert_silent_fin(server: SocketAddr, flight: &[u8]) -> std::time::Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .expect("connect");
    let start = std::time::Instant::now();
    s.write_all(flight).await.expect("send flight");
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), s.read(&mut buf))
        .await
        .expect("server closes in time");
    match r {
        Ok(0) => start.elapsed(),
        Ok(n) => panic!("server answered {n} bytes to a bad flight"),
        Err(e) => panic!("server closed with an error (reset?) instead of a FIN: {e}"),
    }
}

/// A client's first flight: salt, (SIP022 header,) the address and `payload`, sealed.
pub fn flight(
    key: &burrow_common::MasterKey,
    target: &burrow_common::TargetAddr,
    payload: &[u8],
) -> Vec<u8> {
    let mut plain = bytes::BytesMut::new();
    target.encode(&mut plain);
    plain.extend_from_slice(payload);
    let mut out = bytes::BytesMut::new();
    burrow_common::frame::Encoder::new(key).encode(&plain, &mut out);
    out.to_vec()
}

/// burrow-local with `config` (TOML; `server`, `password = "pw"` and a listener on
/// 127.0.0.1:0 added before it, so `config` may set the method and anything else).
pub fn local_with(server: &str, config: &str) -> (Proc, SocketAddr) {
    local_with_env(server, config, &[])
}

/// [`local_with`], with environment variables.
pub fn local_with_env(server: &str, config: &str, env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let cfg = temp_dir("local").join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{server}\"\npassword = \"pw\"\nlocal_address = \"127.0.0.1\"\n\
             local_port = 0\n{config}"
        ),
    )
    .expect("local.toml");
    let p = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], env);
    let addr = p.listening();
    (p, addr)
}

/// burrow-server for `method` and `secret` on `listen` (a fixed port to restart it on,
/// or `127.0.0.1:0`), allowed private targets and with metrics, `toml` added: the
/// process, its tunnel address and its metrics address.
pub fn server_metered(
    listen: &str,
    method: &str,
    secret: &str,
    toml: &str,
) -> (Proc, SocketAddr, SocketAddr) {
    let cfg = temp_dir("server").join("server.toml");
    let toml = format!("allow_private = true\nmetrics = \"127.0.0.1:0\"\n{toml}");
    std::fs::write(&cfg, toml).expect("server.toml");
    let cfg = cfg.to_str().expect("utf8");
    let p = Proc::spawn(
        SERVER,
        &["-s", listen, "-m", method, "-k", secret, "-c", cfg],
        &[],
    );
    let (addr, metrics) = (p.listening(), p.listening());
    (p, addr, metrics)
}

/// GET `/bytes/n` of `target` with curl through the SOCKS5 listener at `local`: exit
/// code, body, stderr.
pub async fn socks_get(local: SocketAddr, target: SocketAddr, n: usize) -> (i32, Vec<u8>, String) {
    let url = format!("http://{target}/bytes/{n}");
    curl(&["--socks5-hostname", &local.to_string(), &url]).await
}

/// [`socks_get`], which must succeed with the `n` bytes byte-exact.
pub async fn socks_get_exact(local: SocketAddr, target: SocketAddr, n: usize) {
    let (code, out, err) = socks_get(local, target, n).await;
    assert_eq!(code, 0, "{err}");
    let want = burrow::kit::pattern(n, n as u64);
    assert_eq!(
        burrow::kit::sha256_hex(&out),
        burrow::kit::sha256_hex(&want),
        "{n} bytes byte-exact"
    );
}

/// GETs of every size in `sizes` at once through the SOCKS5 listener at `local`, each
/// body byte-exact within 30 s (`proc`'s log when one fails).
pub async fn all_at_once_exact(
    local: SocketAddr,
    target: SocketAddr,
    sizes: impl IntoIterator<Item = usize>,
    proc: &Proc,
) {
    let all: Vec<_> = sizes
        .into_iter()
        .map(|n| {
            tokio::spawn(async move {
                let wait = std::time::Duration::from_secs(30);
                let got =
                    tokio::time::timeout(wait, burrow::kit::socks5_get_body(local, target, n));
                (n, got.await)
            })
        })
        .collect();
    for t in all {
        let (n, got) = t.await.expect("task");
        let body = match got {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => panic!("{n}: {e}\n{}", proc.output()),
            Err(_) => panic!("{n}: no answer within 30 s\n{}", proc.output()),
        };
        assert_eq!(
            burrow::kit::sha256_hex(&body),
            burrow::kit::sha256_hex(&burrow::kit::pattern(n, n as u64)),
            "{n} bytes byte-exact"
        );
    }
}
