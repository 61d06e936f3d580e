//! burrow-local: the laptop end. Takes SOCKS5 and HTTP proxy connections from apps (on the
//! same port, told apart by the first byte) and carries each one, encrypted, to
//! burrow-server.
//!
//! The folder shows the data's way: `serve` tells an app's connection apart and hands it
//! to its `inbound` handshake (SOCKS5, the HTTP proxy, reverse routes, UDP, DNS), which
//! opens a `tunnel` through `outbound` (dial, the plan per server, the servers, the warm
//! pool, the hop through the corporate proxy) to burrow-server; `config` makes the
//! `settings`, `pac` and `tls` serve the hop and the routes, `tools` are doctor and the
//! metrics.
//!
//! `run(settings, listeners, shutdown)` serves every listener (`run_with_reload` also
//! takes the SIGHUP reload); `main` only parses, validates, binds and calls it.

pub mod config;
pub mod hosts;
pub mod inbound;
pub mod outbound;
#[cfg(feature = "pac")]
pub mod pac;
pub mod serve;
pub mod settings;
pub mod system;
pub mod tools;
pub mod tunnel;

use std::sync::Arc;

use burrow_common::accept::{accept_loop, AcceptOpts};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use inbound::dns;
use settings::{Current, Reload, Settings};

/// Serves every listener until `shutdown` is cancelled, then drains open tunnels.
pub async fn run(
    settings: Settings,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_reload(settings, listeners, shutdown, None).await
}

/// One generation of settings at work: the PAC file's first answer, then its refresh,
/// the warm connections and the servers' checks, all until `gen` is cancelled (a reload
/// or the stop). The pools' tasks are returned.
async fn start(
    settings: Settings,
    shutdown: &CancellationToken,
) -> (Arc<Settings>, Vec<tokio::task::JoinHandle<()>>) {
    let gen = shutdown.child_token();
    tracing::info!("{}", settings.rules.summary());
    let network = outbound::network::changes();
    #[cfg(feature = "pac")]
    if let Some(pac) = settings.pac.clone() {
        // The first answer before the first tunnel; then kept current in the background.
        let in_use = match pac.answer().await {
            Ok((text, list)) => {
                tracing::info!("PAC {}: the way to {} is {text:?}", pac.source, pac.url);
                settings.servers.current().outbound.ways.set(list);
                Some(text)
            }
            Err(e) => {
                tracing::warn!("PAC {}: {e}; going DIRECT until it answers", pac.source);
                None
            }
        };
        let ways = settings.servers.current().outbound.ways.clone();
        tokio::spawn(pac.keep(ways, network.subscribe(), gen.clone(), in_use));
    }
    let settings = Arc::new(Settings {
        generation: gen.clone(),
        ..settings
    });
    // Plugin processes first: the pools' connections go through them.
    for p in settings
        .servers
        .list
        .iter()
        .filter_map(|s| s.plugin.clone())
    {
        let program = p.program.clone();
        if let Err(e) = p.start(PLUGIN_READY, gen.clone()).await {
            tracing::error!("{e} (plugin = {program:?}: is it installed and on PATH?)");
        }
    }
    // What kind of server each is, learned before the first app connects.
    if settings.confirm == outbound::plan::Confirm::Auto {
        for srv in &settings.servers.list {
            tokio::spawn(outbound::probe::learn_at_start(
                srv.clone(),
                settings.connect_timeout,
                settings.share_bursts,
            ));
        }
    }
    let warm = settings
        .servers
        .list
        .iter()
        .map(|srv| tokio::spawn(srv.pool.clone().keep(gen.clone())))
        .collect();
    tokio::spawn(
        settings
            .servers
            .clone()
            .watch(settings.connect_timeout, gen.clone()),
    );
    tokio::spawn(outbound::network::watch_network(
        settings.servers.clone(),
        network,
        gen,
    ));
    (settings, warm)
}

/// How long a plugin process is given to accept connections after it starts.
const PLUGIN_READY: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the system's proxy settings are looked at, with `outbound_proxy = "system"`.
const SYSTEM_LOOK: std::time::Duration = std::time::Duration::from_secs(3);

