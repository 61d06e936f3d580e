//! Config helpers shared by both roles: durations, secrets, config files (TOML, or a
//! shadowsocks JSON read as it is), listen addresses; `ss://` URLs are in `ssurl.rs`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::aead::Method;

/// Text that must never reach a log: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    /// A string; anything else is refused without echoing it (serde's own message
    /// would quote a number or a key written without quotes).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
        }
        d.deserialize_string(Text).map_err(|_| {
            serde::de::Error::custom("a secret must be a quoted string (the value is not shown)")
        })
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Flags both binaries share: the tunnel secret and logging.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SharedArgs {
    /// Password (a key is derived from it with EVP_BytesToKey).
    #[arg(
        short = 'k',
        long = "password",
        env = "SS_SERVER_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    /// Raw base64 key instead of a password.
    #[arg(long = "key", global = true)]
    pub key: Option<String>,
    /// Cipher: chacha20-ietf-poly1305 (default) or aes-256-gcm.
    #[arg(short = 'm', long = "method", global = true)]
    pub method: Option<String>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format: text or json.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Write the log (and every line the program prints on stderr) to this file,
    /// appended, instead of stderr.
    #[arg(long = "log-file", value_name = "PATH", global = true)]
    pub log_file: Option<std::path::PathBuf>,
}

/// Parses `"10s"`, `"500ms"`, `"5m"`, `"1h 30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like \"10s\" or \"5m\": {e}"))
}

/// serde helper for optional duration fields written as text.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

pub use crate::ssurl::{SsUrl, UrlError};

/// The master key from the method and either a password (EVP_BytesToKey) or a raw
/// base64 `key`; exactly one of the two.
pub fn master_key(
    method: &str,
    password: Option<&Secret>,
    key: Option<&Secret>,
) -> Result<crate::MasterKey, String> {
    let method: Method = method
        .parse()
        .map_err(|e: crate::aead::UnknownMethod| e.to_string())?;
    match (password, key) {
        (Some(_), Some(_)) => Err("give either a password or a key, not both".into()),
        (Some(p), None) if p.expose().is_empty() => Err("the password is empty".into()),
        (Some(p), None) => {
            crate::MasterKey::from_secret(method, p.expose()).map_err(|e| e.to_string())
        }
        (None, Some(k)) => {
            crate::MasterKey::from_base64(method, k.expose()).map_err(|e| e.to_string())
        }
        (None, None) => {
            Err("no password: use -k, SS_SERVER_PASSWORD or `password` in the config".into())
        }
    }
}

/// Shortest SIP004 password not warned about.
const SHORT_PASSWORD: usize = 16;

/// A warning for a SIP004 password short enough to guess offline from one recorded
/// stream (the key is one MD5 chain of it), or `None`.
pub fn weak_password(method: &str, password: Option<&Secret>) -> Option<String> {
    let p = password?;
    let sip004 = method.parse::<Method>().is_ok_and(|m| !m.is_2022());
    (sip004 && p.expose().chars().count() < SHORT_PASSWORD).then(|| {
        format!(
            "the password is shorter than {SHORT_PASSWORD} characters: anyone who records one \
             tunnel can try guesses offline, fast; use `burrow-server genkey` or a long \
             random password"
        )
    })
}

/// One line for a TOML error: `path:line:col: message`.
pub fn toml_error(path: &std::path::Path, text: &str, err: &toml::de::Error) -> String {
    let msg = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{}:{line}:{col}: {msg}", path.display())
        }
        None => format!("{}: {msg}", path.display()),
    }
}

/// Reads and parses a TOML config file; errors are one line naming file and position.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))
}

/// How a Shadowsocks JSON key maps onto ours: the key it becomes, and whether its value
/// is a number of seconds (made a duration).
pub type JsonKey = (&'static str, &'static str, bool);

/// A config file: TOML, or — when it starts with `{` — a Shadowsocks JSON config
/// (shadowsocks-rust's / -libev's `config.json`), read as it is through `keys`. Returns
/// the config and one line for each JSON key that is not used.
pub fn read_config<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    keys: &[JsonKey],
) -> Result<(T, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !text.trim_start().starts_with('{') {
        return toml::from_str(&text)
            .map(|c| (c, Vec::new()))
            .map_err(|e| toml_error(path, &text, &e));
    }
    let at = |e: serde_json::Error| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column());
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(at)?;
    let (ours, notes) = from_shadowsocks_json(json, keys, path);
    let config = serde_json::from_value(serde_json::Value::Object(ours))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((config, notes))
}

