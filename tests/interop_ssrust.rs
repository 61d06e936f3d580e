//! Wire interop with shadowsocks-rust, both ways, SIP022 (2022-blake3-chacha20-poly1305)
//! and SIP004.

mod common;

use burrow::kit::{self, free_port, pattern, sha256_hex, Proc};
use common::*;

const SIZE: usize = 5 * 1024 * 1024;

async fn fetch_through(proxy: std::net::SocketAddr, target: std::net::SocketAddr) {
    let url = format!("http://{target}/bytes/{SIZE}");
    let (code, out, err) = curl(&["--socks5-hostname", &proxy.to_string(), &url]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_hex(&out), sha256_hex(&pattern(SIZE, SIZE as u64)));
    let (code, out, err) = curl(&[
        "--socks5-hostname",
        &proxy.to_string(),
        &format!("http://{target}/"),
    ])
    .await;
    assert_eq!(
        (code, out.as_slice()),
        (0, &b"hello from burrow\n"[..]),
        "{err}"
    );
}

const METHODS: [&str; 2] = ["2022-blake3-chacha20-poly1305", "chacha20-ietf-poly1305"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslocal_to_burrow_server() {
    let target = kit::http_target().await;
    for method in METHODS {
        let secret = secret_for(method);
        let (server, server_addr) = server(method, secret, &["--allow-private"]);
        let lport = free_port();
        let sslocal = Proc::spawn(
            "sslocal",
            &[
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
        sslocal.wait_for("listening on");
        fetch_through(format!("127.0.0.1:{lport}").parse().expect("addr"), target).await;
        assert!(server.output().contains("closed"), "{}", server.output());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_local_to_ssserver() {
    let target = kit::http_target().await;
    for method in METHODS {
        let secret = secret_for(method);
        let sport = free_port();
        let ssserver = Proc::spawn(
            "ssserver",
            &[
                "-s",
                &format!("127.0.0.1:{sport}"),
                "-m",
                method,
                "-k",
                secret,
            ],
            &[],
        );
        ssserver.wait_for("listening on");
        let server_addr = format!("127.0.0.1:{sport}").parse().expect("addr");
        // With the defaults: shadowsocks-rust sends nothing before the target does, and
        // burrow-local must learn that by itself.
        let (local, local_addr) = local(server_addr, method, secret, &[]);
        fetch_through(local_addr, target).await;
        local.wait_for("never answers first");
        // The HTTP proxy too: CONNECT and plain forwarding.
        for extra in [&["--proxytunnel"][..], &[]] {
            let proxy = format!("http://{local_addr}");
            let mut args = vec!["-x", &proxy];
            args.extend_from_slice(extra);
            let url = format!("http://{target}/");
            args.push(&url);
            let (code, out, err) = curl(&args).await;
            assert_eq!(
                (code, out.as_slice()),
                (0, &b"hello from burrow\n"[..]),
                "{extra:?}: {err}"
            );
        }
    }
}
