//! UDP on burrow-server: the Shadowsocks UDP relay on the TCP listener's port (one session
//! per client address, as shadowsocks-rust and -libev do), and UDP over a TCP tunnel
//! (sing-box's UDP-over-TCP v2, for clients behind TCP-only proxies). A session owns the
//! sockets its datagrams leave from; every destination passes the egress policy; UDP to
//! port 443 can be refused (`block_quic`) so that browsers fall back to TCP; a session idle
//! for `udp_timeout` is freed, and at most `max_udp_sessions` are open.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use burrow_common::timeout::Idle;
use burrow_common::udp::{self, MAX_DATAGRAM};
use burrow_common::TargetAddr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

mod egress;
mod uot;

pub use uot::over_tcp;

use egress::Egress;

use crate::metrics::UdpDrop;
use crate::users::User;
use crate::Shared;

/// Datagrams queued for one session's slow path (a name to resolve, a socket to make) at
/// most; more are dropped, as a router would.
const QUEUE: usize = 64;

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
                        Ok(s) => {
                            if let Ok(a) = s.local_addr() {
                                tracing::info!("UDP relay on {a}");
                            }
                            relay(shared, s).await
                        }
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

thread_local! {
    /// Answers are read here, one at a time on the relay's thread: a session holds no
    /// buffer of its own (64 KiB each, before).
    static ANSWER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_DATAGRAM]);
}

/// The answer waiting on `sock`, sealed for the client, and its payload's length.
fn answer(sock: &UdpSocket, session: &Session) -> io::Result<(bytes::BytesMut, usize)> {
    ANSWER.with_borrow_mut(|buf| {
        let (n, from) = sock.try_recv_from(buf)?;
        let packet = lock(&session.codec).seal(&TargetAddr::Ip(from), &buf[..n]);
        Ok((packet, n))
    })
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
            r = session.egress.readable() => match r.and_then(|sock| answer(sock, session)) {
                Ok((packet, n)) => {
                    session.idle.touch();
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
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
