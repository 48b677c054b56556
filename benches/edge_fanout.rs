//! The server's per-message fan-out, sans-IO: one `EdgeServer` with one publisher and N
//! players of its stream (N = 1,000 and 10,000), all `FlashClient`s exchanging datagrams
//! in memory on a virtual clock, as tests/lagging_player.rs does. What is timed is one
//! fan-out: the publisher's datagram carrying one ~700-byte video frame goes into
//! `handle_datagram`, and `poll_transmit` is called until the server has nothing more to
//! send (one datagram per player). Everything else is outside the clock: the publisher
//! building its datagram, the server's timers (`handle_timeout`), the players reading
//! what was sent and acknowledging it, and freeing the datagrams.
//!
//! Criterion's time is per fan-out (one message to N players); the throughput is in
//! players/s, so 1 / throughput is the cost of one player's copy of a message (look up
//! the session and flow, the lag check, queue, build and encrypt a packet, allocate its
//! datagram). Compare the same N before and after a change, from runs on the same
//! machine; compare 1,000 with 10,000 for what the larger working set (it leaves the
//! caches) costs per player.
//!
//! Setup, once per N and not timed: the handshakes, `connect`, `createStream` and `play`
//! for every player until each has `NetStream.Play.Start`, then a warm-up of frames
//! acknowledged one by one (it opens the congestion windows). It took 1.5 s for 1,000
//! players and 16 s for 10,000 on a 2-core machine (mostly Diffie-Hellman); the time is
//! printed. The whole run takes about a minute.
//! Sessions use the Flash-era handshake and group 2, as Flash Player and
//! `rtmfp-edge bench fanout` do: no per-packet HMAC.
//!
//! A frame every 40 ms of the virtual clock, a keyframe every 25. The players read their
//! datagrams and acknowledge every `ACK_EVERY` = 5 frames, not after each: that costs
//! about as much as the fan-out. The oldest unacknowledged frame is then 160 ms old,
//! under the server's minimum retransmission timeout (250 ms), so nothing is resent and
//! the congestion windows stay open, and far under the lag limit (1 s), so no player is
//! made to skip to a keyframe. (Every 8 frames, 280 ms, the timeout fires first and the
//! check below trips.) The bench checks that it measures full fan-outs: a fan-out that
//! sends fewer datagrams to players than there are players, or a player missing a frame
//! when it acknowledges, panics.
//!
//! Run: `cargo bench --bench edge_fanout`; one size only: `-- 'players_1000$'` or
//! `-- players_10000` (a size's setup runs only if it is selected).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
use rtmfp_edge::flash::command::code;
use rtmfp_edge::media::{MediaKind, MediaMessage};
use rtmfp_edge::proto::dh::DhGroup;
use rtmfp_edge::proto::endpoint::{EndpointConfig, Transmit};
use rtmfp_edge::proto::keying::HandshakeLayout;
use rtmfp_edge::proto::Instant;
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::EdgeServer;

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1935);
const PUBLISHER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000);
const TC_URL: &str = "rtmfp://10.0.0.1/live";
const APP: &str = "live";
const STREAM: &str = "cam";

const FRAME_INTERVAL: Duration = Duration::from_millis(40);
const FRAMES_PER_GOP: u32 = 25;
const FRAME_BYTES: usize = 700;
/// Players read their datagrams and acknowledge every this many frames (see the top).
const ACK_EVERY: u32 = 5;
/// Frames acknowledged one by one at the end of setup: slow start opens each session's
/// congestion window well past `ACK_EVERY` frames.
const WARM_UP_FRAMES: u32 = 50;
/// Players that start their handshakes together during setup (5,000/s of virtual time,
/// under the server's default cap of 10,000 RHellos a second).
const COHORT: usize = 200;
/// Virtual time per exchange round during setup.
const SETUP_STEP: Duration = Duration::from_millis(40);

/// Player `i`'s address: 10.1.x.y:5000, 250 players per /24.
fn player_addr(i: usize) -> SocketAddr {
    let x = u8::try_from(i / 250).expect("at most 64,000 players");
    let y = (i % 250 + 1) as u8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, x, y)), 5000)
}

