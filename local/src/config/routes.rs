//! Reverse routes and what the own PAC file sends DIRECT, from the file, the command line
//! and the environment.

use std::sync::Arc;

use burrow_common::hostport::bracket;
use burrow_common::TargetAddr;

use crate::inbound::own_pac::{from_no_proxy, Bypass};
use crate::inbound::route::{parse_upstream, upstream_host_url, Route, Upstream};
use crate::tls::{TlsTarget, Trust};

use super::{Cli, OneOrMany, RawRoute};

/// Routes from the file, then the command line (same path: the command line wins), then
/// `UPSTREAM_HOST` as the catch-all if no route covers `/`.
pub(super) fn routes(cli: &Cli, file: &[RawRoute]) -> Result<Vec<Route>, String> {
    let mut raw: Vec<RawRoute> = file.to_vec();
    for r in &cli.route {
        let (path, url) = r
            .split_once('=')
            .ok_or_else(|| format!("--route {r:?} is not PATH=URL"))?;
        raw.retain(|x| x.path != path);
        raw.push(RawRoute {
            path: path.into(),
            upstream: url.into(),
            ..RawRoute::default()
        });
    }
    if let Some(h) = &cli.upstream_host {
        if !raw.iter().any(|r| r.path == "/") {
            raw.push(RawRoute {
                path: "/".into(),
                upstream: upstream_host_url(h)?,
                ..RawRoute::default()
            });
        }
    }
    raw.iter().map(build_route).collect()
}

fn build_route(r: &RawRoute) -> Result<Route, String> {
    if !r.path.starts_with('/') {
        return Err(format!("route path {:?} must start with /", r.path));
    }
    let u = parse_upstream(&r.upstream)?;
    let tls = if u.tls {
        let pins = r
            .pin_sha256
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        let trust = Trust::from_config(r.ca_file.as_deref(), &pins, r.insecure_skip_verify)?;
        Some(Arc::new(TlsTarget::new(&u.host, &trust)?))
    } else {
        None
    };
    let host = bracket(&u.host);
    let default_port = if u.tls { 443 } else { 80 };
    let authority = if u.port == default_port {
        host.into_owned()
    } else {
        format!("{host}:{}", u.port)
    };
    let target = TargetAddr::new(&u.host, u.port)
        .map_err(|_| format!("upstream {:?}: bad host", r.upstream))?;
    Ok(Route {
        path: r.path.clone(),
        upstream: Upstream {
            url: r.upstream.clone(),
            target,
            authority,
            tls,
            path: u.path,
        },
        preserve_host: r.preserve_host,
        insecure: r.insecure_skip_verify,
        origins: r.origins.clone(),
    })
}

/// `bypass` as written, then the environment's NO_PROXY (entries PAC can say).
pub(super) fn bypass(written: &[String]) -> Result<Vec<Bypass>, String> {
    let mut list = written
        .iter()
        .map(|b| Bypass::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::var("no_proxy").or_else(|_| std::env::var("NO_PROXY"));
    for b in from_no_proxy(&env.unwrap_or_default()) {
        if !list.contains(&b) {
            list.push(b);
        }
    }
    Ok(list)
}
