//! Several servers for one laptop: failover within a tunnel attempt when the one in use
//! dies, and the return to a faster one only after the hysteresis.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use burrow::kit::{self, free_port, metric, metric_until, Proc};
use burrow::link::Link;
use common::*;

const METHOD: &str = "chacha20-ietf-poly1305";
const PW: &str = "two-servers-password";

/// burrow-server on `port` (0: any): the process and its metrics address.
fn server_at(port: u16) -> (Proc, SocketAddr) {
    let (p, _, metrics) = server_metered(&format!("127.0.0.1:{port}"), METHOD, PW, "");
    (p, metrics)
}

const DOWN: &str = "burrow_bytes_total{direction=\"down\"}";

/// Bytes sent down by a server, once they reach `at_least` (counted as tunnels close).
async fn down_bytes(metrics: SocketAddr, at_least: u64) -> u64 {
    metric_until(metrics, DOWN, |v| v >= at_least).await
}

async fn fetch(local: SocketAddr, target: SocketAddr) -> i32 {
    let (code, out, _) = socks_get(local, target, 5000).await;
    assert!(code != 0 || out.len() == 5000);
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_server_takes_over_and_the_first_returns_after_the_hysteresis() {
    let target = kit::http_target().await;
    let port1 = free_port();
    let (first, m1) = server_at(port1);
    let (_second, m2) = server_at(0);
    let second_addr = {
        let out = _second.output();
        let line = out
            .lines()
            .find(|l| l.starts_with("listening on "))
            .unwrap_or_default();
        line["listening on ".len()..]
            .parse::<SocketAddr>()
            .expect("addr")
    };
    // The second sits 60 ms away: the first, when up, is clearly faster.
    let link = Link::start("127.0.0.1:0", second_addr, Duration::from_millis(60))
        .await
        .expect("link");
    let dir = temp_dir("two");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "method = \"{METHOD}\"\npassword = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             warm_connections = 0\nconnect_timeout = \"3s\"\nserver_check = \"300ms\"\n\
             [[server_list]]\nserver = \"127.0.0.1:{port1}\"\n[[server_list]]\nserver = \"{}\"\n",
            link.addr
        ),
    )
    .expect("config");
    let local = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();

    // Through the first.
    assert_eq!(fetch(local_addr, target).await, 0);
    assert!(down_bytes(m1, 5000).await >= 5000);
    assert_eq!(metric(m2, DOWN).await, Some(0));

    // The first dies: the very next tunnel goes through the second, in the same attempt.
    drop(first);
    assert_eq!(fetch(local_addr, target).await, 0, "{}", local.output());
    assert!(down_bytes(m2, 5000).await >= 5000, "through the second");
    let said = local.wait_for("now using the server");
    assert!(said.contains(&link.addr.to_string()), "{said}");

    // The first comes back (faster): tunnels keep going to the second until the first has
    // been clearly faster at two checks in a row, then return to it.
    let (_first, m1) = server_at(port1);
    let said = local.wait_for("now using the server");
    assert!(
        said.contains(&format!("127.0.0.1:{port1}")) && said.contains("reached in"),
        "{said}"
    );
    assert_eq!(fetch(local_addr, target).await, 0);
    assert!(down_bytes(m1, 5000).await >= 5000, "back through the first");
}

/// Each server may have its own way out: the first's own (dead) proxy makes it
/// unreachable, the second goes direct, and tunnels go through the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_has_its_own_way_out() {
    let target = kit::http_target().await;
    let (_s1, m1) = server_at(0);
    let (_s2, m2) = server_at(0);
    let addr_of = |p: &Proc| {
        let out = p.output();
        let line = out
            .lines()
            .find(|l| l.starts_with("listening on "))
            .unwrap_or_default();
        line["listening on ".len()..]
            .parse::<SocketAddr>()
            .expect("addr")
    };
    let (a1, a2) = (addr_of(&_s1), addr_of(&_s2));
    let dead = free_port();
    let dir = temp_dir("own-way");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "method = \"{METHOD}\"\npassword = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             warm_connections = 0\n\
             [[server]]\nserver = \"{a1}\"\noutbound_proxy = \"http://127.0.0.1:{dead}\"\n\
             [[server]]\nserver = \"{a2}\"\ntransport = \"tcp\"\n"
        ),
    )
    .expect("config");
    let local = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();
    assert_eq!(fetch(local_addr, target).await, 0, "{}", local.output());
    assert!(down_bytes(m2, 5000).await >= 5000, "through the second");
    assert_eq!(metric(m1, DOWN).await, Some(0), "never through the first");
}