/// The inverse of [`player_addr`].
fn player_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) if a.port() == 5000 => match a.ip().octets() {
            [10, 1, x, y] if (1..=250).contains(&y) => {
                Some(usize::from(x) * 250 + usize::from(y) - 1)
            }
            _ => None,
        },
        _ => None,
    }
}

fn client(now: Instant, seed: u64) -> FlashClient {
    // Group 2 only: a client generates a static key pair for every group it offers,
    // and setup runs thousands of them.
    let config = EndpointConfig {
        initiator_layouts: vec![HandshakeLayout::FlashEra],
        groups: vec![DhGroup::Modp1024],
        ..EndpointConfig::default()
    };
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8] = 0xed;
    FlashClient::connect(now, SERVER, TC_URL, APP, vec![], config, s)
}

/// An AVC frame carrying its index in bytes 5..9: a keyframe every `FRAMES_PER_GOP`.
fn video_frame(index: u32) -> MediaMessage {
    let keyframe = index % FRAMES_PER_GOP == 0;
    let mut payload = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.extend_from_slice(&index.to_be_bytes());
    payload.resize(FRAME_BYTES, 0xab);
    MediaMessage::new(MediaKind::Video, index * 40, payload)
}

fn avc_sequence_header() -> MediaMessage {
    MediaMessage::new(
        MediaKind::Video,
        0,
        vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff],
    )
}

struct Player {
    client: FlashClient,
    playing: bool,
    /// The index of the next video frame it must receive.
    next_frame: u32,
}

struct Publisher {
    client: FlashClient,
    stream: Option<u32>,
    publishing: bool,
}

/// Counts of what the timed fan-outs sent.
#[derive(Debug, Default)]
struct Tally {
    fan_outs: u64,
    min_to_players: usize,
    max_to_players: usize,
}

struct World {
    now: Instant,
    server: EdgeServer,
    publisher: Publisher,
    players: Vec<Player>,
    /// Frames the publisher has sent (the next one's index).
    frames: u32,
    /// Frames sent since the players last acknowledged.
    since_ack: u32,
    /// What one timed fan-out sent (reused, so pushing into it does not allocate).
    sent: Vec<Transmit>,
    /// Datagrams for players, waiting for the next acknowledgement round.
    to_players: Vec<Transmit>,
    /// The publisher's datagrams for the next fan-out.
    from_publisher: Vec<Vec<u8>>,
    tally: Tally,
}

impl World {
    fn new(n: usize) -> World {
        let now = Instant::ZERO;
        let server = EdgeServer::new(
            Arc::new(ServerConfig::embedded_default()),
            EndpointConfig::server(),
            [1; 32],
        );
        World {
            now,
            server,
            publisher: Publisher {
                client: client(now, u64::MAX),
                stream: None,
                publishing: false,
            },
            players: Vec::with_capacity(n),
            frames: 0,
            since_ack: 0,
            sent: Vec::with_capacity(n + 64),
            to_players: Vec::with_capacity((n + 64) * ACK_EVERY as usize),
            from_publisher: Vec::new(),
            tally: Tally {
                min_to_players: usize::MAX,
                ..Tally::default()
            },
        }
    }

    /// Connects the publisher and `n` players, has every player playing, and warms the
    /// sessions up.
    fn set_up(n: usize) -> World {
        let mut w = World::new(n);
        let mut rounds = 0;
        while !w.publisher.publishing {
            w.setup_round();
            rounds += 1;
            assert!(rounds < 200, "the publisher did not get Publish.Start");
        }
        let mut playing = 0;
        while playing < n {
            let started = w.players.len();
            for i in started..(started + COHORT).min(n) {
                w.players.push(Player {
                    client: client(w.now, i as u64),
                    playing: false,
                    next_frame: 0,
                });
            }
            w.setup_round();
            rounds += 1;
            playing = w.players.iter().filter(|p| p.playing).count();
            assert!(
                rounds < 200 + 4 * n / COHORT,
                "after {rounds} rounds only {playing} of {n} players got Play.Start"
            );
        }

        let header = avc_sequence_header();
        let stream = w.publisher.stream.expect("publishing");
        assert!(w.publisher.client.send_media(w.now, stream, &header));
        w.setup_round();
        for _ in 0..WARM_UP_FRAMES {
            w.fan_out();
            w.acknowledge();
        }
        // Then the cadence of the measurement, checked the same way.
        for _ in 0..4 * ACK_EVERY {
            w.fan_out();
        }
        w.acknowledge();
        w.check();
        w
    }

