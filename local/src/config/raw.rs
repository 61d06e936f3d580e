//! The config file as written (TOML, or a shadowsocks JSON read into the same shape):
//! every field optional, unknown fields refused.

use std::path::PathBuf;
use std::time::Duration;

use burrow_common::config::{de_duration, Secret};
use serde::Deserialize;

use crate::outbound::plan::Confirm;

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
    pub(super) fn resolve(&self) -> Result<Confirm, String> {
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
    /// A tunnel on a new connection to the server puts its request in the SYN (TCP Fast
    /// Open, where the system allows it; default true).
    pub fast_open: Option<bool>,
    /// Connections to the server kept open ahead of use, at most (0: none).
    pub warm_connections: Option<usize>,
    /// A burst of tunnels that outruns the warm connections shares one (burrow-server
    /// only; default true).
    pub share_bursts: Option<bool>,
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
    /// Point the system's proxy settings (Windows: WinINet) at burrow-local while it runs.
    pub system_proxy: Option<bool>,
    /// Proxies that may have the outbound credentials although only a PAC answer named
    /// them (names, *.domain, networks).
    #[serde(default)]
    pub proxy_auth_hosts: Vec<String>,
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
    /// Hosts and networks that go direct — apps' tunnels and /proxy.pac alike —
    /// besides NO_PROXY.
    #[serde(default)]
    pub bypass: Vec<String>,
    /// Routing rules, first match wins: `hosts = [...]`, `via = "direct" | "tunnel" |
    /// "proxy" | "block"`.
    #[serde(default)]
    pub rule: Vec<RawRule>,
    /// Ask the corporate PAC about apps' targets: one it sends DIRECT goes direct while
    /// it sends the server through a proxy (default true).
    pub pac_direct: Option<bool>,
    /// A shadowsocks-rust ACL file.
    pub acl: Option<PathBuf>,
    /// Where IP literals in loopback/private/link-local ranges go when no rule names
    /// them: "direct" (the default) or "tunnel" (a server with allow_private).
    pub private_targets: Option<String>,
    pub transport: Option<String>,
    pub websocket: Option<RawWebSocket>,
    /// A SIP003 plugin: v2ray-plugin / xray-plugin spoken here, any other run as a process.
    pub plugin: Option<String>,
    /// The plugin's options (`SS_PLUGIN_OPTIONS`).
    pub plugin_opts: Option<String>,
}

/// `[[rule]]`: hosts and where they go.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub hosts: Vec<String>,
    pub via: String,
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
    /// Tunnels per WebSocket, framed as Mux.Cool (v2ray-plugin's servers expect it);
    /// 0: one tunnel per WebSocket.
    pub mux: Option<usize>,
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
    /// This server's SIP003 plugin, if not the top-level one.
    pub plugin: Option<String>,
    /// Its options.
    pub plugin_opts: Option<String>,
}

impl RawServer {
    /// A server given by its address alone, with the top-level settings.
    pub(super) fn at(address: &str) -> Self {
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
