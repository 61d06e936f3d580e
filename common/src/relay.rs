//! Copy both ways until both sides are done, keeping half-close, with an idle timeout.
//!
//! When one side reaches EOF the other side's write half is shut down and the other
//! direction keeps copying, so a FIN travels through the tunnel as a FIN. The idle timer
//! counts activity in either direction: a long download with a silent upload side stays up.
//!
//! Buffers are taken only while data flows: a direction whose source has nothing to read
//! gives its buffer back, so an idle tunnel holds none (reads go into spare capacity, so
//! a fresh buffer costs an allocation, not a memset). Each buffer is sized by what the
//! previous reads of that direction returned.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use crate::readsize::ReadSize;
use crate::stream::EncryptedStream;

/// The largest copy buffer per direction: 64 AEAD chunks (1 MiB), sealed and written in one
/// call. A direction starts small and grows to this while it streams (see `readsize`).
pub const RELAY_BUF: usize = 64 * crate::aead::MAX_PAYLOAD;

/// What a finished relay moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Transferred {
    /// Bytes read from `a` (and written to `b`).
    pub a_to_b: u64,
    /// Bytes read from `b` (and written to `a`).
    pub b_to_a: u64,
}

/// The one line every tunnel logs when it ends: bytes each way (`up`: from the app or
/// client, `down`: back to it), how long it lasted, and why it ended if not cleanly.
pub fn report(what: &str, up: u64, down: u64, started: std::time::Instant, result: io::Result<()>) {
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => tracing::info!(up, down, secs, "{what} closed"),
        Err(e) => tracing::info!(up, down, secs, "{what} closed: {e}"),
    }
}

/// A relay ([`relay`] or [`relay_tunnel`]) that logs its [`report`] when it ends: every
/// tunnel and relayed upgrade, on both ends, closes through here. (A combinator, not an
/// `async fn`: the relay's state is laid out once, not once as an argument and again as
/// the future awaited.)
pub fn reported<'a, F>(what: &'a str, relay: F) -> impl std::future::Future<Output = ()> + 'a
where
    F: std::future::Future<Output = (Transferred, io::Result<()>)> + 'a,
{
    use futures_util::FutureExt as _;
    let started = std::time::Instant::now();
    relay.map(move |(moved, result)| report(what, moved.a_to_b, moved.b_to_a, started, result))
}

/// One direction of the copy.
struct Half {
    buf: BytesMut,
    size: ReadSize,
    read_done: bool,
    need_flush: bool,
    done: bool,
    moved: u64,
}

impl Half {
    fn new() -> Self {
        Half {
            buf: BytesMut::new(),
            size: ReadSize::new(RELAY_BUF),
            read_done: false,
            // The writer may hold bytes buffered before the relay began (a request header
            // waiting for the app's first bytes): the first idle flushes them.
            need_flush: true,
            done: false,
            moved: 0,
        }
    }

