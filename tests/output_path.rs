//! The endpoint's output path at fan-out scale: which session sends when (ready queue),
//! when timers fire (timer wheel), and what batched sealing puts on the wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rtmfp_edge::engine::batch_cipher::MultiBufferCipher;
use rtmfp_edge::engine::multi_cbc::Backend;
use rtmfp_edge::proto::batch::TransmitBatch;
use rtmfp_edge::proto::congestion::{CongestionController, TimeCriticality};
use rtmfp_edge::proto::dh::DhGroup;
use rtmfp_edge::proto::endpoint::{EndpointConfig, Event, SessionId, Transmit};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
use rtmfp_edge::proto::keying::HandshakeLayout;
use rtmfp_edge::proto::session::SessionEvent;
use rtmfp_edge::proto::{Endpoint, Instant};

const SERVER: &str = "10.0.0.1:1935";

/// Group 2 only: these tests run many handshakes and are about what follows them.
fn config(base: EndpointConfig) -> EndpointConfig {
    EndpointConfig {
        groups: vec![DhGroup::Modp1024],
        ..base
    }
}

fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn client_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, (i / 200) as u8 + 1], 40_000 + (i % 200) as u16))
}

/// One server endpoint and clients on a lossless, zero-delay link, driven by hand.
struct Star {
    now: Instant,
    server: Endpoint,
    clients: Vec<Endpoint>,
    /// Server session -> the client index it belongs to.
    owner: HashMap<SessionId, usize>,
    /// Events each client produced, in order.
    client_events: Vec<Vec<Event>>,
}

impl Star {
    /// `clients` endpoints with `sessions_each` sessions each to the server.
    fn new(clients: usize, sessions_each: usize) -> Star {
        Star::build(clients, sessions_each, |_| EndpointConfig::default())
    }

    /// One session per client; odd clients speak the Flash-era layout (no HMAC).
    fn new_mixed(clients: usize) -> Star {
        Star::build(clients, 1, |i| EndpointConfig {
            initiator_layouts: if i % 2 == 1 {
                vec![HandshakeLayout::FlashEra]
            } else {
                vec![HandshakeLayout::Rfc7425]
            },
            ..Default::default()
        })
    }

