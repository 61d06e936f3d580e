//! The CONNECT through a SOCKS5 corporate proxy (fast-socks5), with a password when the
//! proxy may have one.

use std::io;

use tokio::net::TcpStream;

use super::{proxy_error, NamedBy, ProxyUrl, Withheld};

pub(super) async fn connect(
    proxy: &ProxyUrl,
    tcp: TcpStream,
    host: &str,
    port: u16,
) -> io::Result<TcpStream> {
    use fast_socks5::client::{Config, Socks5Stream};
    use fast_socks5::util::target_addr::TargetAddr;
    use fast_socks5::{AuthenticationMethod, Socks5Command};
    let auth = proxy
        .auth
        .as_ref()
        .map(|(u, p)| AuthenticationMethod::Password {
            username: u.clone(),
            password: p.expose().to_owned(),
        });
    let fail = |e: fast_socks5::SocksError| {
        if proxy.named_by != NamedBy::User
            && proxy.auth.is_none()
            && matches!(&e, fast_socks5::SocksError::AuthMethodUnacceptable(_))
        {
            return Withheld::error(
                proxy,
                &format!(
                    "asked for a SOCKS5 password ({e}); a proxy named by the PAC gets the password only when \
                     its host is in proxy_auth_hosts and outbound_auth = \"basic\""
                ),
            );
        }
        let kind = match &e {
            fast_socks5::SocksError::AuthenticationRejected(_)
            | fast_socks5::SocksError::AuthMethodUnacceptable(_) => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::ConnectionAborted,
        };
        proxy_error(kind, format!("proxy {proxy}: {e}"))
    };
    let mut s = Socks5Stream::use_stream(tcp, auth, Config::default())
        .await
        .map_err(fail)?;
    let target = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => TargetAddr::Ip(std::net::SocketAddr::new(ip, port)),
        Err(_) => TargetAddr::Domain(host.to_owned(), port),
    };
    s.request(Socks5Command::TCPConnect, target)
        .await
        .map_err(fail)?;
    Ok(s.get_socket())
}
