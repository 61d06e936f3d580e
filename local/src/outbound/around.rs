//! A target the rules send around the tunnel: dialled from this machine (`direct`: the
//! same connect timeout, Happy Eyeballs over the name's addresses, NODELAY and keepalive
//! as every socket here) or through the corporate proxy alone (`proxy`: the hop's own way
//! — its proxy list or PAC answer, with the same rules for credentials — to the target
//! instead of the server).

use std::sync::Arc;

use burrow_common::net::{connect_any, resolve};
use burrow_common::prefixed::Prefixed;
use burrow_common::TargetAddr;
use bytes::Bytes;
use tokio::net::TcpStream;

use crate::outbound::dial::DialError;
use crate::outbound::hop::{self, Outbound, ServerIo};
use crate::outbound::rules::Via;
use crate::settings::Settings;

/// Where `target` goes, and why: the rules, then — for what they leave in the tunnel by
/// default — the corporate PAC (`pac_direct`): a target it sends DIRECT while it sends
/// the server through a proxy is reached from here.
pub async fn decide(target: &TargetAddr, s: &Settings) -> (Via, String) {
    let (via, why) = s.rules.route(target);
    #[cfg(feature = "pac")]
    if via == Via::Tunnel && why == crate::outbound::rules::DEFAULT {
        if let (Some(t), TargetAddr::Domain(host, _)) =
            (s.pac.as_ref().and_then(|p| p.targets.as_ref()), target)
        {
            if t.direct(host).await {
                return (
                    Via::Direct,
                    "the corporate PAC answers DIRECT for it".into(),
                );
            }
        }
    }
    (via, why)
}

/// Connects to `target` the way `via` says (`Direct` or `Proxy`).
pub async fn connect(
    target: &TargetAddr,
    via: Via,
    s: &Settings,
) -> Result<Prefixed<TcpStream>, DialError> {
    let (host, port) = match target {
        TargetAddr::Ip(a) => (a.ip().to_string(), a.port()),
        TargetAddr::Domain(h, p) => (h.clone(), *p),
    };
    let around = |via, source| DialError::Around {
        target: target.clone(),
        via,
        source,
    };
    if via == Via::Proxy {
        // The hop's ways (proxies, PAC answer), raw TCP: no WebSocket dress to a target.
        let out = Outbound {
            ways: s.servers.current().outbound.ways.clone(),
            ws: None,
        };
        let how = "through the corporate proxy";
        return match hop::connect(&out, &host, port, s.connect_timeout, &s.socket).await {
            Ok(ServerIo::Raw(conn)) => Ok(conn),
            Ok(ServerIo::Ws(_) | ServerIo::Mux(_)) => {
                Err(around(how, std::io::Error::other("unexpected dress")))
            }
            Err(e) => Err(around(how, e)),
        };
    }
    let addrs = resolve(&host, port, s.connect_timeout)
        .await
        .map_err(|e| around("directly", e))?;
    let tcp = connect_any(&addrs, s.connect_timeout, &s.socket)
        .await
        .map_err(|e| around("directly", e))?;
    Ok(Prefixed::new(Bytes::new(), tcp))
}

/// The rules in force, shared by every tunnel of a generation of settings.
pub type SharedRules = Arc<crate::outbound::rules::Rules>;
