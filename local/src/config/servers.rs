//! The servers: from `-s`, or the ones the file lists, each with its key.

use burrow_common::config::{master_key, Secret, SsUrl};
use burrow_common::hostport::HostPort;

use super::{defaults, Cli, RawConfig, RawServer, ServerEntry, ServerSetting};

/// The servers the config file lists: `server` (one, an array, or `[[server]]` tables),
/// or `[[server_list]]` (the earlier name) — not both.
pub(super) fn written_servers(file: &RawConfig) -> Result<Vec<RawServer>, String> {
    let listed: Vec<RawServer> = match &file.server {
        Some(ServerSetting::Many(list)) => list
            .iter()
            .map(|e| match e {
                ServerEntry::Address(a) => RawServer::at(a),
                ServerEntry::Table(t) => t.clone(),
            })
            .collect(),
        Some(ServerSetting::One(server)) => vec![RawServer::at(server)],
        None => Vec::new(),
    };
    match (listed.is_empty(), file.servers.is_empty()) {
        (false, false) => Err(
            "both `server` and `[[server_list]]` are set: list the servers in one of them".into(),
        ),
        (true, true) => {
            Err("no server: use -s HOST:PORT, -s ss://… or `server` in the config".into())
        }
        (false, true) => Ok(listed),
        (true, false) => Ok(file.servers.clone()),
    }
}

/// The servers, each `(host, port, key)`: `-s` (repeatable), else the config's (see
/// [`written_servers`]). An `ss://` URL carries its own method and password; otherwise
/// the entry's, else `-m`/`-k`, else the top-level ones.
pub(super) fn server_entries(
    cli: &Cli,
    file: &RawConfig,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, u16, burrow_common::MasterKey, RawServer)>, String> {
    let raw: Vec<RawServer> = if !cli.server_addr.is_empty() {
        cli.server_addr.iter().map(|s| RawServer::at(s)).collect()
    } else {
        written_servers(file)?
    };
    let mut out = Vec::with_capacity(raw.len());
    for mut entry in raw {
        let text = entry.server.trim().to_owned();
        let url = if text.starts_with("ss://") {
            Some(SsUrl::parse(&text).map_err(|e| format!("server {e}"))?)
        } else {
            None
        };
        // An ss:// URL's `plugin=name;opts` is the entry's plugin unless it names one.
        if let Some(p) = url.as_ref().and_then(|u| u.plugin.as_ref()) {
            if entry.plugin.is_none() {
                let (name, opts) = p.split_once(';').unwrap_or((p, ""));
                entry.plugin = Some(name.to_owned());
                entry.plugin_opts = Some(opts.to_owned()).filter(|o| !o.is_empty());
            }
        }
        let (host, port) = match &url {
            Some(u) => (u.host.clone(), u.port),
            None => {
                let port = entry.server_port.or(file.server_port);
                let hp = HostPort::parse(&text, Some(port.unwrap_or(defaults::SERVER_PORT)))
                    .map_err(|_| format!("server {text:?} is not host:port"))?;
                (hp.host, hp.port)
            }
        };
        let method = cli
            .shared
            .method
            .clone()
            .or(url.as_ref().map(|u| u.method.name().to_owned()))
            .or(entry.method.clone())
            .or(file.method.clone())
            .unwrap_or_else(|| defaults::METHOD.into());
        let (password, key) = match (&cli.shared.key, &cli.shared.password, &url) {
            (Some(k), _, _) => (None, Some(Secret::new(k.clone()))),
            (None, Some(p), _) => (Some(Secret::new(p.clone())), None),
            (None, None, Some(u)) => (Some(u.password.clone()), None),
            (None, None, None) if entry.password.is_some() || entry.key.is_some() => {
                (entry.password.clone(), entry.key.clone())
            }
            (None, None, None) => (file.password.clone(), file.key.clone()),
        };
        let key = master_key(&method, password.as_ref(), key.as_ref()).map_err(|e| {
            if out.is_empty() {
                e
            } else {
                // Its host and port only: an ss:// URL carries the password.
                format!(
                    "server {}: {e}",
                    burrow_common::HostPort {
                        host: host.clone(),
                        port
                    }
                )
            }
        })?;
        warnings.extend(burrow_common::config::weak_password(
            &method,
            password.as_ref(),
        ));
        out.push((host, port, key, entry));
    }
    Ok(out)
}
