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
