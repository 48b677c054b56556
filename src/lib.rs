//! rtmfp-edge: an RTMFP (RFC 7016, Flash profile RFC 7425) multicast edge server.
//!
//! `proto` is the sans-IO protocol core; `net` a simple UDP driver for it; `flash` the
//! RFC 7425 Flash profile above flows (AMF, messages, commands); `rtmp` and `flv` the
//! sans-IO RTMP chunk stream and FLV codecs for ingest and files; `media` what the server
//! knows of audio/video payloads; `server` the applications (live streams); `cli` the
//! subcommands of the `rtmfp-edge` binary; `bench` the end-to-end fan-out benchmark;
//! `tune` the kernel and NIC knobs for the packet engine.

pub mod bench;
pub mod cli;
pub mod engine;
pub mod flash;
pub mod flv;
pub mod group;
pub mod media;
pub mod metrics;
pub mod multicast;
pub mod net;
pub mod proto;
pub mod rtmp;
pub mod server;
pub mod tune;
