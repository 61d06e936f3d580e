//! Whether a new tunnel waits for the server's word that its target is connected
//! (`confirm_connect`), and what burrow-local has learned of each server to decide it
//! (see `dial.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burrow_common::TargetAddr;

/// How long a target counts as reached lately: an hour, so that the first tunnel after
/// the laptop idled starts at once too (a target that died since is said in the log).
const REACHED_FOR: Duration = Duration::from_secs(3600);

/// Targets remembered at most.
const REACHED_MAX: usize = 4096;

/// Whether a new tunnel waits for the server's word that the target is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Learn what the server does (the default).
    Auto,
    /// Always wait (burrow-server only: other servers never answer first).
    Always,
    /// Never wait.
    Never,
}

/// What burrow-local has learned of its server, shared by every tunnel.
#[derive(Debug, Default)]
pub struct Learned {
    /// `UNKNOWN`, `CONFIRMS` or `SILENT`.
    server: AtomicU8,
    /// Targets the server reached lately, and when.
    reached: Mutex<HashMap<TargetAddr, Instant>>,
    /// Woken when the server's kind becomes known.
    learned: tokio::sync::Notify,
}

const UNKNOWN: u8 = 0;
const CONFIRMS: u8 = 1;
const SILENT: u8 = 2;

impl Learned {
    /// The server confirmed a connection; `true` if that is news.
    pub(crate) fn saw_confirmation(&self) -> bool {
        let news = self.server.swap(CONFIRMS, Relaxed) == UNKNOWN;
        self.learned.notify_waiters();
        news
    }

    /// The server did not confirm the first connection: it never does. `true` if that
    /// is news (a server that confirmed once stays one that confirms).
    pub(crate) fn saw_silence(&self) -> bool {
        let news = self
            .server
            .compare_exchange(UNKNOWN, SILENT, Relaxed, Relaxed)
            .is_ok();
        self.learned.notify_waiters();
        news
    }

    /// Resolves once the server is known never to answer first (learned elsewhere, e.g.
    /// by the question asked at start).
    pub(crate) async fn silent(&self) {
        loop {
            let changed = self.learned.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.server.load(Relaxed) == SILENT {
                return;
            }
            changed.await;
        }
    }

    /// Whether anything has been learned yet.
    pub fn known(&self) -> bool {
        self.server.load(Relaxed) != UNKNOWN
    }

    /// Whether the server is known to confirm connections (burrow-server).
    pub fn confirms(&self) -> bool {
        self.server.load(Relaxed) == CONFIRMS
    }

    fn reached_lately(&self, target: &TargetAddr) -> bool {
        let map = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        map.get(target).is_some_and(|t| t.elapsed() < REACHED_FOR)
    }

    pub(crate) fn mark_reached(&self, target: &TargetAddr) {
        let mut map = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= REACHED_MAX {
            map.retain(|_, t| t.elapsed() < REACHED_FOR);
            if map.len() >= REACHED_MAX {
                map.clear();
            }
        }
        map.insert(target.clone(), Instant::now());
    }

    pub(crate) fn forget(&self, target: &TargetAddr) {
        let mut map = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(target);
    }
}

/// How a new tunnel starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send the request and wait for the server's word before the app hears back.
    /// `learning`: the server's kind is not known yet; silence past a few round trips
    /// means a server that never answers first, and the tunnel goes ahead.
    Wait {
        /// Still learning what the server does.
        learning: bool,
    },
    /// Go at once: the header waits for the app's first bytes.
    Go,
    /// The app has not heard yet, but this server never answers first: the request
    /// leaves now and nothing is waited for (a fallback server of another kind than the
    /// one the plan was made for).
    Send,
}

impl Plan {
    /// The plan for a tunnel to `target` on a server of which `learned` is known, under
    /// `confirm` (the server in use, for a new tunnel).
    pub fn for_target(target: &TargetAddr, learned: &Learned, confirm: Confirm) -> Plan {
        match confirm {
            Confirm::Never => Plan::Go,
            Confirm::Always => Plan::Wait { learning: false },
            Confirm::Auto => match learned.server.load(Relaxed) {
                SILENT => Plan::Go,
                CONFIRMS if learned.reached_lately(target) => Plan::Go,
                CONFIRMS => Plan::Wait { learning: false },
                _ => Plan::Wait { learning: true },
            },
        }
    }

    /// This plan on a server that may not be the one it was made for (the failover
    /// loop's next): a tunnel whose app has heard already (`Go`) stays so; one whose app
    /// waits takes this server's terms — learning if its kind is not known, no wait
    /// after the request for one known to stay silent.
    pub fn on(self, learned: &Learned, confirm: Confirm) -> Plan {
        match (self, confirm, learned.server.load(Relaxed)) {
            (Plan::Go, _, _) => Plan::Go,
            (_, Confirm::Auto, SILENT) => Plan::Send,
            (_, Confirm::Auto, UNKNOWN) => Plan::Wait { learning: true },
            (Plan::Wait { .. }, Confirm::Auto, _) => Plan::Wait { learning: false },
            (other, _, _) => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fallback server is dialled on its own terms while the app waits.
    #[test]
    fn a_plan_takes_the_terms_of_the_server_it_is_used_on() {
        let (unknown, confirms, silent) =
            (Learned::default(), Learned::default(), Learned::default());
        confirms.saw_confirmation();
        silent.saw_silence();
        let wait = Plan::Wait { learning: false };
        let learn = Plan::Wait { learning: true };
        let cases = [
            (wait, &silent, Confirm::Auto, Plan::Send),
            (wait, &unknown, Confirm::Auto, learn),
            (wait, &confirms, Confirm::Auto, wait),
            (learn, &confirms, Confirm::Auto, wait),
            (Plan::Go, &confirms, Confirm::Auto, Plan::Go),
            (Plan::Go, &silent, Confirm::Auto, Plan::Go),
            (wait, &silent, Confirm::Always, wait),
        ];
        for (plan, learned, confirm, want) in cases {
            assert_eq!(plan.on(learned, confirm), want, "{plan:?} {confirm:?}");
        }
    }
}
