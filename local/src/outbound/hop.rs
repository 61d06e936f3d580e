//! The hop from burrow-local to burrow-server: direct or through a corporate proxy, as
//! raw TCP or dressed as a WebSocket (over TLS for wss).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::proxy::{self, ProxyUrl};
use crate::outbound::tls::TlsTarget;
use burrow_common::mux::MuxStream;
use burrow_common::net::{connect_any, resolve, SocketOpts};
use burrow_common::prefixed::Prefixed;
use burrow_common::ws::{self, WsIo};

mod watch;
use watch::{watch, watching};

/// WebSocket transport settings.
#[derive(Clone, Debug)]
pub struct WsTransport {
    /// Request path, e.g. `/tunnel`.
    pub path: String,
    /// Host header (default: the server's host).
    pub host: Option<String>,
    /// TLS for wss (SNI and verification name inside).
    pub tls: Option<Arc<TlsTarget>>,
    /// Ping interval while idle (none if zero).
    pub ping: Duration,
    /// Tunnels carried at once by one WebSocket, framed as v2ray's Mux.Cool (what
    /// v2ray-plugin's server expects by default); 0: one tunnel per WebSocket.
    pub mux: usize,
}

/// How to reach the server.
#[derive(Clone, Debug, Default)]
pub struct Outbound {
    /// The ways to the server (corporate proxies or direct), shared by every clone.
    pub ways: Arc<Ways>,
    /// WebSocket dressing, if any.
    pub ws: Option<WsTransport>,
}

/// The ways to the server, tried in order until one is reachable: a corporate proxy, or
/// `None` for direct; empty means direct. A PAC file's answer replaces the list as it
/// changes.
#[derive(Debug, Default)]
pub struct Ways {
    list: std::sync::RwLock<Arc<[Option<ProxyUrl>]>>,
    /// Which of the list worked last (tried first next time).
    last_good: std::sync::atomic::AtomicUsize,
}

impl Ways {
    /// A fixed list.
    pub fn new(list: Vec<Option<ProxyUrl>>) -> Ways {
        Ways {
            list: std::sync::RwLock::new(list.into()),
            last_good: Default::default(),
        }
    }

    /// The list as it is now.
    pub fn get(&self) -> Arc<[Option<ProxyUrl>]> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the list (a new PAC answer); the next hop starts with its first entry.
    pub fn set(&self, list: Vec<Option<ProxyUrl>>) {
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = list.into();
        self.last_good
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A plain or TLS stream.
pub enum MaybeTls<S> {
    /// No TLS.
    Plain(S),
    /// TLS made by us.
    Tls(Box<TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// The stream under the TLS, if any.
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(t) => t.get_ref().0,
        }
    }
}

/// The connection to the server, whatever way it goes.
pub enum ServerIo {
    /// Raw TCP (direct or through a proxy).
    Raw(Prefixed<TcpStream>),
    /// A WebSocket over it (TLS for wss).
    Ws(Box<WsIo<MaybeTls<Prefixed<TcpStream>>>>),
    /// One session of a WebSocket shared by several tunnels (Mux.Cool).
    Mux(MuxStream),
}

impl ServerIo {
    /// The TCP connection it rides on alone (to the server, or to the corporate proxy);
    /// none for a session of a shared connection.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ServerIo::Raw(p) => Some(p.get_ref()),
            ServerIo::Ws(ws) => Some(ws.get_ref().get_ref().get_ref()),
            ServerIo::Mux(_) => None,
        }
    }

    /// Watches what is sent from now on: unless the peer's TCP acknowledges it within
    /// `within`, the connection fails with `TimedOut` (TCP_USER_TIMEOUT on Linux,
    /// TCP_MAXRT in whole seconds on Windows) — what a connection that died silently (a
    /// sleep, another network, a NAT that forgot it) does, instead of hanging. `false`
    /// where the system cannot watch.
    pub fn watch_sent(&self, within: Duration) -> bool {
        self.tcp().is_some_and(|t| watch(t, Some(within)))
    }

    /// Whether what is sent is watched (see [`ServerIo::watch_sent`]).
    pub fn watched(&self) -> bool {
        self.tcp().is_some_and(watching)
    }

    /// Waits for the TCP handshake of a connection whose first bytes left in its SYN
    /// (TCP Fast Open): its connect returned at once, and only now does it show whether
    /// the server is there. At once for any other.
    pub async fn established(&self) -> io::Result<()> {
        match self.tcp() {
            Some(t) => burrow_common::fast_open::established(t).await,
            None => Ok(()),
        }
    }

    /// Stops watching (the peer answered): a long tunnel rides out what TCP rides out.
    pub fn unwatch(&self) {
        if let Some(t) = self.tcp() {
            watch(t, None);
        }
    }
}

