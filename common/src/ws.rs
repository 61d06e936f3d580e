//! The WebSocket transport: the encrypted stream rides binary WebSocket messages, so the
//! hop to the server looks like any wss:// connection to proxies, nginx and CDNs.
//!
//! One `poll_write` is one binary message of at most [`MAX_MESSAGE`] bytes (the stream
//! seals several chunks per write; a longer write is taken in part). Both ends refuse
//! frames and messages above that size as soon as a frame header announces one, so a
//! peer that has not authenticated cannot make us hold more than one message's worth.
//! WebSocket has no half-close, so ours is carried as an empty binary message: the reader
//! returns EOF, the other direction keeps flowing. Pings go out while the tunnel is idle,
//! so intermediaries with idle cut-offs keep it open.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::prefixed::Prefixed;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The largest message either end sends or takes: four whole chunks, so a message always
/// carries whole chunks when writes are this size, and an unauthenticated peer can make
/// the server buffer no more than this (plus the read buffer) per connection.
pub const MAX_MESSAGE: usize = 4 * crate::aead::MAX_CHUNK;

/// Limits for both ends: bounded frames and messages, a small eager read buffer (the
/// frame's own length is reserved when its header arrives), writes sent as they come.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_MESSAGE)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

fn io_err(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(e) => e,
        Error::ConnectionClosed | Error::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

/// A WebSocket connection as a byte stream.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    rbuf: Bytes,
    ping: Option<Interval>,
    read_eof: bool,
    sent_eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// The stream under the WebSocket.
    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }
}

impl<S> WsIo<S> {
    fn new(ws: WebSocketStream<S>, ping: Option<Duration>) -> Self {
        let ping = ping.filter(|d| !d.is_zero()).map(|d| {
            let mut iv = interval_at(Instant::now() + d, d);
            iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
            iv
        });
        WsIo {
            ws,
            rbuf: Bytes::new(),
            ping,
            read_eof: false,
            sent_eof: false,
        }
    }
}

/// Opens the WebSocket over `io`: `GET path` with `Host: host`, checked by tungstenite.
pub async fn client<S>(io: S, host: &str, path: &str, ping: Option<Duration>) -> io::Result<WsIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = http::Request::builder()
        .method("GET")
        .uri(format!("ws://{host}{path}"))
        .header("Host", host)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", generate_key())
        .body(())
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WebSocket request: {e}"),
            )
        })?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, io, Some(config()))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "WebSocket transport: {host}{path} answered {} instead of 101",
                    resp.status()
                ),
            ),
            other => io::Error::other(format!("WebSocket transport: {other}")),
        })?;
    Ok(WsIo::new(ws, ping))
}

/// The largest request head taken before a WebSocket upgrade.
const MAX_HEAD: usize = 8 * 1024;

/// What an ordinary web server says to a request for a page it does not have.
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\
Content-Length: 144\r\nConnection: close\r\n\r\n\
<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
<center><h1>404 Not Found</h1></center>\r\n<hr><center>web</center>\r\n</body>\r\n</html>\r\n";

/// Accepts a WebSocket on `io` if its request is an upgrade for `path`; anything else (a
/// plain GET, another path, a head that is not HTTP) gets the 404 page any web server
/// would give, and an error. The caller bounds the time this takes.
pub async fn accept<S>(
    mut io: S,
    path: &str,
    ping: Option<Duration>,
) -> io::Result<WsIo<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = read_head(&mut io).await?;
    if !is_upgrade_for(&head, path) {
        let _ = io.write_all(NOT_FOUND).await;
        let _ = io.shutdown().await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a WebSocket upgrade for the tunnel path: answered 404",
        ));
    }
    let io = Prefixed::new(Bytes::from(head), io);
    let ws = tokio_tungstenite::accept_async_with_config(io, Some(config()))
        .await
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("WebSocket handshake: {e}"),
            )
        })?;
    Ok(WsIo::new(ws, ping))
}

/// Reads up to the end of the request head (at most [`MAX_HEAD`] bytes).
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
        let n = io
            .read(&mut chunk[..(MAX_HEAD - head.len()).min(1024)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// True if `head` is `GET path` with `Upgrade: websocket`.
fn is_upgrade_for(head: &[u8], path: &str) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let target = req.path.unwrap_or("");
    let own_path = target.split('?').next() == Some(path);
    let upgrade = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value)
                .trim()
                .eq_ignore_ascii_case("websocket")
    });
    req.method == Some("GET") && own_path && upgrade
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    fn poll_ping(&mut self, cx: &mut Context<'_>) {
        let Some(iv) = self.ping.as_mut() else { return };
        while iv.poll_tick(cx).is_ready() {
            let mut ws = Pin::new(&mut self.ws);
            if let Poll::Ready(Ok(())) = ws.as_mut().poll_ready(cx) {
                let _ = ws.as_mut().start_send(Message::Ping(Bytes::new()));
                let _ = ws.poll_flush(cx);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.rbuf.is_empty() {
                let n = this.rbuf.len().min(buf.remaining());
                buf.put_slice(&this.rbuf[..n]);
                this.rbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_eof {
                return Poll::Ready(Ok(()));
            }
            this.poll_ping(cx);
            match Pin::new(&mut this.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Binary(b)))) if b.is_empty() => this.read_eof = true,
                Poll::Ready(Some(Ok(Message::Binary(b)))) => this.rbuf = b,
                Poll::Ready(Some(Ok(Message::Close(_)))) | Poll::Ready(None) => {
                    this.read_eof = true
                }
                Poll::Ready(Some(Ok(Message::Text(_)))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on the tunnel",
                    )))
                }
                Poll::Ready(Some(Ok(_))) => {
                    // Ping or pong: tungstenite queued any pong; send it along.
                    let _ = Pin::new(&mut this.ws).poll_flush(cx);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io_err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let buf = &buf[..buf.len().min(MAX_MESSAGE)];
        let mut ws = Pin::new(&mut self.get_mut().ws);
        match ws.as_mut().poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(io_err(e))),
            Poll::Pending => return Poll::Pending,
        }
        ws.as_mut()
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        // Start writing now; what the socket does not take goes out with the next flush.
        if let Poll::Ready(Err(e)) = ws.poll_flush(cx) {
            return Poll::Ready(Err(io_err(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_err)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.sent_eof {
            let mut ws = Pin::new(&mut this.ws);
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io_err(e))),
                Poll::Pending => return Poll::Pending,
            }
            ws.start_send(Message::Binary(Bytes::new()))
                .map_err(io_err)?;
            this.sent_eof = true;
        }
        Pin::new(&mut this.ws).poll_flush(cx).map_err(io_err)
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
