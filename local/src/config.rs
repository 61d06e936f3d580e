//! CLI and TOML config → validated `Settings`. Precedence: CLI > env > file > defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use burrow_common::config::{
    check_timeouts, de_duration, listen_addr, master_key, read_config, with_port, Secret,
    SharedArgs, SsUrl,
};
use burrow_common::net::{Keepalive, SocketOpts};
use clap::Parser;
use serde::Deserialize;

use std::sync::Arc;

use burrow_common::hostport::{bracket, HostPort};
use burrow_common::TargetAddr;

use burrow_common::outbound::connect::Scheme;
use burrow_common::outbound::proxy;
use burrow_common::outbound::{Outbound, Ways, WsTransport};

use crate::dial::Confirm;
use crate::own_pac::{from_no_proxy, Bypass};
use crate::pool::{Dial, Pool, PoolConfig};
use crate::route::{parse_upstream, upstream_host_url, Route, Upstream};
use crate::servers::{Server, Servers};
use crate::tls::{TlsTarget, Trust};
use crate::udp::UdpTransport;
use crate::{PacSetting, Settings};

/// burrow-local: a SOCKS5 and HTTP proxy on your machine whose connections travel encrypted
/// to burrow-server.
#[derive(Parser, Debug)]
#[command(name = "burrow-local", version, about)]
pub struct Cli {
    /// TOML config file (see configs/local.toml).
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// Something other than serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Listen address for apps, host:port (default 127.0.0.1:1080); SOCKS5 and HTTP on
    /// each. Repeat for several listeners.
    #[arg(short = 'b', long = "local-addr")]
    pub local_addr: Vec<String>,
    /// The server: host:port, or an ss:// URL carrying method and password.
    #[arg(short = 's', long = "server-addr", global = true)]
    pub server_addr: Vec<String>,
    #[command(flatten)]
    pub shared: SharedArgs,
    /// Reach the server through this proxy: http://[user:pass@]host:port, socks5://…,
    /// socks5h://… (else ALL_PROXY/SOCKS_PROXY > HTTPS_PROXY > HTTP_PROXY, honouring NO_PROXY).
    #[arg(long = "outbound-proxy", value_name = "URL", global = true)]
    pub outbound_proxy: Option<String>,
    /// Hop to the server as raw TCP (default) or dressed as a WebSocket: tcp, ws, wss.
    #[arg(long = "transport", value_parser = ["tcp", "ws", "wss"], global = true)]
    pub transport: Option<String>,
    /// WebSocket path on the server (default /tunnel).
    #[arg(long = "ws-path", global = true)]
    pub ws_path: Option<String>,
    /// WebSocket Host header and TLS name (default: the server's host).
    #[arg(long = "ws-host", global = true)]
    pub ws_host: Option<String>,
    /// A reverse route, PATH=URL (ws, wss, http or https upstream); repeatable.
    #[arg(long = "route", value_name = "PATH=URL")]
    pub route: Vec<String>,
    /// simple-proxy compatibility: a catch-all route to host:port (443 means wss/https).
    #[arg(long = "upstream-host", env = "UPSTREAM_HOST", hide = true)]
    pub upstream_host: Option<String>,
    /// simple-proxy compatibility: the local port (on local_address).
    #[arg(long = "listen-port", env = "LISTEN_PORT", hide = true)]
    pub listen_port: Option<u16>,
    /// Serve burrow-local's counters at http://ADDR/metrics (off unless given).
    #[arg(long = "metrics", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// A DNS forwarder on ADDR whose queries go through the server to dns_upstream
    /// (1.1.1.1:53 unless the config says).
    #[arg(long = "dns", value_name = "ADDR")]
    pub dns: Option<String>,
    /// Reply to apps as soon as the server is reached, without waiting for it to confirm
    /// the target (for servers other than burrow-server).
    #[arg(long = "no-confirm")]
    pub no_confirm: bool,
}

