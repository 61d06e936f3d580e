//! Several users on one server port: each a name and a key of the server's method. A
//! first flight (or a UDP packet) says nothing of whose it is; each user's key is tried
//! on it until one authenticates, as Outline does. Counters per user; the list can be
//! replaced while serving (SIGHUP), and a user taken out has its open tunnels closed
//! after a grace.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use burrow_common::aead::MasterKey;
use tokio_util::sync::CancellationToken;

/// One user.
#[derive(Debug)]
pub struct User {
    /// Shown in logs and metrics (`-` for the one key of a config without `[[user]]`).
    pub name: String,
    /// Their key.
    pub key: MasterKey,
    /// Cancelled a grace after the user is taken out: their tunnels close.
    pub removed: CancellationToken,
    /// Their counters.
    pub counters: Arc<Counters>,
}

/// What one user did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Plaintext bytes client → target (TCP and UDP).
    pub bytes_up: AtomicU64,
    /// Plaintext bytes target → client.
    pub bytes_down: AtomicU64,
    /// Tunnels opened (UDP sessions included).
    pub tunnels: AtomicU64,
    /// Targets not reached (refused by policy or unreachable).
    pub dial_errors: AtomicU64,
}

impl Counters {
    /// Adds to the byte counters.
    pub fn moved(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Relaxed);
        self.bytes_down.fetch_add(down, Relaxed);
    }
}

/// The users served now; replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Users {
    list: RwLock<Arc<Vec<Arc<User>>>>,
}

impl Users {
    /// The users of a config: `(name, key)` pairs.
    pub fn new(users: Vec<(String, MasterKey)>) -> Users {
        let list = users
            .into_iter()
            .map(|(name, key)| {
                Arc::new(User {
                    name,
                    key,
                    removed: CancellationToken::new(),
                    counters: Default::default(),
                })
            })
            .collect();
        Users {
            list: RwLock::new(Arc::new(list)),
        }
    }

    /// The users now.
    pub fn get(&self) -> Arc<Vec<Arc<User>>> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Named users (the counters worth showing per user).
    pub fn named(&self) -> bool {
        self.get().iter().any(|u| u.name != "-")
    }

    /// Replaces the list with `next`: a user whose name and key are unchanged keeps their
    /// counters (and their open tunnels); one whose key changed or who is gone has their
    /// tunnels closed after `grace`. Returns (added, changed, removed) names.
    pub fn replace(
        &self,
        next: Vec<(String, MasterKey)>,
        grace: Duration,
    ) -> (Vec<String>, Vec<String>, Vec<String>) {
        let old = self.get();
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        let mut list = Vec::with_capacity(next.len());
        for (name, key) in next {
            match old.iter().find(|u| u.name == name) {
                Some(u) if u.key == key => list.push(u.clone()),
                found => {
                    if found.is_some() {
                        changed.push(name.clone());
                    } else {
                        added.push(name.clone());
                    }
                    let counters = found.map(|u| u.counters.clone()).unwrap_or_default();
                    list.push(Arc::new(User {
                        name,
                        key,
                        removed: CancellationToken::new(),
                        counters,
                    }));
                }
            }
        }
        for u in old.iter() {
            let kept = list.iter().any(|n| Arc::ptr_eq(n, u));
            if !kept {
                if !changed.contains(&u.name) {
                    removed.push(u.name.clone());
                }
                let token = u.removed.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    token.cancel();
                });
            }
        }
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
        (added, changed, removed)
    }
}
