//! burrow-bench's command line: the modes and their knobs.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "burrow-bench",
    version,
    about = "Throughput and connect latency through a SOCKS5 proxy"
)]
pub(crate) struct Cli {
    /// The SOCKS5 proxy to measure, host:port; without it, the target is reached directly
    /// (the baseline).
    #[arg(long)]
    pub(crate) socks: Option<SocketAddr>,
    /// A label printed with every result line.
    #[arg(long, default_value = "proxy")]
    pub(crate) label: String,
    /// Processes whose CPU time to report (e.g. the local and the server).
    #[arg(long = "pid")]
    pub(crate) pids: Vec<u32>,
    #[command(subcommand)]
    pub(crate) mode: Mode,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Mode {
    /// Bulk transfer.
    Bulk {
        /// Megabytes per stream.
        #[arg(long, default_value_t = 1024)]
        mb: u64,
        /// Direction.
        #[arg(long, value_enum, default_value_t = Dir::Down)]
        dir: Dir,
        /// Parallel streams.
        #[arg(long, default_value_t = 1)]
        streams: usize,
    },
    /// New tunnels, each timed to its first byte.
    Connect {
        /// Tunnels in all.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Tunnels in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// UDP through a SOCKS5 UDP association (or straight to the echo without --socks):
    /// round-trip times one at a time, then datagrams per second with `window` in flight.
    Udp {
        /// Datagrams in the throughput phase.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Payload bytes per datagram.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Datagrams in flight at once.
        #[arg(long, default_value_t = 32)]
        window: usize,
    },
    /// 1 KiB request / 1 KiB response round trips on one tunnel.
    Rr {
        /// Round trips.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    /// New tunnels over a long link, each timed from the TCP connect to the proxy to the
    /// first byte of a plain HTTP GET's answer: the first (cold), then the median of
    /// `count` more spaced `gap_ms` apart (warm), in ms and in round trips.
    FirstByte {
        /// Tunnels after the first.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The link's round-trip time, to express the figures in round trips.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
        /// Pause between tunnels (a browser's tunnels are not back to back).
        #[arg(long, default_value_t = 500)]
        gap_ms: u64,
        /// Go through this HTTP proxy (absolute-form GET) instead of --socks.
        #[arg(long)]
        http_proxy: Option<SocketAddr>,
    },
    /// The first-byte figures over a long link for every hop, burrow and
    /// shadowsocks-rust in one run: it starts the servers, links, squid and nginx itself
    /// (burrow-server and burrow-local from beside this binary; ssserver, sslocal, squid,
    /// nginx and htpasswd from PATH).
    FirstByteSuite {
        /// Tunnels per figure after the first.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The link's round-trip time.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
    },
    /// Headless Chromium loads a page of 24 images from 4 origins, and one of 80 from 8,
    /// through burrow (tcp; wss via squid and nginx; v2ray-plugin), shadowsocks-rust and
    /// v2ray with its mux, each over the same long link (node, Chromium, ssserver,
    /// sslocal, ss-server, ss-v2ray-plugin, v2ray, squid and nginx from PATH).
    PageSuite {
        /// Page loads per proxy and page (each in a fresh browser).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The link's round-trip time.
        #[arg(long, default_value_t = 80)]
        rtt_ms: u64,
    },
    /// Many mixed tunnels (bulk, request/response, UDP) through burrow-local → squid →
    /// burrow-server while faults are injected in turn (server and proxy restarts,
    /// silent deaths, 1-byte slicing, resets); prints what came of it (burrow::soak).
    Soak {
        /// Seconds to run.
        #[arg(long, default_value_t = 180)]
        secs: u64,
        /// Concurrent tunnels.
        #[arg(long, default_value_t = 200)]
        tunnels: usize,
        /// Seconds between faults.
        #[arg(long, default_value_t = 10)]
        fault_every: u64,
    },
    /// An NTLM-only proxy (verifying NTLMv2) answered by burrow-local itself, against
    /// cntlm in front of it, over the same long link: first byte and a 64 MiB download.
    NtlmAnchor {
        /// Tunnels per figure after the first.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The round-trip time from the proxy to burrow-server.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
        /// The round-trip time from the laptop to the proxy.
        #[arg(long, default_value_t = 10)]
        proxy_rtt_ms: u64,
    },
    /// Run a long link (each byte delivered RTT/2 late, a new connection's first bytes
    /// one more RTT) from a port of its own to `to`, until killed.
    Link {
        /// Where the link leads.
        #[arg(long)]
        to: SocketAddr,
        /// Round-trip time in ms.
        #[arg(long, default_value_t = 100)]
        rtt_ms: u64,
    },
    /// Hold N idle tunnels; report the memory of the --pid processes before, during, after.
    Idle {
        /// Tunnels held at once.
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub(crate) enum Dir {
    Down,
    Up,
}
