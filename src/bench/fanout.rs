//! The sweep: for every (shards, subscribers, mode) point, the kernel ceiling, then the
//! server with one publisher and N subscribers (or N group members in the IP multicast
//! modes), then the ceiling again; the best ceiling is the reference. Progress goes to
//! stderr, one summary line per point to stdout.

use std::io::Read as _;
use std::net::{SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::ceiling::{self, CeilingRun};
use super::mode::{Mode, GROUP, MULTICAST_GROUP};
use super::multicast_counter::{self, MulticastTally};
use super::netns::{IngressDrop, Topology, SERVER_ADDR, SUBSCRIBER_ADDR};
use super::publisher::{self, Ingest, PublisherStats, StreamShape};
use super::receiver::{self, Control};
use super::report::{self, Point};
use super::rtmp_publisher;
use super::subscribers::{self, subscriber_addr, JoinProgress, Role};
use super::{check_interrupt, percentile};
use crate::cli::url::RtmfpUrl;
use crate::group::fragments::{MAX_FRAGMENT_PAYLOAD, MAX_MESSAGE_LEN};
use crate::group::GroupSpec;
use crate::proto::packet::MAX_SESSION_PACKET;

/// Subscriber ports in the namespace start here.
const BASE_PORT: u16 = 20_000;
/// Offered load without --bitrate: this fraction of one core's ceiling at N.
const OFFERED_FRACTION: f64 = 0.9;
const BITRATE_MIN_MBPS: f64 = 0.1;
const BITRATE_MAX_MBPS: f64 = 100.0;
/// The default's cap in the IP multicast modes, where the server sends one stream.
const MULTICAST_BITRATE_MAX_MBPS: f64 = 4000.0;
/// Largest video frame the publisher sends in the IP multicast modes: a group stream
/// carries messages of at most 256 fragments; some room for the server's own framing.
const MULTICAST_MAX_FRAME: usize = MAX_MESSAGE_LEN - 4 * MAX_FRAGMENT_PAYLOAD;
const WARMUP: Duration = Duration::from_secs(1);

/// `serve --io` for the server: io_uring, the plain socket loop (one `sendto` per
/// datagram), or AF_XDP on the server's veth end (`--io xdp --xdp-iface`). Without it,
/// `serve` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerIo {
    Uring,
    Poll,
    Xdp,
}

