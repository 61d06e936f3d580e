use super::*;

fn refused(s: &str) -> bool {
    classify(s.parse().expect("ip")).is_some()
}

#[test]
fn refuses_every_listed_range() {
    for ip in [
        "0.1.2.3",
        "127.0.0.1",
        "127.255.255.254",
        "10.9.8.7",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "192.0.0.8",
        "198.18.0.1",
        "198.19.255.255",
        "224.0.0.1",
        "239.1.1.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd12::1",
        "fe80::1",
        "febf::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "64:ff9b:1:7f00:1::",
        "64:ff9b:1:808:8:800::",
        "2001:0:7f00:1::",
        "2001:0:808:808::f5ff:fffe",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
    ] {
        assert!(refused(ip), "{ip} must be refused");
    }
}

#[test]
fn allows_public_addresses() {
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "172.15.255.255",
        "172.32.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:0:808:808::f7f7:f7f7",
    ] {
        assert!(!refused(ip), "{ip} must be allowed");
    }
}

#[test]
fn allow_list_and_allow_private_and_own_address() {
    let own: SocketAddr = "203.0.113.5:8388".parse().expect("addr");
    let p = Policy {
        allow_private: false,
        allow: vec![
            "127.0.0.1/32".parse().expect("cidr"),
            "10.1.0.0/16".parse().expect("cidr"),
        ],
        own: Some(own),
        ..Policy::default()
    };
    assert!(p.check("127.0.0.1:80".parse().expect("a")).is_ok());
    assert!(p.check("127.0.0.2:80".parse().expect("a")).is_err());
    assert!(p.check("10.1.200.3:80".parse().expect("a")).is_ok());
    assert!(p.check("10.2.0.1:80".parse().expect("a")).is_err());
    assert!(p.check(own).is_err());
    let open = Policy {
        allow_private: true,
        ..Policy::default()
    };
    assert!(open.check("169.254.169.254:80".parse().expect("a")).is_ok());
}

#[test]
fn the_hosts_own_addresses_are_refused_on_every_port_and_in_every_form() {
    let public: IpAddr = "203.0.113.5".parse().expect("ip");
    let p = Policy {
        host: HostAddrs::fixed(&[public]),
        allow_exact: vec!["127.0.0.1:8080".parse().expect("a")],
        ..Policy::default()
    };
    for a in [
        "203.0.113.5:22",
        "203.0.113.5:9100",
        "[::ffff:203.0.113.5]:22",
        "[::203.0.113.5]:80",
    ] {
        assert_eq!(
            p.check(a.parse().expect("a")),
            Err("one of the server's own addresses"),
            "{a}"
        );
    }
    assert!(p.check("203.0.113.6:22".parse().expect("a")).is_ok());
    assert!(
        p.check("127.0.0.1:8080".parse().expect("a")).is_ok(),
        "the one exact allowance"
    );
    assert!(
        p.check("127.0.0.1:8081".parse().expect("a")).is_err(),
        "not the rest of loopback"
    );
    let everywhere = Policy {
        allow_private: true,
        own: Some("0.0.0.0:8388".parse().expect("a")),
        host: HostAddrs::fixed(&[public]),
        ..Policy::default()
    };
    for a in [
        "127.0.0.1:8388",
        "203.0.113.5:8388",
        "[::ffff:127.0.0.1]:8388",
        "[::1]:8388",
    ] {
        let r = everywhere.check(a.parse().expect("a"));
        assert_eq!(r, Err("the server's own listen address"), "{a}");
    }
    assert!(everywhere
        .check("127.0.0.1:8389".parse().expect("a"))
        .is_ok());
    let real = HostAddrs::default();
    real.refresh().expect("interfaces");
    assert!(
        real.contains("127.0.0.1".parse().expect("ip")),
        "loopback is an interface address"
    );
}

#[test]
fn cidr_parsing() {
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("fd00::/129".parse::<Cidr>().is_err());
    assert!("nonsense".parse::<Cidr>().is_err());
    assert!("fd00::/8"
        .parse::<Cidr>()
        .expect("v6")
        .contains("fdff::1".parse().expect("ip")));
}
