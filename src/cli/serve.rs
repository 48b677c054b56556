//! `serve`: RTMFP on UDP and RTMP on TCP feeding one edge server.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::probe::yes_no;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::config_feed::ConfigFeed;
use crate::engine::shard::{Io, ShardStats, StepHook};
use crate::engine::xdp_guard::{GuardConfig, XdpGuard};
use crate::engine::{Engine, EngineOptions, IoChoice};
use crate::group::GroupSpec;
use crate::metrics::{self, http::MetricsServer};
use crate::proto::endpoint::EndpointConfig;
use crate::proto::session::SessionConfig;
use crate::proto::{DropReason, Instant};
use crate::server::config::{FecScheme, MulticastForm, ServerConfig};
use crate::server::edge::{EdgeServer, ServerEvent};

/// How often the server prints its drop counters (only when they changed).
const DROP_REPORT: Duration = Duration::from_secs(60);

/// The config to run with: the file's (or the embedded default), then the flags.
/// `serve --group NAME [--multicast-form F] [--multicast-address A]
/// [--multicast-fec K+R]`.
#[derive(Debug, Clone, Default)]
pub struct GroupFlags<'a> {
    pub group: Option<&'a str>,
    pub form: Option<&'a str>,
    pub address: Option<SocketAddr>,
    /// `--multicast-fec K+R`.
    pub fec: Option<&'a str>,
    /// `--multicast-ttl`, `--multicast-interface`, `--multicast-loop`: override the
    /// config's `[server] multicast_*`.
    pub ttl: Option<u32>,
    pub interface: Option<&'a str>,
    pub loop_back: Option<&'a str>,
}

pub fn effective_config(
    listen: Option<SocketAddr>,
    rtmp: Option<&str>,
    config: Option<&Path>,
    group: &GroupFlags<'_>,
) -> Result<ServerConfig> {
    let mut cfg = match config {
        Some(path) => ServerConfig::load(path).map_err(anyhow::Error::msg)?,
        None => ServerConfig::embedded_default(),
    };
    if let Some(addr) = listen {
        cfg.rtmfp_listen = addr;
    }
    match rtmp {
        None => {}
        Some("off") => cfg.rtmp_listen = None,
        Some(addr) => {
            cfg.rtmp_listen = Some(
                addr.parse()
                    .with_context(|| format!("--rtmp {addr:?}: expected ADDR:PORT or off"))?,
            )
        }
    }
    if let Some(ttl) = group.ttl {
        if !(1..=255).contains(&ttl) {
            bail!("--multicast-ttl {ttl}: give 1 (the server's links only) to 255");
        }
        cfg.multicast.ttl = ttl;
    }
    if let Some(interface) = group.interface {
        cfg.multicast.interface = Some(interface.to_owned());
    }
    match group.loop_back {
        None => {}
        Some("on") => cfg.multicast.loop_back = true,
        Some("off") => cfg.multicast.loop_back = false,
        Some(other) => bail!("--multicast-loop {other:?}: expected on or off"),
    }
    let form = match group.form {
        None => MulticastForm::P2p,
        Some(f) => MulticastForm::parse(f)
            .with_context(|| format!("--multicast-form {f:?}: expected ip, p2p or fusion"))?,
    };
    if let Some(a) = group.address {
        if !a.ip().is_multicast() || a.port() == 0 {
            bail!("--multicast-address {a}: not a multicast address and port (224.0.0.0/4 or ff00::/8)");
        }
    }
    let fec = match group.fec {
        None => None,
        Some(_) if !form.uses_ip() => {
            bail!(
                "--multicast-fec protects IP multicast: it goes with --multicast-form ip or fusion"
            )
        }
        Some(text) => Some(
            FecScheme::parse(text).map_err(|e| anyhow::anyhow!("--multicast-fec {text:?}: {e}"))?,
        ),
    };
    match (group.group, form.uses_ip(), group.address) {
        (None, _, _) if group.form.is_some() || group.address.is_some() => {
            bail!("--multicast-form and --multicast-address go with --group")
        }
        (None, _, _) => {}
        (Some(_), true, None) => bail!("--multicast-form {form:?} needs --multicast-address"),
        (Some(name), _, address) => {
            let spec = GroupSpec::from_name_or_spec(name)
                .with_context(|| format!("--group {name:?}: expected a group name or G:..."))?;
            cfg.republish_everything_as(spec.clone(), form, address.filter(|_| form.uses_ip()));
            if let Some(fec) = fec {
                cfg.protect_multicast(&spec.group_id(), fec);
            }
        }
    }
    Ok(cfg)
}

