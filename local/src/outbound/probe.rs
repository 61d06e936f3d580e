//! At start, before the first app connects: is the server burrow-server? A warm
//! connection asks it for a shared connection (Mux.Cool inside a tunnel to
//! `v1.mux.cool`), which burrow-server answers at once; other servers cannot reach
//! that name and close, or stay silent. An answer teaches what the first tunnel would
//! otherwise spend a round trip learning, and leaves a shared connection up for the
//! first burst (a page load). A close without a byte is the answer of a Shadowsocks
//! server that cannot reach the name (shadowsocks-rust, -libev, v2ray-plugin's): it never
//! answers first, and the first tunnel goes at once instead of spending a second to learn
//! it. Silence teaches nothing: the first tunnel learns as before.

use burrow_common::timeout::within;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_common::mux::CARRIER;
use burrow_common::{EncryptedStream, TargetAddr};

use crate::outbound::dial::watch_for;
use crate::outbound::mux::DEAD_AFTER;
use crate::outbound::servers::Server;

/// Asks `srv` (see the module doc); `share` keeps the shared connection for bursts.
pub async fn learn_at_start(srv: Arc<Server>, connect_timeout: Duration, share: bool) {
    // With `warm_connections = 0` nothing is opened ahead of use, this question included.
    if srv.learned.known() || !srv.pool.keeps_warm() {
        return;
    }
    let started = Instant::now();
    // A hop that multiplexes itself (v2ray-plugin's mux) asks in a session of its own;
    // its WebSocket then stays up for the first tunnels.
    let (io, made_in) = match srv.pool.muxes() {
        Some(m) => match m.open(&srv.pool).await {
            Ok(found) => found,
            Err(_) => return,
        },
        None => match srv.pool.dial().connect().await {
            Ok(io) => {
                io.watch_sent(DEAD_AFTER);
                (io, started.elapsed())
            }
            Err(_) => return,
        },
    };
    let own_connection = srv.pool.muxes().is_none();
    let mut t = EncryptedStream::new(io, &srv.key);
    t.ask_confirmation();
    if let Some(f) = &srv.response_salts {
        t.check_peer_salt(f.clone());
    }
    let mut header = bytes::BytesMut::new();
    TargetAddr::Domain(CARRIER.0.into(), CARRIER.1).encode(&mut header);
    t.buffer(&header);
    let wait = watch_for(made_in, connect_timeout) + made_in;
    let asked = async {
        tokio::io::AsyncWriteExt::flush(&mut t).await?;
        t.peer_answered().await
    };
    match within(wait, asked).await {
        Some(Ok(true)) => {
            if srv.learned.saw_confirmation() {
                tracing::debug!("{} is burrow-server: it confirms connections", srv.name());
            }
            if share && own_connection {
                srv.pool.adopt_shared(t, made_in);
            }
        }
        // Closed without a byte: a Shadowsocks server that cannot reach the name (burrow-
        // server would have answered): one that never answers first. The first tunnel
        // then goes at once instead of waiting to learn it.
        Some(Ok(false)) if srv.learned.saw_silence() => {
            tracing::info!(
                "{} is not burrow-server (it closed the question asked at start): taking it \
                 for a server that never answers first; tunnels go at once",
                srv.name()
            );
        }
        _ => {}
    }
}
