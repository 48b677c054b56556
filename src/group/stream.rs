//! A member's copy of one live stream in its group (docs/netgroup.md §3.5-§3.8): the
//! fragments it holds, the messages reassembled from them for its player, and per
//! neighbour, the flows, the availability map and the push mask.
//!
//! How fragments move:
//! - The publisher cuts media into numbered fragments and keeps them in its store.
//! - Members announce the stream to each neighbour (subscription, `21`) and publish
//!   availability maps (`22`).
//! - A member asks its neighbours to push: the eight `id mod 8` classes are split among
//!   the neighbours that hold the stream, so each fragment is pushed once.
//! - What a push missed, a member pulls (`2b`) from a neighbour whose map shows it.
//! - Every fragment a member gets it stores, and pushes on to neighbours that asked for
//!   its class: members relay the stream to each other.
//!
//! Sans-IO: sends go through the caller's [`Endpoint`].

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::fragments::{
    FragmentStore, Fragmenter, FragmentsMap, GroupFragment, Reassembler, ReassemblerConfig,
    ReassemblyStats, StoreConfig,
};
use super::peer_messages::{
    GroupFlowRole, MediaReportMessage, MediaSubscription, DEFAULT_FETCH_PERIOD_MS,
    DEFAULT_UPDATE_PERIOD_MS, DEFAULT_WINDOW_MS,
};
use crate::media::MediaMessage;
use crate::proto::endpoint::SessionId;
use crate::proto::{Endpoint, Instant};

/// Fragments not delivered within this long are abandoned rather than retransmitted: a
/// pull fetches them from someone else.
const FRAGMENT_LIFETIME: Duration = Duration::from_secs(3);

/// Where a member's fragments came from, and what it did with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Fragments received that were new to us.
    pub fragments_received: u64,
    /// Fragments received that we had already.
    pub duplicates: u64,
    /// Fragments we sent to neighbours (pushed or pulled).
    pub fragments_sent: u64,
    /// Pull requests we sent.
    pub pulls_sent: u64,
    /// Fragments from peers we could not read (dropped).
    pub unreadable: u64,
}

/// One neighbour's side of the stream.
#[derive(Debug, Default)]
struct PeerMedia {
    /// Our media report flow to it (answers its report flow).
    our_report_flow: Option<u64>,
    /// Its media report flow to us for this stream.
    their_report_flow: Option<u64>,
    /// Our media flow to it (answers its media report flow).
    our_media_flow: Option<u64>,
    /// Its media flow to us.
    their_media_flow: Option<u64>,
    subscription_sent: bool,
    /// It holds the stream (sent us a subscription).
    has_stream: bool,
    map: Option<FragmentsMap>,
    /// Its maps' newest ids and when they came, newest last, while not yet settled.
    announcements: std::collections::VecDeque<(Instant, u64)>,
    /// The newest id it announced at least a pull delay ago: pushes had their chance.
    settled: u64,
    /// The `id mod 8` classes it asked us to push.
    their_push_mask: u8,
    /// The classes we asked it to push.
    our_push_mask: u8,
    /// The newest id we announced to it in a map.
    announced: u64,
}

pub struct GroupStream {
    pub subscription: MediaSubscription,
    store: FragmentStore,
    reassembler: Reassembler,
    /// Set when we publish.
    fragmenter: Option<Fragmenter>,
    peers: HashMap<SessionId, PeerMedia>,
    next_map: Option<Instant>,
    next_pull: Option<Instant>,
    /// Ids pulled and when, so a pull is not repeated within a fetch period.
    pulled: HashMap<u64, Instant>,
    /// The neighbours holding the stream changed: push classes are dealt out again.
    rebalance_push: bool,
    /// Pull passes so far: each starts at the next neighbour, so a pull that went
    /// unanswered is retried elsewhere.
    pull_round: usize,
    counters: StreamCounters,
}

/// An availability map not delivered within this long is abandoned.
const MAP_LIFETIME: Duration = Duration::from_secs(1);
/// Pull requests one pass sends at most.
const PULLS_PER_PASS: usize = 64;

impl GroupStream {
    /// The stream as its publisher: `key` is 32 random bytes naming it in the group.
    pub fn publish(name: &str, key: [u8; 32]) -> Self {
        let mut s = Self::new(MediaSubscription {
            stream_name: name.to_owned(),
            stream_key: key,
            send_to_all: false,
            window_ms: DEFAULT_WINDOW_MS,
            update_period_ms: DEFAULT_UPDATE_PERIOD_MS,
            fetch_period_ms: DEFAULT_FETCH_PERIOD_MS,
        });
        s.fragmenter = Some(Fragmenter::new());
        s
    }

