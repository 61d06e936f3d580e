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
#[derive(Clone, Debug)]
pub struct AcceptOpts {
    /// Connections served at once, one permit each, shared by every listener of the
    /// process (so that together they stay within the descriptor budget); more wait in
    /// the listen backlog.
    pub limit: Arc<Semaphore>,
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
    // Set once on the listener: Linux copies Nagle and keepalive settings into every
    // socket it accepts, which saves five system calls per connection.
    configure_socket(SockRef::from(&listener), &opts.socket);
    let limit = opts.limit.clone();
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
    if crate::timeout::within(opts.shutdown_grace, tracker.wait())
        .await
        .is_none()
    {
        warn!(
            cut = tracker.len(),
            "grace period over; closing the remaining connections"
        );
    } else {
        info!("all connections closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Keepalive;

    /// The accept loop relies on this: options set on a listener reach accepted sockets.
    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_options() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ka = Keepalive {
            idle: Duration::from_secs(77),
            interval: Duration::from_secs(11),
            count: 3,
        };
        let opts = SocketOpts {
            nodelay: true,
            keepalive: Some(ka),
            ..SocketOpts::default()
        };
        configure_socket(SockRef::from(&listener), &opts);
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (conn, _) = listener.accept().await.expect("accept");
        let s = SockRef::from(&conn);
        assert!(s.nodelay().expect("nodelay"), "TCP_NODELAY inherited");
        assert!(s.keepalive().expect("keepalive"), "SO_KEEPALIVE inherited");
        assert_eq!(s.keepalive_time().expect("idle"), ka.idle);
        assert_eq!(s.keepalive_interval().expect("interval"), ka.interval);
        assert_eq!(s.keepalive_retries().expect("count"), ka.count);
    }
}
