//! Dialling the target: resolve, apply the egress policy to every address, connect.

use std::io;

use burrow_common::net::{connect_any, resolve};
use burrow_common::TargetAddr;
use tokio::net::TcpStream;

use crate::Settings;

/// Why the target could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Every resolved address is refused by the egress policy.
    #[error(
        "refused by egress policy: {addr} is {why} (allow_private or allow = [...] to permit)"
    )]
    Refused {
        /// The first refused address.
        addr: std::net::SocketAddr,
        /// Which rule refused it.
        why: &'static str,
    },
    /// Resolution or connection failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Resolves `target` on the server and connects to the first allowed address that answers.
pub async fn dial(target: &TargetAddr, settings: &Settings) -> Result<TcpStream, DialError> {
    // Boxed so the dial's state is not part of every tunnel's task for its whole life.
    Box::pin(dial_inner(target, settings)).await
}

async fn dial_inner(target: &TargetAddr, settings: &Settings) -> Result<TcpStream, DialError> {
    let addrs = resolve(&target.host(), target.port(), settings.connect_timeout).await?;
    let mut refused = None;
    let allowed: Vec<_> = addrs
        .into_iter()
        .filter(|a| match settings.policy.check(*a) {
            Ok(()) => true,
            Err(why) => {
                refused.get_or_insert((*a, why));
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        let (addr, why) =
            refused.unwrap_or_else(|| unreachable!("resolve returns at least one address"));
        return Err(DialError::Refused { addr, why });
    }
    Ok(connect_any(&allowed, settings.connect_timeout, &settings.socket).await?)
}
