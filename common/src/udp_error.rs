//! Why a UDP datagram was dropped: one error for both framings (SIP004 in `udp.rs`,
//! SIP022 in `udp2022.rs`), below both.

use crate::addr::AddrError;

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// Shorter than its fixed parts.
    #[error("datagram too short")]
    Short,
    /// A SOCKS5 fragment (FRAG ≠ 0): not supported, as in most SOCKS5 servers.
    #[error("SOCKS5 UDP fragment {0} (fragments are dropped)")]
    Fragment(u8),
    /// The address field is not a SOCKS5 address.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The AEAD did not authenticate (wrong key, garbage, tampering).
    #[error("does not authenticate")]
    Auth,
    /// A method whose UDP relay is not this framing (SIP022).
    #[error("{0} has its own UDP format")]
    Method(&'static str),
    /// SIP022: a packet of the other direction's type.
    #[error("packet type {0}, not this direction's")]
    Type(u8),
    /// SIP022: a timestamp too far from this machine's clock (seconds).
    #[error("timestamp {0} s away from this machine's clock")]
    Clock(i128),
    /// SIP022: a packet id seen before, or too old.
    #[error("replayed or too old a packet id")]
    Replay,
    /// SIP022: an answer to another client session.
    #[error("an answer to another session")]
    Session,
}
