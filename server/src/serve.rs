//! One connection, top to bottom: handshake → dial → relay, each under its own timeout.

use std::sync::Arc;

use burrow_common::aead::Encoder;
use burrow_common::relay::relay;
use burrow_common::timeout::with_timeout;
use burrow_common::EncryptedStream;
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, Span};

use crate::dial::dial;
use crate::handshake::{close_quietly, drain_silently, jittered_deadline, read_request};
use crate::Shared;

/// Serves one accepted connection until its tunnel ends.
pub async fn serve<S>(shared: Arc<Shared>, mut conn: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = std::time::Instant::now();
    let s = &shared.settings;
    let deadline = jittered_deadline(s.handshake_timeout);
    let replay = shared.replay.as_ref();
    let req = match tokio::time::timeout_at(deadline, read_request(&mut conn, &s.key, replay)).await
    {
        Ok(Ok(req)) => req,
        Ok(Err(bad)) => {
            shared.count_rejected(bad.kind());
            debug!(reason = %bad, "not a valid request: draining silently");
            drain_silently(&mut conn, deadline).await;
            return;
        }
        Err(_) => {
            shared.count_rejected("timeout");
            debug!("no whole request before the handshake deadline");
            close_quietly(&mut conn).await;
            return;
        }
    };
    Span::current().record("target", tracing::field::display(&req.target));

    let mut target = match dial(&req.target, s).await {
        Ok(t) => t,
        Err(e) => {
            info!("dial failed: {e}");
            // Closing without a single byte tells burrow-local the dial failed.
            close_quietly(&mut conn).await;
            return;
        }
    };

    let enc = Encoder::response(&s.key, req.dec.salt().unwrap_or_default());
    if let Some(f) = replay {
        // Our own salts too: a server stream reflected back at us is then a replay.
        f.check_and_insert(enc.salt());
    }
    let asked = req.dec.confirmation_asked();
    let mut tunnel = EncryptedStream::from_parts(conn, enc, req.dec, req.rbuf);
    // Tell the client now that the target is connected: burrow-local waits for this.
    // SIP004: the salt alone, harmless to any client. SIP022: only when asked, since a
    // header with an empty first chunk is ours alone to expect.
    if !s.key.method().is_2022() || asked {
        tunnel.announce();
    }
    let first_write = async {
        tunnel.flush().await?;
        target.write_all(&req.payload).await
    };
    if let Err(e) = with_timeout("first write", s.idle_timeout, first_write).await {
        info!("tunnel ended before relaying: {e}");
        return;
    }
    let (moved, result) = relay(&mut tunnel, &mut target, s.idle_timeout).await;
    let up = moved.a_to_b + req.payload.len() as u64;
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => info!(up, down = moved.b_to_a, secs, "closed"),
        Err(e) => info!(up, down = moved.b_to_a, secs, "closed: {e}"),
    }
}
