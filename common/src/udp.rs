//! UDP, sans IO: the three framings a datagram takes on its way.
//!
//! - SOCKS5 UDP (RFC 1928 §7), between the app and burrow-local:
//!   `RSV(2) FRAG(1) ATYP ADDR PORT DATA`.
//! - The Shadowsocks UDP relay (SIP004 AEAD), between burrow-local and burrow-server's
//!   UDP port: `salt || AEAD(subkey(salt), nonce 0, ATYP ADDR PORT DATA)`, one salt per
//!   packet (shadowsocks-rust's and -libev's format).
//! - UDP over the TCP tunnel, in sing-box's UDP-over-TCP v2 framing (the tunnel's target
//!   is [`UOT_MAGIC`]): a request `IS_CONNECT(1) ATYP ADDR PORT`, then packets
//!   `ATYP ADDR PORT LEN(2) DATA` (or `LEN(2) DATA` in connect mode) both ways.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::addr::TargetAddr;
use crate::aead::TAG_LEN;
use crate::cipher::Cipher;
use crate::key::MasterKey;
use crate::udp2022;

/// The tunnel target that means "UDP over this stream" (sing-box UoT v2).
pub const UOT_MAGIC: &str = "sp.v2.udp-over-tcp.arpa";

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

pub use crate::udp_error::UdpError;

/// burrow-local's end of the Shadowsocks UDP relay, for every method: SIP004 packets, or
/// SIP022 ones in a session of its own (ids counted, the server's checked once each).
pub struct ClientCodec {
    key: MasterKey,
    session: u64,
    next: u64,
    /// Windows of the server sessions answering (a few at most).
    windows: Vec<(u64, udp2022::Window)>,
}

impl ClientCodec {
    /// A codec (for SIP022, a new session) for `key`.
    pub fn new(key: &MasterKey) -> ClientCodec {
        ClientCodec {
            key: key.clone(),
            session: rand::random(),
            next: 0,
            windows: Vec::new(),
        }
    }

    /// One packet to the server for `to`.
    pub fn seal(&mut self, to: &TargetAddr, data: &[u8]) -> BytesMut {
        if !self.key.method().is_2022() {
            return seal(&self.key, to, data).unwrap_or_default();
        }
        self.next += 1;
        let now = crate::frame::unix_now();
        udp2022::seal(
            &self.key,
            &udp2022::Header {
                from: udp2022::From::Client,
                session: self.session,
                packet_id: self.next,
                client_session: 0,
                now,
            },
            to,
            data,
        )
    }

    /// A packet from the server: its source and data.
    pub fn open(&mut self, packet: &[u8]) -> Result<(TargetAddr, Bytes), UdpError> {
        if !self.key.method().is_2022() {
            return open(&self.key, packet);
        }
        let now = crate::frame::unix_now();
        let p = udp2022::open(&self.key, udp2022::From::Server, packet, now)?;
        if p.client_session != Some(self.session) {
            return Err(UdpError::Session);
        }
        let i = match self.windows.iter().position(|(s, _)| *s == p.session) {
            Some(i) => i,
            None => {
                if self.windows.len() >= 4 {
                    self.windows.remove(0);
                }
                self.windows.push((p.session, udp2022::Window::default()));
                self.windows.len() - 1
            }
        };
        if !self.windows[i].1.take(p.packet_id) {
            return Err(UdpError::Replay);
        }
        Ok((p.addr, p.data))
    }
}

/// A packet from a client, opened: for SIP022 with its session and packet id.
#[derive(Debug)]
pub struct Incoming {
    /// SIP022: (client session, packet id).
    pub ids: Option<(u64, u64)>,
    /// The destination.
    pub to: TargetAddr,
    /// The payload.
    pub data: Bytes,
}

/// Opens a packet from a client (any method); the replay check is the session's.
pub fn open_from_client(key: &MasterKey, packet: &[u8]) -> Result<Incoming, UdpError> {
    if !key.method().is_2022() {
        let (to, data) = open(key, packet)?;
        return Ok(Incoming {
            ids: None,
            to,
            data,
        });
    }
    let p = udp2022::open(key, udp2022::From::Client, packet, crate::frame::unix_now())?;
    Ok(Incoming {
        ids: Some((p.session, p.packet_id)),
        to: p.addr,
        data: p.data,
    })
}

/// burrow-server's end for one client: SIP022 packet ids taken once each, answers in a
/// server session of its own.
pub struct ServerCodec {
    key: MasterKey,
    session: u64,
    next: u64,
    client: Option<(u64, udp2022::Window)>,
}

impl ServerCodec {
    /// A codec (for SIP022, a new server session) for `key`.
    pub fn new(key: &MasterKey) -> ServerCodec {
        ServerCodec {
            key: key.clone(),
            session: rand::random(),
            next: 0,
            client: None,
        }
    }

    /// Whether `incoming` is new (SIP004: always); a new client session starts afresh.
    pub fn accept(&mut self, incoming: &Incoming) -> bool {
        let Some((session, id)) = incoming.ids else {
            return true;
        };
        match &mut self.client {
            Some((s, w)) if *s == session => w.take(id),
            _ => {
                let mut w = udp2022::Window::default();
                w.take(id);
                self.client = Some((session, w));
                true
            }
        }
    }

