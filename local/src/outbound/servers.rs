//! The servers a laptop can use: one, or a list (`[[server]]`, or `-s` repeated). Each has
//! its own key, warm connections and what was learned of it. New tunnels go to the one in
//! use; when it cannot be reached, the same tunnel attempt goes on to the next (nothing
//! has reached the app yet), and the one that worked is used from then on. While tunnels
//! are being opened (none while the laptop idles), every server's way is timed in the
//! background; a faster server takes over only once it has been clearly faster (by a
//! third) at two checks in a row, so that the choice does not flap.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::outbound::hop::Outbound;
use burrow_common::hostport::bracket;
use burrow_common::replay::ReplayFilter;
use burrow_common::MasterKey;
use tokio_util::sync::CancellationToken;

use crate::outbound::plan::Learned;
use crate::outbound::pool::Pool;

/// One server.
#[derive(Debug)]
pub struct Server {
    /// Its host (a name is resolved here, for the hop only).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The tunnel key.
    pub key: MasterKey,
    /// How to reach it: direct or through a corporate proxy, raw or WebSocket.
    pub outbound: Outbound,
    /// Connections opened ahead of use.
    pub pool: Arc<Pool>,
    /// What has been learned of it (does it confirm; targets reached lately).
    pub learned: Arc<Learned>,
    /// Its response salts seen lately; a repeated one is refused.
    pub response_salts: Option<Arc<ReplayFilter>>,
    /// Time to reach it at the last check, in µs; `u64::MAX` before any.
    rtt_us: AtomicU64,
    /// It could not be reached at the last try.
    down: AtomicBool,
    /// Checks in a row at which it was clearly faster than the one in use.
    better: AtomicU32,
    /// The SIP003 plugin process the hop goes through, if any.
    pub plugin: Option<Arc<burrow_common::plugin::Process>>,
}

impl Server {
    /// A server, not yet checked.
    pub fn new(
        host: String,
        port: u16,
        key: MasterKey,
        outbound: Outbound,
        pool: Arc<Pool>,
        response_salts: Option<Arc<ReplayFilter>>,
        plugin: Option<Arc<burrow_common::plugin::Process>>,
    ) -> Server {
        Server {
            host,
            port,
            key,
            outbound,
            pool,
            learned: Default::default(),
            response_salts,
            rtt_us: AtomicU64::new(u64::MAX),
            down: AtomicBool::new(false),
            better: AtomicU32::new(0),
            plugin,
        }
    }

    /// `host:port`.
    pub fn name(&self) -> String {
        format!("{}:{}", bracket(&self.host), self.port)
    }
}

/// One check of `s`: its whole way (proxy, TLS, WebSocket), then a request the server
/// answers at once — for a target it refuses (0.0.0.0:9), so that nothing is dialled —
/// so the time counts the round trip to the server itself. Any answer, even the close
/// of a refusal, means it is up.
async fn check(s: &Server, timeout: Duration) -> std::io::Result<()> {
    use burrow_common::{EncryptedStream, TargetAddr};
    let conn = s.pool.dial().connect().await?;
    // A server that expects Mux.Cool is asked in a session of its own.
    let (conn, mux) = match s.pool.muxes() {
        Some(_) => {
            let mux = burrow_common::mux::Mux::client(conn, crate::outbound::mux::IDLE);
            (crate::outbound::hop::ServerIo::Mux(mux.open()?), Some(mux))
        }
        None => (conn, None),
    };
    let mut tunnel = EncryptedStream::new(conn, &s.key);
    tunnel.ask_confirmation();
    let mut header = bytes::BytesMut::new();
    TargetAddr::Ip(std::net::SocketAddr::from(([0, 0, 0, 0], 9))).encode(&mut header);
    tunnel.buffer(&header);
    let asked = async {
        tokio::io::AsyncWriteExt::flush(&mut tunnel).await?;
        tunnel.peer_answered().await.map(|_| ())
    };
    let answer = burrow_common::timeout::with_timeout("server check", timeout, asked).await;
    if let Some(m) = mux {
        m.close();
    }
    match answer {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        other => other,
    }
}

/// The servers and the one in use.
#[derive(Debug)]
pub struct Servers {
    /// Every server, in the order the config gives.
    pub list: Vec<Arc<Server>>,
    chosen: AtomicUsize,
    /// When a tunnel was last opened (ms since `epoch`): checks run only while in use.
    active: AtomicU64,
    epoch: Instant,
    /// How often the servers are timed while in use.
    pub check_every: Duration,
    /// Wakes the checks at once (the network changed).
    recheck: tokio::sync::Notify,
}

/// With no tunnel for this long, the servers are not checked.
const ACTIVE_FOR: Duration = Duration::from_secs(180);
/// A server takes over when it was this much faster…
const FASTER: f64 = 0.75;
/// …at this many checks in a row.
const STREAK: u32 = 2;

impl Servers {
    /// `list` (not empty), the first in use.
    pub fn new(list: Vec<Arc<Server>>, check_every: Duration) -> Servers {
        Servers {
            list,
            chosen: AtomicUsize::new(0),
            active: AtomicU64::new(0),
            epoch: Instant::now(),
            check_every,
            recheck: tokio::sync::Notify::new(),
        }
    }

    /// Checks every server now (the network changed: one may be unreachable from the new
    /// network, another reachable again), whether or not tunnels are being opened.
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// The server in use.
    pub fn current(&self) -> &Arc<Server> {
        let i = self.chosen.load(Relaxed) % self.list.len().max(1);
        &self.list[i]
    }

