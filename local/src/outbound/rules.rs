//! Where each app target goes: through the tunnel, direct from this machine, through the
//! corporate proxy alone, or nowhere. The first rule that matches decides: `[[rule]]`
//! tables in order, then `bypass` (direct), then an ACL file in shadowsocks-rust's
//! format; without a match, IP literals in loopback, private, link-local and ULA ranges
//! go direct (the server refuses them anyway) and everything else — names included,
//! resolved at the server — through the tunnel. With an ACL, its `[proxy_all]` /
//! `[bypass_all]` decides what no rule names.

use std::net::IpAddr;
use std::path::Path;

use burrow_common::TargetAddr;

use crate::hosts::{HostPattern, HostSet};

/// Why a target with no rule goes through the tunnel.
pub const DEFAULT: &str = "the default";

/// Where `target` goes, and why: the rules, then — for what they leave in the tunnel by
/// default — the corporate PAC (`pac_direct`): a target it sends DIRECT while it sends
/// the server through a proxy is reached from here.
pub async fn decide(target: &TargetAddr, s: &crate::settings::Settings) -> (Via, String) {
    let (via, why) = s.rules.route(target);
    #[cfg(feature = "pac")]
    if via == Via::Tunnel && why == DEFAULT {
        if let (Some(t), TargetAddr::Domain(host, _)) =
            (s.pac.as_ref().and_then(|p| p.targets.as_ref()), target)
        {
            if t.direct(host).await {
                return (
                    Via::Direct,
                    "the corporate PAC answers DIRECT for it".into(),
                );
            }
        }
    }
    (via, why)
}

/// Where a target goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through burrow-server (the default).
    Tunnel,
    /// Dialled from this machine.
    Direct,
    /// Through the corporate proxy, without the tunnel.
    Proxy,
    /// Refused here.
    Block,
}

impl Via {
    /// As written in `via = "…"`.
    pub fn parse(text: &str) -> Result<Via, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tunnel" => Ok(Via::Tunnel),
            "direct" => Ok(Via::Direct),
            "proxy" => Ok(Via::Proxy),
            "block" => Ok(Via::Block),
            other => Err(format!(
                "via = {other:?}: expected \"tunnel\", \"direct\", \"proxy\" or \"block\""
            )),
        }
    }

    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            Via::Tunnel => "tunnel",
            Via::Direct => "direct",
            Via::Proxy => "proxy",
            Via::Block => "block",
        }
    }
}

/// One rule as the config writes it.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its hosts.
    pub hosts: Vec<HostPattern>,
    /// Where they go.
    pub via: Via,
    /// Said by doctor and the logs: `[[rule]] 2`, `bypass`.
    pub name: String,
}

/// The rules, ready to be asked.
#[derive(Debug, Default)]
pub struct Rules {
    /// Every host pattern of the rules and `bypass`, in order…
    set: HostSet,
    /// …and, at the same position, where it sends and which rule it is.
    to: Vec<(Via, usize)>,
    rules: Vec<Rule>,
    acl: Option<Acl>,
    /// Where IP literals in local ranges go when nothing else decides
    /// (`private_targets`): `Direct` (the default) or `Tunnel`.
    private: Option<Via>,
}

impl Rules {
    /// Sends IP literals in loopback, private and link-local ranges that no rule names
    /// through the tunnel instead of direct (`private_targets = "tunnel"`: a server that
    /// allows them, or tests whose targets are on this machine).
    pub fn tunnel_private(mut self) -> Rules {
        self.private = Some(Via::Tunnel);
        self
    }

