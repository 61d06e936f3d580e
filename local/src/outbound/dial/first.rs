//! A tunnel's first flight: the app's first bytes sealed behind the request header so that
//! both leave in one write, and — on a warm connection that may have died silently — the
//! wait for the server's word, with the move to a fresh connection when nothing was
//! acknowledged.

use burrow_common::timeout::within;
use std::io;
use std::time::Duration;

use burrow_common::TargetAddr;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{fresh, server_err, start, DialError, Plan, Tunnel, ANSWER_MARGIN};
use crate::settings::Settings;

/// How long what is sent on a warm connection may stay unacknowledged before the
/// connection counts as dead: four times the time it took to make (a round trip per hop,
/// so several round trips), at least a second (a retransmission or two on a lossy Wi-Fi)
/// and at most the connect timeout.
pub fn watch_for(made_in: Duration, connect_timeout: Duration) -> Duration {
    (made_in * 4).clamp(
        Duration::from_secs(1),
        connect_timeout.max(Duration::from_secs(1)),
    )
}

/// How long a tunnel that does not wait gives the app to send its first bytes, so that
/// they leave in one write with the request header. Apps on this machine send theirs
/// within microseconds of the reply; a protocol where the server speaks first pays this
/// once.
const FIRST_BYTES_WAIT: Duration = Duration::from_millis(20);

/// For a tunnel opened with [`Plan::Go`]: seals `early` (bytes the app sent with its
/// request) or else the app's first bytes, if they come within a moment, behind the
/// request header, so that both leave in one write.
pub async fn add_first_bytes<R: AsyncRead + Unpin>(
    tunnel: &mut Tunnel,
    early: Bytes,
    app: &mut R,
) -> io::Result<Bytes> {
    if !early.is_empty() {
        tunnel.buffer(&early);
        return Ok(early);
    }
    let mut first = vec![0u8; FIRST_BYTES_MAX];
    if let Some(read) = within(FIRST_BYTES_WAIT, app.read(&mut first)).await {
        let n = read?;
        first.truncate(n);
        tunnel.buffer(&first);
        return Ok(first.into());
    }
    Ok(Bytes::new())
}

/// For a tunnel that went at once on a watched warm connection (see `open_on`): sends
/// the request and first bytes now and waits for the server's word. `Ok` once it came
/// (the watch ends) or did not come in time with nothing known to be wrong. A tunnel
/// whose flight — small enough to be one segment, so acknowledged whole or not at all —
/// the server's TCP never acknowledged (the warm connection had died silently) is moved
/// to a fresh connection with the same request and first bytes; a larger flight is not
/// sent again (part of it may have arrived): the tunnel fails cleanly instead.
pub async fn settle(
    tunnel: &mut Tunnel,
    target: &TargetAddr,
    first: &[u8],
    s: &Settings,
) -> Result<(), DialError> {
    if !tunnel.get_ref().watched() {
        return Ok(());
    }
    let limit = s.connect_timeout + ANSWER_MARGIN;
    let answered = async {
        tunnel.flush().await?;
        tunnel.peer_answered().await
    };
    match within(limit, answered).await {
        Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut && first.len() <= ONE_SEGMENT => {}
        Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
            return Err(server_err(s.servers.current(), e));
        }
        _ => {
            tunnel.get_ref().unwatch();
            return Ok(());
        }
    }
    let srv = s.servers.current();
    tracing::info!(
        "a warm connection to {} had died silently (nothing acknowledged): {target} moves to a fresh one",
        srv.name()
    );
    let conn = fresh(srv, Plan::Go).await?;
    let mut again = start(target, s, srv, Plan::Go, conn, Duration::ZERO).await?;
    again.buffer(first);
    **tunnel = again;
    Ok(())
}

/// First bytes sent again on a fresh connection at most: with the request header and
/// the AEAD overhead they fit one TCP segment on any path (IPv6's minimum MTU less
/// headers), so the peer's TCP acknowledged all of them or none.
const ONE_SEGMENT: usize = 1024;

/// The most first bytes taken that way (the rest follow on the relay's path).
const FIRST_BYTES_MAX: usize = 16 * 1024;
