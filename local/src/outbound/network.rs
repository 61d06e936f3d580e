//! The laptop's day: after a sleep or a change of network, warm connections are likely
//! dead; they are dropped before a tunnel finds them, the servers are checked again (one
//! unreachable from the new network is passed over), and those who follow the network —
//! the PAC file — are told at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::outbound::servers::Servers;

/// Counts the network changes seen; a receiver wakes on each.
pub type Changes = watch::Sender<u64>;

/// A new count of changes, at zero.
pub fn changes() -> Changes {
    watch::channel(0).0
}

/// How often the machine's addresses and clocks are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// More than this between the wall clock's and the monotonic clock's progress over one
/// look means the machine slept (the monotonic clock stops during suspend).
const SLEPT: Duration = Duration::from_secs(5);

/// Until `shutdown`: when this machine's addresses or default routes change (another
/// Wi-Fi, a VPN up or down) or it wakes from sleep, every pool's warm connections are dropped — made on the
/// old network or before the night, they are likely dead — before the next tunnel finds
/// them; the servers are checked again, and `changes` counts one more.
pub async fn watch_network(servers: Arc<Servers>, changes: Changes, shutdown: CancellationToken) {
    let mut addrs = local_addrs();
    let mut routes = default_routes();
    let (mut wall, mut mono) = (std::time::SystemTime::now(), std::time::Instant::now());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        let (now_addrs, now_routes) = (local_addrs(), default_routes());
        let (now_wall, now_mono) = (std::time::SystemTime::now(), std::time::Instant::now());
        let walked = now_wall.duration_since(wall).unwrap_or_default();
        let slept = walked.saturating_sub(now_mono - mono) > SLEPT;
        let why = if slept {
            Some(format!("the machine slept ({} s)", walked.as_secs()))
        } else if now_addrs != addrs {
            Some("this machine's addresses changed".to_owned())
        } else if now_routes != routes {
            Some("this machine's default route changed".to_owned())
        } else {
            None
        };
        (addrs, routes, wall, mono) = (now_addrs, now_routes, now_wall, now_mono);
        if let Some(why) = why {
            let dropped: usize = servers.list.iter().map(|s| s.pool.clear()).sum();
            tracing::info!(
                "{why}: {dropped} warm connections dropped, new ones made on demand; \
                 the servers checked again"
            );
            servers.recheck();
            changes.send_modify(|n| *n += 1);
        }
    }
}

/// This machine's default routes (a VPN that takes them over, another gateway), as the
/// kernel lists them: Linux only (`/proc/net/route`, `/proc/net/ipv6_route`); elsewhere
/// the addresses alone tell a change.
fn default_routes() -> Vec<String> {
    let mut v = Vec::new();
    if cfg!(target_os = "linux") {
        let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        // IPv4: destination and mask 0; IPv6: destination ::/0.
        for l in text("/proc/net/route").lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
                v.push(format!("{} via {}", f[0], f[2]));
            }
        }
        for l in text("/proc/net/ipv6_route").lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" {
                v.push(format!("{} via {}", f[9], f[4]));
            }
        }
    }
    v.sort();
    v
}

/// This machine's addresses, sorted.
fn local_addrs() -> Vec<std::net::IpAddr> {
    let mut v: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}
