//! One connection, top to bottom: handshake → dial → relay, each under its own timeout.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use burrow_common::aead::Encoder;
use burrow_common::relay::relay;
use burrow_common::timeout::with_timeout;
use burrow_common::EncryptedStream;
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn, Span};

use crate::dial::{dial, DialError};
use burrow_common::aead::AeadError;

use crate::handshake::{
    close_quietly, drain_silently, jittered_deadline, read_request, BadRequest,
};
use crate::Shared;

/// Serves one accepted connection until its tunnel ends.
pub async fn serve<S>(shared: Arc<Shared>, mut conn: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = std::time::Instant::now();
    let m = shared.metrics.clone();
    m.connections.fetch_add(1, Relaxed);
    m.open.fetch_add(1, Relaxed);
    let _open = OpenGuard(&m.open);
    let s = &shared.settings;
    let deadline = jittered_deadline(s.handshake_timeout);
    let replay = shared.replay.as_ref();
    let req = match tokio::time::timeout_at(deadline, read_request(&mut conn, &s.key, replay)).await
    {
        Ok(Ok(req)) => req,
        Ok(Err(bad)) => {
            shared.metrics.rejected(bad.kind());
            if let BadRequest::Aead(AeadError::Clock { .. }) = bad {
                // The header authenticated: a real client whose clock is off. Say so.
                warn!("refused a request: {bad}");
            } else {
                debug!(reason = %bad, "not a valid request: draining silently");
            }
            drain_silently(&mut conn, deadline).await;
            return;
        }
        Err(_) => {
            shared.metrics.rejected("timeout");
            debug!("no whole request before the handshake deadline");
            close_quietly(&mut conn).await;
            return;
        }
    };
    Span::current().record("target", tracing::field::display(&req.target));

    let mut target = match dial(&req.target, s).await {
        Ok(t) => t,
        Err(e) => {
            match e {
                DialError::Refused { .. } => m.dial_refused.fetch_add(1, Relaxed),
                DialError::Io(_) => m.dial_failed.fetch_add(1, Relaxed),
            };
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
    m.bytes_up.fetch_add(up, Relaxed);
    m.bytes_down.fetch_add(moved.b_to_a, Relaxed);
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => info!(up, down = moved.b_to_a, secs, "closed"),
        Err(e) => info!(up, down = moved.b_to_a, secs, "closed: {e}"),
    }
}

/// Keeps the open-connections gauge right however `serve` ends.
struct OpenGuard<'a>(&'a AtomicI64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
