//! burrow-bench: load through any SOCKS5 proxy, with its own loopback targets so the
//! target is never the bottleneck.
//!
//! bulk:    one or more streams moving N MB down (target → client) or up; MB/s.
//! connect: new tunnels at a given concurrency, each timed from TCP connect to the first
//!          byte back through it; tunnels/s and p50/p99.
//! With `--pid` (repeatable) it also reports the CPU seconds those processes spent per GB.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow::kit::{cpu_seconds, socks5_connect};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(
    name = "burrow-bench",
    version,
    about = "Throughput and connect latency through a SOCKS5 proxy"
)]
struct Cli {
    /// The SOCKS5 proxy to measure, host:port; without it, the target is reached directly
    /// (the baseline).
    #[arg(long)]
    socks: Option<SocketAddr>,
    /// A label printed with every result line.
    #[arg(long, default_value = "proxy")]
    label: String,
    /// Processes whose CPU time to report (e.g. the local and the server).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Bulk transfer.
    Bulk {
        /// Megabytes per stream.
        #[arg(long, default_value_t = 1024)]
        mb: u64,
        /// Direction.
        #[arg(long, value_enum, default_value_t = Dir::Down)]
        dir: Dir,
        /// Parallel streams.
        #[arg(long, default_value_t = 1)]
        streams: usize,
    },
    /// New tunnels, each timed to its first byte.
    Connect {
        /// Tunnels in all.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Tunnels in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// UDP through a SOCKS5 UDP association (or straight to the echo without --socks):
    /// round-trip times one at a time, then datagrams per second with `window` in flight.
    Udp {
        /// Datagrams in the throughput phase.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Payload bytes per datagram.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Datagrams in flight at once.
        #[arg(long, default_value_t = 32)]
        window: usize,
    },
    /// 1 KiB request / 1 KiB response round trips on one tunnel.
    Rr {
        /// Round trips.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    /// New tunnels over a long link, each timed from the TCP connect to the proxy to the
    /// first byte of a plain HTTP GET's answer: the first (cold), then the median of
    /// `count` more spaced `gap_ms` apart (warm), in ms and in round trips.
    FirstByte {
        /// Tunnels after the first.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The link's round-trip time, to express the figures in round trips.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
        /// Pause between tunnels (a browser's tunnels are not back to back).
        #[arg(long, default_value_t = 500)]
        gap_ms: u64,
        /// Go through this HTTP proxy (absolute-form GET) instead of --socks.
        #[arg(long)]
        http_proxy: Option<SocketAddr>,
    },
    /// The first-byte figures over a long link for every hop, burrow and
    /// shadowsocks-rust in one run: it starts the servers, links, squid and nginx itself
    /// (burrow-server and burrow-local from beside this binary; ssserver, sslocal, squid,
    /// nginx and htpasswd from PATH).
    FirstByteSuite {
        /// Tunnels per figure after the first.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The link's round-trip time.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
    },
    /// An NTLM-only proxy (verifying NTLMv2) answered by burrow-local itself, against
    /// cntlm in front of it, over the same long link: first byte and a 64 MiB download.
    NtlmAnchor {
        /// Tunnels per figure after the first.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The round-trip time from the proxy to burrow-server.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
        /// The round-trip time from the laptop to the proxy.
        #[arg(long, default_value_t = 10)]
        proxy_rtt_ms: u64,
    },
    /// Run a long link (each byte delivered RTT/2 late, a new connection's first bytes
    /// one more RTT) from a port of its own to `to`, until killed.
    Link {
        /// Where the link leads.
        #[arg(long)]
        to: SocketAddr,
        /// Round-trip time in ms.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
    },
    /// Hold N idle tunnels; report the memory of the --pid processes before, during, after.
    Idle {
        /// Tunnels held at once.
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Dir {
    Down,
    Up,
}

const BLOCK: usize = 256 * 1024;

/// The target: `D` + u64 → that many bytes down; `U` + u64 → read that many, answer 1
/// byte; `E` → answer 1 byte.
async fn target() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let mut head = [0u8; 9];
                if c.read_exact(&mut head[..1]).await.is_err() {
                    return;
                }
                match head[0] {
                    b'E' => {
                        let _ = c.write_all(b"e").await;
                        return;
                    }
                    b'R' => {
                        // Echo 1 KiB messages until the client leaves.
                        let mut msg = [0u8; 1024];
                        while c.read_exact(&mut msg).await.is_ok() {
                            if c.write_all(&msg).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    b'G' => {
                        // A plain HTTP GET: read the head, answer a small page.
                        let mut head = vec![b'G'];
                        let mut one = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                            if c.read_exact(&mut one).await.is_err() {
                                return;
                            }
                            head.push(one[0]);
                        }
                        let page =
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                        let _ = c.write_all(page).await;
                        return;
                    }
                    b'I' => {
                        // Answer once, then hold the connection until the client closes.
                        let _ = c.write_all(b"i").await;
                        let mut one = [0u8; 1];
                        let _ = c.read(&mut one).await;
                        return;
                    }
                    _ => {}
                }
                if c.read_exact(&mut head[1..]).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(head[1..9].try_into().unwrap_or_default());
                let mut buf = vec![0x5au8; BLOCK];
                if head[0] == b'D' {
                    while left > 0 {
                        let n = left.min(BLOCK as u64) as usize;
                        if c.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = c.shutdown().await;
                } else {
                    while left > 0 {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left = left.saturating_sub(n as u64),
                        }
                    }
                    let _ = c.write_all(b"k").await;
                }
            });
        }
    });
    Ok(addr)
}

