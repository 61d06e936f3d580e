//! The page suite: headless Chromium loads a page of many images from several origins
//! through each proxy over the same long link — a browser's burst of new tunnels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow::kit::{free_port, Proc};
use burrow::link::Link;
use burrow::peers::{Nginx, Squid};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::suite::{beside, local, temp};

const PW: &str = "page-suite-password";

/// A 1×1 PNG, padded (after its end chunk) to the size of a small web image.
fn image() -> Vec<u8> {
    use base64::Engine as _;
    let mut png = base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
        .unwrap_or_default();
    png.resize(12 * 1024, 0);
    png
}

/// `n` origins beside the server (HTTP/1.1, keep-alive, nothing cached): `/page/O/M`
/// is a page of O images spread over the first M origins, `/img/…` an image.
async fn origins(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await?);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;
    let shared = Arc::new((addrs.clone(), image()));
    for l in listeners {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = answer(c, &shared.0, &shared.1).await;
                });
            }
        });
    }
    Ok(addrs)
}

async fn answer(c: tokio::net::TcpStream, all: &[SocketAddr], img: &[u8]) -> std::io::Result<()> {
    let mut r = BufReader::new(c);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 || h == "\r\n" {
                break;
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (kind, body) = match path.strip_prefix("/page/") {
            Some(rest) => {
                let mut it = rest.split('/').filter_map(|v| v.parse::<usize>().ok());
                let (objects, spread) = (it.next().unwrap_or(24), it.next().unwrap_or(4));
                let mut html = String::from("<!doctype html><html><body>\n");
                for i in 0..objects {
                    let o = all[i % spread.clamp(1, all.len())];
                    html += &format!("<img src=\"http://{o}/img/{i}.png\" width=8 height=8>\n");
                }
                html += "</body></html>\n";
                ("text/html", html.into_bytes())
            }
            None => ("image/png", img.to_vec()),
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        );
        let w = r.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(&body).await?;
    }
}

/// Loads `url` `runs` times through `proxy`, each in a fresh browser; the load times.
async fn loads(proxy: &str, url: &str, runs: usize) -> Vec<f64> {
    let script = std::env::var("BURROW_PAGE_SCRIPT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/page.js").into());
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args([proxy, url, &runs.to_string()])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
        .output()
        .await;
    let Ok(out) = out else {
        println!("page: node did not run");
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines().filter(|l| !l.starts_with("load_ms")) {
        println!("{l}");
    }
    if !out.status.success() {
        println!("page: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("load_ms"))
                .then(|| it.next()?.parse().ok())
                .flatten()
                .filter(|_| l.ends_with("broken 0"))
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// v2ray (vmess with its mux, Mux.Cool) as client and server, over `link` to the server.
async fn v2ray(rtt: Duration) -> anyhow::Result<(Vec<Proc>, Link, SocketAddr)> {
    {
        let dir = temp("v2ray");
        let id = "2f6a8c1e-7d3b-4e5a-9c0f-1b2d3e4f5a6b";
        let sport = free_port();
        let server = format!(
            r#"{{"log":{{"loglevel":"warning"}},"inbounds":[{{"listen":"127.0.0.1","port":{sport},"protocol":"vmess","settings":{{"clients":[{{"id":"{id}","alterId":0}}]}}}}],"outbounds":[{{"protocol":"freedom"}}]}}"#
        );
        std::fs::write(dir.join("server.json"), server)?;
        let s = Proc::spawn(
            "v2ray",
            &["-config", &dir.join("server.json").to_string_lossy()],
            &[],
        );
        burrow::kit::wait_for_port(format!("127.0.0.1:{sport}").parse()?);
        let link = Link::start("127.0.0.1:0", format!("127.0.0.1:{sport}").parse()?, rtt).await?;
        let cport = free_port();
        let client = format!(
            r#"{{"log":{{"loglevel":"warning"}},"inbounds":[{{"listen":"127.0.0.1","port":{cport},"protocol":"socks","settings":{{"udp":false}}}}],"outbounds":[{{"protocol":"vmess","settings":{{"vnext":[{{"address":"127.0.0.1","port":{},"users":[{{"id":"{id}","alterId":0}}]}}]}},"mux":{{"enabled":true,"concurrency":8}}}}]}}"#,
            link.addr.port()
        );
        std::fs::write(dir.join("client.json"), client)?;
        let c = Proc::spawn(
            "v2ray",
            &["-config", &dir.join("client.json").to_string_lossy()],
            &[],
        );
        let at: SocketAddr = format!("127.0.0.1:{cport}").parse()?;
        burrow::kit::wait_for_port(at);
        Ok((vec![s, c], link, at))
    }
}

/// One bulk download (200 MB) through `socks` while 20 small requests start: the small
/// ones' first bytes, median and worst, in RTT.
async fn beside_bulk(label: &str, socks: SocketAddr, rtt_ms: u64) {
    use tokio::io::AsyncReadExt;
    let target = burrow::kit::http_target().await;
    let bulk = tokio::spawn(async move {
        let (mut s, _) = burrow::kit::socks5_connect(socks, "127.0.0.1", target.port()).await?;
        s.write_all(b"GET /bytes/200000000 HTTP/1.0\r\nHost: t\r\n\r\n")
            .await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0usize;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<usize, std::io::Error>(got);
            }
            got += n;
        }
    });
    // The download is under way (its first megabytes through) before the small ones start.
    tokio::time::sleep(Duration::from_millis(3 * rtt_ms + 300)).await;
    let smalls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(super::first_byte(Some(socks), None, target)))
        .collect();
    let mut times = Vec::new();
    for s in smalls {
        if let Ok(Ok(d)) = s.await {
            times.push(d.as_secs_f64() * 1e3 / rtt_ms as f64);
        }
    }
    bulk.abort();
    times.sort_by(|a, b| a.total_cmp(b));
    match (times.get(times.len() / 2), times.last()) {
        (Some(m), Some(w)) => println!(
            "{label} beside a bulk download rtt={rtt_ms}ms : 20 small first bytes median {m:.2} RTT, worst {w:.2} RTT ({} answered)",
            times.len()
        ),
        _ => println!("{label} beside a bulk download: no answer"),
    }
}