pub fn endpoint_config(cfg: &ServerConfig) -> EndpointConfig {
    EndpointConfig {
        cookie_len: cfg.cookie_len,
        max_handshakes_per_sec: cfg.max_handshakes_per_sec,
        amplification_limit: cfg.amplification_limit,
        session: SessionConfig {
            keepalive: cfg.keepalive,
            idle_timeout: cfg.idle_timeout,
            ..SessionConfig::default()
        },
        ..EndpointConfig::server()
    }
}

/// How `serve` runs the engine: shards and I/O.
#[derive(Debug, Clone, Default)]
pub struct EngineFlags {
    /// 0 = one per core.
    pub shards: usize,
    pub io: Option<IoChoice>,
    /// `--xdp-iface IF`: the interface for AF_XDP.
    pub xdp_iface: Option<String>,
    /// `--xdp-handshake-limit RATE/BURST|off`, for the guard and the AF_XDP path.
    pub xdp_handshake_limit: Option<String>,
    /// `--metrics ADDR:PORT|off`: overrides the config's `[server] metrics_listen`.
    pub metrics: Option<String>,
    /// `--xdp-guard IF`: the interface to attach the XDP guard to.
    pub xdp_guard: Option<String>,
}

/// Where the metrics endpoint listens: `--metrics` if given (`off`: nowhere), else the
/// config's `[server] metrics_listen`.
pub fn metrics_listen(
    flag: Option<&str>,
    config: Option<SocketAddr>,
) -> Result<Option<SocketAddr>> {
    match flag {
        None => Ok(config),
        Some("off") => Ok(None),
        Some(addr) => addr.parse().map(Some).with_context(|| {
            format!("--metrics {addr:?}: expected ADDR:PORT (such as 127.0.0.1:9100) or off")
        }),
    }
}

/// Binds and starts the engine; `hook(i)` runs on shard i after every loop turn.
pub fn start(
    cfg: ServerConfig,
    flags: &EngineFlags,
    hook: impl FnMut(u8) -> StepHook,
) -> Result<Engine> {
    let endpoint = endpoint_config(&cfg);
    let options = EngineOptions {
        shards: flags.shards,
        io: flags.io.unwrap_or(IoChoice::Auto),
        xdp_interface: flags.xdp_iface.clone(),
        xdp_handshake_limit: handshake_limit(flags, &cfg)?,
        ..EngineOptions::default()
    };
    Engine::start(Arc::new(cfg), endpoint, options, hook)
}

/// `--xdp-handshake-limit`, else `[server] xdp_handshake_limit`, else the guard's default
/// (20/s, burst 40).
fn handshake_limit(flags: &EngineFlags, cfg: &ServerConfig) -> Result<(u32, u32)> {
    match (&flags.xdp_handshake_limit, cfg.xdp_handshake_limit) {
        (Some(text), _) => GuardConfig::parse_handshake_limit(text)
            .map_err(|e| anyhow::anyhow!("--xdp-handshake-limit {e}")),
        (None, Some(limit)) => Ok(limit),
        (None, None) => {
            let d = GuardConfig::for_ports(Vec::new());
            Ok((d.handshake_rate, d.handshake_burst))
        }
    }
}

/// A hook that logs what a shard's server does and, now and then, its drop counters.
pub fn logging_hook(stop: Option<Arc<AtomicBool>>) -> impl FnMut(u8) -> StepHook {
    move |shard| {
        let stop = stop.clone();
        let mut last_report = Instant::ZERO;
        let mut reported = std::collections::BTreeMap::new();
        let mut first = true;
        Box::new(move |server: &mut EdgeServer, now: Instant| {
            if first && shard == 0 {
                println!("server peer id {}", server.endpoint.server_peer_id());
            }
            first = false;
            while let Some(event) = server.poll_event() {
                log_event(server, &event);
            }
            if now.saturating_since(last_report) >= DROP_REPORT {
                last_report = now;
                if server.endpoint.drops() != &reported {
                    reported = server.endpoint.drops().clone();
                    print_drops(shard, &reported);
                }
            }
            !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
        })
    }
}

