//! Warm connections: a few connections to the server opened ahead of use — through the
//! corporate proxy, TLS done, WebSocket upgraded — so that a new tunnel starts with its
//! first flight instead of paying for those round trips.
//!
//! Sized by demand: as many as tunnels were opened in the last few seconds (at most
//! `max`; one from the start, two once the server is known to carry a burst on one of
//! them), none once no tunnel has been opened for `idle_after` (an
//! idle laptop sends nothing). Each is used once, is never older than its jittered
//! `max_age` (kept well below the server's handshake deadline, and below an idle cut-off
//! learned on the way: `watch.rs`), and is checked before use: one the server or proxy
//! has closed is dropped, never handed to an app. One task keeps the pool: it closes what
//! expires or what the way closed, and refills after each use, backing off after a failed
//! connect. Pooled connections send nothing until used. A burst's tunnels beyond the first
//! few share a connection (`burst.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod burst;
mod watch;

pub use burst::Taken;
use burst::BURST_SESSIONS;
use watch::{pop_alive, still_open, MIN_LIFE};

pub use crate::outbound::hop::Dial;
use crate::outbound::hop::ServerIo;
use crate::outbound::mux::{self, Muxes};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pool sizes and ages.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Warm connections at most (0: no pool).
    pub max: usize,
    /// A warm connection is closed unused after this (jittered down to 60 %).
    pub max_age: Duration,
    /// With no tunnel opened for this long, the pool empties and stays empty.
    pub idle_after: Duration,
}

/// Tunnels opened within this window count as the current demand.
const DEMAND_WINDOW: Duration = Duration::from_secs(10);

/// After a failed connect, no refill for this long.
const BACKOFF: Duration = Duration::from_secs(5);

struct Warm {
    io: ServerIo,
    born: Instant,
    expires: Instant,
    /// How long it took to make (its round trips through every hop).
    made_in: Duration,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Warm>,
    /// Connects under way.
    filling: usize,
    /// When recent tunnels were opened (the demand), oldest first.
    opened: VecDeque<Instant>,
    /// No refill before this (after a failure).
    quiet_until: Option<Instant>,
    /// Connections made for the pool, in all (tests and metrics).
    made: u64,
    /// When the last tunnel was opened (a burst: the next comes within BURST_WINDOW).
    last_take: Option<Instant>,
    /// Tunnels in the burst under way so far.
    burst_len: usize,
    /// The server carries shared connections (burrow-server): two are kept at least, one
    /// for a tunnel that comes alone and one for a burst to share.
    shares: bool,
    /// The age at which the way last closed an unused warm connection (a proxy's or a
    /// NAT's idle cut-off)…
    closed_at: Option<Duration>,
    /// …and, once two such closes agreed, the shortest idle life learned on this network:
    /// warm connections are retired well before it.
    cut_off: Option<Duration>,
}

/// The warm connections of one server.
pub struct Pool {
    dial: Dial,
    /// WebSockets shared by several tunnels (`mux`), fed by the pool.
    muxes: Option<Arc<Muxes>>,
    /// Connections a burst's tunnels share when the pool runs dry (burrow-server only).
    bursts: Arc<Muxes>,
    config: PoolConfig,
    state: Mutex<State>,
    wake: Notify,
}

impl mux::Source for Pool {
    fn take(&self) -> Option<(ServerIo, Duration)> {
        Pool::take(self)
    }
    fn dial(&self) -> &Dial {
        Pool::dial(self)
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool(max {})", self.config.max)
    }
}

impl Pool {
    /// A pool for the server `dial` reaches. Starting counts as demand for one: the first
    /// tunnel after start finds a connection ready (and, with no tunnel for `idle_after`,
    /// the pool empties like after any other use).
    pub fn new(dial: Dial, config: PoolConfig) -> Arc<Pool> {
        let state = State {
            opened: VecDeque::from([Instant::now()]),
            ..State::default()
        };
        let muxes = dial
            .outbound
            .ws
            .as_ref()
            .filter(|w| w.mux > 0)
            .map(|w| Muxes::new(w.mux, crate::outbound::mux::IDLE));
        Arc::new(Pool {
            dial,
            muxes,
            bursts: Muxes::new(
                BURST_SESSIONS,
                config.idle_after.min(crate::outbound::mux::IDLE),
            ),
            config,
            state: Mutex::new(state),
            wake: Notify::new(),
        })
    }

    /// How the pool's connections are made.
    pub fn dial(&self) -> &Dial {
        &self.dial
    }

    /// Whether connections are made ahead of use at all (`warm_connections` > 0).
    pub fn keeps_warm(&self) -> bool {
        self.config.max > 0
    }

