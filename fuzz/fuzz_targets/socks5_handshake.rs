//! The SOCKS5 handshake (fast-socks5 under burrow-local's rules) fed arbitrary client
//! bytes, with and without username/password: never panics, never hangs.
#![no_main]
use burrow_common::config::Secret;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        for auth in [None, Some(("u".to_string(), Secret::new("p")))] {
            let (mut client, server) = tokio::io::duplex(4096);
            let _ = client.write_all(data).await;
            drop(client);
            let _ = burrow_local::inbound::socks5::handshake(server, auth.as_ref()).await;
        }
    });
});
