//! Defaults, all in one place: read by `load` and by `burrow quickstart`.

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
