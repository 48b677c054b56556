//! An `EdgeServer` and our `FlashClient` group members exchanging datagrams in memory on
//! a virtual clock, for the group tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::proto::endpoint::EndpointConfig;
use rtmfp_edge::proto::Instant;
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::EdgeServer;

pub const SERVER: &str = "10.0.0.1:1935";
pub const TC_URL: &str = "rtmfp://10.0.0.1/live";
pub const SPEC: &str = "G:027f02010101000103010c050e74657374011b00";

pub struct Member {
    pub client: FlashClient,
    pub addr: SocketAddr,
    pub connected: bool,
    pub events: Vec<GroupEvent>,
}

pub struct World {
    pub now: Instant,
    pub server: EdgeServer,
    pub members: Vec<Member>,
    /// Datagrams between these two members are lost while set (both ways).
    pub cut: Option<(usize, usize)>,
    /// Members that joined an IP multicast address: datagrams sent there reach each.
    pub multicast: Vec<(SocketAddr, usize)>,
    /// Datagrams sent to a multicast address, by anyone, and the last one.
    pub multicast_sent: u64,
    pub last_multicast: Option<Vec<u8>>,
    /// When not 0, member m loses multicast datagram n (counted in `multicast_sent`)
    /// when `(n + m) % multicast_lose_every == 0`: each member loses its own share.
    pub multicast_lose_every: u64,
    /// The most datagrams sent to a multicast address in one step.
    pub multicast_burst: u64,
    /// The server's timers run only when its `poll_timeout` says, as the engine runs
    /// them (otherwise at every step).
    pub server_on_timer: bool,
    /// Steps at which IP multicast datagrams waited for the server's pacing but its
    /// `poll_timeout` was not within 20 ms.
    pub multicast_unwoken: u64,
}

impl World {
    pub fn new() -> World {
        World {
            now: Instant::ZERO,
            server: EdgeServer::new(
                Arc::new(ServerConfig::embedded_default()),
                EndpointConfig::server(),
                [1; 32],
            ),
            members: Vec::new(),
            cut: None,
            multicast: Vec::new(),
            multicast_sent: 0,
            last_multicast: None,
            multicast_lose_every: 0,
            multicast_burst: 0,
            server_on_timer: false,
            multicast_unwoken: 0,
        }
    }

    pub fn step(&mut self) {
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
        let cut: Vec<SocketAddr> = self
            .cut
            .map(|(a, b)| vec![self.members[a].addr, self.members[b].addr])
            .unwrap_or_default();
        let burst = in_flight.iter().filter(|(_, to, _)| to.ip().is_multicast());
        self.multicast_burst = self.multicast_burst.max(burst.count() as u64);
        for (from, to, payload) in in_flight {
            if cut.contains(&from) && cut.contains(&to) {
                continue;
            }
            if to.ip().is_multicast() {
                self.multicast_sent += 1;
                let (n, every) = (self.multicast_sent, self.multicast_lose_every);
                for &(_, m) in self.multicast.iter().filter(|(a, _)| *a == to) {
                    if every > 0 && (n + m as u64) % every == 0 {
                        continue;
                    }
                    self.members[m].client.handle_multicast(now, &payload);
                }
                self.last_multicast = Some(payload);
            } else if to == server_addr {
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
        let timer = self.server.poll_timeout();
        if self.server.groups().multicast_queued() > 0
            && !timer.is_some_and(|t| t <= now + Duration::from_millis(20))
        {
            self.multicast_unwoken += 1;
        }
        if !self.server_on_timer || timer.is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        while self.server.poll_event().is_some() {}
        self.now = now + Duration::from_millis(5);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    pub fn add_member(&mut self, spec: &GroupSpec) -> usize {
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
