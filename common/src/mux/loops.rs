//! The connection's two loops: the writer (frames from every session, in turn, with the
//! keep-alives and the idle close) and the reader (frames to their sessions: a New
//! accepted, data delivered, an End or a reset passed on).

use crate::timeout::within;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{bad, encode, read_frame, Frame, END, KEEP_ALIVE, NEW};
use super::{Accepted, Out, Shared, WRITE_STALL};

pub(super) async fn write_loop<W: AsyncWrite>(
    shared: Arc<Shared>,
    w: W,
    mut out: mpsc::Receiver<Out>,
    mut resets: mpsc::UnboundedReceiver<Bytes>,
    idle: Duration,
) {
    tokio::pin!(w);
    let mut tick = tokio::time::interval(idle.max(Duration::from_millis(100)) / 4);
    let result: io::Result<()> = async {
        loop {
            let first = tokio::select! {
                Some((f, _share)) = out.recv() => f,
                Some(f) = resets.recv() => f,
                _ = shared.closed.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    let since = *shared.idle_since.lock().unwrap_or_else(|p| p.into_inner());
                    if since.is_some_and(|t| t.elapsed() >= idle) {
                        return Ok(());
                    }
                    continue;
                }
            };
            // A peer that stops reading holds this write: it is given up on (the
            // connection and its sessions end) after WRITE_STALL, or when closed.
            let batch = async {
                w.write_all(&first).await?;
                // What else is queued leaves with it, then one flush.
                loop {
                    if let Ok((f, _share)) = out.try_recv() {
                        w.write_all(&f).await?;
                    } else if let Ok(f) = resets.try_recv() {
                        w.write_all(&f).await?;
                    } else {
                        break;
                    }
                }
                w.flush().await
            };
            tokio::select! {
                r = crate::timeout::with_timeout("mux write", WRITE_STALL, batch) => r?,
                _ = shared.closed.cancelled() => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("mux connection: {e}");
    }
    shared.closed.cancel();
    let _ = within(Duration::from_secs(1), w.shutdown()).await;
}

pub(super) async fn read_loop<R: AsyncRead>(
    shared: Arc<Shared>,
    r: R,
    accepted: Option<mpsc::Sender<Accepted>>,
    max_sessions: usize,
) {
    let r = tokio::io::BufReader::with_capacity(16 * 1024, r);
    tokio::pin!(r);
    let result: io::Result<()> = async {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut r) => f?,
                _ = shared.closed.cancelled() => return Ok(()),
            };
            let Some(frame) = frame else { return Ok(()) };
            deliver(&shared, frame, accepted.as_ref(), max_sessions).await?;
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::debug!("mux connection: {e}");
    }
    shared.closed.cancel();
    // Every session still open ends as reset (the connection was lost under it), unless
    // the peer had ended it.
    for (_, slot) in shared.lock().drain() {
        if slot.tx.is_some() {
            slot.reset.store(true, Relaxed);
        }
    }
}

async fn deliver(
    shared: &Arc<Shared>,
    frame: Frame,
    accepted: Option<&mpsc::Sender<Accepted>>,
    max_sessions: usize,
) -> io::Result<()> {
    let id = frame.id;
    match frame.status {
        KEEP_ALIVE => return Ok(()),
        NEW => {
            let Some(accepted) = accepted else {
                return Err(bad("New from the server"));
            };
            let known = shared.lock().contains_key(&id);
            if known || shared.lock().len() >= max_sessions {
                tracing::debug!("mux: session {id} refused (in use, or too many open)");
                send_reset(shared, id);
                return Ok(());
            }
            let stream = shared.add(id, true);
            if accepted.send((stream, frame.target)).await.is_err() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
        END => {
            // The peer is done writing (with the error option: the session was reset).
            if let Some(s) = shared.lock().get_mut(&id) {
                if frame.error {
                    s.reset.store(true, Relaxed);
                }
                s.tx = None;
            }
            return Ok(());
        }
        _ => {}
    }
    if frame.data.is_empty() {
        return Ok(());
    }
    let now = tokio::time::Instant::now();
    let tx = match shared.lock().get_mut(&id) {
        Some(slot) => {
            if slot.load.moved(frame.data.len(), now) {
                shared.busy_from(now);
            }
            slot.tx.clone()
        }
        None => {
            // Not ours (ended here already): tell the peer, as v2ray does.
            send_end(shared, id);
            return Ok(());
        }
    };
    if let Some(tx) = tx {
        // The session lags: the whole connection waits for it (no flow control), and
        // says so meanwhile (`Mux::busy`).
        if let Err(mpsc::error::TrySendError::Full(data)) = tx.try_send(frame.data) {
            shared.stalled.store(true, Relaxed);
            let _ = tx.send(data).await;
            shared.stalled.store(false, Relaxed);
        }
    }
    Ok(())
}

pub(super) fn send_end(shared: &Shared, id: u16) {
    let mut b = BytesMut::with_capacity(6);
    encode(&mut b, id, END, None, false, &[]);
    let _ = shared.resets.send(b.freeze());
}

pub(super) fn send_reset(shared: &Shared, id: u16) {
    let mut b = BytesMut::with_capacity(6);
    encode(&mut b, id, END, None, true, &[]);
    let _ = shared.resets.send(b.freeze());
}