    /// `rules` (the `[[rule]]` tables, then `bypass` as a direct rule) and an ACL.
    pub fn new(rules: Vec<Rule>, acl: Option<Acl>) -> Rules {
        let mut patterns = Vec::new();
        let mut to = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for h in &r.hosts {
                patterns.push(h.clone());
                to.push((r.via, i));
            }
        }
        Rules {
            set: HostSet::new(patterns),
            to,
            rules,
            acl,
            private: None,
        }
    }

    /// Where `target` goes, and why (for doctor and the logs).
    pub fn route(&self, target: &TargetAddr) -> (Via, String) {
        let (host, port) = match target {
            TargetAddr::Ip(a) => (a.ip().to_string(), a.port()),
            TargetAddr::Domain(h, p) => (h.clone(), *p),
        };
        self.route_host(&host, port)
    }

    /// [`Rules::route`] for `host` on `port`.
    pub fn route_host(&self, host: &str, port: u16) -> (Via, String) {
        if let Some(i) = self.set.first(host, port) {
            let (via, r) = self.to[i];
            return (via, self.rules[r].name.clone());
        }
        let ip = burrow_common::hostport::unbracket(host)
            .parse::<IpAddr>()
            .ok();
        if let Some(acl) = &self.acl {
            return acl.route(host, port, ip);
        }
        match ip {
            Some(ip) if is_local_range(ip) && self.private != Some(Via::Tunnel) => (
                Via::Direct,
                "the default: a loopback, private or link-local address".into(),
            ),
            _ => (Via::Tunnel, DEFAULT.into()),
        }
    }

    /// One line for the log at start: how many rules of each kind.
    pub fn summary(&self) -> String {
        let mut counts = [0usize; 4];
        for r in &self.rules {
            counts[r.via as usize] += r.hosts.len();
        }
        let [tunnel, direct, proxy, block] = counts;
        let mut line = format!(
            "routing: {} host entries in {} rules (direct {direct}, tunnel {tunnel}, proxy {proxy}, block {block})",
            self.set.len(),
            self.rules.len()
        );
        match &self.acl {
            Some(acl) => line.push_str(&format!("; {}", acl.summary())),
            None if self.private == Some(Via::Tunnel) => {
                line.push_str("; no ACL: everything else tunnelled (private_targets = \"tunnel\")")
            }
            None => line.push_str(
                "; no ACL: loopback, private and link-local addresses direct, the rest tunnelled",
            ),
        }
        line
    }

    /// The rules (for `/proxy.pac`).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether anything but the defaults decides.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.acl.is_none()
    }
}

/// Loopback, private (RFC 1918), link-local, CGNAT and IPv6 ULA/link-local: reached from
/// this machine, never from the server.
pub fn is_local_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_range(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// A shadowsocks-rust ACL file: a default mode and lists of addresses, networks and
/// domain regexes. Lines of the usual forms (`(^|\.)example\.com$`, `^host\.example$`)
/// become domain and name entries; other regexes are matched as they are.
#[derive(Debug)]
pub struct Acl {
    name: String,
    /// What no list names: `[proxy_all]` (tunnel, the default) or `[bypass_all]`.
    mode: Via,
    block: List,
    proxy: List,
    bypass: List,
}

#[derive(Debug, Default)]
struct List {
    set: HostSet,
    regexes: Option<regex::RegexSet>,
    count: usize,
}

impl List {
    fn build(hosts: Vec<HostPattern>, regexes: Vec<String>, file: &str) -> Result<List, String> {
        let count = hosts.len() + regexes.len();
        let regexes = if regexes.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(&regexes)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| format!("{file}: a domain regex does not compile: {e}"))?,
            )
        };
        Ok(List {
            set: HostSet::new(hosts),
            regexes,
            count,
        })
    }

    fn matches(&self, host: &str, port: u16, ip: Option<IpAddr>) -> bool {
        self.set.first(host, port).is_some()
            || (ip.is_none()
                && self
                    .regexes
                    .as_ref()
                    .is_some_and(|r| r.is_match(&host.trim_end_matches('.').to_ascii_lowercase())))
    }
}

