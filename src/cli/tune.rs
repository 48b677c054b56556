//! `tune show|apply|revert`: the kernel and NIC knobs for the packet engine
//! (docs/tuning.md).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::tune::apply;
use crate::tune::catalogue::{self, Options, Scope};
use crate::tune::report::{render, Headers, Outcome, Row};
use crate::tune::state::{State, DEFAULT_PATH};
use crate::tune::System;

#[derive(Subcommand)]
pub enum Tune {
    /// Each knob with its current value, the recommended one and why. Changes nothing.
    Show(TuneArgs),
    /// Saves the values it will change to the state file, then sets each knob that
    /// differs from the recommendation; numbers only go up, a higher one is kept. Knobs
    /// that cannot be written are reported.
    Apply(TuneArgs),
    /// Writes back every value the state file saved, and removes the file when all are
    /// back. --iface, --shards and --scope play no part: the file says what to restore.
    Revert(TuneArgs),
}

#[derive(Args)]
pub struct TuneArgs {
    /// The NIC the server's traffic crosses: its NAPI, RPS/XPS, IRQ, ring and
    /// coalescing knobs [default: global knobs only].
    #[arg(long)]
    iface: Option<String>,
    /// Shards `serve` will run, pinned as it pins them (shard i on the i-th CPU we may
    /// use) [default: one per CPU, as serve].
    #[arg(long)]
    shards: Option<usize>,
    /// The state file apply writes and revert reads.
    #[arg(long, default_value = DEFAULT_PATH)]
    state: PathBuf,
    /// all: every knob; netns: only what belongs to this network namespace (its net.*
    /// sysctls and the interface's settings), so nothing host-wide changes.
    #[arg(long, value_enum, default_value_t = ScopeArg::All)]
    scope: ScopeArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ScopeArg {
    All,
    Netns,
}

pub fn tune(command: Tune) -> Result<()> {
    let sys = System::host();
    match command {
        Tune::Show(args) => {
            let options = options(&args);
            print_header(&options);
            let knobs = catalogue::knobs(&sys, &options)?;
            let rows = apply::show(&sys, &knobs);
            print!("{}", render(&recommend_headers("CURRENT"), &rows));
            let changes = rows
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::WouldSet(_)))
                .count();
            println!(
                "show: {} knobs, {changes} below the recommendation",
                rows.len()
            );
            // A hint only: show exits 0 even when the state file cannot be read.
            if let Ok(Some(state)) = State::load(&args.state) {
                println!(
                    "show: an earlier apply saved {} value(s) in {}: `rtmfp-edge tune revert --state {}` puts them back",
                    state.saved.len(),
                    args.state.display(),
                    args.state.display()
                );
            }
            Ok(())
        }
        Tune::Apply(args) => {
            let options = options(&args);
            print_header(&options);
            let knobs = catalogue::knobs(&sys, &options)?;
            let rows = apply::apply(&sys, &knobs, &args.state)?;
            print!("{}", render(&recommend_headers("WAS"), &rows));
            let set = count(&rows, |o| matches!(o, Outcome::Set | Outcome::ReadsBack(_)));
            let refused = count(&rows, |o| matches!(o, Outcome::NotWritten(_)));
            println!(
                "apply: {set} changed, {refused} could not be written, {} left as they were",
                rows.len() - set - refused
            );
            if State::load(&args.state)?.is_some() {
                println!(
                    "apply: previous values in {}; `rtmfp-edge tune revert --state {}` restores them",
                    args.state.display(),
                    args.state.display()
                );
            }
            Ok(())
        }
        Tune::Revert(args) => {
            let rows = apply::revert(&sys, &args.state)?;
            print!(
                "{}",
                render(
                    &Headers {
                        value: "NOW",
                        wanted: "SAVED",
                    },
                    &rows
                )
            );
            let left = count(&rows, |o| !o.is_success());
            if left == 0 {
                println!(
                    "revert: {} value(s) back as saved; {} removed",
                    rows.len(),
                    args.state.display()
                );
            } else {
                println!(
                    "revert: {left} of {} could not be restored; they stay in {}",
                    rows.len(),
                    args.state.display()
                );
            }
            Ok(())
        }
    }
}

fn options(args: &TuneArgs) -> Options {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    Options {
        iface: args.iface.clone(),
        cores: catalogue::shard_cores(args.shards.unwrap_or(0), &available),
        scope: match args.scope {
            ScopeArg::All => Scope::All,
            ScopeArg::Netns => Scope::Namespace,
        },
    }
}

fn print_header(options: &Options) {
    let cores: crate::tune::cpuset::CpuSet = options.cores.iter().copied().collect();
    println!(
        "tune: {} shard(s) on cores {cores}; interface {}; {}",
        options.cores.len(),
        options
            .iface
            .as_deref()
            .unwrap_or("none (--iface IF for its knobs)"),
        match options.scope {
            Scope::All => "all knobs",
            Scope::Namespace => "this network namespace's knobs only",
        }
    );
}

fn recommend_headers(value: &'static str) -> Headers {
    Headers {
        value,
        wanted: "RECOMMENDED",
    }
}

fn count(rows: &[Row], which: impl Fn(&Outcome) -> bool) -> usize {
    rows.iter().filter(|r| which(&r.outcome)).count()
}
