//! burrow-server: accepts Shadowsocks AEAD tunnels and dials their targets.
//!
//! `run(settings, listeners, shutdown)`: the accept loops
//! (permit → accept → spawn `serve` in a span) with graceful drain on shutdown. `main`
//! only parses, validates, binds and calls it.

pub mod config;
pub mod dial;
pub mod handshake;
pub mod metrics;
mod mux;
pub mod policy;
pub mod serve;
mod tunnel;
pub mod udp;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use burrow_common::accept::{accept_loop, AcceptOpts};
use burrow_common::net::SocketOpts;
use burrow_common::replay::ReplayFilter;
use burrow_common::MasterKey;
use metrics::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use policy::Policy;

/// Everything the server needs at run time, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The key of the first user (the only one without `[[user]]`).
    pub key: MasterKey,
    /// Everyone whose key opens a tunnel (replaced on reload).
    pub users: Arc<users::Users>,
    /// A removed user's tunnels close this long after a reload.
    pub user_grace: Duration,
    /// Which targets may be dialled.
    pub policy: Policy,
    /// A whole first request must arrive within this (jittered ±10 %); bad data is drained until then.
    pub handshake_timeout: Duration,
    /// Per connection attempt to a target.
    pub connect_timeout: Duration,
    /// A tunnel with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most, all listeners together; further ones wait in the listen
    /// backlog.
    pub max_connections: usize,
    /// Connections still in their handshake at most (within `max_connections`); one
    /// past it is closed at once.
    pub max_handshakes: usize,
    /// How long open tunnels may drain after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// SIP004 replay filter (salts remembered).
    pub replay_filter: bool,
    /// Options for accepted and dialled sockets.
    pub socket: SocketOpts,
    /// The listeners take a new connection's first bytes in its SYN (TCP Fast Open).
    pub fast_open: bool,
    /// Path of the WebSocket listener.
    pub ws_path: String,
    /// Ping interval on idle WebSocket tunnels.
    pub ws_ping: Duration,
    /// The Shadowsocks UDP relay on the listen port.
    pub udp: bool,
    /// Refuse UDP to port 443 (QUIC).
    pub block_quic: bool,
    /// A UDP session idle this long is freed.
    pub udp_timeout: Duration,
    /// UDP sessions open at most.
    pub max_udp_sessions: usize,
    /// A SIP003 plugin process in front of the listener (the UDP relay then binds the
    /// plugin's public address).
    pub plugin: Option<Arc<burrow_common::plugin::Process>>,
}

/// SIP004 salts remembered (per generation of the replay filter; 3.6 MB each at most).
const SIP004_SALTS: usize = 1 << 20;

/// How often the host's interface addresses are read again.
const HOST_ADDRS_REFRESH: Duration = Duration::from_secs(30);

/// State shared by every connection.
pub struct Shared {
    /// The settings.
    pub settings: Settings,
    /// Salts seen recently, if the filter is on.
    pub replay: Option<ReplayFilter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Permits for connections still in their handshake.
    pub handshakes: tokio::sync::Semaphore,
    /// Cancelled when the server stops.
    pub shutdown: CancellationToken,
}

/// Re-reads the users on every reload request — SIGHUP; on Windows a change of
/// `config_file` — (until `shutdown`): `load` reads and checks the
/// config again; one that does not load is refused in one line and the running users
/// stay. Users added or changed count for new tunnels at once; a removed user's open
/// tunnels close `grace` later.
pub async fn reload_on_request<F>(
    users: Arc<users::Users>,
    grace: Duration,
    config_file: Option<std::path::PathBuf>,
    load: F,
    shutdown: CancellationToken,
) where
    F: Fn() -> Result<Vec<users::Spec>, String>,
{
    use burrow_common::reload::Trigger;
    let mut asked = match Trigger::new(config_file) {
        Ok(t) => t,
        Err(e) => return tracing::warn!("no reload on {}: {e}", Trigger::what()),
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = asked.next() => if got.is_none() { return },
        }
        let method = users.get().first().map(|u| u.key.method());
        match load() {
            Ok(next) if next.first().map(|(_, k, _)| k.method()) != method => tracing::warn!(
                "reload refused (the running config stays): the method changed, which needs a restart"
            ),
            Ok(next) => {
                let (added, changed, removed) = users.replace(next, grace);
                tracing::info!(
                    "config reloaded: users added {added:?}, changed {changed:?}, removed {removed:?} \
                     (open tunnels of changed or removed users close in {})",
                    format!("{grace:?}")
                );
            }
            Err(e) => tracing::warn!("reload refused (the running config stays): {e}"),
        }
    }
}

