//! SOCKS5 UDP ASSOCIATE (RFC 1928 §7): a UDP port for the app that asked, living as long
//! as its TCP control connection. Datagrams are taken only from that app's address
//! (its IP, and the first port it sends from unless it named one); fragments are dropped.
//! They travel to burrow-server one of two ways, chosen once per association:
//!
//! - `Relay`: the Shadowsocks UDP relay to the server's UDP port (SIP004, or SIP022's own
//!   UDP format), when the hop is direct TCP — shadowsocks-rust's (and for SIP004
//!   -libev's) servers take it too; if the server's port answers "unreachable", the
//!   association moves to the tunnel;
//! - `Tunnel`: UDP over a TCP tunnel (sing-box's UDP-over-TCP v2), which passes corporate
//!   proxies and the WebSocket dress — the way for every other case.

use burrow_common::timeout::within;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use burrow_common::timeout::Idle;
use burrow_common::udp::{self, MAX_DATAGRAM, UOT_MAGIC};
use burrow_common::TargetAddr;
use bytes::{Bytes, BytesMut};
use fast_socks5::ReplyError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tracing::{debug, info};

mod direct;

use direct::{direct_addr, recv_direct, send_direct};

use crate::inbound::socks5::Pending;
use crate::outbound::dial::{dial, Plan, Tunnel};
use crate::outbound::rules::Via;
use crate::settings::{Settings, UdpTransport};

/// The way an association's datagrams travel.
pub(crate) enum Hop {
    Relay(UdpSocket, udp::ClientCodec),
    Tunnel { tunnel: Tunnel, inbuf: BytesMut },
}

impl Hop {
    pub(crate) async fn open(s: &Settings) -> io::Result<Hop> {
        let relay = match s.udp_transport {
            UdpTransport::Relay => true,
            UdpTransport::Tunnel | UdpTransport::Off => false,
            UdpTransport::Auto => {
                let out = &s.servers.current().outbound;
                out.ws.is_none() && out.ways.get().iter().all(Option::is_none)
            }
        };
        if relay {
            return Hop::relay(s).await;
        }
        Hop::tunnel(s).await
    }

    async fn relay(s: &Settings) -> io::Result<Hop> {
        let srv = s.servers.current();
        let addrs = burrow_common::net::resolve(&srv.host, srv.port, s.connect_timeout).await?;
        let server = addrs
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("the server's name has no address"))?;
        let any: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(any).await?;
        sock.connect(server).await?;
        Ok(Hop::Relay(sock, udp::ClientCodec::new(&srv.key)))
    }

    async fn tunnel(s: &Settings) -> io::Result<Hop> {
        let magic = TargetAddr::Domain(UOT_MAGIC.into(), 0);
        let mut tunnel = dial(&magic, s, Plan::Go)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        // No settle: servers send nothing on this tunnel until a datagram comes back.
        tunnel.get_ref().unwatch();
        tunnel.write_all(&udp::uot_request()).await?;
        tunnel.flush().await?;
        Ok(Hop::Tunnel {
            tunnel,
            inbuf: BytesMut::with_capacity(4096),
        })
    }

    pub(crate) async fn send(&mut self, to: &TargetAddr, data: &[u8]) -> io::Result<()> {
        match self {
            Hop::Relay(sock, codec) => {
                let packet = codec.seal(to, data);
                sock.send(&packet).await.map(|_| ())
            }
            Hop::Tunnel { tunnel, .. } => {
                let mut out = BytesMut::with_capacity(data.len() + 32);
                udp::uot_put(&mut out, Some(to), data);
                tunnel.write_all(&out).await?;
                tunnel.flush().await
            }
        }
    }

    /// The next datagram from the server's side: who sent it, and its data.
    pub(crate) async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(TargetAddr, Bytes)> {
        match self {
            Hop::Relay(sock, codec) => loop {
                let n = sock.recv(buf).await?;
                match codec.open(&buf[..n]) {
                    Ok(got) => return Ok(got),
                    Err(e) => debug!("UDP from the server: {e}; dropped"),
                }
            },
            Hop::Tunnel { tunnel, inbuf } => loop {
                if let Some(got) = udp::uot_take(inbuf, None).map_err(io::Error::other)? {
                    return Ok(got);
                }
                if tunnel.read_buf(inbuf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            },
        }
    }
}