/// burrow-local's commands besides serving.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// What the running burrow-local says at its metrics endpoint (`metrics` in the
    /// config, or --metrics), printed for a person.
    Status,
    /// Try the way to the server step by step (PAC, each corporate proxy and the scheme
    /// it takes, TLS, WebSocket, a tunnel) and say where it stops.
    Doctor {
        /// The target of the test tunnel, host:port.
        #[arg(long, default_value = "example.com:80")]
        target: String,
    },
}

/// A setting written as one string or an array of them.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `key = "a"`.
    One(String),
    /// `key = ["a", "b"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `confirm_connect` as written: a boolean or a word.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ConfirmSetting {
    /// `true`: always wait; `false`: never.
    Bool(bool),
    /// `"auto"`.
    Word(String),
}

impl ConfirmSetting {
    fn resolve(&self) -> Result<Confirm, String> {
        match self {
            ConfirmSetting::Bool(true) => Ok(Confirm::Always),
            ConfirmSetting::Bool(false) => Ok(Confirm::Never),
            ConfirmSetting::Word(w) if w.eq_ignore_ascii_case("auto") => Ok(Confirm::Auto),
            ConfirmSetting::Word(w) => Err(format!(
                "confirm_connect = {w:?}: expected \"auto\", true or false"
            )),
        }
    }
}

/// The config file; every field optional, unknown fields refused.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// One server (`server = "host:port"`), or several (`[[server]]` tables, or an array
    /// of addresses).
    pub server: Option<ServerSetting>,
    /// Several servers, tried in order and moved between by health (see README).
    #[serde(default, rename = "server_list")]
    pub servers: Vec<RawServer>,
    /// How often the servers are timed while in use (several servers only).
    #[serde(default, deserialize_with = "de_duration")]
    pub server_check: Option<Duration>,
    pub server_port: Option<u16>,
    pub password: Option<Secret>,
    pub key: Option<Secret>,
    pub method: Option<String>,
    pub local_address: Option<String>,
    pub local_port: Option<u16>,
    /// More listeners, each "host:port"; with it, local_address/local_port are not used.
    pub listen: Option<Vec<String>>,
    pub proxy_username: Option<String>,
    pub proxy_password: Option<Secret>,
    /// `"auto"` (learn what the server does), `true` (always wait), `false` (never).
    pub confirm_connect: Option<ConfirmSetting>,
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
    pub no_delay: Option<bool>,
    /// Connections to the server kept open ahead of use, at most (0: none).
    pub warm_connections: Option<usize>,
    /// A warm connection unused this long is closed (jittered down to 60 %).
    #[serde(default, deserialize_with = "de_duration")]
    pub warm_max_age: Option<Duration>,
    /// With no new tunnel for this long, no connection is kept warm.
    #[serde(default, deserialize_with = "de_duration")]
    pub warm_idle_after: Option<Duration>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    /// A proxy URL, a list of them (an array, or `;`-separated as a PAC answer), or a PAC
    /// file (`pac+http://…`, `pac+file:…`, `wpad`).
    pub outbound_proxy: Option<OneOrMany>,
    /// Credentials for corporate proxies named without them (a PAC answer, a list).
    pub outbound_username: Option<String>,
    pub outbound_password: Option<Secret>,
    /// The one scheme to answer corporate proxies with (negotiate, ntlm, basic); else the
    /// strongest each offers.
    pub outbound_auth: Option<String>,
    /// How SOCKS5 UDP reaches the server: auto, udp (its UDP port), tcp (a tunnel), off.
    pub udp_transport: Option<String>,
    /// A DNS forwarder here (host:port) whose queries go through the server.
    pub dns: Option<String>,
    /// Serve burrow-local's counters at http://ADDR/metrics.
    pub metrics: Option<String>,
    /// The resolver the forwarded queries reach, from the server (default 1.1.1.1:53).
    pub dns_upstream: Option<String>,
    /// How often a PAC file is fetched again.
    #[serde(default, deserialize_with = "de_duration")]
    pub pac_refresh: Option<Duration>,
    /// Names by which apps reach burrow-local's own pages (routes, /proxy.pac), besides
    /// its listen address and localhost.
    #[serde(default)]
    pub host_names: Vec<String>,
    /// Hosts and networks that /proxy.pac sends DIRECT (intranet), besides NO_PROXY.
    #[serde(default)]
    pub bypass: Vec<String>,
    pub transport: Option<String>,
    pub websocket: Option<RawWebSocket>,
}

