//! Every file in configs/ parses and validates with the role its name says.

mod common;

use std::path::Path;

use clap::Parser;

#[test]
fn every_config_file_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let p = path.to_str().expect("utf8 path");
        if name.starts_with("server") {
            let cli = burrow_server::config::Cli::try_parse_from(["burrow-server", "-c", p])
                .expect("cli");
            burrow_server::config::load(&cli).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name.starts_with("local") {
            let cli =
                burrow_local::config::Cli::try_parse_from(["burrow-local", "-c", p]).expect("cli");
            burrow_local::config::load(&cli).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            panic!("{name}: config names start with local or server");
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "configs/ must hold at least local.toml and server.toml"
    );
}

/// Coming from shadowsocks: both programs read a shadowsocks-rust / -libev `config.json`
/// as it is, say which keys they do not use, and carry traffic with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowsocks_json_configs_are_read_as_they_are() {
    let dir = common::temp_dir("json");
    let target = burrow::kit::http_target().await;
    let server_json = dir.join("server.json");
    std::fs::write(
        &server_json,
        r#"{"server": ["127.0.0.1"], "server_port": 0, "password": "json-config-password",
            "method": "chacha20-ietf-poly1305", "timeout": 300, "mode": "tcp_and_udp",
            "fast_open": false}"#,
    )
    .expect("server.json");
    let cfg = server_json.to_str().expect("utf8");
    let server = burrow::kit::Proc::spawn(common::SERVER, &["-c", cfg, "--allow-private"], &[]);
    let server_addr = server.listening();
    server.wait_for("`mode` is not used by burrow; ignored");
    // sslocal's multi-server form.
    let local_json = dir.join("local.json");
    std::fs::write(
        &local_json,
        format!(
            r#"{{"servers": [{{"address": "127.0.0.1", "port": {}, "password": "json-config-password",
                 "method": "chacha20-ietf-poly1305"}},
                 {{"address": "127.0.0.1", "port": {}, "password": "json-config-password",
                 "method": "chacha20-ietf-poly1305", "plugin": "obfs-local"}}],
                "local_address": "127.0.0.1", "local_port": 0, "fast_open": true,
                "mode": "tcp_only"}}"#,
            server_addr.port(),
            burrow::kit::free_port()
        ),
    )
    .expect("local.json");
    let cfg = local_json.to_str().expect("utf8");
    let local = burrow::kit::Proc::spawn(common::LOCAL, &["-c", cfg], &[]);
    let proxy = local.listening();
    local.wait_for("`mode` is not used by burrow; ignored");
    // The second server's plugin runs as a SIP003 process.
    local.wait_for("plugin obfs-local: SS_LOCAL");
    let url = format!("http://{target}/");
    let (code, out, err) = common::curl(&["--socks5-hostname", &proxy.to_string(), &url]).await;
    assert_eq!(
        (code, out.as_slice()),
        (0, &b"hello from burrow\n"[..]),
        "{err}"
    );
    // `fast_open` is burrow's too (TCP Fast Open on the hop and the listener).
    for p in [&server, &local] {
        assert!(!p.output().contains("`fast_open`"), "{}", p.output());
    }
    // A JSON file that does not parse: one line with its position, exit 2.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"server\": \"x\",\n \"server_port\": }").expect("bad.json");
    let mut p = burrow::kit::Proc::spawn(common::LOCAL, &["-c", bad.to_str().expect("utf8")], &[]);
    assert_eq!(p.wait_exit(), Some(2));
    assert!(p.output().contains("bad.json:2:"), "{}", p.output());
}

/// Several servers written three ways (`[[server]]` tables, an array of addresses, the
/// earlier `[[server_list]]`) load alike; a table's own port and key are its own; both
/// forms at once, or none, are refused in one line.
#[test]
fn server_lists_load_in_every_form() {
    let dir = common::temp_dir("server-forms");
    let load = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        let p = path.to_str().expect("utf8").to_owned();
        let cli =
            burrow_local::config::Cli::try_parse_from(["burrow-local", "-c", &p]).expect("cli");
        burrow_local::config::load(&cli).map(|l| {
            l.settings
                .servers
                .in_order()
                .iter()
                .map(|s| format!("{}:{}", s.host, s.port))
                .collect::<Vec<_>>()
        })
    };
    let top = "method = \"chacha20-ietf-poly1305\"\npassword = \"a password for tests\"\n";
    let tables = load(
        "tables.toml",
        &format!(
            "{top}[[server]]\nserver = \"vps1.example\"\nserver_port = 443\n\
             [[server]]\nserver = \"vps2.example:8443\"\nmethod = \"aes-256-gcm\"\n\
             password = \"another password here\"\n"
        ),
    )
    .expect("[[server]] tables load");
    assert_eq!(tables, ["vps1.example:443", "vps2.example:8443"]);
    let array = load(
        "array.toml",
        &format!("{top}server_port = 9000\nserver = [\"a.example\", \"b.example:1\"]\n"),
    )
    .expect("an array of addresses loads");
    assert_eq!(array, ["a.example:9000", "b.example:1"]);
    let one = load("one.toml", &format!("{top}server = \"c.example\"\n")).expect("one server");
    assert_eq!(one, ["c.example:8388"]);
    let old = load(
        "old.toml",
        &format!("{top}[[server_list]]\nserver = \"d.example:2\"\n"),
    )
    .expect("[[server_list]] still loads");
    assert_eq!(old, ["d.example:2"]);
    let both = load(
        "both.toml",
        &format!("{top}server = \"e.example\"\n[[server_list]]\nserver = \"f.example\"\n"),
    )
    .expect_err("both forms at once are refused");
    assert!(
        both.contains("both `server` and `[[server_list]]`"),
        "{both}"
    );
    // sslocal's JSON: every `servers` entry is a server, with its own key.
    let json = load(
        "ss.json",
        r#"{"method": "aes-256-gcm", "servers": [
            {"address": "g.example", "port": 8388, "password": "a password for tests"},
            {"server": "h.example", "server_port": 9, "password": "another one",
             "method": "chacha20-ietf-poly1305"}]}"#,
    )
    .expect("servers[] loads as a list");
    assert_eq!(json, ["g.example:8388", "h.example:9"]);
    let none = load("none.toml", top).expect_err("no server is refused");
    assert!(none.contains("no server"), "{none}");
}
