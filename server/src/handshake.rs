//! Reading the first flight, and the silent drain for anything that is not one.
//!
//! SIP004 request: salt, then chunks whose plaintext opens with the target address. Any
//! failure (wrong key, garbage, replayed salt, bad ATYP, length > 0x3FFF) gets the same
//! answer (SPEC §4): nothing written, bytes read and discarded until a deadline fixed at
//! accept, then a FIN with an empty receive buffer. How many bytes arrived never changes
//! when or how the connection closes.

use burrow_common::timeout::within;
use std::time::Duration;

use burrow_common::addr::AddrError;
use std::sync::Arc;

use burrow_common::aead::{AeadError, MAX_CHUNK, TAG_LEN};
use burrow_common::frame::Decoder;
use burrow_common::key::MasterKey;
use burrow_common::replay::ReplayFilter;
use burrow_common::TargetAddr;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::metrics::Rejected;
use crate::users::User;

/// A first flight that authenticated.
pub struct Request {
    /// Whose key opened it.
    pub user: Arc<User>,
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
    /// How it is counted.
    pub fn kind(&self) -> Rejected {
        match self {
            BadRequest::Aead(_) | BadRequest::Addr(_) => Rejected::Probe,
            BadRequest::Replay => Rejected::Replay,
            BadRequest::Closed | BadRequest::Io(_) => Rejected::Closed,
        }
    }
}

/// Reads until the target address is known. Cancel-safe to wrap in a deadline.
///
/// Boxed, both the reading and the request: neither is then kept in the tunnel's task
/// for the tunnel's whole life.
pub async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    users: &[Arc<User>],
    replay: Option<&ReplayFilter>,
) -> Result<Box<Request>, BadRequest> {
    Box::pin(read_request_inner(io, users, replay))
        .await
        .map(Box::new)
}

/// Bytes of a first flight that say whose key it is: the salt and the first sealed
/// length (SIP004) or fixed header (SIP022).
fn identifying_len(key: &MasterKey) -> usize {
    let sealed = if key.method().is_2022() { 11 } else { 2 };
    key.method().salt_len() + sealed + TAG_LEN
}

/// The user whose key opens the start of `flight` (at least [`identifying_len`] bytes).
fn whose(users: &[Arc<User>], flight: &[u8]) -> Result<Arc<User>, BadRequest> {
    for u in users {
        let mut probe = BytesMut::from(flight);
        match Decoder::new(&u.key).decode(&mut probe) {
            Err(AeadError::LengthTag) => continue,
            _ => return Ok(u.clone()),
        }
    }
    Err(BadRequest::Aead(AeadError::LengthTag))
}

async fn read_request_inner<S: AsyncRead + Unpin>(
    io: &mut S,
    users: &[Arc<User>],
    replay: Option<&ReplayFilter>,
) -> Result<Request, BadRequest> {
    // Only what the next step needs is allocated: a silent connection holds a salt's
    // worth of buffer, a slow one no more than the chunk it is sending.
    let mut rbuf = BytesMut::new();
    let Some(first_user) = users.first() else {
        return Err(BadRequest::Aead(AeadError::LengthTag));
    };
    let user = if users.len() == 1 {
        first_user.clone()
    } else {
        // Several users: read what says whose flight it is, then try each key on it.
        let need = identifying_len(&first_user.key);
        while rbuf.len() < need {
            rbuf.reserve(need - rbuf.len());
            if io.read_buf(&mut rbuf).await? == 0 {
                return Err(BadRequest::Closed);
            }
        }
        whose(users, &rbuf[..need])?
    };
    let mut dec = Decoder::new(&user.key);
    let mut plain = BytesMut::new();
    let mut first = true;
    loop {
        while let Some(chunk) = dec.decode(&mut rbuf)? {
            if first {
                first = false;
                // The first chunk authenticated: the salt counts now.
                if replay.and_then(|f| f.record_peer_salt(&dec)) == Some(false) {
                    return Err(BadRequest::Replay);
                }
            }
            plain.extend_from_slice(&chunk);
            if let Some(target) = TargetAddr::decode(&mut plain)? {
                return Ok(Request {
                    user,
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
    let _ = within(LINGER, conn.shutdown()).await;
    let mut scratch = [0u8; 1024];
    let _ = within(LINGER, async {
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
    use burrow_common::aead::Method;
    use burrow_common::frame::Encoder;

    /// One user with `key`.
    fn one(key: &MasterKey) -> Vec<Arc<User>> {
        crate::users::Users::new(vec![("-".into(), key.clone(), None)])
            .get()
            .to_vec()
    }

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
        let req = read_request(&mut b, &one(&key), None).await.expect("valid");
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
        read_request(&mut &wire[..], &one(&key), Some(&filter))
            .await
            .expect("first time");
        let again = read_request(&mut &wire[..], &one(&key), Some(&filter)).await;
        assert!(matches!(again, Err(BadRequest::Replay)));

        let other = MasterKey::from_password(Method::Aes256Gcm, "other");
        let r = read_request(&mut &wire[..], &one(&other), Some(&filter)).await;
        assert!(matches!(r, Err(BadRequest::Aead(AeadError::LengthTag))));

        let bad = flight(&key, &[9, 1, 2, 3]);
        let r = read_request(&mut &bad[..], &one(&key), None).await;
        assert!(matches!(r, Err(BadRequest::Addr(AddrError::BadAtyp(9)))));

        let r = read_request(&mut &wire[..40], &one(&key), None).await;
        assert!(matches!(r, Err(BadRequest::Closed)));
    }

    /// Several users: each flight is opened with its own user's key, found by trying each
    /// (SIP004 and SIP022); a key that is nobody's is a probe; one byte at a time too.
    #[tokio::test]
    async fn the_key_decides_whose_flight_it_is() {
        for method in [Method::ChaCha20IetfPoly1305, Method::Blake3ChaCha20Poly1305] {
            let keys: Vec<MasterKey> = (0..10u8)
                .map(|i| {
                    if method.is_2022() {
                        use base64::Engine;
                        let k = base64::engine::general_purpose::STANDARD.encode([i; 32]);
                        MasterKey::from_base64(method, &k).expect("key")
                    } else {
                        MasterKey::from_password(method, &format!("password {i}"))
                    }
                })
                .collect();
            let users = crate::users::Users::new(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| (format!("user{i}"), k.clone(), None))
                    .collect(),
            )
            .get()
            .to_vec();
            let mut plain = BytesMut::new();
            TargetAddr::Domain("example.com".into(), 80).encode(&mut plain);
            plain.extend_from_slice(b"hello");
            for (i, k) in keys.iter().enumerate() {
                let wire = flight(k, &plain);
                let mut b = tokio_test_builder(&wire);
                let req = read_request(&mut b, &users, None).await.expect("valid");
                assert_eq!(req.user.name, format!("user{i}"), "{method}");
                assert_eq!(&req.payload[..], b"hello");
            }
            let stranger = if method.is_2022() {
                MasterKey::from_base64(method, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
                    .expect("key")
            } else {
                MasterKey::from_password(method, "nobody")
            };
            let wire = flight(&stranger, &plain);
            let r = read_request(&mut &wire[..], &users, None).await;
            assert!(
                matches!(r, Err(BadRequest::Aead(AeadError::LengthTag))),
                "{method}"
            );
        }
    }
}
