//! The first-byte suite: every hop over the same long link.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use burrow::kit::{free_port, Proc};
use burrow::link::Link;
use burrow::peers::{Nginx, Squid};

pub(crate) const PW: &str = "first-byte-suite-password";

/// Long enough for burrow-local to let every warm connection go (with the suite's
/// `warm_idle_after` and `warm_max_age` of 1 s each).
const IDLE: Duration = Duration::from_secs(4);

pub(crate) fn beside(name: &str) -> String {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name(name).to_string_lossy().into_owned()
}

pub(crate) fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("burrow-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// One burrow-local with `toml`, its proxy address.
pub(crate) fn local(toml: &str, tag: &str) -> (Proc, SocketAddr) {
    let cfg = temp(tag).join("local.toml");
    let _ = std::fs::write(&cfg, toml);
    let p = Proc::spawn(
        &beside("burrow-local"),
        &["-c", &cfg.to_string_lossy()],
        &[("RUST_LOG", "warn")],
    );
    let a = p.listening();
    (p, a)
}

pub(crate) async fn measure(label: &str, socks: SocketAddr, http: bool, count: usize, rtt_ms: u64) {
    let target = match super::target().await {
        Ok(t) => t,
        Err(e) => return println!("{label}: no target: {e}"),
    };
    let http_proxy = http.then_some(socks);
    let rtt = rtt_ms as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let first = super::first_byte(Some(socks), http_proxy, target).await;
    // The laptop idles until no warm connection is left: the next tunnel is cold.
    tokio::time::sleep(IDLE).await;
    let cold = super::first_byte(Some(socks), http_proxy, target).await;
    let mut warm = Vec::new();
    for _ in 0..count {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match super::first_byte(Some(socks), http_proxy, target).await {
            Ok(d) => warm.push(d),
            Err(e) => println!("{label}: {e}"),
        }
    }
    warm.sort();
    let via = if http { "http" } else { "socks5" };
    let median = super::percentile(&warm, 0.5);
    match (first, cold) {
        (Ok(f), Ok(c)) => println!(
            "{label} first-byte {via} rtt={rtt_ms}ms : first after start {:.2} RTT, cold {:.0} ms = {:.2} RTT, warm median {:.0} ms = {:.2} RTT (n={})",
            ms(f) / rtt, ms(c), ms(c) / rtt, ms(median), ms(median) / rtt, warm.len()
        ),
        (f, c) => println!("{label} first-byte {via}: failed: {f:?} {c:?}"),
    }
}

/// The first tunnel (SOCKS5, to a target never reached) of a burrow-local started a
/// second ago.
async fn first_after_a_second(label: &str, socks: SocketAddr, rtt_ms: u64) {
    let target = match super::target().await {
        Ok(t) => t,
        Err(e) => return println!("{label}: no target: {e}"),
    };
    match super::first_byte(Some(socks), None, target).await {
        Ok(d) => println!(
            "{label} first-byte socks5 rtt={rtt_ms}ms : first 1 s after start {:.2} RTT",
            d.as_secs_f64() * 1e3 / rtt_ms as f64
        ),
        Err(e) => println!("{label} first 1 s after start: failed: {e}"),
    }
}

/// One tunnel through CONNECT to an HTTPS origin: TLS handshake, GET, first byte.
async fn https_once(
    proxy: SocketAddr,
    origin: SocketAddr,
    tls: &burrow_local::outbound::tls::TlsTarget,
) -> std::io::Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = std::time::Instant::now();
    let mut c = tokio::net::TcpStream::connect(proxy).await?;
    c.set_nodelay(true)?;
    c.write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut one = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut one).await? == 0 {
            return Err(std::io::Error::other("closed during CONNECT"));
        }
        head.push(one[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("CONNECT refused"));
    }
    let mut t = tls.connect(c).await?;
    t.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    if t.read(&mut one).await? == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(start.elapsed())
}

