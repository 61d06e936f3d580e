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
