//! What apps send to burrow-local: the connection told apart by its first byte
//! (`detect`), then its handshake — SOCKS5 (`socks5`, with UDP ASSOCIATE in `udp`), the
//! HTTP proxy (`http`, dispatching to `connect` for CONNECT, `forward` for plain
//! forwarding, `reverse` for the routes of `route`; `origin` exchanges a request with an
//! origin through the tunnel, `headers` strips the hop-by-hop ones, `respond` writes the
//! answers), burrow-local's own PAC file (`own_pac`) and the DNS forwarder (`dns`).

pub mod connect;
pub mod detect;
pub mod dns;
pub mod forward;
pub mod headers;
pub mod http;
pub mod origin;
pub mod own_pac;
pub mod respond;
pub mod reverse;
pub mod route;
pub mod socks5;
pub mod udp;
