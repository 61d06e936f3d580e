//! SIP004 AEAD stream framing: key derivation, per-direction nonce, chunk seal/open.
//!
//! Pure code: no I/O, no `.await`. One direction of a Shadowsocks AEAD stream is
//!
//! ```text
//! +--------+-----------------------+-----------------------------+----------------
//! |  salt  | [len: u16 BE] + tag   | [payload: len bytes] + tag  | next chunk ...
//! +--------+-----------------------+-----------------------------+----------------
//!  salt_len        2 + 16                  len + 16
//!
//! subkey = HKDF-SHA1(ikm = master key, salt, info = "ss-subkey")
//! nonce  = 12-byte little-endian counter, starting at 0, +1 after every seal/open
//! len    ≤ 0x3FFF (SIP004: the two high bits are reserved and must be zero)
//! ```
//!
//! The length and the payload are sealed separately, each consuming one nonce.
//! Sealing and opening go through the implementation [`crate::backend`] found fastest
//! on this CPU (ring, aws-lc-rs or OpenSSL); the RustCrypto crates are the reference the
//! unit tests compare against.

use std::fmt;
use std::str::FromStr;

use crate::backend::Algorithm;

/// Largest payload of one chunk (SIP004).
pub const MAX_PAYLOAD: usize = 0x3FFF;
/// AEAD tag length for every supported method.
pub const TAG_LEN: usize = 16;
/// Bytes a chunk adds around its payload: sealed length (2 + tag) and payload tag.
pub const CHUNK_OVERHEAD: usize = 2 + TAG_LEN + TAG_LEN;
/// Largest chunk on the wire.
pub const MAX_CHUNK: usize = MAX_PAYLOAD + CHUNK_OVERHEAD;

/// A SIP004 AEAD method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `chacha20-ietf-poly1305`
    ChaCha20IetfPoly1305,
    /// `aes-256-gcm`
    Aes256Gcm,
    /// `2022-blake3-chacha20-poly1305` (SIP022)
    Blake3ChaCha20Poly1305,
}

impl Method {
    /// Every supported method, in the order `--help` lists them.
    pub const ALL: [Method; 3] = [
        Method::ChaCha20IetfPoly1305,
        Method::Aes256Gcm,
        Method::Blake3ChaCha20Poly1305,
    ];

    /// The name used in configs and `ss://` URLs.
    pub fn name(self) -> &'static str {
        match self {
            Method::ChaCha20IetfPoly1305 => "chacha20-ietf-poly1305",
            Method::Aes256Gcm => "aes-256-gcm",
            Method::Blake3ChaCha20Poly1305 => "2022-blake3-chacha20-poly1305",
        }
    }

    /// Master key and subkey length in bytes.
    pub fn key_len(self) -> usize {
        32
    }

    /// Salt length in bytes (equal to the key length for SIP004).
    pub fn salt_len(self) -> usize {
        self.key_len()
    }

    /// True for the SIP022 (Shadowsocks 2022) methods.
    pub fn is_2022(self) -> bool {
        matches!(self, Method::Blake3ChaCha20Poly1305)
    }

    /// Largest payload of one chunk: 0x3FFF for SIP004, 0xFFFF for SIP022.
    pub fn max_payload(self) -> usize {
        if self.is_2022() {
            0xFFFF
        } else {
            MAX_PAYLOAD
        }
    }

    /// The AEAD its chunks are sealed with.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Method::ChaCha20IetfPoly1305 | Method::Blake3ChaCha20Poly1305 => {
                Algorithm::ChaCha20Poly1305
            }
            Method::Aes256Gcm => Algorithm::Aes256Gcm,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown method name.
#[derive(Debug, thiserror::Error)]
#[error("unknown method {0:?} (supported: 2022-blake3-chacha20-poly1305, chacha20-ietf-poly1305, aes-256-gcm)")]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

/// Why a received stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The sealed length did not authenticate (wrong key, garbage, tampering).
    #[error("length tag does not authenticate")]
    LengthTag,
    /// The payload did not authenticate.
    #[error("payload tag does not authenticate")]
    PayloadTag,
    /// The length is above 0x3FFF.
    #[error("chunk length {0:#x} above 0x3fff")]
    Oversize(usize),
    /// SIP022: a header that authenticates but is wrong (type, length, echoed salt).
    #[error("bad SIP022 header: {0}")]
    BadHeader(&'static str),
    /// SIP022: the peer's clock is more than 30 s away from ours.
    #[error(
        "timestamp {skew:+} s away from this machine's clock (allowed ±30 s): check the clocks"
    )]
    Clock {
        /// Peer's timestamp minus ours, in seconds.
        skew: i64,
    },
}

#[cfg(test)]
#[path = "aead_tests.rs"]
mod tests;
