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

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, PollSemaphore, PollSender};

use crate::TargetAddr;

const NEW: u8 = 1;
const KEEP: u8 = 2;
const END: u8 = 3;
const KEEP_ALIVE: u8 = 4;
const OPT_DATA: u8 = 1;
const OPT_ERROR: u8 = 2;

/// v2ray refuses longer metadata.
const MAX_META: usize = 512;
/// Data per frame at most (as v2ray splits streams).
pub const MAX_DATA: usize = 8 * 1024;
/// Frames a session queues before the connection's reader waits for it.
const SESSION_QUEUE: usize = 8;
/// Frames queued for the connection's writer.
const WRITE_QUEUE: usize = 64;
/// Frames one session may have queued for the writer: a bulk session cannot fill the
/// queue, so another session's frame waits behind a few of its frames, not dozens.
const SESSION_IN_FLIGHT: usize = 4;

/// A frame for the writer, with the session's share it holds until written.
type Out = (Bytes, Option<OwnedSemaphorePermit>);

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The session.
    pub id: u16,
    /// New, Keep, End or KeepAlive.
    pub status: u8,
    /// The error option (on End: a reset).
    pub error: bool,
    /// New: where the session goes (v2ray-plugin's server ignores it).
    pub target: Option<TargetAddr>,
    /// The data, if any.
    pub data: Bytes,
}

/// Encodes one frame.
pub fn encode(
    out: &mut BytesMut,
    id: u16,
    status: u8,
    target: Option<&TargetAddr>,
    error: bool,
    data: &[u8],
) {
    let start = out.len();
    out.put_u16(0);
    out.put_u16(id);
    out.put_u8(status);
    let option = if data.is_empty() { 0 } else { OPT_DATA } | if error { OPT_ERROR } else { 0 };
    out.put_u8(option);
    if status == NEW {
        let target = target
            .cloned()
            .unwrap_or(TargetAddr::Ip(SocketAddr::from(([127, 0, 0, 1], 0))));
        out.put_u8(1); // TCP
        out.put_u16(target.port());
        match &target {
            TargetAddr::Ip(SocketAddr::V4(a)) => {
                out.put_u8(1);
                out.put_slice(&a.ip().octets());
            }
            TargetAddr::Ip(SocketAddr::V6(a)) => {
                out.put_u8(3);
                out.put_slice(&a.ip().octets());
            }
            TargetAddr::Domain(name, _) => {
                out.put_u8(2);
                out.put_u8(name.len().min(255) as u8);
                out.put_slice(&name.as_bytes()[..name.len().min(255)]);
            }
        }
    }
    let meta_len = (out.len() - start - 2) as u16;
    out[start..start + 2].copy_from_slice(&meta_len.to_be_bytes());
    if !data.is_empty() {
        out.put_u16(data.len() as u16);
        out.put_slice(data);
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("mux frame: {what}"))
}

/// Reads one frame; `Ok(None)` at a clean end between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 2];
    match r.read(&mut len[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut len[1..]).await?,
    };
    let meta_len = u16::from_be_bytes(len) as usize;
    if !(4..=MAX_META).contains(&meta_len) {
        return Err(bad(&format!("metadata length {meta_len}")));
    }
    let mut meta = [0u8; MAX_META];
    r.read_exact(&mut meta[..meta_len]).await?;
    let mut frame = parse_meta(&meta[..meta_len])?;
    if meta[3] & OPT_DATA != 0 {
        let n = r.read_u16().await? as usize;
        let mut data = BytesMut::zeroed(n);
        r.read_exact(&mut data).await?;
        frame.data = data.freeze();
    }
    Ok(Some(frame))
}

/// The metadata of one frame (without its length).
fn parse_meta(mut m: &[u8]) -> io::Result<Frame> {
    if m.len() < 4 {
        return Err(bad("short metadata"));
    }
    let id = m.get_u16();
    let status = m.get_u8();
    let option = m.get_u8();
    let target = match status {
        NEW => Some(parse_target(m)?),
        KEEP | END | KEEP_ALIVE => None,
        other => return Err(bad(&format!("unknown status {other}"))),
    };
    Ok(Frame {
        id,
        status,
        error: option & OPT_ERROR != 0,
        target,
        data: Bytes::new(),
    })
}

