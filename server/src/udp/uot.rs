//! UDP over a TCP tunnel (sing-box's UDP-over-TCP v2), for clients behind TCP-only
//! proxies: the datagrams ride the tunnel both ways, framed with their length.

use std::sync::atomic::Ordering::Relaxed;

use burrow_common::timeout::Idle;
use burrow_common::udp::{self, MAX_DATAGRAM};
use burrow_common::TargetAddr;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::egress::Egress;
use crate::metrics::UdpDrop;
use crate::users::Counters;
use crate::Shared;

/// UDP over a tunnel (`stream`, whose request named [`udp::UOT_MAGIC`]); `first`: the
/// bytes that came after the request header.
pub async fn over_tcp<S>(shared: &Shared, mut stream: S, first: BytesMut, counters: &Counters)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let m = &shared.metrics.udp;
    let idle = Idle::new(shared.settings.udp_timeout);
    let expired = idle.expired();
    tokio::pin!(expired);
    m.sessions.fetch_add(1, Relaxed);
    let mut inbuf = first;
    let egress = Egress::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = BytesMut::new();
    let mut connected: Option<Option<TargetAddr>> = None;
    loop {
        if connected.is_none() {
            match udp::uot_read_request(&mut inbuf) {
                Ok(Some((is_connect, dest))) => connected = Some(is_connect.then_some(dest)),
                Ok(None) => {}
                Err(e) => {
                    debug!("UDP over TCP: {e}");
                    break;
                }
            }
        }
        if let Some(mode) = &connected {
            loop {
                match udp::uot_take(&mut inbuf, mode.as_ref()) {
                    Ok(Some((to, data))) => {
                        if egress.send(shared, &to, &data).await {
                            counters.moved(data.len() as u64, 0);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!("UDP over TCP: {e}");
                        m.dropped(UdpDrop::Probe);
                        m.sessions.fetch_sub(1, Relaxed);
                        return;
                    }
                }
            }
        }
        tokio::select! {
            r = stream.read_buf(&mut inbuf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    idle.touch();
                    continue;
                }
            },
            r = egress.recv(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                idle.touch();
                out.clear();
                let from = TargetAddr::Ip(from);
                let addr = match &connected {
                    Some(Some(_)) => None,
                    _ => Some(&from),
                };
                udp::uot_put(&mut out, addr, &buf[..n]);
                if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                    break;
                }
                m.packets_down.fetch_add(1, Relaxed);
                m.bytes_down.fetch_add(n as u64, Relaxed);
                counters.moved(0, n as u64);
            },
            _ = &mut expired => break,
            _ = shared.shutdown.cancelled() => break,
        }
    }
    m.sessions.fetch_sub(1, Relaxed);
    let _ = stream.shutdown().await;
}
