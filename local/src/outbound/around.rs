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
            Ok(ServerIo::Ws(_)) => Err(around(how, std::io::Error::other("unexpected dress"))),
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
