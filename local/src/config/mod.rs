//! CLI and TOML config → validated `Settings`. Precedence: CLI > env > file > defaults.
//!
//! `cli` (the command line) and `raw` (the file as written) are read by [`load`], which
//! validates them into the run-time [`Settings`] with the help of `servers`, `hop` and
//! `routes`; every default is in `defaults`.

use std::net::SocketAddr;
use std::sync::Arc;

use burrow_common::config::{check_timeouts, listen_addr, read_config, with_port};
use burrow_common::net::{Keepalive, SocketOpts};
use burrow_common::TargetAddr;

use crate::outbound::hop::{Outbound, Ways};
use crate::outbound::plan::Confirm;
use crate::outbound::pool::{Dial, Pool, PoolConfig};
use crate::outbound::servers::{Server, Servers};
use crate::settings::Settings;
use crate::settings::UdpTransport;

mod cli;
pub mod defaults;
mod hop;
pub mod plugin;
mod raw;
mod routes;
mod servers;

pub use cli::{Cli, Command};
use hop::outbound;
use plugin::Plugin;
pub use raw::*;
use routes::{bypass, routes, rules};
use servers::server_entries;

/// A validated local: where to listen and how to serve.
#[derive(Debug)]
pub struct Loaded {
    pub listen: Vec<SocketAddr>,
    pub settings: Settings,
    /// Said once logging is up: settings that work but weaken what burrow promises.
    pub warnings: Vec<String>,
}

/// A shadowsocks-rust / -libev client `config.json`, read as it is.
const SHADOWSOCKS_KEYS: &[burrow_common::config::JsonKey] = &[
    ("server", "server", false),
    // sslocal's list of servers: each entry a server of ours, tried in order.
    ("servers", "server", false),
    ("server_port", "server_port", false),
    ("password", "password", false),
    ("method", "method", false),
    ("local_address", "local_address", false),
    ("local_port", "local_port", false),
    ("timeout", "idle_timeout", true),
    ("no_delay", "no_delay", false),
    ("fast_open", "fast_open", false),
    ("plugin", "plugin", false),
    ("plugin_opts", "plugin_opts", false),
];

/// The config file: `-c`, else (on Windows, where users look for it)
/// `%APPDATA%\burrow\local.toml` when it exists.
pub fn config_path(cli: &Cli) -> Option<std::path::PathBuf> {
    if let Some(p) = &cli.config {
        return Some(p.clone());
    }
    if !cfg!(windows) {
        return None;
    }
    let p = std::path::PathBuf::from(std::env::var_os("APPDATA")?)
        .join("burrow")
        .join("local.toml");
    p.is_file().then_some(p)
}

