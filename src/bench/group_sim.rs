//! `bench group --mode sim`: the server, a publisher and the members in one thread,
//! exchanging datagrams in memory on a virtual clock. Every datagram takes the same
//! one-way delay and is lost with the given probability (a seeded RNG). Loss, churn and
//! keys follow the seed; the members' own choices iterate randomly-seeded hash maps, so
//! two runs of one seed differ in detail (compare runs over several seeds).
//!
//! Event-driven: time jumps to the next datagram arrival, timer (each machine's
//! `poll_timeout`), media message or schedule step, and only the machines concerned run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::group::{GroupOptions, GroupRun, MemberRecord, Source, DRAIN, STREAM};
use crate::flash::client::{ClientEvent, FlashClient};
use crate::flash::command::code;
use crate::group::member::GroupEvent;
use crate::group::GroupSpec;
use crate::net::DatagramMachine;
use crate::proto::endpoint::EndpointConfig;
use crate::proto::Instant;
use crate::server::config::ServerConfig;
use crate::server::edge::EdgeServer;

const SERVER: u32 = 0;
const PUBLISHER: u32 = 1;
/// Member slot i is node i + FIRST_MEMBER, at 10.1.0.0 + i + 1.
const FIRST_MEMBER: u32 = 2;
const MEMBER_NET: u32 = 0x0a01_0000;
const SERVER_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1935);
const PUBLISHER_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 3, 1), 5000);
const TC_URL: &str = "rtmfp://10.0.0.1/live";

fn member_addr(slot: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(MEMBER_NET + slot as u32 + 1),
        4000,
    ))
}

fn node_of(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    if v4 == SERVER_ADDR {
        return Some(SERVER);
    }
    if v4 == PUBLISHER_ADDR {
        return Some(PUBLISHER);
    }
    let ip = u32::from(*v4.ip());
    (ip > MEMBER_NET && ip < MEMBER_NET + 0x1_0000).then(|| ip - MEMBER_NET - 1 + FIRST_MEMBER)
}

struct Datagram {
    at: u64,
    to: u32,
    from: SocketAddr,
    payload: Vec<u8>,
}

struct Sim {
    now: u64,
    delay: u64,
    loss: f64,
    rng: ChaCha8Rng,
    spec: GroupSpec,
    server: EdgeServer,
    publisher: FlashClient,
    members: Vec<Option<FlashClient>>,
    records: Vec<MemberRecord>,
    /// Datagrams in flight: one delay for all, so arrival order is send order.
    queue: VecDeque<Datagram>,
    /// (time, node): a machine's timer; stale entries are skipped (see `due`).
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// Per node, the time of its live timer entry (u64::MAX: none).
    due: Vec<u64>,
    touched: Vec<u32>,
    is_touched: Vec<bool>,
    /// The publisher's stream id, and `Some` start time once it publishes.
    stream_id: Option<u32>,
    source: Option<Source>,
    bitrate_kbps: u32,
}

