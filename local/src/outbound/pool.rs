//! Warm connections: a few connections to the server opened ahead of use — through the
//! corporate proxy, TLS done, WebSocket upgraded — so that a new tunnel starts with its
//! first flight instead of paying for those round trips.
//!
//! Sized by demand: as many as tunnels were opened in the last few seconds (at most
//! `max`; one from the start), none once no tunnel has been opened for `idle_after` (an
//! idle laptop sends nothing). Each is used once, is never older than its jittered `max_age` (kept well
//! below the server's handshake deadline and a proxy's idle cut-off), and is checked
//! before use: one the server or proxy has closed is dropped, never handed to an app.
//! One task keeps the pool: it closes what expires and refills after each use, backing
//! off after a failed connect. Pooled connections send nothing until used.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::outbound::hop::{self, Outbound, ServerIo};
use crate::outbound::mux::Muxes;
use burrow_common::net::SocketOpts;
use burrow_common::replay::ReplayFilter;
use burrow_common::MasterKey;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a pool reaches the server (what a fresh connection needs).
#[derive(Clone, Debug)]
pub struct Dial {
    /// Direct or through a proxy, raw or WebSocket.
    pub outbound: Outbound,
    /// The server's host.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// Per connection attempt.
    pub timeout: Duration,
    /// Socket options.
    pub socket: SocketOpts,
    /// Counts set-up times and failures.
    pub metrics: Arc<crate::tools::metrics::Metrics>,
}