async fn https(
    proxy: SocketAddr,
    origin: SocketAddr,
    tls: &burrow_local::outbound::tls::TlsTarget,
    count: usize,
    rtt_ms: u64,
) {
    let _ = https_once(proxy, origin, tls).await;
    let mut warm = Vec::new();
    for _ in 0..count {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match https_once(proxy, origin, tls).await {
            Ok(d) => warm.push(d),
            Err(e) => println!("burrow-tcp-https: {e}"),
        }
    }
    warm.sort();
    let median = super::percentile(&warm, 0.5).as_secs_f64() * 1e3;
    println!(
        "burrow-tcp-https first-byte connect rtt={rtt_ms}ms : warm median {median:.0} ms = {:.2} RTT (n={})",
        median / rtt_ms as f64,
        warm.len()
    );
}

/// shadowsocks-rust (ssserver, sslocal; chacha20-ietf-poly1305 with `pw`) with a link of
/// `rtt` between them; both processes, the link and sslocal's SOCKS5 address.
pub(crate) async fn ssrust_over(
    rtt: Duration,
    pw: &str,
) -> anyhow::Result<(Proc, Proc, Link, SocketAddr)> {
    let sport = free_port();
    let server = format!("127.0.0.1:{sport}");
    let ss = Proc::spawn(
        "ssserver",
        &["-s", &server, "-m", "chacha20-ietf-poly1305", "-k", pw],
        &[],
    );
    ss.wait_for("listening on");
    let link = Link::start("127.0.0.1:0", server.parse()?, rtt).await?;
    let at: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let sl = Proc::spawn(
        "sslocal",
        &[
            "-b",
            &at.to_string(),
            "-s",
            &link.addr.to_string(),
            "-m",
            "chacha20-ietf-poly1305",
            "-k",
            pw,
        ],
        &[],
    );
    sl.wait_for("listening on");
    Ok((ss, sl, link, at))
}

/// ss-server with ss-v2ray-plugin in its default server mode (path /ws, Mux.Cool) for
/// `pw`, behind a link of `rtt`.
pub(crate) async fn v2ray_plugin_over(rtt: Duration, pw: &str) -> anyhow::Result<(Proc, Link)> {
    let port = free_port();
    let p = Proc::spawn(
        "ss-server",
        &[
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-k",
            pw,
            "-m",
            "chacha20-ietf-poly1305",
            "--plugin",
            "ss-v2ray-plugin",
            "--plugin-opts",
            "server;path=/ws",
        ],
        &[],
    );
    let at: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    burrow::kit::wait_for_port(at);
    Ok((p, Link::start("127.0.0.1:0", at, rtt).await?))
}

