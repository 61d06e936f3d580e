//! Wire interop with shadowsocks-libev, both ways, both ciphers.

mod common;

use burrow::kit::{self, free_port, pattern, sha256_hex, Proc};
use common::*;

const SIZE: usize = 5 * 1024 * 1024;

async fn fetch_through(proxy: std::net::SocketAddr, target: std::net::SocketAddr) {
    let url = format!("http://{target}/bytes/{SIZE}");
    let (code, out, err) = curl(&["--socks5-hostname", &proxy.to_string(), &url]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(SIZE, SIZE as u64)));
    // And a body up.
    let body = pattern(SIZE, 3)
        .iter()
        .map(|b| b'a' + b % 26)
        .collect::<Vec<u8>>();
    let dir = temp_dir("interop");
    let f = dir.join("up.bin");
    std::fs::write(&f, &body).expect("write");
    let data = format!("@{}", f.display());
    let (code, out, err) = curl(&[
        "--socks5-hostname",
        &proxy.to_string(),
        "--data-binary",
        &data,
        &format!("http://{target}/sha256"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), sha256_hex(&body));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ss_local_to_burrow_server() {
    let target = kit::http_target().await;
    for method in ["chacha20-ietf-poly1305", "aes-256-gcm"] {
        let (server, server_addr) = server(method, "interop-pw", &["--allow-private"]);
        let lport = free_port();
        let ss_local = Proc::spawn(
            "ss-local",
            &[
                "-s",
                "127.0.0.1",
                "-p",
                &server_addr.port().to_string(),
                "-b",
                "127.0.0.1",
                "-l",
                &lport.to_string(),
                "-k",
                "interop-pw",
                "-m",
                method,
                "-v",
            ],
            &[],
        );
        ss_local.wait_for("listening at");
        fetch_through(format!("127.0.0.1:{lport}").parse().expect("addr"), target).await;
        assert!(server.output().contains("closed"), "{}", server.output());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_to_ss_server() {
    let target = kit::http_target().await;
    for method in ["chacha20-ietf-poly1305", "aes-256-gcm"] {
        let sport = free_port();
        let ss_server = Proc::spawn(
            "ss-server",
            &[
                "-s",
                "127.0.0.1",
                "-p",
                &sport.to_string(),
                "-k",
                "interop-pw",
                "-m",
                method,
                "-v",
            ],
            &[],
        );
        ss_server.wait_for("listening at");
        let server_addr = format!("127.0.0.1:{sport}").parse().expect("addr");
        // With the defaults: libev sends nothing before the target does, and burrow-local
        // must learn that by itself.
        let (local, local_addr) = local(server_addr, method, "interop-pw", &[]);
        // Learned at start: ss-server closes the question burrow-local asks (it cannot
        // reach the name), so no tunnel waits to learn it.
        local.wait_for("it closed the question asked at start");
        fetch_through(local_addr, target).await;
    }
}
