//! The PAC engine on real scripts: helpers, answers, and every way a PAC goes wrong.

use super::*;

const BUDGET: Duration = Duration::from_secs(5);

fn run(script: &str) -> Result<String, String> {
    find_proxy(script, "https://vps.example:8443/", "vps.example", BUDGET)
}

#[test]
fn a_corporate_style_pac_answers_by_its_rules() {
    let pac = r#"
        function FindProxyForURL(url, host) {
            if (isPlainHostName(host) || dnsDomainIs(host, ".corp.example")) return "DIRECT";
            if (isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";
            if (shExpMatch(url, "https://*:8443/*") && localHostOrDomainIs(host, "vps.example"))
                return "PROXY dead.example:3128; PROXY squid.example:3128; DIRECT";
            return "PROXY other:8080";
        }"#;
    assert_eq!(
        run(pac),
        Ok("PROXY dead.example:3128; PROXY squid.example:3128; DIRECT".into())
    );
    assert_eq!(
        find_proxy(pac, "http://10.2.3.4/", "10.2.3.4", BUDGET),
        Ok("DIRECT".into())
    );
    assert_eq!(
        find_proxy(pac, "http://wiki/", "wiki", BUDGET),
        Ok("DIRECT".into())
    );
    let ways = to_ways(&run(pac).expect("answer")).expect("ways");
    assert_eq!(ways.len(), 3);
    assert!(ways[2].is_none(), "DIRECT last");
}

#[test]
fn the_native_helpers_answer() {
    let pac = r#"function FindProxyForURL(u, h) {
        return [dnsResolve("127.0.0.1"), typeof myIpAddress(), dnsResolve("localhost"),
                weekdayRange("SUN", "SAT"), timeRange(0, 0, 23, 59), dateRange("JAN", "DEC"),
                convert_addr("1.2.3.4"), dnsDomainLevels("a.b.c")].join(",");
    }"#;
    assert_eq!(
        run(pac),
        Ok("127.0.0.1,string,127.0.0.1,true,true,true,16909060,2".into())
    );
}

#[test]
fn a_broken_pac_is_said_in_one_line() {
    let cases = [
        (
            "function FindProxyForURL(u, h) { return \"DIRECT\"",
            "does not run",
        ),
        ("var x = 1;", "no FindProxyForURL"),
        (
            "function FindProxyForURL(u, h) { throw new Error(\"boom\"); }",
            "boom",
        ),
        (
            "function FindProxyForURL(u, h) { return 42; }",
            "not a string",
        ),
        (
            "function FindProxyForURL(u, h) { while (true) {} }",
            "no answer within",
        ),
        (
            "function FindProxyForURL(u, h) { var a = []; while (true) a.push(new Array(1e5)); }",
            "FindProxyForURL failed",
        ),
    ];
    for (script, said) in cases {
        let err =
            find_proxy(script, "https://s/", "s", Duration::from_millis(500)).expect_err(script);
        assert!(err.contains(said), "{script}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn answers_become_ways_passing_over_what_cannot_be_used() {
    let ways = to_ways("HTTPS secure:443; SOCKS5 s:1080; PROXY p:3128; DIRECT").expect("ways");
    assert_eq!(ways.len(), 3);
    assert!(to_ways("HTTPS secure:443").is_err());
    assert!(to_ways("").is_err());
    assert!(to_ways("BOGUS").is_err());
}

#[test]
fn pac_locations_are_read() {
    assert_eq!(Source::parse("http://p:8080"), Ok(None));
    assert_eq!(
        Source::parse("wpad"),
        Ok(Some(Source::Http {
            authority: "wpad".into(),
            host: "wpad".into(),
            port: 80,
            path: "/wpad.dat".into()
        }))
    );
    assert_eq!(
        Source::parse("pac+http://127.0.0.1:8000/p.pac?x=1"),
        Ok(Some(Source::Http {
            authority: "127.0.0.1:8000".into(),
            host: "127.0.0.1".into(),
            port: 8000,
            path: "/p.pac?x=1".into()
        }))
    );
    assert_eq!(
        Source::parse("pac+file:///etc/p.pac"),
        Ok(Some(Source::File("/etc/p.pac".into())))
    );
    assert_eq!(
        Source::parse("pac+/etc/p.pac"),
        Ok(Some(Source::File("/etc/p.pac".into())))
    );
    assert!(Source::parse("pac+ftp://x/p.pac").is_err());
}

/// A script that looks names up in a loop ends with its budget: each lookup waits at
/// most what is left of it, and none is made once it has passed (a name that never
/// resolves takes its whole wait here).
#[test]
fn lookups_in_a_loop_end_with_the_budget() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WAITED_MS: AtomicU64 = AtomicU64::new(0);
    static ASKED: AtomicU64 = AtomicU64::new(0);
    fn blackholed(_: &str, wait: Duration) -> Vec<std::net::IpAddr> {
        ASKED.fetch_add(1, Ordering::SeqCst);
        WAITED_MS.fetch_add(wait.as_millis() as u64, Ordering::SeqCst);
        std::thread::sleep(wait);
        Vec::new()
    }
    let script = "function FindProxyForURL(url, host) { \
                  for (var i = 0; ; i++) { dnsResolve('n' + i + '.corp'); } }";
    let budget = Duration::from_millis(300);
    let err = super::eval::find_proxy_with(script, "https://s/", "s", budget, blackholed)
        .expect_err("no answer");
    assert!(err.contains("no answer within"), "{err}");
    // Every lookup's wait fits in what was left: together no more than the budget.
    assert!(
        WAITED_MS.load(Ordering::SeqCst) <= 300,
        "waited {} ms over {} lookups",
        WAITED_MS.load(Ordering::SeqCst),
        ASKED.load(Ordering::SeqCst)
    );
    assert!(ASKED.load(Ordering::SeqCst) >= 1);
}
