//! One shard: a thread pinned to a core that owns a UDP socket (all shards share the
//! port), an RTMP listener, an [`EdgeServer`] with its sessions and timers, and rings to
//! and from every other shard. Nothing on its data path takes a lock.
//!
//! A datagram for a session another shard owns (the owner is the top byte of the session
//! id) is handed to that shard over its ring; with the reuseport steering program loaded
//! this only happens when the program could not steer. A publication on this shard
//! reaches the others as [`Relay`] messages carrying refcounted media buffers.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use mio::unix::SourceFd;
use mio::Interest;

use super::config_feed::ConfigSubscription;
use super::multicast_out::MulticastOut;
use super::ring::{Consumer, Producer};
use super::rtmp_sockets::{self, RtmpSockets};
use super::server_snapshot::ServerSnapshot;
use super::steering::owner_shard;
use super::uring_udp::UringUdp;
use super::waker::Waker;
use super::xdp::XdpPath;
use crate::multicast::sender::MAX_QUEUED;
use crate::proto::peek::ihello_target;
use crate::proto::{DropReason, Instant};
use crate::server::app::Relay;
use crate::server::edge::EdgeServer;

/// Longest sleep without a timer, so the step hook runs now and then.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// A draining shard stops after this long even if sessions are left (peers that do not
/// acknowledge the close).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The granularity of an epoll sleep.
const EPOLL_TICK: Duration = Duration::from_millis(1);
/// Datagrams read per readiness event in the plain loop before looking at other work.
const RECV_BATCH: usize = 256;

/// What one shard sends another.
#[derive(Debug)]
pub enum ShardMessage {
    /// A datagram for a session the receiving shard owns.
    Datagram { from: SocketAddr, data: Bytes },
    /// A publication on the sending shard.
    Relay(Relay),
}

/// Where a datagram this shard read should be handled.
enum Route {
    Here,
    Shard(u8),
    /// An IHello for a peer with no session here: the shard that has it will introduce.
    OtherShards,
}

/// A shard's counters, written by the shard alone, read by anyone.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Datagrams this shard read from its socket.
    pub received: AtomicU64,
    /// Of those, handed to their owner shard.
    pub handed_off: AtomicU64,
    /// Datagrams other shards handed to this one.
    pub taken_over: AtomicU64,
    /// Datagrams given to this shard's endpoint (own reads plus taken over).
    pub handled: AtomicU64,
    pub sent: AtomicU64,
    /// Relay messages sent to other shards.
    pub relayed_out: AtomicU64,
    pub relayed_in: AtomicU64,
    /// Datagrams the endpoint dropped, all reasons.
    pub dropped: AtomicU64,
    /// Of those, for a session this shard does not have: with working steering or
    /// hand-off, only datagrams for sessions that really ended.
    pub unknown_session: AtomicU64,
    /// Media frames players did not get because they lagged (they resume at a keyframe).
    pub frames_skipped_for_lag: AtomicU64,
    /// Fragments the server's own group members sent to group members (its P2P upload).
    pub group_fragments_sent: AtomicU64,
    /// Bytes of the datagrams this shard read from its socket.
    pub bytes_received: AtomicU64,
    /// The server's own numbers (sessions, drops by reason, streams...), for metrics.
    pub server: ServerSnapshot,
    /// The AF_XDP path's counters, when the shard runs one.
    pub xdp: XdpStats,
}

/// A shard's AF_XDP counters (see [`super::xdp::XdpCounters`]).
#[derive(Debug, Default)]
pub struct XdpStats {
    pub frames_received: AtomicU64,
    pub frames_not_ours: AtomicU64,
    pub sent: AtomicU64,
    pub sent_by_kernel: AtomicU64,
    pub send_failed: AtomicU64,
}