    /// Moves bytes from `r` to `w` until `r` is pending (then flushes and frees the
    /// buffer) or done (then shuts `w` down). `Ready(Ok)` once finished.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        active: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.buf.is_empty() && !self.read_done {
                self.size.reserve(&mut self.buf, 1);
                let room = self.buf.capacity() - self.buf.len();
                match poll_read_buf(r.as_mut(), cx, &mut self.buf) {
                    Poll::Pending => return self.poll_idle(cx, w),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(0)) => self.read_done = true,
                    Poll::Ready(Ok(n)) => {
                        self.size.record(n, room);
                        self.moved += n as u64;
                        *active = true;
                    }
                }
            }
            while !self.buf.is_empty() {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.buf.advance(n);
                self.need_flush = true;
            }
            if self.read_done {
                return self.poll_finish(cx, w);
            }
        }
    }

    /// The source has nothing now: flush what was written since the last flush, give the
    /// buffer back while the tunnel idles, and wait.
    fn poll_idle<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        w: Pin<&mut W>,
    ) -> Poll<io::Result<()>> {
        if self.need_flush {
            ready!(w.poll_flush(cx))?;
            self.need_flush = false;
        }
        self.buf = BytesMut::new();
        Poll::Pending
    }

    /// The source is done and all of it written: flush and shut `w` down.
    fn poll_finish<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<()>> {
        ready!(w.as_mut().poll_flush(cx))?;
        ready!(w.poll_shutdown(cx))?;
        self.done = true;
        self.buf = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// `poll_copy` into a tunnel that seals what it reads where it lies (when it can; else
    /// the plain copy).
    fn poll_copy_sealing<R, S>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        w: &mut EncryptedStream<S>,
        active: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        S: AsyncWrite + Unpin,
    {
        loop {
            if self.done || !self.buf.is_empty() || !w.seals_in_place() {
                return self.poll_copy(cx, r, Pin::new(w), active);
            }
            ready!(w.poll_drain(cx))?;
            if self.read_done {
                return self.poll_finish(cx, Pin::new(w));
            }
            match w.poll_seal_from(cx, r.as_mut()) {
                Poll::Pending => return self.poll_idle(cx, Pin::new(w)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => self.read_done = true,
                Poll::Ready(Ok(n)) => {
                    self.moved += n as u64;
                    self.need_flush = true;
                    *active = true;
                }
            }
        }
    }

    /// `poll_copy` for a source that holds its own buffer (an `EncryptedStream`, whose
    /// opened chunks are written on from where they were opened).
    fn poll_copy_buf<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        active: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncBufRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        while !self.read_done {
            let data = match r.as_mut().poll_fill_buf(cx) {
                Poll::Pending => return self.poll_idle(cx, w),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(data)) => data,
            };
            if data.is_empty() {
                self.read_done = true;
                break;
            }
            let n = ready!(w.as_mut().poll_write(cx, data))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.as_mut().consume(n);
            self.moved += n as u64;
            self.need_flush = true;
            *active = true;
        }
        self.poll_finish(cx, w)
    }
}

/// Relays `a` ⇄ `b` until both directions end, or nothing moved for `idle`.
/// Returns the bytes moved; the error (idle timeout: `TimedOut`) comes with them.
pub async fn relay<A, B>(a: &mut A, b: &mut B, idle: Duration) -> (Transferred, io::Result<()>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    drive(idle, |cx, ab, ba, active| {
        let r1 = ab.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b), active);
        let r2 = ba.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a), active);
        (r1, r2)
    })
    .await
}

/// [`relay`] for a plain side `a` and a tunnel `b`: what `a` sends is read straight into
/// the tunnel's write buffer and sealed there, what the tunnel opens is written to `a` from
/// where it was opened.
pub async fn relay_tunnel<A, S>(
    a: &mut A,
    b: &mut EncryptedStream<S>,
    idle: Duration,
) -> (Transferred, io::Result<()>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive(idle, |cx, ab, ba, active| {
        let r1 = ab.poll_copy_sealing(cx, Pin::new(&mut *a), b, active);
        let r2 = ba.poll_copy_buf(cx, Pin::new(&mut *b), Pin::new(&mut *a), active);
        (r1, r2)
    })
    .await
}

type Step = Poll<io::Result<()>>;

/// Polls both directions with `step` until both are done, one fails, or the idle timer
/// (pushed out by every move) fires.
async fn drive<F>(idle: Duration, mut step: F) -> (Transferred, io::Result<()>)
where
    F: FnMut(&mut Context<'_>, &mut Half, &mut Half, &mut bool) -> (Step, Step),
{
    let (mut ab, mut ba) = (Half::new(), Half::new());
    let mut deadline = Instant::now() + idle;
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let result = poll_fn(|cx| {
        let mut active = false;
        let (r1, r2) = step(cx, &mut ab, &mut ba, &mut active);
        if let Poll::Ready(Err(e)) = r1 {
            return Poll::Ready(Err(e));
        }
        if let Poll::Ready(Err(e)) = r2 {
            return Poll::Ready(Err(e));
        }
        if r1.is_ready() && r2.is_ready() {
            return Poll::Ready(Ok(()));
        }
        if active {
            // Push the deadline out only now and then: resetting a timer is not free.
            let now = Instant::now();
            if now + idle > deadline + idle / 8 {
                deadline = now + idle;
                sleep.as_mut().reset(deadline);
            }
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "relay idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    (
        Transferred {
            a_to_b: ab.moved,
            b_to_a: ba.moved,
        },
        result,
    )
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
