//! SIP022 known-answer vectors (shared/VECTORS.md §B) and header rules.

use super::*;
use crate::aead::Method;
use crate::key::derive_subkey;
use bytes::BufMut;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("hex")
}

const TS: u64 = 1_700_000_000;

fn psk() -> MasterKey {
    MasterKey::from_secret(
        Method::Blake3ChaCha20Poly1305,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .expect("psk")
}

fn client_salt() -> Vec<u8> {
    (0x20u8..0x40).collect()
}

fn server_salt() -> Vec<u8> {
    (0x40u8..0x60).collect()
}

fn request_plain() -> Vec<u8> {
    [h("030b6578616d706c652e636f6d01bb"), b"hello".to_vec()].concat()
}

#[test]
fn vector_b_subkeys_and_third_party_blake3() {
    assert_eq!(
        derive_subkey(&psk(), &client_salt()).to_vec(),
        h("374fca03e4dae7f998fd7e59c1edfcc8e3197f4db1c19ca1671be3b66a92ddda")
    );
    assert_eq!(
        derive_subkey(&psk(), &server_salt()).to_vec(),
        h("cb4edecf23461aaaeee9dcb3c1eb1be555c77e3661c7dd58c96bd5c3bcb6a064")
    );
    let other = MasterKey::from_secret(
        Method::Blake3ChaCha20Poly1305,
        "Lc3tTx0BY6ZJ/fCwOx3JvF0I/anhwJBO5p2+FA5Vce4=",
    )
    .expect("psk");
    let salt =
        crate::key::decode_base64("3oFO0VyLyGI4nFN0M9P+62vPND/L6v8IingaPJWTbJA=").expect("salt");
    assert_eq!(
        derive_subkey(&other, &salt).to_vec(),
        h("11d344fb853c7559c74f4fa9a001432b66dd9707eb1d3eb5b1436bf5660f87e1")
    );
}

fn request_wire() -> Vec<u8> {
    [
        client_salt(),
        h("aaf3381628f811755309f98a19e0484c8c26ff48435e35034353ea"),
        h("a4da95fd926cbf54e283efab5a08ac49cd889fcae23881d69b45718fbe5715dca712d555cd8b"),
    ]
    .concat()
}

fn response_wire() -> Vec<u8> {
    [
        server_salt(),
        h("d8b69a4c76f623b46dd8bbc7aed163f0eeb7170cc46ffccdf89809ea231b3b789656bbaa5a8bd74647ef79f12793f7f8e3f91b45e1486cfa7b3730"),
        h("c9a75ffd1f96e3fe0b83b824d17f91a5d74afaad82"),
    ]
    .concat()
}

#[test]
fn vector_b_request_encode_and_decode() {
    let mut enc = Encoder::with_salt(&psk(), &client_salt(), TS);
    let mut out = BytesMut::new();
    enc.encode(&request_plain(), &mut out);
    assert_eq!(out.to_vec(), request_wire());

    let mut dec = Decoder::request_at(&psk(), TS + 3);
    let mut buf = BytesMut::from(&request_wire()[..]);
    let first = dec.decode(&mut buf).expect("authenticates").expect("whole");
    assert_eq!(first.to_vec(), request_plain(), "address then payload");
    assert_eq!(dec.salt(), Some(&client_salt()[..]));
}

#[test]
fn vector_b_response_encode_and_decode() {
    let mut enc = Encoder::response_with_salt(&psk(), &server_salt(), &client_salt(), TS);
    let mut out = BytesMut::new();
    enc.encode(b"world", &mut out);
    assert_eq!(out.to_vec(), response_wire());

    let mut dec = Decoder::response_at(&psk(), &client_salt(), TS - 10);
    let mut buf = BytesMut::from(&response_wire()[..]);
    assert_eq!(
        dec.decode(&mut buf).expect("ok").expect("whole").to_vec(),
        b"world"
    );
    // Byte by byte gives the same.
    let mut dec = Decoder::response_at(&psk(), &client_salt(), TS);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in response_wire() {
        buf.put_u8(b);
        while let Some(c) = dec.decode(&mut buf).expect("ok") {
            got.extend_from_slice(&c);
        }
    }
    assert_eq!(got, b"world");
}

#[test]
fn response_for_another_request_is_refused() {
    let mut dec = Decoder::response_at(&psk(), &[9u8; 32], TS);
    let mut buf = BytesMut::from(&response_wire()[..]);
    assert_eq!(
        dec.decode(&mut buf),
        Err(AeadError::BadHeader("response is for another request"))
    );
}

#[test]
fn clock_skew_beyond_30_s_is_refused_and_measured() {
    for (now, ok) in [
        (TS + 30, true),
        (TS - 30, true),
        (TS + 31, false),
        (TS - 45, false),
    ] {
        let mut dec = Decoder::request_at(&psk(), now);
        let r = dec.decode(&mut BytesMut::from(&request_wire()[..]));
        if ok {
            assert!(r.is_ok(), "{now}");
        } else {
            let skew = TS as i64 - now as i64;
            assert_eq!(r, Err(AeadError::Clock { skew }));
            let msg = AeadError::Clock { skew }.to_string();
            assert!(msg.contains(&format!("{skew:+} s")), "{msg}");
        }
    }
}

/// A clock the test steps by hand.
static STEPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(TS);

fn stepped() -> u64 {
    STEPPED.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn the_clock_is_read_when_the_header_arrives_not_when_the_decoder_is_made() {
    // A connection opened at TS, then held 3 s before a flight stamped 28 s before the
    // opening arrives: 31 s old when it is read, so refused.
    STEPPED.store(TS, std::sync::atomic::Ordering::SeqCst);
    let mut dec = Decoder::request_with(&psk(), Clock::Fn(stepped));
    let mut enc = Encoder::with_salt(&psk(), &client_salt(), TS - 28);
    let mut wire = BytesMut::new();
    enc.encode(&request_plain(), &mut wire);
    let (salt, rest) = wire.split_at(32);
    assert_eq!(dec.decode(&mut BytesMut::from(salt)), Ok(None));
    STEPPED.store(TS + 3, std::sync::atomic::Ordering::SeqCst);
    let r = dec.decode(&mut BytesMut::from(rest));
    assert_eq!(r, Err(AeadError::Clock { skew: -31 }));
}

#[test]
fn timestamps_at_the_ends_of_u64_do_not_overflow() {
    for (stamp, now) in [(u64::MAX, 0), (0, u64::MAX), (1 << 63, 5), (5, 1 << 63)] {
        let mut enc = Encoder::with_salt(&psk(), &client_salt(), stamp);
        let mut wire = BytesMut::new();
        enc.encode(&request_plain(), &mut wire);
        let r = Decoder::request_at(&psk(), now).decode(&mut wire);
        let Err(AeadError::Clock { skew }) = r else {
            panic!("{stamp} at {now}: {r:?}")
        };
        assert_eq!(skew.signum(), if stamp > now { 1 } else { -1 });
    }
}

#[test]
fn address_only_requests_are_padded_and_round_trip() {
    let addr = h("030b6578616d706c652e636f6d01bb");
    let mut sizes = std::collections::HashSet::new();
    for _ in 0..50 {
        let mut enc = Encoder::new(&psk());
        let mut out = BytesMut::new();
        enc.encode(&addr, &mut out);
        let var_ct = out.len() - 32 - (11 + 16);
        let padding = var_ct - 16 - addr.len() - 2;
        assert!((1..=900).contains(&padding), "padding {padding}");
        sizes.insert(padding);
        let mut dec = Decoder::new(&psk());
        assert_eq!(
            dec.decode(&mut out).expect("ok").expect("whole").to_vec(),
            addr,
            "padding removed"
        );
    }
    assert!(sizes.len() > 10, "padding length varies");
}

#[test]
fn large_flows_use_0xffff_chunks_and_a_request_type_is_not_a_response() {
    let key = psk();
    let mut enc = Encoder::new(&key);
    let mut out = BytesMut::new();
    let mut plain = h("01010203040050");
    plain.extend(std::iter::repeat_n(7u8, 200_000));
    enc.encode(&plain, &mut out);
    let wire = out.clone();
    let mut dec = Decoder::new(&key);
    let mut got = Vec::new();
    while let Some(c) = dec.decode(&mut out).expect("ok") {
        assert!(c.len() <= 0xFFFF);
        got.extend_from_slice(&c);
    }
    assert_eq!(got, plain);
    // A request stream fed to a response decoder fails on the type byte.
    let salt = wire[..32].to_vec();
    let mut dec = Decoder::response(&key, &salt);
    assert_eq!(
        dec.decode(&mut BytesMut::from(&wire[..])),
        Err(AeadError::LengthTag),
        "sizes differ, so the tag fails"
    );
}

#[test]
fn confirmation_is_asked_in_the_padding_and_announced_with_an_empty_first_chunk() {
    let key = psk();
    let addr = h("01010203040050");
    for ask in [true, false] {
        let mut enc = Encoder::new(&key);
        if ask {
            enc.ask_confirmation();
        }
        let mut wire = BytesMut::new();
        enc.encode(&addr, &mut wire);
        let mut dec = Decoder::new(&key);
        assert_eq!(
            dec.decode(&mut wire).expect("ok").expect("whole").to_vec(),
            addr
        );
        assert_eq!(dec.confirmation_asked(), ask);
    }
    let request_salt = [5u8; 32];
    let mut server = Encoder::response(&key, &request_salt);
    let mut wire = BytesMut::new();
    server.announce(&mut wire);
    assert_eq!(
        wire.len(),
        32 + 43 + 16 + 16,
        "salt, header, empty first chunk"
    );
    server.encode(b"later data", &mut wire);
    let mut client = Decoder::response(&key, &request_salt);
    let mut got = Vec::new();
    while let Some(c) = client.decode(&mut wire).expect("ok") {
        got.extend_from_slice(&c);
    }
    assert_eq!(got, b"later data");
}
