//! Loopback targets: the HTTP origin, a counter of connections, a text origin (a PAC
//! server, say), the half-close checker, and the recorder of what each connection sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A small HTTP/1.1 origin: `GET /bytes/N` answers N pattern bytes (seed N), `GET /close/N`
/// the same close-delimited (no length),
/// `POST /sha256` answers the hex SHA-256 of the body, anything else "hello from burrow".
/// One request per connection. Returns its address.
pub async fn http_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind http target");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = http_answer(conn).await;
            });
        }
    });
    addr
}

async fn http_answer(conn: TcpStream) -> std::io::Result<()> {
    let mut r = TokioBufReader::new(conn);
    let mut request_line = String::new();
    r.read_line(&mut request_line).await?;
    let mut length = 0usize;
    let mut expect_continue = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("expect:") && lower.contains("100-continue") {
            expect_continue = true;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = path
        .rsplit_once("://")
        .map_or(path, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let body = if method == "POST" && path == "/sha256" {
        if expect_continue {
            r.get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let mut hasher = Sha256::new();
        let mut left = length;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = r.read(&mut buf[..left.min(64 * 1024)]).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n;
        }
        hex::encode(hasher.finalize()).into_bytes()
    } else if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        pattern(n, n as u64)
    } else {
        b"hello from burrow\n".to_vec()
    };
    let conn = r.get_mut();
    if let Some(n) = path
        .strip_prefix("/close/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        // Close-delimited: no length, the end of the body is the end of the connection.
        conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .await?;
        conn.write_all(&pattern(n, n as u64)).await?;
        return conn.shutdown().await;
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(&body).await?;
    conn.shutdown().await
}

/// A listener that only counts the connections it accepts (and holds them open).
pub struct Counter {
    /// Its address.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl Counter {
    /// Starts one on `bind` (e.g. "127.0.0.1:0").
    pub async fn start(bind: &str) -> Counter {
        let listener = TcpListener::bind(bind).await.expect("bind counter");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Counter { addr, count }
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// A web server answering every request with `body` (200, `content_type`), counting the
/// requests it answered: a PAC server, say.
pub async fn text_origin(
    body: String,
    content_type: &'static str,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (body, count) = (body.clone(), count.clone());
            tokio::spawn(async move {
                let mut r = TokioBufReader::new(conn);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let mut conn = r.into_inner();
                if conn.write_all(head.as_bytes()).await.is_ok()
                    && conn.write_all(body.as_bytes()).await.is_ok()
                {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, served)
}

/// A target that reads until EOF, then answers `got N bytes, sha256 H` and closes:
/// only correct if half-close travels end to end.
pub async fn half_close_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if conn.read_to_end(&mut all).await.is_ok() {
                    let answer = format!("got {} bytes, sha256 {}", all.len(), sha256_hex(&all));
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A target that records what each connection sends (and counts connections); with a
/// greeting it writes that first, so the server has something to answer with.
pub struct Recorder {
    /// Its address.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// What one connection sent, and whether it has closed.
type Received = (Vec<u8>, bool);

/// How a recorder's peer behaves.
#[derive(Clone, Copy)]
enum Peer {
    /// Writes this first, then only reads.
    Greets(&'static [u8]),
    /// Answers every request head with this.
    Answers(&'static [u8]),
}

impl Recorder {
    /// Starts one on `bind`.
    pub async fn start(bind: &str, greeting: &'static [u8]) -> Recorder {
        Recorder::serve(bind, Peer::Greets(greeting)).await
    }

    /// An HTTP peer that answers every request head (up to its blank line) with `reply`,
    /// keeping the connection: a proxy that always asks for credentials, say, or a
    /// server that always redirects. Records what each connection sent, as
    /// [`Recorder::start`].
    pub async fn answering(bind: &str, reply: &'static [u8]) -> Recorder {
        Recorder::serve(bind, Peer::Answers(reply)).await
    }

    async fn serve(bind: &str, peer: Peer) -> Recorder {
        let listener = TcpListener::bind(bind).await.expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (count.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let i = c.fetch_add(1, Ordering::SeqCst);
                r.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Vec::new(), false));
                let r = r.clone();
                tokio::spawn(async move {
                    let record = |bytes: &[u8]| {
                        r.lock().unwrap_or_else(|p| p.into_inner())[i]
                            .0
                            .extend_from_slice(bytes)
                    };
                    match peer {
                        Peer::Greets(greeting) => {
                            let _ = conn.write_all(greeting).await;
                            let mut buf = vec![0u8; 16 * 1024];
                            while let Ok(n @ 1..) = conn.read(&mut buf).await {
                                record(&buf[..n]);
                            }
                        }
                        Peer::Answers(reply) => {
                            // Byte by byte: each request head is answered where it ends.
                            let mut head = Vec::new();
                            let mut b = [0u8; 1];
                            while conn.read(&mut b).await.unwrap_or(0) == 1 {
                                record(&b);
                                head.push(b[0]);
                                if head.ends_with(b"\r\n\r\n") {
                                    head.clear();
                                    if conn.write_all(reply).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    r.lock().unwrap_or_else(|p| p.into_inner())[i].1 = true;
                });
            }
        });
        Recorder {
            addr,
            count,
            received,
        }
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits (up to `READY_TIMEOUT`) until at least `n` connections were accepted; returns
    /// the count then.
    pub fn wait_count(&self, n: usize) -> usize {
        let end = Instant::now() + READY_TIMEOUT;
        while self.count() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.count()
    }

    /// What connection `i` has sent so far.
    pub fn received(&self, i: usize) -> Vec<u8> {
        let all = self.received.lock().unwrap_or_else(|p| p.into_inner());
        all.get(i).map(|r| r.0.clone()).unwrap_or_default()
    }

    /// Everything connection `i` sent, once it has closed (waits up to `READY_TIMEOUT`).
    pub fn received_until_closed(&self, i: usize) -> Vec<u8> {
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some((data, true)) = self
                .received
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(i)
            {
                return data.clone();
            }
            assert!(
                Instant::now() < end,
                "connection {i} to the recorder never closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
