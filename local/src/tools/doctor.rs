//! `burrow-local doctor`: tries the hop to the server step by step, as the config says,
//! and prints where it stops — the PAC file and its answer, each way to the server in
//! order (the corporate proxy reached, its CONNECT and the scheme it took, TLS with the
//! certificate explained, the WebSocket upgrade), then a tunnel through burrow-server.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;

use crate::outbound::hop::{self, Outbound, Ways};
use crate::outbound::proxy::http_connect::scheme_in_use;
use burrow_common::TargetAddr;

use crate::outbound::dial::{dial, Plan};
use crate::settings::Settings;

/// One step's line: its name, ok or FAIL, what was seen.
fn say(step: &str, ok: bool, what: impl Display) {
    let mark = if ok { "ok  " } else { "FAIL" };
    println!("  {step:<12} {mark} {what}");
}

fn ms(start: Instant) -> String {
    format!("{} ms", start.elapsed().as_millis())
}

/// Runs every step; true when a tunnel to `target` opened.
pub async fn run(settings: Settings, target: TargetAddr) -> bool {
    let s = &settings;
    let srv = s.servers.current().clone();
    let server = srv.name();
    println!("burrow-local doctor: the way to {server}");
    let transport = match &srv.outbound.ws {
        None => "tcp".to_owned(),
        Some(w) if w.tls.is_some() => format!("wss (path {})", w.path),
        Some(w) => format!("ws (path {})", w.path),
    };
    say(
        "config",
        true,
        format!(
            "server {server}, transport {transport}, method {}",
            srv.key.method().name()
        ),
    );

    #[cfg(feature = "pac")]
    if let Some(pac) = &s.pac {
        let start = Instant::now();
        match pac.answer().await {
            Ok((text, list)) => {
                say(
                    "PAC",
                    true,
                    format!(
                        "{} answers {text:?} for {} ({})",
                        pac.source,
                        pac.url,
                        ms(start)
                    ),
                );
                srv.outbound.ways.set(list);
            }
            Err(e) => say(
                "PAC",
                false,
                format!("{}: {e}; the hop goes DIRECT", pac.source),
            ),
        }
    }

    let ways = srv.outbound.ways.get();
    let ways: Vec<_> = if ways.is_empty() {
        vec![None]
    } else {
        ways.to_vec()
    };
    let mut working = None;
    for (i, way) in ways.iter().enumerate() {
        let step = format!("way {}/{}", i + 1, ways.len());
        let one = Outbound {
            ways: Arc::new(Ways::new(vec![way.clone()])),
            ws: srv.outbound.ws.clone(),
        };
        let start = Instant::now();
        let via = match way {
            Some(p) => format!("through {p}"),
            None => "direct".to_owned(),
        };
        match hop::connect(&one, &srv.host, srv.port, s.connect_timeout, &s.socket).await {
            Ok(_) => {
                let auth = way
                    .as_ref()
                    .and_then(scheme_in_use)
                    .map(|sc| format!(", the proxy took {}", sc.name()))
                    .unwrap_or_default();
                say(
                    &step,
                    true,
                    format!(
                        "{via}: reached the server's {transport} listener in {}{auth}",
                        ms(start)
                    ),
                );
                working = Some(i);
                break;
            }
            Err(e) => say(&step, false, format!("{via}: {e}")),
        }
    }
    let Some(i) = working else {
        println!("  no way to the server: see the lines above.");
        return false;
    };
    // The tunnel itself, over the way that worked, waiting for the server's word.
    srv.outbound.ways.set(vec![ways[i].clone()]);
    let start = Instant::now();
    let plan = match s.confirm {
        // A server that never answers first: the request goes, nothing more is known.
        crate::outbound::plan::Confirm::Never => Plan::Go,
        _ => Plan::Wait { learning: false },
    };
    match dial(&target, s, plan).await {
        Ok(_) if plan == Plan::Go => {
            say("tunnel", true, format!("the request for {target} is ready to go (confirm_connect = false: the server's answer is not awaited)"));
            true
        }
        Ok(_) => {
            say(
                "tunnel",
                true,
                format!("the server opened {target} ({})", ms(start)),
            );
            true
        }
        Err(e) => {
            say("tunnel", false, e);
            false
        }
    }
}

/// `doctor --route HOST[:PORT]`: where an app's tunnel to it would go, and which rule
/// (or default) decided; the port is 443 when not given.
pub fn route(s: &Settings, text: &str) -> Result<String, String> {
    let hp = burrow_common::HostPort::parse(text, Some(443))
        .map_err(|_| format!("--route {text:?}: expected HOST[:PORT]"))?;
    let (via, why) = s.rules.route_host(&hp.host, hp.port);
    let way = match via {
        crate::outbound::rules::Via::Tunnel => "through the tunnel (resolved at the server)",
        crate::outbound::rules::Via::Direct => "direct from this machine",
        crate::outbound::rules::Via::Proxy => "through the corporate proxy, without the tunnel",
        crate::outbound::rules::Via::Block => "nowhere: blocked",
    };
    Ok(format!(
        "  route        {hp} goes {way} — {}: {why}",
        via.name()
    ))
}
