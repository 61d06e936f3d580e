//! SIP022 UDP for `2022-blake3-chacha20-poly1305`, sans IO: every packet is
//! `nonce(24) || XChaCha20-Poly1305(PSK, nonce, header || padding || address || data)`
//! (RustCrypto's `chacha20poly1305`; the PSK is the key, no session subkey). The header
//! is `session id(8) packet id(8) type(1) timestamp(8)`, then from the server the
//! client's session id(8), then `padding length(2)`. A packet more than 30 s away from
//! this machine's clock is refused; packet ids are checked against a sliding window.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::addr::TargetAddr;
use crate::aead::TAG_LEN;
use crate::key::MasterKey;
use crate::udp_error::UdpError;

const NONCE_LEN: usize = 24;
const CLIENT: u8 = 0;
const SERVER: u8 = 1;
/// Seconds a packet's timestamp may be from this machine's clock.
pub const MAX_SKEW: u64 = 30;

/// Which end sealed a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// burrow-local (or any Shadowsocks client).
    Client,
    /// burrow-server.
    Server,
}

/// An opened packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The sender's session id.
    pub session: u64,
    /// Its packet id within that session.
    pub packet_id: u64,
    /// From a server: the client session it answers.
    pub client_session: Option<u64>,
    /// The destination (from a client) or the source (from a server).
    pub addr: TargetAddr,
    /// The payload.
    pub data: Bytes,
}

fn cipher(key: &MasterKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(key.as_bytes()))
}

/// The header fields of a packet to seal.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// Which end seals it.
    pub from: From,
    /// The sender's session id.
    pub session: u64,
    /// Its packet id within that session.
    pub packet_id: u64,
    /// From a server: the client session it answers (ignored from a client).
    pub client_session: u64,
    /// Unix seconds.
    pub now: u64,
}

/// Seals one packet. An empty payload gets 1–900 bytes of random padding.
pub fn seal(key: &MasterKey, h: &Header, addr: &TargetAddr, data: &[u8]) -> BytesMut {
    let Header {
        from,
        session,
        packet_id,
        client_session,
        now,
    } = *h;
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let padding = if data.is_empty() {
        rng.gen_range(1..=900usize)
    } else {
        0
    };
    let mut out = BytesMut::with_capacity(
        NONCE_LEN + 35 + padding + addr.encoded_len() + data.len() + TAG_LEN,
    );
    out.resize(NONCE_LEN, 0);
    rng.fill(&mut out[..]);
    out.put_u64(session);
    out.put_u64(packet_id);
    out.put_u8(match from {
        From::Client => CLIENT,
        From::Server => SERVER,
    });
    out.put_u64(now);
    if from == From::Server {
        out.put_u64(client_session);
    }
    out.put_u16(padding as u16);
    out.resize(out.len() + padding, 0);
    addr.encode(&mut out);
    out.put_slice(data);
    let (nonce, body) = out.split_at_mut(NONCE_LEN);
    let tag = cipher(key)
        .encrypt_in_place_detached(XNonce::from_slice(nonce), b"", body)
        .unwrap_or_else(|_| unreachable!("a UDP packet is far below the AEAD size limit"));
    out.put_slice(&tag);
    out
}

/// Opens a packet sealed by `from`, at time `now` (unix seconds).
pub fn open(key: &MasterKey, from: From, packet: &[u8], now: u64) -> Result<Packet, UdpError> {
    let fixed = 8 + 8 + 1 + 8 + 2 + if from == From::Server { 8 } else { 0 };
    if packet.len() < NONCE_LEN + fixed + TAG_LEN {
        return Err(UdpError::Short);
    }
    let (nonce, rest) = packet.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = BytesMut::from(body);
    cipher(key)
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            b"",
            &mut buf,
            Tag::from_slice(tag),
        )
        .map_err(|_| UdpError::Auth)?;
    let session = buf.get_u64();
    let packet_id = buf.get_u64();
    let kind = buf.get_u8();
    let want = match from {
        From::Client => CLIENT,
        From::Server => SERVER,
    };
    if kind != want {
        return Err(UdpError::Type(kind));
    }
    let stamp = buf.get_u64();
    let skew = i128::from(stamp) - i128::from(now);
    if skew.unsigned_abs() > u128::from(MAX_SKEW) {
        return Err(UdpError::Clock(skew));
    }
    let client_session = (from == From::Server).then(|| buf.get_u64());
    let padding = buf.get_u16() as usize;
    if buf.len() < padding {
        return Err(UdpError::Short);
    }
    buf.advance(padding);
    let addr = TargetAddr::decode(&mut buf)?.ok_or(UdpError::Short)?;
    Ok(Packet {
        session,
        packet_id,
        client_session,
        addr,
        data: buf.freeze(),
    })
}

/// A sliding window over packet ids: each id is taken once, and ids more than 1 024
/// behind the newest are refused.
#[derive(Clone, Debug, Default)]
pub struct Window {
    newest: Option<u64>,
    seen: [u64; 16],
}

impl Window {
    const SPAN: u64 = 1024;

