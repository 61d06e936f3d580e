//! Proxy choice (table-driven), URL, NO_PROXY and list parsing, and which proxies get
//! credentials.

use super::*;
use std::collections::HashMap;

/// (variables, server host, the proxy chosen as shown, or None for direct)
type Case = (
    &'static [(&'static str, &'static str)],
    &'static str,
    Option<&'static str>,
);

#[test]
fn environment_precedence() {
    // (variables, server host) → the proxy chosen (its Display), or None for direct.
    let cases: &[Case] = &[
        (&[], "vps.example", None),
        (
            &[("HTTP_PROXY", "http://p:3128")],
            "vps.example",
            Some("http://p:3128"),
        ),
        (
            &[("HTTP_PROXY", "http://h:1"), ("HTTPS_PROXY", "http://s:2")],
            "vps.example",
            Some("http://s:2"),
        ),
        (
            &[
                ("HTTPS_PROXY", "http://s:2"),
                ("SOCKS_PROXY", "socks5://k:3"),
            ],
            "vps.example",
            Some("socks5://k:3"),
        ),
        (
            &[
                ("SOCKS_PROXY", "socks5h://k:3"),
                ("ALL_PROXY", "socks5://a:4"),
            ],
            "vps.example",
            Some("socks5://a:4"),
        ),
        (
            &[("ALL_PROXY", "http://a:4"), ("HTTP_PROXY", "http://h:1")],
            "vps.example",
            Some("http://a:4"),
        ),
        // lower case is read before upper case
        (
            &[
                ("https_proxy", "http://lower:1"),
                ("HTTPS_PROXY", "http://upper:2"),
            ],
            "vps.example",
            Some("http://lower:1"),
        ),
        (
            &[("http_proxy", "http://lower:1")],
            "vps.example",
            Some("http://lower:1"),
        ),
        // empty values do not count
        (
            &[("ALL_PROXY", ""), ("HTTP_PROXY", "http://h:1")],
            "vps.example",
            Some("http://h:1"),
        ),
        // NO_PROXY
        (
            &[("HTTP_PROXY", "http://h:1"), ("NO_PROXY", "example.com")],
            "vps.example.com",
            None,
        ),
        (
            &[("HTTP_PROXY", "http://h:1"), ("no_proxy", ".example.com")],
            "vps.example.com",
            None,
        ),
        (
            &[("HTTP_PROXY", "http://h:1"), ("NO_PROXY", "example.com")],
            "example.com.evil",
            Some("http://h:1"),
        ),
        (
            &[("HTTP_PROXY", "http://h:1"), ("NO_PROXY", "*")],
            "anything",
            None,
        ),
        (
            &[
                ("HTTP_PROXY", "http://h:1"),
                ("NO_PROXY", "10.0.0.0/8, localhost"),
            ],
            "10.1.2.3",
            None,
        ),
        (
            &[("HTTP_PROXY", "http://h:1"), ("NO_PROXY", "10.0.0.0/8")],
            "11.1.2.3",
            Some("http://h:1"),
        ),
        (
            &[
                ("HTTP_PROXY", "http://h:1"),
                ("NO_PROXY", "vps.example:8388"),
            ],
            "vps.example",
            None,
        ),
        // credentials are kept but never shown
        (
            &[("HTTPS_PROXY", "http://u:secret@p:8080")],
            "v",
            Some("http://u@p:8080"),
        ),
        // a bare host:port is http; no port means the scheme's default
        (&[("HTTP_PROXY", "p:3128")], "v", Some("http://p:3128")),
        (
            &[("ALL_PROXY", "socks5h://k")],
            "v",
            Some("socks5://k:1080"),
        ),
    ];
    for (vars, host, want) in cases {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        let got = from_env(|k| env.get(k).map(|v| v.to_string()), host).expect("valid");
        assert_eq!(
            got.map(|p| p.to_string()).as_deref(),
            *want,
            "{vars:?} for {host}"
        );
    }
    let env: HashMap<&str, &str> = [("HTTPS_PROXY", "ftp://x")].into_iter().collect();
    let err = from_env(|k| env.get(k).map(|v| v.to_string()), "v").expect_err("bad scheme");
    assert!(err.starts_with("HTTPS_PROXY:"), "{err}");
}

