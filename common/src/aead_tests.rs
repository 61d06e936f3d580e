//! Known-answer vectors (shared/VECTORS.md §A) and differential tests against RustCrypto.

use super::*;
use crate::cipher::Cipher;
use crate::frame::{Decoder, Encoder};
use crate::key::{derive_subkey, KeyError, MasterKey};
use ::hkdf::Hkdf;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use bytes::{BufMut, BytesMut};
use sha1::Sha1;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test vector is hex")
}

const SIP004: [Method; 2] = [Method::ChaCha20IetfPoly1305, Method::Aes256Gcm];
const REQ: &str = "030b6578616d706c652e636f6d0050";
const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

fn salt() -> Vec<u8> {
    (0u8..32).collect()
}

#[test]
fn vector_a_master_key_and_subkey() {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "barfoo!");
    assert_eq!(
        key.as_bytes(),
        h("b3adc47839e047eb228870526dc8fc30b347287ffca3045dcea06b3fdf090acb")
    );
    assert_eq!(
        derive_subkey(&key, &salt()).to_vec(),
        h("6e62f41174d7879ffea269ebf7805b730f62002e2b461f4dcb2a21dfb6f6423e")
    );
}

fn vector_a_wire() -> Vec<u8> {
    [
        salt(),
        h("a01b2c010545ae74b86c3401f82a0d4b1dde"),
        h("4db967f534f21b56fa73a5ec1204edfae3fc3e41bad0cad9f6c900487ed93394584c30f5bf72fb5eb10bcadfab5f5f0229038d3982527ce4676cbceb9ae84467ec50e241"),
        h("ed492c97794f7d33a12879cc7867f7fff946"),
        h("60ace02c539fd03284660571761b6fd0405b4a120504"),
    ]
    .concat()
}

#[test]
fn vector_a_encode() {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "barfoo!");
    let mut enc = Encoder::with_salt(&key, &salt(), 0);
    let mut first = h(REQ);
    first.extend_from_slice(HTTP);
    assert_eq!(first.len(), 0x34);
    let mut out = BytesMut::new();
    enc.encode(&first, &mut out);
    enc.encode(b"second", &mut out);
    assert_eq!(out.to_vec(), vector_a_wire());
}

#[test]
fn vector_a_decode_whole_and_one_byte_at_a_time() {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "barfoo!");
    let wire = vector_a_wire();
    let mut want = h(REQ);
    want.extend_from_slice(HTTP);
    want.extend_from_slice(b"second");

    let mut dec = Decoder::new(&key);
    let mut buf = BytesMut::from(&wire[..]);
    let mut got = Vec::new();
    while let Some(chunk) = dec.decode(&mut buf).expect("vector authenticates") {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, want);
    assert!(buf.is_empty() && dec.at_boundary());
    assert_eq!(dec.salt(), Some(&salt()[..]));

    let mut dec = Decoder::new(&key);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in wire {
        buf.put_u8(b);
        while let Some(chunk) = dec.decode(&mut buf).expect("vector authenticates") {
            got.extend_from_slice(&chunk);
        }
    }
    assert_eq!(got, want);
}

#[test]
fn wrong_password_fails_on_the_length_tag() {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "wrong");
    let mut dec = Decoder::new(&key);
    let mut buf = BytesMut::from(&vector_a_wire()[..]);
    assert_eq!(dec.decode(&mut buf), Err(AeadError::LengthTag));
}

#[test]
fn every_flipped_bit_in_a_chunk_is_refused() {
    let key = MasterKey::from_password(Method::Aes256Gcm, "pw");
    let mut enc = Encoder::new(&key);
    let mut wire = BytesMut::new();
    enc.encode(b"hello world", &mut wire);
    let salt_len = Method::Aes256Gcm.salt_len();
    for i in salt_len..wire.len() {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        let mut dec = Decoder::new(&key);
        let err = dec.decode(&mut bad).expect_err("tampered chunk must fail");
        let want = if i < salt_len + 18 {
            AeadError::LengthTag
        } else {
            AeadError::PayloadTag
        };
        assert_eq!(err, want, "byte {i}");
    }
}

