//! A corporate PAC file as the way to the server: `outbound_proxy = "pac+http://…"`
//! (or `pac+file:…`, or `wpad`). burrow-local fetches the file itself (directly, with a
//! timeout), runs its `FindProxyForURL` for the server's URL in an embedded JavaScript
//! engine (QuickJS, with the helper functions browsers give PAC files, a memory cap and a
//! time budget), and uses the answer as a proxy list with failover. The file is fetched
//! again on a timer and when this machine's addresses change (another network).
//!
//! A PAC that cannot be fetched, does not parse, throws or does not answer in time is
//! said in one line; the answer in use stays. Before any answer, the hop goes direct, as
//! browsers do when their PAC fails.

use burrow_common::timeout::within;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::outbound::hop::Ways;
use crate::outbound::proxy::{self, ProxyUrl};
use burrow_common::HostPort;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

mod eval;
pub mod targets;

pub use eval::find_proxy;

/// The helper functions PAC files call (isInNet, shExpMatch, weekdayRange…).
pub const HELPERS: &str = include_str!("helpers.js");

/// A PAC file larger than this is refused.
const MAX_PAC_BYTES: usize = 1 << 20;
/// `FindProxyForURL` (with its lookups) must answer within this.
const EVAL_BUDGET: Duration = Duration::from_secs(5);
/// One `dnsResolve` waits at most this long.
const LOOKUP_BUDGET: Duration = Duration::from_secs(2);
/// The JavaScript heap of one evaluation, at most.
const HEAP_LIMIT: usize = 32 << 20;

/// Where the PAC file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Fetched over plain HTTP (as WPAD and most corporate PAC servers serve it).
    Http {
        /// host[:port] as written (sent as Host).
        authority: String,
        host: String,
        port: u16,
        /// Path and query.
        path: String,
    },
    /// Read from a file.
    File(PathBuf),
}

impl Source {
    /// Reads an `outbound_proxy` entry that names a PAC file; `None` if it is not one.
    pub fn parse(text: &str) -> Result<Option<Source>, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("wpad") {
            return Source::parse("pac+http://wpad/wpad.dat");
        }
        let Some(rest) = t.strip_prefix("pac+") else {
            return Ok(None);
        };
        if let Some(path) = rest.strip_prefix("file://") {
            return Ok(Some(Source::File(PathBuf::from(path))));
        }
        if rest.starts_with('/') {
            return Ok(Some(Source::File(PathBuf::from(rest))));
        }
        let Some(after) = rest.strip_prefix("http://") else {
            return Err(format!(
                "PAC location {t:?}: use pac+http://host/path, pac+file:///path or wpad"
            ));
        };
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        let HostPort { host, port } = HostPort::parse(authority, Some(80))
            .map_err(|_| format!("PAC location {t:?}: no host[:port] in it"))?;
        Ok(Some(Source::Http {
            authority: authority.to_owned(),
            host,
            port,
            path: path.to_owned(),
        }))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Http {
                authority, path, ..
            } => write!(f, "http://{authority}{path}"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The PAC file, and what to ask it.
#[derive(Clone, Debug)]
pub struct Pac {
    pub source: Source,
    /// Credentials and scheme for the proxies it names that may have them.
    pub auth: proxy::ProxyAuth,
    /// `proxy_auth_hosts`: the proxies it names that may have the credentials (no other
    /// does: a PAC comes over plain HTTP, WPAD from whoever answers for `wpad`).
    pub auth_hosts: Vec<crate::hosts::HostPattern>,
    /// The URL and host `FindProxyForURL` is asked about (the server's).
    pub url: String,
    pub host: String,
    /// Fetched again this often.
    pub refresh: Duration,
    /// Fetch timeout.
    pub timeout: Duration,
    /// Its answers for apps' targets (`pac_direct`), when asked; `None` when off.
    pub targets: Option<Arc<targets::Targets>>,
}

impl Pac {
    /// Fetches and runs the PAC once: the list it answers.
    pub async fn answer(&self) -> Result<(String, Vec<Option<ProxyUrl>>), String> {
        let script = fetch(&self.source, self.timeout).await?;
        let script_for_targets = script.clone();
        let (url, host) = (self.url.clone(), self.host.clone());
        let eval =
            tokio::task::spawn_blocking(move || find_proxy(&script, &url, &host, EVAL_BUDGET));
        // The engine stops itself at its budget; this bounds the wait for it whatever
        // happens inside.
        let text = within(EVAL_BUDGET + LOOKUP_BUDGET, eval)
            .await
            .ok_or_else(|| format!("no answer within {EVAL_BUDGET:?}"))?
            .map_err(|e| format!("PAC evaluation: {e}"))??;
        let list = to_ways(&text).map_err(|e| format!("FindProxyForURL answered {text:?}: {e}"))?;
        if let Some(t) = &self.targets {
            t.update(&script_for_targets, list.iter().any(Option::is_some));
        }
        let list = proxy::named_by_pac(list, &self.auth, |p| {
            crate::hosts::any_matches(&self.auth_hosts, &p.host, p.port)
        });
        Ok((text, list))
    }

    /// Keeps `ways` set from the PAC, fetched again on the timer or when the network
    /// changes (another Wi-Fi, a VPN, a wake from sleep: `network` counts them), until
    /// `shutdown`. `in_use`: the answer `ways` holds now.
    pub async fn keep(
        self,
        ways: Arc<Ways>,
        mut network: tokio::sync::watch::Receiver<u64>,
        shutdown: CancellationToken,
        mut in_use: Option<String>,
    ) {
        let mut following = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.refresh) => {}
                changed = network.changed(), if following => {
                    if changed.is_err() {
                        // No one watches the network any more: the timer alone.
                        following = false;
                        continue;
                    }
                    tracing::info!(
                        "PAC {}: the network changed, fetching it again",
                        self.source
                    );
                }
            }
            match self.answer().await {
                Ok((text, list)) if in_use.as_deref() != Some(text.as_str()) => {
                    tracing::info!(
                        "PAC {}: the way to {} is now {text:?}",
                        self.source,
                        self.url
                    );
                    ways.set(list);
                    in_use = Some(text);
                }
                Ok(_) => {}
                Err(e) => match &in_use {
                    Some(kept) => tracing::warn!("PAC {}: {e}; keeping {kept:?}", self.source),
                    None => {
                        tracing::warn!("PAC {}: {e}; going DIRECT until it answers", self.source)
                    }
                },
            }
        }
    }
}

