//! Stream framing over the per-direction AEAD: SIP004 chunks, and the SIP022 headers.
//!
//! ```text
//! SIP004, each direction:  salt | [len]+tag | [payload]+tag | [len]+tag | ...   len ≤ 0x3FFF
//!
//! SIP022 request:   salt(32) | [type=0 u8, timestamp u64, var_len u16]+tag
//!                   | [ATYP addr port, padding_len u16, padding, payload]+tag | chunks…
//! SIP022 response:  salt(32) | [type=1 u8, timestamp u64, request salt(32), len u16]+tag
//!                   | [payload: len]+tag | chunks…                       len ≤ 0xFFFF
//! ```
//!
//! Pure: the current time is passed in, so tests can pin it.

use bytes::BytesMut;

use crate::aead::AeadError;
use crate::key::MasterKey;
use crate::TargetAddr;

mod decode;
mod encode;

pub use decode::Decoder;
pub use encode::Encoder;

/// SIP022: the first bytes of a request's padding by which burrow-local asks burrow-server
/// to answer as soon as the target is connected. Other servers ignore padding; inside the
/// AEAD nobody else sees it.
pub const CONFIRM_MARKER: &[u8; 8] = b"burrow\x00\x01";

/// SIP022: how far a peer's clock may be from ours.
pub const MAX_SKEW: i64 = 30;
pub(crate) const REQUEST: u8 = 0;
pub(crate) const RESPONSE: u8 = 1;
pub(crate) const FIXED_REQUEST: usize = 1 + 8 + 2;
pub(crate) const FIXED_RESPONSE: usize = 1 + 8 + 32 + 2;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
/// Where a SIP022 decoder reads the time when a header arrives.
#[derive(Clone, Copy)]
pub enum Clock {
    /// This machine's clock, read when the header is opened: a connection held open for a
    /// while cannot stretch the window in which a recorded header is accepted.
    System,
    /// A function of the caller's (tests pin or step the time with it).
    Fn(fn() -> u64),
    /// A fixed time (known-answer tests).
    Pinned(u64),
}

impl Clock {
    fn now(self) -> u64 {
        match self {
            Clock::System => unix_now(),
            Clock::Fn(f) => f(),
            Clock::Pinned(t) => t,
        }
    }
}

pub(crate) fn random_salt(key: &MasterKey) -> Vec<u8> {
    let mut salt = vec![0u8; key.method().salt_len()];
    rand::Rng::fill(&mut rand::thread_rng(), &mut salt[..]);
    salt
}

/// Length of the target address at the front of `plain`, if whole and valid.
pub(crate) fn address_len(plain: &[u8]) -> Option<usize> {
    let mut b = BytesMut::from(plain);
    let before = b.len();
    TargetAddr::decode(&mut b)
        .ok()
        .flatten()
        .map(|_| before - b.len())
}

pub(crate) fn check_header(kind: u8, want: u8, ts: &[u8], now: u64) -> Result<(), AeadError> {
    if kind != want {
        return Err(AeadError::BadHeader("stream type"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(ts);
    // In i128 any two u64 differ without overflow; the error carries it clamped.
    let skew = i128::from(u64::from_be_bytes(b)) - i128::from(now);
    if skew.abs() > i128::from(MAX_SKEW) {
        let skew = skew.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        return Err(AeadError::Clock { skew });
    }
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