    /// During setup: the clients' datagrams go to the server and the server's to the
    /// clients, timers run, the clients act on their events; then the clock moves on.
    fn setup_round(&mut self) {
        let now = self.now;
        Self::client_turn(&mut self.server, now, PUBLISHER, &mut self.publisher.client);
        for (i, p) in self.players.iter_mut().enumerate() {
            Self::client_turn(&mut self.server, now, player_addr(i), &mut p.client);
        }
        self.server_timers();
        while let Some(t) = self.server.poll_transmit(now) {
            self.deliver(t);
        }
        self.publisher_events();
        for (i, p) in self.players.iter_mut().enumerate() {
            Self::player_events(i, p);
        }
        self.now = now + SETUP_STEP;
    }

    /// A client's timers, then whatever it has to send goes to the server.
    fn client_turn(server: &mut EdgeServer, now: Instant, addr: SocketAddr, c: &mut FlashClient) {
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        while let Some(t) = c.poll_transmit(now) {
            server.handle_datagram(now, addr, &t.payload);
        }
    }

    /// A server datagram to its client (it acts on it at its next turn).
    fn deliver(&mut self, t: Transmit) {
        let c = if t.destination == PUBLISHER {
            &mut self.publisher.client
        } else {
            let i = player_index(t.destination)
                .unwrap_or_else(|| panic!("the server sent to {}, nobody", t.destination));
            &mut self.players[i].client
        };
        c.handle_datagram(self.now, SERVER, &t.payload);
    }

    fn server_timers(&mut self) {
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        while self.server.poll_event().is_some() {}
    }

    fn publisher_events(&mut self) {
        let p = &mut self.publisher;
        while let Some(event) = p.client.poll_event() {
            match event {
                ClientEvent::Connected => p.client.create_stream(),
                ClientEvent::StreamCreated { stream_id } => {
                    p.stream = Some(stream_id);
                    p.client.publish(stream_id, STREAM);
                }
                ClientEvent::Status { code: c, .. } if c == code::PUBLISH_START => {
                    p.publishing = true
                }
                ClientEvent::Failed { code, description } => {
                    panic!("publisher: {code}: {description}")
                }
                ClientEvent::Closed(why) => panic!("publisher: session closed ({why:?})"),
                _ => {}
            }
        }
    }

    fn player_events(i: usize, p: &mut Player) {
        while let Some(event) = p.client.poll_event() {
            match event {
                ClientEvent::Connected => p.client.create_stream(),
                ClientEvent::StreamCreated { stream_id } => p.client.play(stream_id, STREAM),
                ClientEvent::Status { code: c, .. } if c == code::PLAY_START => p.playing = true,
                ClientEvent::Media { message, .. }
                    if message.kind == MediaKind::Video && !message.is_sequence_header() =>
                {
                    let index = u32::from_be_bytes(message.payload[5..9].try_into().unwrap());
                    assert_eq!(
                        index,
                        p.next_frame,
                        "player {i} got frame {index} after frame {}: the server skipped it \
                         (lag policy?) and the bench would not measure full fan-outs",
                        p.next_frame.wrapping_sub(1)
                    );
                    p.next_frame += 1;
                }
                ClientEvent::Failed { code, description } => {
                    panic!("player {i}: {code}: {description}")
                }
                ClientEvent::Closed(why) => panic!("player {i}: session closed ({why:?})"),
                _ => {}
            }
        }
    }

