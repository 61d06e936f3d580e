//! The sans-IO cipher path, seal and open, per chunk size, next to the raw AEAD
//! implementations in the same run: each one this build can seal with (`ring`, and with the
//! `fast-aead` feature aws-lc-rs and OpenSSL; the process picks among them at start) and
//! RustCrypto `chacha20poly1305` (the reference). burrow's framing should cost little above
//! the raw seal of the implementation it picked. (`raw-*` open rows include a copy of the
//! sealed chunk back into place before each open.)
//!     cargo bench --bench cipher

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use burrow_common::backend::{Implementation, Key};
use burrow_common::frame::{Decoder, Encoder};
use burrow_common::{MasterKey, Method};

const SIZES: [usize; 4] = [64, 1024, 16_383, 65_532];

fn seal(c: &mut Criterion) {
    for method in [Method::ChaCha20IetfPoly1305, Method::Aes256Gcm] {
        let mut g = c.benchmark_group(format!("seal/{method}"));
        let key = MasterKey::from_password(method, "bench");
        for n in SIZES {
            g.throughput(Throughput::Bytes(n as u64));
            let plain = vec![0x5au8; n];
            let mut enc = Encoder::new(&key);
            let mut out = BytesMut::with_capacity(n + 4096);
            g.bench_function(format!("burrow/{n}"), |b| {
                b.iter(|| {
                    out.clear();
                    enc.encode(&plain, &mut out);
                })
            });
            // What the relay does: the run sealed where it lies, lengths and tags aside.
            let mut run_enc = Encoder::new(&key);
            run_enc.encode(&[], &mut BytesMut::new());
            let mut run = vec![0x5au8; n];
            let mut side = Vec::with_capacity(4096);
            g.bench_function(format!("burrow-in-place/{n}"), |b| {
                b.iter(|| {
                    side.clear();
                    run_enc.seal_run(&mut run, &mut side);
                })
            });
            // Each AEAD implementation in this build sealing the same bytes once.
            for &imp in Implementation::ALL {
                let Some(mut raw) = Key::new(imp, method.algorithm(), &[7u8; 32]) else {
                    continue;
                };
                let mut buf = vec![0x5au8; n];
                g.bench_function(format!("raw-{imp}/{n}"), |b| {
                    b.iter(|| raw.seal([0u8; 12], &mut buf).expect("seal"))
                });
            }
            if method == Method::ChaCha20IetfPoly1305 {
                use chacha20poly1305::aead::{AeadInPlace, KeyInit};
                let rc =
                    chacha20poly1305::ChaCha20Poly1305::new_from_slice(&[7u8; 32]).expect("key");
                let nonce = chacha20poly1305::Nonce::default();
                let mut buf = vec![0x5au8; n];
                g.bench_function(format!("rustcrypto-raw/{n}"), |b| {
                    b.iter(|| {
                        rc.encrypt_in_place_detached(&nonce, b"", &mut buf)
                            .expect("seal")
                    })
                });
            }
        }
        g.finish();
    }
}

fn open(c: &mut Criterion) {
    for method in [Method::ChaCha20IetfPoly1305, Method::Aes256Gcm] {
        let mut g = c.benchmark_group(format!("open/{method}"));
        let key = MasterKey::from_password(method, "bench");
        for n in SIZES {
            g.throughput(Throughput::Bytes(n as u64));
            let mut wire = BytesMut::new();
            Encoder::new(&key).encode(&vec![0x5au8; n], &mut wire);
            g.bench_function(format!("burrow/{n}"), |b| {
                b.iter_batched(
                    || (Decoder::new(&key), wire.clone()),
                    |(mut dec, mut w)| while dec.decode(&mut w).expect("opens").is_some() {},
                    BatchSize::SmallInput,
                )
            });
            // Each AEAD implementation opening one sealed chunk where it lies.
            for &imp in Implementation::ALL {
                let Some(mut raw) = Key::new(imp, method.algorithm(), &[7u8; 32]) else {
                    continue;
                };
                let mut sealed = vec![0x5au8; n + 16];
                let tag = raw.seal([0u8; 12], &mut sealed[..n]).expect("seal");
                sealed[n..].copy_from_slice(&tag);
                let mut buf = sealed.clone();
                g.bench_function(format!("raw-{imp}/{n}"), |b| {
                    b.iter(|| {
                        buf.copy_from_slice(&sealed);
                        assert!(raw.open_within([0u8; 12], &mut buf, 0));
                    })
                });
            }
            // What the relay does: chunks opened into one contiguous run.
            g.bench_function(format!("burrow-run/{n}"), |b| {
                b.iter_batched(
                    || {
                        let mut dec = Decoder::new(&key);
                        let mut w = wire.clone();
                        let mut salt = w.split_to(method.salt_len());
                        dec.decode(&mut salt).expect("salt");
                        (dec, w)
                    },
                    |(mut dec, mut w)| {
                        let (mut from, mut to) = (0, 0);
                        dec.open_run(&mut w, &mut from, &mut to).expect("opens");
                        assert_eq!(to, n);
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

criterion_group!(benches, seal, open);
criterion_main!(benches);
