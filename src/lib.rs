//! rtmfp-edge: an RTMFP (RFC 7016, Flash profile RFC 7425) multicast edge server.
//!
//! `proto` is the sans-IO protocol core; `net` a simple UDP driver for it; `server` the
//! applications and their config; `cli` the subcommands of the `rtmfp-edge` binary.

pub mod cli;
pub mod net;
pub mod proto;
pub mod server;
