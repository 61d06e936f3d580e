//! The hop to the server: the corporate proxy (written, from the environment, or chosen
//! by a PAC file) and the transport.

use std::sync::Arc;

use crate::outbound::hop::{Outbound, Ways, WsTransport};
use crate::outbound::proxy;
use crate::outbound::proxy::http_connect::Scheme;
use burrow_common::hostport::bracket;

use crate::hosts::HostPattern;
use crate::outbound::tls::{TlsTarget, Trust};
use crate::settings::PacSetting;

use super::{defaults, Cli, OneOrMany, RawConfig};

/// The hop to the server: proxy from the command line, else the file, else the
/// environment; transport from the command line, else the file.
pub(super) fn outbound(
    cli: &Cli,
    file: &RawConfig,
    server: (&str, u16),
) -> Result<(Outbound, Option<PacSetting>), String> {
    let server_host = server.0;
    let written = match &cli.outbound_proxy {
        Some(s) => Some(vec![s.clone()]),
        None => file.outbound_proxy.as_ref().map(OneOrMany::to_vec),
    };
    // "system": what this machine's own settings say (Windows: WinINet; elsewhere the
    // *_PROXY variables, as when nothing is written).
    let written = match written.as_deref() {
        Some([one]) if one.trim().eq_ignore_ascii_case("system") => {
            let found = crate::system::outbound_proxy(server_host)?;
            if let Some(way) = &found {
                tracing::info!("outbound_proxy = \"system\": this machine's settings say {way:?}");
            }
            found.map(|w| vec![w])
        }
        _ => written,
    };
    let pac = match written.as_deref() {
        Some([one]) => pac_source(one)?,
        _ => None,
    };
    let auth = proxy::ProxyAuth {
        credentials: match (&file.outbound_username, &file.outbound_password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => return Err("outbound_username and outbound_password go together".into()),
        },
        scheme: file
            .outbound_auth
            .as_deref()
            .map(Scheme::parse)
            .transpose()?,
    };
    let proxies = match written {
        _ if pac.is_some() => Vec::new(),
        Some(list) if list.iter().all(|u| u.trim().is_empty()) => vec![None],
        Some(list) => proxy::parse_list(&list.join(";"))?,
        None => vec![proxy::from_env(|k| std::env::var(k).ok(), server_host)?],
    };
    let proxies = proxy::with_auth(proxies, &auth);
    let kind = cli
        .transport
        .clone()
        .or(file.transport.clone())
        .unwrap_or_else(|| "tcp".into());
    let w = file.websocket.clone().unwrap_or_default();
    let ws = match kind.as_str() {
        "tcp" => None,
        "ws" | "wss" => {
            let host = cli.ws_host.clone().or(w.host.clone());
            let tls = if kind == "wss" {
                let name = w
                    .sni
                    .clone()
                    .or(host.clone())
                    .unwrap_or_else(|| server_host.to_owned());
                let pins = w
                    .pin_sha256
                    .as_ref()
                    .map(OneOrMany::to_vec)
                    .unwrap_or_default();
                let trust =
                    Trust::from_config(w.ca_file.as_deref(), &pins, w.insecure_skip_verify)?;
                Some(Arc::new(TlsTarget::new(&name, &trust)?.with_early_data()))
            } else {
                None
            };
            let path = cli
                .ws_path
                .clone()
                .or(w.path.clone())
                .unwrap_or_else(|| defaults::WS_PATH.into());
            if !path.starts_with('/') {
                return Err(format!("websocket path {path:?} must start with /"));
            }
            Some(WsTransport {
                path,
                host,
                tls,
                ping: w.ping.unwrap_or(defaults::WS_PING),
                mux: w.mux.unwrap_or(0),
            })
        }
        other => return Err(format!("transport {other:?}: use tcp, ws or wss")),
    };
    let url = pac_url(server, ws.as_ref());
    let auth_hosts = file
        .proxy_auth_hosts
        .iter()
        .map(|h| HostPattern::parse(h).map_err(|e| format!("proxy_auth_hosts: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let pac = pac.map(|source| pac_setting(source, url, server_host, file, auth, auth_hosts));
    let out = Outbound {
        ways: Arc::new(Ways::new(proxies)),
        ws,
    };
    Ok((out, pac))
}

/// The URL a PAC file is asked about: the server's, as a browser would see the hop.
pub(super) fn pac_url(server: (&str, u16), ws: Option<&WsTransport>) -> String {
    let (scheme, default_port, path) = match ws {
        Some(w) if w.tls.is_none() => ("http", 80, w.path.as_str()),
        Some(w) => ("https", 443, w.path.as_str()),
        None => ("https", 443, "/"),
    };
    let host = bracket(server.0);
    match server.1 {
        p if p == default_port => format!("{scheme}://{host}{path}"),
        p => format!("{scheme}://{host}:{p}{path}"),
    }
}

#[cfg(feature = "pac")]
pub(super) fn pac_source(text: &str) -> Result<Option<crate::pac::Source>, String> {
    crate::pac::Source::parse(text)
}

#[cfg(feature = "pac")]
pub(super) fn pac_setting(
    source: crate::pac::Source,
    url: String,
    host: &str,
    file: &RawConfig,
    auth: proxy::ProxyAuth,
    auth_hosts: Vec<HostPattern>,
) -> PacSetting {
    // A PAC the user named decides targets by default; one WPAD found on the LAN —
    // whoever answers for "wpad" — only when pac_direct = true says so.
    let wpad = matches!(&source, crate::pac::Source::Http { host, .. } if host == "wpad");
    crate::pac::Pac {
        source,
        auth,
        auth_hosts,
        url,
        host: host.to_owned(),
        refresh: file.pac_refresh.unwrap_or(defaults::PAC_REFRESH),
        timeout: file.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT),
        targets: file
            .pac_direct
            .unwrap_or(!wpad)
            .then(|| std::sync::Arc::new(crate::pac::targets::Targets::default())),
    }
}

#[cfg(not(feature = "pac"))]
pub(super) fn pac_source(text: &str) -> Result<Option<PacSetting>, String> {
    let t = text.trim();
    if t.starts_with("pac+") || t.eq_ignore_ascii_case("wpad") {
        return Err(format!(
            "{t:?}: this build has no PAC support (the pac feature)"
        ));
    }
    Ok(None)
}

#[cfg(not(feature = "pac"))]
pub(super) fn pac_setting(
    never: PacSetting,
    _: String,
    _: &str,
    _: &RawConfig,
    _: proxy::ProxyAuth,
    _: Vec<HostPattern>,
) -> PacSetting {
    match never {}
}
