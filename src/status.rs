//! `burrow-server status` / `burrow-local status`: what a running process says at its
//! metrics endpoint, printed for a person.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample: metric name, labels (as written, without braces), value.
pub type Sample = (String, String, f64);

/// The most `status` reads of an answer.
const MAX_ANSWER: usize = 4 << 20;

/// Reads `http://addr/metrics`: connected within 5 s, the whole answer within 10 s and
/// 4 MiB.
pub fn fetch(addr: SocketAddr) -> Result<Vec<Sample>, String> {
    let said = |e: std::io::Error| {
        format!("cannot read the metrics at {addr} ({e}): is the process running, with metrics = \"{addr}\"?")
    };
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(said)?;
    c.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(said)?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n")
        .map_err(said)?;
    // The whole answer within 10 s and 4 MiB, whatever answers on that port.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(said(std::io::ErrorKind::TimedOut.into()));
        }
        c.set_read_timeout(Some(left)).map_err(said)?;
        let n = c.read(&mut chunk).map_err(said)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if got.len() > MAX_ANSWER {
            return Err(said(std::io::Error::other("an answer over 4 MiB")));
        }
    }
    let text = String::from_utf8_lossy(&got);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok(parse(body))
}

/// The samples of a Prometheus text exposition.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            Some((name.to_owned(), labels.to_owned(), value))
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map_or(0.0, |s| s.2)
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

/// Bytes for a person: `1.2 MB`.
pub fn bytes(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n:.0} B"),
    }
}

/// burrow-server's status.
pub fn server(addr: SocketAddr, s: &[Sample]) -> String {
    let v = |n: &str, l: &str| value(s, n, l);
    let mut out = format!("burrow-server (metrics at http://{addr}/metrics)\n");
    out += &format!(
        "  connections  {:.0} accepted, {:.0} open\n",
        v("burrow_connections_total", ""),
        v("burrow_open_connections", "")
    );
    out += &format!(
        "  relayed      {} up, {} down\n",
        bytes(v("burrow_bytes_total", "direction=\"up\"")),
        bytes(v("burrow_bytes_total", "direction=\"down\""))
    );
    out += &format!(
        "  refused      {:.0} probes, {:.0} replays, {:.0} timeouts, {:.0} busy; {:.0} targets refused by policy, {:.0} unreachable\n",
        v("burrow_rejected_total", "kind=\"probe\""),
        v("burrow_rejected_total", "kind=\"replay\""),
        v("burrow_rejected_total", "kind=\"timeout\""),
        v("burrow_rejected_total", "kind=\"busy\""),
        v("burrow_dial_errors_total", "kind=\"policy\""),
        v("burrow_dial_errors_total", "kind=\"connect\""),
    );
    out += &format!(
        "  UDP          {:.0} sessions open, {:.0} datagrams up, {:.0} down\n",
        v("burrow_udp_sessions", ""),
        v("burrow_udp_datagrams_total", "direction=\"up\""),
        v("burrow_udp_datagrams_total", "direction=\"down\"")
    );
    let mut users: BTreeMap<&str, [f64; 4]> = BTreeMap::new();
    for (n, l, val) in s {
        let Some(user) = label(l, "user") else {
            continue;
        };
        let row = users.entry(user).or_default();
        match (n.as_str(), label(l, "direction")) {
            ("burrow_user_bytes_total", Some("up")) => row[0] = *val,
            ("burrow_user_bytes_total", Some("down")) => row[1] = *val,
            ("burrow_user_tunnels_total", _) => row[2] = *val,
            ("burrow_user_dial_errors_total", _) => row[3] = *val,
            _ => {}
        }
    }
    if !users.is_empty() {
        out += "  users\n";
        for (name, [up, down, tunnels, errors]) in users {
            out += &format!(
                "    {name:<14} {:>10} up {:>10} down {tunnels:>6.0} tunnels {errors:>4.0} dial errors\n",
                bytes(up),
                bytes(down)
            );
        }
    }
    out
}

/// burrow-local's status.
pub fn local(addr: SocketAddr, s: &[Sample]) -> String {
    let mut out = format!("burrow-local (metrics at http://{addr}/metrics)\n");
    for (n, l, val) in s {
        if n == "burrow_local_server_up" {
            let server = label(l, "server").unwrap_or("?");
            let state = if *val >= 1.0 {
                "reachable"
            } else {
                "NOT reachable at the last try"
            };
            let used = value(s, "burrow_local_server_in_use", l) >= 1.0;
            let checked = s
                .iter()
                .find(|(n, lb, _)| n == "burrow_local_server_check_microseconds" && lb == l)
                .map(|x| format!(", {:.0} ms at the last check", x.2 / 1e3))
                .unwrap_or_default();
            let mark = if used { ", in use" } else { "" };
            out += &format!("  server       {server} ({state}{checked}{mark})\n");
        }
    }
    let requests: Vec<String> = s
        .iter()
        .filter(|(n, _, _)| n == "burrow_local_requests_total")
        .map(|(_, l, v)| format!("{} {v:.0}", label(l, "inbound").unwrap_or("?")))
        .collect();
    out += &format!("  requests     {}\n", requests.join(", "));
    let count = s
        .iter()
        .find(|(n, _, _)| n == "burrow_local_setup_seconds_count")
        .map_or(0.0, |x| x.2);
    let sum = s
        .iter()
        .find(|(n, _, _)| n == "burrow_local_setup_seconds_sum")
        .map_or(0.0, |x| x.2);
    let transport = s
        .iter()
        .find(|(n, _, _)| n == "burrow_local_setup_seconds_count")
        .and_then(|(_, l, _)| label(l, "transport"))
        .unwrap_or("?");
    if count > 0.0 {
        out += &format!(
            "  connections  {count:.0} fresh to the server over {transport}, {:.0} ms each on average\n",
            sum / count * 1e3
        );
    } else {
        out += &format!("  connections  none fresh to the server yet ({transport})\n");
    }
    let failures: Vec<String> = s
        .iter()
        .filter(|(n, _, _)| n == "burrow_local_proxy_failures_total")
        .map(|(_, l, v)| format!("{} ×{v:.0}", label(l, "status").unwrap_or("?")))
        .collect();
    if !failures.is_empty() {
        out += &format!("  proxy        failures: {}\n", failures.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever answers on the metrics port, `status` reads at most 4 MiB of it.
    #[test]
    fn an_endless_answer_is_cut_off() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let chunk = vec![b'x'; 64 * 1024];
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
                while c.write_all(&chunk).is_ok() {}
            }
        });
        let err = fetch(addr).expect_err("cut off");
        assert!(err.contains("over 4 MiB"), "{err}");
    }
}
