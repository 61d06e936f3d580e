//! rules.rs, checked.

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