/// Where `serve`'s config comes from: the file (or the embedded default) with the flags
/// over it. Read at start, and again on every SIGHUP.
struct ConfigSource<'a> {
    listen: Option<SocketAddr>,
    rtmp: Option<&'a str>,
    config: Option<&'a Path>,
    group: &'a GroupFlags<'a>,
    flags: &'a EngineFlags,
}

impl ConfigSource<'_> {
    /// [`effective_config`], then `--shards` and `--metrics` over the file's `shards`
    /// and `metrics_listen`: everything the server runs with that the file can say.
    fn read(&self) -> Result<ServerConfig> {
        let mut cfg = effective_config(self.listen, self.rtmp, self.config, self.group)?;
        if cfg.apps().is_empty() {
            bail!("the config has no [[app]]");
        }
        if let Some(n) = NonZeroUsize::new(self.flags.shards) {
            cfg.shards = Some(n);
        }
        cfg.metrics_listen = metrics_listen(self.flags.metrics.as_deref(), cfg.metrics_listen)?;
        Ok(cfg)
    }

    /// How the reload line names the config.
    fn origin(&self) -> String {
        match self.config {
            Some(path) => path.display().to_string(),
            None => "the embedded default (no --config)".to_owned(),
        }
    }
}

/// On every SIGHUP, reads the config again and hands what may change at run time to the
/// shards (docs/operations.md); prints one line saying what changed, or why the file
/// was refused (the server then keeps the config it runs with). Returns when `signals`
/// is closed.
fn reload_on_sighup(
    signals: &mut signal_hook::iterator::Signals,
    source: &ConfigSource<'_>,
    mut running: ServerConfig,
    feed: &ConfigFeed,
) {
    for _ in signals.forever() {
        match source.read() {
            Err(e) => {
                println!("config reload rejected: {e:#}; still running the previous config")
            }
            Ok(new) => {
                let reload = running.reload(new);
                println!("config reloaded from {}: {reload}", source.origin());
                // Only settings that need a restart changed: the shards have nothing new.
                if reload.config != running {
                    feed.publish(Arc::new(reload.config.clone()));
                }
                running = reload.config;
            }
        }
    }
}

