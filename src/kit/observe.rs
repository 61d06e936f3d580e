//! What a process holds and what its metrics say: memory, CPU, descriptors, samples.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits (polling, up to `READY_TIMEOUT`) until `pid` has at most `limit` descriptors open;
/// returns the last count seen.
pub fn wait_fds_at_most(pid: u32, limit: usize) -> usize {
    let end = Instant::now() + READY_TIMEOUT;
    loop {
        let n = fd_count(pid);
        if n <= limit || Instant::now() > end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One sample of a metric from a Prometheus endpoint: the value on the line that starts
/// with `name` (labels included), `None` if there is no such line.
pub async fn metric(endpoint: SocketAddr, name: &str) -> Option<u64> {
    let mut c = TcpStream::connect(endpoint).await.ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// Polls `name` until `ok` says so (60 s at most); its last value.
pub async fn metric_until(endpoint: SocketAddr, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let v = metric(endpoint, name).await.unwrap_or(0);
        if ok(v) || Instant::now() > end {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
