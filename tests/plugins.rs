//! The servers people already run: SIP003 plugins. v2ray-plugin spoken natively by
//! burrow-local (WebSocket, over TLS, Mux.Cool) against ss-server + ss-v2ray-plugin, a
//! stock v2ray-plugin client against burrow-server, simple-obfs as a plugin process on
//! each side; and a burst of tunnels sharing WebSockets through squid.

mod common;

use std::net::SocketAddr;

use burrow::kit::{self, free_port, pattern, Proc};
use burrow::peers::Squid;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIG: usize = 4 * 1024 * 1024;

/// A 4 MB download, then 8 at once.
async fn downloads(local: SocketAddr, target: SocketAddr) {
    socks_get_exact(local, target, BIG).await;
    let all: Vec<_> = (0..8)
        .map(|i| tokio::spawn(socks_get_exact(local, target, BIG / 4 + i * 1000)))
        .collect();
    for t in all {
        t.await.expect("download");
    }
}

/// ss-server with ss-v2ray-plugin on `port`, the plugin's server options `opts`
/// (`server;path=/ws` is its default mode: Mux.Cool expected).
fn ss_server_v2ray(port: u16, opts: &str) -> Proc {
    let p = Proc::spawn(
        "ss-server",
        &[
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-k",
            "plugin-pw",
            "-m",
            "aes-256-gcm",
            "--plugin",
            "ss-v2ray-plugin",
            "--plugin-opts",
            opts,
            "-v",
        ],
        &[],
    );
    p.wait_for("listening at");
    kit::wait_for_port(format!("127.0.0.1:{port}").parse().expect("addr"));
    p
}

