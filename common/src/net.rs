//! Sockets: options in one place, connect with timeouts and Happy Eyeballs, accept with backoff.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::timeout::with_timeout;

/// TCP keepalive probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(15),
            count: 4,
        }
    }
}

/// Options set on every accepted and dialled socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOpts {
    /// Disable Nagle's algorithm.
    pub nodelay: bool,
    /// TCP keepalive, or none.
    pub keepalive: Option<Keepalive>,
    /// Dialled connections put their first bytes in the SYN where a cookie is held (see
    /// [`crate::fast_open`]); only for a caller that writes at once and then waits for
    /// [`crate::fast_open::established`].
    pub fast_open_connect: bool,
}

impl Default for SocketOpts {
    fn default() -> Self {
        SocketOpts {
            nodelay: true,
            keepalive: Some(Keepalive::default()),
            fast_open_connect: false,
        }
    }
}

/// Descriptors kept aside from the per-connection budget: listeners, the runtime, logs
/// (a quarter of a small limit).
#[cfg(unix)]
const SPARE_FDS: u64 = 64;

/// Raises the soft descriptor limit to the hard one (idempotent) and returns it. Every
/// serving program calls this at start, whatever `max_connections` says.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The default connection limit: every connection may hold two descriptors (the accepted
/// socket and the one it dials) of the raised limit.
#[cfg(unix)]
pub fn connection_budget() -> usize {
    budget_for(raise_descriptor_limit())
}

/// Connections served at once by default on Windows, which has no descriptor limit to
/// derive it from (sockets are kernel handles, bounded by memory): a laptop's browser
/// and apps stay far below it; `max_connections` sets another.
#[cfg(windows)]
pub const WINDOWS_CONNECTIONS: usize = 4096;

/// The default connection limit (Windows: [`WINDOWS_CONNECTIONS`]).
#[cfg(windows)]
pub fn connection_budget() -> usize {
    WINDOWS_CONNECTIONS
}

/// Connections that `fds` descriptors serve, two each, with some kept aside.
#[cfg(unix)]
fn budget_for(fds: u64) -> usize {
    let budget = fds.saturating_sub(SPARE_FDS.min(fds / 4)) / 2;
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// Applies `opts`; a failed option only warns, the connection goes on.
pub fn configure_socket(sock: SockRef<'_>, opts: &SocketOpts) {
    set_nodelay_or_warn(&sock, opts.nodelay);
    if let Some(ka) = opts.keepalive {
        set_keepalive_or_warn(&sock, &ka);
    }
}

fn set_nodelay_or_warn(sock: &SockRef<'_>, on: bool) {
    if let Err(e) = sock.set_nodelay(on) {
        tracing::warn!("TCP_NODELAY: {e}");
    }
}

fn set_keepalive_or_warn(sock: &SockRef<'_>, ka: &Keepalive) {
    let params = TcpKeepalive::new()
        .with_time(ka.idle)
        .with_interval(ka.interval);
    // Windows sets the probe count itself (10 since Vista): idle + 10 × interval there.
    #[cfg(not(windows))]
    let params = params.with_retries(ka.count);
    if let Err(e) = sock.set_tcp_keepalive(&params) {
        tracing::warn!("SO_KEEPALIVE: {e}");
    }
}

/// RFC 8305 §5: the delay before the next address is tried while one is still pending.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Resolves `host:port` (under `timeout`), or takes a literal address as is.
pub async fn resolve(host: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // The system resolver blocks a thread per lookup, and a lookup that times out here
    // goes on in its thread: a bounded number at once (the permit lives in the thread),
    // so slow names cannot take every blocking thread.
    static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOOKUPS);
    let lookup = async {
        let permit = LOOKUPS.acquire().await.map_err(io::Error::other)?;
        let name = host.to_owned();
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
                .map(|a| a.collect::<Vec<_>>())
        })
        .await
        .map_err(io::Error::other)?
    };
    let addrs: Vec<SocketAddr> = with_timeout("DNS lookup", timeout, lookup).await?;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

/// System resolver lookups at once, per process.
const MAX_LOOKUPS: usize = 32;

/// RFC 8305 §4: alternate the families, starting with the family of the first answer.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut a, mut b): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
        .iter()
        .copied()
        .partition(|x| x.is_ipv6() == first.is_ipv6());
    let mut out = Vec::with_capacity(addrs.len());
    a.reverse();
    b.reverse();
    while !a.is_empty() || !b.is_empty() {
        out.extend(a.pop());
        out.extend(b.pop());
    }
    out
}

/// Connects to the first of `addrs` that answers: attempts start `ATTEMPT_DELAY` apart
/// (at once when the previous one fails), each under its own `timeout`.
pub async fn connect_any(
    addrs: &[SocketAddr],
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<TcpStream> {
    // However many addresses, the whole attempt ends within `timeout`.
    with_timeout("connect", timeout, connect_each(addrs, timeout, opts)).await
}

async fn connect_each(
    addrs: &[SocketAddr],
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<TcpStream> {
    let order = interleave(addrs);
    let mut next = order.iter();
    let mut pending = FuturesUnordered::new();
    let mut last_err = None;
    let fast_open = opts.fast_open_connect;
    loop {
        if let Some(&addr) = next.next() {
            pending.push(async move {
                with_timeout("connect", timeout, open(addr, fast_open))
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))
            });
        }
        if pending.is_empty() {
            return Err(last_err.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no address to connect to")
            }));
        }
        let more = next.len() > 0;
        tokio::select! {
            Some(r) = pending.next() => match r {
                Ok(s) => {
                    configure_socket(SockRef::from(&s), opts);
                    return Ok(s);
                }
                Err(e) => last_err = Some(e),
            },
            _ = tokio::time::sleep(ATTEMPT_DELAY), if more => {}
        }
    }
}

/// One connection attempt; with `fast_open`, one whose SYN may carry the first bytes.
async fn open(addr: SocketAddr, fast_open: bool) -> io::Result<TcpStream> {
    if !fast_open {
        return TcpStream::connect(addr).await;
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Where the option is missing, the connect is the usual one.
    crate::fast_open::on_connect(&socket);
    socket.connect(addr).await
}

/// Accepts one connection. Errors (EMFILE, ENFILE, ENOBUFS…) are logged and retried with
/// exponential backoff up to 1 s, so a full descriptor table never turns into a hot loop.
pub async fn accept_with_backoff(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!("accept: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn connection_budget_leaves_room_for_two_descriptors_each() {
        assert_eq!(budget_for(20_000), 9_968);
        assert_eq!(budget_for(1024), 480);
        assert_eq!(budget_for(48), 18);
        assert_eq!(budget_for(0), 1);
    }

    #[test]
    fn interleaves_families() {
        let v: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "[::3]:1", "1.1.1.1:1", "2.2.2.2:1"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        let got: Vec<String> = interleave(&v).iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            ["[::1]:1", "1.1.1.1:1", "[::2]:1", "2.2.2.2:1", "[::3]:1"]
        );
    }

    #[tokio::test]
    async fn falls_through_to_a_working_address() {
        let good = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let good_addr = good.local_addr().expect("addr");
        // A port that was just free: refused at once.
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("addr");
        drop(dead);
        let s = connect_any(
            &[dead_addr, good_addr],
            Duration::from_secs(5),
            &SocketOpts::default(),
        )
        .await
        .expect("second address works");
        assert_eq!(s.peer_addr().expect("peer"), good_addr);
        assert!(s.nodelay().expect("nodelay"));
        let err = connect_any(&[dead_addr], Duration::from_secs(5), &SocketOpts::default())
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
