//! Watching warm connections: one the way closes (or sends on) is dropped and replaced at
//! once, and an idle cut-off on the way is learned from such closes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use super::{Pool, State};
use crate::outbound::hop::ServerIo;

impl Pool {
    /// Resolves when the way (the server, a proxy, a NAT) closed a warm connection, or sent
    /// on one, which is dropped. Two closes at about the same age are an idle cut-off on the
    /// way: later warm connections retire well before it. One close alone (a server
    /// restart, a lost network) teaches nothing.
    pub(super) fn closed_by_the_way(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let now = Instant::now();
            let mut st = self.lock();
            let before = st.ready.len();
            let mut ages = Vec::new();
            st.ready.retain_mut(|w| {
                let mut one = [0u8; 1];
                let mut buf = ReadBuf::new(&mut one);
                match Pin::new(&mut w.io).poll_read(cx, &mut buf) {
                    Poll::Pending => true,
                    _ => {
                        ages.push(now - w.born);
                        false
                    }
                }
            });
            // All at once is a restart or a lost network, not an idle cut-off.
            if ages.len() == 1 || (ages.len() < before && !ages.is_empty()) {
                let age = ages.iter().copied().min().unwrap_or_default();
                learn_cut_off(&mut st, age);
            }
            if ages.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    }
}

/// A live warm connection from the front of `st.ready`, if any.
pub(super) fn pop_alive(st: &mut State, now: Instant) -> Option<(ServerIo, Duration)> {
    while let Some(mut w) = st.ready.pop_front() {
        if w.expires > now && still_open(&mut w.io) {
            return Some((w.io, w.made_in));
        }
    }
    None
}

/// A learned cut-off never makes warm connections live shorter than this.
pub(super) const MIN_LIFE: Duration = Duration::from_secs(1);

/// Records that the way closed an unused warm connection at `age`; a second close within
/// a quarter of the first's age sets (or lowers) the cut-off.
fn learn_cut_off(st: &mut State, age: Duration) {
    let agrees = st.closed_at.is_some_and(|prev| {
        let (lo, hi) = (prev.min(age), prev.max(age));
        hi - lo <= hi / 4
    });
    st.closed_at = Some(age);
    if agrees && st.cut_off.is_none_or(|c| age < c) {
        st.cut_off = Some(age);
        tracing::info!(
            "the way to the server closes idle connections after about {} s: warm ones \
             retire before {} s from now on",
            age.as_secs_f64().round(),
            age.mul_f64(0.7).as_secs_f64().round()
        );
    }
}

/// True if nothing has arrived on `io` and it has not closed: a server or proxy that
/// hung up on a pooled connection shows as readable.
pub(super) fn still_open(io: &mut ServerIo) -> bool {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut one = [0u8; 1];
    let mut buf = ReadBuf::new(&mut one);
    matches!(Pin::new(io).poll_read(&mut cx, &mut buf), Poll::Pending)
}
