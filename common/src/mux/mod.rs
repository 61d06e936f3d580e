//! Mux.Cool: many streams over one connection, framed as v2ray frames them — what
//! v2ray-plugin carries inside its WebSocket by default.
//!
//! ```text
//! u16 metadata length | metadata | (with the data option) u16 length | data
//! metadata: u16 session | u8 status | u8 option | (New only) u8 network, u16 port,
//!           u8 address type (1 IPv4, 2 name, 3 IPv6), address
//! status:   1 New, 2 Keep, 3 End, 4 KeepAlive      option: 1 data, 2 error
//! ```
//!
//! A session is opened by the client's New (with its first data), carries data in Keep
//! frames both ways, and each side says it is done writing with End (End with the error
//! option: the session was reset). There is no flow control in the protocol: a session
//! queues a few frames; when its reader lags further the connection's reader waits for
//! it (v2ray does the same). [`Mux`] is one connection; [`MuxStream`] one session.
mod frame;
mod loops;
mod stream;

pub use frame::{encode, is_carrier, looks_like_mux, read_frame, Frame, CARRIER, MAX_DATA};
pub use stream::MuxStream;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, PollSender};

use crate::TargetAddr;
use loops::{read_loop, write_loop};

/// Frames a session queues before the connection's reader waits for it.
const SESSION_QUEUE: usize = 8;
/// Frames queued for the connection's writer.
const WRITE_QUEUE: usize = 64;
/// Frames one session may have queued for the writer: a bulk session cannot fill the
/// queue, so another session's frame waits behind a few of its frames, not dozens.
const SESSION_IN_FLIGHT: usize = 4;

/// A connection one of whose sessions received more than [`BUSY_BYTES`] within
/// [`BUSY_WINDOW`] is busy — a download rides it — until [`BUSY_HOLD`] after. Many small
/// sessions together (a page's burst) do not make it busy.
const BUSY_BYTES: usize = 256 * 1024;
const BUSY_WINDOW: Duration = Duration::from_millis(100);
const BUSY_HOLD: Duration = Duration::from_millis(500);

/// What one session received lately (see [`BUSY_BYTES`]).
struct Load {
    since: Instant,
    bytes: usize,
}

impl Load {
    fn new() -> Load {
        Load {
            since: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes at `now`; whether the window's count is over [`BUSY_BYTES`].
    fn moved(&mut self, n: usize, now: Instant) -> bool {
        if now.saturating_duration_since(self.since) > BUSY_WINDOW {
            self.since = now;
            self.bytes = 0;
        }
        self.bytes += n;
        self.bytes > BUSY_BYTES
    }
}

/// A write to the connection that makes no progress for this long ends it.
const WRITE_STALL: Duration = Duration::from_secs(60);

/// A frame for the writer, with the session's share it holds until written.
type Out = (Bytes, Option<OwnedSemaphorePermit>);

/// One session's end of the connection, kept by the connection's reader.
struct Slot {
    /// Data for the session; `None` once the peer ended it.
    tx: Option<mpsc::Sender<Bytes>>,
    reset: Arc<AtomicBool>,
    /// What it received lately.
    load: Load,
}

struct Shared {
    sessions: Mutex<HashMap<u16, Slot>>,
    out: mpsc::Sender<Out>,
    /// Resets from dropped sessions (a drop cannot wait for room).
    resets: mpsc::UnboundedSender<Bytes>,
    closed: CancellationToken,
    /// The next session id (client).
    next_id: Mutex<u16>,
    /// When the last session ended (idle close).
    idle_since: Mutex<Option<Instant>>,
    /// Until when a download rides it (see [`BUSY_BYTES`]).
    busy_until: Mutex<Option<Instant>>,
    /// The reader waits for a session that does not read (every other one waits too).
    stalled: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Slot>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection busy for [`BUSY_HOLD`] from `now`.
    fn busy_from(&self, now: Instant) {
        *self.busy_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(now + BUSY_HOLD);
    }

    fn remove(&self, id: u16) {
        let mut s = self.lock();
        s.remove(&id);
        if s.is_empty() {
            *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
    }

    fn add(self: &Arc<Self>, id: u16, server_side: bool) -> MuxStream {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let reset = Arc::new(AtomicBool::new(false));
        self.lock().insert(
            id,
            Slot {
                tx: Some(tx),
                reset: reset.clone(),
                load: Load::new(),
            },
        );
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        MuxStream::new(
            self.clone(),
            id,
            rx,
            reset,
            PollSender::new(self.out.clone()),
            server_side,
        )
    }
}

/// A new session a client opened on a server-side connection.
pub type Accepted = (MuxStream, Option<TargetAddr>);

/// One Mux.Cool connection.
#[derive(Clone)]
pub struct Mux {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mux({} sessions)", self.sessions())
    }
}

impl Mux {
    /// The client side over `io`: sessions are opened with [`Mux::open`]. The connection
    /// closes once it has had no session for `idle`.
    pub fn client<S>(io: S, idle: Duration) -> Mux
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, idle, None, usize::MAX)
    }

    /// The server side over `io`: each session a client opens comes out of `accepted`
    /// (at most `max_sessions` at once; more are refused with a reset). The connection
    /// closes once it has had no session for `idle`.
    pub fn server<S>(
        io: S,
        idle: Duration,
        max_sessions: usize,
        accepted: mpsc::Sender<Accepted>,
    ) -> Mux
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, idle, Some(accepted), max_sessions)
    }

    fn start<S>(
        io: S,
        idle: Duration,
        accepted: Option<mpsc::Sender<Accepted>>,
        max_sessions: usize,
    ) -> Mux
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out, out_rx) = mpsc::channel(WRITE_QUEUE);
        let (resets, resets_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            sessions: Mutex::new(HashMap::new()),
            out,
            resets,
            closed: CancellationToken::new(),
            next_id: Mutex::new(1),
            idle_since: Mutex::new(Some(Instant::now())),
            busy_until: Mutex::new(None),
            stalled: AtomicBool::new(false),
        });
        let (r, w) = tokio::io::split(io);
        tokio::spawn(write_loop(shared.clone(), w, out_rx, resets_rx, idle));
        tokio::spawn(read_loop(shared.clone(), r, accepted, max_sessions));
        Mux { shared }
    }

    /// Opens a session (client side); nothing is sent until its first write.
    pub fn open(&self) -> io::Result<MuxStream> {
        if self.is_closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let id = {
            let sessions = self.shared.lock();
            let mut next = self
                .shared
                .next_id
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            loop {
                let id = *next;
                *next = next.wrapping_add(1).max(1);
                if !sessions.contains_key(&id) {
                    break id;
                }
            }
        };
        Ok(self.shared.add(id, false))
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.shared.lock().len()
    }

    /// Whether a download rides the connection now (one session received more than
    /// 256 KiB within 100 ms, lately), or its reader waits for a session that does not read: a new
    /// session is better placed on another, where it does not queue behind them.
    pub fn busy(&self) -> bool {
        if self.stalled() {
            return true;
        }
        let until = self
            .shared
            .busy_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| t > Instant::now())
    }

    /// Whether the reader waits for a session that does not read: a new session on it
    /// would wait as long.
    pub fn stalled(&self) -> bool {
        self.shared
            .stalled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the connection has ended (no new session can be opened on it).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Closes the connection: every session still open is reset.
    pub fn close(&self) {
        self.shared.closed.cancel();
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
