//! The sealing side: salt, any SIP022 header, then chunks.

use bytes::{BufMut, BytesMut};

use super::{
    address_len, random_salt, unix_now, CONFIRM_MARKER, FIXED_REQUEST, FIXED_RESPONSE, REQUEST,
    RESPONSE,
};
use crate::aead::CHUNK_OVERHEAD;
use crate::cipher::Cipher;
use crate::key::MasterKey;

/// What a SIP022 encoder still has to put in front of its first payload.
enum Header {
    Request,
    Response { request_salt: [u8; 32] },
}

/// Seals plaintext into chunks; writes the salt (and SIP022 header) first.
pub struct Encoder {
    cipher: Cipher,
    salt: [u8; 32],
    salt_len: usize,
    salt_sent: bool,
    max: usize,
    header: Option<Header>,
    now: u64,
    confirm: bool,
}

impl Encoder {
    /// SIP022 request: ask burrow-server (through the padding) to answer at once.
    pub fn ask_confirmation(&mut self) {
        self.confirm = true;
    }

    /// Server: tell the client now that the target is connected. SIP004: the salt alone.
    /// SIP022: salt, response header and an empty first chunk (a bare salt would break
    /// clients that read the whole header at once).
    pub fn announce(&mut self, out: &mut BytesMut) {
        self.encode(&[], out);
        if let Some(Header::Response { request_salt }) = self.header.take() {
            self.response_header(&request_salt, &[], out);
        }
    }

    /// A client's request encoder, fresh random salt.
    pub fn new(key: &MasterKey) -> Self {
        Self::with_salt(key, &random_salt(key), unix_now())
    }

    /// A server's response encoder for a request that came with `request_salt`.
    pub fn response(key: &MasterKey, request_salt: &[u8]) -> Self {
        Self::response_with_salt(key, &random_salt(key), request_salt, unix_now())
    }

    /// A response encoder with a given salt and time (known-answer tests).
    pub fn response_with_salt(key: &MasterKey, salt: &[u8], request_salt: &[u8], now: u64) -> Self {
        let mut e = Self::with_salt(key, salt, now);
        e.header = None;
        if key.method().is_2022() {
            let mut s = [0u8; 32];
            let n = request_salt.len().min(32);
            s[..n].copy_from_slice(&request_salt[..n]);
            e.header = Some(Header::Response { request_salt: s });
        }
        e
    }

    /// A request encoder with a given salt and time (known-answer tests).
    pub fn with_salt(key: &MasterKey, salt: &[u8], now: u64) -> Self {
        let mut s = [0u8; 32];
        s[..salt.len()].copy_from_slice(salt);
        Encoder {
            cipher: Cipher::new(key, salt),
            salt: s,
            salt_len: salt.len(),
            salt_sent: false,
            max: key.method().max_payload(),
            header: key.method().is_2022().then_some(Header::Request),
            now,
            confirm: false,
        }
    }