/// SIGHUP to burrow-local: the config is read again; new tunnels go to the server it now
/// names while an open tunnel goes on; a config that does not load is refused in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_moves_burrow_local_to_the_server_the_config_now_names() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = kit::http_target().await;
    let (s1, m1) = server_at(0);
    let (s2, m2) = server_at(0);
    let addr_of = |p: &Proc| {
        let out = p.output();
        let line = out
            .lines()
            .find(|l| l.starts_with("listening on "))
            .unwrap_or_default();
        line["listening on ".len()..]
            .parse::<SocketAddr>()
            .expect("addr")
    };
    let (a1, a2) = (addr_of(&s1), addr_of(&s2));
    let dir = temp_dir("local-reload");
    let cfg = dir.join("local.toml");
    let write = |server: SocketAddr| {
        std::fs::write(
            &cfg,
            format!(
                "server = \"{server}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
                 local_address = \"127.0.0.1\"\nlocal_port = 0\n"
            ),
        )
        .expect("config")
    };
    write(a1);
    let local = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();
    assert_eq!(fetch(local_addr, target).await, 0);
    assert!(down_bytes(m1, 5000).await >= 5000);
    // A tunnel held open through the first server.
    let echo = kit::half_close_target().await;
    let (mut held, reply) = kit::socks5_connect(local_addr, "127.0.0.1", echo.port())
        .await
        .expect("held tunnel");
    assert_eq!(reply, 0);
    held.write_all(b"before ").await.expect("write");

    write(a2);
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(hup(local.pid()));
    let said = local.wait_for("config reloaded");
    assert!(said.contains(&a2.to_string()), "{said}");
    assert_eq!(fetch(local_addr, target).await, 0);
    assert!(
        down_bytes(m2, 5000).await >= 5000,
        "new tunnels through the second"
    );

    // The held tunnel went on through the first.
    held.write_all(b"and after")
        .await
        .expect("write after reload");
    held.shutdown().await.expect("half-close");
    let mut answer = String::new();
    held.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("got 16 bytes"), "{answer}");

    // A config that does not load: refused, the running one stays.
    std::fs::write(&cfg, "server = \"nowhere\"\nmethod = \"rot13\"\n").expect("broken");
    assert!(hup(local.pid()));
    let said = local.wait_for("reload refused");
    assert!(said.contains("rot13") || said.contains("method"), "{said}");
    assert_eq!(fetch(local_addr, target).await, 0);
}

/// A fallback server is dialled on its own terms: burrow-server (which confirms) is the
/// first, shadowsocks-rust (which never answers first) the second. Once the first has
/// died, a tunnel to a target not reached lately — planned as a wait for the first's
/// word — goes through the second after it is learned to stay silent, instead of
/// waiting for a word that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_server_of_another_kind_is_dialled_on_its_own_terms() {
    let (target, other_target) = (kit::http_target().await, kit::http_target().await);
    let (first, _m1) = server_at(0);
    let a1 = first
        .output()
        .lines()
        .find_map(|l| l.strip_prefix("listening on "))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .expect("the first's address");
    let sport = free_port();
    let ssserver = Proc::spawn(
        "ssserver",
        &["-s", &format!("127.0.0.1:{sport}"), "-m", METHOD, "-k", PW],
        &[],
    );
    ssserver.wait_for("listening on");
    let dir = temp_dir("other-kind");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "method = \"{METHOD}\"\npassword = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             warm_connections = 0\nconnect_timeout = \"3s\"\n\
             [[server]]\nserver = \"{a1}\"\n[[server]]\nserver = \"127.0.0.1:{sport}\"\n"
        ),
    )
    .expect("config");
    let local = Proc::spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();
    assert_eq!(fetch(local_addr, target).await, 0, "{}", local.output());
    drop(first);
    assert_eq!(
        fetch(local_addr, other_target).await,
        0,
        "{}",
        local.output()
    );
    local.wait_for("never answers first");
}
