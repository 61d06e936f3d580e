//! One session of a Mux.Cool connection, as a byte stream.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::{PollSemaphore, PollSender};

use super::frame::{encode, END, KEEP, MAX_DATA, NEW};
use super::loops::send_reset;
use super::{Out, Shared};

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
    pub(super) fn new(
        shared: Arc<Shared>,
        id: u16,
        rx: mpsc::Receiver<Bytes>,
        reset: Arc<AtomicBool>,
        out: PollSender<Out>,
        opened: bool,
    ) -> MuxStream {
        MuxStream {
            shared,
            id,
            rx,
            rbuf: Bytes::new(),
            reset,
            out,
            share: PollSemaphore::new(Arc::new(tokio::sync::Semaphore::new(
                super::SESSION_IN_FLIGHT,
            ))),
            permit: None,
            opened,
            write_closed: false,
            read_done: false,
        }
    }

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
