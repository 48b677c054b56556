//! `rtmfp-edge tune`: the kernel and NIC knobs that matter for a UDP packet engine,
//! shown with what we recommend and why, applied with the old values saved first, and
//! reverted from what was saved (docs/tuning.md).
//!
//! `catalogue` says which knobs and what values; `knob` what a knob is and how a value
//! is judged; `sysfs` and `ethtool` where values are read and written; `state` the file
//! of saved values; `apply` the three commands; `report` the table they print.

pub mod apply;
pub mod catalogue;
pub mod cpuset;
pub mod ethtool;
#[cfg(test)]
mod fake;
pub mod knob;
pub mod refusal;
pub mod report;
pub mod state;
pub mod sysfs;

pub use catalogue::{Options, Scope};
pub use knob::System;
