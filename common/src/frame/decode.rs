//! The opening side: salt, any SIP022 header, then chunks — one at a time (`decode`) or
//! a run of them in place (`open_run`).

use bytes::BytesMut;

use super::{
    address_len, check_header, Clock, CONFIRM_MARKER, FIXED_REQUEST, FIXED_RESPONSE, REQUEST,
    RESPONSE,
};
use crate::aead::{AeadError, TAG_LEN};
use crate::cipher::Cipher;
use crate::key::MasterKey;

/// What a decoder expects at the front of the stream, before the salt.
#[derive(Clone, Copy)]
enum Expect {
    Sip004,
    Request,
    Response { request_salt: [u8; 32] },
}

/// Where a decoder is: before the salt, or keyed by it at some step of the stream.
// A decoder goes from `Salt` to `Keyed` once and lives in its stream: boxing the cipher
// would cost every stream an allocation to save a few bytes before its salt arrives.
#[allow(clippy::large_enum_variant)]
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
