//! Bursts: a page's tunnels opened within a few milliseconds of each other. The first few
//! get warm connections of their own; the rest share one connection to burrow-server
//! (Mux.Cool inside a tunnel), so that every tunnel of a burst starts at once.

use std::sync::Arc;
use std::time::Duration;

use burrow_common::replay::ReplayFilter;
use burrow_common::MasterKey;
use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::{pop_alive, Pool};
use crate::outbound::hop::ServerIo;

impl Pool {
    /// For a tunnel to burrow-server (`shares`: it carries shared connections): a warm
    /// connection of its own when it comes alone or among the first [`OWN_IN_BURST`] of
    /// a burst (tunnels opened within [`BURST_WINDOW`] of each other) while another is
    /// left; the rest of a burst gets a session on a connection the burst shares — a warm
    /// one becomes shared when none is — so that a burst's tunnels all start at once.
    /// Records the demand either way.
    pub fn take_or_share(
        &self,
        shares: bool,
        key: &MasterKey,
        salts: Option<&Arc<ReplayFilter>>,
    ) -> Taken {
        if !shares {
            return self.take().map_or(Taken::None, |(io, t)| Taken::Own(io, t));
        }
        if self.config.max == 0 {
            return Taken::None;
        }
        let now = Instant::now();
        let mut st = self.lock();
        st.shares = true;
        let burst = st
            .last_take
            .is_some_and(|t| now.saturating_duration_since(t) < BURST_WINDOW);
        st.last_take = Some(now);
        st.burst_len = if burst { st.burst_len + 1 } else { 1 };
        st.opened.push_back(now);
        st.ready.retain(|w| w.expires > now);
        // A tunnel that comes alone gets a warm connection of its own. A burst's
        // tunnels share one: a shared connection with room takes them, or a warm one
        // becomes shared — so every tunnel of a burst starts at once, however many. The
        // first few of a burst get their own while that leaves one to share.
        let own = st.burst_len == 1 || (st.burst_len <= OWN_IN_BURST && st.ready.len() > 1);
        if own {
            let own = pop_alive(&mut st, now);
            drop(st);
            self.wake.notify_one();
            return match own {
                Some((io, t)) => Taken::Own(io, t),
                // None warm: a quiet shared connection beats a new one's round trip.
                None => self
                    .bursts
                    .shared(false)
                    .map_or(Taken::None, |(io, t)| Taken::Shared(io, t)),
            };
        }
        if let Some((io, t)) = self.bursts.shared(false) {
            drop(st);
            self.wake.notify_one();
            return Taken::Shared(io, t);
        }
        let warm = pop_alive(&mut st, now);
        drop(st);
        self.wake.notify_one();
        let carried = warm.and_then(|(io, t)| self.bursts.carry(io, t, key, salts.cloned()).ok());
        match carried.or_else(|| self.bursts.shared(true)) {
            Some((io, t)) => Taken::Shared(io, t),
            None => Taken::None,
        }
    }

    /// Keeps `io`, a shared connection the server has accepted, for the next burst.
    pub fn adopt_shared<S>(&self, io: S, made_in: Duration)
    where
        S: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        self.bursts.push(io, made_in);
    }
}

/// What [`Pool::take_or_share`] found.
pub enum Taken {
    /// A warm connection for this tunnel alone.
    Own(ServerIo, Duration),
    /// A session on a shared connection (and that connection's setup time).
    Shared(ServerIo, Duration),
    /// Nothing ready: a fresh connection is needed.
    None,
}

/// Tunnels opened this close together are a burst (a browser opens a page's within a
/// few milliseconds; tunnels one after another over any real link are further apart).
const BURST_WINDOW: Duration = Duration::from_millis(10);

/// The first tunnels of a burst still get warm connections of their own (a few downloads
/// started together keep their own connections); the rest of the burst shares.
const OWN_IN_BURST: usize = 4;

/// Tunnels one shared connection carries at once.
pub(super) const BURST_SESSIONS: usize = 64;
