//! Datagrams the rules send direct: from a socket of the association's own on this
//! machine (one dual-stack socket where the system allows), names resolved here.

use std::io;
use std::net::SocketAddr;

use burrow_common::udp::MAX_DATAGRAM;
use burrow_common::TargetAddr;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::settings::Settings;

/// A direct destination's address (its name resolved here), if it has one.
pub(super) async fn direct_addr(to: &TargetAddr, s: &Settings) -> Option<SocketAddr> {
    let (host, port) = match to {
        TargetAddr::Ip(a) => return Some(*a),
        TargetAddr::Domain(h, p) => (h.clone(), *p),
    };
    let found = burrow_common::net::resolve(&host, port, s.connect_timeout)
        .await
        .ok()
        .and_then(|a| a.first().copied());
    if found.is_none() {
        debug!("UDP to {to} (direct): no address");
    }
    found
}

/// Sends a datagram the rules route direct from this machine to `addr`, binding the
/// association's direct socket the first time; `false` if it could not go.
pub(super) async fn send_direct(
    direct: &mut Option<UdpSocket>,
    buf: &mut Vec<u8>,
    addr: Option<SocketAddr>,
    data: &[u8],
) -> bool {
    let Some(addr) = addr else {
        return false;
    };
    if direct.is_none() {
        // One dual-stack socket (Windows makes IPv6 sockets IPv6-only unless told), else
        // IPv4 only.
        let bound = match dual_stack_udp() {
            Ok(sock) => Ok(sock),
            Err(_) => UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).await,
        };
        match bound {
            Ok(sock) => {
                *direct = Some(sock);
                buf.resize(MAX_DATAGRAM, 0);
            }
            Err(e) => {
                debug!("UDP direct socket: {e}");
                return false;
            }
        }
    }
    let Some(sock) = direct.as_ref() else {
        return false;
    };
    let addr = match (addr, sock.local_addr().map(|a| a.is_ipv6())) {
        (SocketAddr::V4(v4), Ok(true)) => {
            SocketAddr::new(std::net::IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        (a, _) => a,
    };
    sock.send_to(data, addr).await.is_ok()
}

/// An IPv6 UDP socket that takes IPv4 too (IPV6_V6ONLY off before it is bound).
fn dual_stack_udp() -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_only_v6(false)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())?;
    UdpSocket::from_std(sock.into())
}

/// The next datagram on the direct socket (never, without one); IPv4-mapped senders as
/// IPv4.
pub(super) async fn recv_direct(
    direct: Option<&UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match direct {
        Some(sock) => {
            let (n, from) = sock.recv_from(buf).await?;
            let from = match from {
                SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(v4.into(), v6.port()),
                    None => from,
                },
                v4 => v4,
            };
            Ok((n, from))
        }
        None => std::future::pending().await,
    }
}
