//! The `rtmfp-edge` command line: `serve`, `probe`, `publish`, `play`, `join`, `demo`,
//! `bench`, `tune`.

mod bench;
mod demo;
mod join;
mod play;
mod probe;
mod publish;
pub(crate) mod serve;
pub(crate) mod stream_client;
mod tune;
pub mod url;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::engine::IoChoice;

#[derive(Parser)]
#[command(name = "rtmfp-edge", version, about = "RTMFP multicast edge server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: RTMFP on UDP and RTMP on TCP, app `live` open to all unless a
    /// config file says otherwise.
    Serve {
        /// UDP address for RTMFP [default: 0.0.0.0:1935, or the config's].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// TCP address for RTMP, or `off` [default: 0.0.0.0:1935, or the config's].
        #[arg(long)]
        rtmp: Option<String>,
        /// TOML config file (see docs/config.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Shards: threads, each pinned to a core with its own sockets and sessions
        /// [default: one per core].
        #[arg(long)]
        shards: Option<usize>,
        /// UDP I/O: io_uring, the plain non-blocking socket loop, AF_XDP on --xdp-iface
        /// (root; our XDP program redirects the RTMFP port to it), or `auto`: AF_XDP when
        /// --xdp-iface is given and it opens, else io_uring when the kernel allows it,
        /// else the plain loop (it says which and why).
        /// [default: auto, or the config's server.io]
        #[arg(long, value_enum)]
        io: Option<IoArg>,
        /// The interface for AF_XDP (`--io xdp`, or tried first by `--io auto`).
        #[arg(long, value_name = "IF")]
        xdp_iface: Option<String>,
        /// Republish every stream published on the server into this NetGroup (a group
        /// name, or a groupspec `G:...`); members that `join` it play the stream from
        /// each other, the server being one of them.
        #[arg(long)]
        group: Option<String>,
        /// How `--group`'s stream reaches members: p2p (peers relay it), ip (native IP
        /// multicast to --multicast-address), fusion (both).
        #[arg(long)]
        multicast_form: Option<String>,
        /// Where IP multicast datagrams go (ADDR:PORT, 224.0.0.0/4 or ff00::/8).
        #[arg(long)]
        multicast_address: Option<SocketAddr>,
        /// Forward error correction of the IP multicast stream: K+R (such as 8+2) sends
        /// R repair datagrams after every K fragments, so a member that lost up to R of
        /// them rebuilds them (K+R at most 255).
        #[arg(long, value_name = "K+R")]
        multicast_fec: Option<String>,
        /// IP multicast TTL (IPv6 hop limit): routers the datagrams may cross
        /// [default: 1, or the config's server.multicast_ttl].
        #[arg(long)]
        multicast_ttl: Option<u32>,
        /// The interface IP multicast leaves by: a name (eth0) or an IPv4 address of it
        /// [default: the routing table's choice].
        #[arg(long)]
        multicast_interface: Option<String>,
        /// Whether receivers on this host get the server's IP multicast (on|off)
        /// [default: on].
        #[arg(long)]
        multicast_loop: Option<String>,
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics (see docs/metrics.md),
        /// or `off` [default: off, or the config's server.metrics_listen].
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<String>,
        /// Attach the XDP guard (bpf/xdp_guard.bpf.c, docs/xdp.md) to this interface:
        /// datagrams to the RTMFP port that cannot be RTMFP are dropped before the UDP
        /// stack, and handshakes are limited to 20 a second (burst 40) per source address.
        /// Needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); other traffic is
        /// untouched.
        #[arg(long, value_name = "IF")]
        xdp_guard: Option<String>,
        /// Handshakes a second per source address, and the burst, that the XDP program
        /// (--xdp-guard, --io xdp) lets through, or `off` [default: 20/40].
        #[arg(long, value_name = "RATE/BURST")]
        xdp_handshake_limit: Option<String>,
    },
    /// Open a session with any RTMFP server, print what was negotiated, close it.
    Probe {
        /// rtmfp://HOST[:PORT]/APP
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
    /// Publish an FLV over RTMFP, paced in real time.
    Publish {
        /// rtmfp://HOST[:PORT]/APP/STREAM (or .../APP#STREAM)
        url: String,
        /// FLV file, or `-` for standard input [default: a bundled 8 s test stream].
        #[arg(long)]
        input: Option<String>,
        /// Send as fast as the session allows instead of in real time.
        #[arg(long)]
        no_pace: bool,
        /// Publish straight to peers instead of through the server: players ask the
        /// server to introduce them by our peer ID (printed) and play from us.
        #[arg(long)]
        direct: bool,
        /// A token for servers that ask for one (sent as the connect argument).
        #[arg(long)]
        token: Option<String>,
        /// Give up if the server has not accepted the publish after this many seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
    /// Play a live stream over RTMFP and write it as FLV.
    Play {
        /// rtmfp://HOST[:PORT]/APP/STREAM (or .../APP#STREAM)
        url: String,
        /// FLV file, or `-` for standard output.
        #[arg(long, default_value = "-")]
        output: String,
        /// Stop after this many seconds of playing [default: until the stream ends].
        #[arg(long)]
        duration: Option<f64>,
        /// A token for servers that ask for one (sent as the connect argument).
        #[arg(long)]
        token: Option<String>,
        /// Play straight from the peer with this peer ID (a `publish --direct`), which
        /// the server introduces us to.
        #[arg(long)]
        peer: Option<String>,
        /// Give up if playing has not started, or no media came, for this many seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
    /// Join a NetGroup through the server and print the overlay it forms (members
    /// named, handshakes passed, reports).
    Join {
        /// rtmfp://HOST[:PORT]/APP
        url: String,
        /// The groupspec (`G:...`), as Flash's GroupSpecifier builds it, or a group name
        /// (the spec `serve --group NAME` republishes into).
        #[arg(long)]
        group: String,
        /// Play this stream from the group (taking it from neighbours, relaying it on).
        #[arg(long)]
        play: Option<String>,
        /// Write what is played as FLV to this file.
        #[arg(long)]
        output: Option<String>,
        /// A token for servers that ask for one (sent as the connect argument).
        #[arg(long)]
        token: Option<String>,
        /// Post this text to the group (NetGroup.post) once a neighbour is up; posts
        /// from others are printed as they come.
        #[arg(long)]
        post: Option<String>,
        /// Stay in the group this many seconds.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Give up if the server does not answer the connect within this many seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
        /// Join the group's IP multicast on this interface (a name) [default: the one
        /// the routing table picks].
        #[arg(long)]
        multicast_interface: Option<String>,
        /// Take IP multicast only from this sender (a source-specific join), or `any`
        /// [default: the address the server says it sends from, if it says].
        #[arg(long)]
        multicast_source: Option<String>,
    },
    /// Check a config file: prints what it sets up, or the first error with its file,
    /// line and column (exit status 1).
    CheckConfig {
        /// The TOML file (see docs/config.md).
        file: PathBuf,
    },
    /// A loopback demo: start a server, publish a test stream over RTMFP, play it back
    /// over RTMFP, and report frames, bitrate and latency.
    Demo,
    /// Benchmarks: `bench fanout` (needs root), `bench group`.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Kernel and NIC knobs for the packet engine: `tune show`, `tune apply` (root; saves
    /// the old values first), `tune revert`.
    #[command(subcommand)]
    Tune(tune::Tune),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum IoArg {
    Auto,
    Uring,
    Poll,
    Xdp,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            listen,
            rtmp,
            config,
            shards,
            io,
            xdp_iface,
            group,
            multicast_form,
            multicast_address,
            multicast_fec,
            multicast_ttl,
            multicast_interface,
            multicast_loop,
            metrics,
            xdp_guard,
            xdp_handshake_limit,
        } => serve::serve(
            listen,
            rtmp.as_deref(),
            config.as_deref(),
            &serve::GroupFlags {
                group: group.as_deref(),
                form: multicast_form.as_deref(),
                address: multicast_address,
                fec: multicast_fec.as_deref(),
                ttl: multicast_ttl,
                interface: multicast_interface.as_deref(),
                loop_back: multicast_loop.as_deref(),
            },
            &serve::EngineFlags {
                shards: shards.unwrap_or(0),
                io: io.map(|io| match io {
                    IoArg::Auto => IoChoice::Auto,
                    IoArg::Uring => IoChoice::Uring,
                    IoArg::Poll => IoChoice::Poll,
                    IoArg::Xdp => IoChoice::Xdp,
                }),
                xdp_iface,
                xdp_handshake_limit,
                metrics,
                xdp_guard,
            },
        ),
        Command::Probe { url, timeout } => probe::probe(&url, Duration::from_secs(timeout)),
        Command::Publish {
            url,
            input,
            no_pace,
            direct,
            token,
            timeout,
        } => publish::publish(
            &url,
            input.as_deref(),
            !no_pace,
            if direct {
                publish::Audience::Direct
            } else {
                publish::Audience::Server
            },
            token,
            Duration::from_secs(timeout),
        ),
        Command::Play {
            url,
            output,
            duration,
            token,
            peer,
            timeout,
        } => play::play(
            &url,
            &output,
            duration.map(Duration::from_secs_f64),
            token,
            peer.as_deref(),
            Duration::from_secs(timeout),
        ),
        Command::Join {
            url,
            group,
            play,
            output,
            token,
            post,
            duration,
            timeout,
            multicast_interface,
            multicast_source,
        } => join::multicast_join(multicast_interface, multicast_source.as_deref()).and_then(
            |multicast| {
                join::join(join::JoinOptions {
                    url: &url,
                    spec: &group,
                    token,
                    play: play.as_deref(),
                    output: output.as_deref(),
                    post: post.as_deref(),
                    duration: Duration::from_secs_f64(duration),
                    timeout: Duration::from_secs(timeout),
                    multicast,
                })
            },
        ),
        Command::CheckConfig { file } => serve::check_config(&file),
        Command::Demo => demo::demo(),
        Command::Bench(b) => bench::bench(b),
        Command::Tune(t) => tune::tune(t),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
