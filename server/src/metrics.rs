//! Counters, and the opt-in Prometheus text endpoint that shows them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::users::{Counters, Users};

/// What the server counts. Cheap relaxed atomics, read only by the endpoint.
#[derive(Default)]
pub struct Metrics {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicI64,
    /// Plaintext bytes client → target.
    pub bytes_up: AtomicU64,
    /// Plaintext bytes target → client.
    pub bytes_down: AtomicU64,
    /// First flights that did not authenticate or parse (wrong key, garbage, probes).
    pub probes: AtomicU64,
    /// Replayed salts.
    pub replays: AtomicU64,
    /// No whole request before the handshake deadline.
    pub handshake_timeouts: AtomicU64,
    /// Closed at once: too many connections were in their handshake.
    pub busy: AtomicU64,
    /// Targets refused by the egress policy.
    pub dial_refused: AtomicU64,
    /// Targets that could not be resolved or connected.
    pub dial_failed: AtomicU64,
    /// Connections shared by several tunnels (Mux.Cool): v2ray-plugin's WebSockets
    /// and burrow-local's bursts.
    pub shared: AtomicU64,
    /// Sessions opened on them.
    pub shared_sessions: AtomicU64,
    /// UDP: datagrams and their payload bytes, each way, and drops by reason.
    pub udp: UdpMetrics,
}

/// Why a datagram was not sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpDrop {
    /// It did not authenticate or parse.
    Probe,
    /// Its destination is refused by the egress policy (or does not resolve).
    Policy,
    /// UDP to port 443 with `block_quic`.
    Quic,
    /// As many UDP sessions as allowed are open.
    Sessions,
    /// The session's queue was full, or the send failed.
    Busy,
    /// SIP022: a packet id seen before (or too old); or a datagram seen before that
    /// would open a session (a capture sent again from another source).
    Replay,
}

impl UdpDrop {
    const ALL: [UdpDrop; 6] = [
        UdpDrop::Probe,
        UdpDrop::Policy,
        UdpDrop::Quic,
        UdpDrop::Sessions,
        UdpDrop::Busy,
        UdpDrop::Replay,
    ];

    fn label(self) -> &'static str {
        match self {
            UdpDrop::Probe => "probe",
            UdpDrop::Policy => "policy",
            UdpDrop::Quic => "quic",
            UdpDrop::Sessions => "sessions",
            UdpDrop::Busy => "busy",
            UdpDrop::Replay => "replay",
        }
    }
}

/// UDP counters.
#[derive(Debug, Default)]
pub struct UdpMetrics {
    /// Datagrams client → target, and their payload bytes.
    pub packets_up: AtomicU64,
    pub bytes_up: AtomicU64,
    /// Datagrams target → client, and their payload bytes.
    pub packets_down: AtomicU64,
    pub bytes_down: AtomicU64,
    /// UDP sessions open now (one per client address, or per UDP-over-TCP tunnel).
    pub sessions: AtomicI64,
    drops: [AtomicU64; 6],
}

impl UdpMetrics {
    /// Counts a dropped datagram.
    pub fn dropped(&self, why: UdpDrop) {
        self.drops[why as usize].fetch_add(1, Relaxed);
    }

    /// Dropped datagrams for one reason.
    pub fn drops(&self, why: UdpDrop) -> u64 {
        self.drops[why as usize].load(Relaxed)
    }
}

/// Why a first flight was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// It did not open with any user's key, or its address was malformed.
    Probe,
    /// A salt seen before.
    Replay,
    /// Not complete within the handshake timeout.
    Timeout,
    /// Too many handshakes at once.
    Busy,
    /// The client closed before its request was complete.
    Closed,
}

