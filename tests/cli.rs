//! Bad command-line and config input: exit code 2 and exactly one line naming the problem,
//! before anything listens.

mod common;

use std::process::Command;

use common::{temp_dir, LOCAL, SERVER};

/// Runs to exit (killed after a minute, so a binary that wrongly starts serving fails
/// the test instead of hanging it); returns the exit code and everything printed.
fn run(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut p = burrow::kit::Proc::spawn(bin, args, &[]);
    let code = p.wait_exit();
    (code, p.output())
}

fn assert_usage_error(bin: &str, args: &[&str], needle: &str) {
    let (code, err) = run(bin, args);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(code, Some(2), "{args:?}: {err}");
    assert_eq!(lines.len(), 1, "{args:?}: want one line, got:\n{err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} does not name {needle:?}",
        lines[0]
    );
    assert!(!err.contains("listening on"));
}

#[test]
fn bad_cli_input_is_one_line_and_exit_2() {
    let s = ["-s", "127.0.0.1:0"];
    assert_usage_error(
        SERVER,
        &[&s[..], &["-k", "pw", "-m", "rc4-md5"]].concat(),
        "unknown method \"rc4-md5\"",
    );
    assert_usage_error(
        SERVER,
        &[&s[..], &["--key", "AAEC"]].concat(),
        "must be 32 bytes, got 3",
    );
    assert_usage_error(SERVER, &[&s[..], &["--key", "***"]].concat(), "base64");
    assert_usage_error(SERVER, &s, "no password");
    assert_usage_error(
        SERVER,
        &["-s", "nowhere", "-k", "pw"],
        "\"nowhere\" is not host:port",
    );
    assert_usage_error(SERVER, &["--frobnicate"], "--frobnicate");
    assert_usage_error(SERVER, &["genkey", "-m", "nope"], "unknown method");
    let b = ["-b", "127.0.0.1:0"];
    assert_usage_error(LOCAL, &[&b[..], &["-k", "pw"]].concat(), "no server");
    assert_usage_error(
        LOCAL,
        &[&b[..], &["-s", "ss://bad", "-k", "pw"]].concat(),
        "ss://",
    );
    assert_usage_error(
        LOCAL,
        &[&b[..], &["-s", "host:notaport", "-k", "pw"]].concat(),
        "host:notaport",
    );
    assert_usage_error(
        LOCAL,
        &["-b", "300.1.1.1:80", "-s", "h:1", "-k", "pw"],
        "300.1.1.1:80",
    );
    assert_usage_error(
        LOCAL,
        &[&b[..], &["-s", "h:1", "-k", "pw", "-m", "aes-128-cfb"]].concat(),
        "aes-128-cfb",
    );
}

