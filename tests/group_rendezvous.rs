//! The server as a NetGroup rendezvous, as Flash members and librtmfp use it
//! (docs/netgroup.md §2): a member opens a `GC` flow, sends its join, and the server tells
//! the newcomer's ring neighbours of it with member notices on flows answering theirs;
//! a member that leaves is forgotten and the gap closed; a member the app does not allow
//! is refused with `NetGroup.Connect.Rejected` and nobody hears of it.
//!
//! Sans-IO: an `EdgeServer` and bare members (an RFC 7016 endpoint speaking just the
//! Flash NetConnection and the group flow) exchanging datagrams in memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmfp_edge::flash::amf::Value;
use rtmfp_edge::flash::command::Command;
use rtmfp_edge::flash::tc::{kind, FlowMetadata, TcMessage};
use rtmfp_edge::group::server_flow::{join_message, parse_member_notice, GROUP_FLOW_METADATA};
use rtmfp_edge::group::{group_address, GroupId, GroupSpec};
use rtmfp_edge::proto::endpoint::{EndpointConfig, Event, SessionId};
use rtmfp_edge::proto::epd::{EndpointDiscriminator, PeerId};
use rtmfp_edge::proto::keying::HandshakeLayout;
use rtmfp_edge::proto::session::SessionEvent;
use rtmfp_edge::proto::{Endpoint, Instant};
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::EdgeServer;

const SERVER: &str = "10.0.0.1:1935";
const TC_URL: &str = "rtmfp://10.0.0.1/live";
/// A groupspec librtmfp builds (multicast, name "test"): docs/netgroup.md §1.
const SPEC: &str = "G:0101010c050e74657374011b00";
const OTHER_SPEC: &str = "G:027f0201010103010c050e74657374011b00";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn command_message(cmd: &Command) -> Vec<u8> {
    TcMessage {
        kind: kind::COMMAND_AMF0,
        timestamp: 0,
        payload: &cmd.encode(),
    }
    .to_vec()
}

/// A member: connects to app `live`, then joins `group` over a `GC` flow.
struct Member {
    endpoint: Endpoint,
    addr: SocketAddr,
    session: SessionId,
    group: GroupId,
    nc_flow: Option<u64>,
    gc_flow: Option<u64>,
    /// onStatus codes on the NetConnection.
    statuses: Vec<String>,
    /// Peers the server told us of, in order.
    notices: Vec<PeerId>,
    /// Our group flow was refused by the server.
    refused: bool,
    /// The server's flows: id -> (metadata, return association).
    server_flows: HashMap<u64, (Vec<u8>, Option<u64>)>,
}

impl Member {
    fn new(now: Instant, n: usize, group: GroupId) -> Member {
        let mut endpoint = Endpoint::new(EndpointConfig::default(), [n as u8 + 10; 32]);
        let session = endpoint.connect(now, addr(SERVER), EndpointDiscriminator::for_uri(TC_URL));
        Member {
            endpoint,
            addr: addr(&format!("10.0.1.{}:5000", n + 1)),
            session,
            group,
            nc_flow: None,
            gc_flow: None,
            statuses: Vec::new(),
            notices: Vec::new(),
            refused: false,
            server_flows: HashMap::new(),
        }
    }

    fn peer_id(&mut self) -> PeerId {
        let layout = self.endpoint.session(self.session).unwrap().info.layout;
        let (flash, rfc) = self.endpoint.client_peer_ids();
        match layout {
            HandshakeLayout::FlashEra => flash,
            HandshakeLayout::Rfc7425 => rfc,
        }
    }

    fn connected(&self) -> bool {
        self.statuses
            .iter()
            .any(|c| c == "NetConnection.Connect.Success")
    }

    fn join(&mut self) {
        let nc = self.nc_flow.expect("connected first");
        let s = self.endpoint.session_mut(self.session).unwrap();
        let f = s.open_flow(GROUP_FLOW_METADATA.to_vec(), Some(nc));
        s.send(f, &join_message(&self.group), None);
        self.gc_flow = Some(f);
        self.refused = false;
    }

    fn leave(&mut self) {
        let f = self.gc_flow.take().expect("joined");
        self.endpoint
            .session_mut(self.session)
            .unwrap()
            .close_flow(f);
    }