#[test]
fn proxy_urls() {
    let p = ProxyUrl::parse("http://alice:p%40ss@proxy.corp:3128").expect("url");
    assert_eq!(p.kind, ProxyKind::Http);
    assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
    let (u, pw) = p.auth.clone().expect("auth");
    assert_eq!((u.as_str(), pw.expose()), ("alice", "p@ss"));
    assert!(!format!("{p:?}").contains("p@ss"));
    assert!(ProxyUrl::parse("https://p:1").is_err());
    let err = ProxyUrl::parse("gopher://u:secret@p:1").expect_err("scheme");
    assert!(!err.contains("secret"), "{err}");
    // Without a scheme too (taken as http, as curl does).
    for bad in ["u:secret@", "u:secret@p:99999", "u:secret@p q:1"] {
        let err = ProxyUrl::parse(bad).expect_err(bad);
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn proxy_lists_in_url_and_pac_forms() {
    let l = parse_list("PROXY a.corp:8080; SOCKS5 b.corp:1080; DIRECT").expect("pac form");
    assert_eq!(l.len(), 3);
    let a = l[0].as_ref().expect("a");
    assert_eq!(
        (a.kind, a.host.as_str(), a.port),
        (ProxyKind::Http, "a.corp", 8080)
    );
    let b = l[1].as_ref().expect("b");
    assert_eq!(
        (b.kind, b.host.as_str(), b.port),
        (ProxyKind::Socks5, "b.corp", 1080)
    );
    assert!(l[2].is_none(), "DIRECT");
    let l = parse_list("http://u:p@a:1, socks5h://b:2 ,direct").expect("url form");
    assert_eq!(l.len(), 3);
    assert!(l[0].as_ref().is_some_and(|p| p.auth.is_some()));
    assert!(parse_list("direct")
        .expect("direct")
        .iter()
        .all(Option::is_none));
    for bad in ["HTTPS a:443", "PROXY", "gopher://x:1", " ; ", "SOCKS"] {
        assert!(parse_list(bad).is_err(), "{bad}");
    }
}

/// What a PAC answer's proxies are given: nothing unless listed; listed, the credentials,
/// but a password in clear (Basic, SOCKS5) only with Basic pinned.
#[test]
fn a_pac_named_proxy_gets_credentials_only_when_listed() {
    use super::http_connect::Scheme;
    let creds = ProxyAuth {
        credentials: Some(("CORP\\alice".into(), Secret::new("s3cret"))),
        scheme: None,
    };
    let basic = ProxyAuth {
        scheme: Some(Scheme::Basic),
        ..creds.clone()
    };
    let answer = parse_list("PROXY evil:3128; PROXY u:p@evil2:3128; SOCKS5 corp:1080; DIRECT")
        .expect("list");
    let listed = |p: &ProxyUrl| p.host == "corp";
    let got = named_by_pac(answer.clone(), &creds, |_| false);
    for p in got.iter().flatten() {
        assert_eq!(p.named_by, NamedBy::Pac { listed: false });
        assert!(p.auth.is_none(), "{p}: not even the answer's own userinfo");
        for s in [Scheme::Basic, Scheme::Ntlm, Scheme::Negotiate] {
            assert!(!s.possible(p), "{p}: {s:?}");
        }
    }
    assert_eq!(got[3], None, "DIRECT stays");
    // Listed SOCKS5: its password is in clear, so it needs Basic pinned.
    let got = named_by_pac(answer.clone(), &creds, listed);
    assert!(got[2].as_ref().is_some_and(|p| p.auth.is_none()));
    let got = named_by_pac(answer, &basic, listed);
    assert!(got[2].as_ref().is_some_and(|p| p.auth.is_some()));

    // Listed HTTP: NTLM and Negotiate as offered; Basic only pinned.
    let one = parse_list("PROXY proxy.corp:8080").expect("list");
    let got = named_by_pac(one.clone(), &creds, |_| true);
    let p = got[0].as_ref().expect("proxy");
    assert_eq!(p.named_by, NamedBy::Pac { listed: true });
    assert!(p.auth.is_some());
    assert!(!Scheme::Basic.possible(p));
    assert_eq!(Scheme::Ntlm.possible(p), cfg!(feature = "ntlm"));
    assert_eq!(Scheme::Negotiate.possible(p), cfg!(feature = "negotiate"));
    let got = named_by_pac(one, &basic, |_| true);
    assert!(Scheme::Basic.possible(got[0].as_ref().expect("proxy")));
    // Named by the user: as before.
    let user = with_auth(parse_list("http://proxy.corp:8080").expect("list"), &creds);
    let p = user[0].as_ref().expect("proxy");
    assert_eq!(p.named_by, NamedBy::User);
    assert!(Scheme::Basic.possible(p));
}

/// A password with `,` or `;` in a proxy URL stays whole, in a list or alone.
#[test]
fn separators_inside_a_password_do_not_split_the_url() {
    let one = parse_list("http://u:hunter2,x;y@proxy.corp:3128").expect("one URL");
    let p = one[0].as_ref().expect("proxy");
    assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
    assert_eq!(
        p.auth.as_ref().map(|(_, s)| s.expose()),
        Some("hunter2,x;y")
    );
    let list = parse_list("http://u:1234,5@a:1, http://v:w@b:2; direct, PROXY c:3").expect("list");
    let shown: Vec<String> = list
        .iter()
        .map(|p| p.as_ref().map_or("direct".into(), |p| p.to_string()))
        .collect();
    assert_eq!(
        shown,
        ["http://u@a:1", "http://v@b:2", "direct", "http://c:3"],
        "{list:?}"
    );
    assert_eq!(
        list[0]
            .as_ref()
            .and_then(|p| p.auth.as_ref())
            .map(|(_, s)| s.expose()),
        Some("1234,5")
    );
    // An entry that does not parse is never shown with a piece of the password.
    let err = parse_list("http://u:hunter2,x@").expect_err("no host");
    assert!(!err.contains("hunter2"), "{err}");
}
