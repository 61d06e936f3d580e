//! `Settings`: everything burrow-local needs at run time, as the config loader makes it
//! (validated) and every stage reads it; and the current generation of it, replaced on
//! reload.

use std::sync::Arc;
use std::time::Duration;

use burrow_common::config::Secret;
use burrow_common::net::SocketOpts;
use tokio_util::sync::CancellationToken;

use crate::inbound::{own_pac, route};
use crate::outbound::plan::Confirm;
use crate::outbound::servers;
use crate::tools::metrics;

/// Everything burrow-local needs at run time, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The servers, and the one in use.
    pub servers: Arc<servers::Servers>,
    /// Reverse routes, served on every listener.
    pub routes: Vec<route::Route>,
    /// Extra names accepted in `Host` for routes and /proxy.pac (lower case).
    pub host_names: Vec<String>,
    /// Where each app target goes (`[[rule]]`, `bypass`, `acl`, the defaults).
    pub rules: Arc<crate::outbound::rules::Rules>,
    /// What /proxy.pac sends DIRECT besides loopback (`bypass`, then `NO_PROXY`).
    pub bypass: Vec<own_pac::Bypass>,
    /// Username/password apps must give (SOCKS5 RFC 1929, HTTP Basic), if any.
    pub proxy_auth: Option<(String, Secret)>,
    /// An app must finish its SOCKS5 handshake within this.
    pub handshake_timeout: Duration,
    /// Per connection attempt to the server.
    pub connect_timeout: Duration,
    /// A tunnel with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// A PAC file that chooses the corporate proxy (it sets `outbound.ways`).
    pub pac: Option<PacSetting>,
    /// The DNS forwarder: where it listens, and the resolver it asks (from the server).
    pub dns: Option<(std::net::SocketAddr, burrow_common::TargetAddr)>,
    /// burrow-local's counters, and where they are served (`metrics = "ADDR"`), if asked.
    pub metrics: Arc<metrics::Metrics>,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Cancelled when these settings are replaced by a reload (or at the stop).
    pub generation: CancellationToken,
    /// How SOCKS5 UDP reaches the server.
    pub udp_transport: UdpTransport,
    /// Whether new tunnels wait for the server to confirm the target.
    pub confirm: Confirm,
    /// A burst that outruns the warm connections shares one (burrow-server only).
    pub share_bursts: bool,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long open tunnels may drain after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Options for accepted and dialled sockets.
    pub socket: SocketOpts,
    /// The config file read, if any (Windows reloads when it changes).
    pub config_file: Option<std::path::PathBuf>,
    /// With `outbound_proxy = "system"`: the server's host, whose way the system's
    /// settings say; when what they say changes, the config is read again.
    pub follows_system: Option<String>,
    /// Point the system's proxy settings here while running (`system_proxy`).
    pub system_proxy: bool,
}

/// A PAC file to choose the corporate proxy (none in a build without the `pac` feature).
#[cfg(feature = "pac")]
pub type PacSetting = crate::pac::Pac;
/// A PAC file to choose the corporate proxy (none in a build without the `pac` feature).
#[cfg(not(feature = "pac"))]
pub type PacSetting = std::convert::Infallible;

/// The settings in use, replaced on reload (open tunnels keep the ones they began with).
pub type Current = Arc<std::sync::RwLock<Arc<Settings>>>;

/// Reads and checks the config again (for SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<Settings, String> + Send + Sync>;

/// How UDP reaches the server (`udp_transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpTransport {
    /// The relay when the hop is direct TCP, else the tunnel.
    Auto,
    /// The Shadowsocks UDP relay to the server's UDP port.
    Relay,
    /// UDP over a TCP tunnel.
    Tunnel,
    /// No UDP ASSOCIATE.
    Off,
}

impl UdpTransport {
    /// As written in the config.
    pub fn parse(text: &str) -> Result<UdpTransport, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(UdpTransport::Auto),
            "udp" | "relay" => Ok(UdpTransport::Relay),
            "tcp" | "tunnel" => Ok(UdpTransport::Tunnel),
            "off" => Ok(UdpTransport::Off),
            other => Err(format!(
                "udp_transport = {other:?}: expected \"auto\", \"udp\", \"tcp\" or \"off\""
            )),
        }
    }
}