    /// The stream as a member learned it from a neighbour's subscription.
    pub fn joined(subscription: MediaSubscription) -> Self {
        Self::new(subscription)
    }

    fn new(subscription: MediaSubscription) -> Self {
        let store = FragmentStore::new(StoreConfig {
            window: Duration::from_millis(subscription.window_ms.clamp(1_000, 60_000)),
            ..StoreConfig::default()
        });
        GroupStream {
            subscription,
            store,
            reassembler: Reassembler::new(ReassemblerConfig::default()),
            fragmenter: None,
            peers: HashMap::new(),
            next_map: None,
            next_pull: None,
            pulled: HashMap::new(),
            rebalance_push: false,
            pull_round: 0,
            counters: StreamCounters::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.subscription.stream_name
    }

    pub fn key(&self) -> &[u8; 32] {
        &self.subscription.stream_key
    }

    pub fn is_publisher(&self) -> bool {
        self.fragmenter.is_some()
    }

    pub fn counters(&self) -> StreamCounters {
        self.counters
    }

    pub fn reassembly(&self) -> ReassemblyStats {
        self.reassembler.stats()
    }

    /// Fragments held now, and their bytes (bounded by the store's window and cap).
    pub fn held(&self) -> (usize, usize) {
        (self.store.len(), self.store.bytes())
    }

    fn update_period(&self) -> Duration {
        Duration::from_millis(self.subscription.update_period_ms.clamp(20, 5_000))
    }

    fn fetch_period(&self) -> Duration {
        Duration::from_millis(self.subscription.fetch_period_ms.clamp(100, 10_000))
    }

    /// A neighbour passed the group handshake (or we took the stream up while it was a
    /// neighbour): announce the stream to it, as members forward a stream they learn to
    /// their other neighbours. Ours answers its report flow, `their_report_flow`.
    pub fn on_neighbour(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionId,
        their_report_flow: u64,
    ) {
        self.peers.entry(session).or_default();
        self.send_subscription(endpoint, session, their_report_flow);
        self.next_map.get_or_insert(now);
        self.next_pull.get_or_insert(now);
    }

    pub fn on_neighbour_gone(&mut self, session: SessionId) {
        if self.peers.remove(&session).is_some_and(|p| p.has_stream) {
            self.rebalance_push = true;
        }
    }

    /// The neighbour announced this stream on its media report flow `flow`.
    pub fn on_subscription(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionId,
        flow: u64,
        their_report_flow: u64,
    ) {
        let peer = self.peers.entry(session).or_default();
        peer.their_report_flow = Some(flow);
        if !peer.has_stream {
            peer.has_stream = true;
            self.rebalance_push = true;
        }
        self.send_subscription(endpoint, session, their_report_flow);
        self.next_map.get_or_insert(now);
        self.next_pull.get_or_insert(now);
        self.deal_push_classes(endpoint);
    }

    fn send_subscription(&mut self, endpoint: &mut Endpoint, session: SessionId, answer: u64) {
        let Some(peer) = self.peers.get_mut(&session) else {
            return;
        };
        if peer.subscription_sent {
            return;
        }
        let Some(s) = endpoint.session_mut(session) else {
            return;
        };
        let flow = *peer.our_report_flow.get_or_insert_with(|| {
            s.open_flow(GroupFlowRole::MediaReport.metadata(), Some(answer))
        });
        let m = MediaReportMessage::Subscription(self.subscription.clone());
        s.send(flow, &m.encode(), None);
        peer.subscription_sent = true;
    }

    /// Deals the eight push classes out among the neighbours that hold the stream, and
    /// tells each its share. The publisher asks nobody.
    fn deal_push_classes(&mut self, endpoint: &mut Endpoint) {
        if !std::mem::take(&mut self.rebalance_push) || self.is_publisher() {
            return;
        }
        let mut holders: Vec<SessionId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.has_stream && p.our_report_flow.is_some())
            .map(|(s, _)| *s)
            .collect();
        holders.sort_unstable();
        let k = holders.len();
        for (i, session) in holders.into_iter().enumerate() {
            let mask = (0..8u8)
                .filter(|b| usize::from(*b) % k == i)
                .fold(0u8, |m, b| m | (1 << b));
            let Some(peer) = self.peers.get_mut(&session) else {
                continue;
            };
            if peer.our_push_mask == mask {
                continue;
            }
            peer.our_push_mask = mask;
            if let (Some(flow), Some(s)) = (peer.our_report_flow, endpoint.session_mut(session)) {
                s.send(flow, &MediaReportMessage::Push { mask }.encode(), None);
            }
        }
    }