/// The sockets the server serves, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Shadowsocks tunnels (and, on the same address, the UDP relay).
    pub tcp: TcpListener,
    /// Tunnels dressed as WebSockets (`ws_listen`).
    pub ws: Option<TcpListener>,
    /// The metrics endpoint (`metrics_listen`).
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// The Shadowsocks listener alone.
    pub fn tcp(tcp: TcpListener) -> Self {
        Listeners {
            tcp,
            ws: None,
            metrics: None,
        }
    }
}

/// Asks the tunnel listeners to take data in SYNs, and says once when the system will
/// not let them.
fn take_syn_data(tcp: &TcpListener, ws: Option<&TcpListener>) {
    use burrow_common::fast_open;
    let asked = fast_open::listen(tcp) & ws.is_none_or(fast_open::listen);
    match fast_open::system_accepts() {
        Some(false) if asked => tracing::info!(
            "TCP Fast Open: this system takes no data in a SYN (net.ipv4.tcp_fastopen has no \
             bit 2); `sysctl -w net.ipv4.tcp_fastopen=3` lets a new tunnel's first bytes \
             come with its SYN, a round trip sooner"
        ),
        _ if !asked => tracing::debug!("TCP Fast Open is not available here"),
        _ => {}
    }
}

/// Serves the listeners until `shutdown` is cancelled, then drains open tunnels for up to
/// `shutdown_grace` and returns.
pub async fn run(
    mut settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Listeners {
        tcp: listener,
        ws: ws_listener,
        metrics: metrics_listener,
    } = listeners;
    if settings.fast_open {
        take_syn_data(&listener, ws_listener.as_ref());
    }
    // The address as bound (a port of 0 is chosen now) is the one never to dial.
    if let Ok(bound) = listener.local_addr() {
        settings.policy.own = Some(bound);
    }
    // Behind a plugin, its public address is ours, and the UDP relay's.
    let udp_at = match &settings.plugin {
        Some(p) => {
            let public = format!("{}:{}", p.remote.0, p.remote.1).parse().ok();
            settings.policy.own = public.or(settings.policy.own);
            p.clone()
                .start(Duration::from_secs(10), shutdown.clone())
                .await?;
            public
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    // The host's own addresses, now and every 30 s while serving.
    let host = settings.policy.host.clone();
    if let Err(e) = host.refresh() {
        tracing::warn!("cannot list this host's addresses (they are not refused as targets): {e}");
    }
    let refresh = {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(HOST_ADDRS_REFRESH) => {
                        if let Err(e) = host.refresh() {
                            tracing::debug!("listing this host's addresses: {e}");
                        }
                    }
                }
            }
        }
    };
    let endpoint = {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        let users = settings.users.clone();
        async move {
            if let Some(l) = metrics_listener {
                metrics::serve(l, metrics, users, shutdown).await;
            }
        }
    };
    // One budget for every listener; handshakes have their own, smaller cap within it.
    let opts = AcceptOpts {
        limit: Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1))),
        shutdown_grace: settings.shutdown_grace,
        socket: settings.socket,
        inbound: Some("tunnel"),
    };
    tokio::spawn(burrow_common::memory::give_back_after_load(
        opts.limit.clone(),
        settings.max_connections.max(1),
        shutdown.clone(),
    ));
    let shared = Arc::new(Shared {
        // SIP022 requires its salt set whatever the config says; `replay_filter = false`
        // switches off the SIP004 filter only.
        replay: if settings.key.method().is_2022() {
            Some(ReplayFilter::sip022())
        } else {
            settings
                .replay_filter
                .then(|| ReplayFilter::new(SIP004_SALTS))
        },
        handshakes: tokio::sync::Semaphore::new(settings.max_handshakes.max(1)),
        shutdown: shutdown.clone(),
        settings,
        metrics: metrics.clone(),
    });
    // The UDP relay on the same address as the TCP listener.
    let udp = {
        let shared = shared.clone();
        let bound = udp_at.map_or_else(|| listener.local_addr(), Ok);
        async move {
            if !shared.settings.udp {
                return;
            }
            let socket = match bound {
                Ok(a) => tokio::net::UdpSocket::bind(a).await.map(|s| (a, s)),
                Err(e) => Err(e),
            };
            match socket {
                // Said by the relay's thread once it runs there.
                Ok((_, s)) => udp::relay_on_own_thread(shared, s).await,
                Err(e) => tracing::warn!("no UDP relay (udp = false to say so): {e}"),
            }
        }
    };
    let tcp = accept_loop(listener, opts.clone(), shutdown.clone(), |conn| {
        serve::serve(shared.clone(), conn)
    });
    let ws = async {
        let Some(listener) = ws_listener else { return };
        let opts = AcceptOpts {
            inbound: Some("websocket"),
            ..opts.clone()
        };
        accept_loop(listener, opts, shutdown, |conn| {
            serve::serve_websocket(shared.clone(), conn)
        })
        .await
    };
    tokio::join!(tcp, ws, udp, endpoint, refresh);
    Ok(())
}
