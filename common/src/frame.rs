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

use bytes::{BufMut, BytesMut};

use crate::aead::{AeadError, Cipher, MasterKey, CHUNK_OVERHEAD, TAG_LEN};
use crate::TargetAddr;

/// SIP022: the first bytes of a request's padding by which burrow-local asks burrow-server
/// to answer as soon as the target is connected. Other servers ignore padding; inside the
/// AEAD nobody else sees it.
pub const CONFIRM_MARKER: &[u8; 8] = b"burrow\x00\x01";

/// SIP022: how far a peer's clock may be from ours.
pub const MAX_SKEW: i64 = 30;
const REQUEST: u8 = 0;
const RESPONSE: u8 = 1;
const FIXED_REQUEST: usize = 1 + 8 + 2;
const FIXED_RESPONSE: usize = 1 + 8 + 32 + 2;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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

fn random_salt(key: &MasterKey) -> Vec<u8> {
    let mut salt = vec![0u8; key.method().salt_len()];
    rand::Rng::fill(&mut rand::thread_rng(), &mut salt[..]);
    salt
}

/// Length of the target address at the front of `plain`, if whole and valid.
fn address_len(plain: &[u8]) -> Option<usize> {
    let mut b = BytesMut::from(plain);
    let before = b.len();
    TargetAddr::decode(&mut b)
        .ok()
        .flatten()
        .map(|_| before - b.len())
}

/// What a decoder expects at the front of the stream, before the salt.
#[derive(Clone, Copy)]
enum Expect {
    Sip004,
    Request,
    Response { request_salt: [u8; 32] },
}

/// Where a decoder is: before the salt, or keyed by it at some step of the stream.
enum Phase {
    Salt(Expect),
    Keyed(Cipher, Step),
}

/// The next piece a keyed decoder opens.
#[derive(Clone, Copy)]
enum Step {
    /// SIP022 request: type, timestamp, length of the variable header.
    RequestFixed,
    /// SIP022 request: address, padding, first payload.
    RequestVar(usize),
    /// SIP022 response: type, timestamp, the request's salt, first chunk's length.
    ResponseFixed { request_salt: [u8; 32] },
    /// SIP022 response: the first chunk, whose length the header gave.
    FirstChunk(usize),
    /// A chunk's sealed length.
    Length,
    /// A chunk's payload.
    Payload(usize),
}

/// Opens chunks from received bytes; reads the salt (and SIP022 header) first.
pub struct Decoder {
    key: MasterKey,
    salt: [u8; 32],
    phase: Phase,
    clock: Clock,
    max: usize,
    confirm: bool,
    /// Something keyed by the peer's salt has opened: the salt is the peer's own.
    authenticated: bool,
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

impl Decoder {
    /// A server's decoder for a request (SIP022 checks its timestamp against this machine's
    /// clock when the header arrives).
    pub fn new(key: &MasterKey) -> Self {
        Self::request_with(key, Clock::System)
    }

    /// A request decoder with a pinned clock (tests).
    pub fn request_at(key: &MasterKey, now: u64) -> Self {
        Self::request_with(key, Clock::Pinned(now))
    }

    /// A request decoder reading the time from `clock`.
    pub fn request_with(key: &MasterKey, clock: Clock) -> Self {
        let expect = if key.method().is_2022() {
            Expect::Request
        } else {
            Expect::Sip004
        };
        Decoder {
            key: key.clone(),
            salt: [0u8; 32],
            phase: Phase::Salt(expect),
            clock,
            max: key.method().max_payload(),
            confirm: false,
            authenticated: false,
        }
    }

    /// A client's decoder for the response to the request sent with `request_salt`.
    pub fn response(key: &MasterKey, request_salt: &[u8]) -> Self {
        Self::response_with(key, request_salt, Clock::System)
    }

    /// A response decoder with a pinned clock (tests).
    pub fn response_at(key: &MasterKey, request_salt: &[u8], now: u64) -> Self {
        Self::response_with(key, request_salt, Clock::Pinned(now))
    }

