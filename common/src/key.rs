//! The keys: the master key as a user gives it (a SIP004 password through
//! `EVP_BytesToKey`, a SIP022 base64 PSK) and each direction's session key derived from
//! it and the salt (HKDF-SHA1 or BLAKE3).

use std::fmt;

use base64::Engine as _;
use md5::{Digest, Md5};
use ring::hkdf;

use crate::aead::Method;

/// A key given as base64 that does not decode to the method's key length.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not base64 at all.
    #[error("key is not valid base64")]
    Base64,
    /// Wrong length after decoding.
    #[error("key for {method} must be {want} bytes, got {got}")]
    Length {
        /// The method the key is for.
        method: Method,
        /// Bytes expected.
        want: usize,
        /// Bytes decoded.
        got: usize,
    },
}

/// The pre-shared master key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    method: Method,
    key: [u8; 32],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.method)
    }
}

impl MasterKey {
    /// The key for `secret` as a user gives it: SIP022 takes a base64 PSK, SIP004 a
    /// password (EVP_BytesToKey).
    pub fn from_secret(method: Method, secret: &str) -> Result<Self, KeyError> {
        if method.is_2022() {
            Self::from_base64(method, secret)
        } else {
            Ok(Self::from_password(method, secret))
        }
    }

    /// Derives the key from a password with OpenSSL's `EVP_BytesToKey(MD5, count = 1)`.
    pub fn from_password(method: Method, password: &str) -> Self {
        let mut key = [0u8; 32];
        evp_bytes_to_key(password.as_bytes(), &mut key[..method.key_len()]);
        MasterKey { method, key }
    }

    /// Takes a raw key encoded as standard or URL-safe base64, padded or not.
    pub fn from_base64(method: Method, text: &str) -> Result<Self, KeyError> {
        let bytes = decode_base64(text).ok_or(KeyError::Base64)?;
        if bytes.len() != method.key_len() {
            return Err(KeyError::Length {
                method,
                want: method.key_len(),
                got: bytes.len(),
            });
        }
        let mut key = [0u8; 32];
        key[..bytes.len()].copy_from_slice(&bytes);
        Ok(MasterKey { method, key })
    }

    /// The method this key is for.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.key[..self.method.key_len()]
    }
}

/// Decodes base64 in any of the common alphabets, with or without padding.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// `EVP_BytesToKey` with MD5, no salt, one iteration: D_i = MD5(D_{i-1} || password).
pub fn evp_bytes_to_key(password: &[u8], out: &mut [u8]) {
    let mut prev: Option<[u8; 16]> = None;
    let mut filled = 0;
    while filled < out.len() {
        let mut h = Md5::new();
        if let Some(p) = prev {
            h.update(p);
        }
        h.update(password);
        let d: [u8; 16] = h.finalize().into();
        let n = (out.len() - filled).min(16);
        out[filled..filled + n].copy_from_slice(&d[..n]);
        filled += n;
        prev = Some(d);
    }
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(feature = "aws-lc")]
impl aws_lc_rs::hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The per-direction session key: `HKDF-SHA1(key, salt, "ss-subkey")` for SIP004,
/// `BLAKE3-derive-key("shadowsocks 2022 session subkey", key || salt)` for SIP022.
pub fn derive_subkey(key: &MasterKey, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let len = key.method().key_len();
    if key.method().is_2022() {
        let mut material = Vec::with_capacity(len + salt.len());
        material.extend_from_slice(key.as_bytes());
        material.extend_from_slice(salt);
        return blake3::derive_key("shadowsocks 2022 session subkey", &material);
    }
    // HKDF-SHA1 can expand to 255 * 20 bytes; 32 is always within range. aws-lc's SHA-1
    // uses the CPU's SHA instructions where ring's is portable code: a SIP004 datagram
    // derives a key for each packet, and this was a sixth of the UDP relay's time.
    #[cfg(feature = "aws-lc")]
    {
        use aws_lc_rs::hkdf as h;
        let prk = h::Salt::new(h::HKDF_SHA1_FOR_LEGACY_USE_ONLY, salt).extract(key.as_bytes());
        if let Ok(okm) = prk.expand(&[b"ss-subkey"], OkmLen(len)) {
            let _ = okm.fill(&mut out[..len]);
        }
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        let prk =
            hkdf::Salt::new(hkdf::HKDF_SHA1_FOR_LEGACY_USE_ONLY, salt).extract(key.as_bytes());
        if let Ok(okm) = prk.expand(&[b"ss-subkey"], OkmLen(len)) {
            let _ = okm.fill(&mut out[..len]);
        }
    }
    out
}
