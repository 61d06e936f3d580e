//! The command line (clap), with the environment variables it reads.

use std::path::PathBuf;

use burrow_common::config::SharedArgs;
use clap::{Parser, Subcommand};

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
    /// Run as a Windows service (how `install --service` records it; the Service
    /// Control Manager starts the program so).
    #[arg(long = "service", hide = true)]
    pub service: bool,
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
    /// Windows: install burrow-server as a service that starts at boot, with the options
    /// given before `install` (needs an administrator's prompt), and start it.
    Install {
        /// As a Windows service.
        #[arg(long)]
        service: bool,
    },
    /// Windows: stop the service (draining its tunnels) and remove it.
    Uninstall,
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
