//! A laptop's day: warm connections to the server that died silently — no FIN, no RST,
//! what a sleep, another Wi-Fi or a NAT that forgot the mapping does — cost the next
//! tunnel about a second, never a hang. Inside a network namespace of the test's own, a
//! firewall rule (nftables) silently drops every packet of the warm connections open at
//! that moment, while new connections pass.

mod common;

use std::time::Duration;

use burrow::kit::{NetNs, Proc};
use common::*;

const METHOD: &str = "chacha20-ietf-poly1305";
const PW: &str = "laptop-day-password";

/// `python3 -m http.server` inside `ns` on a port of its own; its port.
fn origin(ns: &NetNs, dir: &std::path::Path) -> (Proc, u16) {
    std::fs::write(dir.join("hello.txt"), "hello from the origin\n").expect("file");
    let p = ns.spawn(
        "python3",
        &[
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            dir.to_str().expect("utf8"),
            "0",
        ],
        &[],
    );
    let line = p.wait_for("Serving HTTP on");
    let port = line
        .split("port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the origin's port");
    (p, port)
}

/// burrow-server (loopback targets allowed) and burrow-local towards it, inside `ns`:
/// the server, its address, the local and its address.
fn pair_in(ns: &NetNs) -> (Proc, std::net::SocketAddr, Proc, String) {
    let (server, server_addr) = server_in(ns);
    let local = ns.spawn(
        LOCAL,
        &[
            "-b",
            "127.0.0.1:0",
            "-s",
            &server_addr.to_string(),
            "-m",
            METHOD,
            "-k",
            PW,
        ],
        &[],
    );
    let local_addr = local.listening().to_string();
    (server, server_addr, local, local_addr)
}

/// burrow-server (loopback targets allowed) inside `ns`, and its address.
fn server_in(ns: &NetNs) -> (Proc, std::net::SocketAddr) {
    let server = ns.spawn(
        SERVER,
        &[
            "-s",
            "127.0.0.1:0",
            "-m",
            METHOD,
            "-k",
            PW,
            "--allow-private",
        ],
        &[],
    );
    let addr = server.listening();
    (server, addr)
}

/// From now on, every packet of the connections from the local `ports` to the server's
/// `port` inside `ns` is dropped on arrival — no FIN, no RST — while new ones pass.
fn silence(ns: &NetNs, port: u16, ports: &[u16]) {
    assert!(!ports.is_empty(), "no connection to silence");
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    for cmd in [
        "add table inet burrow".to_owned(),
        "add chain inet burrow in { type filter hook input priority 0; }".to_owned(),
        format!("add rule inet burrow in tcp dport {port} tcp sport {{ {ports} }} counter drop"),
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        let (ok, out) = ns.run("nft", &args);
        assert!(ok, "nft {cmd}: {out}");
    }
}

/// `GET /hello.txt` from the origin on `port`, through burrow-local at `local` inside
/// `ns`; 30 s at most: a hang fails the test, the expected cost is about a second.
fn get_in(ns: &NetNs, local: &str, port: u16) -> (bool, String) {
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    ns.run(
        "curl",
        &["-sS", "--max-time", "30", "--socks5-hostname", local, &url],
    )
}

/// The warm connections to the server on `port` once the pool holds some (it refills
/// after a tunnel): their local ports.
fn warm_connections(ns: &NetNs, port: u16) -> Vec<u16> {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let warm = connections_to(ns, port);
        if !warm.is_empty() {
            return warm;
        }
        assert!(std::time::Instant::now() < end, "no warm connection");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Established connections to `port` inside `ns`: their local (source) ports.
fn connections_to(ns: &NetNs, port: u16) -> Vec<u16> {
    let (ok, out) = ns.run(
        "ss",
        &[
            "-Htn",
            "state",
            "established",
            "dport",
            &format!("= :{port}"),
        ],
    );
    assert!(ok, "ss: {out}");
    out.lines()
        .filter_map(|l| {
            let local = l.split_whitespace().nth(2)?;
            local.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_connection_that_died_silently_costs_a_second_not_a_hang() {
    let ns = NetNs::new("deadwarm");
    let dir = temp_dir("laptop");
    let (_o1, port1) = origin(&ns, &dir);
    let (_o2, port2) = origin(&ns, &dir);
    let (_server, server_addr, local, local_addr) = pair_in(&ns);
    let get = |port: u16| get_in(&ns, &local_addr, port);
    let (ok, out) = get(port1);
    assert!(ok && out.contains("hello from the origin"), "{out}");
    let warm = warm_connections(&ns, server_addr.port());
    // Every warm connection now goes silent; new connections still pass.
    silence(&ns, server_addr.port(), &warm);
    // A target reached lately (the tunnel goes at once), then one never reached (the
    // tunnel waits for the server's word): both are moved to a fresh connection.
    let (ok, out) = get(port1);
    assert!(
        ok && out.contains("hello from the origin"),
        "{out}\n{}",
        local.output()
    );
    let (ok, out) = get(port2);
    assert!(
        ok && out.contains("hello from the origin"),
        "{out}\n{}",
        local.output()
    );
    assert!(
        local.output().contains("had died silently")
            || local.output().contains("trying a fresh one"),
        "{}",
        local.output()
    );
}

/// Another network: when the machine's addresses change, the warm connections made on
/// the old one are dropped before the next tunnel finds them, the PAC file is fetched
/// again and the servers are checked again (not only every `server_check` while in
/// use), and tunnels go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_addresses_empties_the_pool() {
    let ns = NetNs::new("netchange");
    let dir = temp_dir("laptop-net");
    let (origin, port) = origin(&ns, &dir);
    std::fs::write(
        dir.join("proxy.pac"),
        "function FindProxyForURL(url, host) { return \"DIRECT\"; }\n",
    )
    .expect("pac");
    let (_server, server_addr) = server_in(&ns);
    // A second server, checked only every hour: a check it sees comes from the change.
    let (second, second_addr) = server_in(&ns);
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "local_address = \"127.0.0.1\"\nlocal_port = 0\nserver_check = \"1h\"\n\
             outbound_proxy = \"pac+http://127.0.0.1:{port}/proxy.pac\"\npac_refresh = \"1h\"\n\
             [[server]]\nserver = \"{server_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
             [[server]]\nserver = \"{second_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n"
        ),
    )
    .expect("config");
    let local = ns.spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_addr = local.listening().to_string();
    let get = || get_in(&ns, &local_addr, port);
    let (ok, out) = get();
    assert!(ok, "{out}");
    warm_connections(&ns, server_addr.port());
    let fetched = |o: &Proc| o.output().matches("GET /proxy.pac").count();
    assert_eq!(fetched(&origin), 1, "{}", origin.output());
    assert!(
        !second.output().contains("dial failed"),
        "{}",
        second.output()
    );
    let (ok, out) = ns.run("ip", &["addr", "add", "10.200.0.1/32", "dev", "lo"]);
    assert!(ok, "{out}");
    let said = local.wait_for("addresses changed");
    let dropped: usize = said
        .split(": ")
        .last()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped >= 1, "{said}");
    local.wait_for("the network changed, fetching it again");
    // The first fetch, at start, then the one the change made.
    origin.wait_for("GET /proxy.pac");
    origin.wait_for("GET /proxy.pac");
    // The check's request (a target the server refuses) reached the idle second server.
    second.wait_for("dial failed");
    let (ok, out) = get();
    assert!(ok && out.contains("hello from the origin"), "{out}");
}

