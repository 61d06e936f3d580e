//! Authorities and URLs from the network or the user: CONNECT/absolute-form targets,
//! proxy URLs, ss:// URLs and upstream URLs. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(uri) = text.parse::<http::Uri>() {
        let _ = burrow_local::inbound::forward::target_of(&uri, 80);
    }
    let _ = text.parse::<burrow_common::TargetAddr>();
    let _ = burrow_local::outbound::proxy::ProxyUrl::parse(text);
    let _ = burrow_common::config::SsUrl::parse(text);
    let _ = burrow_local::inbound::route::parse_upstream(text);
    let _ = burrow_local::outbound::proxy::no_proxy_matches(text, "vps.example.com");
});