    fn pump(&mut self) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::SessionOpened { .. } => {
                    let s = self.endpoint.session_mut(self.session).unwrap();
                    let f = s.open_flow(FlowMetadata::net_connection().encode(), None);
                    let object =
                        Value::object([("app", Value::from("live")), ("tcUrl", TC_URL.into())]);
                    s.send(
                        f,
                        &command_message(&Command::new("connect", 1.0, object, vec![])),
                        None,
                    );
                    self.nc_flow = Some(f);
                }
                Event::Session { event, .. } => match event {
                    SessionEvent::FlowOpened {
                        flow_id,
                        metadata,
                        return_flow,
                    } => {
                        self.server_flows.insert(flow_id, (metadata, return_flow));
                    }
                    SessionEvent::Message { flow_id, data } => {
                        let group_flow = self
                            .server_flows
                            .get(&flow_id)
                            .is_some_and(|(m, _)| m == GROUP_FLOW_METADATA);
                        if group_flow {
                            let (_, answers) = &self.server_flows[&flow_id];
                            assert_eq!(
                                *answers, self.gc_flow,
                                "member notices come on a flow answering our GC flow"
                            );
                            self.notices
                                .push(parse_member_notice(&data).expect("a member notice"));
                        } else if let Some(code) = status_code(&data) {
                            self.statuses.push(code);
                        }
                    }
                    SessionEvent::FlowRejected { flow_id, .. } if Some(flow_id) == self.gc_flow => {
                        self.refused = true
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// The `code` of an onStatus (or `_result`) command's info object.
fn status_code(data: &[u8]) -> Option<String> {
    let m = TcMessage::parse(data).ok()?;
    if m.kind != kind::COMMAND_AMF0 {
        return None;
    }
    let cmd = Command::parse(m.payload).ok()?;
    let info = cmd.arguments.first()?;
    match info.get("code")? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

struct World {
    now: Instant,
    server: EdgeServer,
    members: Vec<Member>,
}

impl World {
    fn new(config: ServerConfig) -> World {
        World {
            now: Instant::ZERO,
            server: EdgeServer::new(Arc::new(config), EndpointConfig::server(), [1; 32]),
            members: Vec::new(),
        }
    }

    fn step(&mut self) {
        let now = self.now;
        for m in &mut self.members {
            while let Some(t) = m.endpoint.poll_transmit(now) {
                self.server.handle_datagram(now, m.addr, &t.payload);
            }
        }
        while let Some(t) = self.server.poll_transmit(now) {
            if let Some(m) = self.members.iter_mut().find(|m| m.addr == t.destination) {
                m.endpoint.handle(now, addr(SERVER), &t.payload);
            }
        }
        for m in &mut self.members {
            m.endpoint.handle_timeout(now);
            m.pump();
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

    /// Adds a member, connects it and has it join.
    fn join(&mut self, group: GroupId) -> usize {
        let n = self.members.len();
        self.members.push(Member::new(self.now, n, group));
        self.run_for(Duration::from_millis(300));
        assert!(self.members[n].connected(), "member {n} connected");
        self.members[n].join();
        self.run_for(Duration::from_millis(300));
        n
    }
}

/// Which of `members` are the `each_side` ring neighbours of `who`, by group address.
fn ring_neighbours(peers: &[(usize, PeerId)], who: usize, each_side: usize) -> Vec<usize> {
    let mut ring: Vec<([u8; 32], usize)> =
        peers.iter().map(|(i, p)| (group_address(p), *i)).collect();
    ring.sort();
    let at = ring.iter().position(|e| e.1 == who).unwrap();
    let n = ring.len();
    let mut out: Vec<usize> = (1..=each_side.min((n - 1) / 2 + 1))
        .flat_map(|d| [ring[(at + d) % n].1, ring[(at + n - d) % n].1])
        .filter(|&i| i != who)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_newcomer_is_announced_to_its_ring_neighbours_only() {
    let group = GroupSpec::parse(SPEC).unwrap().group_id();
    let mut world = World::new(ServerConfig::embedded_default());
    for _ in 0..12 {
        world.join(group);
    }
    for m in &world.members {
        assert!(!m.refused);
    }
    let before: Vec<Vec<PeerId>> = world.members.iter().map(|m| m.notices.clone()).collect();
    let newcomer = world.join(group);
    let newcomer_id = world.members[newcomer].peer_id();
    let mut peers = Vec::new();
    for (i, m) in world.members.iter_mut().enumerate() {
        peers.push((i, m.peer_id()));
    }
    let told: Vec<usize> = (0..newcomer)
        .filter(|&i| world.members[i].notices.len() > before[i].len())
        .collect();
    for &i in &told {
        assert_eq!(
            world.members[i].notices.last(),
            Some(&newcomer_id),
            "member {i} was told of the newcomer's peer id"
        );
    }
    assert_eq!(told, ring_neighbours(&peers, newcomer, 3));
    assert!(
        world.members[newcomer].notices.is_empty(),
        "the newcomer itself is told nothing: its neighbours come to it"
    );
}

#[test]
fn a_member_that_leaves_is_not_announced_and_its_neighbours_are_bridged() {
    let group = GroupSpec::parse(SPEC).unwrap().group_id();
    let mut world = World::new(ServerConfig::embedded_default());
    for _ in 0..10 {
        world.join(group);
    }
    let mut peers = Vec::new();
    for (i, m) in world.members.iter_mut().enumerate() {
        peers.push((i, m.peer_id()));
    }
    let leaver = 4;
    let leaver_id = peers[leaver].1;
    let before: Vec<usize> = world.members.iter().map(|m| m.notices.len()).collect();
    world.members[leaver].leave();
    world.run_for(Duration::from_millis(500));
    // The member after the leaver on the ring is told of the one before it.
    let rest: Vec<(usize, PeerId)> = peers.iter().copied().filter(|p| p.0 != leaver).collect();
    let mut ring: Vec<([u8; 32], usize)> =
        peers.iter().map(|(i, p)| (group_address(p), *i)).collect();
    ring.sort();
    let at = ring.iter().position(|e| e.1 == leaver).unwrap();
    let (after, prev) = (ring[(at + 1) % 10].1, ring[(at + 9) % 10].1);
    let told: Vec<usize> = (0..10)
        .filter(|&i| world.members[i].notices.len() > before[i])
        .collect();
    assert_eq!(told, vec![after], "one bridge notice");
    assert_eq!(world.members[after].notices.last(), Some(&peers[prev].1));
    // A newcomer's neighbours are chosen among those still there.
    let all_notices_before: Vec<usize> = world.members.iter().map(|m| m.notices.len()).collect();
    let newcomer = world.join(group);
    let mut now_peers = rest.clone();
    now_peers.push((newcomer, world.members[newcomer].peer_id()));
    let told: Vec<usize> = (0..10)
        .filter(|&i| world.members[i].notices.len() > all_notices_before[i])
        .collect();
    assert!(!told.contains(&leaver), "the leaver hears nothing more");
    assert_eq!(told, ring_neighbours(&now_peers, newcomer, 3));
    assert!(
        world
            .members
            .iter()
            .all(|m| m.notices.last() != Some(&leaver_id)),
        "nobody was last told of the leaver"
    );
}

#[test]
fn a_member_of_a_group_the_app_does_not_allow_is_refused_and_never_announced() {
    let allowed = GroupSpec::parse(SPEC).unwrap().group_id();
    let other = GroupSpec::parse(OTHER_SPEC).unwrap().group_id();
    let config = ServerConfig::parse(
        &format!("[[app]]\nname = \"live\"\n[app.group]\nallow = [\"{SPEC}\"]\n"),
        "test.toml",
    )
    .unwrap();
    let mut world = World::new(config);
    for _ in 0..3 {
        world.join(allowed);
    }
    let before: Vec<usize> = world.members.iter().map(|m| m.notices.len()).collect();
    let intruder = world.join(other);
    assert!(
        world.members[intruder].refused,
        "its group flow was refused"
    );
    assert!(
        world.members[intruder]
            .statuses
            .iter()
            .any(|c| c == "NetGroup.Connect.Rejected"),
        "it was told why: {:?}",
        world.members[intruder].statuses
    );
    for (member, &count) in world.members.iter().zip(&before) {
        assert_eq!(member.notices.len(), count, "nobody heard of it");
    }
    // The allowed group still works.
    let fourth = world.join(allowed);
    assert!(!world.members[fourth].refused);
    assert_eq!(
        (0..3)
            .filter(|&i| world.members[i].notices.len() > before[i])
            .count(),
        3
    );
}

#[test]
fn a_full_group_refuses_the_next_member() {
    let group = GroupSpec::parse(SPEC).unwrap().group_id();
    let config = ServerConfig::parse(
        "[[app]]\nname = \"live\"\n[app.group]\nmax_members = 2\n",
        "test.toml",
    )
    .unwrap();
    let mut world = World::new(config);
    world.join(group);
    world.join(group);
    let third = world.join(group);
    assert!(world.members[third].refused);
    assert!(world.members[third]
        .statuses
        .iter()
        .any(|c| c == "NetGroup.Connect.Rejected"));
    // When one leaves, there is room again.
    world.members[0].leave();
    world.run_for(Duration::from_millis(300));
    world.members[third].join();
    world.run_for(Duration::from_millis(300));
    assert!(!world.members[third].refused);
}
