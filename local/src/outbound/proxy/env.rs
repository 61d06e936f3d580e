//! The proxy the environment names (`*_PROXY`, `NO_PROXY`), as curl reads them.

use super::ProxyUrl;

/// The environment's proxy for reaching `host`: `ALL_PROXY` / `SOCKS_PROXY` first, then
/// `HTTPS_PROXY`, then `HTTP_PROXY` (lower case before upper case, as curl reads them),
/// unless `NO_PROXY` covers `host`. `Ok(None)`: go direct.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
    host: &str,
) -> Result<Option<ProxyUrl>, String> {
    let var = |name: &'static str| {
        get(&name.to_ascii_lowercase())
            .or_else(|| get(name))
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    };
    if let Some((_, no)) = var("NO_PROXY") {
        if no_proxy_matches(&no, host) {
            return Ok(None);
        }
    }
    let chosen = var("ALL_PROXY")
        .or_else(|| var("SOCKS_PROXY"))
        .or_else(|| var("HTTPS_PROXY"))
        .or_else(|| var("HTTP_PROXY"));
    match chosen {
        None => Ok(None),
        Some((name, v)) => ProxyUrl::parse(&v)
            .map(Some)
            .map_err(|e| format!("{name}: {e}")),
    }
}

/// `NO_PROXY`: `*`, or a comma list of names (matching the name and its subdomains, a
/// leading dot allowed), IP addresses and CIDR blocks.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = burrow_common::hostport::unbracket(host).to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            let entry = entry
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map_or(entry.as_str(), |(h, _)| h);
            if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
                return cidr_contains(net, bits, ip);
            }
            let name = entry.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

fn cidr_contains(net: &str, bits: &str, ip: std::net::IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}
