//! The reading half: ciphertext in, chunks opened in place, plaintext handed out.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::io::poll_read_buf;

use super::EncryptedStream;
use crate::aead::AeadError;
use crate::readsize::MIN_READ;

impl<S: AsyncRead + Unpin> EncryptedStream<S> {
    /// Waits until the peer has sent at least one byte (`Ok(true)`) or closed (`Ok(false)`),
    /// without consuming anything. Used to learn that the server dialled the target.
    pub async fn peer_answered(&mut self) -> io::Result<bool> {
        std::future::poll_fn(|cx| {
            if !self.rbuf.is_empty() || !self.plain.is_empty() {
                return Poll::Ready(Ok(true));
            }
            if self.read_eof {
                return Poll::Ready(Ok(false));
            }
            self.rsize.reserve(&mut self.rbuf, 1);
            let n = ready!(poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf))?;
            self.read_eof = n == 0;
            Poll::Ready(Ok(n > 0))
        })
        .await
    }
}

impl<S> EncryptedStream<S> {
    /// Makes plaintext ready from what was already received, without I/O: `Ok(true)` if
    /// some is. An error comes only once the plaintext before it has been handed out.
    fn open_buffered(&mut self) -> io::Result<bool> {
        loop {
            if !self.plain.is_empty() || self.opened > 0 {
                return Ok(true);
            }
            if let Some(e) = self.failed {
                return Err(e.into());
            }
            // Everything opened so far was handed out: drop it and its framing.
            self.rbuf.advance(self.unopened);
            self.unopened = 0;
            if self.dec.streaming() {
                let (mut from, mut to) = (0, 0);
                let r = self.dec.open_run(&mut self.rbuf, &mut from, &mut to);
                (self.unopened, self.opened) = (from, to);
                if let Err(e) = r {
                    self.failed = Some(e);
                } else if !self.salt_is_fresh() {
                    (self.unopened, self.opened) = (0, 0);
                    continue;
                }
                if from > 0 || self.failed.is_some() {
                    continue;
                }
                return Ok(false);
            }
            let decoded = self.dec.decode(&mut self.rbuf);
            if decoded.is_ok() && !self.salt_is_fresh() {
                continue;
            }
            match decoded {
                Ok(Some(chunk)) => self.plain = chunk,
                Ok(None) if self.dec.streaming() => {}
                Ok(None) => return Ok(false),
                Err(e) => self.failed = Some(e),
            }
        }
    }

    /// Checks the peer's salt against the filter once something it keys has
    /// authenticated (junk never enters the filter); `false` (and the stream failed) if
    /// it was seen before.
    fn salt_is_fresh(&mut self) -> bool {
        let Some(filter) = &self.salt_filter else {
            return true;
        };
        match filter.record_peer_salt(&self.dec) {
            None => true,
            Some(true) => {
                self.salt_filter = None;
                true
            }
            Some(false) => {
                self.failed = Some(AeadError::BadHeader("replayed salt"));
                false
            }
        }
    }

    /// The plaintext ready to hand out (after `open_buffered` said there is some).
    fn ready(&self) -> &[u8] {
        if self.plain.is_empty() {
            &self.rbuf[..self.opened]
        } else {
            &self.plain
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncBufRead for EncryptedStream<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        loop {
            if this.open_buffered()? {
                return Poll::Ready(Ok(this.ready()));
            }
            if this.read_eof {
                if this.rbuf.is_empty() && this.dec.at_boundary() {
                    return Poll::Ready(Ok(&[]));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "encrypted stream ended inside a chunk",
                )));
            }
            let need = this.dec.needed(this.rbuf.len());
            this.rsize.reserve(&mut this.rbuf, need);
            let room = this.rbuf.capacity() - this.rbuf.len();
            match poll_read_buf(Pin::new(&mut this.io), cx, &mut this.rbuf) {
                Poll::Pending => {
                    // Waiting: keep no more than the part of a chunk already here.
                    if this.rbuf.is_empty() {
                        this.rbuf = BytesMut::new();
                    } else if this.rbuf.capacity() > 4 * this.rbuf.len().max(MIN_READ) {
                        this.rbuf = BytesMut::from(&this.rbuf[..]);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => this.read_eof = true,
                Poll::Ready(Ok(n)) => this.rsize.record(n, room),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        if !this.plain.is_empty() {
            this.plain.advance(amt.min(this.plain.len()));
            if this.plain.is_empty() {
                this.plain = BytesMut::new();
            }
            return;
        }
        let amt = amt.min(this.opened);
        this.rbuf.advance(amt);
        this.opened -= amt;
        this.unopened -= amt;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EncryptedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self;
        let start = buf.filled().len();
        while buf.remaining() > 0 {
            // Hand out what is here rather than wait for more.
            let here = match this.open_buffered() {
                Ok(here) => here,
                Err(_) if buf.filled().len() > start => break,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if !here && buf.filled().len() > start {
                break;
            }
            let data = ready!(this.as_mut().poll_fill_buf(cx))?;
            if data.is_empty() {
                break;
            }
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            this.as_mut().consume(n);
        }
        Poll::Ready(Ok(()))
    }
}
