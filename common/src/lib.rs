//! burrow's wire protocol and shared I/O: the Shadowsocks AEAD framing (sans-IO), the
//! target-address codec, the encrypted stream adapter, the relay, socket helpers and
//! config types. No role logic lives here.

#![warn(missing_docs)]

pub mod accept;
pub mod addr;
pub mod aead;
pub mod backend;
pub mod config;
pub mod frame;
pub mod hostport;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod readsize;
pub mod relay;
pub mod replay;
pub mod shutdown;
pub mod ssurl;
pub mod stream;
#[cfg(test)]
mod test_util;
pub mod timeout;
pub mod tls;
pub mod udp;
pub mod udp2022;

pub use addr::TargetAddr;
pub use aead::{MasterKey, Method};
pub use hostport::HostPort;
pub use stream::EncryptedStream;
