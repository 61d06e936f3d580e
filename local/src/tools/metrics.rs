//! burrow-local's counters, served when asked (`metrics = "ADDR"`): requests by inbound
//! kind, the set-up time of fresh connections to the server by transport, and corporate
//! proxy failures by what the proxy answered (the servers' own state is
//! [`crate::outbound::servers::Servers::render`]'s).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use burrow_common::metrics::{family, Histogram, Kind};

/// How an app came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// SOCKS5 CONNECT.
    Socks5,
    /// HTTP CONNECT.
    Connect,
    /// Plain HTTP forwarding (absolute-form).
    Forward,
    /// A reverse route.
    Reverse,
    /// SOCKS5 UDP ASSOCIATE.
    Udp,
}

impl Inbound {
    const ALL: [Inbound; 5] = [
        Inbound::Socks5,
        Inbound::Connect,
        Inbound::Forward,
        Inbound::Reverse,
        Inbound::Udp,
    ];

    fn label(self) -> &'static str {
        match self {
            Inbound::Socks5 => "socks5",
            Inbound::Connect => "connect",
            Inbound::Forward => "forward",
            Inbound::Reverse => "reverse",
            Inbound::Udp => "udp",
        }
    }
}

const SETUP_BOUNDS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The counters.
#[derive(Debug)]
pub struct Metrics {
    requests: [AtomicU64; 5],
    /// Fresh connections to the server, their set-up time (the transport's label).
    setup: Histogram,
    transport: &'static str,
    proxy_failures: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Counters for a hop of `transport` (tcp, ws, wss).
    pub fn new(transport: &'static str) -> Metrics {
        Metrics {
            requests: Default::default(),
            setup: Histogram::new(SETUP_BOUNDS),
            transport,
            proxy_failures: Default::default(),
        }
    }

    /// Counts a request from an app.
    pub fn request(&self, kind: Inbound) {
        self.requests[kind as usize].fetch_add(1, Relaxed);
    }

    /// A fresh connection to the server was made in `took`.
    pub fn connected(&self, took: Duration) {
        self.setup.observe(took);
    }

    /// A fresh connection to the server failed with `e` (through a proxy, or not).
    pub fn failed(&self, e: &std::io::Error) {
        if let Some(status) = proxy_status(e) {
            let mut m = self
                .proxy_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *m.entry(status).or_default() += 1;
        }
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let requests: Vec<(String, u64)> = Inbound::ALL
            .iter()
            .map(|k| {
                let v = self.requests[*k as usize].load(Relaxed);
                (format!("{{inbound=\"{}\"}}", k.label()), v)
            })
            .collect();
        family(
            &mut out,
            "burrow_local_requests_total",
            Kind::Counter,
            "Requests from apps, by how they came in.",
            &requests,
        );
        let name = "burrow_local_setup_seconds";
        out.push_str(&format!(
            "# HELP {name} Time to make a fresh connection to the server (proxy, TLS, WebSocket included).\n# TYPE {name} histogram\n"
        ));
        self.setup
            .render(&mut out, name, &format!("transport=\"{}\"", self.transport));
        let failures: Vec<(String, u64)> = self
            .proxy_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (format!("{{status=\"{k}\"}}"), *v))
            .collect();
        family(
            &mut out,
            "burrow_local_proxy_failures_total",
            Kind::Counter,
            "Corporate proxy refusals and failures, by answer.",
            &failures,
        );
        out
    }
}

/// What a corporate proxy answered, from the hop's error: its status code, or how it
/// failed (`unreachable`, `timeout`); `None` when no proxy was involved.
fn proxy_status(e: &std::io::Error) -> Option<String> {
    let text = e.to_string();
    if !text.starts_with("proxy ") && !text.contains(": proxy ") {
        return None;
    }
    // "(407 Proxy Authentication Required; …" or "answered CONNECT h:p with 502 Bad Gateway".
    let answered = e.kind() == std::io::ErrorKind::PermissionDenied || text.contains(" answered ");
    let code = text
        .split(['(', ' '])
        .find(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()))
        .filter(|_| answered);
    Some(match (code, e.kind()) {
        (Some(c), _) => c.to_owned(),
        (None, std::io::ErrorKind::TimedOut) => "timeout".into(),
        (None, std::io::ErrorKind::PermissionDenied) => "refused".into(),
        _ => "unreachable".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_answers_are_read_from_the_error() {
        let e = |k, t: &str| std::io::Error::new(k, t.to_owned());
        use std::io::ErrorKind::*;
        let cases = [
            (e(PermissionDenied, "proxy http://p:3128 refused the credentials (407 Proxy Authentication Required; it offers: NTLM); sent with NTLM"), Some("407")),
            (e(PermissionDenied, "proxy http://p:3128 refused CONNECT to h:443 (403 Forbidden)"), Some("403")),
            (e(TimedOut, "proxy http://p:3128: proxy CONNECT timed out after 10s"), Some("timeout")),
            (e(ConnectionRefused, "proxy http://p:3128: 127.0.0.1:3128: Connection refused (os error 111)"), Some("unreachable")),
            (e(ConnectionRefused, "127.0.0.1:9: Connection refused"), None),
        ];
        for (err, want) in cases {
            assert_eq!(proxy_status(&err).as_deref(), want, "{err}");
        }
    }
}
