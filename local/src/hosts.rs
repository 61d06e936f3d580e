//! Host patterns as users write them in lists of hosts (`proxy_auth_hosts`): a name
//! (`proxy.corp.example`, that name only), a domain (`*.corp.example` or
//! `.corp.example`: the domain and every name in it), a glob (`proxy-?.corp`), `<local>`
//! (names without a dot), an IP address, or an IPv4/IPv6 network (`10.0.0.0/8`,
//! `fd00::/8`); each may end in `:port` to match that port only.

use std::collections::HashMap;
use std::net::IpAddr;

use burrow_common::hostport::unbracket;

/// One entry, checked when the config is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    host: Host,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    /// `<local>`.
    PlainNames,
    /// One name, lower case.
    Name(String),
    /// The domain and every name in it, lower case.
    Domain(String),
    /// `*` and `?` on the whole name.
    Glob(String),
    /// A network (a single address: its full length).
    Net(IpAddr, u8),
}

impl HostPattern {
    /// Reads an entry; the error names it and says what is expected.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = || {
            format!(
                "host entry {text:?}: expected a name, *.domain, .domain, <local>, an IP address \
                 or a network (10.0.0.0/8, fd00::/8), with :port if only that port"
            )
        };
        let t = text.trim().to_ascii_lowercase();
        if t == "<local>" {
            return Ok(HostPattern {
                host: Host::PlainNames,
                port: None,
            });
        }
        // A port: after `]`, or after the one colon of a name or IPv4 address; networks
        // take none.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
                None if after.is_empty() => (h, None),
                None => return Err(bad()),
            }
        } else {
            match t.split_once(':') {
                Some((h, p)) if !p.contains(':') && !t.contains('/') => {
                    (h, Some(p.parse::<u16>().map_err(|_| bad())?))
                }
                _ => (t.as_str(), None),
            }
        };
        if let Some((net, bits)) = host.split_once('/') {
            let net: IpAddr = unbracket(net).parse().map_err(|_| bad())?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits.parse().ok().filter(|b| *b <= max).ok_or_else(bad)?;
            return Ok(HostPattern {
                host: Host::Net(net, bits),
                port,
            });
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(HostPattern {
                host: Host::Net(ip, bits),
                port,
            });
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?');
        if host.is_empty() || !host.chars().all(allowed) {
            return Err(bad());
        }
        let domain = host.strip_prefix("*.").or_else(|| host.strip_prefix('.'));
        let host = match domain {
            Some("") => return Err(bad()),
            Some(d) if !d.contains(['*', '?']) => Host::Domain(d.to_owned()),
            _ if host.contains(['*', '?']) => Host::Glob(host.to_owned()),
            _ => Host::Name(host.to_owned()),
        };
        Ok(HostPattern { host, port })
    }

    /// Reads an entry as `bypass` and NO_PROXY write them: a plain name covers its
    /// subdomains too (`corp.example` as `*.corp.example`).
    pub fn parse_domain_style(text: &str) -> Result<HostPattern, String> {
        let mut p = HostPattern::parse(text)?;
        if let Host::Name(n) = &p.host {
            p.host = Host::Domain(n.clone());
        }
        Ok(p)
    }

    /// The entry as a PAC condition on a lower-cased `host` (with `v4` true for an IPv4
    /// literal); `None` where PAC cannot say it (an IPv6 network, a port).
    pub fn pac_condition(&self) -> Option<String> {
        if self.port.is_some() {
            return None;
        }
        let lit = |s: &str| serde_json::to_string(s).unwrap_or_default();
        Some(match &self.host {
            Host::PlainNames => "isPlainHostName(host)".into(),
            Host::Name(n) => format!("host === {}", lit(n)),
            Host::Domain(d) => format!(
                "host === {} || dnsDomainIs(host, {})",
                lit(d),
                lit(&format!(".{d}"))
            ),
            Host::Glob(g) => format!("shExpMatch(host, {})", lit(g)),
            Host::Net(IpAddr::V4(net), bits) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                format!(
                    "(v4 && isInNet(host, {}, {}))",
                    lit(&net.to_string()),
                    lit(&std::net::Ipv4Addr::from(mask).to_string())
                )
            }
            Host::Net(ip @ IpAddr::V6(_), 128) => format!(
                "host === {} || host === {}",
                lit(&ip.to_string()),
                lit(&format!("[{ip}]"))
            ),
            Host::Net(..) => return None,
        })
    }

    /// For an entry PAC cannot say exactly ([`HostPattern::pac_condition`] is `None`): a
    /// condition that covers it (its host whatever the port; any IPv6 literal for an
    /// IPv6 network), so that the PAC can hand such hosts to burrow-local to decide.
    pub fn pac_cover(&self) -> String {
        let host_only = HostPattern {
            host: self.host.clone(),
            port: None,
        };
        host_only
            .pac_condition()
            .unwrap_or_else(|| "host.indexOf(\":\") >= 0".into())
    }

    /// Whether `host` (a name or an IP literal, brackets allowed) on `port` matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = unbracket(host).trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        match (&self.host, ip) {
            (Host::Net(net, bits), Some(ip)) => in_net(ip, *net, *bits),
            (Host::Net(..), None) | (_, Some(_)) => false,
            (Host::PlainNames, None) => !host.contains('.'),
            (Host::Name(n), None) => host == *n,
            (Host::Domain(d), None) => {
                host == *d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|h| h.ends_with('.'))
            }
            (Host::Glob(g), None) => glob(g.as_bytes(), host.as_bytes()),
        }
    }
}

