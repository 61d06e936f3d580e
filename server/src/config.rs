//! CLI and TOML config → validated `Settings`. Precedence: CLI > env > file > defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use burrow_common::aead::Method;
use burrow_common::config::{
    check_timeouts, de_duration, listen_addr, master_key, read_config, with_port, Secret,
    SharedArgs,
};
use burrow_common::net::{Keepalive, SocketOpts};
use clap::{Parser, Subcommand};
use serde::Deserialize;

use crate::policy::{Cidr, Policy};
use crate::Settings;

/// burrow-server: the VPS end of a burrow (Shadowsocks AEAD) tunnel.
#[derive(Parser, Debug)]
#[command(name = "burrow-server", version, about)]
pub struct Cli {
    /// TOML config file (see configs/server.toml).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Listen address, host:port.
    #[arg(short = 's', long = "server-addr")]
    pub server_addr: Option<String>,
    #[command(flatten)]
    pub shared: SharedArgs,
    /// Also accept tunnels dressed as WebSocket on this address (plain ws; put nginx or a
    /// CDN in front for TLS).
    #[arg(long = "ws-listen", value_name = "ADDR")]
    pub ws_listen: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given).
    #[arg(long = "metrics", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Dial loopback, private, link-local and metadata addresses too.
    #[arg(long = "allow-private")]
    pub allow_private: bool,
    /// No UDP relay on the listen port (UDP over the TCP tunnel stays).
    #[arg(long = "no-udp")]
    pub no_udp: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a fresh random key and the matching ss:// URL.
    Genkey {
        /// Cipher the key is for.
        #[arg(
            short = 'm',
            long = "method",
            default_value = "2022-blake3-chacha20-poly1305"
        )]
        method: String,
        /// Host:port to put in the printed URL.
        #[arg(long = "server", default_value = "your.vps.example:8388")]
        server: String,
    },
    /// What the running server says at its metrics endpoint (`metrics` in the config, or
    /// --metrics), printed for a person: connections, bytes, refusals, UDP, users.
    Status,
    /// Print a user's ss:// URL (the one user of a config without [[user]] when no name
    /// is given), and with --qr a QR code that phone Shadowsocks apps scan.
    Url {
        /// The user's name, as in [[user]].
        user: Option<String>,
        /// The host phones reach the server at (default: the listen address, unless it
        /// is 0.0.0.0 or ::).
        #[arg(long)]
        host: Option<String>,
        /// Also print the URL as a QR code.
        #[arg(long)]
        qr: bool,
    },
}

/// The config file; every field optional, unknown fields refused.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listen address: `0.0.0.0` (with `server_port`) or `0.0.0.0:8388`.
    pub server: Option<String>,
    pub server_port: Option<u16>,
    pub password: Option<Secret>,
    pub key: Option<Secret>,
    pub method: Option<String>,
    pub allow_private: Option<bool>,
    pub allow: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_duration")]
    pub handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub shutdown_grace: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub keepalive: Option<Duration>,
    pub max_connections: Option<usize>,
    /// Connections in their handshake at most (default: half of max_connections).
    pub max_handshakes: Option<usize>,
    pub replay_filter: Option<bool>,
    pub no_delay: Option<bool>,
    pub ws_listen: Option<String>,
    pub ws_path: Option<String>,
    pub metrics: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub ws_ping: Option<Duration>,
    /// The Shadowsocks UDP relay on the listen port (default on).
    pub udp: Option<bool>,
    /// Refuse UDP to port 443 (QUIC), so that browsers fall back to TCP.
    pub block_quic: Option<bool>,
    /// A UDP session idle this long is freed.
    #[serde(default, deserialize_with = "de_duration")]
    pub udp_timeout: Option<Duration>,
    /// UDP sessions open at most (each holds its sockets and a 64 KiB buffer).
    pub max_udp_sessions: Option<usize>,
    /// Several users on this port, each with a name and a password or key.
    #[serde(default)]
    pub user: Vec<RawUser>,
    /// A removed user's open tunnels close this long after a reload.
    #[serde(default, deserialize_with = "de_duration")]
    pub user_grace: Option<Duration>,
}

