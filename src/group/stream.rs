//! A member's copy of one live stream in its group (docs/netgroup.md §3.5-§3.8): the
//! fragments it holds, the messages reassembled from them for its player, and per
//! neighbour, the flows, the availability map and the push masks.
//!
//! How fragments move:
//! - The publisher cuts media into numbered fragments and keeps them in its store.
//! - Members announce the stream to each neighbour (subscription, `21`) and publish
//!   availability maps (`22`).
//! - A member asks one neighbour to push each of the eight `id mod 8` classes (`23`).
//!   Before any fragment came, the classes are dealt round the neighbours that hold the
//!   stream. From then on the push graph adapts, as librtmfp and Flash rotate push
//!   requests and drop slow pushers: for each class we count, of the new fragments, those
//!   its pusher delivered first (pushed, before any pull) and those that came otherwise
//!   (pulled, or from someone else first). When the late ones reach three and outnumber
//!   the timely ones, the class moves to another holder: one we never moved it from (or
//!   longest ago), then one whose map shows the class's recent fragments, then the one we
//!   ask least. Pushers that are fed the class promptly keep it, so each member ends with
//!   one timely pusher per class and the classes form trees from the publisher.
//! - A member pushes each fragment to the neighbours whose request for its class it
//!   honours: at most `PUBLISHER_PUSH_LIMIT` (2) neighbours per class for the publisher,
//!   `MEMBER_PUSH_LIMIT` (3) for the others, first asked first served. A request over the
//!   limit is not refused on the wire (NetGroup has no refusal); it is just not honoured,
//!   and the asker, getting nothing of that class from us, moves it elsewhere. So the
//!   publisher uploads the stream about twice, and the group relays it.
//! - What a push missed, a member pulls (`2b`) after a grace period: ids a neighbour's
//!   map showed a while ago and we still lack, each asked of whichever neighbour's map
//!   shows it, spread over them (the first to show an id is most often the publisher).
//! - Every fragment a member gets it stores, and pushes on to neighbours that asked for
//!   its class: members relay the stream to each other.
//!
//! Memory per neighbour is fixed (its map, counters, a last-failure time per class);
//! pulls in flight expire after two fetch periods.
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
    /// Fragments we cut from our own media (the publisher).
    pub fragments_published: u64,
    /// Fragments we sent because a neighbour pulled them (part of `fragments_sent`).
    pub pulls_answered: u64,
    /// Push classes we moved from a neighbour that was not delivering them first.
    pub push_rotations: u64,
    /// New fragments that came by IP multicast, each in its own datagram.
    pub from_multicast: u64,
    /// New fragments rebuilt from IP multicast repair datagrams (FEC); not counted in
    /// `from_multicast`.
    pub repaired_fec: u64,
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
    /// The part of `their_push_mask` we honour (at most a push limit of neighbours per
    /// class).
    granted_mask: u8,
    /// The classes we asked it to push.
    our_push_mask: u8,
    /// The newest id we announced to it in a map.
    announced: u64,
    /// New fragments it sent us.
    received: u64,
    /// Per class, when we last moved the class away from it (it was not delivering).
    failed_at: [Option<Instant>; 8],
}

/// How the neighbour we asked to push one class is doing: of the new fragments of the
/// class since we asked it, how many it delivered first (pushed before we pulled) and
/// how many came otherwise (pulled, or from someone else first).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ClassRecord {
    /// Fragments up to this id were under way before the pusher was asked: not counted.
    since: u64,
    timely: u32,
    late: u32,
}

impl ClassRecord {
    fn new(since: u64) -> Self {
        ClassRecord {
            since,
            ..Self::default()
        }
    }

    fn record(&mut self, id: u64, timely: bool) {
        if id <= self.since {
            return;
        }
        if timely {
            self.timely += 1;
        } else {
            self.late += 1;
        }
        // Recent fragments weigh more: a pusher that was good and turns bad is noticed
        // within a few fragments.
        if self.timely + self.late > RECORD_SPAN {
            self.timely /= 2;
            self.late /= 2;
        }
    }

