//! One port for all: SOCKS5 starts with 0x05, anything else is taken as HTTP.
//!
//! The first byte is peeked, not read, so nothing is consumed and nothing can be lost:
//! the protocol handler sees the stream from its first byte.

use std::io;

use tokio::net::TcpStream;

/// What a new connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// SOCKS version 5.
    Socks5,
    /// HTTP/1.x: a proxy request (CONNECT, absolute-form) or a request to local itself.
    Http,
}

impl Inbound {
    /// The span label.
    pub fn name(self) -> &'static str {
        match self {
            Inbound::Socks5 => "socks5",
            Inbound::Http => "http",
        }
    }
}

/// Classifies by the first byte without consuming it (wrap it in the handshake timeout).
pub async fn detect(conn: &TcpStream) -> io::Result<Inbound> {
    let mut first = [0u8; 1];
    if conn.peek(&mut first).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before the first byte",
        ));
    }
    Ok(classify(first[0]))
}

/// The rule itself: pure.
pub fn classify(first: u8) -> Inbound {
    if first == 0x05 {
        Inbound::Socks5
    } else {
        Inbound::Http
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn peeked_bytes_are_still_there() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut c = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (mut s, _) = l.accept().await.expect("accept");
        c.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        assert_eq!(detect(&s).await.expect("detect"), Inbound::Http);
        let mut buf = [0u8; 16];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");
        assert_eq!(classify(5), Inbound::Socks5);
        assert_eq!(classify(b'C'), Inbound::Http);
    }
}