/// Every proxy, every page; medians of `runs` loads, ratios to shadowsocks-rust and to
/// v2ray with its mux.
pub async fn run(runs: usize, rtt_ms: u64) -> anyhow::Result<()> {
    let rtt = Duration::from_millis(rtt_ms);
    let quiet = [("RUST_LOG", "warn")];
    let origins = origins(8).await?;
    let dir = temp("page-server");
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
    let squid = Squid::start(temp("page-squid"), &[tls_link.addr.port()]);
    let base = format!("password = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n");
    let (_tcp_local, tcp_at) = local(
        &format!("server = \"{}\"\n{base}", tcp_link.addr),
        "page-tcp",
    );
    let (_wss_local, wss_at) = local(
        &format!(
            "server = \"localhost:{}\"\n{base}outbound_proxy = \"http://alice:s3cret@{}\"\n\
             transport = \"wss\"\n[websocket]\npath = \"/tunnel\"\nca_file = \"{}\"\n",
            tls_link.addr.port(),
            squid.addr,
            ca.display()
        ),
        "page-wss",
    );
    // shadowsocks-rust, and ss-server dressed by v2ray-plugin (its defaults, burrow-local
    // speaking it), each over the same kind of link.
    let (ss, sl, _ss_link, ss_at) = super::suite::ssrust_over(rtt, PW).await?;
    let (plugin_server, plugin_link) = super::suite::v2ray_plugin_over(rtt, PW).await?;
    let (_plugin_local, plugin_at) = local(
        &format!(
            "server = \"{}\"\n{base}plugin = \"v2ray-plugin\"\nplugin_opts = \"path=/ws\"\n",
            plugin_link.addr
        ),
        "page-plugin",
    );
    let v2 = v2ray(rtt).await;
    let proxies: Vec<(&str, SocketAddr)> = {
        let mut p = vec![
            ("burrow-tcp", tcp_at),
            ("burrow-wss-squid-nginx", wss_at),
            ("burrow-v2ray-plugin", plugin_at),
            ("ssrust-tcp", ss_at),
        ];
        match &v2 {
            Ok((_, _, at)) => p.push(("v2ray-vmess-mux", *at)),
            Err(e) => println!("page: no v2ray: {e}"),
        }
        p
    };
    for (objects, spread) in [(24, 4), (80, 8)] {
        let url = format!("http://{}/page/{objects}/{spread}", origins[0]);
        let mut medians = Vec::new();
        for (label, at) in &proxies {
            if std::env::var("BURROW_PAGE_ONLY").is_ok_and(|o| !label.starts_with(&o)) {
                continue;
            }
            let times = loads(&format!("socks5://{at}"), &url, runs).await;
            let m = median(&times);
            let list: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
            println!(
                "{label} page {objects}x{spread} rtt={rtt_ms}ms : median {m:.0} ms = {:.2} RTT (runs {})",
                m / rtt_ms as f64,
                list.join(" ")
            );
            medians.push((*label, m));
        }
        let of = |name: &str| medians.iter().find(|(l, _)| *l == name).map(|(_, m)| *m);
        for (label, m) in &medians {
            println!(
                "  {label:24} {objects}x{spread}: {:.2}x shadowsocks-rust, {:.2}x v2ray-mux",
                m / of("ssrust-tcp").unwrap_or(f64::NAN),
                m / of("v2ray-vmess-mux").unwrap_or(f64::NAN)
            );
        }
    }
    for (label, at) in &proxies {
        if std::env::var("BURROW_PAGE_ONLY").is_ok_and(|o| !label.starts_with(&o)) {
            continue;
        }
        beside_bulk(label, *at, rtt_ms).await;
    }
    if std::env::var("BURROW_PAGE_DEBUG").is_ok() {
        println!("{}", _tcp_local.output());
    }
    drop((server, nginx, squid, ss, sl, plugin_server, v2));
    Ok(())
}
