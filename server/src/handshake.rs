//! Reading the first flight, and the silent drain for anything that is not one.
//!
//! SIP004 request: salt, then chunks whose plaintext opens with the target address. Any
//! failure (wrong key, garbage, replayed salt, bad ATYP, length > 0x3FFF) gets the same
//! answer (SPEC §4): nothing written, bytes read and discarded until a deadline fixed at
//! accept, then a FIN with an empty receive buffer. How many bytes arrived never changes
//! when or how the connection closes.

use std::time::Duration;

use burrow_common::addr::AddrError;
use burrow_common::aead::{AeadError, Decoder, MasterKey, MAX_CHUNK};
use burrow_common::replay::ReplayFilter;
use burrow_common::TargetAddr;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A first flight that authenticated.
pub struct Request {
    /// Where to go.
    pub target: TargetAddr,
    /// The decoder, positioned after the chunks read so far.
    pub dec: Decoder,
    /// Ciphertext read but not yet opened.
    pub rbuf: BytesMut,
    /// Plaintext that followed the address: the client's first bytes for the target.
    pub payload: BytesMut,
}

/// Why a first flight was refused.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// The AEAD refused it.
    #[error(transparent)]
    Aead(#[from] AeadError),
    /// The address header is malformed.
    #[error("address header: {0}")]
    Addr(#[from] AddrError),
    /// The salt was seen before.
    #[error("replayed salt")]
    Replay,
    /// The peer closed before a whole request arrived.
    #[error("closed before a whole request")]
    Closed,
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl BadRequest {
    /// A short label for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BadRequest::Aead(_) | BadRequest::Addr(_) => "probe",
            BadRequest::Replay => "replay",
            BadRequest::Closed | BadRequest::Io(_) => "closed",
        }
    }
}

/// Reads until the target address is known. Cancel-safe to wrap in a deadline.
///
/// Boxed, both the reading and the request: neither is then kept in the tunnel's task
/// for the tunnel's whole life.
pub async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    key: &MasterKey,
    replay: Option<&ReplayFilter>,
) -> Result<Box<Request>, BadRequest> {
    Box::pin(read_request_inner(io, key, replay))
        .await
        .map(Box::new)
}

async fn read_request_inner<S: AsyncRead + Unpin>(
    io: &mut S,
    key: &MasterKey,
    replay: Option<&ReplayFilter>,
) -> Result<Request, BadRequest> {
    let mut dec = Decoder::new(key);
    // Only what the next step needs is allocated: a silent connection holds a salt's
    // worth of buffer, a slow one no more than the chunk it is sending.
    let mut rbuf = BytesMut::new();
    let mut plain = BytesMut::new();
    let mut first = true;
    loop {
        while let Some(chunk) = dec.decode(&mut rbuf)? {
            if first {
                first = false;
                // Only now, with the first chunk authenticated, does the salt count.
                let salt = dec.salt().unwrap_or_default();
                if replay.is_some_and(|f| !f.check_and_insert(salt)) {
                    return Err(BadRequest::Replay);
                }
            }
            plain.extend_from_slice(&chunk);
            if let Some(target) = TargetAddr::decode(&mut plain)? {
                return Ok(Request {
                    target,
                    dec,
                    rbuf,
                    payload: plain,
                });
            }
        }
        let want = dec.needed(rbuf.len()).clamp(1, MAX_CHUNK);
        rbuf.reserve(want);
        if io.read_buf(&mut rbuf).await? == 0 {
            return Err(BadRequest::Closed);
        }
    }
}

/// Waits until `io` has something to read (or has closed), taking nothing: a read into
/// no room at all. A connection that stays silent has nothing allocated for it.
pub async fn readable<S: AsyncRead + Unpin>(io: &mut S) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        let mut none = tokio::io::ReadBuf::new(&mut []);
        std::pin::Pin::new(&mut *io).poll_read(cx, &mut none)
    })
    .await
}

/// A deadline `base` ± 10 % from now, so close times do not fingerprint the server.
pub fn jittered_deadline(base: Duration) -> Instant {
    let f: f64 = rand::Rng::gen_range(&mut rand::thread_rng(), 0.9..1.1);
    Instant::now() + base.mul_f64(f)
}

/// How long a closing socket keeps discarding input so that it closes with a FIN.
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards until `deadline` (or until the peer closes), then closes quietly.
pub async fn drain_silently<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut S, deadline: Instant) {
    let mut scratch = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            r = conn.read(&mut scratch) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    close_quietly(conn).await;
}

/// Sends a FIN, then discards input for a short while so the final close finds an empty
/// receive buffer (closing with unread data would send an RST).
pub async fn close_quietly<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut S) {
    let _ = tokio::time::timeout(LINGER, conn.shutdown()).await;
    let mut scratch = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = conn.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_common::aead::{Encoder, Method};

    fn flight(key: &MasterKey, plain: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        Encoder::new(key).encode(plain, &mut out);
        out.to_vec()
    }

    #[tokio::test]
    async fn request_with_payload_one_byte_at_a_time() {
        let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
        let mut plain = BytesMut::new();
        TargetAddr::Domain("example.com".into(), 80).encode(&mut plain);
        plain.extend_from_slice(b"GET /");
        let wire = flight(&key, &plain);
        let mut b = tokio_test_builder(&wire);
        let req = read_request(&mut b, &key, None).await.expect("valid");
        assert_eq!(req.target.to_string(), "example.com:80");
        assert_eq!(&req.payload[..], b"GET /");
    }

    fn tokio_test_builder(wire: &[u8]) -> impl AsyncRead + Unpin {
        // One byte per read: a reader over a slice that yields one byte at a time.
        struct OneByte(Vec<u8>, usize);
        impl AsyncRead for OneByte {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.1 < self.0.len() && buf.remaining() > 0 {
                    let b = self.0[self.1];
                    buf.put_slice(&[b]);
                    self.1 += 1;
                }
                std::task::Poll::Ready(Ok(()))
            }
        }
        OneByte(wire.to_vec(), 0)
    }

    #[tokio::test]
    async fn replay_wrong_key_and_bad_atyp() {
        let key = MasterKey::from_password(Method::Aes256Gcm, "pw");
        let mut plain = BytesMut::new();
        TargetAddr::Ip("1.2.3.4:5".parse().expect("addr")).encode(&mut plain);
        let wire = flight(&key, &plain);
        let filter = ReplayFilter::new(16);
        read_request(&mut &wire[..], &key, Some(&filter))
            .await
            .expect("first time");
        let again = read_request(&mut &wire[..], &key, Some(&filter)).await;
        assert!(matches!(again, Err(BadRequest::Replay)));

        let other = MasterKey::from_password(Method::Aes256Gcm, "other");
        let r = read_request(&mut &wire[..], &other, Some(&filter)).await;
        assert!(matches!(r, Err(BadRequest::Aead(AeadError::LengthTag))));

        let bad = flight(&key, &[9, 1, 2, 3]);
        let r = read_request(&mut &bad[..], &key, None).await;
        assert!(matches!(r, Err(BadRequest::Addr(AddrError::BadAtyp(9)))));

        let r = read_request(&mut &wire[..40], &key, None).await;
        assert!(matches!(r, Err(BadRequest::Closed)));
    }
}
