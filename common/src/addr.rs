//! The target address, SOCKS5 style (RFC 1928 §5), as it opens every request stream.
//!
//! ```text
//! +------+----------------------------+----------+
//! | ATYP | DST.ADDR                   | DST.PORT |
//! +------+----------------------------+----------+
//! | 0x01 | 4 bytes IPv4               | u16 BE   |
//! | 0x03 | 1 byte len + len bytes name| u16 BE   |
//! | 0x04 | 16 bytes IPv6              | u16 BE   |
//! ```
//!
//! Pure: one parser, used by every role.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bytes::{Buf, BufMut, BytesMut};

/// Where a tunnel should go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// A literal address.
    Ip(SocketAddr),
    /// A name, resolved by whoever dials (the server, never the laptop).
    Domain(String, u16),
}

/// A malformed address header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// ATYP not 1, 3 or 4.
    #[error("unknown address type {0:#04x}")]
    BadAtyp(u8),
    /// An empty or non-UTF-8 domain name.
    #[error("domain name is empty or not UTF-8")]
    BadDomain,
    /// Text that is not `host:port`.
    #[error("{0:?} is not host:port")]
    BadText(String),
}

impl TargetAddr {
    /// From a host (an IP literal, brackets off, or a DNS name) and a port.
    pub fn new(host: &str, port: u16) -> Result<TargetAddr, AddrError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(TargetAddr::Ip(SocketAddr::new(ip, port)));
        }
        let valid = !host.is_empty()
            && host.len() <= 255
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
        if !valid {
            return Err(AddrError::BadText(host.to_owned()));
        }
        Ok(TargetAddr::Domain(host.to_owned(), port))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(a) => a.port(),
            TargetAddr::Domain(_, p) => *p,
        }
    }

    /// The host part, as text (IPv6 without brackets).
    pub fn host(&self) -> String {
        match self {
            TargetAddr::Ip(a) => a.ip().to_string(),
            TargetAddr::Domain(d, _) => d.clone(),
        }
    }

    /// Bytes `encode` appends.
    pub fn encoded_len(&self) -> usize {
        match self {
            TargetAddr::Ip(SocketAddr::V4(_)) => 1 + 4 + 2,
            TargetAddr::Ip(SocketAddr::V6(_)) => 1 + 16 + 2,
            TargetAddr::Domain(d, _) => 1 + 1 + d.len().min(255) + 2,
        }
    }

    /// Appends the wire form. A domain longer than 255 bytes is cut to 255 (callers validate).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        match self {
            TargetAddr::Ip(SocketAddr::V4(a)) => {
                out.put_u8(1);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
            TargetAddr::Ip(SocketAddr::V6(a)) => {
                out.put_u8(4);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
            TargetAddr::Domain(d, port) => {
                let name = &d.as_bytes()[..d.len().min(255)];
                out.put_u8(3);
                out.put_u8(name.len() as u8);
                out.put_slice(name);
                out.put_u16(*port);
            }
        }
    }

    /// Takes an address from the front of `buf`; `Ok(None)` if more bytes are needed.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, AddrError> {
        let Some(&atyp) = buf.first() else {
            return Ok(None);
        };
        let need = match atyp {
            1 => 1 + 4 + 2,
            4 => 1 + 16 + 2,
            3 => match buf.get(1) {
                Some(&0) => return Err(AddrError::BadDomain),
                Some(&n) => 1 + 1 + n as usize + 2,
                None => return Ok(None),
            },
            other => return Err(AddrError::BadAtyp(other)),
        };
        if buf.len() < need {
            return Ok(None);
        }
        let mut b = buf.split_to(need);
        b.advance(1);
        let addr = match atyp {
            1 => {
                let mut ip = [0u8; 4];
                b.copy_to_slice(&mut ip);
                TargetAddr::Ip(SocketAddr::new(Ipv4Addr::from(ip).into(), b.get_u16()))
            }
            4 => {
                let mut ip = [0u8; 16];
                b.copy_to_slice(&mut ip);
                TargetAddr::Ip(SocketAddr::new(Ipv6Addr::from(ip).into(), b.get_u16()))
            }
            _ => {
                let n = b.get_u8() as usize;
                let name = std::str::from_utf8(&b[..n]).map_err(|_| AddrError::BadDomain)?;
                let name = name.to_owned();
                b.advance(n);
                TargetAddr::Domain(name, b.get_u16())
            }
        };
        Ok(Some(addr))
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(a) => write!(f, "{a}"),
            TargetAddr::Domain(d, p) => write!(f, "{d}:{p}"),
        }
    }
}

impl FromStr for TargetAddr {
    type Err = AddrError;
    /// `1.2.3.4:80`, `[::1]:80` or `name:80`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hp: crate::HostPort = s.parse()?;
        TargetAddr::new(&hp.host, hp.port).map_err(|_| AddrError::BadText(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(a: TargetAddr) {
        let mut buf = BytesMut::new();
        a.encode(&mut buf);
        assert_eq!(buf.len(), a.encoded_len());
        buf.put_slice(b"rest");
        assert_eq!(TargetAddr::decode(&mut buf), Ok(Some(a)));
        assert_eq!(&buf[..], b"rest", "leftover bytes are kept");
    }

    #[test]
    fn round_trips() {
        round_trip("1.2.3.4:80".parse().expect("v4"));
        round_trip("[2001:db8::1]:443".parse().expect("v6"));
        round_trip("example.com:8080".parse().expect("name"));
    }

    #[test]
    fn vector_a_request_header() {
        let mut buf =
            BytesMut::from(&hex::decode("030b6578616d706c652e636f6d0050").expect("hex")[..]);
        assert_eq!(
            TargetAddr::decode(&mut buf),
            Ok(Some(TargetAddr::Domain("example.com".into(), 80)))
        );
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        for a in ["1.2.3.4:80", "[::1]:1", "a.example:9"] {
            let a: TargetAddr = a.parse().expect("valid");
            let mut full = BytesMut::new();
            a.encode(&mut full);
            for n in 0..full.len() {
                let mut part = BytesMut::from(&full[..n]);
                assert_eq!(TargetAddr::decode(&mut part), Ok(None), "{a} prefix {n}");
                assert_eq!(part.len(), n, "nothing consumed");
            }
        }
    }

    #[test]
    fn malformed_headers_are_errors() {
        for atyp in [0u8, 2, 5, 0xff] {
            let mut b = BytesMut::from(&[atyp, 0, 0, 0, 0, 0, 0][..]);
            assert_eq!(TargetAddr::decode(&mut b), Err(AddrError::BadAtyp(atyp)));
        }
        let mut b = BytesMut::from(&[3u8, 0, 0, 80][..]);
        assert_eq!(TargetAddr::decode(&mut b), Err(AddrError::BadDomain));
        let mut b = BytesMut::from(&[3u8, 2, 0xff, 0xfe, 0, 80][..]);
        assert_eq!(TargetAddr::decode(&mut b), Err(AddrError::BadDomain));
    }

    #[test]
    fn text_forms() {
        assert!("no-port".parse::<TargetAddr>().is_err());
        assert!("host:99999".parse::<TargetAddr>().is_err());
        assert!("bad host:80".parse::<TargetAddr>().is_err());
        assert_eq!(
            "[::1]:8388".parse::<TargetAddr>().ok(),
            Some(TargetAddr::Ip("[::1]:8388".parse().expect("v6")))
        );
    }
}