impl Acl {
    /// Reads an ACL file.
    pub fn read(path: &Path) -> Result<Acl, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("acl {}: {e}", path.display()))?;
        Acl::parse(&text, &path.display().to_string())
    }

    /// Parses an ACL's text; `name` is said in errors and the log.
    pub fn parse(text: &str, name: &str) -> Result<Acl, String> {
        #[derive(Clone, Copy)]
        enum Section {
            None,
            Block,
            Proxy,
            Bypass,
        }
        let mut mode = Via::Tunnel;
        let mut section = Section::None;
        let mut lists: [(Vec<HostPattern>, Vec<String>); 3] = Default::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{name}:{}", n + 1);
            match line.to_ascii_lowercase().as_str() {
                "[proxy_all]" | "[accept_all]" => {
                    mode = Via::Tunnel;
                    continue;
                }
                "[bypass_all]" | "[reject_all]" => {
                    mode = Via::Direct;
                    continue;
                }
                "[bypass_list]" | "[black_list]" => {
                    section = Section::Bypass;
                    continue;
                }
                "[proxy_list]" | "[white_list]" => {
                    section = Section::Proxy;
                    continue;
                }
                "[outbound_block_list]" => {
                    section = Section::Block;
                    continue;
                }
                s if s.starts_with('[') => {
                    return Err(format!("{}: unknown section {line:?}", at()));
                }
                _ => {}
            }
            let list = match section {
                Section::None => {
                    return Err(format!(
                        "{}: {line:?} is outside any list ([bypass_list], [proxy_list], [outbound_block_list])",
                        at()
                    ))
                }
                Section::Block => &mut lists[0],
                Section::Proxy => &mut lists[1],
                Section::Bypass => &mut lists[2],
            };
            match acl_entry(line) {
                Some(p) => list.0.push(p),
                None => list.1.push(line.to_owned()),
            }
        }
        let [block, proxy, bypass] = lists;
        Ok(Acl {
            name: name.to_owned(),
            mode,
            block: List::build(block.0, block.1, name)?,
            proxy: List::build(proxy.0, proxy.1, name)?,
            bypass: List::build(bypass.0, bypass.1, name)?,
        })
    }

    fn route(&self, host: &str, port: u16, ip: Option<IpAddr>) -> (Via, String) {
        let name = &self.name;
        if self.block.matches(host, port, ip) {
            return (Via::Block, format!("ACL {name} [outbound_block_list]"));
        }
        if self.proxy.matches(host, port, ip) {
            return (Via::Tunnel, format!("ACL {name} [proxy_list]"));
        }
        if self.bypass.matches(host, port, ip) {
            return (Via::Direct, format!("ACL {name} [bypass_list]"));
        }
        let mode = match self.mode {
            Via::Direct => "[bypass_all]",
            _ => "[proxy_all]",
        };
        (self.mode, format!("ACL {name} {mode}"))
    }

    fn summary(&self) -> String {
        format!(
            "ACL {}: {} bypass, {} proxy, {} block entries, the rest {}",
            self.name,
            self.bypass.count,
            self.proxy.count,
            self.block.count,
            match self.mode {
                Via::Direct => "direct ([bypass_all])",
                _ => "tunnelled ([proxy_all])",
            }
        )
    }
}

