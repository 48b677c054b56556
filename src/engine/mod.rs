//! The thread-per-core packet engine: io_uring UDP, shards, fan-out.

pub mod multi_cbc;
pub mod ring;
pub mod steering;
