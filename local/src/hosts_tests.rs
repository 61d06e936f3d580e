//! hosts.rs, checked.

use super::*;

#[test]
fn entries_match_what_they_say() {
    // (entry, host, port, matches)
    let cases: &[(&str, &str, u16, bool)] = &[
        ("proxy.corp.example", "proxy.corp.example", 8080, true),
        ("proxy.corp.example", "PROXY.corp.example.", 8080, true),
        ("proxy.corp.example", "evil.proxy.corp.example", 8080, false),
        ("proxy.corp.example", "proxy.corp.example.evil", 8080, false),
        ("*.corp.example", "proxy.corp.example", 1, true),
        ("*.corp.example", "corp.example", 1, true),
        ("*.corp.example", "evilcorp.example", 1, false),
        (".corp.example", "a.b.corp.example", 1, true),
        ("proxy-?.corp", "proxy-1.corp", 1, true),
        ("proxy-?.corp", "proxy-12.corp", 1, false),
        ("proxy*", "proxy.evil.example", 1, true),
        ("<local>", "proxy", 1, true),
        ("<local>", "proxy.corp", 1, false),
        ("<local>", "10.0.0.1", 1, false),
        ("10.0.0.0/8", "10.1.2.3", 1, true),
        ("10.0.0.0/8", "11.1.2.3", 1, false),
        ("10.0.0.0/8", "::ffff:10.1.2.3", 1, true),
        ("10.0.0.0/8", "ten.example", 1, false),
        ("fd00::/8", "[fd12::1]", 1, true),
        ("fd00::/8", "fe80::1", 1, false),
        ("127.0.0.1", "127.0.0.1", 3128, true),
        ("127.0.0.1", "127.0.0.2", 3128, false),
        ("127.0.0.1:3128", "127.0.0.1", 3128, true),
        ("127.0.0.1:3128", "127.0.0.1", 3129, false),
        ("[::1]:3128", "::1", 3128, true),
        ("::1", "[::1]", 9, true),
        ("proxy.corp:8080", "proxy.corp", 8080, true),
        ("proxy.corp:8080", "proxy.corp", 80, false),
        ("0.0.0.0/0", "203.0.113.9", 1, true),
    ];
    for (entry, host, port, want) in cases {
        let p = HostPattern::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"));
        assert_eq!(p.matches(host, *port), *want, "{entry} vs {host}:{port}");
    }
}

/// The indexed set answers what a scan in order answers, over a mixed list.
#[test]
fn a_set_answers_the_first_match_as_a_scan_would() {
    let entries = [
        "intra-?.corp",
        "*.corp.example",
        "10.0.0.0/8",
        "wiki.corp.example",
        "<local>",
        "fd00::/8",
        "10.1.0.0/16",
        "127.0.0.1:8080",
        "::ffff:192.168.0.0/112",
        "corp.example:443",
        "example.org",
    ];
    let list: Vec<HostPattern> = entries
        .iter()
        .map(|e| HostPattern::parse(e).expect("entry"))
        .collect();
    let set = HostSet::new(list.clone());
    let hosts = [
        ("intra-1.corp", 1),
        ("a.corp.example", 1),
        ("corp.example", 443),
        ("wiki.corp.example", 1),
        ("10.1.2.3", 1),
        ("11.1.2.3", 1),
        ("wiki", 1),
        ("[fd12::5]", 1),
        ("127.0.0.1", 8080),
        ("127.0.0.1", 8081),
        ("192.168.3.4", 1),
        ("::ffff:10.9.9.9", 1),
        ("example.org", 1),
        ("www.example.org", 1),
        ("EXAMPLE.ORG.", 1),
    ];
    for (host, port) in hosts {
        let scan = list.iter().position(|p| p.matches(host, port));
        assert_eq!(set.first(host, port), scan, "{host}:{port}");
    }
    assert_eq!(set.len(), entries.len());
}

#[test]
fn bad_entries_are_refused_with_the_entry() {
    for bad in [
        "",
        "a b",
        "10.0.0.0/33",
        "fd00::/129",
        "x/8",
        "proxy:http",
        "*.",
        "a,b",
    ] {
        let e = HostPattern::parse(bad).expect_err(bad);
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
}
