//! `burrow quickstart`: a server and a local in one process on loopback, with a fresh key
//! and a small demo origin, so the first try needs no VPS and no config.

use std::time::Duration;

use burrow_common::aead::Method;
use burrow_common::net::SocketOpts;
use burrow_common::MasterKey;
use burrow_local::config::defaults as local_defaults;
use burrow_server::config::defaults as server_defaults;
use burrow_server::policy::Policy;
use tokio::net::TcpListener;

/// Open tunnels get this long after Ctrl-C (the programs' own default is 30 s).
const QUICK_GRACE: Duration = Duration::from_secs(2);

/// Runs until SIGINT/SIGTERM. `port` is the SOCKS5 port to try first (0 = any).
pub async fn run(port: u16) -> anyhow::Result<()> {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut raw);
    let psk = base64::engine::general_purpose::STANDARD.encode(raw);
    let key = MasterKey::from_base64(Method::Blake3ChaCha20Poly1305, &psk)?;

    let demo = crate::kit::http_target().await;
    let server_listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = server_listener.local_addr()?;
    let local_listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let local_addr = local_listener.local_addr()?;

    let server = burrow_server::Settings {
        key: key.clone(),
        users: std::sync::Arc::new(burrow_server::users::Users::new(vec![(
            "-".into(),
            key.clone(),
            None,
        )])),
        user_grace: server_defaults::USER_GRACE,
        // Only the demo origin is allowed among private addresses; the internet is open.
        policy: Policy {
            allow_exact: vec![demo],
            own: Some(server_addr),
            ..Policy::default()
        },
        handshake_timeout: server_defaults::HANDSHAKE_TIMEOUT,
        connect_timeout: server_defaults::CONNECT_TIMEOUT,
        idle_timeout: server_defaults::IDLE_TIMEOUT,
        max_connections: 1024,
        max_handshakes: 512,
        // A demo: Ctrl-C should not wait long for open tunnels.
        shutdown_grace: QUICK_GRACE,
        replay_filter: true,
        ws_path: server_defaults::WS_PATH.into(),
        ws_ping: server_defaults::WS_PING,
        udp: true,
        block_quic: false,
        udp_timeout: server_defaults::UDP_TIMEOUT,
        max_udp_sessions: server_defaults::MAX_UDP_SESSIONS,
        plugin: None,
        socket: SocketOpts::default(),
        fast_open: true,
    };
    let metrics = std::sync::Arc::new(burrow_local::tools::metrics::Metrics::new("tcp"));
    let pool = burrow_local::outbound::pool::Pool::new(
        burrow_local::outbound::pool::Dial {
            metrics: metrics.clone(),
            outbound: Default::default(),
            host: server_addr.ip().to_string(),
            port: server_addr.port(),
            timeout: local_defaults::CONNECT_TIMEOUT,
            socket: SocketOpts::default(),
        },
        burrow_local::outbound::pool::PoolConfig {
            max: 4,
            max_age: local_defaults::WARM_MAX_AGE,
            idle_after: local_defaults::WARM_IDLE_AFTER,
        },
    );
    let only = burrow_local::outbound::servers::Server::new(
        server_addr.ip().to_string(),
        server_addr.port(),
        key,
        Default::default(),
        pool,
        Some(std::sync::Arc::new(
            burrow_common::replay::ReplayFilter::sip022(),
        )),
        None,
    );
    let local = burrow_local::settings::Settings {
        generation: Default::default(),
        servers: std::sync::Arc::new(burrow_local::outbound::servers::Servers::new(
            vec![std::sync::Arc::new(only)],
            local_defaults::SERVER_CHECK,
        )),
        proxy_auth: None,
        routes: Vec::new(),
        host_names: Vec::new(),
        bypass: Vec::new(),
        udp_transport: burrow_local::settings::UdpTransport::Auto,
        dns: None,
        metrics: metrics.clone(),
        metrics_listen: None,
        pac: None,
        handshake_timeout: local_defaults::HANDSHAKE_TIMEOUT,
        connect_timeout: local_defaults::CONNECT_TIMEOUT,
        idle_timeout: local_defaults::IDLE_TIMEOUT,
        share_bursts: true,
        confirm: burrow_local::outbound::plan::Confirm::Auto,
        max_connections: 1024,
        shutdown_grace: QUICK_GRACE,
        socket: SocketOpts::default(),
        config_file: None,
        follows_system: None,
        system_proxy: false,
        // The demo origin is on this machine: through the tunnel, to show it.
        rules: std::sync::Arc::new(
            burrow_local::outbound::rules::Rules::default().tunnel_private(),
        ),
    };
    let shutdown = burrow_common::shutdown::on_signal();
    eprintln!(
        "listening on {server_addr} (burrow-server, 2022-blake3-chacha20-poly1305, fresh key)"
    );
    eprintln!("listening on {local_addr} (burrow-local, SOCKS5 and HTTP proxy)");
    println!("burrow quickstart: a local and a server on this machine, talking encrypted.");
    println!(
        "Try it (the first answers from a demo origin on this machine, the second needs internet):"
    );
    println!("  curl --socks5-hostname {local_addr} http://{demo}/");
    println!("  curl --socks5-hostname {local_addr} https://example.com/");
    println!("Ctrl-C to stop.");
    let (a, b) = tokio::join!(
        burrow_server::run(
            server,
            burrow_server::Listeners::tcp(server_listener),
            shutdown.clone(),
        ),
        burrow_local::run(local, vec![local_listener], shutdown),
    );
    a.and(b)
}
