//! UDP on burrow-server: the Shadowsocks UDP relay on the TCP listener's port (one session
//! per client address, as shadowsocks-rust and -libev do), and UDP over a TCP tunnel
//! (sing-box's UDP-over-TCP v2, for clients behind TCP-only proxies). A session owns the
//! sockets its datagrams leave from; every destination passes the egress policy; UDP to
//! port 443 can be refused (`block_quic`) so that browsers fall back to TCP; a session idle
//! for `udp_timeout` is freed, and at most `max_udp_sessions` are open.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};

use burrow_common::timeout::Idle;
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

/// Datagrams queued for one session's slow path (a name to resolve, a socket to make) at
/// most; more are dropped, as a router would.
const QUEUE: usize = 64;
/// Names a session keeps resolved at most.
const NAMES: usize = 64;

/// One client address's session, shared by the relay loop (the way out: it opens, checks
/// and sends a datagram itself when the destination is known) and the session's task (the
/// way back, idling, and the slow path: names to resolve, the first socket).
struct Session {
    /// The user of its first datagram: one from the same address under another user's key
    /// is dropped, never re-keying the answers.
    user: Arc<User>,
    codec: Mutex<udp::ServerCodec>,
    egress: Egress,
    idle: Idle,
    /// Datagrams for the task: those whose way out is not known yet.
    slow: mpsc::Sender<udp::Incoming>,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>;

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

/// [`relay`] on a thread of its own, with a single-threaded runtime: a datagram's way
/// through the server (received, opened, sent on; answered, sealed, sent back) then wakes
/// no other worker — the multi-threaded scheduler's hand-offs cost a tenth of the relay's
/// rate and more of its round trip. TCP tunnels stay on the workers.
pub async fn relay_on_own_thread(shared: Arc<Shared>, socket: UdpSocket) {
    let socket = match socket.into_std() {
        Ok(s) => s,
        Err(e) => return tracing::warn!("no UDP relay: {e}"),
    };
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("burrow-udp".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let run = |rt: tokio::runtime::Runtime| {
                rt.block_on(async move {
                    match UdpSocket::from_std(socket) {
                        Ok(s) => relay(shared, s).await,
                        Err(e) => tracing::warn!("no UDP relay: {e}"),
                    }
                })
            };
            match rt {
                Ok(rt) => run(rt),
                Err(e) => tracing::warn!("no UDP relay: its runtime: {e}"),
            }
            drop(done);
        });
    if let Err(e) = spawned {
        return tracing::warn!("no UDP relay: its thread: {e}");
    }
    let _ = finished.await;
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
        let packet = &buf[..n];
        // An address with a session is tried with its user's key alone (a datagram under
        // another key would be dropped by the session anyway): one trial, not one per user.
        let known = {
            let map = lock(&sessions);
            map.get(&client).filter(|s| !s.slow.is_closed()).cloned()
        };
        if let Some(session) = known {
            match udp::open_from_client(&session.user.key, packet) {
                Ok(incoming) => session.up(&shared, incoming),
                Err(e) => {
                    debug!(%client, "UDP: {e}: dropped");
                    m.dropped(UdpDrop::Probe);
                }
            }
            continue;
        }
        let (user, incoming) = match open_any(&shared.settings.users.get(), packet) {
            Ok(i) => i,
            Err(e) => {
                debug!(%client, "UDP: {e}: dropped");
                m.dropped(UdpDrop::Probe);
                continue;
            }
        };
        if lock(&sessions).len() >= shared.settings.max_udp_sessions {
            m.dropped(UdpDrop::Sessions);
            continue;
        }
        // A datagram that would open a session is checked against the replay filter (its
        // leading bytes: the SIP004 salt, the SIP022 nonce or header, new for every
        // datagram a client seals): a captured one sent again from another source — a
        // spoofed victim's — opens nothing.
        if first_seen_again(&shared, packet) {
            m.dropped(UdpDrop::Replay);
            continue;
        }
        // A session is one of the user's tunnels, under their cap.
        let Some(slot) = user.open_slot() else {
            m.dropped(UdpDrop::Sessions);
            continue;
        };
        user.counters.tunnels.fetch_add(1, Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        let session = Arc::new(Session {
            codec: Mutex::new(udp::ServerCodec::new(&user.key)),
            user,
            egress: Egress::default(),
            idle: Idle::new(shared.settings.udp_timeout),
            slow: tx,
        });
        lock(&sessions).insert(client, session.clone());
        session.up(&shared, incoming);
        let (shared, socket, sessions) = (shared.clone(), socket.clone(), sessions.clone());
        tokio::spawn(async move {
            run(&shared, &socket, client, &session, rx).await;
            drop(slot);
            let mut map = lock(&sessions);
            if map.get(&client).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                map.remove(&client);
            }
        });
    }
}