/// Connects to the server at `host:port` the way `out` says; every step under `timeout`.
pub async fn connect(
    out: &Outbound,
    host: &str,
    port: u16,
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<ServerIo> {
    let base = first_reachable(out, host, port, timeout, opts).await?;
    let Some(w) = &out.ws else {
        return Ok(ServerIo::Raw(base));
    };
    let stream = match &w.tls {
        None => MaybeTls::Plain(base),
        Some(tls) => {
            let s =
                burrow_common::timeout::with_timeout("TLS handshake", timeout, tls.connect(base))
                    .await
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("TLS with {host}:{port}: {e}"))
                    })?;
            MaybeTls::Tls(Box::new(s))
        }
    };
    let host_header = match &w.host {
        Some(h) => h.clone(),
        None if port == 443 || (port == 80 && w.tls.is_none()) => host.to_owned(),
        None => format!("{host}:{port}"),
    };
    let ping = Some(w.ping).filter(|d| !d.is_zero());
    let ws = burrow_common::timeout::with_timeout(
        "WebSocket handshake",
        timeout,
        ws::client(stream, &host_header, &w.path, ping),
    )
    .await?;
    Ok(ServerIo::Ws(Box::new(ws)))
}

/// The hop to the server through the first of `out.ways` that is reachable, starting
/// with the one that worked last: a proxy that cannot be reached (refused, timed out,
/// unresolvable) passes to the next, as browsers do with a PAC file's list, and so does one
/// a PAC named that asked for credentials it may not have; a proxy that answers and
/// refuses (407, 403) is the answer.
async fn first_reachable(
    out: &Outbound,
    host: &str,
    port: u16,
    timeout: Duration,
    opts: &SocketOpts,
) -> io::Result<Prefixed<TcpStream>> {
    use std::sync::atomic::Ordering::Relaxed;
    let ways = out.ways.get();
    let direct = [None];
    let list: &[Option<ProxyUrl>] = if ways.is_empty() { &direct } else { &ways };
    let start = out.ways.last_good.load(Relaxed) % list.len();
    let mut last_err = None;
    // A proxy's connection waits for its answer before anything else is sent.
    let to_proxy = &SocketOpts {
        fast_open_connect: false,
        ..*opts
    };
    for i in (start..list.len()).chain(0..start) {
        let reached = match &list[i] {
            Some(p) => match proxy::reach(p, timeout, to_proxy).await {
                // Credentials kept from a PAC-named proxy: on to the next, as if down.
                Ok(tcp) => match proxy::through(p, tcp, host, port, timeout, to_proxy).await {
                    Err(e) if proxy::Withheld::is(&e) => Err(e),
                    done => Ok(done),
                },
                Err(e) => Err(e),
            },
            None => match resolve(host, port, timeout).await {
                Ok(addrs) => match connect_any(&addrs, timeout, opts).await {
                    Ok(s) => Ok(Ok(Prefixed::new(Bytes::new(), s))),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        };
        match reached {
            Ok(done) => {
                out.ways.last_good.store(i, Relaxed);
                return done;
            }
            Err(e) => {
                if list.len() > 1 {
                    tracing::debug!("{e}; trying the next way to the server");
                }
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no way to the server")))
}

macro_rules! delegate_io {
    ($ty:ident < $($g:ident),* > { $($variant:ident),+ } $(where $($bound:tt)+)?) => {
        impl<$($g),*> AsyncRead for $ty<$($g),*> $(where $($bound)+)? {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_read(cx, buf), )+ }
            }
        }
        impl<$($g),*> AsyncWrite for $ty<$($g),*> $(where $($bound)+)? {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_write(cx, buf), )+ }
            }
            fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_write_vectored(cx, bufs), )+ }
            }
            fn is_write_vectored(&self) -> bool {
                match self { $( $ty::$variant(s) => s.is_write_vectored(), )+ }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_flush(cx), )+ }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_shutdown(cx), )+ }
            }
        }
    };
}

delegate_io!(MaybeTls<S> { Plain, Tls } where S: AsyncRead + AsyncWrite + Unpin);
delegate_io!(ServerIo<> { Raw, Ws, Mux });

/// How a pool reaches the server (what a fresh connection needs).
#[derive(Clone, Debug)]
pub struct Dial {
    /// Direct or through a proxy, raw or WebSocket.
    pub outbound: Outbound,
    /// The server's host.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// Per connection attempt.
    pub timeout: Duration,
    /// Socket options.
    pub socket: SocketOpts,
    /// Counts set-up times and failures.
    pub metrics: Arc<crate::tools::metrics::Metrics>,
}

impl Dial {
    /// A fresh connection to the server.
    pub async fn connect(&self) -> std::io::Result<ServerIo> {
        let opts = SocketOpts {
            fast_open_connect: false,
            ..self.socket
        };
        self.connect_with(&opts).await
    }

    /// A fresh connection whose first bytes are written at once: on a direct hop they
    /// may ride its SYN (TCP Fast Open, `fast_open`), and then the connection is only
    /// known to be up after [`ServerIo::established`].
    pub async fn connect_sending(&self) -> std::io::Result<ServerIo> {
        self.connect_with(&self.socket).await
    }

    async fn connect_with(&self, opts: &SocketOpts) -> std::io::Result<ServerIo> {
        let started = std::time::Instant::now();
        let made = connect(&self.outbound, &self.host, self.port, self.timeout, opts).await;
        match &made {
            Ok(_) => self.metrics.connected(started.elapsed()),
            Err(e) => self.metrics.failed(e),
        }
        made
    }
}
