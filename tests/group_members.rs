//! Our own NetGroup members through our server: each joins, the server names its ring
//! neighbours, they open sessions to each other through its introductions, pass the
//! group handshake (the group key derived from each session's keying) and exchange
//! reports, so every member ends up linked into one overlay.
//!
//! Sans-IO: an `EdgeServer` and `FlashClient`s exchanging datagrams in memory.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::proto::endpoint::EndpointConfig;
use rtmfp_edge::proto::epd::PeerId;
use rtmfp_edge::proto::Instant;
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::EdgeServer;

const SERVER: &str = "10.0.0.1:1935";
const TC_URL: &str = "rtmfp://10.0.0.1/live";
const SPEC: &str = "G:027f02010101000103010c050e74657374011b00";

struct Member {
    client: FlashClient,
    addr: SocketAddr,
    connected: bool,
    events: Vec<GroupEvent>,
}

struct World {
    now: Instant,
    server: EdgeServer,
    members: Vec<Member>,
}

impl World {
    fn step(&mut self) {
        let now = self.now;
        let server_addr: SocketAddr = SERVER.parse().unwrap();
        let mut in_flight: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        for m in &mut self.members {
            while let Some(t) = m.client.poll_transmit(now) {
                in_flight.push((m.addr, t.destination, t.payload));
            }
        }
        while let Some(t) = self.server.poll_transmit(now) {
            in_flight.push((server_addr, t.destination, t.payload));
        }
        for (from, to, payload) in in_flight {
            if to == server_addr {
                self.server.handle_datagram(now, from, &payload);
            } else if let Some(m) = self.members.iter_mut().find(|m| m.addr == to) {
                m.client.handle_datagram(now, from, &payload);
            }
        }
        for m in &mut self.members {
            m.client.handle_timeout(now);
            while let Some(e) = m.client.poll_event() {
                match e {
                    ClientEvent::Connected => m.connected = true,
                    ClientEvent::Group(g) => m.events.push(g),
                    _ => {}
                }
            }
        }
        self.server.handle_timeout(now);
        while self.server.poll_event().is_some() {}
        self.now = now + Duration::from_millis(5);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    fn add_member(&mut self, spec: &GroupSpec) -> usize {
        let n = self.members.len();
        let client = FlashClient::connect(
            self.now,
            SERVER.parse().unwrap(),
            TC_URL,
            "live",
            vec![],
            EndpointConfig::default(),
            [n as u8 + 50; 32],
        );
        self.members.push(Member {
            client,
            addr: format!("10.0.2.{}:4000", n + 1).parse().unwrap(),
            connected: false,
            events: Vec::new(),
        });
        self.run_for(Duration::from_millis(300));
        assert!(self.members[n].connected, "member {n} connected");
        assert!(self.members[n].client.join_group(spec));
        n
    }
}

#[test]
fn members_pass_the_group_handshake_and_form_one_overlay() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = World {
        now: Instant::ZERO,
        server: EdgeServer::new(
            Arc::new(ServerConfig::embedded_default()),
            EndpointConfig::server(),
            [1; 32],
        ),
        members: Vec::new(),
    };
    for _ in 0..10 {
        world.add_member(&spec);
        world.run_for(Duration::from_millis(200));
    }
    world.run_for(Duration::from_secs(2));

    let mut ids: HashMap<PeerId, usize> = HashMap::new();
    for (i, m) in world.members.iter_mut().enumerate() {
        ids.insert(m.client.peer_id().unwrap(), i);
    }
    let mut links: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (i, m) in world.members.iter().enumerate() {
        let group = m.client.group().expect("joined");
        assert!(
            !m.events.iter().any(|e| matches!(
                e,
                GroupEvent::HandshakeRejected { .. } | GroupEvent::JoinRefused
            )),
            "member {i}: {:?}",
            m.events
        );
        let neighbours: Vec<usize> = group.neighbours().map(|p| ids[&p]).collect();
        assert!(!neighbours.is_empty(), "member {i} has neighbours");
        for j in neighbours {
            links.insert((i.min(j), i.max(j)));
        }
        assert!(
            m.events
                .iter()
                .any(|e| matches!(e, GroupEvent::Report { .. })),
            "member {i} got a report: {:?}",
            m.events
        );
    }
    // Handshakes pass both ways: a link one side counts, the other counts too.
    for &(a, b) in &links {
        let a_id = world.members[a].client.peer_id().unwrap();
        let b_id = world.members[b].client.peer_id().unwrap();
        let a_sees_b = world.members[a]
            .client
            .group()
            .unwrap()
            .neighbours()
            .any(|p| p == b_id);
        let b_sees_a = world.members[b]
            .client
            .group()
            .unwrap()
            .neighbours()
            .any(|p| p == a_id);
        assert!(
            a_sees_b && b_sees_a,
            "link {a}-{b} is verified on both ends"
        );
    }
    // One overlay: every member reachable from member 0 over the links.
    let mut reached = BTreeSet::from([0usize]);
    let mut frontier = vec![0usize];
    while let Some(x) = frontier.pop() {
        for &(a, b) in &links {
            let other = if a == x {
                b
            } else if b == x {
                a
            } else {
                continue;
            };
            if reached.insert(other) {
                frontier.push(other);
            }
        }
    }
    assert_eq!(reached.len(), 10, "links {links:?}");
    // Reports spread knowledge of members beyond the server's notices.
    let heard: Vec<usize> = world
        .members
        .iter()
        .map(|m| m.client.group().unwrap().heard())
        .collect();
    assert!(heard.iter().all(|&h| h >= 3), "heard {heard:?}");
}