/// `[websocket]`: the WebSocket transport.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    pub path: Option<String>,
    pub host: Option<String>,
    pub sni: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// The server's key alone trusted (base64 SHA-256 of its SubjectPublicKeyInfo).
    pub pin_sha256: Option<OneOrMany>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default, deserialize_with = "de_duration")]
    pub ping: Option<Duration>,
}

/// `server` as written: one address, or a list of servers.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ServerSetting {
    /// `server = "host:port"` (or an `ss://` URL).
    One(String),
    /// `[[server]]` tables, or `server = ["a:8388", "b:8388"]`.
    Many(Vec<ServerEntry>),
}

/// One entry of a list of servers: an address alone, or a table.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ServerEntry {
    /// `"host:port"` or an `ss://` URL, with the top-level method and key.
    Address(String),
    /// A table with its own settings.
    Table(RawServer),
}

/// `[[server]]` (or `[[server_list]]`) in the config file: one server of several.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `host:port`, a host (with `server_port`) or an `ss://` URL.
    pub server: String,
    /// The port when `server` names none (else the top-level `server_port`, else 8388).
    pub server_port: Option<u16>,
    pub method: Option<String>,
    pub password: Option<Secret>,
    pub key: Option<Secret>,
    /// This server's transport (tcp, ws, wss), if not the top-level one.
    pub transport: Option<String>,
    /// This server's way out (a proxy URL, a list, a PAC file), if not the top-level one.
    pub outbound_proxy: Option<OneOrMany>,
}

impl RawServer {
    /// A server given by its address alone, with the top-level settings.
    fn at(address: &str) -> Self {
        RawServer {
            server: address.to_owned(),
            ..Default::default()
        }
    }
}

/// `[[route]]` in the config file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    pub upstream: String,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    /// The upstream's key alone trusted (base64 SHA-256 of its SubjectPublicKeyInfo).
    pub pin_sha256: Option<OneOrMany>,
    /// Browser origins allowed on this route (`Origin` header); any when absent.
    pub origins: Option<Vec<String>>,
}

/// Defaults, all in one place.
pub mod defaults {
    use std::time::Duration;
    pub const METHOD: &str = "chacha20-ietf-poly1305";
    pub const LOCAL_ADDRESS: &str = "127.0.0.1";
    pub const LOCAL_PORT: u16 = 1080;
    pub const SERVER_PORT: u16 = 8388;
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    pub const WS_PING: Duration = Duration::from_secs(20);
    /// Several servers: how often they are timed while in use.
    pub const SERVER_CHECK: Duration = Duration::from_secs(30);
    /// The resolver the DNS forwarder asks, from the server.
    pub const DNS_UPSTREAM: &str = "1.1.1.1:53";
    /// A PAC file is fetched again this often (and when the machine's addresses change).
    pub const PAC_REFRESH: Duration = Duration::from_secs(600);
    /// Warm connections at most: the first tunnels of a burst start with their first
    /// flight.
    pub const WARM_CONNECTIONS: usize = 8;
    /// Well below burrow-server's handshake deadline (60 s, jittered down to 54 s),
    /// shadowsocks-libev's 60 s and common proxies' idle cut-offs.
    pub const WARM_MAX_AGE: Duration = Duration::from_secs(20);
    /// An idle laptop keeps no connection open.
    pub const WARM_IDLE_AFTER: Duration = Duration::from_secs(180);
}

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
];

