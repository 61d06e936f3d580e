//! CLI and TOML config → validated `Settings`. Precedence: CLI > env > file > defaults.
//!
//! `cli` (the command line) and `raw` (the file as written) are read by [`load`] into
//! the run-time [`Settings`]; `url` gives clients their ss:// URLs; every default is in
//! `defaults`.

use std::net::SocketAddr;
use std::sync::Arc;

use burrow_common::plugin::Process;

use burrow_common::config::{
    check_timeouts, listen_addr, master_key, read_config, with_port, Secret,
};
use burrow_common::net::{Keepalive, SocketOpts};

use crate::policy::{Cidr, Policy};
use crate::Settings;

mod cli;
pub mod defaults;
mod raw;
mod url;

pub use cli::{Cli, Command};
pub use raw::{RawConfig, RawUser};
pub use url::{genkey, user_url};

/// A validated server: where to listen and how to serve.
#[derive(Debug)]
pub struct Loaded {
    pub listen: SocketAddr,
    pub ws_listen: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub settings: Settings,
    /// Said once logging is up: settings that work but weaken what burrow promises.
    pub warnings: Vec<String>,
}

/// A shadowsocks-rust / -libev server `config.json`, read as it is.
const SHADOWSOCKS_KEYS: &[burrow_common::config::JsonKey] = &[
    ("server", "server", false),
    ("server_port", "server_port", false),
    ("password", "password", false),
    ("method", "method", false),
    ("timeout", "idle_timeout", true),
    ("no_delay", "no_delay", false),
    ("fast_open", "fast_open", false),
    ("udp_timeout", "udp_timeout", true),
    ("udp_max_associations", "max_udp_sessions", false),
    ("users", "user", false),
    ("plugin", "plugin", false),
    ("plugin_opts", "plugin_opts", false),
];

