//! SOCKS5 (RFC 1928, RFC 1929) through fast-socks5's typestate: auth → command → reply.

use burrow_common::config::{ct_eq, Secret};
use burrow_common::TargetAddr;
use fast_socks5::server::{states, Socks5ServerProtocol, SocksServerError};
use fast_socks5::util::target_addr::TargetAddr as SocksTarget;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite};

/// A SOCKS5 client whose CONNECT request is read and awaits our reply.
pub type Pending<T> = Socks5ServerProtocol<T, states::CommandRead>;

/// Runs the SOCKS5 handshake up to the CONNECT request; replies itself on anything it
/// refuses (auth, other commands).
pub async fn handshake<T>(
    io: T,
    auth: Option<&(String, Secret)>,
) -> Result<(Pending<T>, TargetAddr), SocksServerError>
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
    if !matches!(cmd, Socks5Command::TCPConnect) {
        proto.reply_error(&ReplyError::CommandNotSupported).await?;
        return Err(SocksServerError::Bug("only CONNECT is supported"));
    }
    let target = match target {
        SocksTarget::Ip(a) => TargetAddr::Ip(a),
        SocksTarget::Domain(d, p) => TargetAddr::Domain(d, p),
    };
    Ok((proto, target))
}