/// Serves one UDP ASSOCIATE: `peer` is the app's control connection, `local` the address
/// it reached us on, `hint` the address the app said it will send from.
pub async fn associate<T>(
    s: Arc<Settings>,
    proto: Pending<T>,
    peer: SocketAddr,
    local: SocketAddr,
    hint: TargetAddr,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if s.udp_transport == UdpTransport::Off {
        let _ = proto.reply_error(&ReplyError::CommandNotSupported).await;
        return debug!("UDP ASSOCIATE refused: udp_transport = \"off\"");
    }
    let sock = match UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await {
        Ok(sock) => sock,
        Err(e) => {
            let _ = proto.reply_error(&ReplyError::GeneralFailure).await;
            return debug!("UDP ASSOCIATE: {e}");
        }
    };
    let bound = sock.local_addr().unwrap_or(local);
    let mut hop = match Hop::open(&s).await {
        Ok(h) => h,
        Err(e) => {
            let _ = proto.reply_error(&ReplyError::GeneralFailure).await;
            return info!("UDP ASSOCIATE: cannot reach the server: {e}");
        }
    };
    let reply = within(s.handshake_timeout, proto.reply_success(bound));
    let Some(Ok(mut control)) = reply.await else {
        return debug!("client left before the UDP ASSOCIATE reply");
    };
    let via = match hop {
        Hop::Relay(..) => "the server's UDP port",
        Hop::Tunnel { .. } => "a TCP tunnel",
    };
    debug!("UDP ASSOCIATE on {bound}, carried over {via}");
    // The app's datagrams come from its control connection's IP; the port it named, or
    // the first one it sends from.
    let mut client: Option<SocketAddr> = match hint {
        TargetAddr::Ip(a) if a.port() != 0 => Some(SocketAddr::new(peer.ip(), a.port())),
        _ => None,
    };
    let (mut up_buf, mut down_buf) = (vec![0u8; MAX_DATAGRAM + 1], vec![0u8; MAX_DATAGRAM]);
    // Datagrams the rules send direct leave from a socket of our own, made when needed.
    let mut direct: Option<UdpSocket> = None;
    let mut direct_buf = Vec::new();
    // Per destination: where the rules send it, and (direct) its address — decided
    // once, not per datagram.
    let mut routes: std::collections::HashMap<TargetAddr, (Via, Option<SocketAddr>)> =
        Default::default();
    let mut gone = [0u8; 64];
    let (mut up, mut down, mut dropped) = (0u64, 0u64, 0u64);
    let idle = Idle::new(s.idle_timeout);
    let expired = idle.expired();
    tokio::pin!(expired);
    loop {
        tokio::select! {
            // The association lives as long as the control connection.
            r = control.read(&mut gone) => if matches!(r, Ok(0) | Err(_)) { break },
            r = sock.recv_from(&mut up_buf) => {
                let Ok((n, from)) = r else { continue };
                idle.touch();
                let ours = from.ip() == peer.ip() && client.is_none_or(|c| c == from);
                let parsed = udp::socks5_open(&up_buf[..n]);
                match parsed {
                    Ok((to, data)) if ours => {
                        client.get_or_insert(from);
                        if !routes.contains_key(&to) {
                            if routes.len() >= ROUTES_MAX {
                                routes.clear();
                            }
                            let (via, why) = crate::outbound::around::decide(&to, &s).await;
                            let addr = match via {
                                Via::Direct => direct_addr(&to, &s).await,
                                _ => None,
                            };
                            debug!("UDP to {to} goes {} ({why})", via.name());
                            routes.insert(to.clone(), (via, addr));
                        }
                        match routes.get(&to).copied().unwrap_or((Via::Tunnel, None)) {
                            (Via::Tunnel, _) => {}
                            (Via::Direct, addr) => {
                                if send_direct(&mut direct, &mut direct_buf, addr, &data).await {
                                    up += 1;
                                } else {
                                    dropped += 1;
                                }
                                continue;
                            }
                            // Blocked, or `proxy`: an HTTP proxy carries no UDP.
                            (_, _) => {
                                dropped += 1;
                                continue;
                            }
                        }
                        if let Err(e) = hop.send(&to, &data).await {
                            if e.kind() == io::ErrorKind::ConnectionRefused && matches!(hop, Hop::Relay(..)) {
                                info!("the server's UDP port does not answer: UDP goes over a TCP tunnel");
                                match Hop::tunnel(&s).await {
                                    Ok(h) => hop = h,
                                    Err(e) => { info!("UDP: cannot reach the server: {e}"); break; }
                                }
                            } else {
                                debug!("UDP to {to}: {e}");
                                dropped += 1;
                            }
                        } else {
                            up += 1;
                        }
                    }
                    Ok(_) => {
                        debug!("UDP from {from}, not the app that asked: dropped");
                        dropped += 1;
                    }
                    Err(e) => {
                        debug!("UDP from {from}: {e}: dropped");
                        dropped += 1;
                    }
                }
            },
            r = hop.recv(&mut down_buf) => match r {
                Ok((from, data)) => {
                    idle.touch();
                    let Some(app) = client else { continue };
                    if sock.send_to(&udp::socks5_seal(&from, &data), app).await.is_ok() {
                        down += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && matches!(hop, Hop::Relay(..)) => {
                    info!("the server's UDP port does not answer: UDP goes over a TCP tunnel");
                    match Hop::tunnel(&s).await {
                        Ok(h) => hop = h,
                        Err(e) => { info!("UDP: cannot reach the server: {e}"); break; }
                    }
                }
                Err(e) => {
                    debug!("UDP from the server: {e}");
                    break;
                }
            },
            r = recv_direct(direct.as_ref(), &mut direct_buf) => if let Ok((n, from)) = r {
                idle.touch();
                let Some(app) = client else { continue };
                let from = TargetAddr::Ip(from);
                if sock.send_to(&udp::socks5_seal(&from, &direct_buf[..n]), app).await.is_ok() {
                    down += 1;
                }
            },
            _ = &mut expired => break,
        }
    }
    info!("UDP association closed: {up} datagrams up, {down} down, {dropped} dropped");
}

/// Destinations an association remembers the way to, at most (then it starts over).
const ROUTES_MAX: usize = 256;
