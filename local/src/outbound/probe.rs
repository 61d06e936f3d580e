//! At start, before the first app connects: is the server burrow-server? A warm
//! connection asks it for a shared connection (Mux.Cool inside a tunnel to
//! `v1.mux.cool`), which burrow-server answers at once; other servers cannot reach
//! that name and close, or stay silent. An answer teaches what the first tunnel would
//! otherwise spend a round trip learning, and leaves a shared connection up for the
//! first burst (a page load). No answer teaches nothing: the first tunnel learns as
//! before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_common::mux::CARRIER;
use burrow_common::{EncryptedStream, TargetAddr};

use crate::outbound::dial::watch_for;
use crate::outbound::mux::DEAD_AFTER;
use crate::outbound::servers::Server;

/// Asks `srv` (see the module doc); `share` keeps the shared connection for bursts.
pub async fn learn_at_start(srv: Arc<Server>, connect_timeout: Duration, share: bool) {
    // A hop that multiplexes itself (v2ray-plugin's mux) carries no such request; with
    // `warm_connections = 0` nothing is opened ahead of use, this question included.
    if srv.learned.known() || srv.pool.muxes().is_some() || !srv.pool.keeps_warm() {
        return;
    }
    let started = Instant::now();
    let Ok(io) = srv.pool.dial().connect().await else {
        return;
    };
    let made_in = started.elapsed();
    io.watch_sent(DEAD_AFTER);
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
    if let Ok(Ok(true)) = tokio::time::timeout(wait, asked).await {
        if srv.learned.saw_confirmation() {
            tracing::debug!("{} is burrow-server: it confirms connections", srv.name());
        }
        if share {
            srv.pool.adopt_shared(t, made_in);
        }
    }
}
