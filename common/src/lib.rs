//! burrow's wire protocol and shared I/O: the Shadowsocks AEAD framing (sans-IO), the
//! target-address codec, the encrypted stream adapter, the UDP codecs, the relay, the
//! WebSocket framing, socket helpers, the replay filter and config types — what both
//! programs use. No role logic lives here: the corporate-proxy hop and the TLS client
//! are burrow-local's.

#![warn(missing_docs)]

pub mod accept;
pub mod addr;
pub mod aead;
pub mod backend;
pub mod cipher;
pub mod config;
pub mod fast_open;
pub mod frame;
pub mod hostport;
pub mod key;
pub mod memory;
pub mod metrics;
pub mod mux;
pub mod net;
pub mod plugin;
pub mod prefixed;
pub mod readsize;
pub mod relay;
pub mod reload;
pub mod replay;
pub mod shutdown;
pub mod ssurl;
pub mod stream;
#[cfg(test)]
mod test_util;
pub mod timeout;
pub mod udp;
pub mod udp2022;
pub mod udp_error;
pub mod ws;

pub use addr::TargetAddr;
pub use aead::Method;
pub use hostport::HostPort;
pub use key::MasterKey;
pub use stream::EncryptedStream;