    /// A response decoder reading the time from `clock`.
    pub fn response_with(key: &MasterKey, request_salt: &[u8], clock: Clock) -> Self {
        let mut d = Self::request_with(key, clock);
        if key.method().is_2022() {
            let mut s = [0u8; 32];
            s[..request_salt.len().min(32)]
                .copy_from_slice(&request_salt[..request_salt.len().min(32)]);
            d.phase = Phase::Salt(Expect::Response { request_salt: s });
        }
        d
    }

    /// SIP022: the request's padding asked for an answer as soon as the target is up.
    pub fn confirmation_asked(&self) -> bool {
        self.confirm
    }

    /// The peer's salt, once read.
    pub fn salt(&self) -> Option<&[u8]> {
        matches!(self.phase, Phase::Keyed(..)).then(|| &self.salt[..self.key.method().salt_len()])
    }

    /// True once a piece sealed under the peer's salt has opened.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// True between chunks (or before the salt): an EOF here is a clean end.
    pub fn at_boundary(&self) -> bool {
        matches!(self.phase, Phase::Salt(_) | Phase::Keyed(_, Step::Length))
    }

    /// Bytes still needed before the next step can make progress, given `have` buffered.
    pub fn needed(&self, have: usize) -> usize {
        let want = match self.phase {
            Phase::Salt(_) => self.key.method().salt_len(),
            Phase::Keyed(_, step) => match step {
                Step::RequestFixed => FIXED_REQUEST + TAG_LEN,
                Step::ResponseFixed { .. } => FIXED_RESPONSE + TAG_LEN,
                Step::Length => 2 + TAG_LEN,
                Step::RequestVar(n) | Step::FirstChunk(n) | Step::Payload(n) => n + TAG_LEN,
            },
        };
        want.saturating_sub(have)
    }

    /// True once past the salt and any SIP022 header: the rest is a run of chunks, which
    /// [`Decoder::open_run`] opens.
    pub fn streaming(&self) -> bool {
        matches!(self.phase, Phase::Keyed(_, Step::Length | Step::Payload(_)))
    }

