//! The bench's own loopback target and what one stream or one new tunnel through the
//! proxy measures.

use super::*;

pub(crate) const BLOCK: usize = 256 * 1024;

/// The target: `D` + u64 → that many bytes down; `U` + u64 → read that many, answer 1
/// byte; `E` → answer 1 byte.
pub(crate) async fn target() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let mut head = [0u8; 9];
                if c.read_exact(&mut head[..1]).await.is_err() {
                    return;
                }
                match head[0] {
                    b'E' => {
                        let _ = c.write_all(b"e").await;
                        return;
                    }
                    b'R' => {
                        // Echo 1 KiB messages until the client leaves.
                        let mut msg = [0u8; 1024];
                        while c.read_exact(&mut msg).await.is_ok() {
                            if c.write_all(&msg).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    b'G' => {
                        // A plain HTTP GET: read the head, answer a small page.
                        let mut head = vec![b'G'];
                        let mut one = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                            if c.read_exact(&mut one).await.is_err() {
                                return;
                            }
                            head.push(one[0]);
                        }
                        let page =
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                        let _ = c.write_all(page).await;
                        return;
                    }
                    b'I' => {
                        // Answer once, then hold the connection until the client closes.
                        let _ = c.write_all(b"i").await;
                        let mut one = [0u8; 1];
                        let _ = c.read(&mut one).await;
                        return;
                    }
                    _ => {}
                }
                if c.read_exact(&mut head[1..]).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(head[1..9].try_into().unwrap_or_default());
                let mut buf = vec![0x5au8; BLOCK];
                if head[0] == b'D' {
                    while left > 0 {
                        let n = left.min(BLOCK as u64) as usize;
                        if c.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = c.shutdown().await;
                } else {
                    while left > 0 {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left = left.saturating_sub(n as u64),
                        }
                    }
                    let _ = c.write_all(b"k").await;
                }
            });
        }
    });
    Ok(addr)
}

pub(crate) async fn open(
    proxy: Option<SocketAddr>,
    target: SocketAddr,
) -> std::io::Result<TcpStream> {
    let s = match proxy {
        None => TcpStream::connect(target).await?,
        Some(proxy) => {
            let (s, reply) = socks5_connect(proxy, &target.ip().to_string(), target.port()).await?;
            if reply != 0 {
                return Err(std::io::Error::other(format!("SOCKS5 reply {reply}")));
            }
            s
        }
    };
    s.set_nodelay(true)?;
    Ok(s)
}

pub(crate) async fn one_stream(
    proxy: Option<SocketAddr>,
    target: SocketAddr,
    bytes: u64,
    dir: Dir,
) -> std::io::Result<()> {
    let mut s = open(proxy, target).await?;
    let mut head = [0u8; 9];
    head[0] = if dir == Dir::Down { b'D' } else { b'U' };
    head[1..].copy_from_slice(&bytes.to_be_bytes());
    s.write_all(&head).await?;
    let mut buf = vec![0xa5u8; BLOCK];
    if dir == Dir::Down {
        let mut got = 0u64;
        while got < bytes {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other(format!(
                    "stream ended after {got} of {bytes} bytes"
                )));
            }
            got += n as u64;
        }
    } else {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            s.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        s.read_exact(&mut buf[..1]).await?;
    }
    Ok(())
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One new tunnel's time from connect to the first byte of a GET's answer.
pub(crate) async fn first_byte(
    socks: Option<SocketAddr>,
    http_proxy: Option<SocketAddr>,
    target: SocketAddr,
) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = match http_proxy {
        Some(p) => {
            let s = TcpStream::connect(p).await?;
            s.set_nodelay(true)?;
            s
        }
        None => open(socks, target).await?,
    };
    let req = match http_proxy {
        Some(_) => format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        None => format!("GET / HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).await?;
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut one))
        .await
        .map_err(|_| std::io::Error::other("no answer in 30 s"))??;
    if n == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(start.elapsed())
}
