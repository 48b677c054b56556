//! The engine with several shards: every session's datagrams are handled by the shard
//! that owns it, on io_uring and on the plain loop, without the steering program (the
//! shards hand foreign datagrams to each other).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use rtmfp_edge::engine::shard::{ShardStats, StepHook};
use rtmfp_edge::engine::{Engine, EngineOptions, IoChoice};
use rtmfp_edge::proto::endpoint::{EndpointConfig, Event};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
use rtmfp_edge::proto::keying::HandshakeLayout;
use rtmfp_edge::proto::session::SessionState;
use rtmfp_edge::proto::{Endpoint, Instant};
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::ServerEvent;

const SESSIONS: usize = 1000;
const CLIENT_SOCKETS: usize = 25;

/// A client endpoint with many sessions to the server, on one socket at a time.
struct Client {
    endpoint: Endpoint,
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl Client {
    fn new(seed: u8) -> Client {
        let config = EndpointConfig {
            // The Flash-era layout: 1024-bit Diffie-Hellman, so 1,000 handshakes are quick.
            initiator_layouts: vec![HandshakeLayout::FlashEra],
            ..EndpointConfig::default()
        };
        Client {
            endpoint: Endpoint::new(config, [seed; 32]),
            socket: Self::socket(),
            buf: vec![0; 65536],
        }
    }

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    fn pump(&mut self, now: Instant) -> Vec<Event> {
        while let Ok((n, from)) = self.socket.recv_from(&mut self.buf) {
            self.endpoint.handle(now, from, &self.buf[..n]);
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        while let Some(t) = self.endpoint.poll_transmit(now) {
            let _ = self.socket.send_to(&t.payload, t.destination);
        }
        std::iter::from_fn(|| self.endpoint.poll_event()).collect()
    }
}

fn start(io: IoChoice, steering: bool, opened: Arc<AtomicUsize>) -> Engine {
    let mut config = ServerConfig::embedded_default();
    config.rtmfp_listen = "127.0.0.1:0".parse().unwrap();
    config.rtmp_listen = None;
    let options = EngineOptions {
        shards: 2,
        io,
        pin: false,
        steering,
        ..EngineOptions::default()
    };
    let hook = move |_shard: u8| -> StepHook {
        let opened = opened.clone();
        Box::new(move |server, _now| {
            while let Some(e) = server.poll_event() {
                if matches!(e, ServerEvent::RtmfpSessionOpened { .. }) {
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            }
            true
        })
    };
    Engine::start(Arc::new(config), EndpointConfig::server(), options, hook).expect("engine starts")
}

fn sum(stats: &[Arc<ShardStats>], f: impl Fn(&ShardStats) -> u64) -> u64 {
    stats.iter().map(|s| f(s)).sum()
}

/// Opens `SESSIONS` sessions from several client sockets, then moves every client to a
/// new port and sends on every session: each datagram must reach its session's owner,
/// through the steering program or handed over by the shard that read it.
fn every_datagram_reaches_its_owner(io: IoChoice, steering: bool) {
    let opened = Arc::new(AtomicUsize::new(0));
    let engine = start(io, steering, opened.clone());
    assert_eq!(
        engine.steering.is_some(),
        steering,
        "steering program: {:?}",
        engine.steering_unavailable
    );
    let server: SocketAddr = engine.rtmfp_addr;
    let epoch = StdInstant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut clients: Vec<Client> = (0..CLIENT_SOCKETS)
        .map(|i| Client::new(i as u8 + 1))
        .collect();
    let mut sessions = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        for _ in 0..SESSIONS / CLIENT_SOCKETS {
            let id = c.endpoint.connect(
                now(),
                server,
                EndpointDiscriminator::for_uri("rtmfp://localhost/live"),
            );
            sessions.push((i, id));
        }
    }
    let deadline = StdInstant::now() + Duration::from_secs(120);
    let mut up = 0;
    while up < SESSIONS {
        for c in &mut clients {
            for e in c.pump(now()) {
                if matches!(e, Event::SessionOpened { .. }) {
                    up += 1;
                }
            }
        }
        assert!(
            StdInstant::now() < deadline,
            "only {up} of {SESSIONS} sessions opened"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The server's shards each own some of the sessions.
    let owners: Vec<u8> = sessions
        .iter()
        .filter_map(|&(i, id)| Some((clients[i].endpoint.session(id)?.far_id >> 24) as u8))
        .collect();
    assert_eq!(owners.len(), SESSIONS);
    assert!(owners.iter().all(|&o| o < 2), "owner byte names a shard");

    // Every client moves to a new port: the kernel now spreads their datagrams over the
    // shards without regard to ownership, and the shards must hand them on.
    for c in &mut clients {
        c.socket = Client::socket();
    }
    let handed_before = sum(&engine.stats, |s| ShardStats::get(&s.handed_off));
    let mut flows = Vec::new();
    for &(i, id) in &sessions {
        let s = clients[i].endpoint.session_mut(id).expect("session");
        let flow = s.open_flow(b"not a flash flow".to_vec(), None);
        s.send(flow, b"hello from a new address", None);
        flows.push((i, id));
    }
    let deadline = StdInstant::now() + Duration::from_secs(60);
    loop {
        for c in &mut clients {
            c.pump(now());
        }
        let pending = flows
            .iter()
            .filter(|&&(i, id)| {
                clients[i]
                    .endpoint
                    .session(id)
                    .map_or(true, |s| s.unacknowledged_bytes() > 0)
            })
            .count();
        if pending == 0 {
            break;
        }
        assert!(
            StdInstant::now() < deadline,
            "{pending} sessions got no acknowledgement from their owner after moving"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = &engine.stats;
    let received = sum(stats, |s| ShardStats::get(&s.received));
    let handled = sum(stats, |s| ShardStats::get(&s.handled));
    let handed_off = sum(stats, |s| ShardStats::get(&s.handed_off));
    let taken_over = sum(stats, |s| ShardStats::get(&s.taken_over));
    if steering {
        assert_eq!(
            handed_off, handed_before,
            "the program delivered every moved session's datagrams to its owner"
        );
        let counters = engine.steering.as_ref().unwrap().counters();
        assert!(counters.steered >= SESSIONS as u64, "{counters:?}");
    } else {
        assert!(
            handed_off > handed_before,
            "with 25 new ports, some datagrams landed on the wrong shard and were handed on"
        );
    }
    assert_eq!(
        handed_off, taken_over,
        "every handed-off datagram reached its owner"
    );
    assert_eq!(handled, received, "every datagram was handled exactly once");
    assert_eq!(opened.load(Ordering::Relaxed), SESSIONS);
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "both shards own sessions"
    );
    engine.stop();
    let stats = engine.stats.clone();
    engine.join().expect("shards end cleanly");
    // Counted after the shards stopped: no endpoint saw a session it did not own.
    assert_eq!(
        sum(&stats, |s| ShardStats::get(&s.unknown_session)),
        0,
        "datagrams for sessions the handling shard does not own"
    );
}

#[test]
fn every_datagram_reaches_its_owner_steered_by_the_bpf_program() {
    every_datagram_reaches_its_owner(IoChoice::Uring, true);
}

#[test]
fn every_datagram_reaches_its_owner_handed_between_shards_on_io_uring() {
    every_datagram_reaches_its_owner(IoChoice::Uring, false);
}

#[test]
fn every_datagram_reaches_its_owner_handed_between_shards_on_the_plain_loop() {
    every_datagram_reaches_its_owner(IoChoice::Poll, false);
}

/// Opens one session from a fresh client to the server; returns the client and the shard
/// that owns its session.
fn client_on_some_shard(server: SocketAddr, seed: u8, now: &impl Fn() -> Instant) -> (Client, u8) {
    let mut c = Client::new(seed);
    let id = c.endpoint.connect(
        now(),
        server,
        EndpointDiscriminator::for_uri("rtmfp://localhost/live"),
    );
    let deadline = StdInstant::now() + Duration::from_secs(20);
    loop {
        c.pump(now());
        let open = c
            .endpoint
            .session(id)
            .filter(|s| s.state == SessionState::Open)
            .map(|s| (s.far_id >> 24) as u8);
        if let Some(shard) = open {
            return (c, shard);
        }
        assert!(
            StdInstant::now() < deadline,
            "session to the server did not open"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_peer_is_introduced_to_a_peer_whose_session_is_on_the_other_shard() {
    // Without steering: the IHello's hand-off is what is tested.
    let engine = start(IoChoice::Auto, false, Arc::new(AtomicUsize::new(0)));
    let server = engine.rtmfp_addr;
    let epoch = StdInstant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut by_shard: [Option<Client>; 2] = [None, None];
    for seed in 1..=40 {
        let (c, shard) = client_on_some_shard(server, seed, &now);
        by_shard[usize::from(shard)].get_or_insert(c);
        if by_shard.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(mut a), Some(mut b)] = by_shard else {
        panic!("40 clients all landed on one shard");
    };
    // a's handshakes land on a's shard (same address and port); b's session is on the
    // other one, which must be found to forward the IHello and redirect a.
    let target = b.endpoint.client_peer_ids().0;
    let id = a
        .endpoint
        .connect(now(), server, EndpointDiscriminator::for_peer(target));
    let deadline = StdInstant::now() + Duration::from_secs(20);
    loop {
        a.pump(now());
        b.pump(now());
        if a.endpoint
            .session(id)
            .is_some_and(|s| s.state == SessionState::Open)
        {
            break;
        }
        assert!(StdInstant::now() < deadline, "no session between the peers");
        std::thread::sleep(Duration::from_millis(1));
    }
    let peer = a.endpoint.session(id).unwrap().peer;
    assert_eq!(peer, b.socket.local_addr().unwrap(), "a reached b directly");
    assert!(
        sum(&engine.stats, |s| ShardStats::get(&s.handed_off)) > 0,
        "the IHello crossed shards"
    );
    engine.stop();
    engine.join().unwrap();
}
