//! The accept loop both roles share: permit → accept (backoff on errors) → spawn the
//! connection's story in its own span; on shutdown stop accepting, drain, report.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::net::{accept_with_backoff, configure_socket, SocketOpts};

/// How a listener accepts.
#[derive(Clone, Copy, Debug)]
pub struct AcceptOpts {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long open connections may finish after shutdown is asked.
    pub shutdown_grace: Duration,
    /// Options for every accepted socket.
    pub socket: SocketOpts,
    /// The inbound kind for the connection span, if known before the first byte.
    pub inbound: Option<&'static str>,
}

/// Serves `listener` with `serve` until `shutdown` is cancelled, then waits up to the
/// grace period for open connections. Each connection runs in a span
/// `conn{id, peer, inbound, target}`; stages fill in what they learn.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    opts: AcceptOpts,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut next_id = 0u64;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (conn, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = accept_with_backoff(&listener) => a,
        };
        configure_socket(SockRef::from(&conn), &opts.socket);
        next_id += 1;
        let span = info_span!("conn", id = next_id, %peer, inbound = tracing::field::Empty, target = tracing::field::Empty);
        if let Some(kind) = opts.inbound {
            span.record("inbound", kind);
        }
        // `map`, not an async block: a block that awaits `fut` would store it twice.
        let task = serve(conn).map(move |()| drop(permit));
        tracker.spawn(task.instrument(span));
    }
    drop(listener);
    tracker.close();
    info!(open = tracker.len(), "stopped accepting");
    if tokio::time::timeout(opts.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            cut = tracker.len(),
            "grace period over; closing the remaining connections"
        );
    } else {
        info!("all connections closed");
    }
}
