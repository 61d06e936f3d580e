//! A SIP003 plugin process: started with `SS_REMOTE_HOST`/`SS_REMOTE_PORT` (where it
//! forwards to), `SS_LOCAL_HOST`/`SS_LOCAL_PORT` (where it listens) and
//! `SS_PLUGIN_OPTIONS`, restarted when it dies (backing off), stopped with us.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A plugin ran at least this long: its next restart is quick again.
const RAN_WELL: Duration = Duration::from_secs(60);
/// The longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One plugin process and its two ends.
#[derive(Debug)]
pub struct Process {
    /// The program (a name on PATH, or a path).
    pub program: String,
    /// `SS_PLUGIN_OPTIONS`.
    pub opts: Option<String>,
    /// Where the plugin listens (`SS_LOCAL_*`).
    pub local: SocketAddr,
    /// Where it forwards to (`SS_REMOTE_*`).
    pub remote: (String, u16),
}

impl Process {
    /// A plugin that listens on `local` and forwards to `remote`.
    pub fn new(program: &str, opts: Option<&str>, local: SocketAddr, remote: (&str, u16)) -> Self {
        Process {
            program: program.to_owned(),
            opts: opts.map(str::to_owned),
            local,
            remote: (remote.0.to_owned(), remote.1),
        }
    }

    /// A loopback address with a port free now, for a plugin to listen on.
    pub fn free_local() -> io::Result<SocketAddr> {
        std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()
    }

    fn spawn(&self) -> io::Result<Child> {
        let mut cmd = Command::new(&self.program);
        cmd.env("SS_REMOTE_HOST", &self.remote.0)
            .env("SS_REMOTE_PORT", self.remote.1.to_string())
            .env("SS_LOCAL_HOST", self.local.ip().to_string())
            .env("SS_LOCAL_PORT", self.local.port().to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(o) = &self.opts {
            cmd.env("SS_PLUGIN_OPTIONS", o);
        }
        cmd.spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("plugin {}: {e}", self.program)))
    }

    /// Starts the plugin and waits (up to `within`) until it accepts connections; then
    /// keeps it running until `stop` in a task of its own. An error if it cannot be
    /// started at all (not found, not executable).
    pub async fn start(
        self: Arc<Self>,
        within: Duration,
        stop: CancellationToken,
    ) -> io::Result<()> {
        let child = self.spawn()?;
        tracing::info!(
            "plugin {}: SS_LOCAL {}, SS_REMOTE {}:{}",
            self.program,
            self.local,
            self.remote.0,
            self.remote.1
        );
        tokio::spawn(self.clone().keep(child, stop));
        let ready = async {
            while tokio::net::TcpStream::connect(self.local).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if crate::timeout::within(within, ready).await.is_none() {
            tracing::warn!(
                "plugin {} does not accept on {} after {within:?}",
                self.program,
                self.local
            );
        }
        Ok(())
    }

    async fn keep(self: Arc<Self>, mut child: Child, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = tokio::time::Instant::now();
            tokio::select! {
                status = child.wait() => {
                    let said = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    if started.elapsed() >= RAN_WELL {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!("plugin {} ended ({said}); starting it again in {backoff:?}", self.program);
                }
                _ = stop.cancelled() => {
                    let _ = child.start_kill();
                    let _ = crate::timeout::within(Duration::from_secs(5), child.wait()).await;
                    return;
                }
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                match self.spawn() {
                    Ok(c) => {
                        child = c;
                        break;
                    }
                    Err(e) => tracing::warn!("{e}; trying again in {backoff:?}"),
                }
            }
        }
    }
}