/// The map's guard, whether or not a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves when `user` is taken out.
async fn removed(user: &User) {
    user.removed.cancelled().await
}

/// Whether a datagram's leading bytes were seen before (and records them if not).
fn first_seen_again(shared: &Shared, packet: &[u8]) -> bool {
    let lead = &packet[..packet.len().min(32)];
    shared
        .replay
        .as_ref()
        .is_some_and(|f| !f.check_and_insert(lead))
}

impl Session {
    /// A client's datagram on its way out: checked once (SIP022 ids), then sent from here
    /// when its address is known and allowed and its socket made; else to the task.
    fn up(&self, shared: &Shared, incoming: udp::Incoming) {
        let m = &shared.metrics.udp;
        if !lock(&self.codec).accept(&incoming) {
            return m.dropped(UdpDrop::Replay);
        }
        self.idle.touch();
        match self.egress.try_send(shared, &incoming.to, &incoming.data) {
            Some(true) => self.user.counters.moved(incoming.data.len() as u64, 0),
            Some(false) => {}
            None => {
                if self.slow.try_send(incoming).is_err() {
                    m.dropped(UdpDrop::Busy);
                }
            }
        }
    }
}

/// A session's task: answers back to the client, the slow path, until it idles.
async fn run(
    shared: &Shared,
    socket: &UdpSocket,
    client: SocketAddr,
    session: &Session,
    mut rx: mpsc::Receiver<udp::Incoming>,
) {
    let m = &shared.metrics.udp;
    m.sessions.fetch_add(1, Relaxed);
    debug!(%client, "UDP session opened");
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let expired = session.idle.expired();
    tokio::pin!(expired);
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(incoming) => {
                    if session.egress.send(shared, &incoming.to, &incoming.data).await {
                        session.user.counters.moved(incoming.data.len() as u64, 0);
                    }
                }
                None => break,
            },
            r = session.egress.recv(&mut buf) => match r {
                Ok((n, from)) => {
                    session.idle.touch();
                    let packet = lock(&session.codec).seal(&TargetAddr::Ip(from), &buf[..n]);
                    let sent = match socket.try_send_to(&packet, client) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            socket.send_to(&packet, client).await
                        }
                        r => r,
                    };
                    if sent.is_ok() {
                        m.packets_down.fetch_add(1, Relaxed);
                        m.bytes_down.fetch_add(n as u64, Relaxed);
                        session.user.counters.moved(0, n as u64);
                    } else {
                        m.dropped(UdpDrop::Busy);
                    }
                }
                Err(e) => debug!(%client, "UDP session: {e}"),
            },
            _ = &mut expired => break,
            _ = shared.shutdown.cancelled() => break,
            // A user taken out (after their grace): their session ends like their tunnels.
            _ = removed(&session.user) => break,
        }
    }
    rx.close();
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

/// Where one session's datagrams leave from: a socket per address family, made on first
/// use, and the names it resolved. Shared: the relay loop sends on it, the session's task
/// receives the answers.
#[derive(Default)]
struct Egress {
    v4: OnceLock<UdpSocket>,
    v6: OnceLock<UdpSocket>,
    /// Names resolved, and the address the policy allowed.
    names: Mutex<HashMap<String, IpAddr>>,
}

impl Egress {
    /// Sends `data` to `to` without waiting, if its address is known (an IP, or a name
    /// resolved before), its socket made and room in it: `Some(sent)`, counted; `None`: the
    /// slow way ([`Egress::send`]) is needed.
    fn try_send(&self, shared: &Shared, to: &TargetAddr, data: &[u8]) -> Option<bool> {
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
    async fn send(&self, shared: &Shared, to: &TargetAddr, data: &[u8]) -> bool {
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

    /// The next datagram from a target on either socket (never, before one is made).
    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
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
