//! Where a session's datagrams leave from: a socket per address family, the names it
//! resolved, the egress policy and `block_quic` on every destination.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, OnceLock};

use burrow_common::TargetAddr;
use tokio::net::UdpSocket;
use tracing::debug;

use super::lock;
use crate::metrics::UdpDrop;
use crate::Shared;

/// Names a session keeps resolved at most.
const NAMES: usize = 64;

/// Where one session's datagrams leave from: a socket per address family, made on first
/// use, and the names it resolved. Shared: the relay loop sends on it, the session's task
/// receives the answers.
#[derive(Default)]
pub(super) struct Egress {
    v4: OnceLock<UdpSocket>,
    v6: OnceLock<UdpSocket>,
    /// Names resolved, and the address the policy allowed.
    names: Mutex<HashMap<String, IpAddr>>,
}

impl Egress {
    /// Sends `data` to `to` without waiting, if its address is known (an IP, or a name
    /// resolved before), its socket made and room in it: `Some(sent)`, counted; `None`: the
    /// slow way ([`Egress::send`]) is needed.
    pub(super) fn try_send(&self, shared: &Shared, to: &TargetAddr, data: &[u8]) -> Option<bool> {
        let m = &shared.metrics.udp;
        if shared.settings.block_quic && to.port() == 443 {
            m.dropped(UdpDrop::Quic);
            return Some(false);
        }
        let addr = match to {
            TargetAddr::Ip(a) => *a,
            TargetAddr::Domain(name, port) => SocketAddr::new(*lock(&self.names).get(name)?, *port),
        };
        let sock = self.socket(addr)?;
        if let Err(why) = shared.settings.policy.check(addr) {
            debug!("UDP to {to}: {addr} is {why}: refused by egress policy");
            m.dropped(UdpDrop::Policy);
            return Some(false);
        }
        match sock.try_send_to(data, addr) {
            // The socket's buffer is full: the slow way waits for room.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            r => Some(counted(shared, r, addr, data.len())),
        }
    }

    /// Sends `data` to `to` if the policy allows it, resolving a name, making the socket or
    /// waiting for room if need be; counts what happened. True if sent.
    pub(super) async fn send(&self, shared: &Shared, to: &TargetAddr, data: &[u8]) -> bool {
        if let Some(sent) = self.try_send(shared, to, data) {
            return sent;
        }
        let Some(addr) = self.allowed(shared, to).await else {
            shared.metrics.udp.dropped(UdpDrop::Policy);
            return false;
        };
        let sent = match self.socket(addr) {
            Some(sock) => sock.send_to(data, addr).await,
            None => match bind_any(addr) {
                Ok(sock) => {
                    let cell = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
                    cell.get_or_init(|| sock).send_to(data, addr).await
                }
                Err(e) => Err(e),
            },
        };
        counted(shared, sent, addr, data.len())
    }

    /// The first address of `to` the egress policy allows (names resolved and kept).
    async fn allowed(&self, shared: &Shared, to: &TargetAddr) -> Option<SocketAddr> {
        let s = &shared.settings;
        let addrs = match to {
            TargetAddr::Ip(a) => vec![*a],
            TargetAddr::Domain(name, port) => {
                let cached = lock(&self.names).get(name).copied();
                match cached {
                    Some(ip) => vec![SocketAddr::new(ip, *port)],
                    None => burrow_common::net::resolve(name, *port, s.connect_timeout)
                        .await
                        .map_err(|e| debug!("UDP to {to}: {e}"))
                        .ok()?,
                }
            }
        };
        let allowed = addrs.into_iter().find(|a| match s.policy.check(*a) {
            Ok(()) => true,
            Err(why) => {
                debug!("UDP to {to}: {a} is {why}: refused by egress policy");
                false
            }
        })?;
        if let TargetAddr::Domain(name, _) = to {
            let mut names = lock(&self.names);
            if names.len() >= NAMES {
                names.clear();
            }
            names.insert(name.clone(), allowed.ip());
        }
        Some(allowed)
    }

    fn socket(&self, to: SocketAddr) -> Option<&UdpSocket> {
        if to.is_ipv4() {
            self.v4.get()
        } else {
            self.v6.get()
        }
    }

    /// A socket with a datagram from a target waiting (never, before one is made); read it
    /// with `try_recv_from` (it may turn out empty: `WouldBlock`).
    pub(super) async fn readable(&self) -> io::Result<&UdpSocket> {
        match (self.v4.get(), self.v6.get()) {
            (None, None) => std::future::pending().await,
            (Some(a), None) | (None, Some(a)) => a.readable().await.map(|_| a),
            (Some(a), Some(b)) => tokio::select! {
                r = a.readable() => r.map(|_| a),
                r = b.readable() => r.map(|_| b),
            },
        }
    }

    /// The next datagram from a target on either socket (never, before one is made).
    pub(super) async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match (self.v4.get(), self.v6.get()) {
            (None, None) => std::future::pending().await,
            (Some(a), None) | (None, Some(a)) => a.recv_from(buf).await,
            (Some(a), Some(b)) => loop {
                let ready = tokio::select! {
                    r = a.readable() => r.map(|_| a),
                    r = b.readable() => r.map(|_| b),
                }?;
                match ready.try_recv_from(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    done => return done,
                }
            },
        }
    }
}

/// Counts what a send to a target did; true if it went.
fn counted(shared: &Shared, r: io::Result<usize>, addr: SocketAddr, len: usize) -> bool {
    let m = &shared.metrics.udp;
    match r {
        Ok(_) => {
            m.packets_up.fetch_add(1, Relaxed);
            m.bytes_up.fetch_add(len as u64, Relaxed);
            true
        }
        Err(e) => {
            debug!("UDP to {addr}: {e}");
            m.dropped(UdpDrop::Busy);
            false
        }
    }
}

/// A socket of `to`'s family on any port.
fn bind_any(to: SocketAddr) -> io::Result<UdpSocket> {
    let any = if to.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let std = std::net::UdpSocket::bind(any)?;
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}
