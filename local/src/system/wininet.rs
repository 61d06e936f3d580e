//! WinINet's per-user proxy settings (`HKCU\Software\Microsoft\Windows\CurrentVersion\
//! Internet Settings`: ProxyEnable, ProxyServer, ProxyOverride, AutoConfigURL), read,
//! written exactly (a value absent before is deleted again), announced to running
//! programs, and kept in a file while changed; and the per-user Run key for start at
//! logon.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use winreg::enums::HKEY_CURRENT_USER;
use winreg::RegKey;

const INTERNET_SETTINGS: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
const RUN: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";
/// burrow-local's own value under the Run key.
const RUN_VALUE: &str = "burrow-local";

/// The four values, each as it is (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub proxy_enable: Option<u32>,
    pub proxy_server: Option<String>,
    pub proxy_override: Option<String>,
    pub auto_config_url: Option<String>,
}

fn key() -> io::Result<RegKey> {
    let (k, _) = RegKey::predef(HKEY_CURRENT_USER).create_subkey(INTERNET_SETTINGS)?;
    Ok(k)
}

fn absent_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The settings now.
pub fn read() -> io::Result<Settings> {
    let k = key()?;
    Ok(Settings {
        proxy_enable: absent_is_none(k.get_value::<u32, _>("ProxyEnable"))?,
        proxy_server: absent_is_none(k.get_value::<String, _>("ProxyServer"))?,
        proxy_override: absent_is_none(k.get_value::<String, _>("ProxyOverride"))?,
        auto_config_url: absent_is_none(k.get_value::<String, _>("AutoConfigURL"))?,
    })
}

/// Whether "Automatically detect settings" is on: WinINet's DefaultConnectionSettings
/// (under `Internet Settings\Connections`), whose flags at byte 8 have 0x08 for it.
pub fn auto_detect() -> bool {
    RegKey::predef(HKEY_CURRENT_USER)
        .open_subkey(format!(r"{INTERNET_SETTINGS}\Connections"))
        .and_then(|k| k.get_raw_value("DefaultConnectionSettings"))
        .is_ok_and(|v| v.bytes.get(8).is_some_and(|flags| flags & 0x08 != 0))
}

/// Writes `s` exactly (absent values deleted) and tells running programs.
pub fn write(s: &Settings) -> io::Result<()> {
    let k = key()?;
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    match s.proxy_enable {
        Some(v) => k.set_value("ProxyEnable", &v)?,
        None => gone(k.delete_value("ProxyEnable"))?,
    }
    for (name, v) in [
        ("ProxyServer", &s.proxy_server),
        ("ProxyOverride", &s.proxy_override),
        ("AutoConfigURL", &s.auto_config_url),
    ] {
        match v {
            Some(v) => k.set_value(name, v)?,
            None => gone(k.delete_value(name))?,
        }
    }
    announce();
    Ok(())
}

/// INTERNET_OPTION_SETTINGS_CHANGED and INTERNET_OPTION_REFRESH: running browsers read
/// the settings again.
#[allow(unsafe_code)]
fn announce() {
    use windows_sys::Win32::Networking::WinInet::{
        InternetSetOptionW, INTERNET_OPTION_REFRESH, INTERNET_OPTION_SETTINGS_CHANGED,
    };
    for option in [INTERNET_OPTION_SETTINGS_CHANGED, INTERNET_OPTION_REFRESH] {
        // SAFETY: a null handle and a null buffer of length 0 are what these two options
        // take (they carry no data); nothing is read or written through a pointer.
        let ok = unsafe { InternetSetOptionW(std::ptr::null(), option, std::ptr::null(), 0) };
        if ok == 0 {
            tracing::debug!("InternetSetOption({option}) failed");
        }
    }
}

/// The settings that point at burrow-local on `local`: its PAC when `pac`, else the proxy
/// itself with plain names bypassed (WinINet's settings are replaced whole).
fn pointing_at(local: SocketAddr, pac: bool) -> Settings {
    if pac {
        Settings {
            proxy_enable: Some(0),
            proxy_server: None,
            proxy_override: None,
            auto_config_url: Some(format!("http://{local}/proxy.pac")),
        }
    } else {
        Settings {
            proxy_enable: Some(1),
            proxy_server: Some(local.to_string()),
            proxy_override: Some("<local>".into()),
            auto_config_url: None,
        }
    }
}

