//! A shadowsocks-rust ACL file, read as it is: `[proxy_all]` / `[bypass_all]`, the
//! bypass, proxy and block lists of addresses, networks and domain regexes.

use std::net::IpAddr;
use std::path::Path;

use crate::hosts::{HostPattern, HostSet};

use super::rules::Via;

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

    pub(super) fn route(&self, host: &str, port: u16, ip: Option<IpAddr>) -> (Via, String) {
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

    pub(super) fn summary(&self) -> String {
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
