//! The operating system's own proxy settings: what `system_proxy = true` points at
//! burrow-local while it runs (and gives back exactly as they were when it stops, or at
//! the next start after a crash), and what `outbound_proxy = "system"` reads as the way
//! to the corporate proxy. Windows: WinINet's per-user settings (`wininet.rs`); Linux:
//! GNOME's (gsettings) when present; elsewhere: nothing to set, said once.

#[cfg(unix)]
mod gnome;
#[cfg(windows)]
mod wininet;

use std::net::SocketAddr;
use std::path::PathBuf;

/// The settings as they were before burrow-local changed them, given back on drop.
pub struct SystemProxy {
    #[cfg(windows)]
    before: wininet::Settings,
    #[cfg(unix)]
    before: gnome::Settings,
    backup: PathBuf,
}

/// Where the settings from before are kept while burrow-local runs, so that a run after
/// a crash finds them: `%LOCALAPPDATA%\burrow` on Windows, `$XDG_STATE_HOME/burrow` (or
/// `~/.local/state/burrow`) elsewhere.
pub fn state_dir() -> PathBuf {
    let base = if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
    } else {
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
    };
    base.unwrap_or_else(std::env::temp_dir).join("burrow")
}

fn backup_path() -> PathBuf {
    state_dir().join("system-proxy-before.json")
}

/// The settings from before kept in `path`, if a run left them there.
fn read_backup<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Keeps `s` in `path` (written whole, then renamed into place: a crash leaves the old
/// file or the new one, never half of one).
fn write_backup<T: serde::Serialize>(path: &std::path::Path, s: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(s).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, path)
}

#[cfg(windows)]
use wininet as os;

#[cfg(unix)]
use gnome as os;

/// Where apps on this machine reach a listener on `local` (every address: loopback).
fn on_loopback(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], local.port()))
        }
        ip if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, local.port()))
        }
        _ => local,
    }
}

/// At every start: a run that set the system's proxy and did not stop cleanly (a crash,
/// a kill) left the settings from before in the state folder; they are given back now,
/// whether or not this run sets them again.
pub fn recover() {
    let backup = backup_path();
    if let Some(left) = read_backup::<os::Settings>(&backup) {
        match os::write(&left) {
            Ok(()) => {
                let _ = std::fs::remove_file(&backup);
                tracing::warn!(
                    "the system proxy settings a previous run changed were given back \
                     (it did not stop cleanly)"
                )
            }
            Err(e) => {
                tracing::warn!("giving back the system proxy settings a previous run left: {e}")
            }
        }
    }
}

impl SystemProxy {
    /// Points the system's proxy settings at `local` (its `/proxy.pac` when `pac`);
    /// `None` (said in the log) where there is nothing to set.
    pub fn set(local: SocketAddr, pac: bool) -> Option<SystemProxy> {
        let backup = backup_path();
        let before = match os::read() {
            Ok(s) => s,
            #[cfg(unix)]
            Err(e) if e.kind() != std::io::ErrorKind::TimedOut => {
                tracing::warn!(
                    "system_proxy: no system proxy settings to set here ({e}; Windows' \
                     WinINet, or GNOME's through gsettings); point apps at burrow-local by hand"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(
                    "system_proxy: reading the system's proxy settings: {e}; left alone"
                );
                return None;
            }
        };
        if let Err(e) = write_backup(&backup, &before) {
            tracing::warn!(
                "system_proxy: cannot keep the settings from before in {}: {e}; left alone",
                backup.display()
            );
            return None;
        }
        let ours = before.pointing_at(on_loopback(local), pac);
        if let Err(e) = os::write(&ours) {
            tracing::warn!("system_proxy: setting the system's proxy: {e}");
            let _ = os::write(&before);
            let _ = std::fs::remove_file(&backup);
            return None;
        }
        tracing::info!(
            "system proxy set to burrow-local ({}); given back when it stops",
            ours.describe()
        );
        Some(SystemProxy { before, backup })
    }

    /// Gives the settings back now.
    pub fn restore(self) {
        drop(self);
    }
}

impl Drop for SystemProxy {
    fn drop(&mut self) {
        match os::write(&self.before) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.backup);
                tracing::info!("system proxy settings given back as they were");
            }
            Err(e) => tracing::warn!(
                "giving back the system proxy settings: {e}; the next start tries again ({})",
                self.backup.display()
            ),
        }
    }
}

/// `outbound_proxy = "system"`: the corporate proxy as this machine's settings name it, as
/// an `outbound_proxy` value (`pac+http://…`, a proxy list, or `direct`) — the settings
/// from before burrow-local's own `system_proxy`, when it set them. Windows: WinINet;
/// elsewhere GNOME's when present and not "none". `None`: the `*_PROXY` variables decide,
/// as when nothing is written.
pub fn outbound_proxy(server_host: &str) -> Result<Option<String>, String> {
    #[cfg(windows)]
    {
        let s = match read_backup::<wininet::Settings>(&backup_path()) {
            Some(before) => before,
            None => wininet::read().map_err(|e| {
                format!("outbound_proxy = \"system\": reading WinINet's settings: {e}")
            })?,
        };
        Ok(Some(s.outbound_proxy(server_host, wininet::auto_detect())))
    }
    #[cfg(unix)]
    {
        let _ = server_host;
        let s = match read_backup::<gnome::Settings>(&backup_path()) {
            Some(before) => before,
            None => match gnome::read() {
                Ok(now) => now,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(format!(
                        "outbound_proxy = \"system\": reading GNOME's settings: {e}"
                    ))
                }
                // No GNOME settings here: the variables decide.
                Err(_) => return Ok(None),
            },
        };
        Ok(s.outbound_proxy())
    }
}

/// `burrow-local install --autostart`: starts at logon for this user (no admin).
pub fn install_autostart(config: Option<&std::path::Path>) -> Result<String, String> {
    #[cfg(windows)]
    {
        wininet::install_autostart(config)
    }
    #[cfg(not(windows))]
    {
        let _ = config;
        Err(
            "start at logon is set up by burrow-local on Windows only; on Linux use a \
             systemd user unit (systemctl --user) or your desktop's autostart"
                .into(),
        )
    }
}

/// `burrow-local uninstall`: removes exactly what `install` wrote.
pub fn uninstall_autostart() -> Result<String, String> {
    #[cfg(windows)]
    {
        wininet::uninstall_autostart()
    }
    #[cfg(not(windows))]
    {
        Err("nothing to uninstall here (start at logon is burrow-local's on Windows only)".into())
    }
}

/// Where `--background` logs when no --log-file is given: %LOCALAPPDATA%\burrow on
/// Windows, `$XDG_STATE_HOME/burrow` (or ~/.local/state/burrow) elsewhere.
pub fn default_log_file() -> Option<std::path::PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let dir = if cfg!(windows) {
        std::path::PathBuf::from(env("LOCALAPPDATA")?)
    } else {
        match env("XDG_STATE_HOME") {
            Some(d) => d.into(),
            None => std::path::PathBuf::from(env("HOME")?).join(".local/state"),
        }
    };
    Some(dir.join("burrow").join("burrow-local.log"))
}

/// `--background`: lets go of the console window this program was started with (on
/// Windows; nothing elsewhere), so that a start at logon leaves no window open.
pub fn detach_console() {
    #[cfg(windows)]
    wininet::detach_console();
}