    /// True the first time `id` is offered within the window (and records it).
    pub fn take(&mut self, id: u64) -> bool {
        let newest = match self.newest {
            None => {
                self.newest = Some(id);
                self.set(id);
                return true;
            }
            Some(n) => n,
        };
        if id > newest {
            // Slide: clear every slot between the old newest and the new one.
            let gap = id - newest;
            if gap >= Self::SPAN {
                self.seen = [0; 16];
            } else {
                for i in 1..=gap {
                    self.clear(newest + i);
                }
            }
            self.newest = Some(id);
            self.set(id);
            return true;
        }
        if newest - id >= Self::SPAN || self.is_set(id) {
            return false;
        }
        self.set(id);
        true
    }

    fn slot(id: u64) -> (usize, u64) {
        let bit = id % Self::SPAN;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn set(&mut self, id: u64) {
        let (w, b) = Self::slot(id);
        self.seen[w] |= b;
    }

    fn clear(&mut self, id: u64) {
        let (w, b) = Self::slot(id);
        self.seen[w] &= !b;
    }

    fn is_set(&self, id: u64) -> bool {
        let (w, b) = Self::slot(id);
        self.seen[w] & b != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::Method;

    fn key() -> MasterKey {
        MasterKey::from_base64(
            Method::Blake3ChaCha20Poly1305,
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .expect("key")
    }

    fn addr() -> TargetAddr {
        TargetAddr::Ip("192.0.2.1:53".parse().expect("addr"))
    }

    #[test]
    fn packets_round_trip_and_match_the_layout() {
        let k = key();
        let p = seal(
            &k,
            &Header {
                from: From::Client,
                session: 7,
                packet_id: 1,
                client_session: 0,
                now: 1_000,
            },
            &addr(),
            b"query",
        );
        // nonce, header (8+8+1+8+2), address (7), data (5), tag.
        assert_eq!(p.len(), 24 + 27 + 7 + 5 + 16);
        let got = open(&k, From::Client, &p, 1_010).expect("open");
        assert_eq!(
            (
                got.session,
                got.packet_id,
                got.client_session,
                got.addr,
                &got.data[..]
            ),
            (7, 1, None, addr(), &b"query"[..])
        );
        let back = seal(
            &k,
            &Header {
                from: From::Server,
                session: 9,
                packet_id: 3,
                client_session: 7,
                now: 1_000,
            },
            &addr(),
            b"",
        );
        let got = open(&k, From::Server, &back, 990).expect("open");
        assert_eq!(
            (got.session, got.client_session, got.data.len()),
            (9, Some(7), 0)
        );
        // The other direction's type is refused; so are a clock 31 s off and any bent byte.
        assert_eq!(open(&k, From::Server, &p, 1_000), Err(UdpError::Type(0)));
        assert_eq!(open(&k, From::Client, &p, 1_031), Err(UdpError::Clock(-31)));
        for i in 0..p.len() {
            let mut bent = p.to_vec();
            bent[i] ^= 1;
            assert!(open(&k, From::Client, &bent, 1_000).is_err(), "byte {i}");
        }
        assert_eq!(
            open(&k, From::Client, &p[..40], 1_000),
            Err(UdpError::Short)
        );
    }

    /// The reference: the packet opened with RustCrypto's XChaCha20-Poly1305 by hand,
    /// its fields read at the offsets the SIP022 layout gives.
    #[test]
    fn the_layout_read_by_hand() {
        let k = key();
        let p = seal(
            &k,
            &Header {
                from: From::Server,
                session: 0x0102030405060708,
                packet_id: 42,
                client_session: 0x1111,
                now: 77,
            },
            &addr(),
            b"hi",
        );
        let mut body = p[24..p.len() - 16].to_vec();
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(k.as_bytes()))
            .decrypt_in_place_detached(
                XNonce::from_slice(&p[..24]),
                b"",
                &mut body,
                Tag::from_slice(&p[p.len() - 16..]),
            )
            .expect("reference opens it");
        assert_eq!(&body[..8], &0x0102030405060708u64.to_be_bytes());
        assert_eq!(&body[8..16], &42u64.to_be_bytes());
        assert_eq!(body[16], 1, "server type");
        assert_eq!(&body[17..25], &77u64.to_be_bytes());
        assert_eq!(&body[25..33], &0x1111u64.to_be_bytes());
        assert_eq!(&body[33..35], &[0, 0], "no padding with data");
        assert_eq!(&body[35..42], &[1, 192, 0, 2, 1, 0, 53]);
        assert_eq!(&body[42..], b"hi");
    }

    #[test]
    fn the_window_takes_each_id_once() {
        let mut w = Window::default();
        assert!(w.take(5));
        assert!(!w.take(5));
        assert!(w.take(3), "late but within the window");
        assert!(!w.take(3));
        assert!(w.take(2000));
        assert!(!w.take(900), "too far behind");
        assert!(w.take(1999));
        assert!(!w.take(2000));
        assert!(w.take(u64::MAX));
        assert!(!w.take(u64::MAX));
    }
}