impl Dial {
    /// A fresh connection to the server.
    pub async fn connect(&self) -> std::io::Result<ServerIo> {
        let started = std::time::Instant::now();
        let made = hop::connect(
            &self.outbound,
            &self.host,
            self.port,
            self.timeout,
            &self.socket,
        )
        .await;
        match &made {
            Ok(_) => self.metrics.connected(started.elapsed()),
            Err(e) => self.metrics.failed(e),
        }
        made
    }
}

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

    /// For a tunnel to burrow-server (`shares`: it carries shared connections): a warm
    /// connection of its own when it comes alone or among the first [`OWN_IN_BURST`] of
    /// a burst (tunnels opened within [`BURST_WINDOW`] of each other); the rest of a burst
    /// gets a session on a connection the burst shares — a warm one becomes shared when
    /// none is — so that a burst's tunnels all start at once. Records the demand either
    /// way.
    pub fn take_or_share(
        &self,
        shares: bool,
        key: &MasterKey,
        salts: Option<&Arc<ReplayFilter>>,
    ) -> Taken {
        if !shares {
            return self.take().map_or(Taken::None, |(io, t)| Taken::Own(io, t));
        }
        if self.config.max == 0 {
            return Taken::None;
        }
        let now = Instant::now();
        let mut st = self.lock();
        let burst = st
            .last_take
            .is_some_and(|t| now.saturating_duration_since(t) < BURST_WINDOW);
        st.last_take = Some(now);
        st.burst_len = if burst { st.burst_len + 1 } else { 1 };
        st.opened.push_back(now);
        st.ready.retain(|w| w.expires > now);
        // A tunnel that comes alone gets a warm connection of its own. A burst's
        // tunnels share one: a shared connection with room takes them, or a warm one
        // becomes shared — so every tunnel of a burst starts at once, however many.
        if st.burst_len <= OWN_IN_BURST {
            let own = pop_alive(&mut st, now);
            drop(st);
            self.wake.notify_one();
            return own.map_or(Taken::None, |(io, t)| Taken::Own(io, t));
        }
        if let Some((io, t)) = self.bursts.shared() {
            drop(st);
            self.wake.notify_one();
            return Taken::Shared(io, t);
        }
        let warm = pop_alive(&mut st, now);
        drop(st);
        self.wake.notify_one();
        match warm {
            Some((io, t)) => match self.bursts.carry(io, t, key, salts.cloned()) {
                Ok((io, t)) => Taken::Shared(io, t),
                Err(_) => Taken::None,
            },
            None => Taken::None,
        }
    }

    /// Keeps `io`, a shared connection the server has accepted, for the next burst.
    pub fn adopt_shared<S>(&self, io: S, made_in: Duration)
    where
        S: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        self.bursts.push(io, made_in);
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
        recent.clamp(1, self.config.max)
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

    /// Resolves when the way (the server, a proxy, a NAT) closed a warm connection, or sent
    /// on one, which is dropped. Two closes at about the same age are an idle cut-off on the
    /// way: later warm connections retire well before it. One close alone (a server
    /// restart, a lost network) teaches nothing.
    fn closed_by_the_way(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let now = Instant::now();
            let mut st = self.lock();
            let before = st.ready.len();
            let mut ages = Vec::new();
            st.ready.retain_mut(|w| {
                let mut one = [0u8; 1];
                let mut buf = ReadBuf::new(&mut one);
                match Pin::new(&mut w.io).poll_read(cx, &mut buf) {
                    Poll::Pending => true,
                    _ => {
                        ages.push(now - w.born);
                        false
                    }
                }
            });
            // All at once is a restart or a lost network, not an idle cut-off.
            if ages.len() == 1 || (ages.len() < before && !ages.is_empty()) {
                let age = ages.iter().copied().min().unwrap_or_default();
                learn_cut_off(&mut st, age);
            }
            if ages.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
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

/// A live warm connection from the front of `st.ready`, if any.
fn pop_alive(st: &mut State, now: Instant) -> Option<(ServerIo, Duration)> {
    while let Some(mut w) = st.ready.pop_front() {
        if w.expires > now && still_open(&mut w.io) {
            return Some((w.io, w.made_in));
        }
    }
    None
}

/// What [`Pool::take_or_share`] found.
pub enum Taken {
    /// A warm connection for this tunnel alone.
    Own(ServerIo, Duration),
    /// A session on a shared connection (and that connection's setup time).
    Shared(ServerIo, Duration),
    /// Nothing ready: a fresh connection is needed.
    None,
}

/// Tunnels opened this close together are a burst (a browser opens a page's within a
/// few milliseconds; tunnels one after another over any real link are further apart).
const BURST_WINDOW: Duration = Duration::from_millis(10);

/// The first tunnels of a burst still get warm connections of their own (a few downloads
/// started together keep their own connections); the rest of the burst shares.
const OWN_IN_BURST: usize = 4;

/// Tunnels one shared connection carries at once.
const BURST_SESSIONS: usize = 64;

/// A learned cut-off never makes warm connections live shorter than this.
const MIN_LIFE: Duration = Duration::from_secs(1);

/// Records that the way closed an unused warm connection at `age`; a second close within
/// a quarter of the first's age sets (or lowers) the cut-off.
fn learn_cut_off(st: &mut State, age: Duration) {
    let agrees = st.closed_at.is_some_and(|prev| {
        let (lo, hi) = (prev.min(age), prev.max(age));
        hi - lo <= hi / 4
    });
    st.closed_at = Some(age);
    if agrees && st.cut_off.is_none_or(|c| age < c) {
        st.cut_off = Some(age);
        tracing::info!(
            "the way to the server closes idle connections after about {} s: warm ones \
             retire before {} s from now on",
            age.as_secs_f64().round(),
            age.mul_f64(0.7).as_secs_f64().round()
        );
    }
}

/// 0.6 to 1.0: warm connections do not all expire, or get replaced, in step.
fn jitter() -> f64 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 0.6..1.0)
}

/// True if nothing has arrived on `io` and it has not closed: a server or proxy that
/// hung up on a pooled connection shows as readable.
fn still_open(io: &mut ServerIo) -> bool {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut one = [0u8; 1];
    let mut buf = ReadBuf::new(&mut one);
    matches!(Pin::new(io).poll_read(&mut cx, &mut buf), Poll::Pending)
}
