//! Memory back to the system once a busy spell is over. glibc's malloc keeps the pages
//! that connections freed for its own reuse: after a few hundred tunnels at once a quiet
//! program would go on holding its peak. When the connections open have fallen to a
//! quarter of the most seen since the last look (or to none after a busy spell), the free
//! pages of every arena are handed back (`malloc_trim`). Elsewhere this does nothing.
//!
//! Not done, measured: a fixed mmap threshold (256 KiB) so that a bulk tunnel's grown
//! copy buffers are unmapped when freed — the relay frees its buffer whenever the source
//! has nothing, so bulk paid an mmap and fresh pages each time (0.70–0.86× throughput).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How often the connections open are looked at.
const LOOK: Duration = Duration::from_secs(5);

/// Below this many connections at the peak, the spell was not busy: nothing to give back.
const BUSY: usize = 16;

/// Watches the connections open — `total` permits of `limit`, one held per connection
/// (the accept loop's budget) — until `shutdown`, giving memory back after each busy
/// spell.
pub async fn give_back_after_load(
    limit: Arc<Semaphore>,
    total: usize,
    shutdown: CancellationToken,
) {
    let mut peak = 0;
    let mut look = tokio::time::interval(LOOK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = look.tick() => {}
        }
        let open = total.saturating_sub(limit.available_permits());
        peak = peak.max(open);
        if peak >= BUSY && open * 4 <= peak {
            give_back();
            peak = open;
        }
    }
}

/// Hands the allocator's free pages back to the system, where the allocator allows it.
#[allow(unsafe_code)]
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it only walks the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
