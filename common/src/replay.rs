//! SIP004 replay filter: salts seen recently, in two generations.
//!
//! A salt is looked up and recorded only after the first chunk that uses it authenticates,
//! so junk cannot fill the filter. The server records its own salts too, so a recorded
//! server stream reflected back at it is refused. When the current generation is full
//! it becomes the old one and the oldest is dropped: memory stays bounded and the most
//! recent `2 × capacity` salts are always remembered.

use std::collections::HashSet;
use std::sync::Mutex;

/// Salts seen recently (the first 16 bytes of each: ample to tell random salts apart).
pub struct ReplayFilter {
    inner: Mutex<Generations>,
    capacity: usize,
}

struct Generations {
    current: HashSet<u128>,
    old: HashSet<u128>,
}

fn fingerprint(salt: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = salt.len().min(16);
    b[..n].copy_from_slice(&salt[..n]);
    u128::from_le_bytes(b)
}

impl ReplayFilter {
    /// A filter remembering at least `capacity` salts.
    pub fn new(capacity: usize) -> Self {
        ReplayFilter {
            inner: Mutex::new(Generations {
                current: HashSet::new(),
                old: HashSet::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// Records `salt`; returns `false` if it was already there (a replay).
    pub fn check_and_insert(&self, salt: &[u8]) -> bool {
        let fp = fingerprint(salt);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.current.contains(&fp) || g.old.contains(&fp) {
            return false;
        }
        if g.current.len() >= self.capacity {
            g.old = std::mem::take(&mut g.current);
        }
        g.current.insert(fp);
        true
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
        assert!(g.current.len() + g.old.len() <= 200);
    }
}