    /// A message on the neighbour's media report flow for this stream (its
    /// subscription is the member's business: [`GroupStream::on_subscription`]).
    pub fn on_media_report(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionId,
        message: MediaReportMessage,
    ) {
        match message {
            MediaReportMessage::Map(map) => {
                if let Some(peer) = self.peers.get_mut(&session) {
                    let newer = peer.map.as_ref().map_or(true, |m| map.last_id > m.last_id);
                    if newer {
                        peer.announcements.push_back((now, map.last_id));
                        peer.map = Some(map);
                    }
                }
            }
            MediaReportMessage::Push { mask } => {
                if let Some(peer) = self.peers.get_mut(&session) {
                    peer.their_push_mask = mask;
                }
            }
            MediaReportMessage::Pull { fragment } => {
                if let Some(f) = self.store.get(fragment).cloned() {
                    self.send_fragment(now, endpoint, session, &f);
                }
            }
            MediaReportMessage::Subscription(_) | MediaReportMessage::End { .. } => {}
        }
    }

    /// Queues `fragment` on our media flow to the neighbour (opened on first use,
    /// answering its media report flow for the stream).
    fn send_fragment(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionId,
        fragment: &GroupFragment,
    ) {
        let Some(peer) = self.peers.get_mut(&session) else {
            return;
        };
        let Some(answer) = peer.their_report_flow else {
            return;
        };
        let Some(s) = endpoint.session_mut(session) else {
            return;
        };
        let flow = *peer
            .our_media_flow
            .get_or_insert_with(|| s.open_flow(GroupFlowRole::Media.metadata(), Some(answer)));
        let mut header = Vec::with_capacity(fragment.header_len());
        fragment.write_header(&mut header);
        s.send_parts(
            flow,
            &[&header, &fragment.payload],
            Some(now + FRAGMENT_LIFETIME),
        );
        self.counters.fragments_sent += 1;
    }

    /// Pushes `fragment` to every neighbour that asked for its class, but `except`.
    fn push(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        fragment: &GroupFragment,
        except: Option<SessionId>,
    ) {
        let class = 1u8 << (fragment.id % 8);
        let targets: Vec<SessionId> = self
            .peers
            .iter()
            .filter(|(s, p)| Some(**s) != except && p.their_push_mask & class != 0)
            .map(|(s, _)| *s)
            .collect();
        for session in targets {
            self.send_fragment(now, endpoint, session, fragment);
        }
    }

    /// The publisher's media: cut into fragments, stored, pushed to who asked.
    pub fn send_media(&mut self, now: Instant, endpoint: &mut Endpoint, message: &MediaMessage) {
        let Some(fragmenter) = &mut self.fragmenter else {
            return;
        };
        let Ok(fragments) = fragmenter.fragment(message) else {
            return; // Over 245 kB: NetGroup framing cannot carry it.
        };
        for f in fragments {
            self.store.insert(now, f.clone());
            self.push(now, endpoint, &f, None);
        }
    }

    /// Marks a flow the neighbour opened as its media flow for this stream.
    pub fn on_media_flow(&mut self, session: SessionId, flow: u64) {
        if let Some(peer) = self.peers.get_mut(&session) {
            peer.their_media_flow = Some(flow);
        }
    }

    /// A fragment from a neighbour: stored, given to our player, and relayed.
    pub fn on_fragment(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionId,
        message: Bytes,
    ) {
        let Ok(fragment) = GroupFragment::parse(&message) else {
            self.counters.unreadable += 1;
            return;
        };
        match self.store.insert(now, fragment.clone()) {
            super::fragments::Stored::New => {
                self.counters.fragments_received += 1;
                self.pulled.remove(&fragment.id);
                if !self.is_publisher() {
                    self.reassembler.insert(now, fragment.clone());
                }
                self.push(now, endpoint, &fragment, Some(session));
            }
            super::fragments::Stored::Duplicate => self.counters.duplicates += 1,
            _ => {}
        }
    }