/// Maps a Shadowsocks JSON object onto our keys. `servers` (a list) becomes a list of
/// server tables when `keys` maps it (burrow-local: several servers), else gives its first
/// entry's keys; so does a `server` list of addresses.
fn from_shadowsocks_json(
    mut json: serde_json::Map<String, serde_json::Value>,
    keys: &[JsonKey],
    path: &std::path::Path,
) -> (serde_json::Map<String, serde_json::Value>, Vec<String>) {
    use serde_json::Value;
    let file = path.display();
    let mut notes = Vec::new();
    let lists = keys.iter().any(|(theirs, _, _)| *theirs == "servers");
    if let (true, Some(Value::Array(servers))) = (lists, json.get("servers")) {
        let tables = servers
            .iter()
            .filter_map(|entry| server_table(entry, &mut notes, &file))
            .collect();
        json.insert("servers".into(), Value::Array(tables));
        if json.remove("server").is_some() {
            notes.push(format!(
                "{file}: both `server` and `servers` are set; burrow uses `servers`"
            ));
        }
    } else if let Some(Value::Array(servers)) = json.remove("servers") {
        if servers.len() > 1 {
            notes.push(format!(
                "{file}: `servers` lists {}; burrow uses the first",
                servers.len()
            ));
        }
        if let Some(Value::Object(first)) = servers.into_iter().next() {
            for (k, v) in first {
                let k = match k.as_str() {
                    "address" => "server".to_owned(),
                    "port" => "server_port".to_owned(),
                    _ => k,
                };
                json.entry(k).or_insert(v);
            }
        }
    }
    let mut ours = serde_json::Map::new();
    for (k, v) in json {
        let v = match v {
            Value::Array(mut list) if k == "server" && !lists && !list.is_empty() => {
                notes.push(format!(
                    "{file}: `server` lists several addresses; burrow uses the first"
                ));
                list.swap_remove(0)
            }
            v => v,
        };
        match keys.iter().find(|(theirs, _, _)| *theirs == k) {
            Some((_, mine, true)) => match v.as_u64() {
                Some(secs) => {
                    ours.insert((*mine).to_owned(), Value::String(format!("{secs}s")));
                }
                None => notes.push(format!("{file}: `{k}` is not a number of seconds; ignored")),
            },
            Some((_, mine, false)) => {
                ours.insert((*mine).to_owned(), v);
            }
            None => notes.push(format!("{file}: `{k}` is not used by burrow; ignored")),
        }
    }
    (ours, notes)
}

/// One entry of sslocal's `servers` as one of our server tables (`server`, `server_port`,
/// `method`, `password`), with a line for each key not used.
fn server_table(
    entry: &serde_json::Value,
    notes: &mut Vec<String>,
    file: &impl std::fmt::Display,
) -> Option<serde_json::Value> {
    let Some(entry) = entry.as_object() else {
        notes.push(format!(
            "{file}: a `servers` entry is not an object; ignored"
        ));
        return None;
    };
    let mut table = serde_json::Map::new();
    for (k, v) in entry {
        let mine = match k.as_str() {
            "address" | "server" => "server",
            "port" | "server_port" => "server_port",
            "method" => "method",
            "password" => "password",
            "plugin" => "plugin",
            "plugin_opts" => "plugin_opts",
            _ => {
                notes.push(format!(
                    "{file}: `servers[].{k}` is not used by burrow; ignored"
                ));
                continue;
            }
        };
        table.insert(mine.to_owned(), v.clone());
    }
    Some(serde_json::Value::Object(table))
}

/// `host` with `default_port` unless it already carries a port (`h:p`, `[v6]:p`).
/// Text that is no host:port at all comes back as it is, for the caller's error to name.
pub fn with_port(host: &str, default_port: u16) -> String {
    crate::HostPort::parse(host, Some(default_port))
        .map_or_else(|_| host.to_owned(), |hp| hp.to_string())
}

/// A listen address from text (`host:port`); the error names `what` and the text.
pub fn listen_addr(what: &str, text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            // An ss:// URL given where an address goes carries a password: not echoed.
            if text.trim_start().starts_with("ss://") {
                format!("{what}: an ss:// URL is not host:port")
            } else {
                format!("{what} {text:?} is not host:port")
            }
        })
}

/// Every named duration must be above zero.
pub fn check_timeouts(timeouts: &[(&str, Duration)]) -> Result<(), String> {
    match timeouts.iter().find(|(_, d)| d.is_zero()) {
        Some((name, _)) => Err(format!("{name} must be above zero")),
        None => Ok(()),
    }
}

/// Compares secrets in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