/// Merges CLI, environment (through clap) and file; every error is one line.
pub fn load(cli: &Cli) -> Result<Loaded, String> {
    let (file, notes): (RawConfig, Vec<String>) = match &cli.config {
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
    let proxy_auth = match (file.proxy_username.clone(), file.proxy_password.clone()) {
        (Some(u), Some(p)) if !u.is_empty() && !p.expose().is_empty() => Some((u, p)),
        (None, None) => None,
        _ => return Err("proxy_username and proxy_password go together, both non-empty".into()),
    };
    let keepalive = file
        .keepalive
        .map(|idle| Keepalive {
            idle,
            ..Keepalive::default()
        })
        .unwrap_or_default();
    let routes = routes(cli, &file.route)?;
    let connect_timeout = file.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT);
    let socket = SocketOpts {
        nodelay: file.no_delay.unwrap_or(true),
        keepalive: Some(keepalive),
    };
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
        let (mut outbound, this_pac) = outbound(cli, &own, (&host, port))?;
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
                Arc::new(crate::metrics::Metrics::new(match &outbound.ws {
                    None => "tcp",
                    Some(w) if w.tls.is_some() => "wss",
                    Some(_) => "ws",
                }))
            })
            .clone();
        let dial = Dial {
            metrics: m,
            outbound: outbound.clone(),
            host: host.clone(),
            port,
            timeout: connect_timeout,
            socket,
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
        max_connections: file
            .max_connections
            .unwrap_or_else(burrow_common::net::connection_budget)
            .max(1),
        shutdown_grace: file.shutdown_grace.unwrap_or(defaults::SHUTDOWN_GRACE),
        socket,
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

/// Routes from the file, then the command line (same path: the command line wins), then
/// `UPSTREAM_HOST` as the catch-all if no route covers `/`.
fn routes(cli: &Cli, file: &[RawRoute]) -> Result<Vec<Route>, String> {
    let mut raw: Vec<RawRoute> = file.to_vec();
    for r in &cli.route {
        let (path, url) = r
            .split_once('=')
            .ok_or_else(|| format!("--route {r:?} is not PATH=URL"))?;
        raw.retain(|x| x.path != path);
        raw.push(RawRoute {
            path: path.into(),
            upstream: url.into(),
            ..RawRoute::default()
        });
    }
    if let Some(h) = &cli.upstream_host {
        if !raw.iter().any(|r| r.path == "/") {
            raw.push(RawRoute {
                path: "/".into(),
                upstream: upstream_host_url(h)?,
                ..RawRoute::default()
            });
        }
    }
    raw.iter().map(build_route).collect()
}

fn build_route(r: &RawRoute) -> Result<Route, String> {
    if !r.path.starts_with('/') {
        return Err(format!("route path {:?} must start with /", r.path));
    }
    let u = parse_upstream(&r.upstream)?;
    let tls = if u.tls {
        let pins = r
            .pin_sha256
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        let trust = Trust::from_config(r.ca_file.as_deref(), &pins, r.insecure_skip_verify)?;
        Some(Arc::new(TlsTarget::new(&u.host, &trust)?))
    } else {
        None
    };
    let host = bracket(&u.host);
    let default_port = if u.tls { 443 } else { 80 };
    let authority = if u.port == default_port {
        host.into_owned()
    } else {
        format!("{host}:{}", u.port)
    };
    let target = TargetAddr::new(&u.host, u.port)
        .map_err(|_| format!("upstream {:?}: bad host", r.upstream))?;
    Ok(Route {
        path: r.path.clone(),
        upstream: Upstream {
            url: r.upstream.clone(),
            target,
            authority,
            tls,
            path: u.path,
        },
        preserve_host: r.preserve_host,
        insecure: r.insecure_skip_verify,
        origins: r.origins.clone(),
    })
}

/// The hop to the server: proxy from the command line, else the file, else the
/// environment; transport from the command line, else the file.
fn outbound(
    cli: &Cli,
    file: &RawConfig,
    server: (&str, u16),
) -> Result<(Outbound, Option<PacSetting>), String> {
    let server_host = server.0;
    let written = match &cli.outbound_proxy {
        Some(s) => Some(vec![s.clone()]),
        None => file.outbound_proxy.as_ref().map(OneOrMany::to_vec),
    };
    let pac = match written.as_deref() {
        Some([one]) => pac_source(one)?,
        _ => None,
    };
    let auth = proxy::ProxyAuth {
        credentials: match (&file.outbound_username, &file.outbound_password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => return Err("outbound_username and outbound_password go together".into()),
        },
        scheme: file
            .outbound_auth
            .as_deref()
            .map(Scheme::parse)
            .transpose()?,
    };
    let proxies = match written {
        _ if pac.is_some() => Vec::new(),
        Some(list) if list.iter().all(|u| u.trim().is_empty()) => vec![None],
        Some(list) => proxy::parse_list(&list.join(";"))?,
        None => vec![proxy::from_env(|k| std::env::var(k).ok(), server_host)?],
    };
    let proxies = proxy::with_auth(proxies, &auth);
    let kind = cli
        .transport
        .clone()
        .or(file.transport.clone())
        .unwrap_or_else(|| "tcp".into());
    let w = file.websocket.clone().unwrap_or_default();
    let ws = match kind.as_str() {
        "tcp" => None,
        "ws" | "wss" => {
            let host = cli.ws_host.clone().or(w.host.clone());
            let tls = if kind == "wss" {
                let name = w
                    .sni
                    .clone()
                    .or(host.clone())
                    .unwrap_or_else(|| server_host.to_owned());
                let pins = w
                    .pin_sha256
                    .as_ref()
                    .map(OneOrMany::to_vec)
                    .unwrap_or_default();
                let trust =
                    Trust::from_config(w.ca_file.as_deref(), &pins, w.insecure_skip_verify)?;
                Some(Arc::new(TlsTarget::new(&name, &trust)?))
            } else {
                None
            };
            let path = cli
                .ws_path
                .clone()
                .or(w.path.clone())
                .unwrap_or_else(|| "/tunnel".into());
            if !path.starts_with('/') {
                return Err(format!("websocket path {path:?} must start with /"));
            }
            Some(WsTransport {
                path,
                host,
                tls,
                ping: w.ping.unwrap_or(defaults::WS_PING),
            })
        }
        other => return Err(format!("transport {other:?}: use tcp, ws or wss")),
    };
    let url = pac_url(server, ws.as_ref());
    let pac = pac.map(|source| pac_setting(source, url, server_host, file, auth));
    let out = Outbound {
        ways: Arc::new(Ways::new(proxies)),
        ws,
    };
    Ok((out, pac))
}

/// The servers the config file lists: `server` (one, an array, or `[[server]]` tables),
/// or `[[server_list]]` (the earlier name) — not both.
fn written_servers(file: &RawConfig) -> Result<Vec<RawServer>, String> {
    let listed: Vec<RawServer> = match &file.server {
        Some(ServerSetting::Many(list)) => list
            .iter()
            .map(|e| match e {
                ServerEntry::Address(a) => RawServer::at(a),
                ServerEntry::Table(t) => t.clone(),
            })
            .collect(),
        Some(ServerSetting::One(server)) => vec![RawServer::at(server)],
        None => Vec::new(),
    };
    match (listed.is_empty(), file.servers.is_empty()) {
        (false, false) => Err(
            "both `server` and `[[server_list]]` are set: list the servers in one of them".into(),
        ),
        (true, true) => {
            Err("no server: use -s HOST:PORT, -s ss://… or `server` in the config".into())
        }
        (false, true) => Ok(listed),
        (true, false) => Ok(file.servers.clone()),
    }
}

/// The servers, each `(host, port, key)`: `-s` (repeatable), else the config's (see
/// [`written_servers`]). An `ss://` URL carries its own method and password; otherwise
/// the entry's, else `-m`/`-k`, else the top-level ones.
fn server_entries(
    cli: &Cli,
    file: &RawConfig,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, u16, burrow_common::MasterKey, RawServer)>, String> {
    let raw: Vec<RawServer> = if !cli.server_addr.is_empty() {
        cli.server_addr.iter().map(|s| RawServer::at(s)).collect()
    } else {
        written_servers(file)?
    };
    let mut out = Vec::with_capacity(raw.len());
    for entry in raw {
        let text = entry.server.trim();
        let url = if text.starts_with("ss://") {
            Some(SsUrl::parse(text).map_err(|e| format!("server {e}"))?)
        } else {
            None
        };
        let (host, port) = match &url {
            Some(u) => (u.host.clone(), u.port),
            None => {
                let port = entry.server_port.or(file.server_port);
                let hp = HostPort::parse(text, Some(port.unwrap_or(defaults::SERVER_PORT)))
                    .map_err(|_| format!("server {text:?} is not host:port"))?;
                (hp.host, hp.port)
            }
        };
        let method = cli
            .shared
            .method
            .clone()
            .or(url.as_ref().map(|u| u.method.name().to_owned()))
            .or(entry.method.clone())
            .or(file.method.clone())
            .unwrap_or_else(|| defaults::METHOD.into());
        let (password, key) = match (&cli.shared.key, &cli.shared.password, &url) {
            (Some(k), _, _) => (None, Some(Secret::new(k.clone()))),
            (None, Some(p), _) => (Some(Secret::new(p.clone())), None),
            (None, None, Some(u)) => (Some(u.password.clone()), None),
            (None, None, None) if entry.password.is_some() || entry.key.is_some() => {
                (entry.password.clone(), entry.key.clone())
            }
            (None, None, None) => (file.password.clone(), file.key.clone()),
        };
        let key = master_key(&method, password.as_ref(), key.as_ref()).map_err(|e| {
            if out.is_empty() {
                e
            } else {
                format!("server {text}: {e}")
            }
        })?;
        warnings.extend(burrow_common::config::weak_password(
            &method,
            password.as_ref(),
        ));
        out.push((host, port, key, entry));
    }
    Ok(out)
}

/// `bypass` as written, then the environment's NO_PROXY (entries PAC can say).
fn bypass(written: &[String]) -> Result<Vec<Bypass>, String> {
    let mut list = written
        .iter()
        .map(|b| Bypass::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::var("no_proxy").or_else(|_| std::env::var("NO_PROXY"));
    for b in from_no_proxy(&env.unwrap_or_default()) {
        if !list.contains(&b) {
            list.push(b);
        }
    }
    Ok(list)
}

/// The URL a PAC file is asked about: the server's, as a browser would see the hop.
fn pac_url(server: (&str, u16), ws: Option<&WsTransport>) -> String {
    let (scheme, default_port, path) = match ws {
        Some(w) if w.tls.is_none() => ("http", 80, w.path.as_str()),
        Some(w) => ("https", 443, w.path.as_str()),
        None => ("https", 443, "/"),
    };
    let host = bracket(server.0);
    match server.1 {
        p if p == default_port => format!("{scheme}://{host}{path}"),
        p => format!("{scheme}://{host}:{p}{path}"),
    }
}

#[cfg(feature = "pac")]
fn pac_source(text: &str) -> Result<Option<crate::pac::Source>, String> {
    crate::pac::Source::parse(text)
}

#[cfg(feature = "pac")]
fn pac_setting(
    source: crate::pac::Source,
    url: String,
    host: &str,
    file: &RawConfig,
    auth: proxy::ProxyAuth,
) -> PacSetting {
    crate::pac::Pac {
        source,
        auth,
        url,
        host: host.to_owned(),
        refresh: file.pac_refresh.unwrap_or(defaults::PAC_REFRESH),
        timeout: file.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT),
    }
}

#[cfg(not(feature = "pac"))]
fn pac_source(text: &str) -> Result<Option<PacSetting>, String> {
    let t = text.trim();
    if t.starts_with("pac+") || t.eq_ignore_ascii_case("wpad") {
        return Err(format!(
            "{t:?}: this build has no PAC support (the pac feature)"
        ));
    }
    Ok(None)
}

#[cfg(not(feature = "pac"))]
fn pac_setting(
    never: PacSetting,
    _: String,
    _: &str,
    _: &RawConfig,
    _: proxy::ProxyAuth,
) -> PacSetting {
    match never {}
}