    /// The next message for our player, in order, starting where it decodes.
    pub fn poll_message(&mut self) -> Option<MediaMessage> {
        while let Some(m) = self.reassembler.poll_message() {
            if let Some(media) = m.to_media() {
                return Some(media);
            }
        }
        None
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_map,
            self.next_pull,
            self.reassembler.poll_timeout(),
            self.store.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Periodic work: expiry, availability maps, pulls.
    pub fn handle_timeout(&mut self, now: Instant, endpoint: &mut Endpoint) {
        self.store.expire(now);
        let floor = self.store.floor();
        self.reassembler.skip_before(floor);
        self.reassembler.handle_timeout(now);
        self.deal_push_classes(endpoint);
        if self.next_map.is_some_and(|t| now >= t) {
            self.next_map = Some(now + self.update_period());
            self.send_maps(now, endpoint);
        }
        if self.next_pull.is_some_and(|t| now >= t) {
            self.next_pull = Some(now + self.update_period());
            if !self.is_publisher() {
                self.pull(now, endpoint);
            }
        }
    }

    /// Our availability map to every neighbour we announced the stream to, when we hold
    /// something newer than we last told it.
    fn send_maps(&mut self, now: Instant, endpoint: &mut Endpoint) {
        let Some(newest) = self.store.newest() else {
            return;
        };
        let Some(map) = self.store.map() else {
            return;
        };
        let bytes = MediaReportMessage::Map(map).encode();
        for (session, peer) in &mut self.peers {
            let Some(flow) = peer.our_report_flow else {
                continue;
            };
            if peer.announced >= newest {
                continue;
            }
            if let Some(s) = endpoint.session_mut(*session) {
                // A map goes stale fast; a later one replaces it.
                s.send(flow, &bytes, Some(now + MAP_LIFETIME));
                peer.announced = newest;
            }
        }
    }

    /// Pulls what neighbours' maps show and we lack, each id from one neighbour at a
    /// time, retried elsewhere after a fetch period.
    fn pull(&mut self, now: Instant, endpoint: &mut Endpoint) {
        let fetch = self.fetch_period();
        self.pulled.retain(|_, at| now < *at + fetch * 2);
        let grace = fetch / 5;
        for peer in self.peers.values_mut() {
            while let Some(&(at, id)) = peer.announcements.front() {
                if now < at + grace {
                    break;
                }
                peer.settled = peer.settled.max(id);
                peer.announcements.pop_front();
            }
        }
        let mut sessions: Vec<SessionId> = self.peers.keys().copied().collect();
        sessions.sort_unstable();
        if !sessions.is_empty() {
            self.pull_round = self.pull_round.wrapping_add(1);
            let n = sessions.len();
            sessions.rotate_left(self.pull_round % n);
        }
        let mut budget = PULLS_PER_PASS;
        let mut wanted: Vec<(SessionId, u64)> = Vec::new();
        for session in &sessions {
            let Some(peer) = self.peers.get(session) else {
                continue;
            };
            let (Some(map), Some(_)) = (&peer.map, peer.our_report_flow) else {
                continue;
            };
            // Ids announced less than a pull delay ago are left to the pushes in flight;
            // from where our player stands (or just behind the newest, before it
            // starts) up to the rest.
            let to = peer.settled;
            let from = self
                .reassembler
                .next_id()
                .unwrap_or_else(|| map.last_id.saturating_sub(16))
                .max(self.store.floor());
            for id in self.store.pull_candidates(map, from, to) {
                if budget == 0 {
                    break;
                }
                let recent = self.pulled.get(&id).is_some_and(|at| now < *at + fetch);
                let taken = wanted.iter().any(|(_, w)| *w == id);
                if recent || taken {
                    continue;
                }
                wanted.push((*session, id));
                budget -= 1;
            }
        }
        for (session, id) in wanted {
            let Some(peer) = self.peers.get(&session) else {
                continue;
            };
            let Some(flow) = peer.our_report_flow else {
                continue;
            };
            if let Some(s) = endpoint.session_mut(session) {
                s.send(
                    flow,
                    &MediaReportMessage::Pull { fragment: id }.encode(),
                    None,
                );
                self.pulled.insert(id, now);
                self.counters.pulls_sent += 1;
            }
        }
    }
}