/// A long tunnel whose hop to the server dies silently while it idles: TCP keepalive
/// (here `keepalive = "2s"`: probes 1 s apart, 4 unanswered) closes it within seconds —
/// the app sees its connection end, burrow-local says why — instead of holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tunnel_on_a_dead_hop_is_closed_with_its_reason() {
    let ns = NetNs::new("deadhop");
    let echo = ns.spawn(
        "python3",
        &[
            "-c",
            "import socket,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen()\n\
             print('port',s.getsockname()[1],flush=True)\nc,_=s.accept();c.sendall(c.recv(5))\n\
             time.sleep(600)",
        ],
        &[],
    );
    let echo_port: u16 = echo
        .wait_for("port ")
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .expect("the echo's port");
    let (_server, server_addr) = server_in(&ns);
    let dir = temp_dir("laptop-deadhop");
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{server_addr}\"\nmethod = \"{METHOD}\"\npassword = \"{PW}\"\n\
             local_address = \"127.0.0.1\"\nlocal_port = 0\nkeepalive = \"2s\"\n"
        ),
    )
    .expect("config");
    let local = ns.spawn(LOCAL, &["-c", cfg.to_str().expect("utf8")], &[]);
    let local_port = local.listening().port();
    // The app: SOCKS5 to the echo, one exchange, then it waits for the end.
    let app = ns.spawn(
        "python3",
        &[
            "-c",
            &format!(
                "import socket,time\nc=socket.create_connection(('127.0.0.1',{local_port}))\n\
                 c.sendall(b'\\x05\\x01\\x00');c.recv(2)\n\
                 c.sendall(b'\\x05\\x01\\x00\\x01\\x7f\\x00\\x00\\x01'+({echo_port}).to_bytes(2,'big'))\n\
                 c.recv(10);c.sendall(b'hello');print('echoed',c.recv(5),flush=True)\n\
                 t=time.time()\ntry:\n d=c.recv(100)\nexcept Exception as e:\n d=repr(e)\n\
                 print('ended after %.1f s: %r' % (time.time()-t,d),flush=True)"
            ),
        ],
        &[],
    );
    app.wait_for("echoed b'hello'");
    // Every connection to the server open now goes silent.
    let open = connections_to(&ns, server_addr.port());
    silence(&ns, server_addr.port(), &open);
    let ended = app.wait_for("ended after");
    let secs: f64 = ended
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(secs < 30.0, "{ended}\n{}", local.output());
    let said = local.wait_for("closed:");
    assert!(said.contains("timed out"), "{said}");
}

/// A VPN that takes the default route over (no address of this machine changes): the
/// warm connections made before it are dropped as after any change of network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_default_route_empties_the_pool() {
    let ns = NetNs::new("newroute");
    let dir = temp_dir("laptop-route");
    let (_o, port) = origin(&ns, &dir);
    let (_server, server_addr, local, local_addr) = pair_in(&ns);
    let (ok, out) = get_in(&ns, &local_addr, port);
    assert!(ok, "{out}");
    warm_connections(&ns, server_addr.port());
    let (ok, out) = ns.run("ip", &["route", "add", "default", "dev", "lo"]);
    assert!(ok, "{out}");
    let said = local.wait_for("default route changed");
    assert!(said.contains("warm connections dropped"), "{said}");
    let (ok, out) = get_in(&ns, &local_addr, port);
    assert!(ok && out.contains("hello from the origin"), "{out}");
}
