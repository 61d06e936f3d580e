//! One helper for every network wait.

use std::future::Future;
use std::io;
use std::time::Duration;

/// Runs `fut` for at most `d`; on expiry yields `ErrorKind::TimedOut` naming `what`.
pub async fn with_timeout<T, F>(what: &'static str, d: Duration, fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} timed out after {}", humantime::format_duration(d)),
        )),
    }
}

/// Runs `fut` for at most `d`: `None` when the time ran out first. For the waits whose
/// expiry is not an error to report (a best-effort close, a wait that has a fallback).
pub async fn within<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(d, fut).await.ok()
}

/// [`within`], up to a deadline rather than for a duration.
pub async fn before<F: Future>(deadline: tokio::time::Instant, fut: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, fut).await.ok()
}

/// An idle deadline that activity pushes out. A touch is one clock read and a store; the
/// timer is set again only when it fires before the deadline, not on every packet.
pub struct Idle {
    base: tokio::time::Instant,
    /// Milliseconds from `base` to the last activity.
    last: std::sync::atomic::AtomicU64,
    idle: Duration,
}

impl Idle {
    /// A deadline `idle` after now (and after each [`Idle::touch`]).
    pub fn new(idle: Duration) -> Idle {
        Idle {
            base: tokio::time::Instant::now(),
            last: Default::default(),
            idle,
        }
    }

    /// Marks activity now.
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once `idle` has passed without a touch.
    pub async fn expired(&self) {
        loop {
            let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
            let due = self.base + Duration::from_millis(last) + self.idle;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_is_pushed_out_by_touches() {
        let idle = Idle::new(Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(6)).await;
        idle.touch();
        idle.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(16));
        // Expired stays expired.
        idle.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(16));
    }
}
