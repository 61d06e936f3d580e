//! The AEAD of one direction of a stream or of one packet: the session key derived from
//! the master key and the salt, and its nonce counter; sealing and opening through the
//! implementation [`crate::backend`] found fastest on this CPU.

use crate::aead::{Method, TAG_LEN};
use crate::backend::{self, Algorithm, Implementation, Key};
use crate::key::{derive_subkey, MasterKey};

/// The AEAD of one direction: a session key and its nonce counter. Small seals (a chunk's
/// length) and large ones (its payload) may go through different implementations, as
/// [`backend::choice`] found fastest on this CPU; the large one is keyed on first use.
pub struct Cipher {
    alg: Algorithm,
    small: Key,
    large: Option<Box<Key>>,
    subkey: [u8; 32],
    nonce: [u8; 12],
}

impl Cipher {
    /// A cipher for the direction that starts with `salt`.
    pub fn new(key: &MasterKey, salt: &[u8]) -> Self {
        let subkey = derive_subkey(key, salt);
        Self::from_subkey(key.method(), subkey)
    }

    fn from_subkey(method: Method, subkey: [u8; 32]) -> Self {
        let alg = method.algorithm();
        let small = backend::choice(alg).small;
        // ring makes a key of the right length without fail; another implementation
        // that cannot (OpenSSL out of memory) leaves the work to ring.
        let small = Key::new(small, alg, &subkey)
            .or_else(|| Key::new(Implementation::Ring, alg, &subkey))
            .unwrap_or_else(|| unreachable!("ring takes a 32-byte key"));
        Cipher {
            alg,
            small,
            large: None,
            subkey,
            nonce: [0u8; 12],
        }
    }

    fn next_nonce(&mut self) -> [u8; 12] {
        let n = self.nonce;
        // Little-endian increment (libsodium's sodium_increment).
        for b in self.nonce.iter_mut() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
        n
    }

    /// The key for a seal or open of `len` bytes.
    fn key_for(&mut self, len: usize) -> &mut Key {
        let choice = backend::choice(self.alg);
        if len >= choice.from && choice.large != choice.small {
            if self.large.is_none() {
                self.large = Key::new(choice.large, self.alg, &self.subkey).map(Box::new);
            }
            if let Some(k) = self.large.as_deref_mut() {
                return k;
            }
        }
        &mut self.small
    }

    /// Seals `buf` in place and returns the tag.
    pub fn seal(&mut self, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = self.next_nonce();
        if let Some(tag) = self.key_for(buf.len()).seal(nonce, buf) {
            return tag;
        }
        // An implementation failed before touching the bytes (OpenSSL out of memory):
        // ring seals this one.
        self.large = None;
        Key::new(Implementation::Ring, self.alg, &self.subkey)
            .and_then(|mut k| k.seal(nonce, buf))
            .unwrap_or_else(|| unreachable!("ring seals any chunk under its size limit"))
    }

    /// Opens `buf` = ciphertext || tag in place; if it authenticates (`true`) the
    /// plaintext is `buf[..len - 16]`.
    #[must_use]
    pub fn open(&mut self, buf: &mut [u8]) -> bool {
        self.open_to_front(buf, 0)
    }

    /// Opens `buf[src..]` = ciphertext || tag and writes the plaintext to the front of
    /// `buf`, in the same pass where the implementation can; `true` if it authenticates.
    #[must_use]
    pub fn open_to_front(&mut self, buf: &mut [u8], src: usize) -> bool {
        let nonce = self.next_nonce();
        let len = buf.len().saturating_sub(src);
        self.key_for(len).open_within(nonce, buf, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_counter_carries_little_endian() {
        let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
        let mut c = Cipher::new(&key, &[0u8; 32]);
        c.nonce = [0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let _ = c.next_nonce();
        assert_eq!(c.nonce, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
