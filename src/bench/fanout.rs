//! The sweep: for every (shards, subscribers) point, the kernel ceiling, then the server
//! with one publisher and N subscribers, then the ceiling again; the best ceiling is the
//! reference. Progress goes to stderr, one summary line per point to stdout.

use std::io::Read as _;
use std::net::{SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::ceiling::{self, CeilingRun};
use super::netns::{Topology, SERVER_ADDR};
use super::publisher::{self, PublisherStats};
use super::receiver::{self, Control};
use super::report::{self, Point};
use super::subscribers::{self, subscriber_addr, JoinProgress};
use super::{check_interrupt, percentile};
use crate::cli::url::RtmfpUrl;
use crate::proto::packet::MAX_SESSION_PACKET;

/// Subscriber ports in the namespace start here.
const BASE_PORT: u16 = 20_000;
/// Offered load without --bitrate: this fraction of one core's ceiling at N.
const OFFERED_FRACTION: f64 = 0.9;
const BITRATE_MIN_MBPS: f64 = 0.1;
const BITRATE_MAX_MBPS: f64 = 100.0;
const WARMUP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Options {
    pub subscribers: Vec<usize>,
    pub shards: Vec<u32>,
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
            check_interrupt()?;
            let p = run_point(&mut topo, opts, shards, n, fd_limit)
                .with_context(|| format!("point shards={shards} subscribers={n}"))?;
            println!("{}", p.summary_line());
            points.push(p);
            // Written after every point, so an interrupted sweep keeps what it measured.
            write_results(&opts.out, &points)?;
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

fn measure_ceiling(
    topo: &mut Topology,
    n: usize,
    secs: f64,
    fd_limit: u64,
) -> Result<Vec<CeilingRun>> {
    topo.set_ingress_drop(true)?;
    let dests: Vec<SocketAddrV4> = (0..n).map(|i| subscriber_addr(BASE_PORT, i)).collect();
    let from = SocketAddrV4::new(SERVER_ADDR, 0);
    let fds_left = fd_limit.saturating_sub(open_fds());
    let runs = ceiling::measure(from, &dests, Duration::from_secs_f64(secs), fds_left)?;
    for r in &runs {
        eprintln!(
            "bench: ceiling to {n} destinations, {}: {:.0} pps",
            r.method, r.pps
        );
    }
    Ok(runs)
}

/// The server child: killed and reaped on drop.
struct ServerChild {
    child: Child,
    log: PathBuf,
}

impl ServerChild {
    fn start(shards: u32, out: &Path) -> Result<(Self, SocketAddrV4)> {
        let port = UdpSocket::bind(SocketAddrV4::new(SERVER_ADDR, 0))?
            .local_addr()?
            .port();
        let listen = SocketAddrV4::new(SERVER_ADDR, port);
        let log = out.join(format!("server-shards{shards}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--listen", &listen.to_string(), "--rtmp", "off"]);
        cmd.args(["--shards", &shards.to_string()]);
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

fn chosen_bitrate(opts: &Options, ceiling_pps: f64, n: usize) -> f64 {
    if let Some(b) = opts.bitrate_mbps {
        return b;
    }
    let per_subscriber_pps = OFFERED_FRACTION * ceiling_pps / n as f64;
    let mbps = per_subscriber_pps * MAX_SESSION_PACKET as f64 * 8.0 / 1e6;
    let clamped = mbps.clamp(BITRATE_MIN_MBPS, BITRATE_MAX_MBPS);
    eprintln!(
        "bench: bitrate {clamped:.2} Mbit/s: {:.0}% of the ceiling ({ceiling_pps:.0} pps) over {n} subscribers is {mbps:.2} Mbit/s{}",
        OFFERED_FRACTION * 100.0,
        if clamped != mbps { format!(", clamped to {BITRATE_MIN_MBPS}-{BITRATE_MAX_MBPS}") } else { String::new() }
    );
    clamped
}

fn run_point(
    topo: &mut Topology,
    opts: &Options,
    shards: u32,
    n: usize,
    fd_limit: u64,
) -> Result<Point> {
    eprintln!("bench: --- shards={shards} subscribers={n} ---");
    let mut ceilings = measure_ceiling(topo, n, opts.ceiling_seconds, fd_limit)?;
    let before = ceilings.iter().map(|r| r.pps).fold(0.0, f64::max);
    let bitrate = chosen_bitrate(opts, before, n);
    topo.set_ingress_drop(false)?;
    let (server, listen) = ServerChild::start(shards, &opts.out)?;
    eprintln!("bench: server pid {} on udp://{listen}", server.child.id());
    let url = RtmfpUrl::parse(&format!("rtmfp://{listen}/live/bench"))?;

    let control = Arc::new(Control::default());
    let (handoff_tx, handoff_rx) = channel();
    let ns_if = topo.ns_if.clone();
    let receiver = {
        let control = control.clone();
        let topo_ns = topo.ns.clone();
        let enter = topo_enter_fn(topo);
        std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn(move || -> Result<receiver::Tally> {
                enter().with_context(|| format!("entering {topo_ns}"))?;
                receiver::run(&ns_if, BASE_PORT, handoff_rx, &control)
            })?
    };
    let stop_publisher = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pub_stats = Arc::new(PublisherStats::default());
    let publisher = {
        let (url, stop, stats) = (url.clone(), stop_publisher.clone(), pub_stats.clone());
        let bps = (bitrate * 1e6) as u64;
        std::thread::spawn(move || publisher::publish(&url, bps, &stop, &stats))
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
        eprintln!("bench: publisher ready at {bitrate:.2} Mbit/s; joining {n} subscribers first");
        let progress = Arc::new(JoinProgress::default());
        let started = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let join = s.spawn(|| {
                subscribers::join_all(
                    topo,
                    &url,
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
                        "bench: playing {done}/{n} (failed {}) after {:.1} s",
                        progress.failed.load(Ordering::Relaxed),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            join.join()
                .map_err(|_| anyhow::anyhow!("a join worker panicked"))?
        })?;
        eprintln!(
            "bench: {n} subscribers playing after {:.1} s; switching to the packet tap",
            started.elapsed().as_secs_f64()
        );
        topo.set_ingress_drop(true)?;
        pub_stats.go.store(true, Ordering::Relaxed);
        std::thread::sleep(WARMUP);
        let cpu0 = server.cpu_seconds();
        let t0 = Instant::now();
        control.measuring.store(true, Ordering::Relaxed);
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
        control.measuring.store(false, Ordering::Relaxed);
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
    ceilings.extend(measure_ceiling(topo, n, opts.ceiling_seconds, fd_limit)?);
    let best = ceilings
        .iter()
        .max_by(|a, b| a.pps.total_cmp(&b.pps))
        .context("no ceiling measured")?;
    tally.latencies_us.sort_unstable();
    let ms = |q| percentile(&tally.latencies_us, q).map_or(f64::NAN, |us| f64::from(us) / 1000.0);
    let secs = tally.seconds.max(1e-9);
    let pps_per_core = tally.datagrams as f64 / secs / f64::from(shards);
    eprintln!(
        "bench: {} datagrams in {secs:.2} s to {} subscribers ({} closed), {} latency samples, {} undecodable, {} tap drops",
        tally.datagrams,
        tally.subscribers,
        tally.closed,
        tally.latencies_us.len(),
        tally.undecodable,
        tally.tap_drops
    );
    Ok(Point {
        shards,
        subscribers: n,
        bitrate_mbps: bitrate,
        seconds: secs,
        pps_per_core,
        mbps_per_core: tally.bytes as f64 * 8.0 / secs / f64::from(shards) / 1e6,
        ceiling_pps_per_core: best.pps,
        ceiling_method: best.method.to_owned(),
        ratio: pps_per_core / best.pps,
        delivered: tally.delivered().unwrap_or(f64::NAN),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        latency_samples: tally.latencies_us.len(),
        datagrams: tally.datagrams,
        tap_drops: tally.tap_drops,
        server_cores,
    })
}

/// A closure that moves the calling thread into the topology's namespace.
fn topo_enter_fn(topo: &Topology) -> impl FnOnce() -> Result<()> + Send + 'static {
    let path = format!("/var/run/netns/{}", topo.ns);
    move || super::netns::enter_path(&path)
}
