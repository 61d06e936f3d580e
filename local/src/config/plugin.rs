//! SIP003 plugins (`plugin`, `plugin_opts`): v2ray-plugin and xray-plugin are spoken
//! here, with no plugin process (a WebSocket, over TLS with `tls`, Mux.Cool with `mux`);
//! any other plugin runs as a process between burrow-local and the server.

use std::path::PathBuf;

use super::raw::RawWebSocket;
use burrow_common::plugin::Process;
use std::sync::Arc;

/// What a `plugin` setting makes of the hop.
#[derive(Debug)]
pub enum Plugin {
    /// v2ray-plugin's client, spoken here: the transport (`ws` or `wss`) and its settings.
    V2ray {
        /// `wss` with `tls`, else `ws`.
        transport: &'static str,
        /// Path, Host header, TLS name and trust, mux.
        websocket: RawWebSocket,
    },
    /// A plugin process the hop goes through.
    Process(Arc<Process>),
}

/// Tunnels per WebSocket when `mux` is not given: v2ray's own default concurrency. (The
/// plugin's client uses 1, one tunnel after another on each WebSocket.)
pub const V2RAY_MUX: usize = 8;

/// `plugin` (a name or path) with its `plugin_opts`, for the server at `server`.
pub fn plugin(name: &str, opts: Option<&str>, server: (&str, u16)) -> Result<Plugin, String> {
    let base = std::path::Path::new(name.trim())
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .trim_end_matches(".exe")
        .to_ascii_lowercase();
    if matches!(
        base.as_str(),
        "v2ray-plugin" | "ss-v2ray-plugin" | "xray-plugin" | "ss-xray-plugin"
    ) {
        return v2ray(opts.unwrap_or_default(), server.0);
    }
    if name.trim().is_empty() {
        return Err("plugin is empty".into());
    }
    let local = Process::free_local().map_err(|e| format!("plugin {name}: no local port: {e}"))?;
    Ok(Plugin::Process(Arc::new(Process::new(
        name.trim(),
        opts.filter(|o| !o.is_empty()),
        local,
        server,
    ))))
}

/// v2ray-plugin's client options (`path=/ws;host=example.com;tls;mux=4`).
fn v2ray(opts: &str, server_host: &str) -> Result<Plugin, String> {
    let mut ws = RawWebSocket {
        path: Some("/".into()),
        mux: Some(V2RAY_MUX),
        ..Default::default()
    };
    let mut tls = false;
    for opt in opts.split(';').map(str::trim).filter(|o| !o.is_empty()) {
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (opt, None),
        };
        match (k, v) {
            ("tls", _) => tls = true,
            ("path", Some(p)) if p.starts_with('/') => ws.path = Some(p.into()),
            ("path", Some(p)) => ws.path = Some(format!("/{p}")),
            ("host", Some(h)) if !h.is_empty() => ws.host = Some(h.into()),
            ("cert", Some(c)) if !c.is_empty() => ws.ca_file = Some(PathBuf::from(c)),
            ("mux", Some(n)) => {
                ws.mux = Some(
                    n.parse()
                        .map_err(|_| format!("plugin_opts: mux={n:?} is not a number"))?,
                )
            }
            ("mode", Some("websocket")) => {}
            ("mode", Some(m)) => {
                return Err(format!(
                    "plugin_opts: mode={m} is not supported here (websocket is)"
                ))
            }
            ("server", _) => {
                return Err(
                    "plugin_opts: `server` is the plugin's server side; burrow-local is a client"
                        .into(),
                )
            }
            ("certRaw", _) => {
                return Err("plugin_opts: certRaw is not supported; give cert=FILE".into())
            }
            // Logging, and socket options the system sets for us.
            ("loglevel" | "fastOpen" | "fwmark" | "__android_vpn" | "key", _) => {}
            _ => return Err(format!("plugin_opts: {opt:?} is not a v2ray-plugin option")),
        }
    }
    // The name checked on the server's certificate: the Host the plugin sends, else the
    // server's own name.
    ws.sni = Some(ws.host.clone().unwrap_or_else(|| server_host.to_owned()));
    Ok(Plugin::V2ray {
        transport: if tls { "wss" } else { "ws" },
        websocket: ws,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2ray_options_become_the_websocket_hop() {
        let p = plugin(
            "/usr/bin/ss-v2ray-plugin",
            Some("tls;host=vpn.example.com;path=/ws;mux=0;loglevel=none"),
            ("203.0.113.5", 443),
        )
        .unwrap();
        let Plugin::V2ray {
            transport,
            websocket,
        } = p
        else {
            panic!("native")
        };
        assert_eq!(transport, "wss");
        assert_eq!(websocket.path.as_deref(), Some("/ws"));
        assert_eq!(websocket.host.as_deref(), Some("vpn.example.com"));
        assert_eq!(websocket.sni.as_deref(), Some("vpn.example.com"));
        assert_eq!(websocket.mux, Some(0));
        let Plugin::V2ray {
            transport,
            websocket,
        } = plugin("xray-plugin.exe", None, ("example.net", 80)).unwrap()
        else {
            panic!("native")
        };
        assert_eq!(transport, "ws");
        assert_eq!(websocket.path.as_deref(), Some("/"));
        assert_eq!(websocket.mux, Some(V2RAY_MUX));
        assert_eq!(websocket.sni.as_deref(), Some("example.net"));
    }

    #[test]
    fn what_cannot_work_is_said() {
        for opts in [
            "server;path=/ws",
            "mode=quic",
            "mux=many",
            "certRaw=AAAA",
            "obfs=http",
        ] {
            assert!(
                plugin("v2ray-plugin", Some(opts), ("h", 1)).is_err(),
                "{opts}"
            );
        }
        assert!(plugin(" ", None, ("h", 1)).is_err());
    }
}
