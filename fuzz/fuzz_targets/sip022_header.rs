//! SIP022 request headers: arbitrary bytes on the wire, and arbitrary *authenticated*
//! variable headers (the input sealed with the right key), so the parser behind the AEAD
//! is reached too. Never panics.
#![no_main]
use burrow_common::cipher::Cipher;
use burrow_common::frame::Decoder;
use burrow_common::frame::unix_now;
use burrow_common::{MasterKey, Method};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_base64(Method::Blake3ChaCha20Poly1305, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("psk");
    let now = unix_now();
    let _ = Decoder::request_at(&key, now).decode(&mut BytesMut::from(data));

    let salt = [9u8; 32];
    let mut c = Cipher::new(&key, &salt);
    let var = &data[..data.len().min(0xFFFF)];
    let mut fixed = [0u8; 11];
    fixed[1..9].copy_from_slice(&now.to_be_bytes());
    fixed[9..11].copy_from_slice(&(var.len() as u16).to_be_bytes());
    let mut wire = salt.to_vec();
    let tag = c.seal(&mut fixed);
    wire.extend_from_slice(&fixed);
    wire.extend_from_slice(&tag);
    let mut v = var.to_vec();
    let tag = c.seal(&mut v);
    wire.extend_from_slice(&v);
    wire.extend_from_slice(&tag);
    let mut dec = Decoder::request_at(&key, now);
    let _ = dec.decode(&mut BytesMut::from(&wire[..]));
});
