//! The command line (clap), with the environment variables it reads.

use std::path::PathBuf;

use burrow_common::config::SharedArgs;
use clap::Parser;

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
    /// While running, point the system's proxy settings here (Windows: WinINet, seen by
    /// browsers at once); they are given back as they were when burrow-local stops.
    #[arg(long = "system-proxy")]
    pub system_proxy: bool,
    /// Run with no console: on Windows the console window is let go (how
    /// `install --autostart` starts it); the log goes to --log-file, by default
    /// %LOCALAPPDATA%\burrow\burrow-local.log (elsewhere
    /// ~/.local/state/burrow/burrow-local.log).
    #[arg(long = "background")]
    pub background: bool,
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
        /// Only say where an app's tunnel to HOST[:PORT] would go (which rule matched),
        /// without trying the way.
        #[arg(long, value_name = "HOST[:PORT]")]
        route: Option<String>,
    },
    /// Windows: start at logon for this user (the per-user Run key; no admin needed),
    /// with this config.
    Install {
        /// Start at logon.
        #[arg(long)]
        autostart: bool,
    },
    /// Windows: undo `install` (removes exactly its own Run-key entry).
    Uninstall,
}