/// `[[user]]`: a name and a password (SIP004) or key (SIP022, base64).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password: Option<Secret>,
    pub key: Option<Secret>,
    /// Tunnels (and UDP sessions) open at once at most.
    pub max_connections: Option<usize>,
}

/// Defaults, all in one place.
pub mod defaults {
    use std::time::Duration;
    pub const METHOD: &str = "chacha20-ietf-poly1305";
    pub const PORT: u16 = 8388;
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// shadowsocks-rust's `udp_timeout`.
    pub const UDP_TIMEOUT: Duration = Duration::from_secs(300);
    pub const MAX_UDP_SESSIONS: usize = 512;
    /// A removed user's tunnels close this long after a reload.
    pub const USER_GRACE: Duration = Duration::from_secs(60);
    pub const WS_PATH: &str = "/tunnel";
    pub const WS_PING: Duration = Duration::from_secs(20);
}

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
    ("udp_timeout", "udp_timeout", true),
    ("udp_max_associations", "max_udp_sessions", false),
    ("users", "user", false),
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
    let listen = listen_addr("listen address", &listen_text)?;

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
            own: Some(listen),
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
        },
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

/// `url [USER] [--host H] [--qr]`: the user's ss:// URL (and QR code), from the config as
/// written (the password, not the key derived from it).
pub fn user_url(
    cli: &Cli,
    user: Option<&str>,
    host: Option<&str>,
    qr: bool,
) -> Result<String, String> {
    let loaded = load(cli)?;
    let (file, _): (RawConfig, Vec<String>) = match &cli.config {
        Some(p) => read_config(p, SHADOWSOCKS_KEYS)?,
        None => (RawConfig::default(), Vec::new()),
    };
    let method = loaded.settings.key.method();
    let secret = match user {
        Some(name) => {
            let u = file
                .user
                .iter()
                .find(|u| u.name.trim() == name)
                .ok_or_else(|| format!("no [[user]] named {name:?} in the config"))?;
            u.password.clone().or(u.key.clone())
        }
        None if !file.user.is_empty() => {
            return Err("this config has [[user]] entries: name one".into())
        }
        None => cli
            .shared
            .password
            .clone()
            .map(Secret::new)
            .or(cli.shared.key.clone().map(Secret::new))
            .or(file.password.clone())
            .or(file.key.clone()),
    }
    .ok_or("no password or key to put in the URL")?;
    let host = match host {
        Some(h) => burrow_common::hostport::unbracket(h).to_owned(),
        None if loaded.listen.ip().is_unspecified() => {
            return Err(format!(
                "the server listens on {}: give --host, the address phones reach it at",
                loaded.listen
            ))
        }
        None => loaded.listen.ip().to_string(),
    };
    let url = burrow_common::config::SsUrl {
        method,
        password: secret,
        host,
        port: loaded.listen.port(),
    }
    .to_url();
    if !qr {
        return Ok(format!("{url}\n"));
    }
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    let picture = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    Ok(format!("{url}\n{picture}\n"))
}

/// `genkey`: a random 32-byte key (base64) usable as password or key, and its URL.
pub fn genkey(method: &str, server: &str) -> Result<String, String> {
    use base64::Engine as _;
    let method: Method = method
        .parse()
        .map_err(|e: burrow_common::aead::UnknownMethod| e.to_string())?;
    let burrow_common::HostPort { host, port } = server
        .parse()
        .map_err(|_| format!("{server:?} is not host:port"))?;
    let mut raw = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut raw);
    let password = base64::engine::general_purpose::STANDARD.encode(raw);
    let url = burrow_common::config::SsUrl {
        method,
        password: Secret::new(password.clone()),
        host,
        port,
    };
    Ok(format!(
        "method:   {method}\npassword: {password}\nurl:      {}\n",
        url.to_url()
    ))
}