    /// The order a tunnel tries them in: the one in use, then those reachable at the last
    /// try (fastest first), then the rest.
    pub fn in_order(&self) -> Vec<Arc<Server>> {
        self.active
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
        let current = self.current().clone();
        let mut rest: Vec<Arc<Server>> = self
            .list
            .iter()
            .filter(|s| !Arc::ptr_eq(s, &current))
            .cloned()
            .collect();
        rest.sort_by_key(|s| (s.down.load(Relaxed), s.rtt_us.load(Relaxed)));
        let mut out = vec![current];
        out.extend(rest);
        out
    }

    /// `server` could not be reached: if it was in use, the next reachable one takes over.
    pub fn failed(&self, server: &Arc<Server>) {
        server.down.store(true, Relaxed);
        if Arc::ptr_eq(server, self.current()) && self.list.len() > 1 {
            if let Some(next) = self.in_order().into_iter().find(|s| !s.down.load(Relaxed)) {
                self.switch_to(&next, "the one in use cannot be reached");
            }
        }
    }

    /// A tunnel went through `server`: it is up, and in use if the one in use is down.
    pub fn worked(&self, server: &Arc<Server>) {
        server.down.store(false, Relaxed);
        if !Arc::ptr_eq(server, self.current()) && self.current().down.load(Relaxed) {
            self.switch_to(server, "the one in use cannot be reached");
        }
    }

    fn switch_to(&self, server: &Arc<Server>, why: &str) {
        if let Some(i) = self.list.iter().position(|s| Arc::ptr_eq(s, server)) {
            let old = self.chosen.swap(i, Relaxed);
            if old != i {
                tracing::warn!("now using the server {} ({why})", server.name());
                for s in &self.list {
                    s.better.store(0, Relaxed);
                }
            }
        }
    }

    /// Times every server's way while tunnels are being opened, and moves to a clearly
    /// faster one (see the module doc), until `shutdown`. Nothing with one server.
    pub async fn watch(self: Arc<Self>, timeout: Duration, shutdown: CancellationToken) {
        if self.list.len() < 2 {
            return;
        }
        loop {
            let asked = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.check_every) => false,
                _ = self.recheck.notified() => true,
            };
            let idle = self.epoch.elapsed().as_millis() as u64 - self.active.load(Relaxed);
            if !asked && idle > ACTIVE_FOR.as_millis() as u64 {
                continue;
            }
            for s in &self.list {
                let started = Instant::now();
                match check(s, timeout).await {
                    Ok(()) => {
                        s.rtt_us
                            .store(started.elapsed().as_micros() as u64, Relaxed);
                        s.down.store(false, Relaxed);
                    }
                    Err(e) => {
                        tracing::debug!("server {} check: {e}", s.name());
                        s.rtt_us.store(u64::MAX, Relaxed);
                        s.down.store(true, Relaxed);
                    }
                }
            }
            self.choose();
        }
    }

    /// Each server's state as Prometheus text: reachable at the last try, its last check
    /// time, and which one is in use.
    pub fn render(&self) -> String {
        use burrow_common::metrics::{family, Kind};
        let current = self.current().clone();
        let mut out = String::new();
        let label = |s: &Server| format!("{{server=\"{}\"}}", s.name());
        let up: Vec<(String, u64)> = self
            .list
            .iter()
            .map(|s| (label(s), u64::from(!s.down.load(Relaxed))))
            .collect();
        family(
            &mut out,
            "burrow_local_server_up",
            Kind::Gauge,
            "1 if the server was reachable at the last try.",
            &up,
        );
        let used: Vec<(String, u64)> = self
            .list
            .iter()
            .map(|s| (label(s), u64::from(Arc::ptr_eq(s, &current))))
            .collect();
        family(
            &mut out,
            "burrow_local_server_in_use",
            Kind::Gauge,
            "1 for the server new tunnels go to.",
            &used,
        );
        let checked: Vec<(String, u64)> = self
            .list
            .iter()
            .filter(|s| s.rtt_us.load(Relaxed) != u64::MAX)
            .map(|s| (label(s), s.rtt_us.load(Relaxed)))
            .collect();
        if !checked.is_empty() {
            family(
                &mut out,
                "burrow_local_server_check_microseconds",
                Kind::Gauge,
                "Time to reach the server at the last check.",
                &checked,
            );
        }
        out
    }

    /// After a check: the fastest server reachable takes over if it beat the one in use
    /// clearly at `STREAK` checks in a row (at once if the one in use is down).
    fn choose(&self) {
        let current = self.current().clone();
        let Some(best) = self
            .list
            .iter()
            .filter(|s| !s.down.load(Relaxed))
            .min_by_key(|s| s.rtt_us.load(Relaxed))
            .cloned()
        else {
            return;
        };
        if Arc::ptr_eq(&best, &current) {
            for s in &self.list {
                s.better.store(0, Relaxed);
            }
            return;
        }
        if current.down.load(Relaxed) {
            return self.switch_to(&best, "the one in use cannot be reached");
        }
        let (b, c) = (best.rtt_us.load(Relaxed), current.rtt_us.load(Relaxed));
        if (b as f64) < (c as f64) * FASTER {
            if best.better.fetch_add(1, Relaxed) + 1 >= STREAK {
                let why = format!("reached in {} ms against {} ms", b / 1000, c / 1000);
                self.switch_to(&best, &why);
            }
        } else {
            best.better.store(0, Relaxed);
        }
    }
}