impl XdpStats {
    fn publish(&self, paths: &[XdpPath]) {
        let c = super::xdp::XdpCounters::sum(paths);
        self.frames_received
            .store(c.frames_received, Ordering::Relaxed);
        self.frames_not_ours
            .store(c.frames_not_ours, Ordering::Relaxed);
        self.sent.store(c.sent, Ordering::Relaxed);
        self.sent_by_kernel
            .store(c.sent_by_kernel, Ordering::Relaxed);
        self.send_failed.store(c.send_failed, Ordering::Relaxed);
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    // One writer: a plain load and store, no locked instruction on the data path.
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl ShardStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Which I/O the shard's UDP socket runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Uring,
    Poll,
    /// AF_XDP on the shard's queue of one interface (for the shards that have one; the
    /// others run io_uring), io_uring's kernel socket beside it for other interfaces.
    Xdp,
}

/// Called after every loop turn with the shard's server and the time; returns false to
/// stop the shard.
pub type StepHook = Box<dyn FnMut(&mut EdgeServer, Instant) -> bool + Send>;

/// A shard's ends of the rings to the other shards, and what pushing into them needs.
pub struct Links {
    /// This shard.
    pub index: u8,
    /// Rings to the other shards, by index (None for this one).
    pub outbound: Vec<Option<Producer<ShardMessage>>>,
    /// Messages waiting for room in a full ring, by destination.
    pub backlog: Vec<VecDeque<ShardMessage>>,
    /// Every shard's waker, by index.
    pub wakers: Vec<Arc<Waker>>,
    pub stats: Arc<ShardStats>,
}

impl Links {
    fn shards(&self) -> usize {
        self.wakers.len()
    }

    fn own_waker(&self) -> &Waker {
        &self.wakers[usize::from(self.index)]
    }

    /// Pushes `message` into `shard`'s ring (or its backlog while the ring is full, so
    /// order holds) and wakes the shard if it sleeps.
    fn send(&mut self, shard: u8, message: ShardMessage) {
        let shard = usize::from(shard);
        let Some(producer) = self.outbound.get_mut(shard).and_then(Option::as_mut) else {
            return;
        };
        if !self.backlog[shard].is_empty() {
            self.backlog[shard].push_back(message);
            return;
        }
        match producer.push(message) {
            Ok(()) => self.wakers[shard].wake(),
            Err(message) => self.backlog[shard].push_back(message),
        }
    }

    /// Sends `message()` to every other shard; returns how many.
    fn broadcast(&mut self, message: impl Fn() -> ShardMessage) -> u64 {
        let mut n = 0;
        for shard in 0..self.shards() as u8 {
            if shard != self.index {
                self.send(shard, message());
                n += 1;
            }
        }
        n
    }

    fn retry_backlog(&mut self) {
        for shard in 0..self.backlog.len() {
            while let Some(message) = self.backlog[shard].pop_front() {
                let Some(producer) = self.outbound[shard].as_mut() else {
                    break;
                };
                match producer.push(message) {
                    Ok(()) => self.wakers[shard].wake(),
                    Err(message) => {
                        self.backlog[shard].push_front(message);
                        break;
                    }
                }
            }
        }
    }

    fn backlogged(&self) -> bool {
        self.backlog.iter().any(|b| !b.is_empty())
    }

    /// Where a datagram this shard read should be handled.
    fn route(&self, server: &EdgeServer, datagram: &[u8]) -> Route {
        match owner_shard(datagram) {
            Some(owner) if owner != self.index && usize::from(owner) < self.shards() => {
                Route::Shard(owner)
            }
            None if self.shards() > 1 => match ihello_target(datagram) {
                Some(peer) if !server.endpoint.has_peer(&peer) => Route::OtherShards,
                _ => Route::Here,
            },
            _ => Route::Here,
        }
    }

    /// Handles a datagram this shard read, or hands it to the shard(s) it belongs to.
    fn dispatch(&mut self, server: &mut EdgeServer, now: Instant, from: SocketAddr, data: &[u8]) {
        bump(&self.stats.received, 1);
        bump(&self.stats.bytes_received, data.len() as u64);
        match self.route(server, data) {
            Route::Here => {
                bump(&self.stats.handled, 1);
                server.handle_datagram(now, from, data);
            }
            Route::Shard(owner) => {
                bump(&self.stats.handed_off, 1);
                let data = Bytes::copy_from_slice(data);
                self.send(owner, ShardMessage::Datagram { from, data });
            }
            Route::OtherShards => {
                bump(&self.stats.handed_off, 1);
                let data = Bytes::copy_from_slice(data);
                self.broadcast(|| ShardMessage::Datagram {
                    from,
                    data: data.clone(),
                });
            }
        }
    }
}

/// The shard's clock: microseconds since the engine started (shared by all shards).
fn clock(epoch: StdInstant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as u64)
}

