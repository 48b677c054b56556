//! The thread-per-core packet engine: one shard per core, each with its own io_uring,
//! UDP socket, sessions and timers; lock-free rings between shards; multi-buffer
//! encryption for fan-out. See docs/engine.md.

pub mod batch_cipher;
#[cfg(rtmfp_bpf)]
pub mod bpf_object;
pub mod config_feed;
pub mod launch;
pub mod multi_cbc;
pub mod multicast_out;
pub mod ring;
pub mod rtmp_sockets;
pub mod server_snapshot;
pub mod session_histograms;
pub mod shard;
pub mod sockopt;
pub mod steering;
pub mod uring_udp;
pub mod waker;
pub mod xdp;
pub mod xdp_guard;

pub use launch::{Engine, EngineOptions, IoChoice};
