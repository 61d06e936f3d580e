//! SOCKS5 (RFC 1928, RFC 1929) through fast-socks5's typestate: the handshake up to the
//! request, and the reply that answers it (`serve.rs` reads the story).

use burrow_common::timeout::{with_timeout, within};
use std::io;
use std::net::SocketAddr;

use burrow_common::config::{ct_eq, Secret};
use burrow_common::TargetAddr;
use bytes::Bytes;
use fast_socks5::server::{states, Socks5ServerProtocol, SocksServerError};
use fast_socks5::util::target_addr::TargetAddr as SocksTarget;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::outbound::dial::DialError;

/// Room for a whole greeting or request (a request is at most 262 bytes).
pub const HANDSHAKE_BUF: usize = 512;

/// A SOCKS5 client whose CONNECT request is read and awaits our reply.
pub type Pending<T> = Socks5ServerProtocol<T, states::CommandRead>;

/// The answer to a SOCKS5 CONNECT: the reply (RFC 1928 §6), then the raw stream.
pub struct Answer<T> {
    proto: Pending<BufReader<T>>,
    timeout: std::time::Duration,
}

impl<T> Answer<T> {
    /// For a client whose CONNECT was read; each reply is written within `timeout`.
    pub fn new(proto: Pending<BufReader<T>>, timeout: std::time::Duration) -> Self {
        Answer { proto, timeout }
    }
}

impl<T> crate::tunnel::Answer for Answer<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    type App = T;

    async fn open(self) -> io::Result<(Bytes, T)> {
        // The bound address is not ours to tell (the server's socket is far away).
        let bound = SocketAddr::from(([0, 0, 0, 0], 0));
        let reply = async {
            let sent = self.proto.reply_success(bound).await;
            sent.map_err(io::Error::other)
        };
        let client = with_timeout("the SOCKS5 reply", self.timeout, reply).await?;
        // Whatever the client sent early (after its request, before our reply) goes first.
        let early = Bytes::copy_from_slice(client.buffer());
        Ok((early, client.into_inner()))
    }

    async fn failed(self, e: &DialError) {
        let code = e.socks_reply();
        let reply = self.proto.reply_error(&code);
        let _ = within(self.timeout, reply).await;
    }
}

/// The SOCKS5 commands served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A TCP tunnel.
    Connect,
    /// A UDP port for the app (RFC 1928 §7).
    UdpAssociate,
}

/// Runs the SOCKS5 handshake up to the request (CONNECT, or UDP ASSOCIATE with the
/// address the app will send from); replies itself on anything it refuses (auth, BIND).
pub async fn handshake<T>(
    io: T,
    auth: Option<&(String, Secret)>,
) -> Result<(Pending<T>, Command, TargetAddr), SocksServerError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let proto = match auth {
        None => Socks5ServerProtocol::accept_no_auth(io).await?,
        Some((user, pass)) => {
            let check = |u: String, p: String| {
                // Both compared, always, so timing says nothing about which was wrong.
                let ok_user = ct_eq(u.as_bytes(), user.as_bytes());
                let ok_pass = ct_eq(p.as_bytes(), pass.expose().as_bytes());
                ok_user & ok_pass
            };
            Socks5ServerProtocol::accept_password_auth(io, check)
                .await?
                .0
        }
    };
    let (proto, cmd, target) = proto.read_command().await?;
    let command = match cmd {
        Socks5Command::TCPConnect => Command::Connect,
        Socks5Command::UDPAssociate => Command::UdpAssociate,
        Socks5Command::TCPBind => {
            proto.reply_error(&ReplyError::CommandNotSupported).await?;
            return Err(SocksServerError::Bug("BIND is not supported"));
        }
    };
    let target = match target {
        SocksTarget::Ip(a) => TargetAddr::Ip(a),
        SocksTarget::Domain(d, p) => TargetAddr::Domain(d, p),
    };
    Ok((proto, command, target))
}
