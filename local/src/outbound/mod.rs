//! Where an app's target goes (`rules`: through the tunnel, `around` it — direct or
//! through the corporate proxy alone — or nowhere), and the way to burrow-server: `dial` opens a tunnel (the request, and the wait for the
//! server's word when `plan` says so) over a warm connection of `pool` or a new one, to
//! the server `servers` has in use; `hop` reaches the server (direct or through the
//! corporate `proxy`, raw or dressed as a WebSocket, over TLS for wss).

pub mod acl;
pub mod around;
pub mod dial;
pub mod hop;
pub mod mux;
pub mod network;
pub mod plan;
pub mod pool;
pub mod probe;
pub mod proxy;
pub mod rules;
pub mod servers;
pub mod tls;
