//! What asks a running program to read its config again: SIGHUP on Unix; on Windows,
//! which has no SIGHUP, a change of the config file itself (its modification time or
//! size, looked at every two seconds) — saving the file is the reload.

use std::path::PathBuf;
#[cfg(windows)]
use std::time::Duration;

/// The reload requests, one [`Trigger::next`] each.
pub struct Trigger {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(windows)]
    file: Option<PathBuf>,
    #[cfg(windows)]
    seen: Option<(std::time::SystemTime, u64)>,
}

/// How often the config file is looked at on Windows.
#[cfg(windows)]
const FILE_CHECK: Duration = Duration::from_secs(2);

impl Trigger {
    /// Listens for reload requests from now on; `config`: the file the program read.
    /// The error says why there is no reload (said once by the caller).
    #[cfg(unix)]
    pub fn new(_config: Option<PathBuf>) -> std::io::Result<Trigger> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Trigger {
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Listens for reload requests from now on; `config`: the file the program read.
    #[cfg(windows)]
    pub fn new(config: Option<PathBuf>) -> std::io::Result<Trigger> {
        let seen = config.as_deref().and_then(stamp);
        Ok(Trigger { file: config, seen })
    }

    /// The next request; `None` when no more can come.
    #[cfg(unix)]
    pub async fn next(&mut self) -> Option<()> {
        self.hup.recv().await
    }

    /// The next request; `None` when no more can come (no config file to watch).
    #[cfg(windows)]
    pub async fn next(&mut self) -> Option<()> {
        let file = self.file.clone()?;
        loop {
            tokio::time::sleep(FILE_CHECK).await;
            let now = stamp(&file);
            if now.is_some() && now != self.seen {
                self.seen = now;
                return Some(());
            }
        }
    }

    /// What asks for a reload here, for the log.
    pub fn what() -> &'static str {
        if cfg!(windows) {
            "a change of the config file"
        } else {
            "SIGHUP"
        }
    }
}

#[cfg(windows)]
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