pub fn serve(
    listen: Option<SocketAddr>,
    rtmp: Option<&str>,
    config: Option<&Path>,
    group: &GroupFlags<'_>,
    flags: &EngineFlags,
) -> Result<()> {
    // Before anything is announced: a SIGHUP from now on reloads, never kills.
    let mut sighup = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("installing the SIGHUP handler")?;
    let source = ConfigSource {
        listen,
        rtmp,
        config,
        group,
        flags,
    };
    let cfg = source.read()?;
    let running = cfg.clone();
    let apps: Vec<String> = cfg.apps().iter().map(|a| a.name.clone()).collect();
    let cfg_republish: Vec<String> = cfg
        .apps()
        .iter()
        .flat_map(|a| {
            a.republish.iter().map(move |r| {
                format!(
                    "app {}: streams {} republished into group {} ({}) as {:?}{}",
                    a.name,
                    r.streams,
                    r.group,
                    r.group.group_id(),
                    r.form,
                    r.address.map(|a| format!(" to {a}")).unwrap_or_default()
                )
            })
        })
        .collect();
    let cfg_fec: Vec<(String, String, FecScheme)> = cfg
        .apps()
        .iter()
        .flat_map(|a| {
            let rules = a.republish.iter().filter_map(|r| r.fec.map(|f| (r, f)));
            rules.map(move |(r, f)| (a.name.clone(), r.group.to_string(), f))
        })
        .collect();
    let metrics = cfg.metrics_listen;
    // The command line wins over the file's [server] keys.
    let flags = &EngineFlags {
        shards: cfg.shards.map_or(0, NonZeroUsize::get),
        io: flags.io.or(cfg.io),
        xdp_iface: flags
            .xdp_iface
            .clone()
            .or_else(|| cfg.xdp_interface.clone()),
        ..flags.clone()
    };
    if let (Some(guard), Some(xdp)) = (&flags.xdp_guard, &flags.xdp_iface) {
        if guard == xdp && flags.io != Some(IoChoice::Uring) && flags.io != Some(IoChoice::Poll) {
            bail!(
                "--xdp-guard {guard} and --xdp-iface {xdp} (or [server] xdp_interface): the \
                 AF_XDP path puts the guard on its interface itself; give only --xdp-iface"
            );
        }
    }
    let guard_limit = handshake_limit(flags, &cfg)?;
    let engine = start(cfg, flags, logging_hook(None))?;
    if let Some(why) = &engine.xdp_unavailable {
        println!("engine: AF_XDP not used ({why}); falling back");
    }
    println!(
        "engine: {} shard(s) on {}{}",
        engine.shards(),
        match (&engine.io, &engine.xdp) {
            (Io::Xdp, Some(xdp)) => format!(
                "AF_XDP ({} mode) on {}, {} receive queue(s) (queue q on shard q mod \
                 shards), with our XDP program in front; the kernel socket beside it for \
                 other interfaces, io_uring for shards without a queue",
                xdp.mode, xdp.interface, xdp.queues
            ),
            (Io::Uring | Io::Xdp, _) => "io_uring".to_owned(),
            (Io::Poll, _) => "the plain socket loop".to_owned(),
        },
        engine
            .io_fallback_reason
            .as_ref()
            .map(|r| format!(" (io_uring unavailable: {r})"))
            .unwrap_or_default()
    );
    match (&engine.steering, &engine.steering_unavailable) {
        (Some(_), _) => println!("session steering: reuseport BPF program loaded"),
        (None, Some(why)) => println!(
            "session steering: shards hand each other foreign datagrams (BPF program not loaded: {why})"
        ),
        (None, None) => {}
    }
    println!("rtmfp-edge serving RTMFP on udp://{}", engine.rtmfp_addr);
    if let Some(tcp) = engine.rtmp_addr {
        println!("RTMP on tcp://{tcp}");
    }
    println!("apps: {}", apps.join(", "));
    for app in cfg_republish {
        println!("{app}");
    }
    for (app, group, fec) in cfg_fec {
        println!("app {app}: IP multicast into group {group} carries FEC {fec} (K+R)");
    }
    let guard = match &flags.xdp_guard {
        Some(interface) => {
            let (handshake_rate, handshake_burst) = guard_limit;
            let config = GuardConfig {
                handshake_rate,
                handshake_burst,
                ..GuardConfig::for_ports(vec![engine.rtmfp_addr.port()])
            };
            let guard = XdpGuard::attach(interface, &config)
                .with_context(|| format!("--xdp-guard {interface}"))?;
            println!(
                "XDP guard on {interface}: udp port {} (RTMFP-shaped datagrams only; \
                 {} handshakes/s per source, burst {})",
                engine.rtmfp_addr.port(),
                config.handshake_rate,
                config.handshake_burst
            );
            Some(Arc::new(guard))
        }
        None => None,
    };
    // Started once the engine is: the page has shards to show from the first scrape.
    if let Some(addr) = metrics {
        let stats = engine.stats.clone();
        let programs: Vec<Arc<XdpGuard>> = guard
            .iter()
            .chain(engine.xdp.as_ref().map(|x| &x.guard))
            .cloned()
            .collect();
        let pages = move |path: &str| match path {
            metrics::http::PATH => {
                let attached: Vec<(&str, _)> = programs
                    .iter()
                    .map(|g| (g.interface(), g.counters()))
                    .collect();
                let text = metrics::shards::render(&stats)
                    + &metrics::shards::render_xdp_program(&attached);
                Some((metrics::text::CONTENT_TYPE, text))
            }
            metrics::http::STATUS_PAGE_PATH => {
                Some(("text/html; charset=utf-8", metrics::status::PAGE.to_owned()))
            }
            metrics::http::STATUS_JSON_PATH => {
                Some(("application/json", metrics::status::render_json(&stats)))
            }
            _ => None,
        };
        let endpoint = MetricsServer::start(addr, pages)
            .with_context(|| format!("metrics endpoint on {addr}"))?;
        println!("metrics on http://{}{}", endpoint.addr, metrics::http::PATH);
        println!("status page on http://{}/", endpoint.addr);
    }
    report_shards(engine.stats.clone());
    engine.drain_on_signals()?;
    let mut engine = engine;
    let xdp = engine.xdp.take();
    let shard_stats = engine.stats.clone();
    let feed = engine.config_feed();
    let sighup_handle = sighup.handle();
    std::thread::scope(|scope| {
        scope.spawn(|| reload_on_sighup(&mut sighup, &source, running, &feed));
        let joined = engine.join();
        sighup_handle.close();
        joined
    })?;
    println!("drained: every shard stopped");
    if let Some(xdp) = xdp {
        let c = xdp.guard.counters();
        let sum = |f: fn(&ShardStats) -> &AtomicU64| -> u64 {
            shard_stats.iter().map(|s| ShardStats::get(f(s))).sum()
        };
        println!(
            "AF_XDP on {}: frames_received={} frames_not_ours={} sent={} sent_by_kernel={} send_failed={}; XDP program: redirected={} passed={} dropped_short={} dropped_bad_length={} dropped_handshake_rate={}",
            xdp.interface,
            sum(|s| &s.xdp.frames_received),
            sum(|s| &s.xdp.frames_not_ours),
            sum(|s| &s.xdp.sent),
            sum(|s| &s.xdp.sent_by_kernel),
            sum(|s| &s.xdp.send_failed),
            c.redirected,
            c.passed,
            c.dropped_short,
            c.dropped_bad_length,
            c.dropped_handshake_rate
        );
    }
    if let Some(guard) = guard {
        let c = guard.counters();
        println!(
            "XDP guard on {}: passed={} redirected={} handshakes={} dropped_short={} dropped_bad_length={} dropped_handshake_rate={} not_ours={}",
            guard.interface(),
            c.passed,
            c.redirected,
            c.handshakes,
            c.dropped_short,
            c.dropped_bad_length,
            c.dropped_handshake_rate,
            c.not_ours
        );
    }
    Ok(())
}

