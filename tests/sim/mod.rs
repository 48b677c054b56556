//! A deterministic network simulator for driving `Endpoint`s: virtual clock, seeded loss,
//! duplication, reordering, delay with jitter, and an MTU.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rtmfp_edge::proto::{Endpoint, Event, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub loss: f64,
    pub duplicate: f64,
    pub delay: Duration,
    pub jitter: Duration,
    pub mtu: usize,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            loss: 0.0,
            duplicate: 0.0,
            delay: Duration::from_millis(20),
            jitter: Duration::ZERO,
            mtu: 1400,
        }
    }
}

pub struct Node {
    /// The node's own address (private when it sits behind a NAT).
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    pub events: Vec<Event>,
    pub nat: Option<Nat>,
}

/// An address-restricted cone NAT: one public mapping, and inbound datagrams pass only
/// from addresses the node has sent to. That is what makes hole punching necessary.
pub struct Nat {
    pub public: SocketAddr,
    pub permitted: std::collections::HashSet<std::net::IpAddr>,
    pub refused: u64,
}

impl Node {
    /// Where others reach this node.
    pub fn reachable_at(&self) -> SocketAddr {
        self.nat.as_ref().map_or(self.addr, |n| n.public)
    }
}

/// (deliver at, sequence for a stable order, destination node, source, payload)
type Datagram = (Instant, u64, usize, SocketAddr, Vec<u8>);

pub struct Network {
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub link: Link,
    rng: ChaCha8Rng,
    in_flight: BinaryHeap<Reverse<Datagram>>,
    counter: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Sources whose next datagram is lost.
    drop_next: Vec<SocketAddr>,
}

impl Network {
    pub fn new(seed: u64, link: Link) -> Self {
        Network {
            now: Instant::from_micros(1_000_000),
            nodes: Vec::new(),
            link,
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_flight: BinaryHeap::new(),
            counter: 0,
            delivered: 0,
            dropped: 0,
            drop_next: Vec::new(),
        }
    }

    pub fn add(&mut self, addr: &str, endpoint: Endpoint) -> usize {
        self.nodes.push(Node {
            addr: addr.parse().unwrap(),
            endpoint,
            events: Vec::new(),
            nat: None,
        });
        self.nodes.len() - 1
    }

    /// Adds a node at `private` behind a NAT whose public mapping is `public`.
    pub fn add_behind_nat(&mut self, private: &str, public: &str, endpoint: Endpoint) -> usize {
        let node = self.add(private, endpoint);
        self.nodes[node].nat = Some(Nat {
            public: public.parse().unwrap(),
            permitted: Default::default(),
            refused: 0,
        });
        node
    }

    fn node_for(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.reachable_at() == addr)
    }

    fn flush_outputs(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(t) = self.nodes[i].endpoint.poll_transmit(self.now) {
                let from = self.nodes[i].reachable_at();
                if let Some(nat) = &mut self.nodes[i].nat {
                    nat.permitted.insert(t.destination.ip());
                }
                self.send(from, t.destination, t.payload);
            }
            while let Some(e) = self.nodes[i].endpoint.poll_event() {
                self.nodes[i].events.push(e);
            }
        }
    }

    /// Loses the next datagram `from` sends.
    pub fn drop_next_from(&mut self, from: SocketAddr) {
        self.drop_next.push(from);
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        if let Some(i) = self.drop_next.iter().position(|a| *a == from) {
            self.drop_next.swap_remove(i);
            self.dropped += 1;
            return;
        }
        if payload.len() > self.link.mtu || self.rng.gen_bool(self.link.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.gen_bool(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.link.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(self.rng.gen_range(0..self.link.jitter.as_micros() as u64))
            };
            let at = self.now + self.link.delay + jitter;
            self.counter += 1;
            let dest = self.node_for(to).unwrap_or(usize::MAX);
            self.in_flight
                .push(Reverse((at, self.counter, dest, from, payload.clone())));
        }
    }

    /// Advances to the next event (delivery or timer). Returns false when nothing is left.
    pub fn step(&mut self) -> bool {
        self.flush_outputs();
        let next_delivery = self.in_flight.peek().map(|Reverse((t, ..))| *t);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.endpoint.poll_timeout())
            .min();
        let next = match (next_delivery, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > self.now {
            self.now = next;
        }
        while let Some(Reverse((t, ..))) = self.in_flight.peek() {
            if *t > self.now {
                break;
            }
            let Some(Reverse((_, _, dest, from, payload))) = self.in_flight.pop() else {
                break;
            };
            if let Some(node) = self.nodes.get_mut(dest) {
                if let Some(nat) = &mut node.nat {
                    if !nat.permitted.contains(&from.ip()) {
                        nat.refused += 1;
                        continue;
                    }
                }
                node.endpoint.handle(self.now, from, &payload);
                self.delivered += 1;
            }
        }
        for n in &mut self.nodes {
            if n.endpoint.poll_timeout().is_some_and(|t| t <= self.now) {
                n.endpoint.handle_timeout(self.now);
            }
        }
        self.flush_outputs();
        true
    }

    /// Steps until `done` holds or `limit` of virtual time passes.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Network) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    pub fn drain_events(&mut self, node: usize) -> Vec<Event> {
        std::mem::take(&mut self.nodes[node].events)
    }

    /// Moves a node to a new address (a NAT rebinding or a client changing networks).
    pub fn rebind(&mut self, node: usize, addr: &str) {
        self.nodes[node].addr = addr.parse().unwrap();
    }
}
