//! `bench group --mode udp`: the server on the engine (one shard) on 127.0.0.1, a
//! publisher thread publishing the synthetic stream to it over RTMFP, and the members as
//! `FlashClient`s on real UDP sockets, several per thread, driven by one `poll(2)` loop
//! per thread. Times are CLOCK_MONOTONIC, the same in every thread.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};

use super::group::{
    GroupOptions, GroupRun, MemberRecord, Slot, Source, StreamLog, DRAIN, GROUP, STREAM,
};
use super::monotonic_micros;
use crate::cli::serve::{effective_config, start, EngineFlags};
use crate::cli::stream_client;
use crate::cli::url::RtmfpUrl;
use crate::engine::shard::StepHook;
use crate::flash::client::{ClientEvent, FlashClient};
use crate::flash::command::code;
use crate::group::member::GroupEvent;
use crate::net::os_seed;
use crate::proto::Instant;

/// The server's group counters, copied by the shard's step hook: fragments published
/// and sent by its member.
type ServerCounters = Arc<[AtomicU64; 2]>;

/// Runs the bench on loopback; see the module docs.
pub fn run(opts: &GroupOptions) -> Result<GroupRun> {
    let fd_limit = super::raise_fd_limit();
    let slots = opts.schedule();
    if slots.len() as u64 + 64 > fd_limit {
        bail!(
            "{} member sockets: the open-file limit is {fd_limit}",
            slots.len()
        );
    }
    let group = crate::cli::serve::GroupFlags {
        group: Some(GROUP),
        ..Default::default()
    };
    let cfg = effective_config(Some("127.0.0.1:0".parse()?), Some("off"), None, &group)?;
    let group = GroupOptions::spec().group_id();
    let counters: ServerCounters = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let hook_counters = counters.clone();
    let hook = move |_shard: u8| -> StepHook {
        let c = hook_counters.clone();
        Box::new(move |server, _now| {
            while server.poll_event().is_some() {}
            if let Some(s) = server.groups().get(&group).and_then(|m| m.stream()) {
                let k = s.counters();
                c[0].store(k.fragments_published, Ordering::Relaxed);
                c[1].store(k.fragments_sent, Ordering::Relaxed);
            }
            true
        })
    };
    let flags = EngineFlags {
        shards: 1,
        io: None,
        ..EngineFlags::default()
    };
    let engine = start(cfg, &flags, hook).context("starting the server")?;
    let server = engine.rtmfp_addr;
    eprintln!("bench group: server on udp://{server}, group {group}");
    let result = run_with_server(opts, &slots, server, &counters);
    engine.stop();
    let _ = engine.join();
    result
}

fn run_with_server(
    opts: &GroupOptions,
    slots: &[Slot],
    server: SocketAddr,
    counters: &ServerCounters,
) -> Result<GroupRun> {
    let url = RtmfpUrl::parse(&format!("rtmfp://{server}/live/{STREAM}"))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let stream_end = opts.stream_end();
    let bitrate = opts.bitrate_kbps;
    let publisher_url = url.clone();
    let publisher = std::thread::Builder::new()
        .name("group-publisher".into())
        .spawn(move || publish(&publisher_url, bitrate, stream_end, ready_tx))?;
    let t0 = match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(t0) => t0,
        Err(_) => {
            return Err(match publisher.join() {
                Ok(Err(e)) => e.context("the publisher"),
                _ => anyhow::anyhow!("the publisher did not start within 20 s"),
            })
        }
    };
    eprintln!(
        "bench group: publishing; {} members join over {:?}",
        opts.members,
        opts.ramp()
    );
    let end = t0 + (stream_end + DRAIN).as_micros() as u64;
    let threads = opts.threads.max(1);
    let epoch = StdInstant::now();
    let mut workers = Vec::new();
    for w in 0..threads {
        let mine: Vec<(usize, Slot)> = slots
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % threads == w)
            .collect();
        let ctx = MemberCtx {
            t0,
            end,
            server,
            tc_url: url.tc_url.clone(),
            app: url.app.clone(),
            epoch,
            published: counters.clone(),
        };
        workers.push(
            std::thread::Builder::new()
                .name(format!("group-members-{w}"))
                .spawn(move || run_members(&ctx, mine))?,
        );
    }
    let mut records = vec![MemberRecord::default(); slots.len()];
    for w in workers {
        let got = w
            .join()
            .map_err(|_| anyhow::anyhow!("a member thread panicked"))??;
        for (slot, r) in got {
            records[slot] = r;
        }
    }
    let stream = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("the publisher panicked"))??;
    Ok(GroupRun {
        members: opts.members,
        records,
        stream,
        server_published: counters[0].load(Ordering::Relaxed),
        server_sent: counters[1].load(Ordering::Relaxed),
        wall_seconds: 0.0,
    })
}

