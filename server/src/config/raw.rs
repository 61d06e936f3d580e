//! The config file as written (TOML, or a shadowsocks JSON read into the same shape):
//! every field optional, unknown fields refused.

use std::time::Duration;

use burrow_common::config::{de_duration, Secret};
use serde::Deserialize;

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
    /// The listeners take a new connection's first bytes in its SYN (TCP Fast Open,
    /// where the system allows it; default true).
    pub fast_open: Option<bool>,
    pub ws_listen: Option<String>,
    pub ws_path: Option<String>,
    /// A SIP003 plugin (a process) in front of the listen address.
    pub plugin: Option<String>,
    /// Its options (`SS_PLUGIN_OPTIONS`).
    pub plugin_opts: Option<String>,
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