impl Sim {
    fn machine(&mut self, node: u32) -> Option<&mut dyn DatagramMachine> {
        match node {
            SERVER => Some(&mut self.server),
            PUBLISHER => Some(&mut self.publisher),
            n => self.members[(n - FIRST_MEMBER) as usize]
                .as_mut()
                .map(|c| c as &mut dyn DatagramMachine),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    fn touch(&mut self, node: u32) {
        if !self.is_touched[node as usize] {
            self.is_touched[node as usize] = true;
            self.touched.push(node);
        }
    }

    fn server_published(&self) -> u64 {
        self.server
            .groups()
            .get(&self.spec.group_id())
            .and_then(|m| m.stream())
            .map_or(0, |s| s.counters().fragments_published)
    }

    /// Runs a touched node: its due timer, its events, its datagrams out, its next timer.
    fn service(&mut self, node: u32) {
        let now = self.now();
        let from = match node {
            SERVER => SocketAddr::V4(SERVER_ADDR),
            PUBLISHER => SocketAddr::V4(PUBLISHER_ADDR),
            n => member_addr((n - FIRST_MEMBER) as usize),
        };
        // A machine whose timer is still due after a turn gets two more turns now.
        for _ in 0..3 {
            let Some(m) = self.machine(node) else { return };
            if m.poll_timeout().is_some_and(|t| t <= now) {
                m.handle_timeout(now);
            }
            self.events(node);
            self.transmit(node, from);
            if !self
                .machine(node)
                .and_then(|m| m.poll_timeout())
                .is_some_and(|t| t <= now)
            {
                break;
            }
        }
        let next = self.machine(node).and_then(|m| m.poll_timeout());
        if let Some(t) = next {
            let mut t = t.as_micros();
            if t <= self.now {
                t = self.now + 1000;
            }
            if t < self.due[node as usize] {
                self.due[node as usize] = t;
                self.timers.push(Reverse((t, node)));
            }
        }
    }

    /// Sends what `node` has to send: counted, maybe lost, queued for the delay.
    fn transmit(&mut self, node: u32, from: SocketAddr) {
        let now = self.now();
        while let Some(t) = self.machine(node).and_then(|m| m.poll_transmit(now)) {
            let to = node_of(t.destination);
            let len = t.payload.len() as u64;
            if node >= FIRST_MEMBER && to != Some(SERVER) {
                self.records[(node - FIRST_MEMBER) as usize].wire_up += len;
            } else if node == SERVER {
                if let Some(to) = to.filter(|&n| n >= FIRST_MEMBER) {
                    self.records[(to - FIRST_MEMBER) as usize].wire_from_server += len;
                }
            }
            if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
                continue;
            }
            if let Some(to) = to {
                self.queue.push_back(Datagram {
                    at: self.now + self.delay,
                    to,
                    from,
                    payload: t.payload,
                });
            }
        }
    }

    fn events(&mut self, node: u32) {
        let now = self.now;
        match node {
            SERVER => while self.server.poll_event().is_some() {},
            PUBLISHER => {
                while let Some(e) = self.publisher.poll_event() {
                    match e {
                        ClientEvent::Connected => self.publisher.create_stream(),
                        ClientEvent::StreamCreated { stream_id } => {
                            self.stream_id = Some(stream_id);
                            self.publisher.publish(stream_id, STREAM);
                        }
                        ClientEvent::Status { code: c, .. }
                            if c == code::PUBLISH_START && self.source.is_none() =>
                        {
                            self.source = Some(Source::new(self.bitrate_kbps, now));
                        }
                        _ => {}
                    }
                }
            }
            n => {
                let slot = (n - FIRST_MEMBER) as usize;
                let Some(client) = self.members[slot].as_mut() else {
                    return;
                };
                while let Some(e) = client.poll_event() {
                    match e {
                        ClientEvent::Connected => {
                            client.join_group(&self.spec);
                            client.play_from_group(STREAM);
                        }
                        ClientEvent::Group(GroupEvent::Media(m)) => {
                            self.records[slot].on_media(&m, now)
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Sim {
    /// A new member at `slot`: connects now; joins and plays once connected.
    fn join(&mut self, slot: usize, seed: [u8; 32]) {
        let client = FlashClient::connect(
            self.now(),
            SocketAddr::V4(SERVER_ADDR),
            TC_URL,
            "live",
            vec![],
            GroupOptions::member_endpoint(),
            seed,
        );
        self.members[slot] = Some(client);
        self.records[slot].joined_us = self.now;
        self.records[slot].published_at_join = self.server_published();
        self.touch(slot as u32 + FIRST_MEMBER);
    }

    /// Notes what the member at `slot` did (when it leaves, or at the end).
    fn snapshot(&mut self, slot: usize) {
        let published = self.server_published();
        let Some(client) = &mut self.members[slot] else {
            return;
        };
        let r = &mut self.records[slot];
        r.peer_id = client.peer_id();
        if let Some(g) = client.group() {
            r.counters = g.stream().map(|s| s.counters()).unwrap_or_default();
            r.reassembly = g.stream().map(|s| s.reassembly()).unwrap_or_default();
            r.held = g.stream().map_or((0, 0), |s| s.held());
            r.neighbours = g.neighbours().collect();
            r.from_server = g.received_from_server();
        }
        r.published_at_end = published;
    }

    /// The member at `slot` closes its session with the server and is gone: its peers
    /// find out when their sessions with it time out.
    fn leave(&mut self, slot: usize) {
        self.snapshot(slot);
        self.records[slot].left_us = Some(self.now);
        let now = self.now();
        if let Some(c) = self.members[slot].as_mut() {
            c.close(now);
        }
        self.service(slot as u32 + FIRST_MEMBER);
        self.members[slot] = None;
    }
}

/// Runs the bench in memory; see the module docs.
pub fn run(opts: &GroupOptions) -> Result<GroupRun> {
    if opts.delay_ms == 0 {
        bail!("the simulated one-way delay must be at least 1 ms");
    }
    let spec = GroupOptions::spec();
    let mut config = ServerConfig::embedded_default();
    config.republish_everything_into(spec.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut seed = move || {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        s
    };
    let server = EdgeServer::new(Arc::new(config), EndpointConfig::server(), seed());
    let publisher = FlashClient::connect(
        Instant::ZERO,
        SocketAddr::V4(SERVER_ADDR),
        TC_URL,
        "live",
        vec![],
        EndpointConfig::default(),
        seed(),
    );
    let slots = opts.schedule();
    let nodes = slots.len() + FIRST_MEMBER as usize;
    let mut sim = Sim {
        now: 0,
        delay: opts.delay_ms * 1000,
        loss: opts.loss,
        rng: ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(1)),
        spec,
        server,
        publisher,
        members: (0..slots.len()).map(|_| None).collect(),
        records: vec![MemberRecord::default(); slots.len()],
        queue: VecDeque::new(),
        timers: BinaryHeap::new(),
        due: vec![u64::MAX; nodes],
        touched: Vec::new(),
        is_touched: vec![false; nodes],
        stream_id: None,
        source: None,
        bitrate_kbps: opts.bitrate_kbps,
    };
    let us = |d: Duration| d.as_micros() as u64;
    let mut joins: Vec<(u64, usize)> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| (us(s.join_at), i))
        .collect();
    joins.sort_unstable();
    let mut leaves: Vec<(u64, usize)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.leave_at.map(|t| (us(t), i)))
        .collect();
    leaves.sort_unstable();
    let (mut next_join, mut next_leave) = (0, 0);
    let stream_end = us(opts.stream_end());
    let mut next_progress = 5_000_000;
    let wall = std::time::Instant::now();
    sim.touch(PUBLISHER);
    loop {
        // Service what the last step touched, then find the next step's time.
        for node in std::mem::take(&mut sim.touched) {
            sim.is_touched[node as usize] = false;
            sim.service(node);
        }
        let t0 = sim.source.as_ref().map(Source::t0);
        let mut next = u64::MAX;
        if let Some(d) = sim.queue.front() {
            next = next.min(d.at);
        }
        if let Some(Reverse((t, _))) = sim.timers.peek() {
            next = next.min(*t);
        }
        match (t0, &sim.source) {
            (Some(t0), Some(src)) => {
                if src.next_due() < t0 + stream_end {
                    next = next.min(src.next_due());
                }
                if let Some((t, _)) = joins.get(next_join) {
                    next = next.min(t0 + t);
                }
                if let Some((t, _)) = leaves.get(next_leave) {
                    next = next.min(t0 + t);
                }
                if next > t0 + stream_end + us(DRAIN) {
                    break;
                }
            }
            _ if sim.now > 10_000_000 => bail!("the publisher did not start publishing"),
            _ => {}
        }
        if next == u64::MAX {
            bail!("the simulation ran out of events");
        }
        sim.now = next.max(sim.now);
        if sim.now >= next_progress {
            next_progress += 5_000_000;
            eprintln!(
                "bench group: sim t={:.0}s members={} wall={:.1}s",
                sim.now as f64 / 1e6,
                sim.members.iter().filter(|m| m.is_some()).count(),
                wall.elapsed().as_secs_f64()
            );
        }
        let now = sim.now;
        if let (Some(t0), Some(stream_id)) = (t0, sim.stream_id) {
            while joins.get(next_join).is_some_and(|(t, _)| t0 + t <= now) {
                sim.join(joins[next_join].1, seed());
                next_join += 1;
            }
            while leaves.get(next_leave).is_some_and(|(t, _)| t0 + t <= now) {
                sim.leave(leaves[next_leave].1);
                next_leave += 1;
            }
            let src = sim.source.as_mut().expect("started");
            if src.next_due() <= now && now < t0 + stream_end {
                let instant = Instant::from_micros(now);
                for m in src.due(now) {
                    sim.publisher.send_media(instant, stream_id, &m);
                }
                sim.touch(PUBLISHER);
            }
        }
        while sim.queue.front().is_some_and(|d| d.at <= now) {
            let d = sim.queue.pop_front().expect("a datagram");
            let instant = sim.now();
            if let Some(m) = sim.machine(d.to) {
                m.handle_datagram(instant, d.from, &d.payload);
                sim.touch(d.to);
            }
        }
        while let Some(&Reverse((t, node))) = sim.timers.peek() {
            if t > now {
                break;
            }
            sim.timers.pop();
            if sim.due[node as usize] == t {
                sim.due[node as usize] = u64::MAX;
                sim.touch(node);
            }
        }
    }
    for slot in 0..slots.len() {
        if sim.members[slot].is_some() {
            sim.snapshot(slot);
        }
    }
    let counters = sim
        .server
        .groups()
        .get(&sim.spec.group_id())
        .and_then(|m| m.stream())
        .map(|s| s.counters())
        .unwrap_or_default();
    let source = sim.source.take().expect("the stream started");
    Ok(GroupRun {
        members: opts.members,
        records: sim.records,
        stream: source.log,
        server_published: counters.fragments_published,
        server_sent: counters.fragments_sent,
        wall_seconds: 0.0,
    })
}