/// The publisher: connects, publishes, tells `ready` the stream's start time and sends
/// the synthetic stream for `length`.
fn publish(
    url: &RtmfpUrl,
    bitrate_kbps: u32,
    length: Duration,
    ready: mpsc::Sender<u64>,
) -> Result<StreamLog> {
    let timeout = Duration::from_secs(10);
    let mut driver =
        stream_client::connect_with(url, None, timeout, GroupOptions::member_endpoint())?;
    let id = stream_client::create_stream(&mut driver, timeout)?;
    driver.endpoint.publish(id, STREAM);
    stream_client::await_status(&mut driver, id, &[code::PUBLISH_START], timeout, |_| {})?;
    let t0 = monotonic_micros();
    let _ = ready.send(t0);
    let mut source = Source::new(bitrate_kbps, t0);
    let end = t0 + length.as_micros() as u64;
    loop {
        let mono = monotonic_micros();
        if mono >= end {
            break;
        }
        for m in source.due(mono) {
            let now = driver.now();
            if !driver.endpoint.send_media(now, id, &m) {
                bail!("the publisher's session ended");
            }
        }
        let wait = Duration::from_micros(source.next_due().saturating_sub(monotonic_micros()));
        driver.run(wait.min(Duration::from_millis(5)), |c, _| {
            while c.poll_event().is_some() {}
            true
        })?;
    }
    // Retransmissions of the last frames, then goodbye.
    driver.run(Duration::from_millis(500), |c, _| {
        while c.poll_event().is_some() {}
        true
    })?;
    let _ = stream_client::close(&mut driver);
    Ok(source.log)
}

struct MemberCtx {
    t0: u64,
    end: u64,
    server: SocketAddr,
    tc_url: String,
    app: String,
    epoch: StdInstant,
    published: ServerCounters,
}

impl MemberCtx {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }
}

struct Live {
    slot: usize,
    leave_at: Option<u64>,
    client: FlashClient,
    socket: UdpSocket,
    record: MemberRecord,
}

/// Runs this thread's members: joins and leaves them on schedule, moves their datagrams.
fn run_members(
    ctx: &MemberCtx,
    mut slots: Vec<(usize, Slot)>,
) -> Result<Vec<(usize, MemberRecord)>> {
    slots.sort_by_key(|(_, s)| s.join_at);
    let mut pending = slots.into_iter().peekable();
    let mut live: Vec<Live> = Vec::new();
    let mut done = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let at = |d: Duration| ctx.t0 + d.as_micros() as u64;
    loop {
        let mono = monotonic_micros();
        if mono >= ctx.end {
            break;
        }
        let now = ctx.now();
        while let Some((slot, s)) = pending.next_if(|(_, s)| at(s.join_at) <= mono) {
            let socket = UdpSocket::bind("127.0.0.1:0").context("a member socket")?;
            socket.set_nonblocking(true)?;
            let client = FlashClient::connect(
                now,
                ctx.server,
                &ctx.tc_url,
                &ctx.app,
                vec![],
                GroupOptions::member_endpoint(),
                os_seed(),
            );
            let record = MemberRecord {
                joined_us: mono,
                published_at_join: ctx.published[0].load(Ordering::Relaxed),
                ..MemberRecord::default()
            };
            live.push(Live {
                slot,
                leave_at: s.leave_at.map(at),
                client,
                socket,
                record,
            });
        }
        let mut i = 0;
        while i < live.len() {
            if live[i].leave_at.is_some_and(|t| t <= mono) {
                let mut m = live.swap_remove(i);
                snapshot(&mut m, ctx);
                m.record.left_us = Some(mono);
                m.client.close(now);
                flush(&mut m, now, ctx.server);
                done.push((m.slot, m.record));
            } else {
                i += 1;
            }
        }
        // Sleep until a datagram, a timer, a join or leave, at most 5 ms.
        let mut wait_us: u64 = 5_000;
        if let Some((_, s)) = pending.peek() {
            wait_us = wait_us.min(at(s.join_at).saturating_sub(mono));
        }
        for m in &live {
            if let Some(t) = m.client.poll_timeout() {
                wait_us = wait_us.min(t.as_micros().saturating_sub(now.as_micros()));
            }
            if let Some(t) = m.leave_at {
                wait_us = wait_us.min(t.saturating_sub(mono));
            }
        }
        fds.clear();
        fds.extend(live.iter().map(|m| libc::pollfd {
            fd: m.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let timeout_ms = wait_us.div_ceil(1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        let now = ctx.now();
        for (m, fd) in live.iter_mut().zip(&fds) {
            let mut touched = false;
            if fd.revents != 0 {
                loop {
                    match m.socket.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            if from == ctx.server {
                                m.record.wire_from_server += n as u64;
                            }
                            m.client.handle_datagram(now, from, &buf[..n]);
                            touched = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
            if m.client.poll_timeout().is_some_and(|t| t <= now) {
                m.client.handle_timeout(now);
                touched = true;
            }
            if touched {
                while let Some(e) = m.client.poll_event() {
                    match e {
                        ClientEvent::Connected => {
                            m.client.join_group(&GroupOptions::spec());
                            m.client.play_from_group(STREAM);
                        }
                        ClientEvent::Group(GroupEvent::Media(msg)) => {
                            m.record.on_media(&msg, monotonic_micros())
                        }
                        _ => {}
                    }
                }
                flush(m, now, ctx.server);
            }
        }
    }
    for mut m in live {
        snapshot(&mut m, ctx);
        done.push((m.slot, m.record));
    }
    Ok(done)
}

fn snapshot(m: &mut Live, ctx: &MemberCtx) {
    if let Some(g) = m.client.group() {
        m.record.counters = g.stream().map(|s| s.counters()).unwrap_or_default();
        m.record.from_server = g.received_from_server();
    }
    m.record.published_at_end = ctx.published[0].load(Ordering::Relaxed);
}

fn flush(m: &mut Live, now: Instant, server: SocketAddr) {
    while let Some(t) = m.client.poll_transmit(now) {
        if t.destination != server {
            m.record.wire_up += t.payload.len() as u64;
        }
        let _ = m.socket.send_to(&t.payload, t.destination);
    }
}
