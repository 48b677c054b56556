//! `bench fanout`: the end-to-end fan-out benchmark (see docs/bench.md).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::bench::fanout::{self, Options};

#[derive(Subcommand)]
pub enum Bench {
    /// One publisher, N subscribers through the server in a network namespace, and the
    /// kernel's own ceiling for the same datagrams; needs root. The last stdout line is
    /// a key=value summary; CSV and PNG go to --out.
    Fanout {
        /// Subscriber sessions, or a comma-separated list to sweep.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        subscribers: Vec<usize>,
        /// Stream bitrate in Mbit/s [default: ~90% of one core's measured ceiling at N,
        /// clamped to 0.1-8].
        #[arg(long)]
        bitrate: Option<f64>,
        /// Seconds of measurement per point (after the joins and 1 s of warm-up).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Server shards (passed to `serve --shards` when not 1), or a list to sweep.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        shards: Vec<u32>,
        /// Seconds each kernel-ceiling method runs, before and after every point.
        #[arg(long, default_value_t = 1.0)]
        ceiling_seconds: f64,
        /// Threads doing subscriber handshakes in parallel.
        #[arg(long, default_value_t = 8)]
        join_workers: usize,
        /// Where fanout.csv, fanout.png and the server logs go.
        #[arg(long, default_value = "target/bench-fanout")]
        out: PathBuf,
    },
}

pub fn bench(cmd: Bench) -> Result<()> {
    match cmd {
        Bench::Fanout {
            subscribers,
            bitrate,
            seconds,
            shards,
            ceiling_seconds,
            join_workers,
            out,
        } => {
            if shards.contains(&0) {
                bail!("--shards: expected 1 or more");
            }
            if seconds.is_nan()
                || ceiling_seconds.is_nan()
                || seconds <= 0.0
                || ceiling_seconds <= 0.0
            {
                bail!("--seconds and --ceiling-seconds must be positive");
            }
            if bitrate.is_some_and(|b| b.is_nan() || b <= 0.0) {
                bail!("--bitrate must be positive (Mbit/s)");
            }
            fanout::run(&Options {
                subscribers,
                shards,
                bitrate_mbps: bitrate,
                seconds,
                ceiling_seconds,
                workers: join_workers,
                out,
            })?;
            Ok(())
        }
    }
}