#[test]
fn bad_config_files_are_one_line_with_position_and_exit_2() {
    let dir = temp_dir("cli");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "server = \"127.0.0.1:0\"\npassword = \"pw\"\nmethd = \"aes-256-gcm\"\n",
    )
    .expect("write");
    let path = cfg.to_str().expect("utf8");
    assert_usage_error(SERVER, &["-c", path], "bad.toml:3:1: unknown field `methd`");
    std::fs::write(
        &cfg,
        "server = \"h:1\"\npassword = \"pw\"\nidle_timeout = \"soon\"\n",
    )
    .expect("write");
    assert_usage_error(LOCAL, &["-c", path], "bad.toml:3");
    std::fs::write(
        &cfg,
        "server = \"h:1\"\npassword = \"pw\"\nproxy_username = \"u\"\n",
    )
    .expect("write");
    assert_usage_error(
        LOCAL,
        &["-c", path, "-b", "127.0.0.1:0"],
        "proxy_username and proxy_password",
    );
    assert_usage_error(
        LOCAL,
        &["-c", "/nonexistent/burrow.toml"],
        "/nonexistent/burrow.toml",
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Errors about input that holds a secret never repeat the secret: a second server's
/// ss:// URL with a mistyped key, an ss:// URL given to burrow-server, a password
/// written as a number, a proxy password with a comma in it.
#[test]
fn errors_about_secret_bearing_input_do_not_show_the_secret() {
    let b = ["-b", "127.0.0.1:0"];
    let first = "ss://chacha20-ietf-poly1305:first-secret@127.0.0.1:1";
    let second = "ss://2022-blake3-chacha20-poly1305:NotBase64Key-hunter2@127.0.0.1:2";
    let (code, err) = run(LOCAL, &[&b[..], &["-s", first, "-s", second]].concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("127.0.0.1:2"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("first-secret"),
        "{err}"
    );
    let (code, err) = run(SERVER, &["-s", first]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("first-secret"), "{err}");
    let dir = temp_dir("cli-secret");
    let cfg = dir.join("c.toml");
    let path = cfg.to_str().expect("utf8");
    std::fs::write(&cfg, "server = \"127.0.0.1:1\"\npassword = 31415926535\n").expect("write");
    for bin in [LOCAL, SERVER] {
        let (code, err) = run(bin, &["-c", path]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("c.toml:2"), "{err}");
        assert!(!err.contains("31415926535"), "{err}");
    }
    let json = dir.join("c.json");
    std::fs::write(
        &json,
        "{\"server\": \"127.0.0.1\", \"server_port\": 1, \"password\": 27182818284}",
    )
    .expect("write");
    let (code, err) = run(LOCAL, &["-c", json.to_str().expect("utf8")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("27182818284"), "{err}");
    let (code, err) = run(
        LOCAL,
        &[
            &b[..],
            &[
                "-s",
                "127.0.0.1:1",
                "-k",
                "pw",
                "--outbound-proxy",
                "http://u:4242,x@",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("4242"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A Windows service is Windows's: elsewhere `install --service` and `uninstall` say
/// where to look instead, in one line, and exit 1; `install` alone asks what to install.
#[test]
fn a_windows_service_elsewhere_is_one_line() {
    for args in [
        &["-k", "a-long-test-password", "install", "--service"][..],
        &["uninstall"][..],
    ] {
        let (code, err) = run(SERVER, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("systemd"), "{err}");
    }
    assert_usage_error(
        SERVER,
        &["-k", "a-long-test-password", "install"],
        "--service",
    );
}

#[test]
fn genkey_prints_a_key_and_a_url_that_local_accepts() {
    let out = Command::new(SERVER)
        .args(["genkey", "-m", "aes-256-gcm", "--server", "203.0.113.9:443"])
        .output()
        .expect("genkey");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("url:"))
        .expect("url line")
        .trim()
        .to_owned();
    let cli =
        <burrow_local::config::Cli as clap::Parser>::try_parse_from(["burrow-local", "-s", &url])
            .expect("parse");
    let loaded = burrow_local::config::load(&cli).expect("local accepts genkey's URL");
    assert_eq!(loaded.settings.servers.current().port, 443);
    assert_eq!(
        loaded.settings.servers.current().key.method().name(),
        "aes-256-gcm"
    );
}

#[test]
fn weak_settings_are_warned_about_at_start() {
    // A short SIP004 password: a warning (the key is one MD5 chain of it).
    let p = burrow::kit::Proc::spawn(SERVER, &["-s", "127.0.0.1:0", "-k", "pw"], &[]);
    p.wait_for("shorter than 16 characters");
    // A long one, and a SIP022 key: no warning.
    let long = "a-long-enough-password";
    let p = burrow::kit::Proc::spawn(SERVER, &["-s", "127.0.0.1:0", "-k", long], &[]);
    p.listening();
    let key = [
        "-m",
        "2022-blake3-chacha20-poly1305",
        "-k",
        common::secret_for("2022-"),
    ];
    let q = burrow::kit::Proc::spawn(SERVER, &[&["-s", "127.0.0.1:0"][..], &key].concat(), &[]);
    q.listening();
    // burrow-local: an unverified wss hop, and an open listener without auth.
    let dir = temp_dir("warn");
    let cfg = dir.join("local.toml");
    let toml = "transport = \"wss\"\nmetrics = \"0.0.0.0:0\"\ndns = \"0.0.0.0:0\"\n\
                [websocket]\ninsecure_skip_verify = true\n";
    std::fs::write(&cfg, toml).expect("config");
    let cfg = cfg.to_str().expect("utf8");
    let args = [
        "-b",
        "0.0.0.0:0",
        "-s",
        "127.0.0.1:1",
        "-k",
        long,
        "-c",
        cfg,
    ];
    let l = burrow::kit::Proc::spawn(LOCAL, &args, &[]);
    l.wait_for("insecure_skip_verify is on");
    l.wait_for("without proxy_username/proxy_password");
    // Metrics and the DNS forwarder open to the network: said, on both programs.
    l.wait_for("readable by anyone who can reach it");
    l.wait_for("an open resolver on this network");
    let m = burrow::kit::Proc::spawn(
        SERVER,
        &["-s", "127.0.0.1:0", "-k", long, "--metrics", "0.0.0.0:0"],
        &[],
    );
    m.wait_for("readable by anyone who can reach it");
    // Stopped, so that everything they would ever say at start has been said.
    for mut quiet in [p, q] {
        let pid = quiet.pid().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()));
        assert_eq!(quiet.wait_exit(), Some(0));
        assert!(!quiet.output().contains("WARN"), "{}", quiet.output());
    }
}

#[test]
fn background_and_log_file_put_the_log_in_a_file_and_nothing_on_stderr() {
    let dir = temp_dir("log-file");
    let server_log = dir.join("server.log");
    let server = burrow::kit::Proc::spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-k",
            "log-file-pw",
            "--log-file",
            server_log.to_str().expect("utf8"),
        ],
        &[],
    );
    let server_addr = burrow::kit::listening_in_file(&server_log).to_string();
    // --background with no --log-file: the log goes where the user looks for it.
    let home = dir.join("home");
    let local = burrow::kit::Proc::spawn(
        LOCAL,
        &[
            "--background",
            "-b",
            "127.0.0.1:0",
            "-s",
            &server_addr,
            "-k",
            "log-file-pw",
        ],
        &[
            ("HOME", home.to_str().expect("utf8")),
            ("XDG_STATE_HOME", ""),
        ],
    );
    let local_log = home.join(".local/state/burrow/burrow-local.log");
    let local_addr = burrow::kit::listening_in_file(&local_log);
    std::net::TcpStream::connect(local_addr).expect("burrow-local accepts");
    std::net::TcpStream::connect(server_addr.as_str()).expect("burrow-server accepts");
    assert_eq!(server.output(), "", "burrow-server wrote on stderr");
    assert_eq!(local.output(), "", "burrow-local wrote on stderr");
    let text = std::fs::read_to_string(&local_log).expect("log");
    assert!(text.contains("INFO"), "{text}");
    // A log file that cannot be made is one line on stderr and a failed start.
    let blocked = dir.join("a-file");
    std::fs::write(&blocked, "").expect("file");
    let bad = blocked.join("sub/burrow.log");
    let (code, err) = run(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-k",
            "pw",
            "--log-file",
            bad.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot log to"), "{err}");
}

/// gsettings with GNOME's proxy schema, on a keyfile under `dir` (no desktop session).
fn gsettings(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("gsettings")
        .args(args)
        .env("GSETTINGS_BACKEND", "keyfile")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .output()
        .expect("gsettings (libglib2.0-bin, gsettings-desktop-schemas)");
    assert!(out.status.success(), "gsettings {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn system_proxy_sets_gnomes_settings_and_gives_them_back_after_a_stop_and_a_crash() {
    const P: &str = "org.gnome.system.proxy";
    let dir = temp_dir("gnome-proxy");
    let env = [
        ("GSETTINGS_BACKEND", "keyfile"),
        (
            "XDG_CONFIG_HOME",
            &*dir.join("config").to_string_lossy().into_owned(),
        ),
        (
            "XDG_STATE_HOME",
            &*dir.join("state").to_string_lossy().into_owned(),
        ),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The corporate laptop's own setting: a PAC file.
    gsettings(&dir, &["set", P, "mode", "auto"]);
    gsettings(
        &dir,
        &[
            "set",
            P,
            "autoconfig-url",
            "http://wpad.corp.example/proxy.pac",
        ],
    );
    let corporate = || {
        assert_eq!(gsettings(&dir, &["get", P, "mode"]), "'auto'");
        assert_eq!(
            gsettings(&dir, &["get", P, "autoconfig-url"]),
            "'http://wpad.corp.example/proxy.pac'"
        );
    };
    let args = [
        "--system-proxy",
        "-b",
        "127.0.0.1:0",
        "-s",
        "127.0.0.1:9",
        "-k",
        "gnome-pw",
    ];
    for crash in [false, true] {
        let mut local = burrow::kit::Proc::spawn(LOCAL, &args, &env);
        let addr = local.listening();
        local.wait_for("system proxy set to burrow-local");
        assert_eq!(gsettings(&dir, &["get", P, "mode"]), "'manual'");
        assert_eq!(
            gsettings(&dir, &["get", &format!("{P}.http"), "host"]),
            "'127.0.0.1'"
        );
        assert_eq!(
            gsettings(&dir, &["get", &format!("{P}.https"), "port"]),
            addr.port().to_string()
        );
        let signal = if crash { "-KILL" } else { "-TERM" };
        let pid = local.pid().to_string();
        let killed = Command::new("kill").args([signal, &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()));
        let code = local.wait_exit();
        if !crash {
            assert_eq!(code, Some(0), "{}", local.output());
            corporate();
        }
    }
    // After the kill the settings still point at the dead burrow-local; the next start
    // gives the corporate ones back (and sets nothing, without --system-proxy).
    assert_eq!(gsettings(&dir, &["get", P, "mode"]), "'manual'");
    let local = burrow::kit::Proc::spawn(LOCAL, &args[1..], &env);
    local.listening();
    local.wait_for("given back");
    corporate();
}
