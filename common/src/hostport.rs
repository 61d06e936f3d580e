//! A host and a port as people write them in configs, URLs and headers — the one parser
//! for `name:port`, `1.2.3.4:port` and `[v6]:port`, and the one place IPv6 literals get
//! their brackets back.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::addr::AddrError;

/// A host (a name or an IP literal, without brackets) and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The name or IP literal; an IPv6 literal without its brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`; with a `default_port`, the host alone too (`name`, `1.2.3.4`,
    /// `[v6]` or a bare IPv6 literal). Surrounding blanks are ignored.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<HostPort, AddrError> {
        let text = text.trim();
        let bad = || AddrError::BadText(text.to_owned());
        if let (Some(port), Ok(v6)) = (default_port, text.parse::<Ipv6Addr>()) {
            return Ok(HostPort {
                host: v6.to_string(),
                port,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, Some(p.parse().map_err(|_| bad())?)),
            _ => (text, None),
        };
        let port = port.or(default_port).ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .and_then(|v6| v6.parse::<Ipv6Addr>().ok())
                .ok_or_else(bad)?
                .to_string(),
            None if host.contains(':') => return Err(bad()),
            None => host.to_owned(),
        };
        if host.is_empty() || host.contains(['/', ' ', '@', '[', ']', '\\']) {
            return Err(bad());
        }
        Ok(HostPort { host, port })
    }
}

impl FromStr for HostPort {
    type Err = AddrError;
    /// `host:port` (the port is required).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostPort::parse(s, None)
    }
}

impl fmt::Display for HostPort {
    /// `host:port`, an IPv6 literal in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", bracket(&self.host), self.port)
    }
}

/// A host as it goes before `:port` or into a URL: an IPv6 literal in brackets.
pub fn bracket(host: &str) -> Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        Cow::Owned(format!("[{host}]"))
    } else {
        Cow::Borrowed(host)
    }
}

/// A host as written in a URL authority or a `Host` header, brackets taken off.
pub fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn with_a_port() {
        assert_eq!("example.com:443".parse(), Ok(hp("example.com", 443)));
        assert_eq!("10.0.0.1:80".parse(), Ok(hp("10.0.0.1", 80)));
        assert_eq!("[::1]:8388".parse(), Ok(hp("::1", 8388)));
        assert_eq!(" [2001:DB8::1]:1 ".parse(), Ok(hp("2001:db8::1", 1)));
        for bad in [
            "example.com",
            "::1",
            "::1:80",
            "[::1]",
            "[name]:80",
            "a b:1",
            "u@h:1",
            "h:99999",
            "h:",
            ":80",
            "[::1:80",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad:?} taken");
        }
    }

    #[test]
    fn with_a_default_port() {
        let p = |t| HostPort::parse(t, Some(7));
        assert_eq!(p("example.com"), Ok(hp("example.com", 7)));
        assert_eq!(p("example.com:8"), Ok(hp("example.com", 8)));
        assert_eq!(p("::1"), Ok(hp("::1", 7)));
        assert_eq!(p("[::1]"), Ok(hp("::1", 7)));
        assert_eq!(p("[::1]:9"), Ok(hp("::1", 9)));
        assert!(p("").is_err());
        assert!(p("h:x").is_err());
    }

    #[test]
    fn brackets_come_back_on_display() {
        assert_eq!(hp("::1", 80).to_string(), "[::1]:80");
        assert_eq!(hp("a.b", 80).to_string(), "a.b:80");
        assert_eq!(bracket("fe80::1"), "[fe80::1]");
        assert_eq!(bracket("[fe80::1]"), "[fe80::1]");
        assert_eq!(unbracket("[fe80::1]"), "fe80::1");
        assert_eq!(unbracket("host"), "host");
    }
}