    /// This direction's salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.salt_len]
    }

    /// The largest payload of one chunk.
    pub fn max_payload(&self) -> usize {
        self.max
    }

    /// True once the salt and any SIP022 header are out: the rest is a run of chunks,
    /// which [`Encoder::seal_run`] seals where they lie.
    pub fn streaming(&self) -> bool {
        self.salt_sent && self.header.is_none()
    }

    /// Seals `plain` in place as chunks of the largest size, for a stream that is
    /// [`streaming`](Encoder::streaming); each chunk's sealed length goes to `side`, then
    /// its tag (34 bytes per chunk), so the wire is: for each chunk, its 18 bytes from
    /// `side`, its sealed payload, its 16 bytes of tag from `side`.
    pub fn seal_run(&mut self, plain: &mut [u8], side: &mut Vec<u8>) {
        side.reserve(plain.len().div_ceil(self.max) * CHUNK_OVERHEAD);
        for piece in plain.chunks_mut(self.max) {
            let mut len = (piece.len() as u16).to_be_bytes();
            let tag = self.cipher.seal(&mut len);
            side.extend_from_slice(&len);
            side.extend_from_slice(&tag);
            let tag = self.cipher.seal(piece);
            side.extend_from_slice(&tag);
        }
    }

    /// Appends the salt (first call only), any SIP022 header still due, and `plain`
    /// sealed into chunks. An empty `plain` writes only the salt, if it is still due.
    /// A SIP022 request's first `plain` must start with the target address.
    pub fn encode(&mut self, plain: &[u8], out: &mut BytesMut) {
        out.reserve(self.salt_len + plain.len() + plain.len().div_ceil(self.max) * 34 + 128);
        if !self.salt_sent {
            out.put_slice(self.salt());
            self.salt_sent = true;
        }
        if plain.is_empty() {
            return;
        }
        let rest = match self.header.take() {
            None => plain,
            Some(Header::Request) => self.request_header(plain, out),
            Some(Header::Response { request_salt }) => {
                self.response_header(&request_salt, plain, out)
            }
        };
        for piece in rest.chunks(self.max) {
            self.seal_piece(&(piece.len() as u16).to_be_bytes(), out);
            self.seal_piece(piece, out);
        }
    }

    fn seal_piece(&mut self, plain: &[u8], out: &mut BytesMut) {
        let start = out.len();
        out.put_slice(plain);
        let tag = self.cipher.seal(&mut out[start..]);
        out.put_slice(&tag);
    }

    /// Fixed + variable request header; returns what is left for chunks.
    fn request_header<'a>(&mut self, plain: &'a [u8], out: &mut BytesMut) -> &'a [u8] {
        let addr_len = address_len(plain).unwrap_or(plain.len()).min(plain.len());
        let (addr, payload) = plain.split_at(addr_len);
        // The variable header carries the address, padding and as much payload as fits.
        let in_header = payload.len().min(self.max - addr.len() - 2 - 900);
        let mut rng = rand::thread_rng();
        let padding = match (in_header, self.confirm) {
            (0, true) => rand::Rng::gen_range(&mut rng, CONFIRM_MARKER.len()..=900),
            (0, false) => rand::Rng::gen_range(&mut rng, 1..=900),
            _ => 0,
        };
        let var_len = addr.len() + 2 + padding + in_header;
        let mut fixed = [0u8; FIXED_REQUEST];
        fixed[0] = REQUEST;
        fixed[1..9].copy_from_slice(&self.now.to_be_bytes());
        fixed[9..11].copy_from_slice(&(var_len as u16).to_be_bytes());
        self.seal_piece(&fixed, out);
        let mut var = Vec::with_capacity(var_len);
        var.extend_from_slice(addr);
        var.extend_from_slice(&(padding as u16).to_be_bytes());
        let mut pad = vec![0u8; padding];
        rand::Rng::fill(&mut rng, &mut pad[..]);
        if self.confirm && padding >= CONFIRM_MARKER.len() {
            pad[..CONFIRM_MARKER.len()].copy_from_slice(CONFIRM_MARKER);
        }
        var.extend_from_slice(&pad);
        var.extend_from_slice(&payload[..in_header]);
        self.seal_piece(&var, out);
        &payload[in_header..]
    }

    /// Fixed response header and the first chunk; returns what is left for chunks.
    fn response_header<'a>(
        &mut self,
        request_salt: &[u8; 32],
        plain: &'a [u8],
        out: &mut BytesMut,
    ) -> &'a [u8] {
        let first = plain.len().min(self.max);
        let mut fixed = [0u8; FIXED_RESPONSE];
        fixed[0] = RESPONSE;
        fixed[1..9].copy_from_slice(&self.now.to_be_bytes());
        fixed[9..41].copy_from_slice(request_salt);
        fixed[41..43].copy_from_slice(&(first as u16).to_be_bytes());
        self.seal_piece(&fixed, out);
        self.seal_piece(&plain[..first], out);
        &plain[first..]
    }
}
