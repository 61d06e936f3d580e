//! Defaults, all in one place: read by `load` and by `burrow quickstart`.

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
pub const WS_PATH: &str = "/tunnel";
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