    /// One frame: the clock moves on and timers run (not timed), the publisher sends
    /// the frame (not timed), the server takes it and sends every copy (timed). Every
    /// `ACK_EVERY` frames the players read and acknowledge (not timed).
    fn fan_out(&mut self) -> Duration {
        self.now = self.now + FRAME_INTERVAL;
        let now = self.now;
        self.server_timers();
        // The publisher's timers and pending datagrams (acks) first, and whatever the
        // server answers, so that the timed part is the frame alone.
        Self::client_turn(&mut self.server, now, PUBLISHER, &mut self.publisher.client);
        self.route_server_output();
        self.publisher_events();

        let stream = self.publisher.stream.expect("publishing");
        let frame = video_frame(self.frames);
        assert!(self.publisher.client.send_media(now, stream, &frame));
        while let Some(t) = self.publisher.client.poll_transmit(now) {
            self.from_publisher.push(t.payload);
        }
        assert!(
            !self.from_publisher.is_empty(),
            "the publisher sent nothing"
        );

        let start = std::time::Instant::now();
        for d in &self.from_publisher {
            self.server.handle_datagram(now, PUBLISHER, d);
        }
        while let Some(t) = self.server.poll_transmit(now) {
            self.sent.push(t);
        }
        let elapsed = start.elapsed();

        self.from_publisher.clear();
        let mut to_players = 0;
        for t in self.sent.drain(..) {
            if t.destination == PUBLISHER {
                self.publisher
                    .client
                    .handle_datagram(now, SERVER, &t.payload);
            } else {
                to_players += 1;
                self.to_players.push(t);
            }
        }
        let n = self.players.len();
        assert!(
            to_players >= n,
            "the fan-out of frame {} sent {to_players} datagrams to players, fewer than the \
             {n} players: the server held some back (congestion window? lag policy?) and \
             the bench would not measure full fan-outs",
            self.frames
        );
        self.tally.fan_outs += 1;
        self.tally.min_to_players = self.tally.min_to_players.min(to_players);
        self.tally.max_to_players = self.tally.max_to_players.max(to_players);
        self.frames += 1;
        self.since_ack += 1;
        if self.since_ack >= ACK_EVERY {
            self.acknowledge();
        }
        elapsed
    }

    /// The server's datagrams since the last fan-out: to the publisher now, to players
    /// at their next acknowledgement round.
    fn route_server_output(&mut self) {
        while let Some(t) = self.server.poll_transmit(self.now) {
            if t.destination == PUBLISHER {
                self.publisher
                    .client
                    .handle_datagram(self.now, SERVER, &t.payload);
            } else {
                self.to_players.push(t);
            }
        }
    }

    /// The players read what the server sent them and acknowledge it; each must have
    /// every frame sent so far.
    fn acknowledge(&mut self) {
        let now = self.now;
        let mut pending = std::mem::take(&mut self.to_players);
        for t in pending.drain(..) {
            self.deliver(t);
        }
        self.to_players = pending;
        for (i, p) in self.players.iter_mut().enumerate() {
            Self::player_events(i, p);
            Self::client_turn(&mut self.server, now, player_addr(i), &mut p.client);
            assert_eq!(
                p.next_frame, self.frames,
                "player {i} has {} of the {} frames sent: the server did not send it every \
                 message, and the bench would not measure full fan-outs",
                p.next_frame, self.frames
            );
        }
        self.route_server_output();
        self.since_ack = 0;
    }

    /// Every fan-out so far reached every player.
    fn check(&self) {
        let n = self.players.len();
        assert!(
            self.tally.fan_outs > 0 && self.tally.min_to_players >= n,
            "a fan-out sent fewer datagrams to players than the {n} players: {:?}",
            self.tally
        );
        assert!(self.players.iter().all(|p| p.playing));
    }
}

fn bench_edge_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge_fanout");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    for n in [1_000, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        // Set up on first use: a filter that leaves this size out skips its setup.
        let mut world: Option<World> = None;
        group.bench_function(format!("players_{n}"), |b| {
            let w = world.get_or_insert_with(|| {
                let start = std::time::Instant::now();
                let w = World::set_up(n);
                eprintln!(
                    "\nedge_fanout: {n} players set up in {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                w
            });
            b.iter_custom(|iters| (0..iters).map(|_| w.fan_out()).sum());
        });
        if let Some(mut w) = world {
            w.acknowledge();
            w.check();
            eprintln!(
                "edge_fanout: {n} players: {} fan-outs, {}..={} datagrams to players each",
                w.tally.fan_outs, w.tally.min_to_players, w.tally.max_to_players
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_edge_fanout);
criterion_main!(benches);
