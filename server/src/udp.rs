//! UDP on burrow-server: the Shadowsocks UDP relay on the TCP listener's port (one session
//! per client address, as shadowsocks-rust and -libev do), and UDP over a TCP tunnel
//! (sing-box's UDP-over-TCP v2, for clients behind TCP-only proxies). A session owns the
//! sockets its datagrams leave from; every destination passes the egress policy; UDP to
//! port 443 can be refused (`block_quic`) so that browsers fall back to TCP; a session idle
//! for `udp_timeout` is freed, and at most `max_udp_sessions` are open.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use burrow_common::udp::{self, MAX_DATAGRAM};
use burrow_common::TargetAddr;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use crate::metrics::UdpDrop;
use crate::users::{Counters, User};
use crate::Shared;

/// Datagrams queued for one session's egress at most; more are dropped, as a router would.
const QUEUE: usize = 64;
/// Names a session keeps resolved at most.
const NAMES: usize = 64;

/// Per client address: its session's user (once it has one) and its queue.
type Sessions =
    Arc<Mutex<HashMap<SocketAddr, (Arc<User>, mpsc::Sender<(Arc<User>, udp::Incoming)>)>>>;

/// The user whose key opens `packet`, and what it says.
fn open_any(
    users: &[Arc<User>],
    packet: &[u8],
) -> Result<(Arc<User>, udp::Incoming), udp::UdpError> {
    let mut last = udp::UdpError::Auth;
    for u in users {
        match udp::open_from_client(&u.key, packet) {
            Ok(i) => return Ok((u.clone(), i)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The Shadowsocks UDP relay on `socket` until the server stops.
pub async fn relay(shared: Arc<Shared>, socket: UdpSocket) {
    let socket = Arc::new(socket);
    let sessions: Sessions = Default::default();
    let m = &shared.metrics.udp;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (n, client) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => {
                    debug!("UDP relay: {e}");
                    continue;
                }
            },
        };
        // An address with a session is tried with its user's key alone (a datagram under
        // another key would be dropped by the session anyway): one trial, not one per user.
        let known = {
            let map = sessions.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&client)
                .filter(|(_, tx)| !tx.is_closed())
                .map(|(u, _)| u.clone())
        };
        let opened = match &known {
            Some(u) => udp::open_from_client(&u.key, &buf[..n]).map(|i| (u.clone(), i)),
            None => open_any(&shared.settings.users.get(), &buf[..n]),
        };
        let incoming = match opened {
            Ok(i) => i,
            Err(e) => {
                debug!(%client, "UDP: {e}: dropped");
                m.dropped(UdpDrop::Probe);
                continue;
            }
        };
        let tx = {
            let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&client) {
                Some((_, tx)) if !tx.is_closed() => tx.clone(),
                _ if map.len() >= shared.settings.max_udp_sessions => {
                    m.dropped(UdpDrop::Sessions);
                    continue;
                }
                // A datagram that would open a session is checked against the replay
                // filter (its leading bytes: the SIP004 salt, the SIP022 nonce or
                // header, new for every datagram a client seals): a captured one sent
                // again from another source — a spoofed victim's — opens nothing.
                _ if first_seen_again(&shared, &buf[..n]) => {
                    m.dropped(UdpDrop::Replay);
                    continue;
                }
                _ => {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    map.insert(client, (incoming.0.clone(), tx.clone()));
                    let (shared, socket, sessions) =
                        (shared.clone(), socket.clone(), sessions.clone());
                    tokio::spawn(async move {
                        session(&shared, &socket, client, rx).await;
                        let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
                        if map.get(&client).is_some_and(|(_, tx)| tx.is_closed()) {
                            map.remove(&client);
                        }
                    });
                    tx
                }
            }
        };
        if tx.try_send(incoming).is_err() {
            m.dropped(UdpDrop::Busy);
        }
    }
}

