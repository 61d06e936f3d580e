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

use std::io;
use std::sync::Arc;

use bytes::BytesMut;

use crate::aead::{AeadError, MAX_CHUNK};
use crate::frame::{Decoder, Encoder};
use crate::key::MasterKey;
use crate::readsize::ReadSize;
use crate::replay::ReplayFilter;

mod read;
mod write;

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
