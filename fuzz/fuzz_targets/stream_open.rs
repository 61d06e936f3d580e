//! The stream's read path — the SIP004/SIP022 headers, then the run of chunks opened in
//! place (`open_run`) — on arbitrary bytes arriving in arbitrary pieces: no panic, at
//! worst an error; and a valid response sealed from the input, cut into the same pieces,
//! reads back to the input, for a SIP004 and a SIP022 method.
#![no_main]
use std::pin::Pin;
use std::task::{Context, Poll};

use burrow_common::frame::{Decoder, Encoder};
use burrow_common::{EncryptedStream, MasterKey, Method};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Hands out `data` in pieces whose sizes come from `cuts` in turn, then EOF.
struct Pieces {
    data: Vec<u8>,
    at: usize,
    cuts: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let cut = this.cuts[this.turn % this.cuts.len()];
        this.turn += 1;
        let n = cut.min(this.data.len() - this.at).min(buf.remaining());
        buf.put_slice(&this.data[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Reads the whole stream of `wire` (as a client whose request went out with
/// `client_salt`), fed in `cuts`.
fn read_all(key: &MasterKey, client_salt: &[u8], wire: Vec<u8>, cuts: &[usize]) -> std::io::Result<Vec<u8>> {
    let io = Pieces {
        data: wire,
        at: 0,
        cuts: cuts.to_vec(),
        turn: 0,
    };
    let enc = Encoder::with_salt(key, client_salt, burrow_common::frame::unix_now());
    let dec = Decoder::response(key, client_salt);
    let mut stream = EncryptedStream::from_parts(io, enc, dec, BytesMut::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    rt.block_on(stream.read_to_end(&mut out)).map(|_| out)
}

fuzz_target!(|data: &[u8]| {
    let (head, payload) = data.split_at(data.len().min(4));
    // Piece sizes 1..=256 (a size of 0 would read as EOF).
    let mut cuts: Vec<usize> = head.iter().map(|&b| b as usize + 1).collect();
    if cuts.is_empty() {
        cuts.push(1);
    }
    let keys = [
        MasterKey::from_password(Method::ChaCha20IetfPoly1305, "fuzz"),
        MasterKey::from_base64(
            Method::Blake3ChaCha20Poly1305,
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .expect("psk"),
    ];
    for key in &keys {
        let client_salt = vec![7u8; key.method().salt_len()];
        // Arbitrary bytes: anything but a panic.
        let _ = read_all(key, &client_salt, payload.to_vec(), &cuts);
        // A valid response, sealed in pieces of the same sizes: reads back exactly.
        let mut server = Encoder::response(key, &client_salt);
        let mut wire = BytesMut::new();
        server.announce(&mut wire);
        let mut rest = payload;
        let mut turn = 0;
        while !rest.is_empty() {
            let n = cuts[turn % cuts.len()].min(rest.len());
            server.encode(&rest[..n], &mut wire);
            rest = &rest[n..];
            turn += 1;
        }
        let back = read_all(key, &client_salt, wire.to_vec(), &cuts).expect("own stream opens");
        assert_eq!(back, payload);
    }
});
