//! Several users on one server port: each moves bytes counted as theirs, a key that is
//! nobody's gets silence; SIGHUP reloads the users while a transfer runs.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use burrow::kit::{self, metric, metric_until, pattern, sha256_hex, Proc};
use common::*;

const METHOD: &str = "chacha20-ietf-poly1305";

fn write_users(path: &Path, users: &[(&str, &str)], extra: &str) {
    let mut toml = format!(
        "method = \"{METHOD}\"\nallow_private = true\nmetrics = \"127.0.0.1:0\"\nuser_grace = \"1s\"\n{extra}"
    );
    for (name, pw) in users {
        toml.push_str(&format!(
            "\n[[user]]\nname = \"{name}\"\npassword = \"{pw}\"\n"
        ));
    }
    std::fs::write(path, toml).expect("config");
}

/// burrow-server from `cfg`; its address and metrics address.
fn server_from(cfg: &Path) -> (Proc, SocketAddr, SocketAddr) {
    let p = Proc::spawn(
        SERVER,
        &["-s", "127.0.0.1:0", "-c", cfg.to_str().expect("utf8")],
        &[],
    );
    let (a, m) = (p.listening(), p.listening());
    (p, a, m)
}

fn bytes_of(user: &str, dir: &str) -> String {
    format!("burrow_user_bytes_total{{user=\"{user}\",direction=\"{dir}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_on_one_port_are_counted_apart_and_a_stranger_gets_silence() {
    let target = kit::http_target().await;
    let dir = temp_dir("users");
    let cfg = dir.join("server.toml");
    write_users(
        &cfg,
        &[
            ("alice", "alice-password-long"),
            ("bob", "bob-password-long!"),
        ],
        // The stranger's connection is drained until this deadline, then closed.
        "handshake_timeout = \"3s\"\n",
    );
    let (_server, addr, metrics) = server_from(&cfg);
    let sizes = [
        ("alice", "alice-password-long", 3_000_000),
        ("bob", "bob-password-long!", 1_000_000),
    ];
    for (_, pw, n) in sizes {
        let (_l, local_addr) = local(addr, METHOD, pw, &[]);
        let (code, out, _) = socks_get(local_addr, target, n).await;
        assert_eq!(code, 0);
        assert_eq!(sha256_hex(&out), sha256_hex(&pattern(n, n as u64)));
    }
    for (name, _, n) in sizes {
        // The answer's head rides along: within 1 % of the bytes moved.
        let down = metric_until(metrics, &bytes_of(name, "down"), |v| v >= n as u64).await;
        assert!(
            down >= n as u64 && down <= n as u64 + n as u64 / 100,
            "{name}: {down} for {n}"
        );
        let tunnels = metric(
            metrics,
            &format!("burrow_user_tunnels_total{{user=\"{name}\"}}"),
        )
        .await;
        assert!(tunnels.is_some_and(|t| t >= 1), "{name}: {tunnels:?}");
    }
    // A key that is nobody's: no tunnel, counted as a probe, nothing for either user.
    let probes = metric(metrics, "burrow_rejected_total{kind=\"probe\"}")
        .await
        .unwrap_or(0);
    let (_l, local_addr) = local(addr, METHOD, "carol-is-not-a-user", &["--no-confirm"]);
    let (code, out, _) = socks_get(local_addr, target, 1000).await;
    assert!(
        code != 0 && out.is_empty(),
        "a stranger got {code} / {} bytes",
        out.len()
    );
    assert!(
        metric_until(metrics, "burrow_rejected_total{kind=\"probe\"}", |v| v
            > probes)
        .await
            > probes
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users_while_a_transfer_runs() {
    let target = kit::http_target().await;
    let dir = temp_dir("reload");
    let cfg = dir.join("server.toml");
    let (alice, bob, carol) = (
        "alice-password-long",
        "bob-password-long!",
        "carol-password-long",
    );
    write_users(&cfg, &[("alice", alice), ("bob", bob)], "");
    let (server, addr, _metrics) = server_from(&cfg);
    let (_la, via_alice) = local(addr, METHOD, alice, &[]);
    let (_lb, via_bob) = local(addr, METHOD, bob, &[]);
    let (_lc, via_carol) = local(addr, METHOD, carol, &[]);
    // Bob holds a tunnel open.
    let echo = kit::half_close_target().await;
    let (mut bobs, reply) = kit::socks5_connect(via_bob, "127.0.0.1", echo.port())
        .await
        .expect("bob's tunnel");
    assert_eq!(reply, 0);
    // Alice downloads 30 MB at 10 MB/s while the users change.
    let n = 30_000_000;
    let transfer = tokio::spawn(async move {
        curl(&[
            "--limit-rate",
            "10M",
            "--socks5-hostname",
            &via_alice.to_string(),
            &format!("http://{target}/bytes/{n}"),
        ])
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // the transfer is under way
    write_users(&cfg, &[("alice", alice), ("carol", carol)], "");
    let pid = server.pid().to_string();
    let hup = |pid: &str| {
        std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
    };
    assert!(hup(&pid).is_ok_and(|s| s.success()));
    let said = server.wait_for("config reloaded");
    assert!(
        said.contains("added [\"carol\"]") && said.contains("removed [\"bob\"]"),
        "{said}"
    );
    // Carol works at once; bob's new tunnels are refused; bob's open one closes after
    // the grace (1 s).
    let (code, out, _) = socks_get(via_carol, target, 1000).await;
    assert_eq!((code, out.len()), (0, 1000));
    let (code, _, _) = socks_get(via_bob, target, 1000).await;
    assert_ne!(code, 0, "a removed user is refused");
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), bobs.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "bob's open tunnel closed after the grace");
    // A config that does not load is refused; the running users stay.
    std::fs::write(
        &cfg,
        "method = \"chacha20-ietf-poly1305\"\n[[user]]\nname = \"\"\n",
    )
    .expect("broken");
    assert!(hup(&pid).is_ok_and(|s| s.success()));
    let said = server.wait_for("reload refused");
    assert!(said.contains("name"), "{said}");
    let (code, out, _) = socks_get(via_carol, target, 1000).await;
    assert_eq!((code, out.len()), (0, 1000), "the running users stay");
    // Alice's transfer lost nothing.
    let (code, out, err) = transfer.await.expect("join");
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(n, n as u64)));
    let _ = std::fs::remove_dir_all(dir);
}

/// `burrow-server url USER [--qr]`: the user's ss:// URL, which a client takes as it is
/// (the same server serves it), and a QR code of it for phones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_url_opens_tunnels_and_comes_as_a_qr_code() {
    let target = kit::http_target().await;
    let dir = temp_dir("url");
    let cfg = dir.join("server.toml");
    write_users(
        &cfg,
        &[
            ("alice", "alice pass/word+long"),
            ("bob", "bob-password-long!"),
        ],
        "",
    );
    let (_server, addr, _) = server_from(&cfg);
    let url_of = |args: &[&str]| {
        let out = std::process::Command::new(SERVER)
            .args([
                "-s",
                &addr.to_string(),
                "-c",
                cfg.to_str().expect("utf8"),
                "url",
            ])
            .args(args)
            .output()
            .expect("url");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, url, err) = url_of(&["alice"]);
    assert_eq!(code, Some(0), "{err}");
    let url = url.trim().to_owned();
    assert!(
        url.starts_with("ss://") && url.ends_with(&format!("@{addr}")),
        "{url}"
    );
    let l = Proc::spawn(LOCAL, &["-b", "127.0.0.1:0", "-s", &url], &[]);
    let (code, out, _) = socks_get(l.listening(), target, 10_000).await;
    assert_eq!((code, out.len()), (0, 10_000));
    let (code, qr, _) = url_of(&["alice", "--qr"]);
    assert_eq!(code, Some(0));
    let mut lines = qr.lines();
    assert_eq!(lines.next(), Some(url.as_str()));
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let blocks = |r: &&str| r.contains(['█', '▀', '▄']);
    assert!(rows.len() >= 10 && rows.iter().all(blocks), "{qr}");
    let width = rows[0].chars().count();
    assert!(rows.iter().all(|r| r.chars().count() == width), "{qr}");
    let (code, _, err) = url_of(&["carol"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no [[user]] named \"carol\""), "{err}");
}

