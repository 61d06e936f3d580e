//! The root package of burrow: helpers shared by the thin binaries (`burrow-local`,
//! `burrow-server`, `burrow`, `burrow-bench`) and the test kit the end-to-end tests use.

pub mod cli;
pub mod kit;
pub mod link;
pub mod origins;
pub mod peers;
pub mod quickstart;
pub mod service;
pub mod soak;
pub mod status;
