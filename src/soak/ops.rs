//! The soak's operations: a download checked byte by byte, a request and its answer, a
//! few UDP datagrams echoed; and the counts they add to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kit::{self, Socks5Udp};

/// One operation's outcome.
pub(super) enum Outcome {
    Ok(u64),
    Clean,
    /// What was wrong.
    Corrupt(String),
}

/// A GET of `n` pattern bytes through SOCKS5: the body must be a prefix of the pattern.
pub(super) async fn bulk(local: SocketAddr, target: SocketAddr, n: usize) -> Outcome {
    let Ok((mut s, 0)) = kit::socks5_connect(local, "127.0.0.1", target.port()).await else {
        return Outcome::Clean;
    };
    let head = format!("GET /bytes/{n} HTTP/1.0\r\nHost: t\r\n\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return Outcome::Clean;
    }
    let mut all = Vec::with_capacity(n + 256);
    let read = s.read_to_end(&mut all).await;
    let Some(at) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::Clean;
    };
    let body = &all[at + 4..];
    let want = kit::pattern(n, n as u64);
    if body.len() > n || body != &want[..body.len()] {
        let at = body.iter().zip(&want).position(|(a, b)| a != b);
        return Outcome::Corrupt(format!(
            "GET /bytes/{n}: {} bytes, first wrong at {at:?}",
            body.len()
        ));
    }
    if read.is_ok() && body.len() == n {
        Outcome::Ok(n as u64)
    } else {
        Outcome::Clean
    }
}

/// Datagram `i` of operation `op`: the two numbers, then pattern bytes they decide; a
/// datagram that says which it is can be checked on its own.
fn datagram(op: u64, i: u64) -> Vec<u8> {
    let mut d = op.to_be_bytes().to_vec();
    d.extend_from_slice(&i.to_be_bytes());
    let len = 1 + (op.wrapping_mul(31).wrapping_add(i.wrapping_mul(97)) % 1200) as usize;
    d.extend(kit::pattern(len, op ^ i));
    d
}

/// The operation whose intact datagram `d` is, if it is one.
fn intact(d: &[u8]) -> Option<u64> {
    let n = |at: usize| Some(u64::from_be_bytes(d.get(at..at + 8)?.try_into().ok()?));
    let (op, i) = (n(0)?, n(8)?);
    (d == datagram(op, i)).then_some(op)
}

/// A few datagrams echoed through a UDP association: each one back byte-exact or lost.
/// One of another operation's (its app socket's port used again while that association's
/// last echo was on its way) is counted as a stray, not as corrupt, if it is intact.
pub(super) async fn udp(
    local: SocketAddr,
    echo: SocketAddr,
    op: u64,
    report: &Counters,
) -> Outcome {
    let Ok(assoc) = Socks5Udp::associate_as(local, true).await else {
        return Outcome::Clean;
    };
    let mut got = 0;
    for i in 0..10u64 {
        // The association ended (its tunnel broke): burrow-local closed the control
        // connection. Its UDP port may now be anyone's: send nothing more to it.
        if matches!(assoc.control.try_read(&mut [0u8; 1]), Ok(0)) {
            return Outcome::Clean;
        }
        let data = datagram(op, i);
        assoc.send(echo, &data).await;
        report.datagrams.fetch_add(1, Relaxed);
        let Some((_, back)) = assoc.recv(Duration::from_secs(2)).await else {
            report.datagrams_lost.fetch_add(1, Relaxed);
            continue;
        };
        if back == data {
            got += 1;
            continue;
        }
        match intact(&back).or_else(|| intact(back.get(10..)?)) {
            // An earlier datagram's late echo: fine. Another operation's, intact: its
            // association's port, or the server's socket for it, used again while its
            // echo was on the way (with a SOCKS5 header inside when this app sent to an
            // association that had just ended and whose port a server socket took).
            Some(o) if o != op => {
                report.strays.fetch_add(1, Relaxed);
            }
            Some(_) => {}
            None => {
                return Outcome::Corrupt(format!(
                    "UDP: op {op} datagram {i}: {} bytes back that no operation sent: {:02x?}",
                    back.len(),
                    &back[..back.len().min(24)]
                ))
            }
        }
    }
    if got == 10 {
        Outcome::Ok(0)
    } else {
        Outcome::Clean
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) ops: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) clean: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) hangs: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) datagrams: AtomicU64,
    pub(super) datagrams_lost: AtomicU64,
    pub(super) strays: AtomicU64,
    pub(super) notes: Mutex<Vec<String>>,
    pub(super) worst_recovery_ms: AtomicU64,
    /// Milliseconds from the start to the last success.
    pub(super) last_ok_ms: AtomicU64,
}