pub async fn run(count: usize, rtt_ms: u64) -> anyhow::Result<()> {
    let rtt = Duration::from_millis(rtt_ms);
    // TCP Fast Open over the link where the system takes SYN data (`scripts/bench.sh`
    // asks for it): the first runs below start with no cookie held, as after a reboot.
    let fast_open = burrow_common::fast_open::system_accepts() == Some(true);
    println!(
        "TCP Fast Open taken by this system's listeners: {}",
        if fast_open { "yes" } else { "no" }
    );
    if fast_open {
        flush_cookies();
    }
    let quiet = [("RUST_LOG", "warn")];
    // burrow-server with a WebSocket listener, nginx (TLS) in front of it.
    let dir = temp("server");
    let scfg = dir.join("server.toml");
    std::fs::write(&scfg, "allow_private = true\nws_listen = \"127.0.0.1:0\"\n")?;
    let server = Proc::spawn(
        &beside("burrow-server"),
        &["-s", "127.0.0.1:0", "-k", PW, "-c", &scfg.to_string_lossy()],
        &quiet,
    );
    let (tcp, ws) = (server.listening(), server.listening());
    let (cert, key, ca) = burrow::origins::write_pki(&dir, &["localhost"]);
    let nginx = Nginx::start(&dir, &cert, &key, ws, 300);
    let tcp_link = Link::start("127.0.0.1:0", tcp, rtt).await?;
    let tls_link = Link::start("127.0.0.1:0", nginx.addr, rtt).await?;
    let squid = Squid::start(temp("squid"), &[tcp_link.addr.port(), tls_link.addr.port()]);
    let proxy = format!("http://alice:s3cret@{}", squid.addr);
    let base = format!(
        "password = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
         warm_idle_after = \"1s\"\nwarm_max_age = \"1s\"\n"
    );
    // ss-server dressed by v2ray-plugin in its default server mode (Mux.Cool), over a
    // link of its own; burrow-local speaks the plugin itself.
    let (plugin_server, plugin_link) = v2ray_plugin_over(rtt, PW).await?;
    let hops = [
        (
            "burrow-v2ray-plugin",
            format!(
                "server = \"{}\"\n{base}plugin = \"v2ray-plugin\"\nplugin_opts = \"path=/ws\"\n",
                plugin_link.addr
            ),
        ),
        (
            "burrow-tcp",
            format!("server = \"{}\"\n{base}", tcp_link.addr),
        ),
        (
            "burrow-tcp-squid",
            format!(
                "server = \"{}\"\n{base}outbound_proxy = \"{proxy}\"\n",
                tcp_link.addr
            ),
        ),
        (
            "burrow-wss-squid-nginx",
            format!(
                "server = \"localhost:{}\"\n{base}outbound_proxy = \"{proxy}\"\n\
                 transport = \"wss\"\n[websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
                tls_link.addr.port(),
                ca.display()
            ),
        ),
    ];
    for (label, toml) in &hops {
        if std::env::var("BURROW_FIRST_BYTE_ONLY").is_ok_and(|o| !label.starts_with(&o)) {
            continue;
        }
        for http in [false, true] {
            let (_l, addr) = local(toml, label);
            measure(label, addr, http, count, rtt_ms).await;
        }
        // An app that connects a second after start, as most do (warm connections kept
        // as by default, not let go after a second as above).
        let defaults = toml
            .replace("warm_idle_after = \"1s\"\n", "")
            .replace("warm_max_age = \"1s\"\n", "");
        let (_l, addr) = local(&defaults, label);
        tokio::time::sleep(Duration::from_secs(1)).await;
        first_after_a_second(label, addr, rtt_ms).await;
    }
    if fast_open
        && !std::env::var("BURROW_FIRST_BYTE_ONLY").is_ok_and(|o| !"burrow-tcp".starts_with(&o))
    {
        // Right at start on a real link, the pool's first connections are still in their
        // handshake and the first tunnel takes a fresh one; on this link a connect is
        // over at once, so that is shown with no warm connections at all: first with no
        // TCP Fast Open cookie held (as after a reboot), then with the one it got (as
        // after a restart of burrow-local).
        let cold = format!("{}warm_connections = 0\n", hops[1].1);
        for label in ["burrow-tcp-nowarm-nocookie", "burrow-tcp-nowarm-cookie"] {
            if label.ends_with("nocookie") {
                flush_cookies();
            }
            let (_l, addr) = local(&cold, label);
            measure(label, addr, false, count, rtt_ms).await;
        }
    }
    // An HTTPS target through CONNECT: the app's own TLS handshake rides the tunnel.
    let pki = burrow::origins::test_pki(&["127.0.0.1"]);
    let origin = burrow::origins::tls_origin(&pki).await;
    let ca_path = dir.join("origin-ca.pem");
    burrow::origins::write_ca(&pki, &ca_path);
    let tls = burrow_local::outbound::tls::TlsTarget::new(
        "127.0.0.1",
        &burrow_local::outbound::tls::Trust::WithCa(ca_path.clone()),
    )
    .map_err(anyhow::Error::msg)?;
    let (_l, addr) = local(&hops[1].1, "burrow-tcp-https");
    https(addr, origin, &tls, count, rtt_ms).await;
    // shadowsocks-rust, direct over the same kind of link.
    let (ss, sl, _ss_link, ss_at) = ssrust_over(rtt, PW).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    first_after_a_second("ssrust-tcp", ss_at, rtt_ms).await;
    measure("ssrust-tcp", ss_at, false, count, rtt_ms).await;
    drop((server, nginx, squid, ss, sl, plugin_server));
    Ok(())
}

/// Forgets every TCP Fast Open cookie this system holds (with the rest of its TCP metrics).
fn flush_cookies() {
    let _ = std::process::Command::new("ip")
        .args(["tcp_metrics", "flush", "all"])
        .status();
}
