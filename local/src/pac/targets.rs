//! The corporate PAC asked about apps' targets (`pac_direct`, on by default): while the
//! PAC sends the way to the server through a proxy, a target it answers DIRECT for is an
//! intranet host — reached from the laptop, not through the tunnel (where the VPS could
//! not reach it). A PAC that answers DIRECT for the server too (no proxy on this network)
//! decides nothing for targets: everything stays in the tunnel. Answers are kept per host
//! until the PAC is fetched again.

use burrow_common::timeout::within;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{find_proxy, EVAL_BUDGET, LOOKUP_BUDGET};

/// Hosts remembered at most (then the memory starts over).
const HOSTS_MAX: usize = 4096;

/// What the last fetch of the PAC brought, shared by every clone of the setting.
#[derive(Debug, Default)]
pub struct Targets {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The script, while it sends the server through a proxy; `None` otherwise.
    script: Option<Arc<str>>,
    /// Per host: whether the PAC answered DIRECT.
    direct: HashMap<String, bool>,
}

impl Targets {
    /// A new answer for the server: `script` says how, `via_proxy` whether it named a
    /// proxy for the server; what was remembered of targets is forgotten.
    pub fn update(&self, script: &str, via_proxy: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.script = via_proxy.then(|| Arc::from(script));
        st.direct.clear();
    }

    /// Whether the PAC sends `host` DIRECT while it sends the server through a proxy.
    pub async fn direct(&self, host: &str) -> bool {
        let script = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(script) = st.script.clone() else {
                return false;
            };
            if let Some(known) = st.direct.get(host) {
                return *known;
            }
            script
        };
        let (url, h) = (format!("https://{host}/"), host.to_owned());
        let eval = tokio::task::spawn_blocking(move || find_proxy(&script, &url, &h, EVAL_BUDGET));
        let direct = match within(EVAL_BUDGET + LOOKUP_BUDGET, eval).await {
            Some(Ok(Ok(answer))) => answer
                .split(';')
                .map(str::trim)
                .find(|e| !e.is_empty())
                .is_some_and(|first| first.eq_ignore_ascii_case("DIRECT")),
            // A PAC that fails for a target leaves it in the tunnel.
            _ => false,
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.direct.len() >= HOSTS_MAX {
            st.direct.clear();
        }
        st.direct.insert(host.to_owned(), direct);
        direct
    }
}
