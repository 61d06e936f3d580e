//! Replay filters: salts seen recently.
//!
//! A salt is looked up and recorded only after the first chunk that uses it authenticates,
//! so junk cannot fill the filter. The server records its own salts too, so a recorded
//! server stream reflected back at it is refused.
//!
//! SIP004 carries no time, so a recorded flight can come back hours later: its filter is
//! sized by memory, not by count of a few minutes' traffic. Two generations of Bloom
//! filters, each for `capacity` salts at a one-in-a-million false-positive rate (about
//! 3.6 bytes a salt; pages are touched only as bits are set): when the current one is
//! full it becomes the old one and the oldest is dropped, so the last `capacity` to
//! `2 × capacity` salts are always remembered. At the server's default of 2^20 salts a
//! generation that is 7.2 MB at most and, at 100 new tunnels a second, 3 to 6 hours of
//! memory. A false positive refuses one real client's tunnel once in a million; it
//! retries with a fresh salt.
//!
//! SIP022 carries a timestamp, so its set is exact and holds only the salts of the span
//! in which a header can be accepted.

use std::collections::{HashSet, VecDeque};

use bloomfilter::Bloom;
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
    /// SIP004: the last `capacity` to `2 × capacity` salts.
    Generations {
        current: Box<Bloom<[u8]>>,
        old: Option<Box<Bloom<[u8]>>>,
        in_current: usize,
        capacity: usize,
    },
    /// SIP022: exactly the salts of the last `window`.
    Window {
        seen: HashSet<u128>,
        order: VecDeque<(Instant, u128)>,
        window: Duration,
    },
}

/// False positives per lookup in a full SIP004 generation.
const FALSE_POSITIVES: f64 = 1e-6;

fn generation(capacity: usize) -> Box<Bloom<[u8]>> {
    let mut seed = [0u8; 32];
    // Unit tests hash with a fixed seed: a false positive (one in a million a lookup)
    // would otherwise fail a test now and then; with it, each test's outcome is fixed.
    if cfg!(test) {
        seed = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    } else {
        rand::Rng::fill(&mut rand::thread_rng(), &mut seed[..]);
    }
    // Only fails for a zero capacity or rate, which `new` rules out.
    let bloom = Bloom::new_for_fp_rate_with_seed(capacity, FALSE_POSITIVES, &seed)
        .unwrap_or_else(|e| unreachable!("bloom parameters: {e}"));
    Box::new(bloom)
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
    /// SIP004: a filter remembering at least the last `capacity` salts.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let inner = Inner::Generations {
            current: generation(capacity),
            old: None,
            in_current: 0,
            capacity,
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

    /// The one rule by which a peer's salt enters the filter, on both ends: once
    /// something keyed by it has authenticated (so junk never does). `None` before then;
    /// else `Some(false)` if it was already there (a replay), `Some(true)` if now recorded.
    pub fn record_peer_salt(&self, dec: &crate::frame::Decoder) -> Option<bool> {
        let salt = dec.salt().filter(|_| dec.authenticated())?;
        Some(self.check_and_insert(salt))
    }

    /// Records `salt`; returns `false` if it was already there (a replay).
    pub fn check_and_insert(&self, salt: &[u8]) -> bool {
        self.check_and_insert_at(salt, Instant::now())
    }

    fn check_and_insert_at(&self, salt: &[u8], now: Instant) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *g {
            Inner::Generations {
                current,
                old,
                in_current,
                capacity,
            } => {
                if current.check(salt) || old.as_ref().is_some_and(|o| o.check(salt)) {
                    return false;
                }
                if *in_current >= *capacity {
                    *old = Some(std::mem::replace(current, generation(*capacity)));
                    *in_current = 0;
                }
                current.set(salt);
                *in_current += 1;
                true
            }
            Inner::Window {
                seen,
                order,
                window,
            } => {
                let fp = fingerprint(salt);
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
    fn replays_are_caught_and_the_last_capacity_salts_are_remembered() {
        let f = ReplayFilter::new(100);
        assert!(f.check_and_insert(&[1; 32]));
        assert!(!f.check_and_insert(&[1; 32]));
        let salt = |i: u32| {
            let mut s = [9u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            s
        };
        for i in 0..250u32 {
            assert!(f.check_and_insert(&salt(i)), "{i}");
        }
        // The last 100 are remembered whatever the generation they are in.
        for i in 150..250u32 {
            assert!(!f.check_and_insert(&salt(i)), "{i} forgotten");
        }
        // Two generations at most: the oldest are gone (a fresh salt then passes).
        assert!(
            f.check_and_insert(&salt(0)),
            "the oldest generation is dropped"
        );
    }

    #[test]
    fn a_server_generation_of_a_million_salts_is_under_four_megabytes() {
        let bytes = Bloom::<[u8]>::compute_bitmap_size(1 << 20, FALSE_POSITIVES);
        assert!(bytes < 4 << 20, "{bytes} bytes per generation");
        assert!(
            bytes > 3 << 20,
            "{bytes} bytes: the false-positive rate changed?"
        );
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
