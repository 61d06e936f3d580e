//! Tunnels sharing WebSockets (Mux.Cool, as v2ray-plugin frames them): a new tunnel
//! opens a session on a WebSocket already up — no connect, no TLS, no upgrade — so a
//! browser's burst of tunnels starts at once.
//!
//! Each WebSocket carries up to `per_conn` tunnels; when all are full the next one takes
//! a warm connection from the pool, and while none is ready it goes on the least loaded
//! WebSocket (up to four times `per_conn`) as one more is made in the background: a
//! burst never waits for a connect while a WebSocket is up. A WebSocket that a download
//! rides takes new tunnels only when no other can, and one held by a tunnel whose app
//! stops reading never: a page's requests do not queue behind either. WebSockets with no tunnel close after [`IDLE`].

use burrow_common::timeout::within;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_common::mux::{Mux, CARRIER};
use burrow_common::replay::ReplayFilter;
use burrow_common::{EncryptedStream, MasterKey, TargetAddr};
use tokio::sync::Notify;

use crate::outbound::hop::{Dial, ServerIo};

/// A WebSocket without a tunnel for this long is closed (v2ray's client: 16 s).
pub const IDLE: Duration = Duration::from_secs(16);

/// What a shared connection sends must be acknowledged within this.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);

/// How far beyond `per_conn` a WebSocket is loaded while another is being made.
const OVERFLOW: usize = 4;

/// Where shared connections come from: a warm one when one is ready, else a fresh one.
pub trait Source: Send + Sync + 'static {
    /// A warm connection and the time it took to make, if one is ready.
    fn take(&self) -> Option<(ServerIo, Duration)>;
    /// How to make a fresh one.
    fn dial(&self) -> &Dial;
}

/// Whether a connection a bulk transfer rides may take a new session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Not at all.
    Only,
    /// When no other has room.
    First,
}

/// One shared WebSocket and the time it took to make.
struct Conn {
    mux: Mux,
    made_in: Duration,
}

/// The shared WebSockets of one server.
pub struct Muxes {
    per_conn: usize,
    /// A connection with no tunnel for this long closes.
    idle: Duration,
    conns: Mutex<Vec<Conn>>,
    /// A connection is being made (by a tunnel, or in the background).
    making: AtomicBool,
    /// Woken when it is made, or failed.
    ready: Notify,
    /// Connections that could not be made, in all.
    failures: AtomicUsize,
}

impl std::fmt::Debug for Muxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Muxes({} per connection)", self.per_conn)
    }
}