/// Merges CLI, environment (through clap) and file; every error is one line.
pub fn load(cli: &Cli) -> Result<Loaded, String> {
    let config_file = config_path(cli);
    let (file, notes): (RawConfig, Vec<String>) = match &config_file {
        Some(p) => read_config(p, SHADOWSOCKS_KEYS)?,
        None => (RawConfig::default(), Vec::new()),
    };

    let listen_texts = if !cli.local_addr.is_empty() {
        cli.local_addr.clone()
    } else if let Some(list) = file.listen.clone().filter(|l| !l.is_empty()) {
        list
    } else {
        vec![with_port(
            file.local_address
                .as_deref()
                .unwrap_or(defaults::LOCAL_ADDRESS),
            cli.listen_port
                .or(file.local_port)
                .unwrap_or(defaults::LOCAL_PORT),
        )]
    };
    let listen = listen_texts
        .iter()
        .map(|t| listen_addr("local address", t))
        .collect::<Result<Vec<_>, _>>()?;

    let mut warnings: Vec<String> = notes;
    let entries = server_entries(cli, &file, &mut warnings)?;
    // outbound_proxy = "system": the way is re-read while running (see `follows_system`).
    let says_system = |t: &str| t.trim().eq_ignore_ascii_case("system");
    let follows_system = match (&cli.outbound_proxy, &file.outbound_proxy) {
        (Some(t), _) => says_system(t),
        (None, Some(list)) => matches!(list.to_vec().as_slice(), [one] if says_system(one)),
        (None, None) => false,
    }
    .then(|| entries.first().map(|(host, ..)| host.clone()))
    .flatten();
    let proxy_auth = match (file.proxy_username.clone(), file.proxy_password.clone()) {
        (Some(u), Some(p)) if !u.is_empty() && !p.expose().is_empty() => Some((u, p)),
        (None, None) => None,
        _ => return Err("proxy_username and proxy_password go together, both non-empty".into()),
    };
    let keepalive = file
        .keepalive
        .map(|idle| Keepalive {
            idle,
            // A short idle time asks for a quick verdict: probes a quarter of it apart.
            interval: (idle / 4).clamp(
                std::time::Duration::from_secs(1),
                Keepalive::default().interval,
            ),
            ..Keepalive::default()
        })
        .unwrap_or_default();
    let routes = routes(cli, &file.route)?;
    let connect_timeout = file.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT);
    let socket = SocketOpts {
        nodelay: file.no_delay.unwrap_or(true),
        keepalive: Some(keepalive),
        // Only the dial to a server asks (below): to targets, nothing is sent first.
        fast_open_connect: false,
    };
    let fast_open = file.fast_open.unwrap_or(true);
    let warm = PoolConfig {
        max: file.warm_connections.unwrap_or(defaults::WARM_CONNECTIONS),
        max_age: file.warm_max_age.unwrap_or(defaults::WARM_MAX_AGE),
        idle_after: file.warm_idle_after.unwrap_or(defaults::WARM_IDLE_AFTER),
    };
    // Each server's way; a PAC file (asked about the first) decides for all of them.
    let mut list = Vec::with_capacity(entries.len());
    let mut pac = None;
    let mut shared_ways = None;
    let mut metrics = None;
    for (host, port, key, entry) in entries {
        // An entry's own transport and proxy stand in for the top-level ones.
        let mut own = file.clone();
        if entry.transport.is_some() {
            own.transport = entry.transport.clone();
        }
        if entry.outbound_proxy.is_some() {
            own.outbound_proxy = entry.outbound_proxy.clone();
        }
        let plugin = match entry.plugin.as_ref().or(file.plugin.as_ref()) {
            Some(name) => {
                let opts = match &entry.plugin {
                    Some(_) => entry.plugin_opts.as_deref(),
                    None => file.plugin_opts.as_deref(),
                };
                Some(plugin::plugin(name, opts, (&host, port))?)
            }
            None => None,
        };
        if let Some(Plugin::V2ray {
            transport,
            websocket,
        }) = &plugin
        {
            own.transport = Some((*transport).to_owned());
            own.websocket = Some(websocket.clone());
        }
        let (mut outbound, mut this_pac) = outbound(cli, &own, (&host, port))?;
        // A plugin process makes the hop itself: it is reached directly, as raw TCP.
        let process = match plugin {
            Some(Plugin::Process(p)) => {
                outbound = Outbound {
                    ways: Arc::new(Ways::new(vec![None])),
                    ws: None,
                };
                this_pac = None;
                Some(p)
            }
            _ => None,
        };
        if pac.is_none() {
            pac = this_pac;
        }
        match &shared_ways {
            None => shared_ways = Some(outbound.ways.clone()),
            Some(w) if pac.is_some() && entry.outbound_proxy.is_none() => outbound.ways = w.clone(),
            Some(_) => {}
        }
        let m = metrics
            .get_or_insert_with(|| {
                Arc::new(crate::tools::metrics::Metrics::new(match &outbound.ws {
                    None => "tcp",
                    Some(w) if w.tls.is_some() => "wss",
                    Some(_) => "ws",
                }))
            })
            .clone();
        let (dial_host, dial_port) = match &process {
            Some(p) => (p.local.ip().to_string(), p.local.port()),
            None => (host.clone(), port),
        };
        let dial = Dial {
            metrics: m,
            outbound: outbound.clone(),
            host: dial_host,
            port: dial_port,
            timeout: connect_timeout,
            // A plugin process beside burrow-local gains nothing from it.
            socket: SocketOpts {
                fast_open_connect: fast_open && process.is_none(),
                ..socket
            },
        };
        // The server's salts are checked too: a recorded server stream played back at
        // us is refused (SIP022 by time; SIP004 the last 64 Ki to 128 Ki salts, 460 KB
        // at most).
        let salts = Arc::new(if key.method().is_2022() {
            burrow_common::replay::ReplayFilter::sip022()
        } else {
            burrow_common::replay::ReplayFilter::new(1 << 16)
        });
        list.push(Arc::new(Server::new(
            host,
            port,
            key,
            outbound,
            Pool::new(dial, warm),
            Some(salts),
            process,
        )));
    }
    let metrics = metrics.ok_or("no server")?;
    let servers = Arc::new(Servers::new(
        list,
        file.server_check.unwrap_or(defaults::SERVER_CHECK),
    ));
    let settings = Settings {
        generation: Default::default(),
        servers,
        routes,
        host_names: file
            .host_names
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        bypass: bypass(&file.bypass)?,
        rules: std::sync::Arc::new(rules(
            &file.rule,
            &file.bypass,
            file.acl.as_deref(),
            std::env::var("BURROW_PRIVATE_TARGETS")
                .ok()
                .or(file.private_targets.clone()),
        )?),
        udp_transport: UdpTransport::parse(file.udp_transport.as_deref().unwrap_or("auto"))?,
        metrics,
        metrics_listen: cli
            .metrics
            .as_ref()
            .or(file.metrics.as_ref())
            .map(|m| listen_addr("metrics", m))
            .transpose()?,
        dns: match cli.dns.as_ref().or(file.dns.as_ref()) {
            None => None,
            Some(at) => {
                let upstream = file
                    .dns_upstream
                    .as_deref()
                    .unwrap_or(defaults::DNS_UPSTREAM);
                let upstream = upstream
                    .parse::<TargetAddr>()
                    .map_err(|_| format!("dns_upstream {upstream:?}: expected host:port"))?;
                Some((listen_addr("dns", at)?, upstream))
            }
        },
        pac,
        proxy_auth,
        handshake_timeout: file
            .handshake_timeout
            .unwrap_or(defaults::HANDSHAKE_TIMEOUT),
        connect_timeout,
        idle_timeout: file.idle_timeout.unwrap_or(defaults::IDLE_TIMEOUT),
        confirm: match (&file.confirm_connect, cli.no_confirm) {
            (_, true) => Confirm::Never,
            (Some(c), false) => c.resolve()?,
            (None, false) => Confirm::Auto,
        },
        share_bursts: file.share_bursts.unwrap_or(true),
        max_connections: file
            .max_connections
            .unwrap_or_else(burrow_common::net::connection_budget)
            .max(1),
        shutdown_grace: file.shutdown_grace.unwrap_or(defaults::SHUTDOWN_GRACE),
        socket,
        config_file,
        follows_system,
        system_proxy: cli.system_proxy || file.system_proxy.unwrap_or(false),
    };
    check_timeouts(&[
        ("handshake_timeout", settings.handshake_timeout),
        ("connect_timeout", settings.connect_timeout),
        ("idle_timeout", settings.idle_timeout),
    ])?;
    if file
        .websocket
        .as_ref()
        .is_some_and(|w| w.insecure_skip_verify)
    {
        warnings.push(
            "[websocket] insecure_skip_verify is on: the wss hop's certificate is NOT checked, \
             so anyone on the path can stand in for the server's TLS"
                .into(),
        );
    }
    Ok(Loaded {
        listen,
        settings,
        warnings,
    })
}
