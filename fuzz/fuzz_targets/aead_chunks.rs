//! The SIP004 chunk decoder on arbitrary bytes, whole and split at every step: no panic,
//! and a valid stream (sealed from the input) always opens back to the input.
#![no_main]
use burrow_common::frame::{Decoder, Encoder};
use burrow_common::{MasterKey, Method};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_password(Method::ChaCha20IetfPoly1305, "fuzz");
    let mut dec = Decoder::new(&key);
    let mut buf = BytesMut::new();
    for piece in data.chunks(7) {
        buf.extend_from_slice(piece);
        match dec.decode(&mut buf) {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let mut wire = BytesMut::new();
    Encoder::new(&key).encode(data, &mut wire);
    let mut dec = Decoder::new(&key);
    let mut out = Vec::new();
    while let Some(c) = dec.decode(&mut wire).expect("own stream opens") {
        out.extend_from_slice(&c);
    }
    assert_eq!(out, data);
});