    /// Opens every whole chunk in `buf[*from..]`, each payload's plaintext written down to
    /// `buf[*to..]` by the same pass that authenticates it, so the plaintext of many chunks
    /// ends up contiguous at the front with nothing copied. Advances `*from` past what was
    /// opened and `*to` past the plaintext; stops at a partial chunk, or at once if the
    /// stream is not [`streaming`](Decoder::streaming) (`decode` reads headers).
    pub fn open_run(
        &mut self,
        buf: &mut [u8],
        from: &mut usize,
        to: &mut usize,
    ) -> Result<(), AeadError> {
        let Phase::Keyed(cipher, step) = &mut self.phase else {
            return Ok(());
        };
        loop {
            match *step {
                Step::Length => {
                    let end = *from + 2 + TAG_LEN;
                    if buf.len() < end {
                        return Ok(());
                    }
                    let len = open_length(cipher, &mut buf[*from..end], self.max)?;
                    self.authenticated = true;
                    *from = end;
                    *step = Step::Payload(len);
                }
                Step::Payload(n) => {
                    let end = *from + n + TAG_LEN;
                    if buf.len() < end {
                        return Ok(());
                    }
                    if !cipher.open_to_front(&mut buf[*to..end], *from - *to) {
                        return Err(AeadError::PayloadTag);
                    }
                    *from = end;
                    *to += n;
                    *step = Step::Length;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Takes the next whole chunk from the front of `buf` and returns its plaintext
    /// (opened in place, no copy); `Ok(None)` means more bytes are needed. A SIP022
    /// request's first chunk is the address followed by the payload (padding removed).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, AeadError> {
        loop {
            let (cipher, step) = match &mut self.phase {
                Phase::Salt(expect) => {
                    let n = self.key.method().salt_len();
                    if buf.len() < n {
                        return Ok(None);
                    }
                    let salt = buf.split_to(n);
                    self.salt[..n].copy_from_slice(&salt);
                    let step = match *expect {
                        Expect::Sip004 => Step::Length,
                        Expect::Request => Step::RequestFixed,
                        Expect::Response { request_salt } => Step::ResponseFixed { request_salt },
                    };
                    self.phase = Phase::Keyed(Cipher::new(&self.key, &salt), step);
                    continue;
                }
                Phase::Keyed(cipher, step) => (cipher, step),
            };
            let (len, err) = match *step {
                Step::RequestFixed => (FIXED_REQUEST, AeadError::LengthTag),
                Step::ResponseFixed { .. } => (FIXED_RESPONSE, AeadError::LengthTag),
                Step::Length => (2, AeadError::LengthTag),
                Step::RequestVar(n) | Step::FirstChunk(n) | Step::Payload(n) => {
                    (n, AeadError::PayloadTag)
                }
            };
            if buf.len() < len + TAG_LEN {
                return Ok(None);
            }
            let mut piece = buf.split_to(len + TAG_LEN);
            if let Step::Length = step {
                // The same rule as the run of chunks reads lengths by.
                *step = Step::Payload(open_length(cipher, &mut piece, self.max)?);
                self.authenticated = true;
                continue;
            }
            if !cipher.open(&mut piece) {
                return Err(err);
            }
            self.authenticated = true;
            piece.truncate(len);
            match *step {
                Step::RequestFixed => {
                    check_header(piece[0], REQUEST, &piece[1..9], self.clock.now())?;
                    *step = Step::RequestVar(u16::from_be_bytes([piece[9], piece[10]]) as usize);
                }
                Step::ResponseFixed { request_salt } => {
                    check_header(piece[0], RESPONSE, &piece[1..9], self.clock.now())?;
                    if !crate::config::ct_eq(&piece[9..41], &request_salt) {
                        return Err(AeadError::BadHeader("response is for another request"));
                    }
                    *step = Step::FirstChunk(u16::from_be_bytes([piece[41], piece[42]]) as usize);
                }
                Step::RequestVar(_) => {
                    *step = Step::Length;
                    let (first, confirm) = request_payload(piece)?;
                    self.confirm = confirm;
                    return Ok(Some(first));
                }
                Step::FirstChunk(_) | Step::Payload(_) | Step::Length => {
                    *step = Step::Length;
                    return Ok(Some(piece));
                }
            }
        }
    }
}

/// Opens a chunk's sealed length in place: the payload length, at most `max`.
fn open_length(cipher: &mut Cipher, sealed: &mut [u8], max: usize) -> Result<usize, AeadError> {
    if !cipher.open(sealed) {
        return Err(AeadError::LengthTag);
    }
    let len = u16::from_be_bytes([sealed[0], sealed[1]]) as usize;
    if len > max {
        return Err(AeadError::Oversize(len));
    }
    Ok(len)
}

/// A SIP022 request's variable header, opened: the address followed by the payload
/// (padding taken out), and whether the padding asks for a confirmation.
fn request_payload(mut var: BytesMut) -> Result<(BytesMut, bool), AeadError> {
    let addr = address_len(&var).ok_or(AeadError::BadHeader("address"))?;
    if var.len() < addr + 2 {
        return Err(AeadError::BadHeader("padding length"));
    }
    let pad = u16::from_be_bytes([var[addr], var[addr + 1]]) as usize;
    if var.len() < addr + 2 + pad {
        return Err(AeadError::BadHeader("padding length"));
    }
    let confirm = var[addr + 2..addr + 2 + pad].starts_with(CONFIRM_MARKER);
    if pad == 0 && var.len() == addr + 2 {
        return Err(AeadError::BadHeader("no payload and no padding"));
    }
    let mut rest = var.split_off(addr + 2 + pad);
    var.truncate(addr);
    var.unsplit(std::mem::take(&mut rest));
    Ok((var, confirm))
}

fn check_header(kind: u8, want: u8, ts: &[u8], now: u64) -> Result<(), AeadError> {
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
