//! rtmfp-edge: an RTMFP (RFC 7016, Flash profile RFC 7425) multicast edge server.
//!
//! `proto` is the sans-IO protocol core; `net` a simple UDP driver for it; `rtmp` and `flv`
//! the sans-IO RTMP chunk stream and FLV codecs for ingest; `cli` the subcommands of the
//! `rtmfp-edge` binary.

pub mod cli;
pub mod flv;
pub mod net;
pub mod proto;
pub mod rtmp;
