//! `EncryptedStream<S>`: the only place where AEAD framing meets I/O.
//!
//! Reads pull ciphertext in large reads and open every whole chunk in one pass, each
//! chunk's plaintext written down next to the previous one's, so a relay writes the
//! plaintext of many chunks on with one call and nothing is copied (`AsyncBufRead`).
//! Writes either read the plaintext straight into the write buffer and seal it there, the
//! chunk lengths and tags going out from a side buffer in the same vectored write
//! (`poll_seal_from`, what the relay uses), or seal a caller's buffer (several chunks)
//! into the write buffer (`AsyncWrite`); either way one call hands it to the socket.
//! Buffers are released whenever their source runs dry, so an idle tunnel holds no buffer
//! memory.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use std::sync::Arc;

use crate::aead::{AeadError, Decoder, Encoder, MasterKey, CHUNK_OVERHEAD, MAX_CHUNK, TAG_LEN};
use crate::readsize::{ReadSize, MIN_READ};
use crate::replay::ReplayFilter;

/// The most ciphertext one read asks for (reads start smaller: see `readsize`).
const READ_SIZE: usize = 64 * MAX_CHUNK;
/// The most plaintext one `poll_write` seals.
const WRITE_BATCH: usize = 64 * crate::aead::MAX_PAYLOAD;

