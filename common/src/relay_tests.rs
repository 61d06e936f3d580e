use super::*;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn half_close_then_answer() {
    let (mut client, mut a) = duplex(64);
    let (mut b, mut target) = duplex(64);
    let relay = tokio::spawn(async move { relay(&mut a, &mut b, Duration::from_secs(5)).await });
    client.write_all(b"question").await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut q = Vec::new();
    target.read_to_end(&mut q).await.expect("target sees EOF");
    assert_eq!(q, b"question");
    target.write_all(b"answer after EOF").await.expect("answer");
    drop(target);
    let mut ans = Vec::new();
    client.read_to_end(&mut ans).await.expect("answer arrives");
    assert_eq!(ans, b"answer after EOF");
    let (moved, r) = relay.await.expect("join");
    r.expect("clean end");
    assert_eq!((moved.a_to_b, moved.b_to_a), (8, 16));
}

/// A pipe end that takes at most `max` bytes per write; vectored writes (counted) if
/// `vectored`.
struct Vectored {
    io: tokio::io::DuplexStream,
    max: usize,
    vectored: bool,
    calls: usize,
}

impl AsyncRead for Vectored {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Vectored {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        Pin::new(&mut this.io).poll_write(cx, &buf[..buf.len().min(this.max)])
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut gathered = Vec::new();
        for b in bufs {
            gathered.extend_from_slice(&b[..b.len().min(this.max - gathered.len())]);
        }
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &gathered))?;
        this.calls += 1;
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        self.vectored
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn tunnel_relay_is_byte_exact_both_ways_sealed_in_place_or_copied() {
    use crate::aead::Method;
    use crate::key::MasterKey;
    for (method, max, vectored) in [
        (Method::ChaCha20IetfPoly1305, 7, true),
        (Method::Aes256Gcm, 1000, true),
        (Method::ChaCha20IetfPoly1305, 1 << 20, true),
        (Method::Blake3ChaCha20Poly1305, 5000, true),
        (Method::ChaCha20IetfPoly1305, 1 << 20, false),
    ] {
        let key = MasterKey::from_password(method, "pw");
        let (client, mut a) = duplex(1 << 16);
        let (b, far) = duplex(1 << 16);
        let io = Vectored {
            io: b,
            max,
            vectored,
            calls: 0,
        };
        let mut tunnel = EncryptedStream::new(io, &key);
        // The request header goes first, through the plain path (2022: with the
        // first payload); the rest is sealed in place.
        tunnel.buffer(&[1, 127, 0, 0, 1, 0, 80]);
        let mut far = EncryptedStream::from_parts(
            far,
            crate::frame::Encoder::response(&key, tunnel.salt()),
            crate::frame::Decoder::new(&key),
            bytes::BytesMut::new(),
        );
        let relay = tokio::spawn(async move {
            let r = relay_tunnel(&mut a, &mut tunnel, Duration::from_secs(5)).await;
            (r, tunnel.get_ref().calls)
        });
        let up: Vec<u8> = (0..300_000u32).map(|i| (i % 247) as u8).collect();
        let down: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
        let writer = crate::test_util::spawn_app(client, up.clone());
        let mut q = Vec::new();
        far.read_to_end(&mut q).await.expect("far end reads to EOF");
        let want = [&[1u8, 127, 0, 0, 1, 0, 80][..], &up].concat();
        assert!(q == want, "{method}/{max}: upload differs");
        // The answer comes after the app's half-close.
        far.write_all(&down).await.expect("answer");
        far.shutdown().await.expect("close");
        let back = writer.await.expect("join");
        assert!(back == down, "{method}/{max}: download differs");
        let ((moved, r), calls) = relay.await.expect("join");
        r.expect("clean end");
        assert_eq!((moved.a_to_b, moved.b_to_a), (300_000, 700_000));
        assert_eq!(
            calls > 0,
            vectored,
            "{method}/{max}: {calls} vectored writes"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_fires_only_without_traffic() {
    let (mut client, mut a) = duplex(64);
    let (mut b, mut target) = duplex(64);
    let relay = tokio::spawn(async move { relay(&mut a, &mut b, Duration::from_secs(10)).await });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        client.write_all(b"x").await.expect("write");
        let mut one = [0u8; 1];
        target.read_exact(&mut one).await.expect("relayed");
    }
    assert!(
        !relay.is_finished(),
        "traffic every 6 s keeps a 10 s idle timer alive"
    );
    let (_, r) = relay.await.expect("join");
    assert_eq!(r.expect_err("idle").kind(), io::ErrorKind::TimedOut);
}