fn parse_target(mut m: &[u8]) -> io::Result<TargetAddr> {
    if m.len() < 4 {
        return Err(bad("short New"));
    }
    let network = m.get_u8();
    if network != 1 && network != 2 {
        return Err(bad(&format!("network {network}")));
    }
    let port = m.get_u16();
    let ip = match m.get_u8() {
        1 if m.len() >= 4 => IpAddr::from(<[u8; 4]>::try_from(&m[..4]).unwrap_or_default()),
        3 if m.len() >= 16 => IpAddr::from(<[u8; 16]>::try_from(&m[..16]).unwrap_or_default()),
        2 if !m.is_empty() && m.len() > m[0] as usize => {
            let name = std::str::from_utf8(&m[1..=m[0] as usize]).map_err(|_| bad("name"))?;
            return Ok(TargetAddr::Domain(name.to_owned(), port));
        }
        _ => return Err(bad("address")),
    };
    Ok(TargetAddr::Ip(SocketAddr::new(ip, port)))
}

/// The target that asks a Shadowsocks server to carry Mux.Cool inside the tunnel
/// (v2ray's name for it).
pub const CARRIER: (&str, u16) = ("v1.mux.cool", 9527);

/// Whether `target` asks for a shared connection (see [`CARRIER`]).
pub fn is_carrier(target: &TargetAddr) -> bool {
    matches!(target, TargetAddr::Domain(name, port) if name == CARRIER.0 && *port == CARRIER.1)
}

/// Whether `head` (at least 10 bytes) is how a Mux.Cool client opens: a New frame's
/// metadata of a consistent length. A Shadowsocks salt looks like this about once in
/// 10⁹ (random bytes matching five fields).
pub fn looks_like_mux(head: &[u8]) -> bool {
    if head.len() < 10 {
        return false;
    }
    let meta_len = u16::from_be_bytes([head[0], head[1]]) as usize;
    let expected = match head[9] {
        1 => 12,
        3 => 24,
        2 => 9 + head.get(10).map_or(0, |n| *n as usize),
        _ => return false,
    };
    head[4] == NEW && matches!(head[6], 1 | 2) && head[5] & !3 == 0 && meta_len == expected
}

/// One session's end of the connection, kept by the connection's reader.
struct Slot {
    /// Data for the session; `None` once the peer ended it.
    tx: Option<mpsc::Sender<Bytes>>,
    reset: Arc<AtomicBool>,
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
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Slot>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
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
            },
        );
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        MuxStream {
            shared: self.clone(),
            id,
            rx,
            rbuf: Bytes::new(),
            reset,
            out: PollSender::new(self.out.clone()),
            share: PollSemaphore::new(Arc::new(tokio::sync::Semaphore::new(SESSION_IN_FLIGHT))),
            permit: None,
            opened: server_side,
            write_closed: false,
            read_done: false,
        }
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

async fn write_loop<W: AsyncWrite>(
    shared: Arc<Shared>,
    w: W,
    mut out: mpsc::Receiver<Out>,
    mut resets: mpsc::UnboundedReceiver<Bytes>,
    idle: Duration,
) {
    tokio::pin!(w);
    let mut tick = tokio::time::interval(idle.max(Duration::from_millis(100)) / 4);
    let result: io::Result<()> = async {
        loop {
            let first = tokio::select! {
                Some((f, _share)) = out.recv() => f,
                Some(f) = resets.recv() => f,
                _ = shared.closed.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    let since = *shared.idle_since.lock().unwrap_or_else(|p| p.into_inner());
                    if since.is_some_and(|t| t.elapsed() >= idle) {
                        return Ok(());
                    }
                    continue;
                }
            };
            w.write_all(&first).await?;
            // What else is queued leaves with it, then one flush.
            loop {
                if let Ok((f, _share)) = out.try_recv() {
                    w.write_all(&f).await?;
                } else if let Ok(f) = resets.try_recv() {
                    w.write_all(&f).await?;
                } else {
                    break;
                }
            }
            w.flush().await?;
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("mux connection: {e}");
    }
    shared.closed.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
}

async fn read_loop<R: AsyncRead>(
    shared: Arc<Shared>,
    r: R,
    accepted: Option<mpsc::Sender<Accepted>>,
    max_sessions: usize,
) {
    let r = tokio::io::BufReader::with_capacity(16 * 1024, r);
    tokio::pin!(r);
    let result: io::Result<()> = async {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut r) => f?,
                _ = shared.closed.cancelled() => return Ok(()),
            };
            let Some(frame) = frame else { return Ok(()) };
            deliver(&shared, frame, accepted.as_ref(), max_sessions).await?;
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::debug!("mux connection: {e}");
    }
    shared.closed.cancel();
    // Every session still open ends as reset (the connection was lost under it), unless
    // the peer had ended it.
    for (_, slot) in shared.lock().drain() {
        if slot.tx.is_some() {
            slot.reset.store(true, Relaxed);
        }
    }
}