impl From<AeadError> for io::Error {
    fn from(e: AeadError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A Shadowsocks AEAD stream over `S`: plaintext in, ciphertext on the wire.
pub struct EncryptedStream<S> {
    io: S,
    enc: Encoder,
    dec: Decoder,
    /// Received bytes: `[..opened]` plaintext not yet handed out, then spent chunk framing
    /// up to `unopened`, then ciphertext not yet opened.
    rbuf: BytesMut,
    opened: usize,
    unopened: usize,
    /// Plaintext that came with a header (SIP022 address and first payload), handed out
    /// before `rbuf`'s.
    plain: BytesMut,
    /// Sealed bytes not yet written. During a sealed run (`run > 0`): `[..pre]` sealed
    /// before it, then `run` bytes of payload sealed where they were read.
    wbuf: BytesMut,
    /// A sealed run's chunk lengths and tags (see `Encoder::seal_run`).
    side: Vec<u8>,
    pre: usize,
    run: usize,
    /// How much of the sealed run has been written.
    written: usize,
    /// How much the next read of plaintext into a sealed run asks for.
    wsize: ReadSize,
    /// How much the next read of ciphertext asks for.
    rsize: ReadSize,
    read_eof: bool,
    /// The stream failed to authenticate; every later read fails the same way.
    failed: Option<AeadError>,
    /// Where the peer's salt is checked for replay, until it has been.
    salt_filter: Option<Arc<ReplayFilter>>,
}

impl<S> EncryptedStream<S> {
    /// A client's stream: random salt for our direction (the request), the server's
    /// response expected back (for SIP022, checked to answer this very request).
    pub fn new(io: S, key: &MasterKey) -> Self {
        let enc = Encoder::new(key);
        let dec = Decoder::response(key, enc.salt());
        Self::from_parts(io, enc, dec, BytesMut::new())
    }

    /// Resumes a stream whose handshake was read by hand: `rbuf` holds ciphertext the
    /// decoder has not seen yet, and goes first.
    pub fn from_parts(io: S, enc: Encoder, dec: Decoder, rbuf: BytesMut) -> Self {
        EncryptedStream {
            io,
            enc,
            dec,
            rbuf,
            opened: 0,
            unopened: 0,
            plain: BytesMut::new(),
            wbuf: BytesMut::new(),
            side: Vec::new(),
            pre: 0,
            run: 0,
            written: 0,
            wsize: ReadSize::new(WRITE_BATCH),
            rsize: ReadSize::new(READ_SIZE),
            read_eof: false,
            failed: None,
            salt_filter: None,
        }
    }

    /// The underlying I/O.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Seals `plain` into the write buffer without writing (e.g. a request header that
    /// should leave with the first payload). Flush to send it.
    pub fn buffer(&mut self, plain: &[u8]) {
        self.enc.encode(plain, &mut self.wbuf);
    }

    /// Refuse the stream if the peer's salt is already in `filter` (and record it).
    pub fn check_peer_salt(&mut self, filter: Arc<ReplayFilter>) {
        self.salt_filter = Some(filter);
    }

    /// Client: ask burrow-server to answer as soon as the target is connected (SIP022
    /// says so in the request's padding; SIP004 servers of ours always do).
    pub fn ask_confirmation(&mut self) {
        self.enc.ask_confirmation();
    }

    /// Server: buffer the "target connected" announcement (flush to send it).
    pub fn announce(&mut self) {
        self.enc.announce(&mut self.wbuf);
    }

    /// Our direction's salt.
    pub fn salt(&self) -> &[u8] {
        self.enc.salt()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::Method;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn round_trip_with_half_close_over_a_tiny_pipe() {
        let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
        // A 7-byte pipe forces partial reads and writes everywhere.
        let (a, b) = duplex(7);
        let a = EncryptedStream::new(a, &key);
        let mut b = EncryptedStream::new(b, &key);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = crate::test_util::spawn_app(a, data.clone());
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, data);
        b.write_all(b"after eof").await.expect("answer");
        b.shutdown().await.expect("shutdown");
        assert_eq!(writer.await.expect("join"), b"after eof");
    }

    #[tokio::test]
    async fn a_waiting_reader_keeps_only_the_partial_chunk() {
        use futures_util::FutureExt;
        let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
        let mut enc = Encoder::new(&key);
        let mut wire = BytesMut::new();
        enc.encode(&vec![7u8; 3 << 20], &mut wire);
        // Everything but the end of the last chunk arrives; the rest is late.
        let (mut tx, rx) = duplex(4 << 20);
        tx.write_all(&wire[..wire.len() - 100])
            .await
            .expect("write");
        let mut s = EncryptedStream::new(rx, &key);
        let mut buf = vec![0u8; 1 << 20];
        while let Some(r) = s.read(&mut buf).now_or_never() {
            assert!(r.expect("read") > 0);
        }
        assert!(!s.rbuf.is_empty(), "part of the last chunk is held");
        assert!(
            s.rbuf.capacity() <= 4 * s.rbuf.len().max(crate::readsize::MIN_READ),
            "holds {} bytes of capacity for {} waiting",
            s.rbuf.capacity(),
            s.rbuf.len()
        );
    }

    #[tokio::test]
    async fn whole_chunks_are_handed_out_together_and_a_bad_one_after_them() {
        use tokio::io::AsyncBufReadExt;
        for method in Method::ALL {
            let key = MasterKey::from_password(method, "pw");
            let mut enc = Encoder::new(&key);
            let mut wire = BytesMut::new();
            // An address first: a Shadowsocks 2022 request carries it in its header.
            let head = [1u8, 127, 0, 0, 1, 0, 80, b'h', b'i'];
            let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
            enc.encode(&head, &mut wire);
            enc.encode(&data, &mut wire);
            enc.encode(&data, &mut wire);
            enc.encode(b"tail", &mut wire);
            let last = wire.len() - 1;
            wire[last] ^= 1;
            let mut s = EncryptedStream::from_parts(
                &wire[..],
                Encoder::new(&key),
                Decoder::new(&key),
                BytesMut::new(),
            );
            let want = [&head[..], &data, &data].concat();
            let (mut got, mut widest) = (Vec::new(), 0);
            while got.len() < want.len() {
                let chunk = s.fill_buf().await.expect("good chunks");
                assert!(!chunk.is_empty(), "{method}: early EOF");
                got.extend_from_slice(chunk);
                widest = widest.max(chunk.len());
                let n = chunk.len();
                s.consume(n);
            }
            assert!(got == want, "{method}: plaintext differs");
            // Reads grow to 1 MiB: once they do, one fill holds many chunks.
            assert!(
                widest > 2 * method.max_payload(),
                "{method}: at most {widest} bytes per fill"
            );
            let err = s.fill_buf().await.expect_err("tampered tail");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{method}");
        }
    }

    #[tokio::test]
    async fn truncated_chunk_is_an_error_not_eof() {
        let key = MasterKey::from_password(Method::Aes256Gcm, "pw");
        let mut enc = Encoder::new(&key);
        let mut wire = BytesMut::new();
        enc.encode(b"hello", &mut wire);
        let cut = &wire[..wire.len() - 3];
        let mut s = EncryptedStream::new(cut, &key);
        let mut out = Vec::new();
        let err = s.read_to_end(&mut out).await.expect_err("truncated");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn tampered_stream_is_invalid_data() {
        let key = MasterKey::from_password(Method::Aes256Gcm, "pw");
        let mut enc = Encoder::new(&key);
        let mut wire = BytesMut::new();
        enc.encode(b"hello", &mut wire);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut s = EncryptedStream::new(&wire[..], &key);
        let mut out = Vec::new();
        let err = s.read_to_end(&mut out).await.expect_err("tampered");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_replayed_peer_salt_is_refused() {
        let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
        let mut enc = Encoder::new(&key);
        let mut wire = BytesMut::new();
        enc.encode(b"hello", &mut wire);
        let filter = Arc::new(ReplayFilter::window(std::time::Duration::from_secs(60)));
        for (i, want_ok) in [(0, true), (1, false)] {
            let mut s = EncryptedStream::from_parts(
                &wire[..],
                Encoder::new(&key),
                Decoder::new(&key),
                BytesMut::new(),
            );
            s.check_peer_salt(filter.clone());
            let mut out = Vec::new();
            let r = s.read_to_end(&mut out).await;
            assert_eq!(r.is_ok(), want_ok, "attempt {i}: {r:?}");
        }
    }
}
