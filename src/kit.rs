//! Test kit: real processes with readiness from their `listening on` line, and loopback
//! targets (HTTP source/sink, echo, half-close, connection counter) on ports from the OS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::{TcpListener, TcpStream};

/// Generous: the machine may be loaded.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process, killed when dropped; its stdout and stderr lines are kept.
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    rx: mpsc::Receiver<String>,
    name: String,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `program args…` with extra `env`.
    pub fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.env_remove("SS_SERVER_PASSWORD").env_remove("RUST_LOG");
        // Tests say which proxy they want; none comes from the machine's environment.
        for var in [
            "ALL_PROXY",
            "SOCKS_PROXY",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "NO_PROXY",
            "UPSTREAM_HOST",
            "LISTEN_PORT",
        ] {
            cmd.env_remove(var).env_remove(var.to_ascii_lowercase());
        }
        // The tests' targets are on loopback and their servers allow it: burrow-local
        // tunnels them (by default it would dial such addresses itself). Tests of that
        // default say so with their own `env`.
        cmd.env("BURROW_PRIVATE_TARGETS", "tunnel");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                    let _ = tx.send(line);
                }
            }));
        }
        Proc {
            child,
            lines,
            rx,
            name: program.rsplit('/').next().unwrap_or(program).to_owned(),
            readers,
        }
    }

    /// Waits for a line containing `needle`; panics with everything printed if none comes.
    pub fn wait_for(&self, needle: &str) -> String {
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no line with {needle:?}; output:\n{}",
                    self.name,
                    self.output()
                ),
            }
        }
    }

    /// Waits for `listening on ADDR` and returns ADDR.
    pub fn listening(&self) -> SocketAddr {
        let line = self.wait_for("listening on ");
        let rest = &line[line.find("listening on ").unwrap_or(0) + "listening on ".len()..];
        let addr = rest.split_whitespace().next().unwrap_or_default();
        addr.parse()
            .unwrap_or_else(|_| panic!("{}: bad listening line {line:?}", self.name))
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit (up to `READY_TIMEOUT`, then kills it) and for its output to be
    /// read to the end; returns the exit code (`None` if it had to be killed).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let end = Instant::now() + READY_TIMEOUT;
        let mut code = None;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                code = status.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if code.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        code
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago, for peers that cannot be told to use port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Deterministic pseudo-random bytes (xorshift), so bodies can be checked without storing them.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Number of open descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A small HTTP/1.1 origin: `GET /bytes/N` answers N pattern bytes (seed N), `GET /close/N`
/// the same close-delimited (no length),
/// `POST /sha256` answers the hex SHA-256 of the body, anything else "hello from burrow".
/// One request per connection. Returns its address.
pub async fn http_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind http target");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = http_answer(conn).await;
            });
        }
    });
    addr
}