async fn open(proxy: Option<SocketAddr>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let s = match proxy {
        None => TcpStream::connect(target).await?,
        Some(proxy) => {
            let (s, reply) = socks5_connect(proxy, &target.ip().to_string(), target.port()).await?;
            if reply != 0 {
                return Err(std::io::Error::other(format!("SOCKS5 reply {reply}")));
            }
            s
        }
    };
    s.set_nodelay(true)?;
    Ok(s)
}

async fn one_stream(
    proxy: Option<SocketAddr>,
    target: SocketAddr,
    bytes: u64,
    dir: Dir,
) -> std::io::Result<()> {
    let mut s = open(proxy, target).await?;
    let mut head = [0u8; 9];
    head[0] = if dir == Dir::Down { b'D' } else { b'U' };
    head[1..].copy_from_slice(&bytes.to_be_bytes());
    s.write_all(&head).await?;
    let mut buf = vec![0xa5u8; BLOCK];
    if dir == Dir::Down {
        let mut got = 0u64;
        while got < bytes {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other(format!(
                    "stream ended after {got} of {bytes} bytes"
                )));
            }
            got += n as u64;
        }
    } else {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            s.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        s.read_exact(&mut buf[..1]).await?;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One new tunnel's time from connect to the first byte of a GET's answer.
async fn first_byte(
    socks: Option<SocketAddr>,
    http_proxy: Option<SocketAddr>,
    target: SocketAddr,
) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = match http_proxy {
        Some(p) => {
            let s = TcpStream::connect(p).await?;
            s.set_nodelay(true)?;
            s
        }
        None => open(socks, target).await?,
    };
    let req = match http_proxy {
        Some(_) => format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        None => format!("GET / HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).await?;
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut one))
        .await
        .map_err(|_| std::io::Error::other("no answer in 30 s"))??;
    if n == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(start.elapsed())
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    if let Mode::Link { to, rtt_ms } = cli.mode {
        let link =
            burrow::link::Link::start("127.0.0.1:0", to, Duration::from_millis(rtt_ms)).await?;
        eprintln!("listening on {}", link.addr);
        std::future::pending::<()>().await;
    }
    if let Mode::FirstByteSuite { count, rtt_ms } = cli.mode {
        return suite::run(count, rtt_ms).await;
    }
    if let Mode::NtlmAnchor {
        count,
        rtt_ms,
        proxy_rtt_ms,
    } = cli.mode
    {
        return suite::ntlm_against_cntlm(count, rtt_ms, proxy_rtt_ms).await;
    }
    let target = target().await?;
    let cpu0: f64 = cli.pids.iter().map(|&p| cpu_seconds(p)).sum();
    match cli.mode {
        Mode::Bulk { mb, dir, streams } => {
            let bytes = mb * 1_000_000;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..streams {
                tasks.push(tokio::spawn(one_stream(cli.socks, target, bytes, dir)));
            }
            for t in tasks {
                t.await??;
            }
            let secs = start.elapsed().as_secs_f64();
            let total = bytes * streams as u64;
            let cpu = cli.pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu0;
            let mut line = format!(
                "{} bulk {:?} streams={} : {:.1} MB/s ({} MB in {:.2} s)",
                cli.label,
                dir,
                streams,
                total as f64 / 1e6 / secs,
                total / 1_000_000,
                secs
            );
            if !cli.pids.is_empty() {
                line += &format!(", cpu {:.2} s/GB", cpu / (total as f64 / 1e9));
            }
            println!("{line}");
        }
        Mode::Link { .. } | Mode::FirstByteSuite { .. } | Mode::NtlmAnchor { .. } => {}
        Mode::FirstByte {
            count,
            rtt_ms,
            gap_ms,
            http_proxy,
        } => {
            let rtt = rtt_ms as f64;
            let cold = first_byte(cli.socks, http_proxy, target).await?;
            let mut warm = Vec::with_capacity(count);
            for _ in 0..count {
                tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                warm.push(first_byte(cli.socks, http_proxy, target).await?);
            }
            warm.sort();
            let median = percentile(&warm, 0.5);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let via = if http_proxy.is_some() {
                "http"
            } else {
                "socks5"
            };
            println!(
                "{} first-byte {via} rtt={rtt_ms}ms : cold {:.0} ms = {:.2} RTT, warm median {:.0} ms = {:.2} RTT (n={count})",
                cli.label,
                ms(cold),
                ms(cold) / rtt,
                ms(median),
                ms(median) / rtt
            );
        }
        Mode::Udp {
            count,
            size,
            window,
        } => udp_bench(&cli, count, size, window).await?,
        Mode::Rr { count } => {
            let mut s = open(cli.socks, target).await?;
            s.write_all(b"R").await?;
            let mut msg = [0x42u8; 1024];
            let mut lat = Vec::with_capacity(count);
            let start = Instant::now();
            for _ in 0..count {
                let t0 = Instant::now();
                s.write_all(&msg).await?;
                s.read_exact(&mut msg).await?;
                lat.push(t0.elapsed());
            }
            let secs = start.elapsed().as_secs_f64();
            lat.sort();
            let us = |p: f64| percentile(&lat, p).as_secs_f64() * 1e6;
            println!(
                "{} rr 1KiB : {:.0} round trips/s, p50 {:.0} us p99 {:.0} us p99.9 {:.0} us",
                cli.label,
                count as f64 / secs,
                us(0.5),
                us(0.99),
                us(0.999)
            );
        }
        Mode::Idle { count } => {
            let rss = |pids: &[u32]| pids.iter().map(|&p| burrow::kit::rss_kib(p)).sum::<u64>();
            let before = rss(&cli.pids);
            let mut held = Vec::with_capacity(count);
            let mut errors = 0usize;
            for _ in 0..count {
                let r = async {
                    let mut s = open(cli.socks, target).await?;
                    s.write_all(b"I").await?;
                    let mut one = [0u8; 1];
                    s.read_exact(&mut one).await?;
                    std::io::Result::Ok(s)
                };
                match tokio::time::timeout(Duration::from_secs(30), r).await {
                    Ok(Ok(s)) => held.push(s),
                    _ => errors += 1,
                }
            }
            // Let the proxies settle after the burst, then read their memory.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let during = rss(&cli.pids);
            let n = held.len().max(1) as u64;
            drop(held);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = rss(&cli.pids);
            println!(
                "{} idle n={} : {:.1} KB per tunnel, RSS before {} KB during {} KB after {} KB, {} errors",
                cli.label,
                count,
                (during.saturating_sub(before)) as f64 / n as f64,
                before,
                during,
                after,
                errors
            );
        }
        Mode::Connect { count, concurrency } => {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency.max(1) {
                let next = next.clone();
                let proxy = cli.socks;
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0usize;
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                        let t0 = Instant::now();
                        let r = async {
                            let mut s = open(proxy, target).await?;
                            s.write_all(b"E").await?;
                            let mut one = [0u8; 1];
                            s.read_exact(&mut one).await?;
                            std::io::Result::Ok(())
                        };
                        match tokio::time::timeout(Duration::from_secs(30), r).await {
                            Ok(Ok(())) => lat.push(t0.elapsed()),
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut all = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (l, e) = t.await?;
                all.extend(l);
                errors += e;
            }
            let secs = start.elapsed().as_secs_f64();
            all.sort();
            println!(
                "{} connect c={} : {:.0} tunnels/s, first byte p50 {:.2} ms p99 {:.2} ms, {} errors",
                cli.label,
                concurrency,
                all.len() as f64 / secs,
                percentile(&all, 0.5).as_secs_f64() * 1e3,
                percentile(&all, 0.99).as_secs_f64() * 1e3,
                errors
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli: Cli = burrow::cli::parse("burrow-bench");
    let rt = match burrow::cli::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("burrow-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// UDP figures through `cli.socks` (a SOCKS5 UDP association) or direct.
async fn udp_bench(cli: &Cli, count: usize, size: usize, window: usize) -> anyhow::Result<()> {
    use burrow::kit::Socks5Udp;
    let (echo, _) = burrow::kit::udp_echo().await;
    let assoc = match cli.socks {
        Some(p) => Some(
            Socks5Udp::associate(p)
                .await
                .map_err(|code| anyhow::anyhow!("UDP ASSOCIATE refused ({code})"))?,
        ),
        None => None,
    };
    let direct = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let payload = vec![0x5au8; size.max(8)];
    let wait = Duration::from_secs(2);
    // Sends datagram `n` (its number in the first 8 bytes); receives one, `Some(number)`.
    let send = |n: u64| {
        let mut d = payload.clone();
        d[..8].copy_from_slice(&n.to_be_bytes());
        d
    };
    async fn recv_one(
        assoc: &Option<Socks5Udp>,
        direct: &tokio::net::UdpSocket,
        wait: Duration,
    ) -> Option<u64> {
        let data = match assoc {
            Some(a) => a.recv(wait).await?.1,
            None => {
                let mut buf = vec![0u8; 65_536];
                let (n, _) = tokio::time::timeout(wait, direct.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                buf.truncate(n);
                buf
            }
        };
        Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
    }
    let out = |d: Vec<u8>| {
        let (assoc, direct) = (&assoc, &direct);
        async move {
            match assoc {
                Some(a) => a.send(echo, &d).await,
                None => {
                    let _ = direct.send_to(&d, echo).await;
                }
            }
        }
    };
    // Round trips, one at a time.
    let rounds = 2_000;
    let mut lat = Vec::with_capacity(rounds);
    let mut lost = 0usize;
    for i in 0..rounds as u64 {
        let t0 = Instant::now();
        out(send(i)).await;
        match recv_one(&assoc, &direct, wait).await {
            Some(_) => lat.push(t0.elapsed()),
            None => lost += 1,
        }
    }
    lat.sort();
    let us = |p: f64| percentile(&lat, p).as_secs_f64() * 1e6;
    // Throughput with a window in flight.
    let start = Instant::now();
    let (mut sent, mut got) = (0usize, 0usize);
    while got < count {
        while sent < count && sent - got < window {
            out(send(sent as u64)).await;
            sent += 1;
        }
        match recv_one(&assoc, &direct, wait).await {
            Some(_) => got += 1,
            None => {
                // What is still in flight is lost; go on with a fresh window.
                lost += sent - got;
                if sent >= count {
                    break;
                }
                got = sent;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} udp {size}B : {:.0} datagrams/s, rtt p50 {:.0} us p99 {:.0} us, {lost} lost",
        cli.label,
        got as f64 / secs,
        us(0.5),
        us(0.99)
    );
    Ok(())
}

/// The first-byte suite: every hop over the same long link.
mod suite {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use burrow::kit::{free_port, Proc};
    use burrow::link::Link;
    use burrow::peers::{Nginx, Squid};

    const PW: &str = "first-byte-suite-password";

    /// Long enough for burrow-local to let every warm connection go (with the suite's
    /// `warm_idle_after` and `warm_max_age` of 1 s each).
    const IDLE: Duration = Duration::from_secs(4);

    fn beside(name: &str) -> String {
        let me = std::env::current_exe().unwrap_or_default();
        me.with_file_name(name).to_string_lossy().into_owned()
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("burrow-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    /// One burrow-local with `toml`, its proxy address.
    fn local(toml: &str, tag: &str) -> (Proc, SocketAddr) {
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

    async fn measure(label: &str, socks: SocketAddr, http: bool, count: usize, rtt_ms: u64) {
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

    /// One tunnel through CONNECT to an HTTPS origin: TLS handshake, GET, first byte.
    async fn https_once(
        proxy: SocketAddr,
        origin: SocketAddr,
        tls: &burrow_local::tls::TlsTarget,
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
        tls: &burrow_local::tls::TlsTarget,
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

    /// NTLM: burrow-local answering the proxy itself, against the usual answer of putting
    /// cntlm in front. burrow-local → NTLM proxy → long link → burrow-server, and
    /// burrow-local → cntlm → the same proxy: first byte (first after start, cold, warm)
    /// and a 64 MiB download each.
    pub async fn ntlm_against_cntlm(
        count: usize,
        rtt_ms: u64,
        proxy_rtt_ms: u64,
    ) -> anyhow::Result<()> {
        let server_proc = Proc::spawn(
            &beside("burrow-server"),
            &["-s", "127.0.0.1:0", "-k", PW, "--allow-private"],
            &[("RUST_LOG", "warn")],
        );
        let link = Link::start(
            "127.0.0.1:0",
            server_proc.listening(),
            Duration::from_millis(rtt_ms),
        )
        .await?;
        let server = link.addr;
        let base = format!(
            "password = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
             warm_idle_after = \"1s\"\nwarm_max_age = \"1s\"\n"
        );
        // The NTLM-only proxy that verifies NTLMv2 (pyspnego), as in tests/corporate.rs.
        let users = temp("ntlm").join("users");
        std::fs::write(&users, "CORP:alice:s3cret\n")?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ntlm_proxy.py");
        let ntlm_proc = Proc::spawn(
            "python3",
            &[script],
            &[("NTLM_USER_FILE", &users.to_string_lossy())],
        );
        // The proxy sits a LAN away from the laptop: its own short link.
        let proxy_link = Link::start(
            "127.0.0.1:0",
            ntlm_proc.listening(),
            Duration::from_millis(proxy_rtt_ms),
        )
        .await?;
        let ntlm_addr = proxy_link.addr;
        let cport = free_port();
        let cconf = temp("cntlm").join("cntlm.conf");
        std::fs::write(
            &cconf,
            format!(
                "Username alice\nDomain CORP\nPassword s3cret\nAuth NTLMv2\n\
                 Proxy {ntlm_addr}\nListen 127.0.0.1:{cport}\n"
            ),
        )?;
        let cntlm = Proc::spawn("cntlm", &["-f", "-c", &cconf.to_string_lossy()], &[]);
        burrow::kit::wait_for_port(format!("127.0.0.1:{cport}").parse()?);
        let ways = [
            (
                "burrow-tcp-ntlm-proxy",
                format!("http://CORP%5Calice:s3cret@{ntlm_addr}"),
            ),
            (
                "burrow-tcp-cntlm-ntlm-proxy",
                format!("http://127.0.0.1:{cport}"),
            ),
        ];
        let target = super::target().await?;
        for (label, proxy) in &ways {
            let toml = format!("server = \"{server}\"\n{base}outbound_proxy = \"{proxy}\"\n");
            let (_l, addr) = local(&toml, label);
            println!(
                "{label}: the proxy is {proxy_rtt_ms} ms away, the server {rtt_ms} ms beyond it"
            );
            measure(label, addr, false, count, rtt_ms + proxy_rtt_ms).await;
            let bytes = 64u64 << 20;
            let start = std::time::Instant::now();
            match super::one_stream(Some(addr), target, bytes, super::Dir::Down).await {
                Ok(()) => println!(
                    "{label} download 64 MiB rtt={rtt_ms}ms proxy_rtt={proxy_rtt_ms}ms : {:.1} MB/s",
                    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
                ),
                Err(e) => println!("{label} download: {e}"),
            }
        }
        drop((cntlm, ntlm_proc, server_proc));
        Ok(())
    }

    pub async fn run(count: usize, rtt_ms: u64) -> anyhow::Result<()> {
        let rtt = Duration::from_millis(rtt_ms);
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
        let hops = [
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
            for http in [false, true] {
                let (_l, addr) = local(toml, label);
                measure(label, addr, http, count, rtt_ms).await;
            }
        }
        // An HTTPS target through CONNECT: the app's own TLS handshake rides the tunnel.
        let pki = burrow::origins::test_pki(&["127.0.0.1"]);
        let origin = burrow::origins::tls_origin(&pki).await;
        let ca_path = dir.join("origin-ca.pem");
        burrow::origins::write_ca(&pki, &ca_path);
        let tls = burrow_local::tls::TlsTarget::new(
            "127.0.0.1",
            &burrow_local::tls::Trust::WithCa(ca_path.clone()),
        )
        .map_err(anyhow::Error::msg)?;
        let (_l, addr) = local(&hops[0].1, "burrow-tcp-https");
        https(addr, origin, &tls, count, rtt_ms).await;
        // shadowsocks-rust, direct over the same kind of link.
        let sport = free_port();
        let ss = Proc::spawn(
            "ssserver",
            &[
                "-s",
                &format!("127.0.0.1:{sport}"),
                "-m",
                "chacha20-ietf-poly1305",
                "-k",
                PW,
            ],
            &[],
        );
        ss.wait_for("listening on");
        let ss_link =
            Link::start("127.0.0.1:0", format!("127.0.0.1:{sport}").parse()?, rtt).await?;
        let lport = free_port();
        let sl = Proc::spawn(
            "sslocal",
            &[
                "-b",
                &format!("127.0.0.1:{lport}"),
                "-s",
                &ss_link.addr.to_string(),
                "-m",
                "chacha20-ietf-poly1305",
                "-k",
                PW,
            ],
            &[],
        );
        sl.wait_for("listening on");
        measure(
            "ssrust-tcp",
            format!("127.0.0.1:{lport}").parse()?,
            false,
            count,
            rtt_ms,
        )
        .await;
        drop((server, nginx, squid, ss, sl));
        Ok(())
    }
}
