//! Several users on one server port: each a name and a key of the server's method. A
//! first flight (or a UDP packet) says nothing of whose it is; each user's key is tried
//! on it until one authenticates, as Outline does. Counters per user; the list can be
//! replaced while serving (SIGHUP), and a user taken out has its open tunnels closed
//! after a grace.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use burrow_common::key::MasterKey;
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
    /// Tunnels (and UDP sessions) open at once at most, if capped.
    pub max_connections: Option<usize>,
}

/// A user as the config gives them: name, key, cap on open tunnels.
pub type Spec = (String, MasterKey, Option<usize>);

impl User {
    /// Takes one of the user's open-tunnel slots: `None` when they are at their cap. The
    /// slot is given back when the guard drops.
    pub fn open_slot(self: &Arc<Self>) -> Option<Slot> {
        let now = self.counters.open.fetch_add(1, Relaxed) + 1;
        if self.max_connections.is_some_and(|cap| now as usize > cap) {
            self.counters.open.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// One open tunnel of a user's (see [`User::open_slot`]).
#[derive(Debug)]
pub struct Slot(Arc<User>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Relaxed);
    }
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
    /// Tunnels open now.
    pub open: std::sync::atomic::AtomicI64,
    /// Tunnels refused at the user's cap.
    pub capped: AtomicU64,
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
    pub fn new(users: Vec<Spec>) -> Users {
        let list = users
            .into_iter()
            .map(|(name, key, max_connections)| {
                Arc::new(User {
                    name,
                    key,
                    removed: CancellationToken::new(),
                    counters: Default::default(),
                    max_connections,
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
        next: Vec<Spec>,
        grace: Duration,
    ) -> (Vec<String>, Vec<String>, Vec<String>) {
        let old = self.get();
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        let mut list = Vec::with_capacity(next.len());
        for (name, key, max_connections) in next {
            match old.iter().find(|u| u.name == name) {
                Some(u) if u.key == key && u.max_connections == max_connections => {
                    list.push(u.clone())
                }
                Some(u) if u.key == key => {
                    // Only the cap changed: same tunnels, same counters.
                    changed.push(name.clone());
                    list.push(Arc::new(User {
                        name,
                        key,
                        removed: u.removed.clone(),
                        counters: u.counters.clone(),
                        max_connections,
                    }));
                }
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
                        max_connections,
                    }));
                }
            }
        }
        for u in old.iter() {
            // Kept: the same user, or the same key and tunnels with a new cap.
            let kept = list.iter().any(|n| {
                Arc::ptr_eq(n, u) || (Arc::ptr_eq(&n.counters, &u.counters) && n.key == u.key)
            });
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