async fn http_answer(conn: TcpStream) -> std::io::Result<()> {
    let mut r = TokioBufReader::new(conn);
    let mut request_line = String::new();
    r.read_line(&mut request_line).await?;
    let mut length = 0usize;
    let mut expect_continue = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("expect:") && lower.contains("100-continue") {
            expect_continue = true;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = path
        .rsplit_once("://")
        .map_or(path, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let body = if method == "POST" && path == "/sha256" {
        if expect_continue {
            r.get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let mut hasher = Sha256::new();
        let mut left = length;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = r.read(&mut buf[..left.min(64 * 1024)]).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n;
        }
        hex::encode(hasher.finalize()).into_bytes()
    } else if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        pattern(n, n as u64)
    } else {
        b"hello from burrow\n".to_vec()
    };
    let conn = r.get_mut();
    if let Some(n) = path
        .strip_prefix("/close/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        // Close-delimited: no length, the end of the body is the end of the connection.
        conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .await?;
        conn.write_all(&pattern(n, n as u64)).await?;
        return conn.shutdown().await;
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(&body).await?;
    conn.shutdown().await
}

/// A listener that only counts the connections it accepts (and holds them open).
pub struct Counter {
    /// Its address.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl Counter {
    /// Starts one on `bind` (e.g. "127.0.0.1:0").
    pub async fn start(bind: &str) -> Counter {
        let listener = TcpListener::bind(bind).await.expect("bind counter");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Counter { addr, count }
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// A web server answering every request with `body` (200, `content_type`), counting the
/// requests it answered: a PAC server, say.
pub async fn text_origin(
    body: String,
    content_type: &'static str,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (body, count) = (body.clone(), count.clone());
            tokio::spawn(async move {
                let mut r = TokioBufReader::new(conn);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let mut conn = r.into_inner();
                if conn.write_all(head.as_bytes()).await.is_ok()
                    && conn.write_all(body.as_bytes()).await.is_ok()
                {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, served)
}

/// A target that reads until EOF, then answers `got N bytes, sha256 H` and closes:
/// only correct if half-close travels end to end.
pub async fn half_close_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if conn.read_to_end(&mut all).await.is_ok() {
                    let answer = format!("got {} bytes, sha256 {}", all.len(), sha256_hex(&all));
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects through a SOCKS5 proxy (no auth) to `target`; returns the stream and the
/// reply code (0 = success).
pub async fn socks5_connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> std::io::Result<(TcpStream, u8)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(&[5, 1, 0]).await?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await?;
    let mut req = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            req.push(3);
            req.push(host.len() as u8);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        _ => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            n[0] as usize + 2
        }
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await?;
    Ok((s, head[1]))
}

/// A network namespace with only its own loopback up, removed on drop. Programs started
/// in it cannot send a packet off this machine, whatever they try to reach.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `burrow-<tag>-<pid>` and brings its loopback up.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("burrow-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success());
        assert_eq!(
            ok.ok(),
            Some(true),
            "ip netns add {name} (needs root and iproute2)"
        );
        let ok = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "loopback up in {name}");
        NetNs { name }
    }

    /// Starts `program args…` inside the namespace.
    pub fn spawn(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        let mut p = Proc::spawn("ip", &all, env);
        p.name = program.rsplit('/').next().unwrap_or(program).to_owned();
        p
    }

    /// Runs a command inside the namespace to its end; returns (success, output).
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        let mut p = Proc::spawn("ip", &all, &[]);
        let code = p.wait_exit();
        (code == Some(0), p.output())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Readiness for peers that print nothing when ready: the first successful connect.
pub fn wait_for_port(addr: SocketAddr) {
    let end = Instant::now() + READY_TIMEOUT;
    while Instant::now() < end {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

/// A target that records what each connection sends (and counts connections); with a
/// greeting it writes that first, so the server has something to answer with.
pub struct Recorder {
    /// Its address.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// What one connection sent, and whether it has closed.
type Received = (Vec<u8>, bool);

impl Recorder {
    /// Starts one on `bind`.
    pub async fn start(bind: &str, greeting: &'static [u8]) -> Recorder {
        let listener = TcpListener::bind(bind).await.expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (count.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let i = c.fetch_add(1, Ordering::SeqCst);
                r.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Vec::new(), false));
                let r = r.clone();
                tokio::spawn(async move {
                    let _ = conn.write_all(greeting).await;
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut all = r.lock().unwrap_or_else(|p| p.into_inner());
                        all[i].0.extend_from_slice(&buf[..n]);
                    }
                    r.lock().unwrap_or_else(|p| p.into_inner())[i].1 = true;
                });
            }
        });
        Recorder {
            addr,
            count,
            received,
        }
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// An HTTP peer that answers every request head (up to its blank line) with `reply`,
    /// keeping the connection: a proxy that always asks for credentials, say, or a
    /// server that always redirects. Records what each connection sent, as
    /// [`Recorder::start`].
    pub async fn answering(bind: &str, reply: &'static [u8]) -> Recorder {
        let listener = TcpListener::bind(bind).await.expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (count.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let i = c.fetch_add(1, Ordering::SeqCst);
                r.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Vec::new(), false));
                let r = r.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut b = [0u8; 1];
                    while conn.read(&mut b).await.unwrap_or(0) == 1 {
                        seen.push(b[0]);
                        r.lock().unwrap_or_else(|p| p.into_inner())[i].0.push(b[0]);
                        if seen.ends_with(b"\r\n\r\n") {
                            seen.clear();
                            if conn.write_all(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                    r.lock().unwrap_or_else(|p| p.into_inner())[i].1 = true;
                });
            }
        });
        Recorder {
            addr,
            count,
            received,
        }
    }

    /// Waits (up to `READY_TIMEOUT`) until at least `n` connections were accepted; returns
    /// the count then.
    pub fn wait_count(&self, n: usize) -> usize {
        let end = Instant::now() + READY_TIMEOUT;
        while self.count() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.count()
    }

    /// What connection `i` has sent so far.
    pub fn received(&self, i: usize) -> Vec<u8> {
        let all = self.received.lock().unwrap_or_else(|p| p.into_inner());
        all.get(i).map(|r| r.0.clone()).unwrap_or_default()
    }

    /// Everything connection `i` sent, once it has closed (waits up to `READY_TIMEOUT`).
    pub fn received_until_closed(&self, i: usize) -> Vec<u8> {
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some((data, true)) = self
                .received
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(i)
            {
                return data.clone();
            }
            assert!(
                Instant::now() < end,
                "connection {i} to the recorder never closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits (polling, up to `READY_TIMEOUT`) until `pid` has at most `limit` descriptors open;
/// returns the last count seen.
pub fn wait_fds_at_most(pid: u32, limit: usize) -> usize {
    let end = Instant::now() + READY_TIMEOUT;
    loop {
        let n = fd_count(pid);
        if n <= limit || Instant::now() > end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `raw` to `addr`, reads until the peer closes (or 20 s pass), returns what came
/// back as text.
pub async fn send_raw(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A UDP echo on loopback: every datagram goes back to its sender. Also counts them.
pub async fn udp_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp echo");
    let addr = sock.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, seen)
}

/// A SOCKS5 UDP association through `proxy`: the control connection (keep it open), a
/// UDP socket of the app's, and the relay address to send to.
pub struct Socks5Udp {
    /// The control connection: the association lives as long as it.
    pub control: TcpStream,
    /// The app's socket.
    pub socket: tokio::net::UdpSocket,
    /// Where the proxy takes datagrams.
    pub relay: SocketAddr,
}

impl Socks5Udp {
    /// UDP ASSOCIATE through `proxy`; `Err` with the reply code if refused.
    pub async fn associate(proxy: SocketAddr) -> Result<Socks5Udp, u8> {
        let io = |_| 255u8;
        let mut control = TcpStream::connect(proxy).await.map_err(io)?;
        control.write_all(&[5, 1, 0]).await.map_err(io)?;
        let mut m = [0u8; 2];
        control.read_exact(&mut m).await.map_err(io)?;
        control
            .write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
            .await
            .map_err(io)?;
        let mut head = [0u8; 4];
        control.read_exact(&mut head).await.map_err(io)?;
        if head[1] != 0 {
            return Err(head[1]);
        }
        let relay = match head[3] {
            1 => {
                let mut b = [0u8; 6];
                control.read_exact(&mut b).await.map_err(io)?;
                SocketAddr::from(([b[0], b[1], b[2], b[3]], u16::from_be_bytes([b[4], b[5]])))
            }
            _ => return Err(254),
        };
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(io)?;
        Ok(Socks5Udp {
            control,
            socket,
            relay,
        })
    }

    /// Sends `data` to `to` through the association.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) {
        let mut d = socks5_udp_header(to);
        d.extend_from_slice(data);
        self.socket.send_to(&d, self.relay).await.expect("send");
    }

    /// The next datagram back: who sent it and its data; `None` after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let d = &buf[..n];
        if n < 10 || d[3] != 1 {
            return None;
        }
        let from = SocketAddr::from(([d[4], d[5], d[6], d[7]], u16::from_be_bytes([d[8], d[9]])));
        Some((from, d[10..].to_vec()))
    }
}

/// The SOCKS5 UDP request header for an IPv4 destination.
pub fn socks5_udp_header(to: SocketAddr) -> Vec<u8> {
    let mut d = vec![0, 0, 0, 1];
    match to.ip() {
        std::net::IpAddr::V4(ip) => d.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(_) => panic!("IPv4 destinations only"),
    }
    d.extend_from_slice(&to.port().to_be_bytes());
    d
}

/// One sample of a metric from a Prometheus endpoint: the value on the line that starts
/// with `name` (labels included), `None` if there is no such line.
pub async fn metric(endpoint: SocketAddr, name: &str) -> Option<u64> {
    let mut c = TcpStream::connect(endpoint).await.ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// Polls `name` until `ok` says so (60 s at most); its last value.
pub async fn metric_until(endpoint: SocketAddr, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let v = metric(endpoint, name).await.unwrap_or(0);
        if ok(v) || Instant::now() > end {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
