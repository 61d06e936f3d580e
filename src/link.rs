//! A long link on loopback, where `tc netem` is not available: a relay that delivers
//! every byte RTT/2 after it was sent, in order, keeps half-closes, and charges a new
//! connection's first bytes one more round trip for the TCP handshake they would have
//! waited for — unless they came in the SYN (TCP Fast Open, where the system takes it:
//! `net.ipv4.tcp_fastopen` with bit 2), as they would have over a real link. It also records the size of every read it makes from the client side, so
//! a test can see which bytes left together.
//!
//! ```text
//! client ──► link ──(+RTT/2, first bytes +RTT)──► upstream
//!        ◄──       ◄──(+RTT/2)──────────────────
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running link.
pub struct Link {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<Mutex<u64>>,
    /// Per connection, the size of each read from the client, in order.
    pub client_reads: Arc<Mutex<Vec<Vec<usize>>>>,
}

impl Link {
    /// A link on `bind` to `upstream` with round-trip time `rtt`.
    pub async fn start(bind: &str, upstream: SocketAddr, rtt: Duration) -> std::io::Result<Link> {
        let listener = TcpListener::bind(bind).await?;
        burrow_common::fast_open::listen(&listener);
        let link = Link {
            addr: listener.local_addr()?,
            accepted: Arc::default(),
            client_reads: Arc::default(),
        };
        let (accepted, reads) = (link.accepted.clone(), link.client_reads.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let i = {
                    let mut n = accepted.lock().unwrap_or_else(|p| p.into_inner());
                    *n += 1;
                    *n as usize - 1
                };
                reads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Vec::new());
                tokio::spawn(carry(client, upstream, rtt, reads.clone(), i));
            }
        });
        Ok(link)
    }
}

/// One connection both ways.
async fn carry(
    client: TcpStream,
    upstream: SocketAddr,
    rtt: Duration,
    reads: Arc<Mutex<Vec<Vec<usize>>>>,
    i: usize,
) {
    // The client's bytes could not have left before its handshake's round trip, unless
    // they rode its SYN.
    let ready = if burrow_common::fast_open::syn_carried_data(&client) {
        Instant::now()
    } else {
        Instant::now() + rtt
    };
    let _ = client.set_nodelay(true);
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let record = move |n: usize| {
        if let Some(v) = reads.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
            v.push(n);
        }
    };
    let up = one_way(cr, sw, rtt / 2, Some(ready), record);
    let down = one_way(sr, cw, rtt / 2, None, |_| {});
    tokio::join!(up, down);
}

/// Reads from `from` and writes each piece to `to` `delay` after it was read (not before
/// `not_before`); an EOF is passed on as a half-close, after the bytes before it.
async fn one_way(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    not_before: Option<Instant>,
    mut record: impl FnMut(usize),
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            let at = Instant::now().max(not_before.unwrap_or_else(Instant::now)) + delay;
            if n > 0 {
                record(n);
            }
            // An empty piece is the EOF.
            if tx.send((at, buf[..n].to_vec())).await.is_err() || n == 0 {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if bytes.is_empty() {
                let _ = to.shutdown().await;
                break;
            }
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(reader, writer);
}
