//! The UDP framings against a reference built from RustCrypto (HKDF-SHA1 and the AEADs),
//! and their edge cases.

use super::*;
use crate::aead::Method;
use ::hkdf::Hkdf;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use sha1::Sha1;
use std::net::SocketAddr;

/// A Shadowsocks UDP packet sealed by the reference: salt || AEAD(subkey, 0, plaintext).
fn reference_packet(key: &MasterKey, salt: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut subkey = [0u8; 32];
    Hkdf::<Sha1>::new(Some(salt), key.as_bytes())
        .expand(b"ss-subkey", &mut subkey)
        .expect("HKDF length");
    let nonce = aes_gcm::Nonce::from_slice(&[0u8; 12]).to_owned();
    let mut buf = plaintext.to_vec();
    match key.method() {
        Method::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(&subkey)
            .expect("key")
            .encrypt_in_place(&nonce, b"", &mut buf),
        _ => chacha20poly1305::ChaCha20Poly1305::new_from_slice(&subkey)
            .expect("key")
            .encrypt_in_place(&nonce, b"", &mut buf),
    }
    .expect("seal");
    let mut out = salt.to_vec();
    out.extend_from_slice(&buf);
    out
}

fn v4(a: &str) -> TargetAddr {
    TargetAddr::Ip(a.parse::<SocketAddr>().expect("addr"))
}

#[test]
fn packets_match_the_reference_both_ways() {
    for method in [Method::ChaCha20IetfPoly1305, Method::Aes256Gcm] {
        let key = MasterKey::from_password(method, "udp-test-password");
        let salt = [0x42u8; 32];
        let addr = v4("192.0.2.7:53");
        let mut plain = BytesMut::new();
        addr.encode(&mut plain);
        plain.put_slice(b"a DNS query, say");
        // The reference's packet opens here.
        let theirs = reference_packet(&key, &salt, &plain);
        assert_eq!(
            open(&key, &theirs),
            Ok((addr.clone(), Bytes::from_static(b"a DNS query, say")))
        );
        // Ours opens with the reference (its salt is random: re-seal with it and compare).
        let ours = seal(&key, &addr, b"a DNS query, say").expect("seal");
        let salt_len = method.salt_len();
        assert_eq!(
            &ours[..],
            &reference_packet(&key, &ours[..salt_len], &plain)[..],
            "{method}"
        );
        // Every flipped bit is refused.
        for i in 0..ours.len() {
            let mut bent = ours.to_vec();
            bent[i] ^= 0x10;
            assert!(open(&key, &bent).is_err(), "{method}: byte {i}");
        }
        // A different key is refused; a short packet too.
        let other = MasterKey::from_password(method, "another password");
        assert_eq!(open(&other, &ours), Err(UdpError::Auth));
        assert_eq!(open(&key, &ours[..salt_len + 5]), Err(UdpError::Short));
    }
}

#[test]
fn sip022_keys_are_sent_over_the_tunnel() {
    let key = MasterKey::from_base64(
        Method::Blake3ChaCha20Poly1305,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .expect("key");
    assert!(matches!(
        seal(&key, &v4("1.2.3.4:5"), b"x"),
        Err(UdpError::Method(_))
    ));
}

#[test]
fn socks5_datagrams() {
    let d = [0, 0, 0, 1, 127, 0, 0, 1, 0, 53, b'h', b'i'];
    assert_eq!(
        socks5_open(&d),
        Ok((v4("127.0.0.1:53"), Bytes::from_static(b"hi")))
    );
    let mut frag = d;
    frag[2] = 1;
    assert_eq!(socks5_open(&frag), Err(UdpError::Fragment(1)));
    assert_eq!(socks5_open(&d[..3]), Err(UdpError::Short));
    assert_eq!(socks5_open(&d[..6]), Err(UdpError::Short));
    assert!(socks5_open(&[0, 0, 0, 9, 1, 2]).is_err());
    let back = socks5_seal(&v4("127.0.0.1:53"), b"hi");
    assert_eq!(&back[..], &d[..]);
    let name = TargetAddr::Domain("example.com".into(), 443);
    let back = socks5_seal(&name, b"");
    assert_eq!(socks5_open(&back), Ok((name, Bytes::new())));
}

#[test]
fn uot_v2_framing() {
    let mut stream = uot_request();
    assert_eq!(&stream[..], &[0, 1, 0, 0, 0, 0, 0, 0]);
    let a = v4("10.1.2.3:53");
    let b = TargetAddr::Domain("dns.example".into(), 53);
    uot_put(&mut stream, Some(&a), b"first");
    uot_put(&mut stream, Some(&b), b"");
    uot_put(&mut stream, Some(&a), &[7u8; 1400]);
    // Fed a byte at a time, the same packets come out.
    let whole = stream.clone();
    let mut buf = BytesMut::new();
    let mut request = None;
    let mut got = Vec::new();
    for byte in whole.iter() {
        buf.put_u8(*byte);
        if request.is_none() {
            request = uot_read_request(&mut buf).expect("request");
            continue;
        }
        while let Some(p) = uot_take(&mut buf, None).expect("packet") {
            got.push(p);
        }
    }
    assert_eq!(request, Some((false, v4("0.0.0.0:0"))));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (a.clone(), Bytes::from_static(b"first")));
    assert_eq!(got[1], (b, Bytes::new()));
    assert_eq!(got[2].1.len(), 1400);
    // Connect mode: no address on each packet.
    let mut c = BytesMut::new();
    uot_put(&mut c, None, b"pkt");
    assert_eq!(
        uot_take(&mut c, Some(&a)),
        Ok(Some((a, Bytes::from_static(b"pkt"))))
    );
    // A bad address type is an error, not a wait.
    let mut bad = BytesMut::from(&[9u8, 0, 0][..]);
    assert!(uot_take(&mut bad, None).is_err());
}