impl Settings {
    /// These settings pointing at burrow-local (see [`pointing_at`]).
    pub fn pointing_at(&self, local: SocketAddr, pac: bool) -> Settings {
        pointing_at(local, pac)
    }

    /// For the log.
    pub fn describe(&self) -> String {
        match (&self.auto_config_url, self.proxy_enable, &self.proxy_server) {
            (Some(url), _, _) => format!("AutoConfigURL {url}"),
            (None, Some(1), Some(p)) => format!("ProxyServer {p}"),
            _ => "no proxy".into(),
        }
    }

    /// As an `outbound_proxy` value towards `server_host`: the PAC (AutoConfigURL), else
    /// the proxy (ProxyServer, its `https=` or `http=` entry if it names one per scheme,
    /// `socks=` as SOCKS5) unless ProxyOverride covers the server, else `wpad` when
    /// "Automatically detect settings" is on (`auto_detect`), else `direct`. A proxy set
    /// by hand goes before auto-detection (Windows tries WPAD first and falls back to it;
    /// burrow-local takes the one that is certain).
    pub fn outbound_proxy(&self, server_host: &str, auto_detect: bool) -> String {
        if let Some(url) = self.auto_config_url.as_deref().filter(|u| !u.is_empty()) {
            return format!("pac+{url}");
        }
        let (Some(1), Some(server)) = (self.proxy_enable, self.proxy_server.as_deref()) else {
            return if auto_detect { "wpad" } else { "direct" }.into();
        };
        let overridden = self.proxy_override.as_deref().is_some_and(|list| {
            list.split(';').map(str::trim).any(|e| {
                e.eq_ignore_ascii_case("<local>") && !server_host.contains('.')
                    || crate::hosts::HostPattern::parse_domain_style(e)
                        .is_ok_and(|p| p.matches(server_host, 0))
            })
        });
        if overridden {
            return "direct".into();
        }
        let per_scheme = |name: &str| {
            server.split(';').find_map(|e| {
                let (k, v) = e.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        if !server.contains('=') {
            return format!("http://{}", server.trim());
        }
        if let Some(p) = per_scheme("https").or_else(|| per_scheme("http")) {
            return format!("http://{p}");
        }
        if let Some(p) = per_scheme("socks") {
            return format!("socks5://{p}");
        }
        "direct".into()
    }
}

/// Writes burrow-local's own value under the per-user Run key.
pub fn install_autostart(config: Option<&Path>) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    // No console window at logon: --background lets it go and logs to a file.
    let mut line = format!("\"{}\" --background", exe.display());
    if let Some(c) = config {
        let c = std::path::absolute(c).unwrap_or_else(|_| c.to_owned());
        line.push_str(&format!(" -c \"{}\"", c.display()));
    }
    let (k, _) = RegKey::predef(HKEY_CURRENT_USER)
        .create_subkey(RUN)
        .map_err(|e| format!("the Run key: {e}"))?;
    k.set_value(RUN_VALUE, &line)
        .map_err(|e| format!("the Run key: {e}"))?;
    Ok(format!(
        "burrow-local starts at logon: HKCU\\{RUN} {RUN_VALUE} = {line}"
    ))
}

/// Removes burrow-local's own value under the Run key, and nothing else.
pub fn uninstall_autostart() -> Result<String, String> {
    let (k, _) = RegKey::predef(HKEY_CURRENT_USER)
        .create_subkey(RUN)
        .map_err(|e| format!("the Run key: {e}"))?;
    match k.delete_value(RUN_VALUE) {
        Ok(()) => Ok(format!("removed HKCU\\{RUN} {RUN_VALUE}")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok("burrow-local was not set to start at logon".into())
        }
        Err(e) => Err(format!("the Run key: {e}")),
    }
}

/// Lets go of the console (FreeConsole): its window closes when no other program holds it.
#[allow(unsafe_code)]
pub fn detach_console() {
    // SAFETY: FreeConsole takes no arguments; afterwards writes to the old console
    // handles fail, and stderr is already redirected to the log file.
    let ok = unsafe { windows_sys::Win32::System::Console::FreeConsole() };
    if ok == 0 {
        tracing::debug!("FreeConsole: {}", std::io::Error::last_os_error());
    }
}