/// Prints each shard's counters every minute, when they changed.
fn report_shards(stats: Vec<Arc<ShardStats>>) {
    std::thread::spawn(move || {
        let mut last = Vec::new();
        loop {
            std::thread::sleep(DROP_REPORT);
            let now: Vec<String> = stats
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let g = ShardStats::get;
                    format!(
                        "shard {i}: received={} handled={} handed_off={} taken_over={} sent={} relayed_out={} relayed_in={} dropped={} lag_skipped_frames={} group_fragments_sent={}",
                        g(&s.received),
                        g(&s.handled),
                        g(&s.handed_off),
                        g(&s.taken_over),
                        g(&s.sent),
                        g(&s.relayed_out),
                        g(&s.relayed_in),
                        g(&s.dropped),
                        g(&s.frames_skipped_for_lag),
                        g(&s.group_fragments_sent)
                    )
                })
                .collect();
            if now != last {
                for line in &now {
                    println!("{line}");
                }
                last = now;
            }
        }
    });
}

pub fn log_event(server: &EdgeServer, event: &ServerEvent) {
    match event {
        ServerEvent::RtmfpSessionOpened {
            session,
            conn,
            peer,
        } => {
            let negotiated = server
                .endpoint
                .session(*session)
                .map(|s| {
                    let i = &s.info;
                    format!(
                        "layout {}, DH group {}, HMAC {}, sequence numbers {}, peer id {}",
                        i.layout,
                        i.dh_group,
                        i.tx_hmac.map_or("no".into(), |n| format!("{n}")),
                        yes_no(i.tx_sequence_numbers),
                        i.far_peer_id
                    )
                })
                .unwrap_or_default();
            println!("rtmfp session {session:08x} (conn {conn}) from {peer}: {negotiated}")
        }
        ServerEvent::RtmfpSessionClosed { session, reason } => {
            println!("rtmfp session {session:08x} closed: {reason:?}")
        }
        ServerEvent::RtmpClosed { conn, error } => match error {
            Some(e) => println!("rtmp conn {conn} closed: {e}"),
            None => println!("rtmp conn {conn} closed"),
        },
        ServerEvent::App(e) => println!("{e:?}"),
        ServerEvent::Introduced { from, target } => {
            println!("introduced {from} to peer {target}")
        }
        ServerEvent::GroupJoinUnreadable { session, error } => {
            println!("rtmfp session {session:08x}: group join refused: {error}")
        }
        ServerEvent::ConfigReloaded(ended) => println!(
            "shard {}: reloaded config in effect; ended what it no longer allows: \
             {} connection(s), {} publication(s), {} group membership(s)",
            server.endpoint.config().shard,
            ended.connections,
            ended.publications,
            ended.memberships
        ),
    }
}

