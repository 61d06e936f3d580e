//! The address codec: never panics; what it decodes re-encodes to the bytes it consumed.
#![no_main]
use burrow_common::TargetAddr;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(addr)) = TargetAddr::decode(&mut buf) {
        let consumed = data.len() - buf.len();
        let mut again = BytesMut::new();
        addr.encode(&mut again);
        assert_eq!(&again[..], &data[..consumed]);
    }
});
