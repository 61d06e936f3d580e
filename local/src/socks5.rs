//! SOCKS5 (RFC 1928, RFC 1929) through fast-socks5's typestate: auth → command → tunnel →
//! reply → relay.

use std::net::SocketAddr;
use std::sync::Arc;

use burrow_common::config::{ct_eq, Secret};
use burrow_common::outbound::prefixed::Prefixed;
use burrow_common::relay::{relay_tunnel, report};
use burrow_common::TargetAddr;
use bytes::Bytes;
use fast_socks5::server::{states, Socks5ServerProtocol, SocksServerError};
use fast_socks5::util::target_addr::TargetAddr as SocksTarget;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, Span};

use crate::dial::{add_first_bytes, open_tunnel, Plan};
use crate::Settings;

/// Room for a whole greeting or request (a request is at most 262 bytes).
const HANDSHAKE_BUF: usize = 512;

/// A SOCKS5 client whose CONNECT request is read and awaits our reply.
pub type Pending<T> = Socks5ServerProtocol<T, states::CommandRead>;

/// Serves one SOCKS5 client until its tunnel ends.
pub async fn serve(settings: Arc<Settings>, conn: TcpStream) {
    let started = std::time::Instant::now();
    let s = &*settings;
    let (peer, local) = match (conn.peer_addr(), conn.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return debug!("SOCKS5: the connection is gone"),
    };
    // Buffered while the handshake lasts: fast-socks5 reads each field on its own, and
    // each read would be a system call.
    let conn = BufReader::with_capacity(HANDSHAKE_BUF, conn);
    let greeting = Box::pin(handshake(conn, s.proxy_auth.as_ref()));
    let (proto, command, target) = match tokio::time::timeout(s.handshake_timeout, greeting).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return debug!("SOCKS5 handshake: {e}"),
        Err(_) => return debug!("SOCKS5 handshake timed out"),
    };
    if command == Command::UdpAssociate {
        s.metrics.request(crate::metrics::Inbound::Udp);
        return Box::pin(crate::udp::associate(
            settings.clone(),
            proto,
            peer,
            local,
            target,
        ))
        .await;
    }
    Span::current().record("target", tracing::field::display(&target));
    s.metrics.request(crate::metrics::Inbound::Socks5);

    // Boxed: the dial and the reply are not laid out in the tunnel's task for its life.
    let Some((mut client, mut tunnel)) = Box::pin(start(proto, &target, s)).await else {
        return;
    };
    let (moved, result) = relay_tunnel(&mut client, &mut *tunnel, s.idle_timeout).await;
    report("tunnel", moved.a_to_b, moved.b_to_a, started, result);
}

/// Opens the tunnel and answers the app, in the order the plan says; `None` if either
/// failed (the app has its failure reply; the log says why). The app's stream comes back
/// with whatever it sent early in front, or sealed behind the request header.
async fn start<T>(
    proto: Pending<BufReader<T>>,
    target: &TargetAddr,
    s: &Settings,
) -> Option<(Prefixed<T>, crate::dial::Tunnel)>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let bound = SocketAddr::from(([0, 0, 0, 0], 0));
    let plan = Plan::for_target(target, s);
    let (client, mut tunnel) = if plan == Plan::Go {
        // The app hears "connected" now and sends its first bytes while the hop to the
        // server is made; they leave together with the request header.
        let reply = tokio::time::timeout(s.handshake_timeout, proto.reply_success(bound));
        let Ok(Ok(client)) = reply.await else {
            debug!("client left before the SOCKS5 reply");
            return None;
        };
        match open_tunnel(target, s, plan).await {
            Ok(t) => (client, t),
            Err(e) => {
                crate::dial::report(&e);
                return None;
            }
        }
    } else {
        let tunnel = match open_tunnel(target, s, plan).await {
            Ok(t) => t,
            Err(e) => {
                crate::dial::report(&e);
                let code = e.socks_reply();
                let reply = proto.reply_error(&code);
                let _ = tokio::time::timeout(s.handshake_timeout, reply).await;
                return None;
            }
        };
        let reply = tokio::time::timeout(s.handshake_timeout, proto.reply_success(bound));
        let Ok(Ok(client)) = reply.await else {
            debug!("client left before the SOCKS5 reply");
            return None;
        };
        (client, tunnel)
    };
    // Whatever the client sent early (after its request, before our reply) goes first.
    let mut early = Bytes::copy_from_slice(client.buffer());
    let mut app = client.into_inner();
    if plan == Plan::Go {
        let first = add_first_bytes(&mut tunnel, std::mem::take(&mut early), &mut app);
        if let Err(e) = first.await {
            debug!("client left: {e}");
            return None;
        }
    }
    Some((Prefixed::new(early, app), tunnel))
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
