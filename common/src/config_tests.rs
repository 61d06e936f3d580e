use super::*;

#[test]
fn vectors_sip002_urls() {
    let a = SsUrl::parse("ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpiYXJmb28h@192.0.2.1:8388#my%20vps")
        .expect("base64 userinfo");
    assert_eq!(a.method, Method::ChaCha20IetfPoly1305);
    assert_eq!(a.password.expose(), "barfoo!");
    assert_eq!((a.host.as_str(), a.port), ("192.0.2.1", 8388));
    let legacy = SsUrl::parse("ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpiYXJmb28hQDE5Mi4wLjIuMTo4Mzg4")
        .expect("legacy");
    assert_eq!(legacy, a);
    assert_eq!(SsUrl::parse(&a.to_url()).expect("own output"), a);
}

#[test]
fn vector_2022_url() {
    let text = "ss://2022-blake3-chacha20-poly1305:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8%3D@192.0.2.1:8388";
    let u = SsUrl::parse(text).expect("2022 url");
    assert_eq!(u.method, Method::Blake3ChaCha20Poly1305);
    assert_eq!(
        u.password.expose(),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    assert_eq!(u.to_url(), text);
    assert_eq!(SsUrl::parse(&u.to_url()).expect("own output"), u);
}

#[test]
fn percent_encoded_userinfo() {
    let u = SsUrl::parse("ss://aes-256-gcm:p%40ss%3Aw@[2001:db8::1]:443/?plugin=x").expect("plain");
    assert_eq!(u.method, Method::Aes256Gcm);
    assert_eq!(u.password.expose(), "p@ss:w");
    assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 443));
}

#[test]
fn bad_urls() {
    for bad in [
        "http://x",
        "ss://",
        "ss://bm9wZQ@host:1",
        "ss://rc4:pw@h:1",
        "ss://aes-256-gcm:pw@h",
    ] {
        assert!(SsUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn secrets_are_redacted_and_durations_parse() {
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    // A secret of the wrong type is refused without its value.
    #[derive(Deserialize, Debug)]
    struct One {
        #[allow(dead_code)]
        password: Secret,
    }
    let err = toml::from_str::<One>("password = 12345678").expect_err("a number");
    assert!(!err.message().contains("12345678"), "{err}");
    let err = serde_json::from_str::<One>("{\"password\": 87654321}").expect_err("a number");
    assert!(!err.to_string().contains("87654321"), "{err}");
    let ok: One = toml::from_str("password = \"x\"").expect("a string");
    assert_eq!(ok.password.expose(), "x");
    assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    assert!(parse_duration("ten").is_err());
}
