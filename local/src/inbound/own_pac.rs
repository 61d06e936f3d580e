//! burrow-local's own PAC file (`/proxy.pac`): browsers that load it send everything
//! through burrow-local except loopback and the `bypass` list (plus `NO_PROXY`), so that
//! intranet names and networks never enter the tunnel.

use std::net::{IpAddr, SocketAddr};

/// One `bypass` entry, checked when the config is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bypass {
    /// `<local>`: names without a dot.
    PlainNames,
    /// `corp.example`, `.corp.example` or `*.corp.example`: the domain and every name in it.
    Domain(String),
    /// A glob on the name (`intra-*`).
    Glob(String),
    /// An IPv4 network (`10.0.0.0/8`), matched against address literals.
    V4Net([u8; 4], [u8; 4]),
    /// One IP address literal.
    Ip(IpAddr),
}

impl Bypass {
    /// Reads an entry as written in `bypass` or `NO_PROXY` (a port after a name is
    /// dropped: PAC decides by host).
    pub fn parse(text: &str) -> Result<Bypass, String> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            format!("bypass entry {text:?}: expected a name, .domain, *.domain, <local>, an IP address or an IPv4 network a.b.c.d/n")
        };
        if t == "<local>" {
            return Ok(Bypass::PlainNames);
        }
        if let Some((net, bits)) = t.split_once('/') {
            let net: std::net::Ipv4Addr = net.parse().map_err(|_| bad())?;
            let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(bad)?;
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            return Ok(Bypass::V4Net(net.octets(), mask.to_be_bytes()));
        }
        let bare = burrow_common::hostport::unbracket(&t);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Bypass::Ip(ip));
        }
        let name = match t.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n.to_owned(),
            _ => t.clone(),
        };
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?');
        if name.is_empty() || !name.chars().all(allowed) {
            return Err(bad());
        }
        let domain = name
            .strip_prefix("*.")
            .or_else(|| name.strip_prefix('.'))
            .unwrap_or(&name);
        if domain.contains(['*', '?']) {
            return Ok(Bypass::Glob(name));
        }
        Ok(Bypass::Domain(domain.to_owned()))
    }

    /// The PAC condition for this entry, on a lower-cased `host`.
    fn condition(&self) -> String {
        let lit = |s: &str| serde_json::to_string(s).unwrap_or_default();
        match self {
            Bypass::PlainNames => "isPlainHostName(host)".into(),
            Bypass::Domain(d) => format!(
                "host === {} || dnsDomainIs(host, {})",
                lit(d),
                lit(&format!(".{d}"))
            ),
            Bypass::Glob(g) => format!("shExpMatch(host, {})", lit(g)),
            Bypass::V4Net(net, mask) => format!(
                "(v4 && isInNet(host, {}, {}))",
                lit(&IpAddr::from(*net).to_string()),
                lit(&IpAddr::from(*mask).to_string())
            ),
            Bypass::Ip(ip) => format!(
                "host === {} || host === {}",
                lit(&ip.to_string()),
                lit(&format!("[{ip}]"))
            ),
        }
    }
}

/// The entries of a `NO_PROXY` value (commas or spaces) that PAC can express; `*` (no
/// proxy at all) is left out, as it would send everything direct.
pub fn from_no_proxy(value: &str) -> Vec<Bypass> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty() && *e != "*")
        .filter_map(|e| Bypass::parse(e).ok())
        .collect()
}

/// Where a blocked host is sent in the PAC: a proxy nobody listens on, which the browser
/// fails to reach at once.
const DEAD_PROXY: &str = "PROXY 127.0.0.1:1";

/// The PAC text: loopback goes DIRECT; then the `[[rule]]` tables in order (direct →
/// DIRECT, block → a dead proxy, tunnel and proxy → burrow-local), then `bypass` DIRECT;
/// the rest through `local` — the way apps using burrow-local as their proxy go.
pub fn script(
    local: SocketAddr,
    bypass: &[Bypass],
    routing: &[crate::outbound::rules::Rule],
) -> String {
    use crate::outbound::rules::Via;
    let mut rules = String::from(
        "  if (host === \"localhost\" || dnsDomainIs(host, \".localhost\")) return \"DIRECT\";\n\
         \x20 if (v4 && isInNet(host, \"127.0.0.0\", \"255.0.0.0\")) return \"DIRECT\";\n\
         \x20 if (host === \"::1\" || host === \"[::1]\") return \"DIRECT\";\n",
    );
    let ours = format!("PROXY {local}; SOCKS5 {local}");
    for r in routing.iter().filter(|r| r.name != "bypass") {
        let to = match r.via {
            Via::Direct => "DIRECT",
            Via::Block => DEAD_PROXY,
            Via::Tunnel | Via::Proxy => ours.as_str(),
        };
        for h in &r.hosts {
            // What PAC cannot say exactly (a port, an IPv6 network) goes to burrow-local,
            // which decides by the rule itself: a later rule cannot take it first.
            match h.pac_condition() {
                Some(c) => rules.push_str(&format!("  if ({c}) return \"{to}\";\n")),
                None => rules.push_str(&format!("  if ({}) return \"{ours}\";\n", h.pac_cover())),
            }
        }
    }
    for b in bypass {
        rules.push_str(&format!("  if ({}) return \"DIRECT\";\n", b.condition()));
    }
    format!(
        "function FindProxyForURL(url, host) {{\n  host = String(host).toLowerCase();\n  \
         var v4 = /^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host);\n{rules}  return \"{ours}\";\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_or_refused() {
        assert_eq!(Bypass::parse("<local>"), Ok(Bypass::PlainNames));
        assert_eq!(
            Bypass::parse(".Corp.Example"),
            Ok(Bypass::Domain("corp.example".into()))
        );
        assert_eq!(
            Bypass::parse("*.corp.example"),
            Ok(Bypass::Domain("corp.example".into()))
        );
        assert_eq!(
            Bypass::parse("intranet:8080"),
            Ok(Bypass::Domain("intranet".into()))
        );
        assert_eq!(Bypass::parse("intra-*"), Ok(Bypass::Glob("intra-*".into())));
        assert_eq!(
            Bypass::parse("10.0.0.0/8"),
            Ok(Bypass::V4Net([10, 0, 0, 0], [255, 0, 0, 0]))
        );
        assert_eq!(
            Bypass::parse("[fd00::1]"),
            Ok(Bypass::Ip("fd00::1".parse().expect("ip")))
        );
        for bad in ["a\"b", "x; alert(1)", "10.0.0.0/33", "", "fd00::/8"] {
            assert!(Bypass::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(from_no_proxy("*, .corp.example,10.0.0.0/8 ,bad\"").len(), 2);
    }
}
