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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod args;
use args::{Cli, Dir, Mode};

mod streams;
use streams::{first_byte, one_stream, open, percentile, target};

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
    if let Mode::PageSuite { runs, rtt_ms } = cli.mode {
        return page::run(runs, rtt_ms).await;
    }
    if let Mode::Soak {
        secs,
        tunnels,
        fault_every,
    } = cli.mode
    {
        let report = burrow::soak::run(burrow::soak::Options {
            duration: Duration::from_secs(secs),
            tunnels,
            fault_every: Duration::from_secs(fault_every),
            local: suite::beside("burrow-local"),
            server: suite::beside("burrow-server"),
            dir: suite::temp("soak"),
        })
        .await;
        println!("{report}");
        return Ok(());
    }
    if let Mode::NtlmAnchor {
        count,
        rtt_ms,
        proxy_rtt_ms,
    } = cli.mode
    {
        return ntlm::ntlm_against_cntlm(count, rtt_ms, proxy_rtt_ms).await;
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
        Mode::Link { .. }
        | Mode::FirstByteSuite { .. }
        | Mode::PageSuite { .. }
        | Mode::Soak { .. }
        | Mode::NtlmAnchor { .. } => {}
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

mod ntlm;
mod page;
mod suite;
mod udp;
use udp::udp_bench;
