//! The WebSocket opening-handshake check of reverse routes, on arbitrary header sets.
#![no_main]
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split("\r\n");
    let method = match lines.next().unwrap_or("") {
        "POST" => Method::POST,
        _ => Method::GET,
    };
    let mut h = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim())) {
                h.append(k, v);
            }
        }
    }
    let _ = burrow_local::inbound::reverse::check(&method, &h);
});