/// On every reload request (SIGHUP; on Windows a change of the config file): the config
/// is read again; one that loads replaces the settings for new connections (servers,
/// routes, proxy settings, timeouts; listen addresses, the DNS forwarder's and the
/// metrics' need a restart), one that does not is refused in one line.
async fn reload_on_request(
    mut asked: burrow_common::reload::Trigger,
    current: Current,
    reload: Reload,
    shutdown: CancellationToken,
) {
    // outbound_proxy = "system": what the system's settings say, looked at every few
    // seconds (another network, the user's own change); a change reads the config again.
    let follows = current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .follows_system
        .clone();
    // The settings are read off the runtime (a registry read, or a gsettings run).
    let look = |host: Option<String>| async move {
        let host = host?;
        tokio::task::spawn_blocking(move || system::outbound_proxy(&host).ok().flatten())
            .await
            .ok()
            .flatten()
    };
    let mut said = look(follows.clone()).await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = asked.next() => if got.is_none() { return },
            _ = tokio::time::sleep(SYSTEM_LOOK), if follows.is_some() => {
                let now = look(follows.clone()).await;
                if now == said {
                    continue;
                }
                tracing::info!("the system's proxy settings now say {now:?}: reading the config again");
                said = now;
            }
        }
        match reload() {
            Ok(next) => {
                let (next, _) = start(next, &shutdown).await;
                let servers: Vec<String> = next.servers.list.iter().map(|s| s.name()).collect();
                let routes = next.routes.len();
                let old = std::mem::replace(
                    &mut *current.write().unwrap_or_else(|p| p.into_inner()),
                    next,
                );
                // The old generation's warm connections and checks stop; its open tunnels go on.
                old.generation.cancel();
                tracing::info!(
                    "config reloaded: servers {servers:?}, {routes} routes (open tunnels go on)"
                );
            }
            Err(e) => tracing::warn!("reload refused (the running config stays): {e}"),
        }
    }
}

/// [`run`], with SIGHUP (Windows: a change of the config file) reading the config again
/// through `reload`.
pub async fn run_with_reload(
    settings: Settings,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
    reload: Option<Reload>,
) -> anyhow::Result<()> {
    // One budget shared by every listener.
    let opts = AcceptOpts {
        limit: Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1))),
        shutdown_grace: settings.shutdown_grace,
        socket: settings.socket,
        inbound: None,
    };
    tokio::spawn(burrow_common::memory::give_back_after_load(
        opts.limit.clone(),
        settings.max_connections.max(1),
        shutdown.clone(),
    ));
    for r in settings.routes.iter().filter(|r| r.insecure) {
        tracing::warn!(
            "route {} → {}: insecure_skip_verify is on, the upstream's certificate is NOT checked",
            r.path,
            r.upstream.url
        );
    }
    for l in &listeners {
        let open = l.local_addr().is_ok_and(|a| !a.ip().is_loopback());
        if open && settings.proxy_auth.is_none() {
            tracing::warn!(
                "listening on {} without proxy_username/proxy_password: anyone who can reach \
                 it can use the tunnel",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
        }
    }
    let (first, warm) = start(settings, &shutdown).await;
    let current: Current = Arc::new(std::sync::RwLock::new(first));
    let now = {
        let current = current.clone();
        move || current.read().unwrap_or_else(|p| p.into_inner()).clone()
    };
    let settings = now();
    if let Some(at) = settings.metrics_listen {
        let listener = TcpListener::bind(at)
            .await
            .map_err(|e| anyhow::anyhow!("metrics on {at}: {e}"))?;
        if let Ok(a) = listener.local_addr() {
            tracing::info!("listening on {a} (metrics)");
            burrow_common::metrics::warn_if_open(a);
        }
        let now = now.clone();
        let render = Arc::new(move || {
            let s = now();
            s.metrics.render() + &s.servers.render()
        });
        tokio::spawn(burrow_common::metrics::serve(
            listener,
            render,
            shutdown.clone(),
        ));
    }
    if let Some((listen, upstream)) = settings.dns.clone() {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("DNS forwarder on {listen}: {e}"))?;
        if !listen.ip().is_loopback() {
            tracing::warn!(
                "DNS forwarder on {listen}: it answers anyone who can reach it, through your \
                 server (an open resolver on this network); bind it to 127.0.0.1 unless \
                 that is meant"
            );
        }
        tokio::spawn(dns::serve(
            current.clone(),
            socket,
            upstream,
            shutdown.clone(),
        ));
    }
    if let Some(reload) = reload {
        use burrow_common::reload::Trigger;
        // Taken before any connection is served: a request from then on is a reload.
        match Trigger::new(settings.config_file.clone()) {
            Ok(asked) => {
                tokio::spawn(reload_on_request(
                    asked,
                    current.clone(),
                    reload,
                    shutdown.clone(),
                ));
            }
            Err(e) => tracing::warn!("no reload on {}: {e}", Trigger::what()),
        }
    }
    // The system's proxy settings point here while we run; given back when we stop (and
    // what a crashed run left, at this start).
    system::recover();
    let system_proxy = match (settings.system_proxy, listeners.first()) {
        (true, Some(l)) => l.local_addr().ok().and_then(|a| {
            let pac = !settings.routes.is_empty() || !settings.bypass.is_empty();
            system::SystemProxy::set(a, pac)
        }),
        _ => None,
    };
    // Given back as soon as the stop begins, not after the drain: Windows ends a
    // program a few seconds after a console close, logoff or shutdown.
    let system_proxy = system_proxy.map(|p| {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            p.restore();
        })
    });
    let loops = listeners.into_iter().map(|listener| {
        let now = now.clone();
        accept_loop(listener, opts.clone(), shutdown.clone(), move |conn| {
            serve::serve(now(), conn)
        })
    });
    futures_util::future::join_all(loops).await;
    if let Some(restored) = system_proxy {
        let _ = restored.await;
    }
    futures_util::future::join_all(warm).await;
    Ok(())
}