    /// The pusher is not delivering the class first: move it elsewhere.
    fn failing(&self) -> bool {
        self.late >= LATE_TO_ROTATE && self.late > self.timely
    }
}

/// Honours push requests, in order, up to `limit` neighbours per class: each entry is a
/// neighbour's (asked, granted) masks; granted bits not asked any more are dropped, and
/// asked bits are granted while the class has room.
fn grant_pushes(requests: &mut [(u8, u8)], limit: usize) {
    let mut load = [0usize; 8];
    for (asked, granted) in requests.iter_mut() {
        *granted &= *asked;
        for (c, n) in load.iter_mut().enumerate() {
            *n += usize::from(*granted & (1 << c) != 0);
        }
    }
    for (asked, granted) in requests.iter_mut() {
        for (c, n) in load.iter_mut().enumerate() {
            let bit = 1u8 << c;
            if *asked & bit != 0 && *granted & bit == 0 && *n < limit {
                *granted |= bit;
                *n += 1;
            }
        }
    }
}

pub struct GroupStream {
    pub subscription: MediaSubscription,
    /// Overrides the push limit (the server's member under native IP multicast: 0).
    push_limit: Option<usize>,
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
    /// Per `id mod 8` class, the neighbour we asked to push it, and how it is doing.
    pushers: [Option<SessionId>; 8],
    records: [ClassRecord; 8],
    /// Pull passes so far: each starts at the next neighbour, so a pull that went
    /// unanswered is retried elsewhere.
    pull_round: usize,
    /// When IP multicast last brought us a fragment of the stream (new or not).
    multicast_seen: Option<Instant>,
    /// IP multicast feeds us: we ask no neighbour to push, and pull only what it lost.
    fed_by_multicast: bool,
    counters: StreamCounters,
}

