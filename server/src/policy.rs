//! Egress policy: which resolved addresses the server may dial. Pure.
//!
//! Checked on every address actually dialled (after resolution), so a name that resolves
//! to 127.0.0.1 is refused like the literal (no DNS-rebinding gap). IPv6 forms that carry
//! an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16,
//! Teredo 2001::/32) are judged by the IPv4 address inside; the local-use NAT64 prefix
//! 64:ff9b:1::/48 is refused whole. The host's own addresses are refused on every port.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address block, `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// True if `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    rem == 0 || (a[full] ^ b[full]) >> (8 - rem) == 0
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address block like 10.0.0.0/8");
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Why an address is not a public destination, or `None` if it is.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let in_block = |net: [u8; 4], bits: u8| prefix_eq(&net, &o, bits);
    Some(match () {
        _ if in_block([0, 0, 0, 0], 8) => "this-network (0.0.0.0/8)",
        _ if in_block([127, 0, 0, 0], 8) => "loopback",
        _ if in_block([10, 0, 0, 0], 8) => "private (10/8)",
        _ if in_block([172, 16, 0, 0], 12) => "private (172.16/12)",
        _ if in_block([192, 168, 0, 0], 16) => "private (192.168/16)",
        _ if in_block([169, 254, 0, 0], 16) => "link-local / cloud metadata",
        _ if in_block([100, 64, 0, 0], 10) => "shared address space (100.64/10)",
        _ if in_block([192, 0, 0, 0], 24) => "IETF protocol assignments (192.0.0/24)",
        _ if in_block([198, 18, 0, 0], 15) => "benchmarking (198.18/15)",
        _ if in_block([224, 0, 0, 0], 4) => "multicast",
        _ if in_block([240, 0, 0, 0], 4) => "reserved / broadcast",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let o = ip.octets();
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let v4 = |a: usize| Ipv4Addr::new(o[a], o[a + 1], o[a + 2], o[a + 3]);
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible)
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return classify_v4(v4(12));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(v4(12));
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 8215: a network's own NAT64 prefix, of any length from /48 on, so where
        // the IPv4 address sits is not known: never a public destination.
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if s[..2] == [0x2001, 0] {
        // Teredo (RFC 4380): the relay's IPv4 address in bits 32..64, the client's,
        // inverted, in the last 32; either one private makes it a way inside.
        let client = Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]);
        return classify_v4(v4(4))
            .or(classify_v4(client))
            .map(|_| "Teredo to a private address");
    }
    if s[0] == 0x2002 {
        return classify_v4(v4(2));
    }
    match s[0] {
        x if x & 0xfe00 == 0xfc00 => Some("unique local (fc00::/7)"),
        x if x & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        x if x & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        x if x & 0xff00 == 0xff00 => Some("multicast"),
        _ => None,
    }
}

/// The server's egress rules.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Dial private and special addresses too (the host's own addresses included).
    pub allow_private: bool,
    /// Blocks allowed even though they are private (or the host's own).
    pub allow: Vec<Cidr>,
    /// Single host:port destinations allowed whatever else says (quickstart's demo origin).
    pub allow_exact: Vec<SocketAddr>,
    /// The server's own listen address (any of the host's with that port, for an
    /// unspecified one): never a target, even with allow_private.
    pub own: Option<SocketAddr>,
    /// Every address of the host's interfaces: never a target, on any port, unless allowed.
    pub host: HostAddrs,
}

impl Policy {
    /// `Ok` if `addr` may be dialled, else the reason.
    pub fn check(&self, addr: SocketAddr) -> Result<(), &'static str> {
        let ip = unwrap_v4(addr.ip());
        if let Some(own) = self.own.filter(|o| o.port() == addr.port()) {
            // Listening on every address: any of the host's, loopback included, is it.
            let me = match unwrap_v4(own.ip()) {
                any if any.is_unspecified() => {
                    ip.is_loopback() || ip.is_unspecified() || self.host.contains(ip)
                }
                one => one == ip,
            };
            if me {
                return Err("the server's own listen address");
            }
        }
        if self
            .allow_exact
            .iter()
            .any(|a| unwrap_v4(a.ip()) == ip && a.port() == addr.port())
        {
            return Ok(());
        }
        if self.allow_private || self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        if self.host.contains(ip) {
            return Err("one of the server's own addresses");
        }
        match classify(ip) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// An IPv6 form that only wraps an IPv4 address (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`) as that IPv4 address; anything else as it is.
pub fn unwrap_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[..5] == [0; 5]
                && (s[5] == 0xffff || s[5] == 0)
                && !v6.is_loopback()
                && !v6.is_unspecified()
            {
                let o = v6.octets();
                IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
            } else {
                ip
            }
        }
        v4 => v4,
    }
}

/// The addresses of this host's interfaces, shared by every connection and refreshed in
/// the background (interfaces come and go: DHCP, a VPN, a new IPv6 prefix).
#[derive(Clone, Debug, Default)]
pub struct HostAddrs(std::sync::Arc<std::sync::RwLock<Vec<IpAddr>>>);

impl HostAddrs {
    /// Reads the interfaces now; on failure the previous set is kept and the error returned.
    pub fn refresh(&self) -> std::io::Result<()> {
        let mut now: Vec<IpAddr> = if_addrs::get_if_addrs()?
            .into_iter()
            .map(|i| unwrap_v4(i.ip()))
            .collect();
        now.sort();
        now.dedup();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(())
    }

    /// A set with exactly these addresses (tests).
    pub fn fixed(ips: &[IpAddr]) -> Self {
        HostAddrs(std::sync::Arc::new(std::sync::RwLock::new(
            ips.iter().map(|i| unwrap_v4(*i)).collect(),
        )))
    }

    /// True if `ip` (already unwrapped) is one of this host's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ip)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
