//! Test kit: real processes with readiness from their `listening on` line, and loopback
//! targets (HTTP source/sink, echo, half-close, connection counter) on ports from the OS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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

    /// Waits until a line containing `needle` has been printed, whether or not a
    /// [`Proc::wait_for`] has gone past it already; panics with everything printed if
    /// none comes.
    pub fn wait_seen(&self, needle: &str) {
        let end = Instant::now() + READY_TIMEOUT;
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < end,
                "{}: no line with {needle:?}; output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
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

/// The address of the first `listening on ADDR` line written to the log file `path` (a
/// program started with --log-file or --background), waited for.
pub fn listening_in_file(path: &std::path::Path) -> SocketAddr {
    let end = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            let rest = &l[l.find("listening on ")? + "listening on ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < end,
            "no `listening on` line in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
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

mod netns;
mod observe;
mod socks;
mod targets;
pub use netns::*;
pub use observe::*;
pub use socks::*;
pub use targets::*;
