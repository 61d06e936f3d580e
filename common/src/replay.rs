//! SIP004 replay filter: salts seen recently, in two generations.
//!
//! A salt is looked up and recorded only after the first chunk that uses it authenticates,
//! so junk cannot fill the filter. The server records its own salts too, so a recorded
//! server stream reflected back at it is refused. When the current generation is full
//! it becomes the old one and the oldest is dropped: memory stays bounded and the most
//! recent `2 × capacity` salts are always remembered.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long SIP022 salts are kept: the whole span in which a header stamped at one time
/// can pass the clock check, with a margin.
pub const SIP022_WINDOW: Duration = Duration::from_secs(2 * crate::frame::MAX_SKEW as u64 + 5);

/// Salts seen recently (the first 16 bytes of each: ample to tell random salts apart).
pub struct ReplayFilter {
    inner: Mutex<Inner>,
}

enum Inner {
    /// SIP004: the last `2 × capacity` salts at least.
    Generations {
        current: HashSet<u128>,
        old: HashSet<u128>,
        capacity: usize,
    },
    /// SIP022: exactly the salts of the last `window` (60 s).
    Window {
        seen: HashSet<u128>,
        order: VecDeque<(Instant, u128)>,
        window: Duration,
    },
}

fn fingerprint(salt: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = salt.len().min(16);
    b[..n].copy_from_slice(&salt[..n]);
    u128::from_le_bytes(b)
}

impl std::fmt::Debug for ReplayFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayFilter")
    }
}

impl ReplayFilter {
    /// SIP004: a filter remembering at least `capacity` salts.
    pub fn new(capacity: usize) -> Self {
        let inner = Inner::Generations {
            current: HashSet::new(),
            old: HashSet::new(),
            capacity: capacity.max(1),
        };
        ReplayFilter {
            inner: Mutex::new(inner),
        }
    }

    /// SIP022: every salt for as long as a header carrying it could still be accepted. A
    /// header stamped `t` passes the clock check while this machine's clock reads within
    /// `t ± MAX_SKEW`, a span of `2 × MAX_SKEW` (plus a second for whole-second stamps):
    /// salts are kept that long and a little more, so a replay is refused by one rule or
    /// the other at any moment.
    pub fn sip022() -> Self {
        Self::window(SIP022_WINDOW)
    }

    /// Every salt of the last `window`, no more, no less.
    pub fn window(window: Duration) -> Self {
        let inner = Inner::Window {
            seen: HashSet::new(),
            order: VecDeque::new(),
            window,
        };
        ReplayFilter {
            inner: Mutex::new(inner),
        }
    }

    /// Records `salt`; returns `false` if it was already there (a replay).
    pub fn check_and_insert(&self, salt: &[u8]) -> bool {
        self.check_and_insert_at(salt, Instant::now())
    }

    fn check_and_insert_at(&self, salt: &[u8], now: Instant) -> bool {
        let fp = fingerprint(salt);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *g {
            Inner::Generations {
                current,
                old,
                capacity,
            } => {
                if current.contains(&fp) || old.contains(&fp) {
                    return false;
                }
                if current.len() >= *capacity {
                    *old = std::mem::take(current);
                }
                current.insert(fp)
            }
            Inner::Window {
                seen,
                order,
                window,
            } => {
                while let Some(&(t, old)) = order.front() {
                    if now.duration_since(t) < *window {
                        break;
                    }
                    order.pop_front();
                    seen.remove(&old);
                }
                if !seen.insert(fp) {
                    return false;
                }
                order.push_back((now, fp));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_caught_and_memory_is_bounded() {
        let f = ReplayFilter::new(100);
        assert!(f.check_and_insert(&[1; 32]));
        assert!(!f.check_and_insert(&[1; 32]));
        for i in 0..250u32 {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            s[31] = 9;
            assert!(f.check_and_insert(&s));
        }
        let g = f.inner.lock().expect("lock");
        let Inner::Generations { current, old, .. } = &*g else {
            panic!("mode")
        };
        assert!(current.len() + old.len() <= 200);
    }

    #[test]
    fn sip022_salts_outlive_every_header_that_could_carry_them() {
        // A header stamped t passes while the clock reads t - 30 ..= t + 30 (and a
        // fraction): the salt recorded at the earliest moment must still be there at
        // the latest.
        let f = ReplayFilter::sip022();
        let t0 = Instant::now();
        assert!(f.check_and_insert_at(&[7; 32], t0));
        let latest = Duration::from_secs(2 * crate::frame::MAX_SKEW as u64 + 1);
        assert!(!f.check_and_insert_at(&[7; 32], t0 + latest));
        assert!(SIP022_WINDOW > latest);
    }

    #[test]
    fn a_window_forgets_exactly_at_its_end() {
        let f = ReplayFilter::window(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(f.check_and_insert_at(&[1; 32], t0));
        assert!(!f.check_and_insert_at(&[1; 32], t0 + Duration::from_secs(59)));
        assert!(f.check_and_insert_at(&[2; 32], t0 + Duration::from_secs(59)));
        assert!(
            f.check_and_insert_at(&[1; 32], t0 + Duration::from_secs(60)),
            "forgotten after 60 s"
        );
        assert!(
            !f.check_and_insert_at(&[2; 32], t0 + Duration::from_secs(61)),
            "still within its own 60 s"
        );
    }
}
