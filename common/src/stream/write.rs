//! The writing half: plaintext sealed into the write buffer (in place from a reader, or
//! from a caller's buffer) and handed to the socket in one vectored call.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use super::{EncryptedStream, WRITE_BATCH};
use crate::aead::{CHUNK_OVERHEAD, TAG_LEN};
use crate::readsize::MIN_READ;

impl<S: AsyncWrite + Unpin> EncryptedStream<S> {
    /// True when [`poll_seal_from`](Self::poll_seal_from) can seal in place: the headers
    /// are out and the socket takes vectored writes.
    pub fn seals_in_place(&self) -> bool {
        self.enc.streaming() && self.io.is_write_vectored()
    }

    /// Reads plaintext from `src` straight into the write buffer, seals it there, and
    /// starts writing it with one vectored call (lengths and tags from a side buffer):
    /// nothing is copied. `Ready(Ok(0))` at `src`'s EOF. Call only when
    /// [`seals_in_place`](Self::seals_in_place) and [`poll_drain`](Self::poll_drain) is
    /// done.
    pub fn poll_seal_from<R: AsyncRead + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        src: Pin<&mut R>,
    ) -> Poll<io::Result<usize>> {
        debug_assert!(self.run == 0 && self.seals_in_place());
        let pre = self.wbuf.len();
        self.wsize.reserve(&mut self.wbuf, MIN_READ);
        // At most one batch: its slices must stay within what one writev takes.
        let room = (self.wbuf.capacity() - pre).min(WRITE_BATCH);
        let n = match poll_read_buf(src, cx, &mut (&mut self.wbuf).limit(room)) {
            Poll::Pending => {
                // Nothing to send: start on what is sealed already, keep no buffer else.
                self.side = Vec::new();
                if pre == 0 {
                    self.wbuf = BytesMut::new();
                } else {
                    let _ = self.poll_drain(cx)?;
                }
                return Poll::Pending;
            }
            Poll::Ready(r) => r?,
        };
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        self.wsize.record(n, room);
        self.enc.seal_run(&mut self.wbuf[pre..], &mut self.side);
        (self.pre, self.run, self.written) = (pre, n, 0);
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes whatever is sealed and not yet written.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.run > 0 {
            let total = self.pre + self.run + self.side.len();
            let n = {
                let max = self.enc.max_payload();
                let slices = run_slices(
                    &self.wbuf,
                    &self.side,
                    self.pre,
                    self.run,
                    max,
                    self.written,
                );
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            if self.written >= total {
                // Done: the buffer stays for the next run (freed when the source idles).
                (self.pre, self.run, self.written) = (0, 0, 0);
                self.wbuf.clear();
                self.side.clear();
                return Poll::Ready(Ok(()));
            }
        }
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        self.wbuf = BytesMut::new();
        Poll::Ready(Ok(()))
    }
}

/// The unwritten part of a sealed run, in wire order: `wbuf[..pre]`, then for each chunk
/// its sealed length and its tag (from `side`) around its payload; `written` bytes skipped.
fn run_slices<'a>(
    wbuf: &'a [u8],
    side: &'a [u8],
    pre: usize,
    run: usize,
    max: usize,
    written: usize,
) -> Vec<IoSlice<'a>> {
    let pieces = wbuf[pre..pre + run]
        .chunks(max)
        .zip(side.chunks(CHUNK_OVERHEAD));
    let segments = std::iter::once(&wbuf[..pre]).chain(pieces.flat_map(|(piece, side)| {
        let (len, tag) = side.split_at(2 + TAG_LEN);
        [len, piece, tag]
    }));
    let mut out = Vec::with_capacity(1 + 3 * run.div_ceil(max));
    let mut skip = written;
    for s in segments {
        let keep = &s[skip.min(s.len())..];
        skip -= s.len() - keep.len();
        if !keep.is_empty() {
            out.push(IoSlice::new(keep));
        }
    }
    out
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EncryptedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(WRITE_BATCH);
        this.enc.encode(&buf[..n], &mut this.wbuf);
        // Start the write now; whatever the socket does not take is written by the next
        // call or by flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
