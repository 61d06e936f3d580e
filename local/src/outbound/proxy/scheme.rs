//! The schemes a corporate proxy's `407` can be answered with, which one to answer, and
//! what each proxy took (remembered, so later connections start with it).

use std::sync::{Arc, Mutex};

use http::header;

use super::{NamedBy, ProxyUrl};

/// How burrow-local answers a proxy's `407`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// User and password, base64 (RFC 7617).
    Basic,
    /// NTLMv2 with the configured credentials (Windows: also the logged-on user's).
    Ntlm,
    /// SPNEGO with Kerberos, from the user's ticket cache (Windows: the logon session's).
    Negotiate,
}

impl Scheme {
    /// Strongest first.
    const BY_STRENGTH: [Scheme; 3] = [Scheme::Negotiate, Scheme::Ntlm, Scheme::Basic];

    /// As in `Proxy-Authenticate`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Ntlm => "NTLM",
            Scheme::Negotiate => "Negotiate",
        }
    }

    /// `outbound_auth` as written (`basic`, `ntlm`, `negotiate`/`kerberos`).
    pub fn parse(text: &str) -> Result<Scheme, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "basic" => Ok(Scheme::Basic),
            "ntlm" => Ok(Scheme::Ntlm),
            "negotiate" | "kerberos" => Ok(Scheme::Negotiate),
            other => Err(format!(
                "outbound_auth = {other:?}: expected \"negotiate\", \"ntlm\" or \"basic\""
            )),
        }
    }

    /// Whether this build and these settings can answer `proxy` with it: never a proxy
    /// only a PAC named (unless listed), and Basic — the password as it is — to a listed
    /// PAC-named proxy only when pinned.
    pub(super) fn possible(self, proxy: &ProxyUrl) -> bool {
        if !proxy.named_by.may_authenticate() {
            return false;
        }
        match self {
            Scheme::Basic => {
                proxy.auth.is_some()
                    && (proxy.named_by == NamedBy::User || proxy.scheme == Some(Scheme::Basic))
            }
            // Windows: SSPI, with the logged-on user's credentials when none are given.
            Scheme::Ntlm => cfg!(windows) || (cfg!(feature = "ntlm") && proxy.auth.is_some()),
            Scheme::Negotiate => cfg!(windows) || cfg!(feature = "negotiate"),
        }
    }
}

/// What each proxy opened a tunnel with (`None`: it asked for nothing): later
/// connections start with it.
static LEARNED: Mutex<Vec<(String, Option<Scheme>)>> = Mutex::new(Vec::new());

/// One lock per proxy not yet learned: while one connection asks the proxy what it
/// offers, the others (a burst at start) wait for the answer instead of each paying the
/// extra 407 round trip.
static PROBES: Mutex<Vec<(String, Arc<tokio::sync::Mutex<()>>)>> = Mutex::new(Vec::new());

pub(super) fn key(proxy: &ProxyUrl) -> String {
    format!("{}:{}", proxy.host, proxy.port)
}

/// `Some(scheme)` once a tunnel through `proxy` opened (`Some(None)`: with no auth).
pub(super) fn learned(proxy: &ProxyUrl) -> Option<Option<Scheme>> {
    let key = key(proxy);
    let known = LEARNED.lock().unwrap_or_else(|p| p.into_inner());
    known.iter().find(|(k, _)| *k == key).map(|(_, s)| *s)
}

/// The scheme `proxy` took last, if it asked for one.
pub fn scheme_in_use(proxy: &ProxyUrl) -> Option<Scheme> {
    learned(proxy).flatten()
}

pub(super) fn remember(proxy: &ProxyUrl, scheme: Option<Scheme>) {
    let key = key(proxy);
    let mut known = LEARNED.lock().unwrap_or_else(|p| p.into_inner());
    known.retain(|(k, _)| *k != key);
    known.push((key, scheme));
}

pub(super) fn probe_lock(proxy: &ProxyUrl) -> Arc<tokio::sync::Mutex<()>> {
    let key = key(proxy);
    let mut locks = PROBES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, l)) = locks.iter().find(|(k, _)| *k == key) {
        return l.clone();
    }
    let l = Arc::new(tokio::sync::Mutex::new(()));
    locks.push((key, l.clone()));
    l
}

/// The schemes a proxy's answer offers, by name (`Basic`, `NTLM`, `Negotiate`…).
pub(super) fn offered(resp: &http::Response<hyper::body::Incoming>) -> Vec<String> {
    resp.headers()
        .get_all(header::PROXY_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_owned())
        .collect()
}

/// The strongest scheme `offers` names that we can do and have not tried.
pub(super) fn choose(offers: &[String], proxy: &ProxyUrl, tried: &[Scheme]) -> Option<Scheme> {
    Scheme::BY_STRENGTH.into_iter().find(|s| {
        offers.iter().any(|o| o.eq_ignore_ascii_case(s.name()))
            && !tried.contains(s)
            && proxy.scheme.is_none_or(|pin| pin == *s)
            && s.possible(proxy)
    })
}