/// Resolves when `user` is taken out; never without a user.
async fn removed(user: Option<&User>) {
    match user {
        Some(u) => u.removed.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Whether a datagram's leading bytes were seen before (and records them if not).
fn first_seen_again(shared: &Shared, packet: &[u8]) -> bool {
    let lead = &packet[..packet.len().min(32)];
    shared
        .replay
        .as_ref()
        .is_some_and(|f| !f.check_and_insert(lead))
}

/// One client address's datagrams, both ways, until it idles.
async fn session(
    shared: &Shared,
    socket: &UdpSocket,
    client: SocketAddr,
    mut rx: mpsc::Receiver<(Arc<User>, udp::Incoming)>,
) {
    let m = &shared.metrics.udp;
    m.sessions.fetch_add(1, Relaxed);
    debug!(%client, "UDP session opened");
    // The session is its first packet's user's: a packet from the same address under
    // another user's key is dropped, never re-keying the answers to this one.
    let mut user: Option<Arc<User>> = None;
    let mut slot = None;
    let mut codec = udp::ServerCodec::new(&shared.settings.key);
    let mut egress = Egress::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some((who, incoming)) => {
                    match &user {
                        Some(u) if Arc::ptr_eq(u, &who) => {}
                        Some(_) => {
                            m.dropped(UdpDrop::Probe);
                            continue;
                        }
                        None => {
                            // A session is one of the user's tunnels, under their cap.
                            let Some(s) = who.open_slot() else {
                                m.dropped(UdpDrop::Sessions);
                                break;
                            };
                            slot = Some(s);
                            codec = udp::ServerCodec::new(&who.key);
                            who.counters.tunnels.fetch_add(1, Relaxed);
                            user = Some(who.clone());
                        }
                    }
                    if codec.accept(&incoming) {
                        if egress.send(shared, &incoming.to, &incoming.data).await {
                            who.counters.moved(incoming.data.len() as u64, 0);
                        }
                    } else {
                        m.dropped(UdpDrop::Replay);
                    }
                }
                None => break,
            },
            r = egress.recv(&mut buf) => match r {
                Ok((n, from)) => {
                    let packet = codec.seal(&TargetAddr::Ip(from), &buf[..n]);
                    if socket.send_to(&packet, client).await.is_ok() {
                        m.packets_down.fetch_add(1, Relaxed);
                        m.bytes_down.fetch_add(n as u64, Relaxed);
                        if let Some(u) = &user {
                            u.counters.moved(0, n as u64);
                        }
                    } else {
                        m.dropped(UdpDrop::Busy);
                    }
                }
                Err(e) => debug!(%client, "UDP session: {e}"),
            },
            _ = tokio::time::sleep(shared.settings.udp_timeout) => break,
            _ = shared.shutdown.cancelled() => break,
            // A user taken out (after their grace): their session ends like their tunnels.
            _ = removed(user.as_deref()) => break,
        }
    }
    rx.close();
    drop(slot);
    m.sessions.fetch_sub(1, Relaxed);
    debug!(%client, "UDP session closed");
}

/// UDP over a tunnel (`stream`, whose request named [`udp::UOT_MAGIC`]); `first`: the
/// bytes that came after the request header.
pub async fn over_tcp<S>(shared: &Shared, mut stream: S, first: BytesMut, counters: &Counters)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let m = &shared.metrics.udp;
    let idle = shared.settings.udp_timeout;
    m.sessions.fetch_add(1, Relaxed);
    let mut inbuf = first;
    let mut egress = Egress::default();
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
                Ok(_) => continue,
            },
            r = egress.recv(&mut buf) => {
                let Ok((n, from)) = r else { continue };
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
            _ = tokio::time::sleep(idle) => break,
            _ = shared.shutdown.cancelled() => break,
        }
    }
    m.sessions.fetch_sub(1, Relaxed);
    let _ = stream.shutdown().await;
}

/// Where one session's datagrams leave from: a socket per address family, made on first
/// use, and the names it resolved.
#[derive(Default)]
struct Egress {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    names: HashMap<String, std::net::IpAddr>,
}

impl Egress {
    /// Sends `data` to `to` if the policy allows it; counts what happened. True if sent.
    async fn send(&mut self, shared: &Shared, to: &TargetAddr, data: &[u8]) -> bool {
        let m = &shared.metrics.udp;
        if shared.settings.block_quic && to.port() == 443 {
            m.dropped(UdpDrop::Quic);
            return false;
        }
        let Some(addr) = self.allowed(shared, to).await else {
            m.dropped(UdpDrop::Policy);
            return false;
        };
        let sent = match self.socket(addr) {
            Ok(sock) => sock.send_to(data, addr).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(_) => {
                m.packets_up.fetch_add(1, Relaxed);
                m.bytes_up.fetch_add(data.len() as u64, Relaxed);
                true
            }
            Err(e) => {
                debug!("UDP to {addr}: {e}");
                m.dropped(UdpDrop::Busy);
                false
            }
        }
    }

    /// The first address of `to` the egress policy allows.
    async fn allowed(&mut self, shared: &Shared, to: &TargetAddr) -> Option<SocketAddr> {
        let s = &shared.settings;
        let addrs = match to {
            TargetAddr::Ip(a) => vec![*a],
            TargetAddr::Domain(name, port) => match self.names.get(name) {
                Some(ip) => vec![SocketAddr::new(*ip, *port)],
                None => burrow_common::net::resolve(name, *port, s.connect_timeout)
                    .await
                    .map_err(|e| debug!("UDP to {to}: {e}"))
                    .ok()?,
            },
        };
        let allowed = addrs.into_iter().find(|a| match s.policy.check(*a) {
            Ok(()) => true,
            Err(why) => {
                debug!("UDP to {to}: {a} is {why}: refused by egress policy");
                false
            }
        })?;
        if let TargetAddr::Domain(name, _) = to {
            if self.names.len() >= NAMES {
                self.names.clear();
            }
            self.names.insert(name.clone(), allowed.ip());
        }
        Some(allowed)
    }

    fn socket(&mut self, to: SocketAddr) -> io::Result<&UdpSocket> {
        let (slot, any) = if to.is_ipv4() {
            (&mut self.v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        } else {
            (&mut self.v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        };
        if slot.is_none() {
            let std = std::net::UdpSocket::bind(any)?;
            std.set_nonblocking(true)?;
            *slot = Some(UdpSocket::from_std(std)?);
        }
        slot.as_ref()
            .ok_or_else(|| io::Error::other("no UDP socket"))
    }

    /// The next datagram from a target on either socket.
    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match (&self.v4, &self.v6) {
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
