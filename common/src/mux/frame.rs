//! Mux.Cool frames: encoding, reading, and telling a client's first frame from a
//! Shadowsocks salt.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::TargetAddr;

pub(super) const NEW: u8 = 1;
pub(super) const KEEP: u8 = 2;
pub(super) const END: u8 = 3;
pub(super) const KEEP_ALIVE: u8 = 4;
const OPT_DATA: u8 = 1;
const OPT_ERROR: u8 = 2;

/// v2ray refuses longer metadata.
const MAX_META: usize = 512;
/// Data per frame at most (as v2ray splits streams).
pub const MAX_DATA: usize = 8 * 1024;

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The session.
    pub id: u16,
    /// New, Keep, End or KeepAlive.
    pub status: u8,
    /// The error option (on End: a reset).
    pub error: bool,
    /// New: where the session goes (v2ray-plugin's server ignores it).
    pub target: Option<TargetAddr>,
    /// The data, if any.
    pub data: Bytes,
}

/// Encodes one frame.
pub fn encode(
    out: &mut BytesMut,
    id: u16,
    status: u8,
    target: Option<&TargetAddr>,
    error: bool,
    data: &[u8],
) {
    let start = out.len();
    out.put_u16(0);
    out.put_u16(id);
    out.put_u8(status);
    let option = if data.is_empty() { 0 } else { OPT_DATA } | if error { OPT_ERROR } else { 0 };
    out.put_u8(option);
    if status == NEW {
        let target = target
            .cloned()
            .unwrap_or(TargetAddr::Ip(SocketAddr::from(([127, 0, 0, 1], 0))));
        out.put_u8(1); // TCP
        out.put_u16(target.port());
        match &target {
            TargetAddr::Ip(SocketAddr::V4(a)) => {
                out.put_u8(1);
                out.put_slice(&a.ip().octets());
            }
            TargetAddr::Ip(SocketAddr::V6(a)) => {
                out.put_u8(3);
                out.put_slice(&a.ip().octets());
            }
            TargetAddr::Domain(name, _) => {
                out.put_u8(2);
                out.put_u8(name.len().min(255) as u8);
                out.put_slice(&name.as_bytes()[..name.len().min(255)]);
            }
        }
    }
    let meta_len = (out.len() - start - 2) as u16;
    out[start..start + 2].copy_from_slice(&meta_len.to_be_bytes());
    if !data.is_empty() {
        out.put_u16(data.len() as u16);
        out.put_slice(data);
    }
}

pub(super) fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("mux frame: {what}"))
}

/// Reads one frame; `Ok(None)` at a clean end between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 2];
    match r.read(&mut len[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut len[1..]).await?,
    };
    let meta_len = u16::from_be_bytes(len) as usize;
    if !(4..=MAX_META).contains(&meta_len) {
        return Err(bad(&format!("metadata length {meta_len}")));
    }
    let mut meta = [0u8; MAX_META];
    r.read_exact(&mut meta[..meta_len]).await?;
    let mut frame = parse_meta(&meta[..meta_len])?;
    if meta[3] & OPT_DATA != 0 {
        let n = r.read_u16().await? as usize;
        let mut data = BytesMut::zeroed(n);
        r.read_exact(&mut data).await?;
        frame.data = data.freeze();
    }
    Ok(Some(frame))
}

/// The metadata of one frame (without its length).
fn parse_meta(mut m: &[u8]) -> io::Result<Frame> {
    if m.len() < 4 {
        return Err(bad("short metadata"));
    }
    let id = m.get_u16();
    let status = m.get_u8();
    let option = m.get_u8();
    let target = match status {
        NEW => Some(parse_target(m)?),
        KEEP | END | KEEP_ALIVE => None,
        other => return Err(bad(&format!("unknown status {other}"))),
    };
    Ok(Frame {
        id,
        status,
        error: option & OPT_ERROR != 0,
        target,
        data: Bytes::new(),
    })
}

fn parse_target(mut m: &[u8]) -> io::Result<TargetAddr> {
    if m.len() < 4 {
        return Err(bad("short New"));
    }
    let network = m.get_u8();
    if network != 1 && network != 2 {
        return Err(bad(&format!("network {network}")));
    }
    let port = m.get_u16();
    let ip = match m.get_u8() {
        1 if m.len() >= 4 => IpAddr::from(<[u8; 4]>::try_from(&m[..4]).unwrap_or_default()),
        3 if m.len() >= 16 => IpAddr::from(<[u8; 16]>::try_from(&m[..16]).unwrap_or_default()),
        2 if !m.is_empty() && m.len() > m[0] as usize => {
            let name = std::str::from_utf8(&m[1..=m[0] as usize]).map_err(|_| bad("name"))?;
            return Ok(TargetAddr::Domain(name.to_owned(), port));
        }
        _ => return Err(bad("address")),
    };
    Ok(TargetAddr::Ip(SocketAddr::new(ip, port)))
}

/// The target that asks a Shadowsocks server to carry Mux.Cool inside the tunnel
/// (v2ray's name for it).
pub const CARRIER: (&str, u16) = ("v1.mux.cool", 9527);

/// Whether `target` asks for a shared connection (see [`CARRIER`]).
pub fn is_carrier(target: &TargetAddr) -> bool {
    matches!(target, TargetAddr::Domain(name, port) if name == CARRIER.0 && *port == CARRIER.1)
}

/// Whether `head` (at least 10 bytes) is how a Mux.Cool client opens: a New frame's
/// metadata of a consistent length. A Shadowsocks salt looks like this about once in
/// 10⁹ (random bytes matching five fields).
pub fn looks_like_mux(head: &[u8]) -> bool {
    if head.len() < 10 {
        return false;
    }
    let meta_len = u16::from_be_bytes([head[0], head[1]]) as usize;
    let expected = match head[9] {
        1 => 12,
        3 => 24,
        2 => 9 + head.get(10).map_or(0, |n| *n as usize),
        _ => return false,
    };
    head[4] == NEW && matches!(head[6], 1 | 2) && head[5] & !3 == 0 && meta_len == expected
}