#[test]
fn oversized_length_is_refused() {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "pw");
    let salt = [7u8; 32];
    let mut c = Cipher::new(&key, &salt);
    let mut len = 0x4000u16.to_be_bytes();
    let tag = c.seal(&mut len);
    let mut wire = BytesMut::from(&salt[..]);
    wire.put_slice(&len);
    wire.put_slice(&tag);
    let mut dec = Decoder::new(&key);
    assert_eq!(dec.decode(&mut wire), Err(AeadError::Oversize(0x4000)));
}

#[test]
fn large_payload_splits_into_max_chunks_and_round_trips() {
    for method in SIP004 {
        let key = MasterKey::from_password(method, "pw");
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut enc = Encoder::new(&key);
        let mut wire = BytesMut::new();
        enc.encode(&plain, &mut wire);
        assert_eq!(wire.len(), 32 + plain.len() + 7 * CHUNK_OVERHEAD);
        let mut dec = Decoder::new(&key);
        let mut got = Vec::new();
        while let Some(c) = dec.decode(&mut wire).expect("round trip") {
            assert!(c.len() <= MAX_PAYLOAD);
            got.extend_from_slice(&c);
        }
        assert_eq!(got, plain);
    }
}

/// The reference: RustCrypto HKDF-SHA1 and AEADs, sealing the same chunks.
fn reference_wire(key: &MasterKey, salt: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
    let mut subkey = [0u8; 32];
    Hkdf::<Sha1>::new(Some(salt), key.as_bytes())
        .expand(b"ss-subkey", &mut subkey)
        .expect("32 bytes is a valid HKDF length");
    let mut nonce = [0u8; 12];
    let mut seal = |buf: &mut Vec<u8>| {
        let n = aes_gcm::Nonce::from_slice(&nonce).to_owned();
        match key.method() {
            Method::ChaCha20IetfPoly1305 | Method::Blake3ChaCha20Poly1305 => {
                chacha20poly1305::ChaCha20Poly1305::new_from_slice(&subkey)
                    .expect("key length")
                    .encrypt_in_place(&n, b"", buf)
                    .expect("seal")
            }
            Method::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(&subkey)
                .expect("key length")
                .encrypt_in_place(&n, b"", buf)
                .expect("seal"),
        }
        for b in nonce.iter_mut() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
    };
    let mut out = salt.to_vec();
    for p in pieces {
        let mut len = (p.len() as u16).to_be_bytes().to_vec();
        seal(&mut len);
        out.extend_from_slice(&len);
        let mut data = p.to_vec();
        seal(&mut data);
        out.extend_from_slice(&data);
    }
    out
}

#[test]
fn differential_against_rustcrypto() {
    let mut seed = 0x1234_5678u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for method in SIP004 {
        for round in 0..40 {
            let key = MasterKey::from_password(method, &format!("pw{round}"));
            let salt: Vec<u8> = (0..32).map(|_| next() as u8).collect();
            let sizes = [
                next() as usize % 40_000,
                1,
                next() as usize % 300,
                MAX_PAYLOAD,
            ];
            let pieces: Vec<Vec<u8>> = sizes
                .iter()
                .map(|&n| (0..n).map(|_| next() as u8).collect())
                .collect();
            let mut enc = Encoder::with_salt(&key, &salt, 0);
            let mut ours = BytesMut::new();
            let mut split = Vec::new();
            for p in &pieces {
                enc.encode(p, &mut ours);
                split.extend(p.chunks(MAX_PAYLOAD));
            }
            assert_eq!(
                ours.to_vec(),
                reference_wire(&key, &salt, &split),
                "{method} round {round}"
            );
        }
    }
}

#[test]
fn base64_keys_and_methods() {
    let k = MasterKey::from_base64(
        Method::Aes256Gcm,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .expect("32-byte key");
    assert_eq!(k.as_bytes(), &salt()[..]);
    assert!(matches!(
        MasterKey::from_base64(Method::Aes256Gcm, "AAEC"),
        Err(KeyError::Length { got: 3, .. })
    ));
    assert!(matches!(
        MasterKey::from_base64(Method::Aes256Gcm, "!!"),
        Err(KeyError::Base64)
    ));
    assert_eq!(
        "AES-256-GCM".parse::<Method>().ok(),
        Some(Method::Aes256Gcm)
    );
    assert!("rc4-md5".parse::<Method>().is_err());
    assert!(!format!("{k:?}").contains("AAEC"));
}