    fn build(
        clients: usize,
        sessions_each: usize,
        client_config: impl Fn(usize) -> EndpointConfig,
    ) -> Star {
        let mut star = Star {
            now: Instant::from_micros(1_000_000),
            server: Endpoint::new(config(EndpointConfig::server()), [1; 32]),
            clients: (0..clients)
                .map(|i| {
                    let mut seed = [2; 32];
                    seed[0] = i as u8;
                    seed[1] = (i >> 8) as u8;
                    Endpoint::new(config(client_config(i)), seed)
                })
                .collect(),
            owner: HashMap::new(),
            client_events: vec![Vec::new(); clients],
        };
        let epd = EndpointDiscriminator::for_uri("rtmfp://10.0.0.1/live");
        let mut expected = 0;
        for c in 0..clients {
            for _ in 0..sessions_each {
                let now = star.now;
                star.clients[c].connect(now, server_addr(), epd.clone());
                expected += 1;
            }
        }
        star.exchange();
        let opened: Vec<SessionId> = star
            .server_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::SessionOpened { session, peer, .. } => {
                    let c = (0..clients).find(|&c| client_addr(c) == peer).unwrap();
                    Some((session, c))
                }
                _ => None,
            })
            .map(|(s, c)| {
                star.owner.insert(s, c);
                s
            })
            .collect();
        assert_eq!(opened.len(), expected, "every handshake completes");
        star
    }

    fn server_sessions(&self) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.owner.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn server_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    fn deliver_to_client(&mut self, t: &Transmit) {
        let c = (0..self.clients.len())
            .find(|&c| client_addr(c) == t.destination)
            .expect("datagram for a client");
        self.clients[c].handle(self.now, server_addr(), &t.payload);
        while let Some(e) = self.clients[c].poll_event() {
            self.client_events[c].push(e);
        }
    }

    /// Moves datagrams both ways until every endpoint is quiet.
    fn exchange(&mut self) {
        self.exchange_with(|server, now| server.poll_transmit(now).into_iter().collect());
    }

    /// As `exchange`, taking the server's output through `server_out`.
    fn exchange_with(
        &mut self,
        mut server_out: impl FnMut(&mut Endpoint, Instant) -> Vec<Transmit>,
    ) {
        loop {
            let mut moved = false;
            for c in 0..self.clients.len() {
                while let Some(t) = self.clients[c].poll_transmit(self.now) {
                    assert_eq!(t.destination, server_addr());
                    self.server.handle(self.now, client_addr(c), &t.payload);
                    moved = true;
                }
                while let Some(e) = self.clients[c].poll_event() {
                    self.client_events[c].push(e);
                }
            }
            loop {
                let out = server_out(&mut self.server, self.now);
                if out.is_empty() {
                    break;
                }
                for t in &out {
                    self.deliver_to_client(t);
                }
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances the clock by `by`, firing due timers everywhere, and exchanges.
    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        for c in &mut self.clients {
            if c.poll_timeout().is_some_and(|t| t <= self.now) {
                c.handle_timeout(self.now);
            }
        }
        self.exchange();
    }
}

/// A controller that never holds a sender back, so only the endpoint's scheduling decides
/// who sends next.
#[derive(Debug)]
struct Unlimited;

impl CongestionController for Unlimited {
    fn on_ack(&mut self, _: Instant, _: usize, _: Option<Duration>, _: TimeCriticality) {}
    fn on_loss(&mut self, _: Instant, _: Option<Duration>) {}
    fn on_timeout(&mut self, _: Instant) {}
    fn window(&self) -> usize {
        usize::MAX / 2
    }
}

#[test]
fn a_session_with_a_megabyte_queued_does_not_starve_the_others() {
    let mut star = Star::new(9, 1);
    let sessions = star.server_sessions();
    let mut flows = HashMap::new();
    for &sid in &sessions {
        let s = star.server.session_mut(sid).unwrap();
        s.set_congestion_controller(Box::new(Unlimited));
        flows.insert(sid, s.open_flow(b"f".to_vec(), None));
    }
    // Every session's flow is acknowledged once, so none carries metadata any more.
    for &sid in &sessions {
        let flow = flows[&sid];
        assert!(star
            .server
            .session_mut(sid)
            .unwrap()
            .send(flow, b"hi", None));
    }
    star.exchange();
    star.advance(Duration::from_millis(300));

    // Whichever session the endpoint would look at first gets the big queue: try each.
    for &heavy in &sessions {
        // A megabyte in messages the receiver can buffer whole.
        let s = star.server.session_mut(heavy).unwrap();
        for _ in 0..16 {
            assert!(s.send(flows[&heavy], &[7u8; 64 << 10], None));
        }
        for &sid in sessions.iter().filter(|&&s| s != heavy) {
            let s = star.server.session_mut(sid).unwrap();
            assert!(s.send(flows[&sid], b"small", None));
        }
        let mut order = Vec::new();
        while let Some(t) = star.server.poll_transmit(star.now) {
            order.push(t.destination);
            star.deliver_to_client(&t);
            if order.len() > 200 {
                break;
            }
        }
        let heavy_addr = client_addr(star.owner[&heavy]);
        let heavy_sent = order.iter().filter(|&&a| a == heavy_addr).count();
        assert!(
            heavy_sent > 8,
            "the heavy session sends a lot: {heavy_sent}"
        );
        for &sid in sessions.iter().filter(|&&s| s != heavy) {
            let addr = client_addr(star.owner[&sid]);
            let at = order.iter().position(|&a| a == addr);
            // Round robin: everyone's turn comes within one pass over the ready sessions.
            assert!(
                at.is_some_and(|i| i < 2 * sessions.len()),
                "session {sid:#x} sent at {at:?} of {} datagrams (heavy {heavy:#x})",
                order.len()
            );
        }
        // Let everything drain and be acknowledged before the next round.
        for _ in 0..200 {
            star.advance(Duration::from_millis(50));
        }
        let heavy_left = star.server.session(heavy).unwrap().unacknowledged_bytes();
        assert_eq!(heavy_left, 0, "the megabyte got through");
    }
    let delivered: usize = star
        .client_events
        .iter()
        .flatten()
        .filter(|e| {
            matches!(
                e,
                Event::Session {
                    event: SessionEvent::Message { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(delivered, 9 + 9 * (16 + 8));
}

/// The earliest deadline any of the server's sessions reports.
fn earliest_session_deadline(star: &Star) -> Option<Instant> {
    star.server_sessions()
        .iter()
        .filter_map(|&id| star.server.session(id)?.poll_timeout())
        .min()
}

#[test]
fn timers_fire_within_a_tick_of_each_sessions_deadline() {
    let mut star = Star::new(4, 5);
    let sessions = star.server_sessions();
    for (i, &sid) in sessions.iter().enumerate() {
        let s = star.server.session_mut(sid).unwrap();
        let flow = s.open_flow(b"f".to_vec(), None);
        assert!(s.send(flow, &vec![1u8; 100 * (i + 1)], None));
    }
    star.exchange();
    let start = star.now;
    let mut wakeups = 0;
    // Five minutes of keepalives: longer than the idle timeout, so sessions survive only
    // if every keepalive timer fires.
    while star.now.saturating_since(start) < Duration::from_secs(300) {
        let earliest = earliest_session_deadline(&star).expect("open sessions have timers");
        let next = star.server.poll_timeout().unwrap();
        assert!(
            earliest <= next && next.saturating_since(earliest) < Duration::from_millis(1),
            "endpoint deadline {next:?}, earliest session deadline {earliest:?}"
        );
        let client_next = star.clients.iter().filter_map(|c| c.poll_timeout()).min();
        let to = client_next.map_or(next, |c| c.min(next)).max(star.now);
        star.advance(to.saturating_since(star.now));
        wakeups += 1;
    }
    assert!(wakeups > 20, "keepalives take turns: {wakeups} wakeups");
    for &sid in &sessions {
        assert!(
            star.server.session(sid).is_some(),
            "session {sid:#x} kept alive"
        );
    }
    let closed = star
        .server_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::Session {
                    event: SessionEvent::Closed(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(closed, 0);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    OneByOne,
    Batch(Backend),
}

/// A server fanning messages out to 40 clients (half in the Flash-era layout: checksum,
/// no HMAC), its output taken one of three ways. Returns every server datagram and what
/// each client received.
fn fan_out(output: Output) -> (Vec<Transmit>, Vec<Vec<Event>>) {
    let mut star = Star::new_mixed(40);
    if let Output::Batch(backend) = output {
        star.server
            .set_batch_cipher(Box::new(MultiBufferCipher::with_backend(backend)));
    }
    let sessions = star.server_sessions();
    let mut flows = HashMap::new();
    for &sid in &sessions {
        let s = star.server.session_mut(sid).unwrap();
        flows.insert(sid, s.open_flow(b"live".to_vec(), None));
    }
    let mut wire = Vec::new();
    let mut batch = TransmitBatch::new(64);
    for round in 0..12usize {
        for (i, &sid) in sessions.iter().enumerate() {
            // Sizes from a few bytes to several fragments, different per session.
            let len = 1 + (round * 997 + i * 131) % 4000;
            let msg: Vec<u8> = (0..len).map(|b| (b + i + round) as u8).collect();
            let s = star.server.session_mut(sid).unwrap();
            assert!(s.send(flows[&sid], &msg, None));
        }
        star.exchange_with(|server, now| match output {
            Output::OneByOne => {
                let t: Vec<Transmit> = server.poll_transmit(now).into_iter().collect();
                wire.extend(t.iter().cloned());
                t
            }
            Output::Batch(_) => {
                batch.clear();
                let n = server.poll_transmit_batch(now, &mut batch);
                assert_eq!(n, batch.len());
                let t: Vec<Transmit> = batch
                    .iter()
                    .map(|(destination, payload)| Transmit {
                        destination,
                        payload: payload.to_vec(),
                    })
                    .collect();
                wire.extend(t.iter().cloned());
                t
            }
        });
        star.advance(Duration::from_millis(250));
    }
    (wire, star.client_events)
}

#[test]
fn batched_sealing_puts_the_same_bytes_on_the_wire_with_either_cipher() {
    let (plain_wire, plain_events) = fan_out(Output::OneByOne);
    let messages = |events: &Vec<Event>| {
        events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Session {
                        event: SessionEvent::Message { .. },
                        ..
                    }
                )
            })
            .count()
    };
    for (c, events) in plain_events.iter().enumerate() {
        assert_eq!(messages(events), 12, "client {c} got every message");
    }
    let mut backends = vec![Backend::Scalar];
    backends.extend(
        [Backend::AesNi8, Backend::Vaes16]
            .into_iter()
            .filter(|b| b.is_available()),
    );
    for backend in backends {
        let (wire, events) = fan_out(Output::Batch(backend));
        assert_eq!(wire.len(), plain_wire.len(), "{backend:?}: datagram count");
        for (i, (a, b)) in wire.iter().zip(&plain_wire).enumerate() {
            assert_eq!(a, b, "{backend:?}: datagram {i} differs");
        }
        assert_eq!(events, plain_events, "{backend:?}: what clients received");
    }
}
