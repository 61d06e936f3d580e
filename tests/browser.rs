//! Headless Chromium loads a page on loopback through burrow-local → burrow-server, once
//! with the HTTP proxy and once with SOCKS5; the page opens a WebSocket to the Node `ws`
//! echo server and the test reads the echoed text back from the page.
//!
//! Everything runs inside a network namespace of its own: Chromium's background requests
//! to public names reach burrow-server too, and there they fail without a packet leaving.

mod common;

use std::path::Path;

use burrow::kit::NetNs;
use common::{LOCAL, SERVER};

#[test]
fn chromium_loads_a_page_and_its_websocket_through_both_proxy_kinds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/ws").exists() && dir.join("node_modules/playwright-core").exists(),
        "run scripts/test.sh (it installs the Node peers in tests/browser)"
    );
    let ns = NetNs::new("browser");
    let echo = ns.spawn(
        "node",
        &[dir.join("echo-server.js").to_str().expect("utf8")],
        &[],
    );
    let page = echo.listening();
    let server = ns.spawn(
        SERVER,
        &["-s", "127.0.0.1:0", "-k", "pw", "--allow-private"],
        &[],
    );
    let server_addr = server.listening().to_string();
    let local = ns.spawn(
        LOCAL,
        &["-b", "127.0.0.1:0", "-s", &server_addr, "-k", "pw"],
        &[],
    );
    let proxy = local.listening();

    let driver = dir.join("browser.js");
    for scheme in ["http", "socks5"] {
        let (ok, out) = ns.run(
            "node",
            &[
                driver.to_str().expect("utf8"),
                &format!("{scheme}://{proxy}"),
                &format!("http://{page}/"),
            ],
        );
        assert!(ok, "{scheme}: {out}");
        assert!(
            out.contains("result: echo: hello through burrow"),
            "{scheme}: {out}"
        );
    }
    // Both the page and its WebSocket went through the tunnel.
    let log = local.output();
    assert!(log.contains("inbound=\"http\""), "{log}");
    assert!(log.contains("inbound=\"socks5\""), "{log}");
    assert!(log.matches(&format!("target={page}")).count() >= 4, "{log}");
}