pub struct Shard {
    pub server: EdgeServer,
    pub udp: UdpSocket,
    pub rtmp: RtmpSockets,
    /// Rings from the other shards: (their index, consumer).
    pub inbound: Vec<(u8, Consumer<ShardMessage>)>,
    pub links: Links,
    pub stop: Arc<AtomicBool>,
    /// Set to shut down cleanly (SIGTERM): the shard drains its sessions, then stops.
    pub drain: Arc<AtomicBool>,
    /// When the drain began on this shard, and by when it ends whatever is left.
    pub drain_deadline: Option<Instant>,
    /// Configs reloaded since the shard started (SIGHUP), taken at the next turn.
    pub config: ConfigSubscription,
    pub epoch: StdInstant,
    /// The AF_XDP sockets of this shard's queues, under [`Io::Xdp`] (the first sends).
    pub xdp: Vec<XdpPath>,
}

impl Shard {
    fn now(&self) -> Instant {
        clock(self.epoch)
    }

    /// Runs until the stop flag is set or the hook says stop.
    pub fn run(mut self, io: Io, mut step: StepHook) -> std::io::Result<()> {
        if io == Io::Xdp && !self.xdp.is_empty() {
            let paths = std::mem::take(&mut self.xdp);
            return self.run_epoll(paths, &mut step);
        }
        match io {
            Io::Uring | Io::Xdp => {
                let mut uring = UringUdp::new(
                    self.udp.as_raw_fd(),
                    self.links.own_waker().fd(),
                    Some(self.rtmp.poll_fd()),
                )?;
                self.run_uring(&mut uring, &mut step)
            }
            Io::Poll => self.run_epoll(Vec::new(), &mut step),
        }
    }

    fn run_uring(&mut self, uring: &mut UringUdp, step: &mut StepHook) -> std::io::Result<()> {
        let epoch = self.epoch;
        let mut multicast = MulticastOut::default();
        // The TCP side has something to read (the watch fired, or the last read stopped
        // at its budget).
        let mut rtmp_ready = false;
        loop {
            let now = self.now();
            if !self.turn(now, step) {
                return Ok(());
            }
            self.flush_uring(uring, &mut multicast, now);
            self.links.own_waker().prepare_sleep();
            let take_input = !self.multicast_backlogged(multicast.held());
            let timeout = if rtmp_ready && take_input {
                Duration::ZERO
            } else {
                self.sleep_for(now)
            };
            let (server, links) = (&mut self.server, &mut self.links);
            // The datagrams of one wakeup arrived together: one clock read for all.
            let mut arrived = None;
            let readiness = uring.wait(Some(timeout), |from, data| {
                let now = *arrived.get_or_insert_with(|| clock(epoch));
                links.dispatch(server, now, from, data);
            })?;
            self.links.own_waker().awake();
            rtmp_ready |= readiness.watched;
            if rtmp_ready && take_input {
                self.rtmp.poll(
                    Some(Duration::ZERO),
                    &mut self.server,
                    || clock(epoch),
                    true,
                    |_, _| {},
                )?;
                rtmp_ready = self.rtmp.has_unread();
            }
        }
    }

    /// IP multicast datagrams are waiting: for send slots (`held`), or in the multicast
    /// sender's pacing queue beyond half its room. Then the shard reads no more RTMP: an
    /// RTMP publisher's input turns into multicast datagrams as it is read, and TCP
    /// holds the publisher back meanwhile, where reading on would pile datagrams up here
    /// or make the sender drop them.
    fn multicast_backlogged(&self, held: usize) -> bool {
        held > 0 || self.server.groups().multicast_queued() > MAX_QUEUED / 2
    }