/// `status` on both ends: what the running processes count, printed for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_running_processes() {
    let target = kit::http_target().await;
    let dir = temp_dir("status");
    let (smetrics, lmetrics) = (kit::free_port(), kit::free_port());
    let cfg = dir.join("server.toml");
    write_users(&cfg, &[("alice", "alice-password-long")], "");
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "metrics = \"127.0.0.1:0\"",
        &format!("metrics = \"127.0.0.1:{smetrics}\""),
    );
    std::fs::write(&cfg, text).expect("config");
    let (_server, addr, _) = server_from(&cfg);
    let lcfg = dir.join("local.toml");
    std::fs::write(
        &lcfg,
        format!(
            "server = \"{addr}\"\nmethod = \"{METHOD}\"\npassword = \"alice-password-long\"\n\
             local_address = \"127.0.0.1\"\nlocal_port = 0\nmetrics = \"127.0.0.1:{lmetrics}\"\n"
        ),
    )
    .expect("local config");
    let l = Proc::spawn(LOCAL, &["-c", lcfg.to_str().expect("utf8")], &[]);
    let local_addr = l.listening();
    let (code, out, _) = socks_get(local_addr, target, 2_000_000).await;
    assert_eq!((code, out.len()), (0, 2_000_000));
    metric_until(
        format!("127.0.0.1:{smetrics}").parse().expect("addr"),
        &bytes_of("alice", "down"),
        |v| v >= 2_000_000,
    )
    .await;
    let status = |program: &str, cfg: &Path| {
        let out = std::process::Command::new(program)
            .args(["-c", cfg.to_str().expect("utf8"), "status"])
            .output()
            .expect("status");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = status(SERVER, &cfg);
    assert_eq!(code, Some(0), "{said}");
    let alice = said
        .lines()
        .find(|l| l.trim_start().starts_with("alice"))
        .unwrap_or_default();
    assert!(
        alice.contains("2.0 MB down") && alice.contains("1 tunnels"),
        "{said}"
    );
    let (code, said) = status(LOCAL, &lcfg);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("server       {addr} (reachable, in use)")),
        "{said}"
    );
    assert!(said.contains("socks5 1"), "{said}");
    assert!(said.contains("fresh to the server over tcp"), "{said}");
    // With metrics off, status says how to turn them on.
    let off = dir.join("off.toml");
    std::fs::write(&off, format!("server = \"{addr}\"\npassword = \"x\"\n")).expect("config");
    let out = std::process::Command::new(LOCAL)
        .args(["-c", off.to_str().expect("utf8"), "status"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics are off"));
}

/// `max_connections` in a [[user]]: tunnels past it are refused, counted; one closed
/// makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_cap_on_open_tunnels() {
    let dir = temp_dir("cap");
    let cfg = dir.join("server.toml");
    write_users(&cfg, &[("alice", "alice-password-long")], "");
    let text = std::fs::read_to_string(&cfg).expect("config") + "max_connections = 2\n";
    std::fs::write(&cfg, text).expect("config");
    let (_server, addr, metrics) = server_from(&cfg);
    let echo = kit::half_close_target().await;
    // Always waiting for the server's word: a refusal is then the app's SOCKS5 error.
    let lcfg = dir.join("local.toml");
    std::fs::write(&lcfg, "confirm_connect = true\nwarm_connections = 0\n").expect("local");
    let (_l, local_addr) = local(
        addr,
        METHOD,
        "alice-password-long",
        &["-c", lcfg.to_str().expect("utf8")],
    );
    let open = || kit::socks5_connect(local_addr, "127.0.0.1", echo.port());
    let (first, r1) = open().await.expect("first");
    let (_second, r2) = open().await.expect("second");
    assert_eq!((r1, r2), (0, 0));
    let (_third, r3) = open().await.expect("third");
    assert_eq!(
        r3, 4,
        "the third is refused (host unreachable, as a failed dial)"
    );
    let capped = metric_until(metrics, "burrow_user_capped_total{user=\"alice\"}", |v| {
        v >= 1
    })
    .await;
    assert_eq!(capped, 1, "{}", _server.output());
    drop(first);
    // Once the first is closed on the server too, there is room again.
    let mut ok = false;
    for _ in 0..100 {
        let (_s, r) = open().await.expect("again");
        if r == 0 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "room again after a tunnel closed");
}
