//! Reverse routes and what the own PAC file sends DIRECT, from the file, the command line
//! and the environment.

use std::sync::Arc;

use burrow_common::hostport::bracket;
use burrow_common::TargetAddr;

use crate::inbound::own_pac::{from_no_proxy, Bypass};
use crate::inbound::route::{parse_upstream, upstream_host_url, Route, Upstream};
use crate::outbound::tls::{TlsTarget, Trust};

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

/// The routing rules: `[[rule]]` tables in order, then `bypass` (and NO_PROXY's entries)
/// as one rule sending its hosts direct — the same list `/proxy.pac` sends DIRECT — then
/// the ACL file.
pub(super) fn rules(
    written: &[super::raw::RawRule],
    bypass: &[String],
    acl: Option<&std::path::Path>,
    private_targets: Option<String>,
) -> Result<crate::outbound::rules::Rules, String> {
    use crate::hosts::HostPattern;
    use crate::outbound::rules::{Acl, Rule, Via};
    let mut list = Vec::with_capacity(written.len() + 1);
    for (i, r) in written.iter().enumerate() {
        let name = format!("[[rule]] {}", i + 1);
        let hosts = r
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h).map_err(|e| format!("{name}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let via = Via::parse(&r.via).map_err(|e| format!("{name}: {e}"))?;
        list.push(Rule { hosts, via, name });
    }
    let env = std::env::var("no_proxy").or_else(|_| std::env::var("NO_PROXY"));
    let env = env.unwrap_or_default();
    let from_env = env
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty() && *e != "*");
    let mut hosts = Vec::new();
    for b in bypass {
        hosts.push(HostPattern::parse_domain_style(b).map_err(|e| format!("bypass: {e}"))?);
    }
    hosts.extend(from_env.filter_map(|e| HostPattern::parse_domain_style(e).ok()));
    if !hosts.is_empty() {
        list.push(Rule {
            hosts,
            via: Via::Direct,
            name: "bypass".into(),
        });
    }
    let acl = acl.map(Acl::read).transpose()?;
    let rules = crate::outbound::rules::Rules::new(list, acl);
    match private_targets.as_deref().map(str::trim) {
        None | Some("direct") => Ok(rules),
        Some("tunnel") => Ok(rules.tunnel_private()),
        Some(other) => Err(format!(
            "private_targets = {other:?}: expected \"direct\" or \"tunnel\""
        )),
    }
}