async fn deliver(
    shared: &Arc<Shared>,
    frame: Frame,
    accepted: Option<&mpsc::Sender<Accepted>>,
    max_sessions: usize,
) -> io::Result<()> {
    let id = frame.id;
    match frame.status {
        KEEP_ALIVE => return Ok(()),
        NEW => {
            let Some(accepted) = accepted else {
                return Err(bad("New from the server"));
            };
            let known = shared.lock().contains_key(&id);
            if known || shared.lock().len() >= max_sessions {
                tracing::debug!("mux: session {id} refused (in use, or too many open)");
                send_reset(shared, id);
                return Ok(());
            }
            let stream = shared.add(id, true);
            if accepted.send((stream, frame.target)).await.is_err() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
        END => {
            // The peer is done writing (with the error option: the session was reset).
            if let Some(s) = shared.lock().get_mut(&id) {
                if frame.error {
                    s.reset.store(true, Relaxed);
                }
                s.tx = None;
            }
            return Ok(());
        }
        _ => {}
    }
    if frame.data.is_empty() {
        return Ok(());
    }
    let tx = match shared.lock().get(&id) {
        Some(slot) => slot.tx.clone(),
        None => {
            // Not ours (ended here already): tell the peer, as v2ray does.
            send_end(shared, id);
            return Ok(());
        }
    };
    if let Some(tx) = tx {
        // The session lags: the whole connection waits for it (no flow control).
        let _ = tx.send(frame.data).await;
    }
    Ok(())
}

fn send_end(shared: &Shared, id: u16) {
    let mut b = BytesMut::with_capacity(6);
    encode(&mut b, id, END, None, false, &[]);
    let _ = shared.resets.send(b.freeze());
}

fn send_reset(shared: &Shared, id: u16) {
    let mut b = BytesMut::with_capacity(6);
    encode(&mut b, id, END, None, true, &[]);
    let _ = shared.resets.send(b.freeze());
}

/// One session: a byte stream. Shut down: End (the peer reads its end); dropped before
/// both sides ended: End with the error option (a reset).
pub struct MuxStream {
    shared: Arc<Shared>,
    id: u16,
    rx: mpsc::Receiver<Bytes>,
    rbuf: Bytes,
    reset: Arc<AtomicBool>,
    out: PollSender<Out>,
    /// This session's share of the writer's queue, and the part of it held now.
    share: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
    /// New sent (or, server side, not ours to send).
    opened: bool,
    write_closed: bool,
    read_done: bool,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MuxStream({})", self.id)
    }
}

impl MuxStream {
    /// Ends the session at once as reset (End with the error option).
    pub fn reset(self) {
        self.reset.store(true, Relaxed);
        drop(self)
    }

    fn frame(&mut self, data: &[u8], end: bool) -> Bytes {
        let mut b = BytesMut::with_capacity(data.len() + 32);
        let status = if self.opened { KEEP } else { NEW };
        if !data.is_empty() || !self.opened {
            encode(&mut b, self.id, status, None, false, data);
            self.opened = true;
        }
        if end {
            encode(&mut b, self.id, END, None, false, &[]);
        }
        b.freeze()
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.permit.is_none() {
            match self.share.poll_acquire(cx) {
                Poll::Ready(Some(p)) => self.permit = Some(p),
                Poll::Ready(None) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.out.poll_reserve(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(_)) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rbuf.is_empty() && !this.read_done {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => this.rbuf = b,
                Poll::Ready(None) => {
                    if this.reset.load(Relaxed) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "the mux session was reset",
                        )));
                    }
                    this.read_done = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.rbuf.len().min(buf.remaining());
        buf.put_slice(&this.rbuf[..n]);
        this.rbuf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.reset.load(Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        std::task::ready!(this.poll_send(cx))?;
        let n = buf.len().min(MAX_DATA);
        let frame = this.frame(&buf[..n], false);
        let share = this.permit.take();
        this.out
            .send_item((frame, share))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's writer flushes whenever its queue empties.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_send(cx))?;
        let frame = this.frame(&[], true);
        this.write_closed = true;
        let share = this.permit.take();
        this.out
            .send_item((frame, share))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let peer_ended = match self.shared.lock().get(&self.id) {
            Some(s) => s.tx.is_none(),
            None => true,
        };
        let clean = self.write_closed && peer_ended && !self.reset.load(Relaxed);
        if self.opened && !clean && !self.shared.closed.is_cancelled() {
            send_reset(&self.shared, self.id);
        }
        self.shared.remove(self.id);
    }
}

#[cfg(test)]
#[path = "mux_tests.rs"]
mod tests;
