//! `bench fanout`: the end-to-end fan-out benchmark; `bench group`: a stream relayed
//! among NetGroup members (see docs/bench.md).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::bench::fanout::{self, Options, ServerIo};
use crate::bench::group::{self, GroupOptions, Mode};
use crate::bench::mode::Mode as FanoutMode;
use crate::bench::publisher::Ingest;

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
        /// How the stream reaches the receivers, or a comma-separated list to sweep:
        /// unicast (N subscribers playing it), ipmulticast (N NetGroup members, the
        /// server sending each fragment once to an IP multicast group), fusion (the same,
        /// members relaying too).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "unicast")]
        mode: Vec<FanoutMode>,
        /// How the publisher sends the stream to the server: rtmfp, or rtmp (TCP, cheap
        /// for the publisher: for streams of hundreds of Mbit/s in the IP multicast modes).
        #[arg(long, value_enum, default_value_t = Ingest::Rtmfp)]
        ingest: Ingest,
        /// The server's UDP I/O (`serve --io`), or a comma-separated list to sweep in the
        /// same run: uring, poll (the plain socket loop, one sendto per datagram), xdp
        /// (AF_XDP on the server's veth end, copy mode) [default: serve's choice].
        #[arg(long, alias = "io", value_enum, value_delimiter = ',')]
        server_io: Vec<ServerIo>,
        /// Where fanout.csv, fanout.png and the server logs go.
        #[arg(long, default_value = "target/bench-fanout")]
        out: PathBuf,
    },
    /// One stream republished by the server into a NetGroup, N members playing it from
    /// each other: delivery, server and member upload, latency, join time. No root
    /// needed. The last stdout line is a key=value summary.
    Group {
        /// Members playing the stream.
        #[arg(long, default_value_t = 50)]
        members: usize,
        /// Seconds of stream after the members joined (they join over 10 ms each, 1-5 s).
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Fraction of the members that leave during the run; as many new ones join.
        #[arg(long, default_value_t = 0.0)]
        churn: f64,
        /// Fraction of datagrams lost, at random (sim only).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// sim: in-process on a virtual clock, seeded; udp: real sockets on
        /// loopback, the server on the engine.
        #[arg(long, value_enum, default_value_t = GroupMode::Sim)]
        mode: GroupMode,
        /// Stream bitrate, kbit/s.
        #[arg(long, default_value_t = 500)]
        bitrate: u32,
        /// Seed for the sim's keys, loss and churn (and udp's churn).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One-way delay of every datagram in the sim, ms.
        #[arg(long, default_value_t = 10)]
        delay_ms: u64,
        /// Threads running the members in udp mode.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GroupMode {
    Sim,
    Udp,
}

pub fn bench(cmd: Bench) -> Result<()> {
    match cmd {
        Bench::Group {
            members,
            seconds,
            churn,
            loss,
            mode,
            bitrate,
            seed,
            delay_ms,
            threads,
        } => {
            let opts = GroupOptions {
                members,
                seconds,
                churn,
                loss,
                mode: match mode {
                    GroupMode::Sim => Mode::Sim,
                    GroupMode::Udp => Mode::Udp,
                },
                bitrate_kbps: bitrate,
                seed,
                delay_ms,
                threads: threads.max(1),
            };
            let summary = group::run(&opts)?.summary();
            println!("{}", summary.line());
            Ok(())
        }
        Bench::Fanout {
            subscribers,
            bitrate,
            seconds,
            shards,
            ceiling_seconds,
            join_workers,
            mode,
            ingest,
            server_io,
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
                modes: each_once(mode),
                ingest,
                server_io: each_once(server_io),
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

/// The modes in the order given, each once.
fn each_once<T: PartialEq + Copy>(mut items: Vec<T>) -> Vec<T> {
    let mut seen = Vec::new();
    items.retain(|m| {
        let first = !seen.contains(m);
        seen.push(*m);
        first
    });
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        bench: Bench,
    }

    fn fanout_modes(args: &[&str]) -> Result<Vec<FanoutMode>, clap::Error> {
        let argv = ["rtmfp-edge", "fanout"].iter().chain(args);
        match Cli::try_parse_from(argv)?.bench {
            Bench::Fanout { mode, .. } => Ok(each_once(mode)),
            Bench::Group { .. } => unreachable!("parsed fanout"),
        }
    }

    #[test]
    fn fanout_mode_defaults_to_unicast_and_sweeps_a_list_in_order() {
        assert_eq!(fanout_modes(&[]).unwrap(), [FanoutMode::Unicast]);
        assert_eq!(
            fanout_modes(&["--mode", "ipmulticast"]).unwrap(),
            [FanoutMode::IpMulticast]
        );
        assert_eq!(
            fanout_modes(&["--mode", "fusion,unicast,fusion,ipmulticast"]).unwrap(),
            [
                FanoutMode::Fusion,
                FanoutMode::Unicast,
                FanoutMode::IpMulticast
            ]
        );
    }

    #[test]
    fn fanout_mode_refuses_names_it_does_not_know() {
        for bad in ["ip", "multicast", "p2p", ""] {
            assert!(fanout_modes(&["--mode", bad]).is_err(), "{bad:?}");
        }
    }
}
