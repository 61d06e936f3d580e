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
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// What this process seals an algorithm's chunks with.
#[derive(Clone, Debug)]
pub struct Choice {
    /// For seals and opens under `from` bytes.
    pub small: Implementation,
    /// For the rest.
    pub large: Implementation,
    /// The size from which `large` seals and opens: where its speed pays for its cost
    /// per call (OpenSSL's EVP calls cost more than ring's for a few bytes).
    pub from: usize,
    /// Large-chunk speed of each implementation measured, in GB/s (empty when pinned).
    pub measured: Vec<(Implementation, f64)>,
    /// Why this choice: `measured` or `BURROW_AEAD`.
    pub by: &'static str,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.large)?;
        if self.small != self.large {
            write!(f, " from {} bytes, {} below", self.from, self.small)?;
        }
        f.write_str(" (")?;
        if self.by == "measured" {
            f.write_str("16 KiB seals measured at")?;
            for (i, gbps) in &self.measured {
                write!(f, " {i} {gbps:.2} GB/s")?;
            }
        } else {
            write!(f, "pinned by {}", self.by)?;
        }
        f.write_str(")")
    }
}

static CHOICES: [OnceLock<Choice>; 2] = [OnceLock::new(), OnceLock::new()];

/// What this process seals `alg` with: chosen on first use (a few milliseconds at most),
/// the same afterwards.
pub fn choice(alg: Algorithm) -> &'static Choice {
    CHOICES[alg.index()].get_or_init(|| choose(alg))
}