/// The PAC's answer as a list of ways: `PROXY`, `HTTP`, `SOCKS`, `SOCKS5` and `DIRECT`
/// entries in order; entries we cannot use (`HTTPS` — TLS to the proxy itself — and
/// unknown words) are passed over, unless nothing else is left.
pub fn to_ways(answer: &str) -> Result<Vec<Option<ProxyUrl>>, String> {
    let mut out = Vec::new();
    let mut passed = Vec::new();
    for entry in answer.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let word = entry.split_whitespace().next().unwrap_or_default();
        let known = ["PROXY", "HTTP", "HTTPS", "SOCKS", "SOCKS5", "DIRECT"];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(word)) {
            passed.push(format!("{entry:?} is not a PAC entry"));
            continue;
        }
        match proxy::parse_list(entry) {
            Ok(mut one) => out.append(&mut one),
            Err(e) => passed.push(e),
        }
    }
    if out.is_empty() {
        return Err(passed
            .pop()
            .unwrap_or_else(|| "no entry (an empty answer)".into()));
    }
    for e in passed {
        tracing::debug!("PAC answer: {e}; passed over");
    }
    Ok(out)
}

/// Fetches the PAC text: over HTTP (a 200 answer, at most 1 MiB) or from a file.
pub async fn fetch(source: &Source, timeout: Duration) -> Result<String, String> {
    let bytes = match source {
        Source::File(p) => tokio::fs::read(p)
            .await
            .map_err(|e| format!("cannot read it: {e}"))?,
        Source::Http {
            authority,
            host,
            port,
            path,
        } => burrow_common::timeout::with_timeout(
            "fetching the PAC file",
            timeout,
            get(authority, host, *port, path, timeout),
        )
        .await
        .map_err(|e| e.to_string())?,
    };
    if bytes.len() > MAX_PAC_BYTES {
        return Err(format!("larger than {MAX_PAC_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

async fn get(
    authority: &str,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let addrs = burrow_common::net::resolve(host, port, timeout).await?;
    let tcp = burrow_common::net::connect_any(&addrs, timeout, &Default::default()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "burrow-local")
        .header(
            http::header::ACCEPT,
            "application/x-ns-proxy-autoconfig, */*",
        )
        .body(Empty::<bytes::Bytes>::new())
        .map_err(std::io::Error::other)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_PAC_BYTES + 1)
        .collect()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .to_bytes();
    driver.abort();
    if status.is_redirection() {
        // A PAC comes only from where the user named it: a redirect elsewhere could hand
        // the choice of proxy to another host.
        return Err(std::io::Error::other(format!(
            "the PAC server answered {status}; redirects are not followed"
        )));
    }
    if status != http::StatusCode::OK {
        return Err(std::io::Error::other(format!(
            "the PAC server answered {status}"
        )));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests;
