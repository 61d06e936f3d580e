//! `burrow-server url` and `genkey`: the ss:// URLs clients are given.

use burrow_common::aead::Method;
use burrow_common::config::{read_config, Secret};

use super::{load, Cli, RawConfig, SHADOWSOCKS_KEYS};

/// `url [USER] [--host H] [--qr]`: the user's ss:// URL (and QR code), from the config as
/// written (the password, not the key derived from it).
pub fn user_url(
    cli: &Cli,
    user: Option<&str>,
    host: Option<&str>,
    qr: bool,
) -> Result<String, String> {
    let loaded = load(cli)?;
    let (file, _): (RawConfig, Vec<String>) = match &cli.config {
        Some(p) => read_config(p, SHADOWSOCKS_KEYS)?,
        None => (RawConfig::default(), Vec::new()),
    };
    let method = loaded.settings.key.method();
    let secret = match user {
        Some(name) => {
            let u = file
                .user
                .iter()
                .find(|u| u.name.trim() == name)
                .ok_or_else(|| format!("no [[user]] named {name:?} in the config"))?;
            u.password.clone().or(u.key.clone())
        }
        None if !file.user.is_empty() => {
            return Err("this config has [[user]] entries: name one".into())
        }
        None => cli
            .shared
            .password
            .clone()
            .map(Secret::new)
            .or(cli.shared.key.clone().map(Secret::new))
            .or(file.password.clone())
            .or(file.key.clone()),
    }
    .ok_or("no password or key to put in the URL")?;
    let host = match host {
        Some(h) => burrow_common::hostport::unbracket(h).to_owned(),
        None if loaded.listen.ip().is_unspecified() => {
            return Err(format!(
                "the server listens on {}: give --host, the address phones reach it at",
                loaded.listen
            ))
        }
        None => loaded.listen.ip().to_string(),
    };
    let url = burrow_common::config::SsUrl {
        method,
        password: secret,
        host,
        port: loaded.listen.port(),
        plugin: None,
    }
    .to_url();
    if !qr {
        return Ok(format!("{url}\n"));
    }
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    let picture = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    Ok(format!("{url}\n{picture}\n"))
}

/// `genkey`: a random 32-byte key (base64) usable as password or key, and its URL.
pub fn genkey(method: &str, server: &str) -> Result<String, String> {
    use base64::Engine as _;
    let method: Method = method
        .parse()
        .map_err(|e: burrow_common::aead::UnknownMethod| e.to_string())?;
    let burrow_common::HostPort { host, port } = server
        .parse()
        .map_err(|_| format!("{server:?} is not host:port"))?;
    let mut raw = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut raw);
    let password = base64::engine::general_purpose::STANDARD.encode(raw);
    let url = burrow_common::config::SsUrl {
        method,
        password: Secret::new(password.clone()),
        host,
        port,
        plugin: None,
    };
    Ok(format!(
        "method:   {method}\npassword: {password}\nurl:      {}\n",
        url.to_url()
    ))
}
