//! The AEAD implementations a chunk can be sealed with, and the choice among them.
//!
//! Every implementation computes the same standard AEAD (RFC 8439 ChaCha20-Poly1305,
//! AES-256-GCM), so a stream's chunks may go through different ones: what changes is the
//! speed on this CPU. `ring` is always there; `aws-lc-rs` (AWS-LC, with AVX-512/VAES code
//! for AES-GCM) and the system's OpenSSL libcrypto (with AVX-512 ChaCha20 and Poly1305)
//! come with the `aws-lc` and `openssl` features. The choice is made once per process and
//! algorithm by a short measurement (sealing a few chunks with each), separately for small
//! seals (a chunk's 2-byte length, UDP headers) and large ones (a full chunk's payload);
//! seals from the size where the large one's speed pays for its cost per call go to it.
//! It can be pinned with `BURROW_AEAD=ring|aws-lc|openssl`. The RustCrypto crates are the
//! reference the unit tests compare every implementation against.

use std::fmt;

/// Tag length of both algorithms.
const TAG: usize = 16;
/// The least size ever sealed by the large-chunk implementation when it differs.
const LARGE_MIN: usize = 256;
/// The size the large-chunk speed is measured at: a full SIP004 chunk.
const FULL: usize = 0x3FFF;

/// The two AEAD algorithms burrow uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RFC 8439 ChaCha20-Poly1305 (chacha20-ietf-poly1305, 2022-blake3-chacha20-poly1305).
    ChaCha20Poly1305,
    /// AES-256-GCM.
    Aes256Gcm,
}

impl Algorithm {
    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
            Algorithm::Aes256Gcm => "aes-256-gcm",
        })
    }
}

/// One AEAD implementation compiled into this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Implementation {
    /// `ring`.
    Ring,
    /// `aws-lc-rs` (AWS-LC).
    #[cfg(feature = "aws-lc")]
    AwsLc,
    /// The system's OpenSSL libcrypto through the `openssl` crate.
    #[cfg(feature = "openssl")]
    OpenSsl,
}

impl Implementation {
    /// Every implementation in this build, `ring` first.
    pub const ALL: &'static [Implementation] = &[
        Implementation::Ring,
        #[cfg(feature = "aws-lc")]
        Implementation::AwsLc,
        #[cfg(feature = "openssl")]
        Implementation::OpenSsl,
    ];

    /// The name `BURROW_AEAD` takes and the log shows.
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Ring => "ring",
            #[cfg(feature = "aws-lc")]
            Implementation::AwsLc => "aws-lc",
            #[cfg(feature = "openssl")]
            Implementation::OpenSsl => "openssl",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|i| i.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A session key in one implementation. `seal` and `open` take the nonce from the caller.
// ring's key is kept inline, as it always was: a stream's key costs no allocation.
#[allow(clippy::large_enum_variant)]
pub enum Key {
    /// `ring`.
    Ring(ring::aead::LessSafeKey),
    /// `aws-lc-rs`.
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc_rs::aead::LessSafeKey),
    /// OpenSSL (boxed: an EVP context and the key, kept for re-keying after a failure).
    #[cfg(feature = "openssl")]
    OpenSsl(Box<ossl::Key>),
}

impl Key {
    /// The key `subkey` (32 bytes) for `alg` in `imp`; `None` only if the implementation
    /// could not make a context (OpenSSL out of memory).
    pub fn new(imp: Implementation, alg: Algorithm, subkey: &[u8; 32]) -> Option<Self> {
        Some(match imp {
            Implementation::Ring => {
                let a = match alg {
                    Algorithm::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
                    Algorithm::Aes256Gcm => &ring::aead::AES_256_GCM,
                };
                Key::Ring(ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(a, subkey).ok()?,
                ))
            }
            #[cfg(feature = "aws-lc")]
            Implementation::AwsLc => {
                let a = match alg {
                    Algorithm::ChaCha20Poly1305 => &aws_lc_rs::aead::CHACHA20_POLY1305,
                    Algorithm::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
                };
                Key::AwsLc(aws_lc_rs::aead::LessSafeKey::new(
                    aws_lc_rs::aead::UnboundKey::new(a, subkey).ok()?,
                ))
            }
            #[cfg(feature = "openssl")]
            Implementation::OpenSsl => Key::OpenSsl(Box::new(ossl::Key::new(alg, subkey)?)),
        })
    }

    /// Seals `buf` in place and returns the tag; `None` if the implementation failed
    /// before touching `buf` (the caller may seal it with another).
    pub fn seal(&mut self, nonce: [u8; 12], buf: &mut [u8]) -> Option<[u8; TAG]> {
        let mut out = [0u8; TAG];
        match self {
            Key::Ring(k) => {
                let n = ring::aead::Nonce::assume_unique_for_key(nonce);
                let tag = k
                    .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), buf)
                    .ok()?;
                out.copy_from_slice(tag.as_ref());
            }
            #[cfg(feature = "aws-lc")]
            Key::AwsLc(k) => {
                let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce);
                let tag = k
                    .seal_in_place_separate_tag(n, aws_lc_rs::aead::Aad::empty(), buf)
                    .ok()?;
                out.copy_from_slice(tag.as_ref());
            }
            #[cfg(feature = "openssl")]
            Key::OpenSsl(k) => return k.seal(nonce, buf),
        }
        Some(out)
    }

    /// Opens `buf[src..]` = ciphertext || tag and leaves the plaintext at the front of
    /// `buf`; `true` if it authenticates. On `false` the bytes of `buf` are unspecified.
    pub fn open_within(&mut self, nonce: [u8; 12], buf: &mut [u8], src: usize) -> bool {
        match self {
            Key::Ring(k) => {
                let n = ring::aead::Nonce::assume_unique_for_key(nonce);
                k.open_within(n, ring::aead::Aad::empty(), buf, src..)
                    .is_ok()
            }
            #[cfg(feature = "aws-lc")]
            Key::AwsLc(k) => {
                let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce);
                k.open_within(n, aws_lc_rs::aead::Aad::empty(), buf, src..)
                    .is_ok()
            }
            #[cfg(feature = "openssl")]
            Key::OpenSsl(k) => {
                let Some(sealed) = buf.get_mut(src..) else {
                    return false;
                };
                let Some(len) = sealed.len().checked_sub(TAG) else {
                    return false;
                };
                if !k.open(nonce, sealed) {
                    return false;
                }
                buf.copy_within(src..src + len, 0);
                true
            }
        }
    }
}

mod choice;
#[cfg(feature = "openssl")]
mod ossl;

pub use choice::{choice, Choice};
#[cfg(test)]
use choice::{crossover, fastest};

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
