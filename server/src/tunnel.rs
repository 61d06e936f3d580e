//! A tunnel once its request authenticated: the answer to the client (the response's
//! salt, the word that the target is connected), then the relay — for a dialled target,
//! UDP over TCP, or a shared connection's carrier.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use burrow_common::frame::{Decoder, Encoder};
use burrow_common::relay::{relay_tunnel, report};
use burrow_common::timeout::with_timeout;
use burrow_common::EncryptedStream;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::handshake::Request;
use crate::Shared;

/// The tunnel's stream once its target is connected: the response's salt recorded (our
/// own salts too: a server stream reflected back at us is then a replay) and the client
/// told at once that the target is connected — burrow-local waits for this. SIP004: the
/// salt alone, harmless to any client. SIP022: only when asked, since a header with an
/// empty first chunk is ours alone to expect.
fn response_stream<S>(
    shared: &Shared,
    conn: S,
    key: &burrow_common::MasterKey,
    dec: Decoder,
    rbuf: BytesMut,
) -> EncryptedStream<S> {
    let asked = dec.confirmation_asked();
    let enc = Encoder::response(key, dec.salt().unwrap_or_default());
    if let Some(f) = shared.replay.as_ref() {
        f.check_and_insert(enc.salt());
    }
    let mut tunnel = EncryptedStream::from_parts(conn, enc, dec, rbuf);
    if !key.method().is_2022() || asked {
        tunnel.announce();
    }
    tunnel
}

/// UDP carried in this tunnel (sing-box UDP-over-TCP v2): announced at once (there is
/// no target to wait for), then datagrams both ways.
pub(crate) async fn udp_over_tcp<S>(shared: &Shared, conn: S, req: Box<Request>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The word goes now, as for a tunnel whose target is connected: a client that waits
    // for it does not wait for the first datagram back.
    let Some((tunnel, user, payload)) = answered_now(shared, conn, req, true).await else {
        return;
    };
    tokio::select! {
        _ = crate::udp::over_tcp(shared, tunnel, payload, &user.counters) => {}
        _ = user.removed.cancelled() => debug!("user {} removed: UDP over TCP closed", user.name),
    }
}

/// A request with no target to dial (UDP over TCP, a shared connection), answered at
/// once — counted as one of the user's tunnels if `tunnel` (a shared connection is not
/// one: each of its sessions is); the stream, the user and the bytes that came after the
/// request. `None`: the client is gone.
pub(crate) async fn answered_now<S>(
    shared: &Shared,
    conn: S,
    req: Box<Request>,
    tunnel: bool,
) -> Option<(EncryptedStream<S>, Arc<crate::users::User>, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Request {
        user,
        dec,
        rbuf,
        payload,
        ..
    } = *req;
    if tunnel {
        user.counters.tunnels.fetch_add(1, Relaxed);
    }
    let mut stream = response_stream(shared, conn, &user.key, dec, rbuf);
    tokio::io::AsyncWriteExt::flush(&mut stream).await.ok()?;
    Some((stream, user, payload))
}

/// The target is connected: answer the client (if it asked), send the first bytes on,
/// then relay both ways.
///
/// Not an `async fn`: its arguments would be stored twice in the future (once as
/// arguments, once as the locals they move into). The stream is built first and only what
/// the relay uses is captured.
pub(crate) fn tunnel<'a, S>(
    shared: &'a Shared,
    conn: S,
    req: Request,
    mut target: TcpStream,
    started: std::time::Instant,
) -> impl std::future::Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
{
    let Request {
        user,
        dec,
        rbuf,
        payload,
        ..
    } = req;
    let s = &shared.settings;
    let mut tunnel = response_stream(shared, conn, &user.key, dec, rbuf);
    async move {
        let m = &shared.metrics;
        let first = payload.len() as u64;
        let first_write = async {
            tunnel.flush().await?;
            target.write_all(&payload).await
        };
        if let Err(e) = with_timeout("first write", s.idle_timeout, first_write).await {
            info!("tunnel ended before relaying: {e}");
            return;
        }
        drop(payload);
        // A user taken out by a reload: their tunnels close after the grace.
        let relay = relay_tunnel(&mut target, &mut tunnel, s.idle_timeout);
        let (moved, result) = tokio::select! {
            done = relay => done,
            _ = user.removed.cancelled() => {
                debug!("user {} removed: tunnel closed", user.name);
                return;
            }
        };
        let (up, down) = (moved.b_to_a + first, moved.a_to_b);
        m.bytes_up.fetch_add(up, Relaxed);
        m.bytes_down.fetch_add(down, Relaxed);
        user.counters.moved(up, down);
        report("tunnel", up, down, started, result);
    }
}