/// An ACL line as a host pattern when it is an address, a network or a regex of the
/// usual plain forms; `None` for a regex to match as it is.
fn acl_entry(line: &str) -> Option<HostPattern> {
    if line.parse::<IpAddr>().is_ok() || (line.contains('/') && !line.contains(['(', '\\'])) {
        return HostPattern::parse(line).ok();
    }
    let plain = |s: &str| -> Option<String> {
        // Only escaped dots and name characters: a literal name.
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.next() == Some('.') => out.push('.'),
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => out.push(c),
                _ => return None,
            }
        }
        (!out.is_empty()).then_some(out)
    };
    if let Some(rest) = line
        .strip_prefix("(^|\\.)")
        .or_else(|| line.strip_prefix("(?:^|\\.)"))
    {
        let name = plain(rest.strip_suffix('$')?)?;
        return HostPattern::parse(&format!("*.{name}")).ok();
    }
    if let Some(rest) = line.strip_prefix('^') {
        let name = plain(rest.strip_suffix('$')?)?;
        return HostPattern::parse(&name).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(written: &[(&[&str], Via)], acl: Option<&str>) -> Rules {
        let list = written
            .iter()
            .enumerate()
            .map(|(i, (hosts, via))| Rule {
                hosts: hosts
                    .iter()
                    .map(|h| HostPattern::parse(h).expect("host"))
                    .collect(),
                via: *via,
                name: format!("[[rule]] {}", i + 1),
            })
            .collect();
        Rules::new(list, acl.map(|a| Acl::parse(a, "t.acl").expect("acl")))
    }

    #[test]
    fn the_first_match_decides_then_the_defaults() {
        let r = rules(
            &[
                (&["blocked.corp.example"], Via::Block),
                (&["*.corp.example", "10.0.0.0/8", "fd00::/8"], Via::Direct),
                (&["git.corp.example"], Via::Tunnel),
                (&["<local>"], Via::Proxy),
            ],
            None,
        );
        let cases = [
            ("blocked.corp.example", Via::Block),
            ("git.corp.example", Via::Direct),
            ("wiki.corp.example", Via::Direct),
            ("10.2.3.4", Via::Direct),
            ("fd12::1", Via::Direct),
            ("intranet", Via::Proxy),
            ("example.com", Via::Tunnel),
            ("93.184.216.34", Via::Tunnel),
            ("192.168.1.1", Via::Direct),
            ("127.0.0.1", Via::Direct),
            ("::1", Via::Direct),
            ("fe80::1", Via::Direct),
            ("100.64.0.1", Via::Direct),
            ("2001:db8::1", Via::Tunnel),
        ];
        for (host, want) in cases {
            assert_eq!(r.route_host(host, 443).0, want, "{host}");
        }
        assert_eq!(r.route_host("git.corp.example", 1).1, "[[rule]] 2");
    }

    #[test]
    fn an_acl_in_shadowsocks_rusts_format() {
        let acl = "# comment\n[proxy_all]\n\n[bypass_list]\n10.0.0.0/8\n(^|\\.)corp\\.example$\n\
                   ^intranet\\.local$\n\n[proxy_list]\n(^|\\.)google\\.com$\n\
                   [outbound_block_list]\nads[0-9]+\\.tracker\\.example\n127.0.0.1\n";
        let r = rules(&[(&["pinned.corp.example"], Via::Tunnel)], Some(acl));
        let cases = [
            ("pinned.corp.example", Via::Tunnel),
            ("wiki.corp.example", Via::Direct),
            ("corp.example", Via::Direct),
            ("intranet.local", Via::Direct),
            ("x.intranet.local", Via::Tunnel),
            ("10.9.8.7", Via::Direct),
            ("www.google.com", Via::Tunnel),
            ("ads42.tracker.example", Via::Block),
            ("127.0.0.1", Via::Block),
            ("example.org", Via::Tunnel),
            ("192.168.1.1", Via::Tunnel),
        ];
        for (host, want) in cases {
            assert_eq!(r.route_host(host, 80).0, want, "{host}");
        }
        let all_direct = rules(
            &[],
            Some("[bypass_all]\n[proxy_list]\n(^|\\.)vps\\.example$\n"),
        );
        assert_eq!(all_direct.route_host("example.org", 80).0, Via::Direct);
        assert_eq!(all_direct.route_host("a.vps.example", 80).0, Via::Tunnel);
        assert!(
            r.summary()
                .contains("ACL t.acl: 3 bypass, 1 proxy, 2 block"),
            "{}",
            r.summary()
        );
        for bad in ["[nonsense]\n", "example.com\n", "[proxy_list]\n(unclosed\n"] {
            let e = Acl::parse(bad, "bad.acl").expect_err(bad);
            assert!(e.starts_with("bad.acl"), "{e}");
        }
    }
}