    /// The WebSockets tunnels share, when the hop multiplexes (`mux`).
    pub fn muxes(&self) -> Option<&Arc<Muxes>> {
        self.muxes.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A warm connection, if one is ready and alive, with the time it took to make;
    /// records the demand either way.
    pub fn take(&self) -> Option<(ServerIo, Duration)> {
        if self.config.max == 0 {
            return None;
        }
        let now = Instant::now();
        let mut st = self.lock();
        st.opened.push_back(now);
        let mut found = None;
        while let Some(mut w) = st.ready.pop_front() {
            if w.expires > now && still_open(&mut w.io) {
                found = Some((w.io, w.made_in));
                break;
            }
        }
        drop(st);
        self.wake.notify_one();
        found
    }

    /// Drops every warm connection held (the machine slept, or its network changed:
    /// they are likely dead); the pool refills on demand.
    pub fn clear(&self) -> usize {
        let retired = self.muxes.as_ref().map_or(0, |m| m.retire()) + self.bursts.retire();
        let mut st = self.lock();
        let n = st.ready.len();
        st.ready.clear();
        // Another network: what its middleboxes do is not known yet.
        (st.closed_at, st.cut_off) = (None, None);
        n + retired
    }

    /// Warm connections made so far.
    pub fn made(&self) -> u64 {
        self.lock().made
    }

    /// Warm connections held now.
    pub fn held(&self) -> usize {
        self.lock().ready.len()
    }

    /// How many the demand asks for now.
    fn wanted(&self, st: &mut State, now: Instant) -> usize {
        let idle_cut = now.checked_sub(self.config.idle_after);
        let idle = match st.opened.back() {
            None => true,
            Some(last) => idle_cut.is_some_and(|cut| *last < cut),
        };
        if idle {
            st.opened.clear();
            return 0;
        }
        if let Some(cut) = now.checked_sub(DEMAND_WINDOW) {
            while st.opened.len() > 1 && st.opened.front().is_some_and(|t| *t < cut) {
                st.opened.pop_front();
            }
        }
        let recent = st
            .opened
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < DEMAND_WINDOW)
            .count();
        let floor = if st.shares { 2 } else { 1 };
        recent.max(floor).min(self.config.max)
    }

    /// Keeps the pool until `shutdown`: closes what expires, refills to the demand.
    pub async fn keep(self: Arc<Self>, shutdown: CancellationToken) {
        if self.config.max == 0 {
            return;
        }
        loop {
            let now = Instant::now();
            let (missing, next) = {
                let mut st = self.lock();
                st.ready.retain(|w| w.expires > now);
                let want = self.wanted(&mut st, now);
                while st.ready.len() > want {
                    st.ready.pop_back();
                }
                let quiet = st.quiet_until.is_some_and(|t| t > now);
                let missing = if quiet {
                    0
                } else {
                    want.saturating_sub(st.ready.len() + st.filling)
                };
                st.filling += missing;
                // Wake for the next expiry, the end of a back-off or of the idle period.
                let mut next = st.ready.iter().map(|w| w.expires).min();
                if let Some(q) = st.quiet_until.filter(|_| quiet) {
                    next = Some(next.map_or(q, |n| n.min(q)));
                }
                if let Some(last) = st.opened.back().filter(|_| want > 0) {
                    let idle_end = *last + self.config.idle_after;
                    next = Some(next.map_or(idle_end, |n| n.min(idle_end)));
                }
                (missing, next)
            };
            for _ in 0..missing {
                tokio::spawn(self.clone().fill_one());
            }
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sleep => {}
                _ = self.closed_by_the_way() => {}
            }
        }
        self.lock().ready.clear();
    }

    async fn fill_one(self: Arc<Self>) {
        let started = Instant::now();
        let made = self.dial.connect().await;
        let now = Instant::now();
        {
            let mut st = self.lock();
            st.filling = st.filling.saturating_sub(1);
            match made {
                Ok(io) => {
                    st.made += 1;
                    let mut age = self.config.max_age.mul_f64(jitter());
                    if let Some(cut) = st.cut_off {
                        age = age.min(cut.mul_f64(0.7 * jitter()).max(MIN_LIFE));
                    }
                    st.ready.push_back(Warm {
                        io,
                        born: now,
                        expires: now + age,
                        made_in: now - started,
                    });
                }
                Err(e) => {
                    tracing::debug!("warm connection: {e}");
                    st.quiet_until = Some(now + BACKOFF);
                }
            }
        }
        self.wake.notify_one();
    }
}

/// 0.6 to 1.0: warm connections do not all expire, or get replaced, in step.
fn jitter() -> f64 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 0.6..1.0)
}