impl Muxes {
    /// Up to `per_conn` tunnels on each connection.
    pub fn new(per_conn: usize, idle: Duration) -> Arc<Muxes> {
        Arc::new(Muxes {
            idle,
            per_conn: per_conn.max(1),
            conns: Mutex::new(Vec::new()),
            making: AtomicBool::new(false),
            ready: Notify::new(),
            failures: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections up now (tests and metrics).
    pub fn connections(&self) -> usize {
        let mut conns = self.lock();
        conns.retain(|c| !c.mux.is_closed());
        conns.len()
    }

    /// A session for one tunnel, with the setup time of the connection it rides on.
    pub async fn open<P: Source>(
        self: &Arc<Self>,
        pool: &Arc<P>,
    ) -> io::Result<(ServerIo, Duration)> {
        loop {
            if let Some(found) = self.with_room(self.per_conn, Quiet::Only) {
                return Ok(found);
            }
            if let Some((io, made_in)) = pool.take() {
                io.watch_sent(DEAD_AFTER);
                return self.add(io, made_in);
            }
            // None ready, or only ones a bulk transfer rides: the least loaded takes it
            // while one more is made.
            if let Some(found) = self.with_room(self.per_conn * OVERFLOW, Quiet::First) {
                self.make_one_more(pool);
                return Ok(found);
            }
            // None up at all: one tunnel makes it, the others of the burst wait for it.
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let failures = self.failures.load(Relaxed);
            if !self.making.swap(true, Relaxed) {
                let started = std::time::Instant::now();
                let made = pool.dial().connect().await;
                let added = made.and_then(|io| {
                    io.watch_sent(DEAD_AFTER);
                    self.add(io, started.elapsed())
                });
                if added.is_err() {
                    self.failures.fetch_add(1, Relaxed);
                }
                self.making.store(false, Relaxed);
                self.ready.notify_waiters();
                return added;
            }
            let wait = pool.dial().timeout * 2;
            if within(wait, ready).await.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no shared connection to the server within {wait:?}"),
                ));
            }
            if self.failures.load(Relaxed) != failures && self.connections() == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the connection this tunnel waited for could not be made",
                ));
            }
        }
    }

    /// Starts making one more connection in the background, unless one is being made.
    fn make_one_more<P: Source>(self: &Arc<Self>, pool: &Arc<P>) {
        if self.making.swap(true, Relaxed) {
            return;
        }
        let (me, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match pool.dial().connect().await {
                Ok(io) => {
                    me.add_idle(io, started.elapsed());
                }
                Err(e) => tracing::debug!("another shared WebSocket: {e}"),
            }
            me.making.store(false, Relaxed);
            me.ready.notify_waiters();
        });
    }

    /// A session on the live connection with the fewest tunnels, if it has fewer than
    /// `limit`; one that a download rides (see [`Mux::busy`]) comes after every
    /// other, or not at all; one held by a session that does not read, never.
    fn with_room(&self, limit: usize, quiet: Quiet) -> Option<(ServerIo, Duration)> {
        let mut conns = self.lock();
        conns.retain(|c| !c.mux.is_closed());
        let c = conns
            .iter()
            .filter(|c| !c.mux.stalled())
            .map(|c| (c, c.mux.busy()))
            .filter(|(c, busy)| c.mux.sessions() < limit && !(*busy && quiet == Quiet::Only))
            .min_by_key(|(c, busy)| (*busy, c.mux.sessions()))
            .map(|(c, _)| c)?;
        let s = c.mux.open().ok()?;
        Some((ServerIo::Mux(s), c.made_in))
    }

    /// Adds a connection with no session yet.
    fn add_idle(&self, io: ServerIo, made_in: Duration) {
        io.watch_sent(DEAD_AFTER);
        self.push(io, made_in);
    }

    /// Adds a connection (its TCP watched by the caller) with no session yet.
    pub fn push<S>(&self, io: S, made_in: Duration)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let mux = Mux::client(io, self.idle);
        self.lock().push(Conn { mux, made_in });
    }

    /// A tunnel of a burst on a shared connection, if one has room and no download rides
    /// it (see [`Muxes::carry`]); with `busy_too`, one a download rides will
    /// do (still better than a new connection's round trip).
    pub fn shared(&self, busy_too: bool) -> Option<(ServerIo, Duration)> {
        let quiet = if busy_too { Quiet::First } else { Quiet::Only };
        self.with_room(self.per_conn, quiet)
    }

    /// Makes `io` (a warm connection to burrow-server) a shared one — a Shadowsocks
    /// tunnel to [`CARRIER`] with Mux.Cool inside, so that an observer sees one more
    /// tunnel — and opens a session on it. Each session carries a whole tunnel of its
    /// own (its own salt and request), as if it had its own connection.
    pub fn carry(
        &self,
        io: ServerIo,
        made_in: Duration,
        key: &MasterKey,
        salts: Option<Arc<ReplayFilter>>,
    ) -> io::Result<(ServerIo, Duration)> {
        io.watch_sent(DEAD_AFTER);
        let mut carrier = EncryptedStream::new(io, key);
        if let Some(f) = salts {
            carrier.check_peer_salt(f);
        }
        let mut header = bytes::BytesMut::new();
        TargetAddr::Domain(CARRIER.0.into(), CARRIER.1).encode(&mut header);
        // It leaves with the first session's first frame.
        carrier.buffer(&header);
        self.add(carrier, made_in)
    }

    fn add<S>(&self, io: S, made_in: Duration) -> io::Result<(ServerIo, Duration)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        // A shared connection that dies silently (a sleep, another network) fails once
        // what it sent stays unacknowledged for DEAD_AFTER (set by the caller),
        // resetting its tunnels, instead of holding them all.
        let mux = Mux::client(io, self.idle);
        let s = mux.open()?;
        self.lock().push(Conn { mux, made_in });
        Ok((ServerIo::Mux(s), made_in))
    }

    /// New tunnels no longer go on the connections up now (the machine slept or
    /// changed networks: they are likely dead); their tunnels go on, and each closes once
    /// idle.
    pub fn retire(&self) -> usize {
        self.lock().drain(..).count()
    }
}