    /// The loops that wait in epoll (mio): the plain socket loop (`paths` empty) and the
    /// AF_XDP loop. Under AF_XDP, datagrams for the server's port on the interface arrive
    /// in the sockets' RX rings and are read every turn, those on other interfaces on the
    /// kernel socket; output is sealed into UMEM frames and sent through the first
    /// socket's TX ring. Without, the kernel socket carries everything.
    fn run_epoll(&mut self, mut paths: Vec<XdpPath>, step: &mut StepHook) -> std::io::Result<()> {
        self.udp.set_nonblocking(true)?;
        let udp_fd = self.udp.as_raw_fd();
        let wake_fd = self.links.own_waker().fd();
        let registry = self.rtmp.registry();
        registry.register(
            &mut SourceFd(&udp_fd),
            rtmp_sockets::UDP,
            Interest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&wake_fd),
            rtmp_sockets::WAKE,
            Interest::READABLE,
        )?;
        for path in &paths {
            let xsk_fd = path.socket().as_raw_fd();
            registry.register(
                &mut SourceFd(&xsk_fd),
                rtmp_sockets::XSK,
                Interest::READABLE,
            )?;
        }
        let mut buf = vec![0u8; 65536];
        let epoch = self.epoch;
        loop {
            let now = self.now();
            let running = self.turn(now, step);
            if running {
                match paths.first_mut() {
                    Some(sender) => self.flush_xdp(sender, now),
                    None => self.flush_poll(now),
                }
            }
            if !paths.is_empty() {
                self.links.stats.xdp.publish(&paths);
            }
            if !running {
                return Ok(());
            }
            self.links.own_waker().prepare_sleep();
            let timeout = self.epoll_sleep_for(now);
            let take_input = !self.multicast_backlogged(0);
            let mut udp_ready = false;
            self.rtmp.poll(
                Some(timeout),
                &mut self.server,
                || clock(epoch),
                take_input,
                |token, _| udp_ready |= token == rtmp_sockets::UDP,
            )?;
            let waker = self.links.own_waker();
            waker.awake();
            waker.drain();
            // One atomic load per socket when its ring is empty: cheaper than trusting
            // readiness.
            for path in &mut paths {
                let (server, links) = (&mut self.server, &mut self.links);
                let mut arrived = None;
                path.receive(|from, data| {
                    let now = *arrived.get_or_insert_with(|| clock(epoch));
                    links.dispatch(server, now, from, data);
                });
            }
            if udp_ready {
                self.receive_plain(&mut buf)?;
            }
        }
    }

    /// Output on AF_XDP: IP multicast datagrams copied into UMEM frames (to the group's
    /// Ethernet address; the kernel's loop-back to local receivers does not apply), then
    /// the sessions' datagrams sealed straight into UMEM frames. Multicast that finds no
    /// free frame waits in the server's queue, which holds RTMP input back meanwhile.
    fn flush_xdp(&mut self, xdp: &mut XdpPath, now: Instant) {
        let mut sent = 0;
        loop {
            let server = &mut self.server;
            let n = xdp.fill(&self.udp, |batch| {
                let mut n = 0;
                while !batch.is_full() {
                    let Some(t) = server.poll_multicast() else {
                        break;
                    };
                    // Never false with room: the server's datagrams fit a slot.
                    n += usize::from(batch.push(t.destination, &t.payload));
                }
                n
            });
            if n == 0 {
                break;
            }
            sent += n as u64;
        }
        loop {
            let server = &mut self.server;
            let n = xdp.fill(&self.udp, |batch| server.poll_transmit_batch(now, batch));
            if n == 0 {
                break;
            }
            sent += n as u64;
        }
        xdp.kick();
        bump(&self.links.stats.sent, sent);
    }

    /// Reads the plain socket until it would block (edge-triggered readiness).
    fn receive_plain(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        loop {
            for _ in 0..RECV_BATCH {
                match self.udp.recv_from(buf) {
                    Ok((n, from)) => {
                        let now = self.now();
                        self.links.dispatch(&mut self.server, now, from, &buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    // ICMP port unreachable from some earlier send: not our socket's fault.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // A long burst: let timers and output run, then keep reading.
            let now = self.now();
            self.flush_poll(now);
        }
    }

    /// The work of one loop turn besides I/O: messages from other shards, timers, the
    /// hook, relays out, RTMP output. False when the shard should stop.
    fn turn(&mut self, now: Instant, step: &mut StepHook) -> bool {
        self.drain_inbound(now);
        if let Some(config) = self.config.take_newer() {
            self.server.reload_config(now, config);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        let drops = self.server.endpoint.drops();
        let stats = &self.links.stats;
        let unknown = drops.get(&DropReason::UnknownSession).copied().unwrap_or(0);
        stats.unknown_session.store(unknown, Ordering::Relaxed);
        stats
            .frames_skipped_for_lag
            .store(self.server.frames_skipped_for_lag(), Ordering::Relaxed);
        stats.group_fragments_sent.store(
            self.server.groups().counters().fragments_sent,
            Ordering::Relaxed,
        );
        stats.dropped.store(drops.values().sum(), Ordering::Relaxed);
        stats.server.take(&self.server, now);
        if self.stop.load(Ordering::Relaxed) || !step(&mut self.server, now) {
            return false;
        }
        if self.drain.load(Ordering::Relaxed) {
            match self.drain_deadline {
                None => {
                    self.server.begin_drain(now);
                    self.drain_deadline = Some(now + DRAIN_TIMEOUT);
                }
                Some(deadline) if self.server.drained() || now >= deadline => return false,
                Some(_) => {}
            }
        }
        self.relay_out();
        self.links.retry_backlog();
        self.rtmp.flush(&mut self.server);
        true
    }

    /// How long to wait for I/O: until the next timer (at most `MAX_SLEEP`), or not at
    /// all while other shards' messages wait. Call after `prepare_sleep`, so a message
    /// pushed meanwhile either shows here or wakes the wait.
    fn sleep_for(&self, now: Instant) -> Duration {
        let pending = self.inbound.iter().any(|(_, c)| !c.is_empty()) || self.links.backlogged();
        if pending {
            return Duration::ZERO;
        }
        self.server
            .poll_timeout()
            .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    /// [`Self::sleep_for`] for a loop that sleeps in epoll, which counts whole
    /// milliseconds (mio rounds up): a timer due sooner is polled for (as AF_XDP engines
    /// do) rather than fired up to a millisecond late.
    fn epoll_sleep_for(&self, now: Instant) -> Duration {
        match self.sleep_for(now) {
            t if t < EPOLL_TICK => Duration::ZERO,
            t => t,
        }
    }

    fn drain_inbound(&mut self, now: Instant) {
        for (from_shard, ring) in &mut self.inbound {
            while let Some(message) = ring.pop() {
                match message {
                    ShardMessage::Datagram { from, data } => {
                        bump(&self.links.stats.taken_over, 1);
                        bump(&self.links.stats.handled, 1);
                        self.server.handle_datagram(now, from, &data);
                    }
                    ShardMessage::Relay(relay) => {
                        bump(&self.links.stats.relayed_in, 1);
                        self.server.relayed(now, *from_shard, relay);
                    }
                }
            }
        }
    }

    /// Sends this shard's publication messages to every other shard: a clone of a
    /// [`Relay`] is a refcount bump on its media buffer.
    fn relay_out(&mut self) {
        while let Some(relay) = self.server.poll_relay() {
            let n = self.links.broadcast(|| ShardMessage::Relay(relay.clone()));
            bump(&self.links.stats.relayed_out, n);
        }
    }

    /// Output on io_uring: IP multicast datagrams (one per fragment, whatever the number
    /// of receivers) are copied into the send batch first; then the endpoint seals the
    /// sessions' datagrams straight into the batch's slots (several sessions encrypted in
    /// lock-step). All of it goes to the kernel in one submit.
    fn flush_uring(&mut self, uring: &mut UringUdp, multicast: &mut MulticastOut, now: Instant) {
        let server = &mut self.server;
        let mut sent = multicast.queue(uring, || server.poll_multicast());
        loop {
            let server = &mut self.server;
            let n = uring.fill(|batch| server.poll_transmit_batch(now, batch));
            if n == 0 {
                break;
            }
            sent += n as u64;
        }
        bump(&self.links.stats.sent, sent);
    }

    fn flush_poll(&mut self, now: Instant) {
        let mut sent = 0;
        while let Some(t) = self.server.poll_transmit(now) {
            match self.udp.send_to(&t.payload, t.destination) {
                Ok(_) => sent += 1,
                // A full socket buffer drops the datagram: RTMFP retransmits.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => eprintln!("send to {} failed: {e}", t.destination),
            }
        }
        bump(&self.links.stats.sent, sent);
    }
}
