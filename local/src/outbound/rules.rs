//! Where each app target goes: through the tunnel, direct from this machine, through the
//! corporate proxy alone, or nowhere. The first rule that matches decides: `[[rule]]`
//! tables in order, then `bypass` (direct), then an ACL file in shadowsocks-rust's
//! format; without a match, IP literals in loopback, private, link-local and ULA ranges
//! go direct (the server refuses them anyway) and everything else — names included,
//! resolved at the server — through the tunnel. With an ACL, its `[proxy_all]` /
//! `[bypass_all]` decides what no rule names.

use std::net::IpAddr;

use burrow_common::TargetAddr;

use crate::hosts::{HostPattern, HostSet};

pub use super::acl::Acl;

/// Why a target with no rule goes through the tunnel.
pub const DEFAULT: &str = "the default";

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

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
