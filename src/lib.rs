//! rtmfp-edge: an RTMFP (RFC 7016, Flash profile RFC 7425) multicast edge server.
//!
//! `proto` is the sans-IO protocol core; `net` a simple UDP driver for it; `flash` the
//! RFC 7425 Flash profile above flows (AMF values first); `cli` the subcommands of the
//! `rtmfp-edge` binary.

pub mod cli;
pub mod flash;
pub mod net;
pub mod proto;