fn choose(alg: Algorithm) -> Choice {
    if let Ok(name) = std::env::var("BURROW_AEAD") {
        match Implementation::from_name(&name) {
            Some(i) => {
                return Choice {
                    small: i,
                    large: i,
                    from: 0,
                    measured: Vec::new(),
                    by: "BURROW_AEAD",
                }
            }
            None => tracing::warn!(
                "BURROW_AEAD={name:?} is not in this build (it has {}); measuring instead",
                Implementation::ALL
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let large = measure(alg, FULL, 4);
    let small = measure(alg, 2, 64);
    let (small_imp, large_imp) = (fastest(&small), fastest(&large));
    // Seconds per call at 2 bytes (the cost per call) and per byte beyond, for one.
    let cost = |imp: Implementation| {
        let t = |m: &[(Implementation, f64)], n: f64| {
            m.iter()
                .find(|(i, _)| *i == imp)
                .map_or(f64::NAN, |&(_, s)| s / n)
        };
        let per_call = t(&small, 64.0);
        (per_call, (t(&large, 4.0) - per_call) / (FULL - 2) as f64)
    };
    Choice {
        small: small_imp,
        large: large_imp,
        from: crossover(cost(small_imp), cost(large_imp)),
        measured: large
            .iter()
            .map(|&(i, s)| (i, FULL as f64 * 4.0 / s / 1e9))
            .collect(),
        by: "measured",
    }
}

/// The size from which an implementation of cost `large` (seconds per call, per byte)
/// beats one of cost `small`, at least [`LARGE_MIN`], at most a full chunk.
fn crossover(small: (f64, f64), large: (f64, f64)) -> usize {
    let gain = small.1 - large.1;
    let n = (large.0 - small.0) / gain;
    if gain <= 0.0 || !n.is_finite() {
        return FULL + 1;
    }
    (n.max(0.0) as usize).clamp(LARGE_MIN, FULL)
}

/// The implementation with the least time, `ring` kept unless another is 10 % faster (a
/// measurement that close is noise, and `ring` is the one always there).
fn fastest(times: &[(Implementation, f64)]) -> Implementation {
    let ring = times
        .iter()
        .find(|(i, _)| *i == Implementation::Ring)
        .map_or(f64::INFINITY, |&(_, t)| t);
    times
        .iter()
        .filter(|&&(_, t)| t < ring * 0.9)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(Implementation::Ring, |&(i, _)| i)
}

/// Whether `imp` can beat ring at `alg` on this CPU at all. Measuring costs little, but
/// OpenSSL's first use costs about 2 MB resident (its providers' tables): on x86-64 it is
/// tried only for ChaCha20-Poly1305 with AVX-512 (elsewhere ring's code is as fast or
/// faster), and aws-lc-rs only for AES-GCM with VAES and AVX-512 (its ChaCha20 is ring's,
/// and without AVX-512 its AES-GCM is slower). Other architectures measure everything.
fn worth_measuring(imp: Implementation, alg: Algorithm) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl");
        // Built without the optional implementations, ring is all there is.
        let _ = (alg, avx512);
        match imp {
            Implementation::Ring => true,
            #[cfg(feature = "aws-lc")]
            Implementation::AwsLc => {
                alg == Algorithm::Aes256Gcm && avx512 && std::arch::is_x86_feature_detected!("vaes")
            }
            #[cfg(feature = "openssl")]
            Implementation::OpenSsl => alg == Algorithm::ChaCha20Poly1305 && avx512,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (imp, alg);
        true
    }
}

/// Seconds for `count` seals of `size` bytes by each implementation: the best of eleven
/// rounds, the implementations taking turns so that a busy moment hits them all alike.
fn measure(alg: Algorithm, size: usize, count: usize) -> Vec<(Implementation, f64)> {
    let key = [0x5au8; 32];
    let mut keys: Vec<(Implementation, Key, Duration)> = Implementation::ALL
        .iter()
        .filter(|&&i| worth_measuring(i, alg))
        .filter_map(|&i| Some((i, Key::new(i, alg, &key)?, Duration::MAX)))
        .collect();
    let mut buf = vec![0u8; size];
    let mut nonce = [0u8; 12];
    for _ in 0..11 {
        for (_, k, best) in keys.iter_mut() {
            let start = Instant::now();
            for _ in 0..count {
                nonce[0] = nonce[0].wrapping_add(1);
                if k.seal(nonce, &mut buf).is_none() {
                    *best = Duration::MAX;
                    break;
                }
            }
            *best = (*best).min(start.elapsed());
        }
    }
    keys.into_iter()
        .filter(|(_, _, t)| *t != Duration::MAX)
        .map(|(i, _, t)| (i, t.as_secs_f64().max(1e-9)))
        .collect()
}

#[cfg(feature = "openssl")]
mod ossl {
    //! The EVP interface: one context per key, the key set once and only the nonce per
    //! chunk, sealing and opening in place.

    use openssl::cipher::{Cipher, CipherRef};
    use openssl::cipher_ctx::CipherCtx;

    use super::{Algorithm, TAG};

    pub struct Key {
        ctx: CipherCtx,
        cipher: &'static CipherRef,
        key: [u8; 32],
        /// The direction the context was last keyed for (`Some(true)`: sealing).
        sealing: Option<bool>,
    }

    impl Key {
        pub fn new(alg: Algorithm, key: &[u8; 32]) -> Option<Self> {
            let cipher = match alg {
                Algorithm::ChaCha20Poly1305 => Cipher::chacha20_poly1305(),
                Algorithm::Aes256Gcm => Cipher::aes_256_gcm(),
            };
            Some(Key {
                ctx: CipherCtx::new().ok()?,
                cipher,
                key: *key,
                sealing: None,
            })
        }

        /// Sets the nonce, keying the context first if it was not keyed for this direction.
        fn start(&mut self, sealing: bool, nonce: &[u8; 12]) -> bool {
            let (cipher, key) = if self.sealing == Some(sealing) {
                (None, None)
            } else {
                self.sealing = None;
                (Some(self.cipher), Some(&self.key[..]))
            };
            let ok = if sealing {
                self.ctx.encrypt_init(cipher, key, Some(nonce))
            } else {
                self.ctx.decrypt_init(cipher, key, Some(nonce))
            }
            .is_ok();
            if ok {
                self.sealing = Some(sealing);
            }
            ok
        }

        pub fn seal(&mut self, nonce: [u8; 12], buf: &mut [u8]) -> Option<[u8; TAG]> {
            if !self.start(true, &nonce) {
                return None;
            }
            let mut tag = [0u8; TAG];
            let sealed = self.ctx.cipher_update_inplace(buf, buf.len()).is_ok()
                && self.ctx.cipher_final(&mut []).is_ok()
                && self.ctx.tag(&mut tag).is_ok();
            if !sealed {
                // The bytes may be half sealed: send nothing readable, and a tag that
                // cannot authenticate, so that the peer drops the stream.
                buf.fill(0);
                tag = [0u8; TAG];
                self.sealing = None;
                tracing::error!("OpenSSL failed to seal a chunk; the stream will fail");
            }
            Some(tag)
        }

        /// Opens `buf` = ciphertext || tag in place.
        pub fn open(&mut self, nonce: [u8; 12], buf: &mut [u8]) -> bool {
            let Some(len) = buf.len().checked_sub(TAG) else {
                return false;
            };
            if !self.start(false, &nonce) {
                return false;
            }
            let (data, tag) = buf.split_at_mut(len);
            let ok = self.ctx.set_tag(tag).is_ok()
                && self.ctx.cipher_update_inplace(data, len).is_ok()
                && self.ctx.cipher_final(&mut []).is_ok();
            if !ok {
                // A failed final leaves nothing to reuse: key again on the next chunk.
                self.sealing = None;
            }
            ok
        }
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
