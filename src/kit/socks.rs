//! A SOCKS5 client of the tests' own (CONNECT and UDP ASSOCIATE), raw sends and a UDP echo.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /bytes/n` (kit::http_target) through the SOCKS5 proxy at `proxy` on a tunnel of
/// its own; the answer's body.
pub async fn socks5_get_body(
    proxy: SocketAddr,
    target: SocketAddr,
    n: usize,
) -> std::io::Result<Vec<u8>> {
    let (mut s, reply) = socks5_connect(proxy, "127.0.0.1", target.port()).await?;
    if reply != 0 {
        return Err(std::io::Error::other(format!("SOCKS5 reply {reply}")));
    }
    s.write_all(format!("GET /bytes/{n} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
        .await?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await?;
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no head"))?;
    Ok(all.split_off(at + 4))
}

/// Connects through a SOCKS5 proxy (no auth) to `target`; returns the stream and the
/// reply code (0 = success).
pub async fn socks5_connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> std::io::Result<(TcpStream, u8)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(&[5, 1, 0]).await?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await?;
    let mut req = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            req.push(3);
            req.push(host.len() as u8);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        _ => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            n[0] as usize + 2
        }
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await?;
    Ok((s, head[1]))
}

/// Sends `raw` to `addr`, reads until the peer closes (or 20 s pass), returns what came
/// back as text.
pub async fn send_raw(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A UDP echo on loopback: every datagram goes back to its sender. Also counts them.
pub async fn udp_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp echo");
    let addr = sock.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, seen)
}

/// A SOCKS5 UDP association through `proxy`: the control connection (keep it open), a
/// UDP socket of the app's, and the relay address to send to.
pub struct Socks5Udp {
    /// The control connection: the association lives as long as it.
    pub control: TcpStream,
    /// The app's socket.
    pub socket: tokio::net::UdpSocket,
    /// Where the proxy takes datagrams.
    pub relay: SocketAddr,
}

impl Socks5Udp {
    /// UDP ASSOCIATE through `proxy`; `Err` with the reply code if refused.
    pub async fn associate(proxy: SocketAddr) -> Result<Socks5Udp, u8> {
        Socks5Udp::associate_as(proxy, false).await
    }

    /// [`Socks5Udp::associate`], the request naming the port the app sends from (so that
    /// the proxy takes datagrams from that port alone) when `named`.
    pub async fn associate_as(proxy: SocketAddr, named: bool) -> Result<Socks5Udp, u8> {
        let io = |_| 255u8;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(io)?;
        let port = match named {
            true => socket.local_addr().map_err(io)?.port(),
            false => 0,
        };
        let mut control = TcpStream::connect(proxy).await.map_err(io)?;
        control.write_all(&[5, 1, 0]).await.map_err(io)?;
        let mut m = [0u8; 2];
        control.read_exact(&mut m).await.map_err(io)?;
        let [hi, lo] = port.to_be_bytes();
        let ip = if named { [127, 0, 0, 1] } else { [0; 4] };
        control
            .write_all(&[5, 3, 0, 1, ip[0], ip[1], ip[2], ip[3], hi, lo])
            .await
            .map_err(io)?;
        let mut head = [0u8; 4];
        control.read_exact(&mut head).await.map_err(io)?;
        if head[1] != 0 {
            return Err(head[1]);
        }
        let relay = match head[3] {
            1 => {
                let mut b = [0u8; 6];
                control.read_exact(&mut b).await.map_err(io)?;
                SocketAddr::from(([b[0], b[1], b[2], b[3]], u16::from_be_bytes([b[4], b[5]])))
            }
            _ => return Err(254),
        };
        Ok(Socks5Udp {
            control,
            socket,
            relay,
        })
    }

    /// Sends `data` to `to` through the association.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) {
        let mut d = socks5_udp_header(to);
        d.extend_from_slice(data);
        self.socket.send_to(&d, self.relay).await.expect("send");
    }

    /// The next datagram back: who sent it and its data; `None` after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let d = &buf[..n];
        if n < 10 || d[3] != 1 {
            return None;
        }
        let from = SocketAddr::from(([d[4], d[5], d[6], d[7]], u16::from_be_bytes([d[8], d[9]])));
        Some((from, d[10..].to_vec()))
    }
}

/// The SOCKS5 UDP request header for an IPv4 destination.
pub fn socks5_udp_header(to: SocketAddr) -> Vec<u8> {
    let mut d = vec![0, 0, 0, 1];
    match to.ip() {
        std::net::IpAddr::V4(ip) => d.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(_) => panic!("IPv4 destinations only"),
    }
    d.extend_from_slice(&to.port().to_be_bytes());
    d
}