    /// One packet to the client: `from`'s data.
    pub fn seal(&mut self, from: &TargetAddr, data: &[u8]) -> BytesMut {
        if !self.key.method().is_2022() {
            return seal(&self.key, from, data).unwrap_or_default();
        }
        self.next += 1;
        let client = self.client.as_ref().map_or(0, |(s, _)| *s);
        let now = crate::frame::unix_now();
        udp2022::seal(
            &self.key,
            &udp2022::Header {
                from: udp2022::From::Server,
                session: self.session,
                packet_id: self.next,
                client_session: client,
                now,
            },
            from,
            data,
        )
    }
}

/// Reads a SOCKS5 address at the front of `buf`, advancing past it.
fn take_addr(buf: &mut BytesMut) -> Result<TargetAddr, UdpError> {
    TargetAddr::decode(buf)?.ok_or(UdpError::Short)
}

/// A SOCKS5 UDP request from the app: its destination and data.
pub fn socks5_open(datagram: &[u8]) -> Result<(TargetAddr, Bytes), UdpError> {
    if datagram.len() < 4 {
        return Err(UdpError::Short);
    }
    if datagram[2] != 0 {
        return Err(UdpError::Fragment(datagram[2]));
    }
    let mut buf = BytesMut::from(&datagram[3..]);
    let addr = take_addr(&mut buf)?;
    Ok((addr, buf.freeze()))
}

/// A SOCKS5 UDP reply to the app: `from`'s data.
pub fn socks5_seal(from: &TargetAddr, data: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(3 + from.encoded_len() + data.len());
    out.put_slice(&[0, 0, 0]);
    from.encode(&mut out);
    out.put_slice(data);
    out
}

/// One Shadowsocks UDP packet: a fresh salt, then `addr || data` sealed under it.
pub fn seal(key: &MasterKey, addr: &TargetAddr, data: &[u8]) -> Result<BytesMut, UdpError> {
    let method = key.method();
    if method.is_2022() {
        return Err(UdpError::Method(method.name()));
    }
    let salt_len = method.salt_len();
    let mut out = BytesMut::with_capacity(salt_len + addr.encoded_len() + data.len() + TAG_LEN);
    out.resize(salt_len, 0);
    rand::Rng::fill(&mut rand::thread_rng(), &mut out[..]);
    let mut cipher = Cipher::new(key, &out[..salt_len]);
    addr.encode(&mut out);
    out.put_slice(data);
    let tag = cipher.seal(&mut out[salt_len..]);
    out.put_slice(&tag);
    Ok(out)
}

/// Opens a Shadowsocks UDP packet: the address inside and the data.
pub fn open(key: &MasterKey, packet: &[u8]) -> Result<(TargetAddr, Bytes), UdpError> {
    let method = key.method();
    if method.is_2022() {
        return Err(UdpError::Method(method.name()));
    }
    let salt_len = method.salt_len();
    if packet.len() < salt_len + TAG_LEN + 1 {
        return Err(UdpError::Short);
    }
    let (salt, sealed) = packet.split_at(salt_len);
    let mut buf = BytesMut::from(sealed);
    if !Cipher::new(key, salt).open(&mut buf) {
        return Err(UdpError::Auth);
    }
    buf.truncate(buf.len() - TAG_LEN);
    let addr = take_addr(&mut buf)?;
    Ok((addr, buf.freeze()))
}

/// The UoT v2 request that opens a stream of packets to any destination.
pub fn uot_request() -> BytesMut {
    let mut out = BytesMut::with_capacity(8);
    out.put_u8(0);
    TargetAddr::Ip(std::net::SocketAddr::from(([0, 0, 0, 0], 0))).encode(&mut out);
    out
}

/// Reads the UoT v2 request at the front of `buf`: `Some((is_connect, destination))`
/// once whole.
pub fn uot_read_request(buf: &mut BytesMut) -> Result<Option<(bool, TargetAddr)>, UdpError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut rest = BytesMut::from(&buf[1..]);
    let Some(addr) = TargetAddr::decode(&mut rest)? else {
        return Ok(None);
    };
    let is_connect = buf[0] != 0;
    buf.advance(1 + addr.encoded_len());
    Ok(Some((is_connect, addr)))
}

/// Appends one UoT v2 packet: `addr` (unless connect mode), length, data.
pub fn uot_put(out: &mut BytesMut, addr: Option<&TargetAddr>, data: &[u8]) {
    if let Some(a) = addr {
        a.encode(out);
    }
    let len = data.len().min(u16::MAX as usize);
    out.put_u16(len as u16);
    out.put_slice(&data[..len]);
}

/// Takes one whole UoT v2 packet from the front of `buf`, if there is one; in connect
/// mode (`connected` is the destination) the packet carries no address.
pub fn uot_take(
    buf: &mut BytesMut,
    connected: Option<&TargetAddr>,
) -> Result<Option<(TargetAddr, Bytes)>, UdpError> {
    let (addr, head) = match connected {
        Some(a) => (a.clone(), 0),
        None => {
            let mut peek = buf.clone();
            match TargetAddr::decode(&mut peek)? {
                Some(a) => {
                    let n = a.encoded_len();
                    (a, n)
                }
                None => return Ok(None),
            }
        }
    };
    if buf.len() < head + 2 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[head], buf[head + 1]]) as usize;
    if buf.len() < head + 2 + len {
        return Ok(None);
    }
    buf.advance(head + 2);
    Ok(Some((addr, buf.split_to(len).freeze())))
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
