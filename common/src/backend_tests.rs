//! Every AEAD implementation in the build against the RustCrypto reference: every chunk
//! size SIP004 allows, tampered tags and bytes, and opens into the front of the buffer.

use super::*;
use aes_gcm::aead::{AeadInPlace, KeyInit};

const ALGS: [Algorithm; 2] = [Algorithm::ChaCha20Poly1305, Algorithm::Aes256Gcm];

/// RustCrypto's seal of `plain` under `key` and `nonce`: ciphertext || tag.
fn reference(alg: Algorithm, key: &[u8; 32], nonce: &[u8; 12], plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    let tag = match alg {
        Algorithm::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new(key.into())
            .encrypt_in_place_detached(nonce.into(), b"", &mut buf)
            .expect("reference seal")
            .to_vec(),
        Algorithm::Aes256Gcm => aes_gcm::Aes256Gcm::new(key.into())
            .encrypt_in_place_detached(nonce.into(), b"", &mut buf)
            .expect("reference seal")
            .to_vec(),
    };
    buf.extend_from_slice(&tag);
    buf
}

fn nonce_for(n: usize) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&(n as u64).to_le_bytes());
    nonce
}

#[test]
fn every_implementation_matches_the_reference_at_every_chunk_size() {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7 + 1);
    let plain: Vec<u8> = (0..0x3FFF).map(|i| (i * 31 + 5) as u8).collect();
    for alg in ALGS {
        let want: Vec<Vec<u8>> = (0..=0x3FFF)
            .map(|n| reference(alg, &key, &nonce_for(n), &plain[..n]))
            .collect();
        for &imp in Implementation::ALL {
            let mut k = Key::new(imp, alg, &key).expect("key");
            for (n, want) in want.iter().enumerate() {
                let mut buf = plain[..n].to_vec();
                let tag = k.seal(nonce_for(n), &mut buf).expect("seal");
                buf.extend_from_slice(&tag);
                assert!(&buf == want, "{imp} {alg}: seal of {n} bytes differs");
                assert!(
                    k.open_within(nonce_for(n), &mut buf, 0),
                    "{imp} {alg}: open of {n} bytes"
                );
                assert!(
                    buf[..n] == plain[..n],
                    "{imp} {alg}: plaintext of {n} bytes"
                );
            }
        }
    }
}

#[test]
fn every_implementation_refuses_every_tampered_tag_bit_and_a_tampered_byte() {
    let key = [9u8; 32];
    let plain = vec![0x42u8; 0x3FFF];
    for alg in ALGS {
        for &imp in Implementation::ALL {
            let mut k = Key::new(imp, alg, &key).expect("key");
            for n in [0usize, 1, 2, 15, 16, 17, 511, 512, 4096, 0x3FFF] {
                let sealed = reference(alg, &key, &nonce_for(n), &plain[..n]);
                for bit in 0..TAG * 8 {
                    let mut buf = sealed.clone();
                    buf[n + bit / 8] ^= 1 << (bit % 8);
                    assert!(
                        !k.open_within(nonce_for(n), &mut buf, 0),
                        "{imp} {alg}: {n} bytes with tag bit {bit} flipped opened"
                    );
                }
                if n > 0 {
                    let mut buf = sealed.clone();
                    buf[n / 2] ^= 0x80;
                    assert!(
                        !k.open_within(nonce_for(n), &mut buf, 0),
                        "{imp} {alg}: byte"
                    );
                }
                let mut buf = sealed.clone();
                assert!(
                    !k.open_within(nonce_for(n + 1), &mut buf, 0),
                    "{imp} {alg}: wrong nonce opened"
                );
                // A refusal leaves the key usable for the next chunk.
                let mut buf = sealed.clone();
                assert!(
                    k.open_within(nonce_for(n), &mut buf, 0),
                    "{imp} {alg}: after refusals"
                );
                assert!(buf[..n] == plain[..n]);
            }
        }
    }
}

#[test]
fn every_implementation_opens_into_the_front_of_the_buffer() {
    let key = [3u8; 32];
    let plain: Vec<u8> = (0..0x3FFF).map(|i| i as u8).collect();
    for alg in ALGS {
        for &imp in Implementation::ALL {
            let mut k = Key::new(imp, alg, &key).expect("key");
            for (n, src) in [(0, 34), (2, 18), (700, 34), (0x3FFF, 34), (0x3FFF, 1000)] {
                let mut buf = vec![0xEEu8; src];
                buf.extend_from_slice(&reference(alg, &key, &nonce_for(n), &plain[..n]));
                assert!(
                    k.open_within(nonce_for(n), &mut buf, src),
                    "{imp} {alg} {n}@{src}"
                );
                assert!(buf[..n] == plain[..n], "{imp} {alg} {n}@{src}: plaintext");
            }
            let mut short = vec![0u8; 40];
            assert!(
                !k.open_within(nonce_for(0), &mut short, 30),
                "{imp}: shorter than a tag"
            );
        }
    }
}

#[test]
fn the_large_implementation_takes_over_where_its_speed_pays_for_its_calls() {
    // 250 ns a call and 0.36 ns a byte against 640 ns and 0.28 ns: equal at 4 875 bytes.
    let at = crossover((250e-9, 0.36e-9), (640e-9, 0.28e-9));
    assert!((4_800..4_950).contains(&at), "{at}");
    // Cheaper per call and per byte: from the least size.
    assert_eq!(crossover((250e-9, 0.36e-9), (200e-9, 0.10e-9)), LARGE_MIN);
    // Never faster per byte: never.
    assert_eq!(crossover((250e-9, 0.36e-9), (640e-9, 0.40e-9)), FULL + 1);
    // Pays only past a full chunk: from a full chunk at most.
    assert_eq!(crossover((250e-9, 0.36e-9), (9e-6, 0.30e-9)), FULL);
    assert_eq!(crossover((f64::NAN, 0.3e-9), (1e-9, 0.1e-9)), FULL + 1);
}

#[test]
fn ring_is_kept_unless_another_is_clearly_faster() {
    let ring = Implementation::Ring;
    assert_eq!(fastest(&[(ring, 1.0)]), ring);
    assert_eq!(fastest(&[]), ring);
    if let Some(&other) = Implementation::ALL.get(1) {
        assert_eq!(fastest(&[(ring, 1.0), (other, 0.97)]), ring, "within noise");
        assert_eq!(fastest(&[(ring, 1.0), (other, 0.80)]), other);
        assert_eq!(fastest(&[(ring, 1.0), (other, 1.50)]), ring);
    }
    for alg in ALGS {
        let c = choice(alg);
        assert!(Implementation::ALL.contains(&c.small) && Implementation::ALL.contains(&c.large));
        assert!(!c.to_string().is_empty());
    }
}