/// Merges CLI, environment (through clap) and file; every error is one line.
pub fn load(cli: &Cli) -> Result<Loaded, String> {
    let (file, notes): (RawConfig, Vec<String>) = match &cli.config {
        Some(p) => read_config(p, SHADOWSOCKS_KEYS)?,
        None => (RawConfig::default(), Vec::new()),
    };
    let port = file.server_port.unwrap_or(defaults::PORT);
    let listen_text = match (&cli.server_addr, &file.server) {
        (Some(a), _) => a.clone(),
        (None, Some(h)) => with_port(h, port),
        (None, None) => format!("0.0.0.0:{port}"),
    };
    let public = listen_addr("listen address", &listen_text)?;
    // A SIP003 plugin takes the listen address (SS_REMOTE_*) and hands tunnels on to a
    // loopback port of ours (SS_LOCAL_*); UDP stays on the listen address.
    let plugin = match file.plugin.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => {
            let local = Process::free_local().map_err(|e| format!("plugin {name}: {e}"))?;
            let host = public.ip().to_string();
            Some(Arc::new(Process::new(
                name,
                file.plugin_opts.as_deref().filter(|o| !o.is_empty()),
                local,
                (&host, public.port()),
            )))
        }
        _ => None,
    };
    let listen = plugin.as_ref().map_or(public, |p| p.local);

    let method = cli
        .shared
        .method
        .clone()
        .or(file.method)
        .unwrap_or_else(|| defaults::METHOD.into());
    let password = cli
        .shared
        .password
        .clone()
        .map(Secret::new)
        .or(file.password);
    let key = cli.shared.key.clone().map(Secret::new).or(file.key);
    // A key or password given on the command line replaces both file fields.
    let (password, key) = match (&cli.shared.key, &cli.shared.password) {
        (Some(_), _) => (None, key),
        (None, Some(_)) => (password, None),
        (None, None) => (password, key),
    };
    let mut warnings: Vec<String> = notes;
    let users = if file.user.is_empty() {
        warnings.extend(burrow_common::config::weak_password(
            &method,
            password.as_ref(),
        ));
        vec![(
            "-".to_owned(),
            master_key(&method, password.as_ref(), key.as_ref())?,
            None,
        )]
    } else {
        if password.is_some() || key.is_some() {
            return Err(
                "give either password/key or [[user]] entries, not both (a user needs a name)"
                    .into(),
            );
        }
        users(&method, &file.user, &mut warnings)?
    };
    let key = users[0].1.clone();

    let allow = file
        .allow
        .unwrap_or_default()
        .iter()
        .map(|c| c.parse::<Cidr>())
        .collect::<Result<Vec<_>, _>>()?;
    let max_connections = file
        .max_connections
        .unwrap_or_else(burrow_common::net::connection_budget);
    if max_connections == 0 {
        return Err("max_connections must be at least 1".into());
    }
    let keepalive = file
        .keepalive
        .map(|idle| Keepalive {
            idle,
            ..Keepalive::default()
        })
        .unwrap_or_default();
    let settings = Settings {
        key,
        users: std::sync::Arc::new(crate::users::Users::new(users)),
        user_grace: file.user_grace.unwrap_or(defaults::USER_GRACE),
        policy: Policy {
            allow_private: cli.allow_private || file.allow_private.unwrap_or(false),
            allow,
            own: Some(public),
            ..Policy::default()
        },
        handshake_timeout: file
            .handshake_timeout
            .unwrap_or(defaults::HANDSHAKE_TIMEOUT),
        connect_timeout: file.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT),
        idle_timeout: file.idle_timeout.unwrap_or(defaults::IDLE_TIMEOUT),
        max_connections,
        max_handshakes: file
            .max_handshakes
            .unwrap_or(max_connections / 2)
            .clamp(1, max_connections),
        shutdown_grace: file.shutdown_grace.unwrap_or(defaults::SHUTDOWN_GRACE),
        replay_filter: file.replay_filter.unwrap_or(true),
        ws_path: file
            .ws_path
            .clone()
            .unwrap_or_else(|| defaults::WS_PATH.into()),
        ws_ping: file.ws_ping.unwrap_or(defaults::WS_PING),
        udp: !cli.no_udp && file.udp.unwrap_or(true),
        block_quic: file.block_quic.unwrap_or(false),
        udp_timeout: file.udp_timeout.unwrap_or(defaults::UDP_TIMEOUT),
        max_udp_sessions: file
            .max_udp_sessions
            .unwrap_or(defaults::MAX_UDP_SESSIONS)
            .max(1),
        socket: SocketOpts {
            nodelay: file.no_delay.unwrap_or(true),
            keepalive: Some(keepalive),
            // Its dials to targets send nothing first; the listeners take SYN data
            // (`fast_open`).
            fast_open_connect: false,
        },
        fast_open: file.fast_open.unwrap_or(true),
        plugin,
    };
    check_timeouts(&[
        ("handshake_timeout", settings.handshake_timeout),
        ("connect_timeout", settings.connect_timeout),
        ("idle_timeout", settings.idle_timeout),
        ("udp_timeout", settings.udp_timeout),
    ])?;
    if !settings.ws_path.starts_with('/') {
        return Err(format!("ws_path {:?} must start with /", settings.ws_path));
    }
    let addr = |what: &str, t: Option<&String>| t.map(|t| listen_addr(what, t)).transpose();
    let ws_listen = addr(
        "ws_listen",
        cli.ws_listen.as_ref().or(file.ws_listen.as_ref()),
    )?;
    let metrics = addr("metrics", cli.metrics.as_ref().or(file.metrics.as_ref()))?;
    Ok(Loaded {
        listen,
        ws_listen,
        metrics,
        settings,
        warnings,
    })
}

/// The `[[user]]` entries, checked: names non-empty and distinct, keys valid and distinct.
fn users(
    method: &str,
    raw: &[RawUser],
    warnings: &mut Vec<String>,
) -> Result<Vec<crate::users::Spec>, String> {
    let mut out: Vec<crate::users::Spec> = Vec::with_capacity(raw.len());
    for u in raw {
        let name = u.name.trim();
        if name.is_empty() || name == "-" || name.contains(['"', '\\', '\n']) {
            return Err(format!("[[user]] name {:?}: give a plain name", u.name));
        }
        let key = master_key(method, u.password.as_ref(), u.key.as_ref())
            .map_err(|e| format!("[[user]] {name}: {e}"))?;
        if let Some((other, _, _)) = out.iter().find(|(n, k, _)| n == name || *k == key) {
            return Err(format!(
                "[[user]] {name}: same name or key as {other} (each user needs their own)"
            ));
        }
        warnings.extend(
            burrow_common::config::weak_password(method, u.password.as_ref())
                .into_iter()
                .map(|w| format!("[[user]] {name}: {w}")),
        );
        out.push((name.to_owned(), key, u.max_connections.filter(|c| *c > 0)));
    }
    Ok(out)
}
