//! The fault relay between squid and burrow-server: it carries connections as they are,
//! or slices writes into single bytes, or silences the connections open at that moment,
//! or resets them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The fault relay's switches, shared with every connection it carries.
#[derive(Default)]
pub(super) struct Faults {
    pub(super) slicing: AtomicBool,
    /// Connections open now: each one's silence flag and reset trigger.
    open: Mutex<Vec<(Arc<AtomicBool>, CancellationToken)>>,
}

impl Faults {
    pub(super) fn each(&self, f: impl Fn(&AtomicBool, &CancellationToken)) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, t)| !t.is_cancelled());
        for (silent, reset) in open.iter() {
            f(silent, reset);
        }
    }
}

/// A TCP relay to `to` that can slice, silence or reset what it carries; its address.
pub(super) async fn fault_relay(to: SocketAddr, faults: Arc<Faults>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((a, _)) = listener.accept().await {
            let faults = faults.clone();
            tokio::spawn(async move {
                let (mut a, Ok(mut b)) = (a, TcpStream::connect(to).await) else {
                    return;
                };
                let (silent, reset) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
                faults
                    .open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((silent.clone(), reset.clone()));
                let was_reset = {
                    let (ar, aw) = a.split();
                    let (br, bw) = b.split();
                    let (f, q) = (&faults, &silent);
                    tokio::select! {
                        _ = async { tokio::join!(carry(ar, bw, f, q), carry(br, aw, f, q)) } => false,
                        _ = reset.cancelled() => true,
                    }
                };
                if was_reset {
                    // A reset, not a close: RST on both sides.
                    let _ = socket2::SockRef::from(&a).set_linger(Some(Duration::ZERO));
                    let _ = socket2::SockRef::from(&b).set_linger(Some(Duration::ZERO));
                }
                reset.cancel();
            });
        }
    });
    addr
}

/// One direction of the relay: sliced while `faults.slicing`, still once `silent`.
async fn carry(
    mut r: tokio::net::tcp::ReadHalf<'_>,
    mut w: tokio::net::tcp::WriteHalf<'_>,
    faults: &Faults,
    silent: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sliced = 0usize;
    loop {
        if silent.load(Relaxed) {
            return std::future::pending().await;
        }
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if silent.load(Relaxed) {
            return std::future::pending().await;
        }
        // Sliced: the first 64 KiB of a direction in single bytes.
        let one_by_one = faults.slicing.load(Relaxed) && sliced < 64 * 1024;
        let wrote = if one_by_one {
            sliced += n;
            let mut ok = Ok(());
            for b in &buf[..n] {
                ok = w.write_all(std::slice::from_ref(b)).await;
                if ok.is_err() {
                    break;
                }
            }
            ok
        } else {
            w.write_all(&buf[..n]).await
        };
        if wrote.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}