impl Metrics {
    /// Counts a refused first flight by why (a connection closed early is not counted).
    pub fn rejected(&self, why: Rejected) {
        match why {
            Rejected::Probe => &self.probes,
            Rejected::Replay => &self.replays,
            Rejected::Timeout => &self.handshake_timeouts,
            Rejected::Busy => &self.busy,
            Rejected::Closed => return,
        }
        .fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "burrow_connections_total",
            "Connections accepted.",
            &[("", self.connections.load(Relaxed))],
        );
        counter(
            "burrow_shared_connections_total",
            "Connections shared by several tunnels (Mux.Cool: v2ray-plugin, burrow-local's bursts).",
            &[("", self.shared.load(Relaxed))],
        );
        counter(
            "burrow_shared_sessions_total",
            "Tunnels opened on shared connections.",
            &[("", self.shared_sessions.load(Relaxed))],
        );
        counter(
            "burrow_bytes_total",
            "Plaintext bytes relayed.",
            &[
                ("{direction=\"up\"}", self.bytes_up.load(Relaxed)),
                ("{direction=\"down\"}", self.bytes_down.load(Relaxed)),
            ],
        );
        counter(
            "burrow_rejected_total",
            "First flights refused without an answer.",
            &[
                ("{kind=\"probe\"}", self.probes.load(Relaxed)),
                ("{kind=\"replay\"}", self.replays.load(Relaxed)),
                ("{kind=\"timeout\"}", self.handshake_timeouts.load(Relaxed)),
                ("{kind=\"busy\"}", self.busy.load(Relaxed)),
            ],
        );
        counter(
            "burrow_dial_errors_total",
            "Targets not reached.",
            &[
                ("{kind=\"policy\"}", self.dial_refused.load(Relaxed)),
                ("{kind=\"connect\"}", self.dial_failed.load(Relaxed)),
            ],
        );
        let u = &self.udp;
        counter(
            "burrow_udp_datagrams_total",
            "UDP datagrams relayed.",
            &[
                ("{direction=\"up\"}", u.packets_up.load(Relaxed)),
                ("{direction=\"down\"}", u.packets_down.load(Relaxed)),
            ],
        );
        counter(
            "burrow_udp_bytes_total",
            "UDP payload bytes relayed.",
            &[
                ("{direction=\"up\"}", u.bytes_up.load(Relaxed)),
                ("{direction=\"down\"}", u.bytes_down.load(Relaxed)),
            ],
        );
        let drops: Vec<(String, u64)> = UdpDrop::ALL
            .iter()
            .map(|d| (format!("{{reason=\"{}\"}}", d.label()), u.drops(*d)))
            .collect();
        let drops: Vec<(&str, u64)> = drops.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            "burrow_udp_dropped_total",
            "UDP datagrams not sent on.",
            &drops,
        );
        let _ = writeln!(
            out,
            "# HELP burrow_udp_sessions UDP sessions open now.\n# TYPE burrow_udp_sessions gauge\nburrow_udp_sessions {}",
            u.sessions.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP burrow_open_connections Connections open now.\n# TYPE burrow_open_connections gauge\nburrow_open_connections {}",
            self.open.load(Relaxed)
        );
        out
    }
}

/// Per-user counters, when the config names users.
pub fn render_users(users: &Users) -> String {
    if !users.named() {
        return String::new();
    }
    let list = users.get();
    let mut out = String::new();
    let mut family = |name: &str, help: &str, pick: &dyn Fn(&Counters) -> Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for u in list.iter() {
            for (labels, v) in pick(&u.counters) {
                let _ = writeln!(out, "{name}{{user=\"{}\"{labels}}} {v}", u.name);
            }
        }
    };
    family(
        "burrow_user_bytes_total",
        "Plaintext bytes relayed, per user.",
        &|c| {
            vec![
                (",direction=\"up\"".into(), c.bytes_up.load(Relaxed)),
                (",direction=\"down\"".into(), c.bytes_down.load(Relaxed)),
            ]
        },
    );
    family(
        "burrow_user_tunnels_total",
        "Tunnels and UDP sessions opened, per user.",
        &|c| vec![(String::new(), c.tunnels.load(Relaxed))],
    );
    family(
        "burrow_user_dial_errors_total",
        "Targets not reached, per user.",
        &|c| vec![(String::new(), c.dial_errors.load(Relaxed))],
    );
    family(
        "burrow_user_capped_total",
        "Tunnels refused at the user's max_connections.",
        &|c| vec![(String::new(), c.capped.load(Relaxed))],
    );
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    users: Arc<Users>,
    shutdown: CancellationToken,
) {
    let render = Arc::new(move || metrics.render() + &render_users(&users));
    burrow_common::metrics::serve(listener, render, shutdown).await;
}