/// A member whose first fragment has an id up to this came in at the stream's start: it
/// plays from fragment 1.
const STREAM_START_IDS: u64 = 32;
/// An availability map not delivered within this long is abandoned.
const MAP_LIFETIME: Duration = Duration::from_secs(1);
/// Pull requests one pass sends at most.
const PULLS_PER_PASS: usize = 64;
/// Neighbours the publisher pushes one class to at most: the rest of the group gets it
/// from them.
const PUBLISHER_PUSH_LIMIT: usize = 2;
/// Neighbours any other member pushes one class to at most.
const MEMBER_PUSH_LIMIT: usize = 3;
/// Fragments of a class that must come late (and more than came first) before its
/// pusher is replaced.
const LATE_TO_ROTATE: u32 = 3;
/// Fragments a class record weighs before older ones count half.
const RECORD_SPAN: u32 = 32;
/// Ids past the newest we know when a pusher is asked, that may still come otherwise
/// while the request travels.
const ASK_SLACK: u64 = 8;
/// A neighbour whose map shows the fragments of a class among the `FRESH_SPAN` ids
/// `FRESH_LAG` behind the newest we know is fed that class promptly.
const FRESH_SPAN: u64 = 48;
const FRESH_LAG: u64 = 16;
/// IP multicast that brought a fragment within this long feeds us (Fusion): pushes are
/// asked again when it has been quiet for longer.
const MULTICAST_FEEDS_FOR: Duration = Duration::from_secs(1);

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
            push_limit: None,
            subscription,
            store,
            reassembler: Reassembler::new(ReassemblerConfig::default()),
            fragmenter: None,
            peers: HashMap::new(),
            next_map: None,
            next_pull: None,
            pulled: HashMap::new(),
            rebalance_push: false,
            pushers: [None; 8],
            records: [ClassRecord::default(); 8],
            pull_round: 0,
            multicast_seen: None,
            fed_by_multicast: false,
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

    /// New (non-duplicate) fragments the neighbour on `session` sent us, while it is a
    /// neighbour.
    pub fn received_from(&self, session: SessionId) -> u64 {
        self.peers.get(&session).map_or(0, |p| p.received)
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
        if let Some(p) = self.peers.remove(&session) {
            if p.has_stream {
                self.rebalance_push = true;
            }
            if p.granted_mask != 0 {
                self.grant();
            }
        }
        for pusher in &mut self.pushers {
            if *pusher == Some(session) {
                *pusher = None;
                self.rebalance_push = true;
            }
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

    /// Neighbours that hold the stream and that we can ask, in session order.
    fn holders(&self) -> Vec<SessionId> {
        let mut holders: Vec<SessionId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.has_stream && p.our_report_flow.is_some())
            .map(|(s, _)| *s)
            .collect();
        holders.sort_unstable();
        holders
    }

    /// The newest fragment id we know of (ours or in a neighbour's map).
    fn newest_known(&self) -> u64 {
        self.peers
            .values()
            .filter_map(|p| p.map.as_ref().map(|m| m.last_id))
            .chain(self.store.newest())
            .max()
            .unwrap_or(0)
    }

    /// Asks `pusher` for `class` from now on, judged on fragments from here.
    fn assign(&mut self, class: usize, pusher: Option<SessionId>) {
        self.pushers[class] = pusher;
        self.records[class] = ClassRecord::new(self.newest_known() + ASK_SLACK);
    }

    /// Who to ask for `class` instead of `current`: among the other holders, one we
    /// never moved the class away from (or longest ago), then the one whose map shows
    /// the most of the class's recent fragments (it is fed the class promptly), then the
    /// one we ask for the fewest classes, then the next after `current` in session order.
    fn choose_pusher(&self, class: usize, current: Option<SessionId>) -> Option<SessionId> {
        let holders = self.holders();
        let start = current
            .and_then(|c| holders.iter().position(|h| *h > c))
            .unwrap_or(0);
        let n = holders.len();
        let newest = self.newest_known();
        let recent =
            newest.saturating_sub(FRESH_SPAN + FRESH_LAG)..=newest.saturating_sub(FRESH_LAG);
        (0..n)
            .map(|i| holders[(start + i) % n])
            .filter(|h| Some(*h) != current)
            .min_by_key(|h| {
                let peer = self.peers.get(h);
                let failed = peer.and_then(|p| p.failed_at[class]);
                let fresh = peer.and_then(|p| p.map.as_ref()).map_or(0, |m| {
                    recent
                        .clone()
                        .filter(|id| id % 8 == class as u64 && m.contains(*id))
                        .count()
                });
                let load = self.pushers.iter().filter(|p| **p == Some(*h)).count();
                (failed, std::cmp::Reverse(fresh), load)
            })
    }

    /// Deals the push classes among the neighbours that hold the stream when they
    /// change: before any fragment came, the eight classes are dealt round; after, only
    /// classes without a pusher (it left) get one, and the rest stays as it proved
    /// itself. The publisher asks nobody.
    fn deal_push_classes(&mut self, endpoint: &mut Endpoint) {
        if !std::mem::take(&mut self.rebalance_push) || self.is_publisher() || self.fed_by_multicast
        {
            return;
        }
        let holders = self.holders();
        for class in 0..8 {
            if self.pushers[class].is_some_and(|p| !holders.contains(&p)) {
                self.pushers[class] = None;
            }
        }
        if self.counters.fragments_received == 0 && !holders.is_empty() {
            for class in 0..8 {
                self.assign(class, Some(holders[class % holders.len()]));
            }
        } else {
            for class in 0..8 {
                if self.pushers[class].is_none() {
                    let pusher = self.choose_pusher(class, None);
                    self.assign(class, pusher);
                }
            }
        }
        self.send_push_masks(endpoint);
    }

    /// Moves each class whose pusher is not delivering it first to another holder.
    fn rotate_pushers(&mut self, now: Instant, endpoint: &mut Endpoint) {
        if self.is_publisher() {
            return;
        }
        let mut moved = false;
        for class in 0..8 {
            let Some(current) = self.pushers[class] else {
                continue;
            };
            if !self.records[class].failing() {
                continue;
            }
            if let Some(p) = self.peers.get_mut(&current) {
                p.failed_at[class] = Some(now);
            }
            let next = self.choose_pusher(class, Some(current)).unwrap_or(current);
            self.assign(class, Some(next));
            if next != current {
                self.counters.push_rotations += 1;
                moved = true;
            }
        }
        if moved {
            self.send_push_masks(endpoint);
        }
    }

    /// Tells every holder whose share of the classes changed its new push mask.
    fn send_push_masks(&mut self, endpoint: &mut Endpoint) {
        let pushers = self.pushers;
        for (session, peer) in &mut self.peers {
            let mask = (0..8)
                .filter(|c| pushers[*c] == Some(*session))
                .fold(0u8, |m, c| m | (1 << c));
            if peer.our_push_mask == mask {
                continue;
            }
            let Some(flow) = peer.our_report_flow else {
                continue;
            };
            if let Some(s) = endpoint.session_mut(*session) {
                s.send(flow, &MediaReportMessage::Push { mask }.encode(), None);
                peer.our_push_mask = mask;
            }
        }
    }

    /// Honours neighbours' push requests up to the push limit per class, first asked
    /// first served (in session order among those waiting).
    fn grant(&mut self) {
        let limit = self.push_limit.unwrap_or(if self.is_publisher() {
            PUBLISHER_PUSH_LIMIT
        } else {
            MEMBER_PUSH_LIMIT
        });
        let mut sessions: Vec<SessionId> = self.peers.keys().copied().collect();
        sessions.sort_unstable();
        let mut requests: Vec<(u8, u8)> = sessions
            .iter()
            .map(|s| (self.peers[s].their_push_mask, self.peers[s].granted_mask))
            .collect();
        grant_pushes(&mut requests, limit);
        for (s, (_, granted)) in sessions.iter().zip(requests) {
            if let Some(p) = self.peers.get_mut(s) {
                p.granted_mask = granted;
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
                    self.grant();
                }
            }
            MediaReportMessage::Pull { fragment } => {
                if let Some(f) = self.store.get(fragment).cloned() {
                    self.send_fragment(now, endpoint, session, &f);
                    self.counters.pulls_answered += 1;
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

    /// Pushes `fragment` to every neighbour whose request for its class we honour, but
    /// `except`.
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
            .filter(|(s, p)| Some(**s) != except && p.granted_mask & class != 0)
            .map(|(s, _)| *s)
            .collect();
        for session in targets {
            self.send_fragment(now, endpoint, session, fragment);
        }
    }

    /// The publisher's media: cut into fragments, stored, pushed to who asked.
    /// Returns the fragments cut (for the IP multicast sender).
    pub fn send_media(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        message: &MediaMessage,
    ) -> Vec<GroupFragment> {
        let Some(fragmenter) = &mut self.fragmenter else {
            return Vec::new();
        };
        let Ok(fragments) = fragmenter.fragment(message) else {
            return Vec::new(); // Over 245 kB: NetGroup framing cannot carry it.
        };
        for f in &fragments {
            self.counters.fragments_published += 1;
            self.store.insert(now, f.clone());
            self.push(now, endpoint, f, None);
        }
        fragments
    }

    /// A fragment that came by IP multicast (already authenticated), in its own datagram
    /// or `repaired` from its block's repairs: stored and played like one from a
    /// neighbour, and with `relay` (Fusion) pushed on to the neighbours that asked for
    /// its class. It says nothing of how well our pushers do.
    ///
    /// While IP multicast brings the stream, we ask no neighbour to push it: every push
    /// would duplicate a datagram that reached us anyway. Pulls repair what it lost.
    pub fn on_multicast_fragment(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        message: Bytes,
        relay: bool,
        repaired: bool,
    ) {
        self.multicast_seen = Some(now);
        if !self.fed_by_multicast && !self.is_publisher() {
            self.fed_by_multicast = true;
            self.pushers = [None; 8];
            self.send_push_masks(endpoint);
        }
        if let Some((fragment, _)) = self.take_fragment(now, &message) {
            if repaired {
                self.counters.repaired_fec += 1;
            } else {
                self.counters.from_multicast += 1;
            }
            if relay {
                self.push(now, endpoint, &fragment, None);
            }
        }
    }

    /// Stores a fragment that came from anywhere and, if new, gives it to our player;
    /// returns it if it was new, and whether we had pulled it. Unreadable and duplicate
    /// fragments are counted.
    fn take_fragment(&mut self, now: Instant, message: &Bytes) -> Option<(GroupFragment, bool)> {
        let Ok(fragment) = GroupFragment::parse(message) else {
            self.counters.unreadable += 1;
            return None;
        };
        match self.store.insert(now, fragment.clone()) {
            super::fragments::Stored::New => {}
            super::fragments::Stored::Duplicate => {
                self.counters.duplicates += 1;
                return None;
            }
            _ => return None,
        }
        self.counters.fragments_received += 1;
        let pulled = self.pulled.remove(&fragment.id).is_some();
        if !self.is_publisher() {
            if fragment.id <= STREAM_START_IDS {
                // The stream has just begun: play it from its first fragment (pulling
                // what the first pushes missed), metadata and codec headers first, as
                // the publisher sent them.
                self.reassembler.start_at(1);
            }
            self.reassembler.insert(now, fragment.clone());
        }
        Some((fragment, pulled))
    }

    /// Overrides how many neighbours we push each class to (see `grant`).
    pub fn set_push_limit(&mut self, limit: usize) {
        self.push_limit = Some(limit);
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
        let Some((fragment, pulled)) = self.take_fragment(now, &message) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&session) {
            peer.received += 1;
        }
        // Timely: pushed by the neighbour we asked for the class, before a pull.
        let class = (fragment.id % 8) as usize;
        let timely = !pulled && self.pushers[class] == Some(session);
        self.records[class].record(fragment.id, timely);
        self.push(now, endpoint, &fragment, Some(session));
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
            self.multicast_quiet_at(),
            self.reassembler.poll_timeout(),
            self.store.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When IP multicast, if it brings nothing more, stops feeding us.
    fn multicast_quiet_at(&self) -> Option<Instant> {
        self.multicast_seen
            .filter(|_| self.fed_by_multicast)
            .map(|t| t + MULTICAST_FEEDS_FOR)
    }

    /// Whether IP multicast feeds us the stream (we ask no neighbour to push it).
    pub fn fed_by_multicast(&self) -> bool {
        self.fed_by_multicast
    }

    /// Periodic work: expiry, availability maps, pulls.
    pub fn handle_timeout(&mut self, now: Instant, endpoint: &mut Endpoint) {
        if self.multicast_quiet_at().is_some_and(|t| now >= t) {
            // IP multicast went quiet (or never reaches us now): neighbours push again.
            self.fed_by_multicast = false;
            self.rebalance_push = true;
        }
        self.store.expire(now);
        let floor = self.store.floor();
        self.reassembler.skip_before(floor);
        self.reassembler.handle_timeout(now);
        self.deal_push_classes(endpoint);
        self.grant();
        if self.next_map.is_some_and(|t| now >= t) {
            self.next_map = Some(now + self.update_period());
            self.send_maps(now, endpoint);
        }
        if self.next_pull.is_some_and(|t| now >= t) {
            self.next_pull = Some(now + self.update_period());
            if !self.is_publisher() {
                self.rotate_pushers(now, endpoint);
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
        // A fifth of the fetch period (500 ms by default). A tenth (250 ms, the minimum
        // retransmission timeout) cut latency without loss (p99 700 -> 450 ms at 500
        // members) but, with 5% loss, raced retransmissions: more pulls, the server
        // uploading 6.5x instead of 4.7x, and less delivered (bench group).
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
        // An overdue id is asked of whichever neighbour's map shows it, the one asked
        // least this pass first (then in the pass's order), not only of those that showed
        // it a pull delay ago: the first to show an id is most often the publisher, and
        // the others spare it.
        let mut asked: HashMap<SessionId, usize> = HashMap::new();
        for (source, id) in &mut wanted {
            let holders = sessions.iter().filter(|s| {
                self.peers.get(s).is_some_and(|p| {
                    p.our_report_flow.is_some() && p.map.as_ref().is_some_and(|m| m.contains(*id))
                })
            });
            if let Some(s) = holders.min_by_key(|s| asked.get(s).copied().unwrap_or(0)) {
                *source = *s;
            }
            *asked.entry(*source).or_default() += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_granted_first_asked_first_served_up_to_the_limit() {
        // Three neighbours ask for class 0; two more classes are asked once.
        let mut r = [(0b0000_0001, 0), (0b0000_0011, 0), (0b0000_0101, 0)];
        grant_pushes(&mut r, 2);
        assert_eq!(r.map(|(_, g)| g), [0b001, 0b011, 0b100]);
        // The first gives class 0 up: the waiting third gets it.
        r[0].0 = 0;
        grant_pushes(&mut r, 2);
        assert_eq!(r.map(|(_, g)| g), [0, 0b011, 0b101]);
        // A grant held is kept when someone earlier in order asks again.
        r[0].0 = 0b1;
        grant_pushes(&mut r, 2);
        assert_eq!(r.map(|(_, g)| g), [0, 0b011, 0b101]);
    }

    #[test]
    fn receipts_are_counted_per_neighbour_and_duplicates_are_not() {
        let mut endpoint =
            Endpoint::new(crate::proto::endpoint::EndpointConfig::default(), [3; 32]);
        let mut stream = GroupStream::joined(GroupStream::publish("cam", [1; 32]).subscription);
        let now = Instant::ZERO;
        for session in [7, 9] {
            stream.on_neighbour(now, &mut endpoint, session, 1);
        }
        let fragments = Fragmenter::new()
            .fragment_raw(9, 0, &Bytes::from(vec![0x27; 2000]))
            .unwrap();
        let wire = |f: &GroupFragment| {
            let mut out = Vec::new();
            f.encode(&mut out);
            Bytes::from(out)
        };
        stream.on_fragment(now, &mut endpoint, 7, wire(&fragments[0]));
        stream.on_fragment(now, &mut endpoint, 9, wire(&fragments[0]));
        stream.on_fragment(now, &mut endpoint, 9, wire(&fragments[1]));
        stream.on_fragment(now, &mut endpoint, 7, wire(&fragments[1]));
        assert_eq!(stream.received_from(7), 1);
        assert_eq!(stream.received_from(9), 1);
        assert_eq!(stream.received_from(8), 0);
        let c = stream.counters();
        assert_eq!((c.fragments_received, c.duplicates), (2, 2));
        stream.on_neighbour_gone(7);
        assert_eq!(stream.received_from(7), 0);
    }

    #[test]
    fn a_pusher_fails_when_late_fragments_outweigh_timely_ones() {
        let mut r = ClassRecord::new(100);
        // Ids up to `since` were under way before the pusher was asked.
        for id in 90..=100 {
            r.record(id, false);
        }
        assert_eq!((r.timely, r.late), (0, 0));
        r.record(108, false);
        r.record(116, false);
        assert!(!r.failing(), "two late are not enough");
        r.record(124, false);
        assert!(r.failing());
        // A good pusher that turns bad is noticed within a record span.
        let mut r = ClassRecord::new(0);
        for id in 1..=200 {
            r.record(id, true);
        }
        assert!(!r.failing());
        let mut late = 0;
        while !r.failing() {
            late += 1;
            r.record(200 + late, false);
        }
        assert!(late <= u64::from(RECORD_SPAN), "noticed after {late}");
    }
}
