//! Copy both ways until both sides are done, keeping half-close, with an idle timeout.
//!
//! `copy_bidirectional` shuts down the write side of one end when the other reaches EOF and
//! keeps copying the other direction ("copying of data in the other direction will
//! continue"), so a FIN travels through the tunnel as a FIN. The idle timer counts
//! activity in either direction: a long download with a silent upload side stays up.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Copy buffer per direction: four AEAD chunks, sealed and written in one call.
pub const RELAY_BUF: usize = 4 * crate::aead::MAX_PAYLOAD;

/// What a finished relay moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Transferred {
    /// Bytes read from `a` (and written to `b`).
    pub a_to_b: u64,
    /// Bytes read from `b` (and written to `a`).
    pub b_to_a: u64,
}

struct Tracked<'a, S> {
    io: &'a mut S,
    epoch: Instant,
    last: &'a AtomicU64,
    read: u64,
}

impl<S> Tracked<'_, S> {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read += n as u64;
            this.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

/// Relays `a` ⇄ `b` until both directions end, or nothing moved for `idle`.
/// Returns the bytes moved; the error (idle timeout: `TimedOut`) comes with them.
pub async fn relay<A, B>(a: &mut A, b: &mut B, idle: Duration) -> (Transferred, io::Result<()>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let last = AtomicU64::new(0);
    let mut ta = Tracked {
        io: a,
        epoch,
        last: &last,
        read: 0,
    };
    let mut tb = Tracked {
        io: b,
        epoch,
        last: &last,
        read: 0,
    };
    let result = {
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut ta, &mut tb, RELAY_BUF, RELAY_BUF);
        tokio::pin!(copy);
        loop {
            let seen = last.load(Ordering::Relaxed);
            let deadline = epoch + Duration::from_millis(seen) + idle;
            tokio::select! {
                r = &mut copy => break r.map(|_| ()),
                _ = tokio::time::sleep_until(deadline) => {
                    if last.load(Ordering::Relaxed) == seen {
                        break Err(io::Error::new(io::ErrorKind::TimedOut, "relay idle timeout"));
                    }
                }
            }
        }
    };
    let moved = Transferred {
        a_to_b: ta.read,
        b_to_a: tb.read,
    };
    (moved, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn half_close_then_answer() {
        let (mut client, mut a) = duplex(64);
        let (mut b, mut target) = duplex(64);
        let relay =
            tokio::spawn(async move { relay(&mut a, &mut b, Duration::from_secs(5)).await });
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

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_only_without_traffic() {
        let (mut client, mut a) = duplex(64);
        let (mut b, mut target) = duplex(64);
        let relay =
            tokio::spawn(async move { relay(&mut a, &mut b, Duration::from_secs(10)).await });
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
}