impl ServerIo {
    pub fn name(io: Option<ServerIo>) -> &'static str {
        match io {
            None => "auto",
            Some(ServerIo::Uring) => "uring",
            Some(ServerIo::Poll) => "poll",
            Some(ServerIo::Xdp) => "xdp",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub subscribers: Vec<usize>,
    pub shards: Vec<u32>,
    pub modes: Vec<Mode>,
    pub ingest: Ingest,
    /// I/O paths to sweep; empty: serve's choice.
    pub server_io: Vec<ServerIo>,
    pub bitrate_mbps: Option<f64>,
    pub seconds: f64,
    pub ceiling_seconds: f64,
    pub workers: usize,
    pub out: PathBuf,
}

/// Runs the sweep; returns the points (also written to `out` as CSV and PNG).
pub fn run(opts: &Options) -> Result<Vec<Point>> {
    super::catch_interrupts();
    let fd_limit = super::raise_fd_limit();
    for &n in &opts.subscribers {
        if n == 0 || n > usize::from(u16::MAX - BASE_PORT) {
            bail!("--subscribers {n}: expected 1 to {}", u16::MAX - BASE_PORT);
        }
        if n as u64 + 100 > fd_limit {
            bail!("--subscribers {n}: needs {n} sockets, the open-file limit is {fd_limit}");
        }
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut topo = Topology::create()?;
    eprintln!(
        "bench: namespace {} ({} {}) <-> root ({} {})",
        topo.ns,
        topo.ns_if,
        super::netns::SUBSCRIBER_ADDR,
        topo.root_if,
        SERVER_ADDR
    );
    let mut points = Vec::new();
    for &shards in &opts.shards {
        for &n in &opts.subscribers {
            for &mode in &opts.modes {
                let ios: Vec<Option<ServerIo>> = match opts.server_io.is_empty() {
                    true => vec![None],
                    false => opts.server_io.iter().copied().map(Some).collect(),
                };
                for io in ios {
                    check_interrupt()?;
                    let p = run_point(&mut topo, opts, shards, n, mode, io, fd_limit)
                        .with_context(|| {
                            format!(
                                "point shards={shards} subscribers={n} mode={} io={}",
                                mode.name(),
                                ServerIo::name(io)
                            )
                        })?;
                    println!("{}", p.summary_line());
                    points.push(p);
                    // Written after every point: an interrupted sweep keeps what it measured.
                    write_results(&opts.out, &points)?;
                }
            }
        }
    }
    let (csv, png) = (opts.out.join("fanout.csv"), opts.out.join("fanout.png"));
    eprintln!("bench: wrote {} and {}", csv.display(), png.display());
    Ok(points)
}

fn write_results(out: &Path, points: &[Point]) -> Result<()> {
    let csv = out.join("fanout.csv");
    std::fs::write(&csv, report::csv(points))
        .with_context(|| format!("writing {}", csv.display()))?;
    let png = out.join("fanout.png");
    if !report::plot(points, &png)? {
        eprintln!("bench: no TTF font found (fonts-dejavu-core): the plot has no labels");
    }
    Ok(())
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The kernel's ceiling for what `mode` sends: 1200-byte datagrams to the N
/// subscribers, or to the multicast group (with the group's socket receiving them, as
/// during the measurement).
fn measure_ceiling(
    topo: &mut Topology,
    mode: Mode,
    n: usize,
    secs: f64,
    fd_limit: u64,
    io: Option<ServerIo>,
) -> Result<Vec<CeilingRun>> {
    let from = SocketAddrV4::new(SERVER_ADDR, 0);
    let per_method = Duration::from_secs_f64(secs);
    let (runs, to) = if mode.is_multicast() {
        topo.set_ingress_drop(IngressDrop::UnicastUdp)?;
        let runs = ceiling::measure_multicast(from, MULTICAST_GROUP, per_method)?;
        (runs, format!("the group {MULTICAST_GROUP}"))
    } else {
        topo.set_ingress_drop(IngressDrop::AllUdp)?;
        let dests: Vec<SocketAddrV4> = (0..n).map(|i| subscriber_addr(BASE_PORT, i)).collect();
        let fds_left = fd_limit.saturating_sub(open_fds());
        let runs = ceiling::measure(from, &dests, per_method, fds_left)?;
        if io == Some(ServerIo::Xdp) {
            // Not a kernel method: printed beside the ceiling, never taken as it.
            let mac = topo.ns_if_mac()?;
            let from = SocketAddrV4::new(SERVER_ADDR, BASE_PORT);
            match super::xdp_ceiling::measure(&topo.root_if, from, &dests, mac, per_method) {
                Ok((pps, mode)) => eprintln!(
                    "bench: AF_XDP raw TX ({mode} mode, prebuilt frames, no encryption) to \
                     {n} destinations: {pps:.0} pps"
                ),
                Err(e) => eprintln!("bench: AF_XDP raw TX not measured: {e:#}"),
            }
        }
        (runs, format!("{n} destinations"))
    };
    for r in &runs {
        eprintln!("bench: ceiling to {to}, {}: {:.0} pps", r.method, r.pps);
    }
    Ok(runs)
}

/// The IP multicast modes' receiving end: a thread in the namespace counting what
/// reaches the socket joined to the group, from before the first ceiling run to after
/// the last. Stopped on drop.
struct GroupCounter {
    control: Arc<Control>,
    thread: Option<std::thread::JoinHandle<Result<MulticastTally>>>,
}

impl GroupCounter {
    fn start(topo: &Topology) -> Result<Self> {
        let control = Arc::new(Control::default());
        let (ready_tx, ready_rx) = channel();
        let enter = topo_enter_fn(topo);
        let thread = {
            let control = control.clone();
            std::thread::Builder::new()
                .name("bench-group".into())
                .spawn(move || -> Result<MulticastTally> {
                    let socket = enter().and_then(|()| {
                        multicast_counter::joined_socket(MULTICAST_GROUP, SUBSCRIBER_ADDR)
                    });
                    let socket = match socket {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Err(e);
                        }
                    };
                    multicast_counter::run(socket, &control)
                })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(GroupCounter {
                control,
                thread: Some(thread),
            }),
            Ok(Err(e)) => bail!("the group's receiving socket: {e}"),
            Err(_) => bail!("the group counter thread ended at start"),
        }
    }

    fn finish(mut self) -> Result<MulticastTally> {
        self.control.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .context("the group counter was finished already")?
            .join()
            .map_err(|_| anyhow::anyhow!("the group counter panicked"))?
    }
}

impl Drop for GroupCounter {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server child: killed and reaped on drop.
struct ServerChild {
    child: Child,
    log: PathBuf,
}

impl ServerChild {
    /// Starts `serve` on a free UDP port of the server address, with RTMP on `rtmp`
    /// (off if none).
    fn start(
        shards: u32,
        mode: Mode,
        multicast_interface: &str,
        rtmp: Option<SocketAddrV4>,
        io: Option<ServerIo>,
        out: &Path,
    ) -> Result<(Self, SocketAddrV4)> {
        let port = UdpSocket::bind(SocketAddrV4::new(SERVER_ADDR, 0))?
            .local_addr()?
            .port();
        let listen = SocketAddrV4::new(SERVER_ADDR, port);
        let rtmp = rtmp.map_or("off".to_owned(), |a| a.to_string());
        let log = out.join(match mode {
            Mode::Unicast => format!("server-shards{shards}.log"),
            _ => format!("server-shards{shards}-{}.log", mode.name()),
        });
        let log = match io {
            Some(ServerIo::Xdp) => log.with_extension("xdp.log"),
            _ => log,
        };
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--listen", &listen.to_string(), "--rtmp", &rtmp]);
        cmd.args(["--shards", &shards.to_string()]);
        // IP multicast leaves by the veth: no route in the root namespace is needed.
        cmd.args(mode.serve_args(multicast_interface));
        match io {
            None => {}
            Some(ServerIo::Uring) => {
                cmd.args(["--io", "uring"]);
            }
            Some(ServerIo::Poll) => {
                cmd.args(["--io", "poll"]);
            }
            Some(ServerIo::Xdp) => {
                cmd.args(["--io", "xdp", "--xdp-iface", multicast_interface]);
                // Every subscriber shares the namespace's one address: a per-source
                // handshake limit would pace the joins.
                cmd.args(["--xdp-handshake-limit", "off"]);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting the server")?;
        let mut s = ServerChild { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = s.child.try_wait()? {
                bail!(
                    "the server exited at start with {status}:\n{}",
                    s.log_tail()
                );
            }
            if s.log_text().contains("serving RTMFP") {
                return Ok((s, listen));
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not say it was serving within 10 s:\n{}",
                    s.log_tail()
                );
            }
            check_interrupt()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Group members the server admitted (its log names each join).
    fn members_admitted(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.starts_with("GroupJoined {"))
            .count()
    }

    /// utime + stime of the server, in seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let after_comm = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields 14 and 15 of stat(5); index 11 and 12 after the state field.
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(ticks / hz)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chosen_bitrate(opts: &Options, mode: Mode, ceiling_pps: f64, n: usize) -> f64 {
    if let Some(b) = opts.bitrate_mbps {
        return b;
    }
    // IP multicast sends the stream once, whatever the number of receivers.
    let (destinations, max) = match mode {
        Mode::Unicast => (n, BITRATE_MAX_MBPS),
        _ => (1, MULTICAST_BITRATE_MAX_MBPS),
    };
    let per_destination_pps = OFFERED_FRACTION * ceiling_pps / destinations as f64;
    let mbps = per_destination_pps * MAX_SESSION_PACKET as f64 * 8.0 / 1e6;
    let clamped = mbps.clamp(BITRATE_MIN_MBPS, max);
    eprintln!(
        "bench: bitrate {clamped:.2} Mbit/s: {:.0}% of the ceiling ({ceiling_pps:.0} pps) over {destinations} destination{} is {mbps:.2} Mbit/s{}",
        OFFERED_FRACTION * 100.0,
        if destinations == 1 { "" } else { "s" },
        if clamped != mbps { format!(", clamped to {BITRATE_MIN_MBPS}-{max}") } else { String::new() }
    );
    clamped
}

fn run_point(
    topo: &mut Topology,
    opts: &Options,
    shards: u32,
    n: usize,
    mode: Mode,
    io: Option<ServerIo>,
    fd_limit: u64,
) -> Result<Point> {
    eprintln!(
        "bench: --- shards={shards} subscribers={n} mode={} io={} ---",
        mode.name(),
        ServerIo::name(io)
    );
    let counter = if mode.is_multicast() {
        Some(GroupCounter::start(topo)?)
    } else {
        None
    };
    let mut ceilings = measure_ceiling(topo, mode, n, opts.ceiling_seconds, fd_limit, io)?;
    let before = ceilings.iter().map(|r| r.pps).fold(0.0, f64::max);
    let bitrate = chosen_bitrate(opts, mode, before, n);
    let bps = (bitrate * 1e6) as u64;
    let (shape, role, measuring_drop) = match mode {
        Mode::Unicast => (StreamShape::new(bps), Role::Play, IngressDrop::AllUdp),
        _ => (
            StreamShape::limited(bps, MULTICAST_MAX_FRAME),
            Role::Member {
                spec: GroupSpec::from_name_or_spec(GROUP)?,
                address: MULTICAST_GROUP.into(),
            },
            IngressDrop::UnicastUdp,
        ),
    };
    if shape.fps != publisher::VIDEO_FPS {
        eprintln!(
            "bench: {} video frames/s (keyframes of {} bytes fit a group stream's 256 fragments)",
            shape.fps, shape.key_bytes
        );
    }
    topo.set_ingress_drop(IngressDrop::Nothing)?;
    let rtmp = match opts.ingest {
        Ingest::Rtmfp => None,
        Ingest::Rtmp => {
            let free = TcpListener::bind(SocketAddrV4::new(SERVER_ADDR, 0))?.local_addr()?;
            Some(SocketAddrV4::new(SERVER_ADDR, free.port()))
        }
    };
    let (server, listen) = ServerChild::start(shards, mode, &topo.root_if, rtmp, io, &opts.out)?;
    eprintln!("bench: server pid {} on udp://{listen}", server.child.id());
    let url = RtmfpUrl::parse(&format!("rtmfp://{listen}/live/bench"))?;

    let control = Arc::new(Control::default());
    let (handoff_tx, handoff_rx) = channel();
    let ns_if = topo.ns_if.clone();
    let receiver = {
        let control = control.clone();
        let topo_ns = topo.ns.clone();
        let enter = topo_enter_fn(topo);
        let skip_multicast = mode.is_multicast();
        std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn(move || -> Result<receiver::Tally> {
                enter().with_context(|| format!("entering {topo_ns}"))?;
                receiver::run(&ns_if, BASE_PORT, handoff_rx, &control, skip_multicast)
            })?
    };
    let stop_publisher = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pub_stats = Arc::new(PublisherStats::default());
    let publisher = {
        let (url, stop, stats) = (url.clone(), stop_publisher.clone(), pub_stats.clone());
        std::thread::spawn(move || match rtmp {
            None => publisher::publish(&url, shape, &stop, &stats),
            Some(addr) => {
                rtmp_publisher::publish(addr.into(), "live", "bench", shape, &stop, &stats)
            }
        })
    };
    let measuring = |on: bool| {
        control.measuring.store(on, Ordering::Relaxed);
        if let Some(c) = &counter {
            c.control.measuring.store(on, Ordering::Relaxed);
        }
    };
    let result = (|| -> Result<(f64, f64)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !pub_stats.publishing.load(Ordering::Relaxed) {
            if publisher.is_finished() || Instant::now() > deadline {
                bail!("the publisher did not start publishing");
            }
            check_interrupt()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        let who = match role {
            Role::Play => "subscribers",
            Role::Member { .. } => "group members",
        };
        eprintln!("bench: publisher ready at {bitrate:.2} Mbit/s; joining {n} {who} first");
        let progress = Arc::new(JoinProgress::default());
        let started = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let join = s.spawn(|| {
                subscribers::join_all(
                    topo,
                    &url,
                    &role,
                    n,
                    BASE_PORT,
                    opts.workers,
                    handoff_tx,
                    &progress,
                )
            });
            while !join.is_finished() {
                std::thread::sleep(Duration::from_millis(200));
                let done = progress.playing.load(Ordering::Relaxed);
                if started.elapsed().as_millis() % 1000 < 200 || done == n {
                    eprintln!(
                        "bench: {} {done}/{n} (failed {}) after {:.1} s",
                        if mode.is_multicast() {
                            "joined"
                        } else {
                            "playing"
                        },
                        progress.failed.load(Ordering::Relaxed),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            join.join()
                .map_err(|_| anyhow::anyhow!("a join worker panicked"))?
        })?;
        if mode.is_multicast() {
            eprintln!(
                "bench: the server admitted {} group members (its log)",
                server.members_admitted()
            );
        }
        eprintln!(
            "bench: {n} {who} ready after {:.1} s; switching to the packet tap",
            started.elapsed().as_secs_f64()
        );
        topo.set_ingress_drop(measuring_drop)?;
        pub_stats.go.store(true, Ordering::Relaxed);
        std::thread::sleep(WARMUP);
        let cpu0 = server.cpu_seconds();
        let t0 = Instant::now();
        measuring(true);
        let window = Duration::from_secs_f64(opts.seconds);
        while t0.elapsed() < window {
            check_interrupt()?;
            if publisher.is_finished() {
                bail!("the publisher stopped during the measurement");
            }
            std::thread::sleep(Duration::from_millis(100).min(window.saturating_sub(t0.elapsed())));
            if t0.elapsed().as_millis() % 1000 < 100 {
                eprintln!(
                    "bench: measuring {:.0}/{:.0} s",
                    t0.elapsed().as_secs_f64(),
                    window.as_secs_f64()
                );
            }
        }
        measuring(false);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = match (cpu0, server.cpu_seconds()) {
            (Some(a), Some(b)) => (b - a) / secs,
            _ => f64::NAN,
        };
        Ok((secs, cpu))
    })();
    std::thread::sleep(Duration::from_millis(50));
    stop_publisher.store(true, Ordering::Relaxed);
    control.stop.store(true, Ordering::Relaxed);
    let published = publisher.join();
    let tally = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))?;
    drop(server);
    let (_, server_cores) = result?;
    match published {
        Ok(Err(e)) if !super::interrupted() => eprintln!("bench: publisher: {e:#}"),
        Err(_) => bail!("the publisher panicked"),
        _ => {}
    }
    let mut tally = tally?;
    ceilings.extend(measure_ceiling(
        topo,
        mode,
        n,
        opts.ceiling_seconds,
        fd_limit,
        io,
    )?);
    let group = counter.map(GroupCounter::finish).transpose()?;
    let best = ceilings
        .iter()
        .max_by(|a, b| a.pps.total_cmp(&b.pps))
        .context("no ceiling measured")?;
    eprintln!(
        "bench: {} datagrams in {:.2} s to {} subscribers' sessions ({} closed), {} latency samples, {} undecodable, {} tap drops",
        tally.datagrams,
        tally.seconds,
        tally.subscribers,
        tally.closed,
        tally.latencies_us.len(),
        tally.undecodable,
        tally.tap_drops
    );
    if group.is_none() && tally.seconds < opts.seconds / 2.0 {
        bail!(
            "the subscribers' receiver measured {:.2} s of the {:.2} s window (it missed the \
             start or the end of the measurement): no rate to report",
            tally.seconds,
            opts.seconds
        );
    }
    let point = match group {
        None => {
            tally.latencies_us.sort_unstable();
            let secs = tally.seconds.max(1e-9);
            let per_core = |x: f64| x / secs / f64::from(shards);
            Measured {
                seconds: secs,
                pps_per_core: per_core(tally.datagrams as f64),
                mbps_per_core: per_core(tally.bytes as f64 * 8.0) / 1e6,
                delivered: tally.delivered().unwrap_or(f64::NAN),
                latencies_us: tally.latencies_us,
                datagrams: tally.datagrams,
                tap_drops: tally.tap_drops,
            }
        }
        Some(mut g) => {
            eprintln!(
                "bench: {} IP multicast datagrams in {:.2} s (sequences {:?}, {} stream{}), {} latency samples, {} dropped by the group's socket",
                g.datagrams,
                g.seconds,
                g.sequences,
                g.streams,
                if g.streams == 1 { "" } else { "s" },
                g.latencies_us.len(),
                g.socket_drops
            );
            g.latencies_us.sort_unstable();
            // Shard 0 alone sends the group's datagrams: they are one core's output.
            let secs = g.seconds.max(1e-9);
            Measured {
                seconds: secs,
                pps_per_core: g.datagrams as f64 / secs,
                mbps_per_core: g.bytes as f64 * 8.0 / secs / 1e6,
                delivered: g.delivered().unwrap_or(f64::NAN),
                latencies_us: g.latencies_us,
                datagrams: g.datagrams,
                tap_drops: tally.tap_drops + g.socket_drops,
            }
        }
    };
    let ms = |q| percentile(&point.latencies_us, q).map_or(f64::NAN, |us| f64::from(us) / 1000.0);
    Ok(Point {
        shards,
        subscribers: n,
        bitrate_mbps: bitrate,
        seconds: point.seconds,
        pps_per_core: point.pps_per_core,
        mbps_per_core: point.mbps_per_core,
        ceiling_pps_per_core: best.pps,
        ceiling_method: best.method.to_owned(),
        ratio: point.pps_per_core / best.pps,
        delivered: point.delivered,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        latency_samples: point.latencies_us.len(),
        datagrams: point.datagrams,
        tap_drops: point.tap_drops,
        server_cores,
        mode,
        cpu_per_1k: cpu_per_1k(server_cores, n),
        io: ServerIo::name(io).to_owned(),
    })
}

/// What the receiving end measured, in the terms of the summary line.
struct Measured {
    seconds: f64,
    pps_per_core: f64,
    mbps_per_core: f64,
    delivered: f64,
    /// Sorted.
    latencies_us: Vec<u32>,
    datagrams: u64,
    tap_drops: u64,
}

/// Server CPU (cores, i.e. CPU seconds per second) per 1,000 receivers.
pub fn cpu_per_1k(server_cores: f64, receivers: usize) -> f64 {
    server_cores * 1000.0 / receivers.max(1) as f64
}

/// A closure that moves the calling thread into the topology's namespace.
fn topo_enter_fn(topo: &Topology) -> impl FnOnce() -> Result<()> + Send + 'static {
    let path = format!("/var/run/netns/{}", topo.ns);
    move || super::netns::enter_path(&path)
}