/// burrow-local given an `ss://` URL to ss-server on `port` with `plugin` in it.
fn local_with_plugin(port: u16, plugin: &str) -> Proc {
    let url = burrow_common::config::SsUrl {
        method: "aes-256-gcm".parse().expect("method"),
        password: burrow_common::config::Secret::new("plugin-pw"),
        host: "127.0.0.1".into(),
        port,
        plugin: Some(plugin.into()),
    }
    .to_url();
    Proc::spawn(LOCAL, &["-b", "127.0.0.1:0", "-s", &url], &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_json_with_v2ray_plugin_against_ss_server_ws_and_wss() {
    let target = kit::http_target().await;
    let dir = temp_dir("v2ray-plugin");
    let (cert, key, ca) = burrow::origins::write_pki(&dir, &["localhost"]);
    for tls in [false, true] {
        let port = free_port();
        let opts = match tls {
            false => "server;path=/ws".to_owned(),
            true => format!(
                "server;path=/ws;tls;host=localhost;cert={};key={}",
                cert.display(),
                key.display()
            ),
        };
        let _ss = ss_server_v2ray(port, &opts);
        // The plugin's client options, as a shadowsocks config.json carries them.
        let opts = if tls {
            format!("path=/ws;tls;host=localhost;cert={}", ca.display())
        } else {
            "path=/ws".to_owned()
        };
        let json = dir.join(format!("config-{tls}.json"));
        std::fs::write(
            &json,
            format!(
                "{{\"server\": \"127.0.0.1\", \"server_port\": {port}, \"password\": \"plugin-pw\", \
                 \"method\": \"aes-256-gcm\", \"local_address\": \"127.0.0.1\", \"local_port\": 0, \
                 \"plugin\": \"v2ray-plugin\", \"plugin_opts\": \"{opts}\"}}"
            ),
        )
        .expect("config.json");
        let local = Proc::spawn(LOCAL, &["-c", json.to_str().expect("utf8")], &[]);
        let local_addr = local.listening();
        downloads(local_addr, target).await;
        assert!(
            !local.output().contains("plugin` is not used"),
            "{}",
            local.output()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ss_url_with_v2ray_plugin_and_no_mux() {
    let target = kit::http_target().await;
    let port = free_port();
    // The plugin's server with mux=0 takes one tunnel per WebSocket.
    let _ss = ss_server_v2ray(port, "server;path=/ws;mux=0");
    let local = local_with_plugin(port, "v2ray-plugin;path=/ws;mux=0");
    socks_get_exact(local.listening(), target, BIG).await;
}

/// v2ray-plugin's mux has no flow control: a session whose app stops reading holds its
/// WebSocket's reader, and every session on it. Tunnels opened after a download that
/// the app stopped reading go on another WebSocket and are answered whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_opened_beside_a_download_the_app_stopped_reading_are_not_held_by_it() {
    let target = kit::http_target().await;
    let port = free_port();
    let _ss = ss_server_v2ray(port, "server;path=/ws");
    let local = local_with_plugin(port, "v2ray-plugin;path=/ws");
    let local_addr = local.listening();
    let (mut stuck, _) = kit::socks5_connect(local_addr, "127.0.0.1", target.port())
        .await
        .expect("socks");
    stuck
        .write_all(b"GET /bytes/400000000 HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .expect("request");
    let mut some = vec![0u8; 256 * 1024];
    stuck.read_exact(&mut some).await.expect("some of it");
    // From here the app reads nothing more; the download fills every buffer on its way.
    // (Held behind the stopped download, they would get no answer within 30 s.)
    for round in 0..3 {
        let sizes = (0..8).map(|i| 10_000 + round * 1000 + i * 7919);
        all_at_once_exact(local_addr, target, sizes, &local).await;
    }
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_v2ray_plugin_client_against_burrow_server() {
    let target = kit::http_target().await;
    let (server, _tcp) = server_with_config(
        "aes-256-gcm",
        "plugin-pw",
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\nws_path = \"/ws\"\n",
    );
    let ws_addr = server.listening();
    // ss-local with the plugin's client and its defaults (mux on).
    let lport = free_port();
    let ss_local = Proc::spawn(
        "ss-local",
        &[
            "-s",
            "127.0.0.1",
            "-p",
            &ws_addr.port().to_string(),
            "-l",
            &lport.to_string(),
            "-k",
            "plugin-pw",
            "-m",
            "aes-256-gcm",
            "--plugin",
            "ss-v2ray-plugin",
            "--plugin-opts",
            "path=/ws;host=vpn.example.com",
        ],
        &[],
    );
    ss_local.wait_for("listening at");
    let local_addr: SocketAddr = format!("127.0.0.1:{lport}").parse().expect("addr");
    kit::wait_for_port(local_addr);
    downloads(local_addr, target).await;
    assert!(server.output().contains("closed"), "{}", server.output());
}

/// The children of `pid` running `name`.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string(), name])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_obfs_as_a_plugin_process_on_each_side_restarted_and_stopped() {
    let target = kit::http_target().await;
    let dir = temp_dir("obfs");
    let public = free_port();
    let scfg = dir.join("server.toml");
    std::fs::write(
        &scfg,
        format!(
            "server = \"127.0.0.1:{public}\"\npassword = \"plugin-pw\"\nmethod = \"aes-256-gcm\"\n\
             allow_private = true\nplugin = \"obfs-server\"\nplugin_opts = \"obfs=http\"\n"
        ),
    )
    .expect("server.toml");
    let server = Proc::spawn(SERVER, &["-c", scfg.to_str().expect("utf8")], &[]);
    server.wait_for("listening on");
    server.wait_for("SS_REMOTE");
    let lcfg = dir.join("local.toml");
    std::fs::write(
        &lcfg,
        format!(
            "server = \"127.0.0.1:{public}\"\npassword = \"plugin-pw\"\nmethod = \"aes-256-gcm\"\n\
             local_address = \"127.0.0.1\"\nlocal_port = 0\nplugin = \"obfs-local\"\n\
             plugin_opts = \"obfs=http;obfs-host=www.example.com\"\n"
        ),
    )
    .expect("local.toml");
    let mut local = Proc::spawn(LOCAL, &["-c", lcfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();
    socks_get_exact(local_addr, target, BIG).await;

    // The plugin dies: burrow-local starts it again and tunnels work again.
    let first = children_named(local.pid(), "obfs-local");
    assert_eq!(first.len(), 1, "{}", local.output());
    std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .expect("kill");
    local.wait_for("starting it again");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = children_named(local.pid(), "obfs-local");
        if now.len() == 1 && now != first {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not restarted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut ok = false;
    for _ in 0..50 {
        let (code, out, _) = curl(&[
            "--socks5-hostname",
            &local_addr.to_string(),
            &format!("http://{target}/bytes/1000"),
        ])
        .await;
        if code == 0 && out == pattern(1000, 1000) {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "tunnels work after the restart\n{}", local.output());

    // Stopped with burrow-local.
    let pid = local.pid();
    let plugin = children_named(pid, "obfs-local");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    local.wait_exit();
    for p in plugin {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s.contains(") Z")),
            "plugin {p} outlived burrow-local"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_shares_websockets_through_squid_and_a_reset_leaves_the_rest_whole() {
    let target = kit::http_target().await;
    let (server, _tcp) = server_with_config(
        "aes-256-gcm",
        "plugin-pw",
        "allow_private = true\nws_listen = \"127.0.0.1:0\"\n",
    );
    let ws_addr = server.listening();
    let squid = Squid::start(temp_dir("burst-squid"), &[ws_addr.port()]);
    let dir = temp_dir("burst");
    let lcfg = dir.join("local.toml");
    std::fs::write(
        &lcfg,
        format!(
            "server = \"127.0.0.1:{}\"\npassword = \"plugin-pw\"\nmethod = \"aes-256-gcm\"\n\
             local_address = \"127.0.0.1\"\nlocal_port = 0\nmetrics = \"127.0.0.1:0\"\n\
             outbound_proxy = \"http://alice:s3cret@{}\"\ntransport = \"ws\"\n\n\
             [websocket]\npath = \"/tunnel\"\nmux = 8\n",
            ws_addr.port(),
            squid.addr
        ),
    )
    .expect("local.toml");
    let local = Proc::spawn(LOCAL, &["-c", lcfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening();
    let metrics = local.listening();

    // One tunnel doomed: it reads a little of a large body and resets.
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
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(s);
    });
    let burst = all_at_once_exact(
        local_addr,
        target,
        (0..50).map(|i| 20_000 + i * 7919),
        &local,
    );
    let (_, done) = tokio::join!(burst, doomed);
    done.expect("reset");
    // 51 tunnels went over a few WebSockets, not 51 connections (what was made counts
    // the shared ones and the warm ones the pool keeps for the next, up to 8).
    let made = kit::metric(
        metrics,
        "burrow_local_setup_seconds_count{transport=\"ws\"}",
    )
    .await
    .expect("metric");
    assert!(
        (1..=20).contains(&made),
        "{made} connections for 51 tunnels"
    );
    // And tunnels go on after the reset.
    socks_get_exact(local_addr, target, BIG).await;
}