fn print_drops(shard: u8, drops: &std::collections::BTreeMap<DropReason, u64>) {
    if !drops.is_empty() {
        let list: Vec<String> = drops
            .iter()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        println!("shard {shard} dropped datagrams: {}", list.join(" "));
    }
}

/// `rtmfp-edge check-config FILE`: the file's first error, or a summary of what it sets
/// up (listen addresses, apps, what each republishes and how).
pub fn check_config(path: &Path) -> Result<()> {
    let cfg = ServerConfig::load(path).map_err(anyhow::Error::msg)?;
    println!("{}: ok", path.display());
    println!("  rtmfp_listen = {}", cfg.rtmfp_listen);
    match cfg.rtmp_listen {
        Some(a) => println!("  rtmp_listen  = {a}"),
        None => println!("  rtmp_listen  = off"),
    }
    match cfg.metrics_listen {
        Some(a) => println!("  metrics_listen = {a}"),
        None => println!("  metrics_listen = off"),
    }
    match cfg.shards {
        Some(n) => println!("  shards       = {n}"),
        None => println!("  shards       = one per core"),
    }
    println!(
        "  io           = {}",
        cfg.io.map_or("auto", crate::server::config::IoMode::name)
    );
    if let Some(interface) = &cfg.xdp_interface {
        println!("  xdp_interface = {interface}");
    }
    match cfg.xdp_handshake_limit {
        Some((0, _)) => println!("  xdp_handshake_limit = off"),
        Some((rate, burst)) => println!("  xdp_handshake_limit = {rate}/{burst}"),
        None => {}
    }
    for app in cfg.apps() {
        println!("  app {:?}", app.name);
        for r in &app.republish {
            let form = match r.form {
                MulticastForm::P2p => "p2p",
                MulticastForm::Ip => "ip",
                MulticastForm::Fusion => "fusion",
            };
            let mut how = match r.address {
                Some(a) if r.form.uses_ip() => format!("{form} to {a}"),
                _ => form.to_owned(),
            };
            if let Some(fec) = r.fec {
                how.push_str(&format!(", FEC {fec}"));
            }
            println!(
                "    streams {:?} -> group {} ({how})",
                r.streams.as_str(),
                r.group.group_id().to_hex()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_metrics_flag_overrides_the_config_and_off_turns_it_off() {
        let from_config: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(metrics_listen(None, None).unwrap(), None);
        assert_eq!(
            metrics_listen(None, Some(from_config)).unwrap(),
            Some(from_config)
        );
        assert_eq!(
            metrics_listen(Some("off"), Some(from_config)).unwrap(),
            None
        );
        assert_eq!(
            metrics_listen(Some("[::1]:0"), Some(from_config)).unwrap(),
            Some("[::1]:0".parse().unwrap())
        );
        let e = metrics_listen(Some("9100"), None).unwrap_err();
        assert!(format!("{e:#}").contains("--metrics \"9100\": expected ADDR:PORT"));
    }

    #[test]
    fn serve_multicast_fec_protects_the_group_it_republishes_into() {
        let flags = |fec: &'static str| GroupFlags {
            group: Some("g"),
            form: Some("ip"),
            address: Some("239.1.2.3:30000".parse().unwrap()),
            fec: Some(fec),
            ..GroupFlags::default()
        };
        let group = GroupSpec::from_name_or_spec("g").unwrap().group_id();
        let config = effective_config(None, None, None, &flags("4+1")).unwrap();
        assert_eq!(
            config.multicast_fec(&group).map(|f| f.to_string()),
            Some("4+1".into())
        );
        for (fec, why) in [
            ("4", "is not K+R"),
            ("0+1", "K is 0"),
            ("4+0", "R is 0"),
            ("250+6", "K+R is 256"),
        ] {
            let e = effective_config(None, None, None, &flags(fec)).unwrap_err();
            let message = format!("{e:#}");
            assert!(
                message.contains("--multicast-fec") && message.contains(why),
                "{message}"
            );
        }
        let p2p = GroupFlags {
            form: Some("p2p"),
            address: None,
            ..flags("4+1")
        };
        let e = effective_config(None, None, None, &p2p).unwrap_err();
        assert!(format!("{e:#}").contains("goes with --multicast-form ip or fusion"));
    }
}