/// Whether any of `list` matches.
pub fn any_matches(list: &[HostPattern], host: &str, port: u16) -> bool {
    list.iter().any(|p| p.matches(host, port))
}

/// A list of patterns asked for the first that matches, indexed so that a lookup costs
/// about the same with ten thousand entries as with ten: names and domains by hash (one
/// lookup per label of the host), networks by prefix length (one lookup per length in
/// use), globs, `<local>` and entries with a port by a scan of just those.
#[derive(Clone, Debug, Default)]
pub struct HostSet {
    names: HashMap<String, usize>,
    domains: HashMap<String, usize>,
    /// Per prefix length: the masked networks (IPv4 as IPv4-mapped IPv6).
    nets: Vec<(u8, HashMap<u128, usize>)>,
    /// Globs, `<local>` and entries with a port, in order.
    scanned: Vec<(usize, HostPattern)>,
    len: usize,
}

impl HostSet {
    /// The set of `list`, whose positions [`HostSet::first`] answers with.
    pub fn new(list: Vec<HostPattern>) -> HostSet {
        let mut set = HostSet {
            len: list.len(),
            ..HostSet::default()
        };
        for (i, p) in list.into_iter().enumerate() {
            if p.port.is_some() {
                set.scanned.push((i, p));
                continue;
            }
            match &p.host {
                Host::Name(n) => {
                    set.names.entry(n.clone()).or_insert(i);
                }
                Host::Domain(d) => {
                    set.domains.entry(d.clone()).or_insert(i);
                }
                Host::Net(net, bits) => {
                    let (key, bits) = v6_key(*net, *bits);
                    let at = match set.nets.iter().position(|(b, _)| *b == bits) {
                        Some(at) => at,
                        None => {
                            set.nets.push((bits, HashMap::new()));
                            set.nets.len() - 1
                        }
                    };
                    set.nets[at].1.entry(key & mask(bits)).or_insert(i);
                }
                Host::PlainNames | Host::Glob(_) => set.scanned.push((i, p)),
            }
        }
        set
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The position of the first entry that matches `host` on `port`.
    pub fn first(&self, host: &str, port: u16) -> Option<usize> {
        let host = unbracket(host).trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<usize> = None;
        let take = |best: &mut Option<usize>, i: Option<usize>| {
            if let Some(i) = i {
                *best = Some(best.map_or(i, |b| b.min(i)));
            }
        };
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let (key, _) = v6_key(ip, 0);
                for (bits, map) in &self.nets {
                    take(&mut best, map.get(&(key & mask(*bits))).copied());
                }
            }
            Err(_) => {
                take(&mut best, self.names.get(&host).copied());
                let mut rest = host.as_str();
                loop {
                    take(&mut best, self.domains.get(rest).copied());
                    match rest.split_once('.') {
                        Some((_, tail)) => rest = tail,
                        None => break,
                    }
                }
            }
        }
        for (i, p) in &self.scanned {
            if best.is_some_and(|b| b < *i) {
                break;
            }
            if p.matches(&host, port) {
                take(&mut best, Some(*i));
                break;
            }
        }
        best
    }
}

/// An address as a 128-bit key (IPv4 mapped into IPv6) and a prefix length in that space.
fn v6_key(ip: IpAddr, bits: u8) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), bits + 96),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u128::from(v4.to_ipv6_mapped()), bits.max(96)),
            None => (u128::from(v6), bits),
        },
    }
}

fn mask(bits: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0)
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    // IPv4 and IPv4-mapped IPv6 are one space.
    let (key, _) = v6_key(ip, 0);
    let (net, bits) = v6_key(net, bits);
    key & mask(bits) == net & mask(bits)
}

/// `*` (any run) and `?` (one character) over the whole of `name`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
