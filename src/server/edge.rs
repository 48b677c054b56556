//! The edge server, sans-IO: one RTMFP endpoint and any number of RTMP connections
//! feeding one application. RTMFP flows and RTMP chunk streams are mapped onto the
//! application's `(connection, stream id)` view here, and nowhere else.

use std::collections::VecDeque;

// Keys here are ids we hand out (connections, sessions, flows): no hash flooding to fear,
// and every media message looks several up per player.
use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::app::{
    App, AppEvent, ConnId, FanOut, GroupFeed, Outgoing, Output, Relay, ReloadOutcome,
};
use super::config::ServerConfig;
use super::directory::Directory;
use super::outbound_flows::OutboundFlows;
use super::republish::ServerGroups;
use crate::engine::session_histograms::{Tally, FAN_OUT_BOUNDS_MICROS};
use crate::flash::flow_sync::{FlowSyncReceiver, FlowSyncSender};
use crate::flash::tc::{self, kind, message_header, user_control, FlowMetadata, Lane, TcMessage};
use crate::group::{self, server_flow::GROUP_FLOW_METADATA, GroupId};
use crate::media::{MediaKind, MediaMessage};
use crate::proto::batch::TransmitBatch;
use crate::proto::endpoint::{EndpointConfig, Event, SessionId, Transmit};
use crate::proto::epd::PeerId;
use crate::proto::session::{CloseReason, SessionEvent};
use crate::proto::{Endpoint, Instant};
use crate::rtmp::{
    BandwidthLimit, ConnectionConfig, Event as RtmpEvent, MessageType, RtmpConnection, RtmpError,
    RtmpMessage,
};

/// Media older than this is abandoned rather than retransmitted to an RTMFP player.
pub const MEDIA_DEADLINE: Duration = Duration::from_secs(2);
/// An RTMFP player whose oldest unacknowledged media is this old skips to the next
/// keyframe: live viewers stay live, and a slow one costs the server a check per frame
/// instead of queuing frames only to abandon them at `MEDIA_DEADLINE`.
pub const RTMFP_LAG_LIMIT: Duration = Duration::from_secs(1);
/// An RTMP player this far behind skips to the next keyframe.
pub const RTMP_BACKLOG_LIMIT: usize = 8 << 20;
/// RFC 7425 §5.3.4 keepalive periods we ask clients for (server, peers).
const KEEPALIVE_MS: (u32, u32) = (15_000, 10_000);
/// How long a refused client's last messages may take before its session closes.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(3);
/// Flow exception code for flows we do not serve, and for refused group joins.
const FLOW_REJECTED: u64 = 0;

/// What happened, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    App(AppEvent),
    RtmfpSessionOpened {
        session: SessionId,
        conn: ConnId,
        peer: SocketAddr,
    },
    RtmfpSessionClosed {
        session: SessionId,
        reason: CloseReason,
    },
    RtmpClosed {
        conn: ConnId,
        error: Option<String>,
    },
    /// A client asked for a peer by peer ID; we forwarded its hello and redirected it.
    Introduced {
        from: SocketAddr,
        target: PeerId,
    },
    /// A message on a member's group flow that is not a join we can read; the flow was
    /// closed with an exception.
    GroupJoinUnreadable {
        session: SessionId,
        error: String,
    },
    /// This shard took a reloaded config; what it ended that the config no longer allows.
    ConfigReloaded(ReloadOutcome),
}

#[derive(Debug, Default)]
struct RtmfpClient {
    conn: ConnId,
    /// The client's flows: flow id -> stream id.
    inbound: HashMap<u64, u32>,
    /// The client's latest flow per stream id. All our flows are in return association
    /// with its NetConnection flow (stream 0), as RFC 7425 clients (rtmfp-cpp) accept
    /// server flows only there.
    client_flow: HashMap<u32, u64>,
    /// Our flow per (stream id, lane).
    outbound: OutboundFlows,
    /// RFC 7425 §5.2 barriers across the client's flows of a stream.
    flow_sync: FlowSyncReceiver,
    sync_ids: FlowSyncSender,
    /// Streams this player lags on: their media is skipped up to the next keyframe.
    skipping_to_keyframe: Vec<u32>,
    /// The client's NetGroup flows to us (`GC`), one per group it joins.
    group_flows: Vec<GroupFlow>,
}

/// A member's `GC` flow and ours answering it (docs/netgroup.md §2.1).
#[derive(Debug)]
struct GroupFlow {
    theirs: u64,
    /// Known once its join message arrived and was accepted.
    group: Option<GroupId>,
    /// Our flow in return association with theirs, opened for the first member notice.
    ours: Option<u64>,
}

/// How long a draining server lets a session's queued data be acknowledged before it
/// closes it anyway.
pub const DRAIN_FLUSH: Duration = Duration::from_secs(2);

struct RtmpClient {
    connection: RtmpConnection,
    output: Vec<u8>,
    /// Sent so far from the front of `output`.
    flushed: usize,
    close_after_flush: bool,
    skipping_to_keyframe: bool,
}

pub struct EdgeServer {
    pub endpoint: Endpoint,
    app: App,
    rtmfp: HashMap<SessionId, RtmfpClient>,
    session_of: HashMap<ConnId, SessionId>,
    rtmp: HashMap<ConnId, RtmpClient>,
    events: VecDeque<ServerEvent>,
    rng: ChaCha20Rng,
    /// Sessions to close once what is queued for them is acknowledged (a refused
    /// connect's `_error` must arrive), or at the deadline.
    closing: HashMap<SessionId, Instant>,
    /// Set by [`EdgeServer::begin_drain`]: no new sessions; every session closes.
    draining: bool,
    /// The last message framed for RTMFP: the same media message goes to every player
    /// in a row, framed once and shared by all their sessions.
    last_framed: Option<FramedMessage>,
    /// Media frames not sent to RTMFP players that lagged (see [`RTMFP_LAG_LIMIT`]).
    frames_skipped_for_lag: u64,
    /// The server's own members of the groups it republishes streams into.
    groups: ServerGroups,
    /// IP multicast datagrams to send.
    multicast_out: VecDeque<Transmit>,
    /// Which players of recent fan-out lists are skipping to a keyframe.
    skip_marks: SkipMarks,
    /// The application's outputs, with when they were taken from it, in order: a
    /// fan-out goes a slice of players at a time (see [`FAN_OUT_SLICE`]) and what
    /// follows waits behind it.
    outputs: VecDeque<(Instant, Output)>,
    /// The fan-out under way, taken from the front of `outputs`.
    fan_out: Option<FanOutProgress>,
    /// Every fan-out finished so far, by how long it took from its message reaching the
    /// edge to the last player's copy queued to send.
    fan_out_latency: Tally<{ FAN_OUT_BOUNDS_MICROS.len() }>,
}

/// Players a fan-out queues media for before their datagrams are sealed and sent: few
/// enough that their sessions are still in the core's cache when the transmit side
/// reads them again (10,000 sessions are not), many enough for big send batches.
pub const FAN_OUT_SLICE: usize = 256;

/// A fan-out under way: the message framed once, and how far down the list it is.
struct FanOutProgress {
    fan_out: FanOut,
    framed: bytes::Bytes,
    class: MediaClass,
    lane: Lane,
    deadline: Option<Instant>,
    /// When the message was taken from the application: how long it has waited counts
    /// in the players' lag.
    since: Instant,
    next: usize,
    /// The list's [`SkipMarks`], taken out while the fan-out updates them.
    skipping: Vec<bool>,
}

/// A message with its RFC 7425 header in front, and what it was made from (kept, so its
/// address cannot be reused by another payload while cached).
struct FramedMessage {
    kind: u8,
    timestamp: u32,
    payload: bytes::Bytes,
    framed: bytes::Bytes,
}

impl EdgeServer {
    pub fn new(config: Arc<ServerConfig>, endpoint_config: EndpointConfig, seed: [u8; 32]) -> Self {
        Self::with_app(App::new(config), endpoint_config, seed)
    }

    /// The server of one shard among `shards` sharing `directory`; the sessions it
    /// accepts carry `shard` in their ids.
    pub fn sharded(
        config: Arc<ServerConfig>,
        mut endpoint_config: EndpointConfig,
        seed: [u8; 32],
        directory: Arc<Directory>,
        shard: u8,
        shards: usize,
    ) -> Self {
        endpoint_config.shard = shard;
        let app = App::sharded(config, directory, shard, shards > 1);
        Self::with_app(app, endpoint_config, seed)
    }

    fn with_app(mut app: App, endpoint_config: EndpointConfig, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut endpoint_seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rng, &mut endpoint_seed);
        let mut endpoint = Endpoint::new(endpoint_config, endpoint_seed);
        // As a group member the server is a peer: peers connect to the fingerprint of
        // the Flash-era static-key certificate, as to any Flash peer (librtmfp accepts
        // nothing else in a P2P handshake), not to the RHello server certificate.
        let member_peer = endpoint.client_peer_ids().0;
        // Multicast keys: from the identity every shard shares, or (one shard alone)
        // from this server's randomness.
        let secret = match endpoint.config().server_identity {
            Some(identity) => {
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                sha2::Digest::update(&mut h, b"rtmfp-edge group secret");
                sha2::Digest::update(&mut h, identity);
                sha2::Digest::finalize(h).into()
            }
            None => {
                let mut s = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rng, &mut s);
                s
            }
        };
        let sends_multicast = endpoint.config().shard == 0;
        let groups = ServerGroups::new(app.config(), member_peer, secret, sends_multicast);
        // Also without configured groups: a publisher may name one (fms.multicast.*).
        app.join_republish_groups(member_peer);
        EdgeServer {
            endpoint,
            app,
            groups,
            multicast_out: VecDeque::new(),
            rtmfp: HashMap::default(),
            session_of: HashMap::default(),
            rtmp: HashMap::default(),
            events: VecDeque::new(),
            rng,
            closing: HashMap::default(),
            draining: false,
            last_framed: None,
            frames_skipped_for_lag: 0,
            skip_marks: SkipMarks::default(),
            outputs: VecDeque::new(),
            fan_out: None,
            fan_out_latency: Tally::default(),
        }
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// The server's own members of the groups it republishes into.
    pub fn groups(&self) -> &ServerGroups {
        &self.groups
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next publication message for the other shards.
    pub fn poll_relay(&mut self) -> Option<Relay> {
        self.app.poll_relay()
    }

    /// A publication message from another shard.
    pub fn relayed(&mut self, now: Instant, from_shard: u8, relay: Relay) {
        self.app.relayed(from_shard, relay);
        self.pump(now);
    }

    // ---------------- RTMFP ----------------

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.endpoint.handle(now, from, datagram);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.continue_outputs(now);
        self.endpoint.handle_timeout(now);
        self.groups
            .handle_timeout(now, &mut self.endpoint, &mut self.multicast_out);
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let closing = self.closing.values().min().copied();
        [
            self.endpoint.poll_timeout(),
            closing,
            self.groups.poll_timeout(),
            // Outputs waiting behind a fan-out are due now (normally the transmit side
            // pulls them on).
            self.fan_out
                .as_ref()
                .map(|f| f.since)
                .or_else(|| self.outputs.front().map(|(since, _)| *since)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next IP multicast datagram to send (also given by
    /// [`EdgeServer::poll_transmit`], for drivers that send everything one way).
    pub fn poll_multicast(&mut self) -> Option<Transmit> {
        self.multicast_out.pop_front()
    }

    /// The next datagram to send. When the sessions have nothing more, the fan-out under
    /// way queues its next slice of players, so their datagrams follow.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.multicast_out.pop_front() {
            return Some(t);
        }
        loop {
            if let Some(t) = self.endpoint.poll_transmit(now) {
                return Some(t);
            }
            if !self.continue_outputs(now) {
                return None;
            }
        }
    }

    /// [`Endpoint::poll_transmit_batch`], continuing the fan-out under way a slice at a
    /// time while the batch has room (as [`Self::poll_transmit`] does). IP multicast
    /// datagrams are not included: [`Self::poll_multicast`] gives them.
    pub fn poll_transmit_batch(&mut self, now: Instant, batch: &mut TransmitBatch) -> usize {
        let mut n = 0;
        loop {
            n += self.endpoint.poll_transmit_batch(now, batch);
            if batch.is_full() || !self.continue_outputs(now) {
                return n;
            }
        }
    }

    // ---------------- RTMP ----------------

    /// A TCP client connected.
    pub fn rtmp_accept(&mut self, peer: SocketAddr) -> ConnId {
        let conn = self.app.open(peer.ip());
        let connection = RtmpConnection::server(ConnectionConfig::default(), &mut self.rng);
        self.rtmp.insert(
            conn,
            RtmpClient {
                connection,
                output: Vec::new(),
                flushed: 0,
                close_after_flush: false,
                skipping_to_keyframe: false,
            },
        );
        conn
    }

    /// Bytes from an RTMP client. An error means the connection is unusable: close it.
    pub fn rtmp_input(
        &mut self,
        now: Instant,
        conn: ConnId,
        bytes: &[u8],
    ) -> Result<(), RtmpError> {
        let Some(client) = self.rtmp.get_mut(&conn) else {
            return Ok(());
        };
        if let Err(e) = client.connection.feed(bytes) {
            self.rtmp_closed(conn, Some(e.to_string()));
            return Err(e);
        }
        let mut messages = Vec::new();
        while let Some(event) = client.connection.poll_event() {
            match event {
                RtmpEvent::HandshakeDone(_) => {
                    let c = &mut client.connection;
                    let setup = c
                        .set_window_ack_size(5_000_000)
                        .and_then(|()| c.set_peer_bandwidth(5_000_000, BandwidthLimit::Dynamic))
                        .and_then(|()| c.set_chunk_size(4096));
                    if let Err(e) = setup {
                        self.rtmp_closed(conn, Some(e.to_string()));
                        return Err(e);
                    }
                }
                RtmpEvent::Message(m) => messages.push(m),
                RtmpEvent::UserControl(_) | RtmpEvent::Control(_) => {}
            }
        }
        for m in messages {
            self.app.message(
                conn,
                m.stream_id,
                m.type_id.id(),
                m.timestamp,
                m.payload.into(),
            );
        }
        self.pump(now);
        Ok(())
    }

    /// Bytes waiting to go to an RTMP client; report what was written with
    /// [`EdgeServer::rtmp_written`].
    pub fn rtmp_output(&mut self, conn: ConnId) -> &[u8] {
        match self.rtmp.get_mut(&conn) {
            Some(c) => {
                c.connection.write_output_into(&mut c.output);
                &c.output[c.flushed..]
            }
            None => &[],
        }
    }

    pub fn rtmp_written(&mut self, conn: ConnId, n: usize) {
        if let Some(c) = self.rtmp.get_mut(&conn) {
            c.flushed += n;
            if c.flushed >= c.output.len() {
                c.output.clear();
                c.flushed = 0;
            } else if c.flushed > (1 << 20) {
                c.output.drain(..c.flushed);
                c.flushed = 0;
            }
        }
    }

    /// The server wants this RTMP connection closed once its output is flushed.
    pub fn rtmp_should_close(&self, conn: ConnId) -> bool {
        self.rtmp.get(&conn).is_some_and(|c| {
            c.close_after_flush && c.flushed >= c.output.len() && !c.connection.has_output()
        })
    }

    /// The TCP connection ended.
    pub fn rtmp_closed(&mut self, conn: ConnId, error: Option<String>) {
        if self.rtmp.remove(&conn).is_some() {
            self.app.close(conn);
            self.events
                .push_back(ServerEvent::RtmpClosed { conn, error });
        }
    }

    pub fn rtmp_connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.rtmp.keys().copied()
    }

    // ---------------- plumbing ----------------

    fn pump(&mut self, now: Instant) {
        loop {
            // Sessions the last round queued data on get their timers filed once here,
            // not re-examined by every `poll_timeout` until the next datagram.
            self.endpoint.refresh_timers(now);
            let mut progressed = false;
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.on_endpoint_event(now, event);
            }
            while let Some(output) = self.app.poll_output() {
                progressed = true;
                self.outputs.push_back((now, output));
            }
            self.run_outputs(now);
            while let Some(feed) = self.app.poll_group_feed() {
                progressed = true;
                if let GroupFeed::Stop { group, name } = &feed {
                    self.tell_members_unpublished(*group, name);
                }
                // A publisher that asked for IP multicast (fms.multicast.*): the members
                // already in the group learn its address and key now.
                let asked_ip = match &feed {
                    GroupFeed::Start {
                        group,
                        request: Some(r),
                        ..
                    } if r.form.uses_ip() => Some(*group),
                    _ => None,
                };
                self.groups
                    .on_feed(now, &mut self.endpoint, feed, &mut self.multicast_out);
                if let Some(group) = asked_ip {
                    self.tell_members_multicast(group);
                }
            }
            while let Some(event) = self.app.poll_event() {
                progressed = true;
                if let AppEvent::Connected { conn, .. } = &event {
                    if self.session_of.contains_key(conn) {
                        let payload = tc::set_keepalive(KEEPALIVE_MS.0, KEEPALIVE_MS.1);
                        let out = Outgoing::Message {
                            stream_id: 0,
                            kind: kind::USER_CONTROL,
                            timestamp: 0,
                            payload: payload.into(),
                        };
                        // After what the application queued for it (its connect reply).
                        self.outputs.push_back((now, Output::To(*conn, out)));
                    }
                }
                self.events.push_back(ServerEvent::App(event));
            }
            if !progressed {
                break;
            }
        }
        let endpoint = &mut self.endpoint;
        self.closing.retain(|&id, deadline| {
            let Some(s) = endpoint.session_mut(id) else {
                return false;
            };
            if s.unacknowledged_bytes() == 0 || now >= *deadline {
                s.close(now);
                return false;
            }
            true
        });
    }

    fn on_endpoint_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::SessionOpened {
                session,
                peer,
                as_initiator: false,
            } => {
                if self.draining {
                    // Its handshake was under way when the drain began.
                    self.closing.insert(session, now);
                }
                let conn = self.app.open(peer.ip());
                self.rtmfp.insert(
                    session,
                    RtmfpClient {
                        conn,
                        ..Default::default()
                    },
                );
                self.session_of.insert(conn, session);
                self.events.push_back(ServerEvent::RtmfpSessionOpened {
                    session,
                    conn,
                    peer,
                });
            }
            Event::Session { session, event } => self.on_session_event(now, session, event),
            Event::Introduced { from, target } => self
                .events
                .push_back(ServerEvent::Introduced { from, target }),
            _ => {}
        }
    }

    fn on_session_event(&mut self, now: Instant, session: SessionId, event: SessionEvent) {
        let Some(event) = self
            .groups
            .on_session_event(now, &mut self.endpoint, session, event)
        else {
            return;
        };
        let Some(client) = self.rtmfp.get_mut(&session) else {
            return;
        };
        match event {
            SessionEvent::FlowOpened {
                flow_id, metadata, ..
            } if metadata == GROUP_FLOW_METADATA => client.group_flows.push(GroupFlow {
                theirs: flow_id,
                group: None,
                ours: None,
            }),
            SessionEvent::Message { flow_id, data }
                if client.group_flows.iter().any(|g| g.theirs == flow_id) =>
            {
                self.on_group_message(session, flow_id, &data);
            }
            SessionEvent::FlowOpened {
                flow_id, metadata, ..
            } => match FlowMetadata::parse(&metadata) {
                Ok(m) => {
                    client.inbound.insert(flow_id, m.stream_id);
                    client.client_flow.insert(m.stream_id, flow_id);
                }
                Err(_) => {
                    if let Some(s) = self.endpoint.session_mut(session) {
                        s.reject_flow(flow_id, FLOW_REJECTED);
                    }
                }
            },
            SessionEvent::Message { flow_id, data } => {
                let mut ready = Vec::new();
                client.flow_sync.receive(flow_id, data, &mut ready);
                self.deliver_inbound(session, ready);
            }
            SessionEvent::FlowFinished { flow_id } => {
                client.inbound.remove(&flow_id);
                let conn = client.conn;
                // A member's group flow closing is its leaving the group.
                if let Some(i) = client.group_flows.iter().position(|g| g.theirs == flow_id) {
                    let flow = client.group_flows.swap_remove(i);
                    if let (Some(ours), Some(s)) = (flow.ours, self.endpoint.session_mut(session)) {
                        s.close_flow(ours);
                    }
                    if let Some(group) = flow.group {
                        self.app.leave_group(conn, group);
                    }
                }
            }
            SessionEvent::Closed(reason) => {
                if let Some(c) = self.rtmfp.remove(&session) {
                    self.session_of.remove(&c.conn);
                    self.app.close(c.conn);
                }
                self.events
                    .push_back(ServerEvent::RtmfpSessionClosed { session, reason });
            }
            _ => {}
        }
    }

    /// A message on a member's `GC` flow: its join. A join refused, or one that cannot be
    /// read, closes the flow with an exception; the app has told the client why.
    fn on_group_message(&mut self, session: SessionId, flow_id: u64, data: &[u8]) {
        let Some(client) = self.rtmfp.get(&session) else {
            return;
        };
        let conn = client.conn;
        if client
            .group_flows
            .iter()
            .any(|g| g.theirs == flow_id && g.group.is_some())
        {
            return; // One join per flow; Flash sends nothing else on it.
        }
        let Some(peer) = self.endpoint.session(session).map(|s| s.info.far_peer_id) else {
            return;
        };
        let accepted = match group::server_flow::parse_join(data) {
            Ok(group) => self.app.join_group(conn, peer, group).ok().map(|_| group),
            Err(e) => {
                self.events.push_back(ServerEvent::GroupJoinUnreadable {
                    session,
                    error: e.to_string(),
                });
                None
            }
        };
        let Some(client) = self.rtmfp.get_mut(&session) else {
            return;
        };
        match accepted {
            Some(group) => {
                if let Some(g) = client.group_flows.iter_mut().find(|g| g.theirs == flow_id) {
                    g.group = Some(group);
                }
                if let Some(message) = self.multicast_key_message(group) {
                    self.send_on_group_flow(session, group, &message);
                }
            }
            None => {
                client.group_flows.retain(|g| g.theirs != flow_id);
                if let Some(s) = self.endpoint.session_mut(session) {
                    s.reject_flow(flow_id, FLOW_REJECTED);
                }
            }
        }
    }

    /// The members of `group` whose sessions this shard holds.
    fn group_members_here(&self, group: GroupId) -> Vec<SessionId> {
        self.rtmfp
            .iter()
            .filter(|(_, c)| c.group_flows.iter().any(|g| g.group == Some(group)))
            .map(|(s, _)| *s)
            .collect()
    }

    /// The IP multicast address and key of `group`'s stream (`7e`), for an admitted
    /// member.
    fn multicast_key_message(&self, group: GroupId) -> Option<Vec<u8>> {
        let (address, key, relay) = self.groups.multicast_key_for(&group)?;
        // Bound to one address, we send from it: members may join for it only.
        let listen = self.app.config().rtmfp_listen.ip();
        let source = (!listen.is_unspecified()).then_some(listen);
        Some(group::server_flow::multicast_key_message(
            address, &key, relay, source,
        ))
    }

    /// Tells every member of `group` whose session this shard holds where its stream
    /// goes by IP multicast, and the key.
    fn tell_members_multicast(&mut self, group: GroupId) {
        let Some(message) = self.multicast_key_message(group) else {
            return;
        };
        for session in self.group_members_here(group) {
            self.send_on_group_flow(session, group, &message);
        }
    }

    /// Tells every member of `group` whose session this shard holds that the stream
    /// `name` was unpublished (their flows answering their `GC` flows).
    fn tell_members_unpublished(&mut self, group: GroupId, name: &str) {
        let message = group::server_flow::unpublished_message(name);
        for session in self.group_members_here(group) {
            self.send_on_group_flow(session, group, &message);
        }
    }

    /// Tells a member, on our flow answering its `GC` flow for `group`, of a peer to
    /// open a session to.
    fn send_member_notice(&mut self, session: SessionId, group: GroupId, peer: PeerId) {
        let notice = group::server_flow::member_notice(&peer);
        self.send_on_group_flow(session, group, &notice);
    }

    /// The member is no longer in `group`: our flow answering its `GC` flow closes, and
    /// its `GC` flow gets the exception a refused join's gets.
    fn end_group_flow(&mut self, session: SessionId, group: GroupId) {
        let Some(client) = self.rtmfp.get_mut(&session) else {
            return;
        };
        let Some(i) = client
            .group_flows
            .iter()
            .position(|g| g.group == Some(group))
        else {
            return;
        };
        let flow = client.group_flows.swap_remove(i);
        if let Some(s) = self.endpoint.session_mut(session) {
            if let Some(ours) = flow.ours {
                s.close_flow(ours);
            }
            s.reject_flow(flow.theirs, FLOW_REJECTED);
        }
    }

    /// A message on our flow answering the member's `GC` flow for `group`.
    fn send_on_group_flow(&mut self, session: SessionId, group: GroupId, message: &[u8]) {
        let Some(client) = self.rtmfp.get_mut(&session) else {
            return;
        };
        let Some(flow) = client
            .group_flows
            .iter_mut()
            .find(|g| g.group == Some(group))
        else {
            return;
        };
        let Some(s) = self.endpoint.session_mut(session) else {
            return;
        };
        let ours = *flow
            .ours
            .get_or_insert_with(|| s.open_flow(GROUP_FLOW_METADATA.to_vec(), Some(flow.theirs)));
        s.send(ours, message, None);
    }

    /// Messages from a client's flows, past any flow-sync barrier, to the application.
    fn deliver_inbound(&mut self, session: SessionId, ready: Vec<(u64, Vec<u8>)>) {
        for (flow_id, data) in ready {
            let Some(client) = self.rtmfp.get(&session) else {
                return;
            };
            let Some(&stream_id) = client.inbound.get(&flow_id) else {
                continue;
            };
            let conn = client.conn;
            let Ok(header) = TcMessage::parse(&data).map(|m| (m.kind, m.timestamp)) else {
                continue;
            };
            let payload = bytes::Bytes::from(data).slice(5..);
            self.app
                .message(conn, stream_id, header.0, header.1, payload);
        }
    }

    fn deliver(&mut self, now: Instant, since: Instant, conn: ConnId, out: Outgoing) {
        if let Some(&session) = self.session_of.get(&conn) {
            self.deliver_rtmfp(now, since, session, out);
        } else if self.rtmp.contains_key(&conn) {
            self.deliver_rtmp(conn, out);
        }
    }

    /// Starts sending one media message to every player on a list: framed once, then
    /// for each RTMFP player only what must be done per player (its flow, the lag check,
    /// a reference to the framed message on its queue), a slice of players at a time
    /// ([`FAN_OUT_SLICE`]): the first slice now, the next ones as the transmit side asks
    /// for more ([`Self::poll_transmit`], [`Self::poll_transmit_batch`]) or at the next
    /// timeout.
    fn deliver_fan_out(&mut self, now: Instant, since: Instant, fan_out: FanOut) {
        let class = MediaClass::of(&fan_out.message);
        let (lane, kind) = Lane::for_media(fan_out.message.kind);
        let framed = framed(
            &mut self.last_framed,
            kind,
            fan_out.message.timestamp,
            &fan_out.message.payload,
        );
        if class.always || class.keyframe {
            // Players may leave the skipping state here: every list's marks are stale.
            self.skip_marks.clear();
        }
        let skipping = self.skip_marks.take(&fan_out.players);
        self.fan_out = Some(FanOutProgress {
            fan_out,
            framed,
            class,
            lane,
            deadline: (lane != Lane::Data).then_some(since + MEDIA_DEADLINE),
            since,
            next: 0,
            skipping,
        });
        self.fan_out_slice(now);
    }

    /// Fan-outs finished so far, by the time from their message reaching the edge
    /// (taken from the application) to the last player's copy queued to send, in
    /// microseconds ([`FAN_OUT_BOUNDS_MICROS`]). The slice a copy is in is sealed and
    /// handed to the socket right after, in the same turn.
    pub fn fan_out_latency(&self) -> &Tally<{ FAN_OUT_BOUNDS_MICROS.len() }> {
        &self.fan_out_latency
    }

    /// Whether a fan-out is under way: players on its list still wait for the message.
    pub fn fan_out_under_way(&self) -> bool {
        self.fan_out.is_some()
    }

    /// Carries out the application's outputs in order, up to the end of the first slice
    /// of a fan-out.
    fn run_outputs(&mut self, now: Instant) {
        while self.fan_out.is_none() {
            let Some((since, output)) = self.outputs.pop_front() else {
                return;
            };
            match output {
                Output::To(conn, out) => self.deliver(now, since, conn, out),
                Output::FanOut(fan_out) => self.deliver_fan_out(now, since, fan_out),
            }
        }
    }

    /// The next slice of the fan-out under way, or the outputs behind it once it is
    /// done. False if nothing was waiting.
    fn continue_outputs(&mut self, now: Instant) -> bool {
        if self.fan_out.is_some() {
            self.fan_out_slice(now);
            return true;
        }
        if self.outputs.is_empty() {
            return false;
        }
        self.run_outputs(now);
        true
    }

    fn fan_out_slice(&mut self, now: Instant) {
        let Some(mut progress) = self.fan_out.take() else {
            return;
        };
        // Keyframes and what every player needs go through the whole check; other
        // frames pass over the players the last check left skipping without a look at
        // their sessions.
        let check_all = progress.class.always || progress.class.keyframe;
        let players = progress.fan_out.players.clone();
        let end = (progress.next + FAN_OUT_SLICE).min(players.len());
        for (i, player) in players.iter().enumerate().take(end).skip(progress.next) {
            if !check_all && progress.skipping.get(i) == Some(&true) {
                self.frames_skipped_for_lag += 1;
                continue;
            }
            let Some(&session) = self.session_of.get(&player.conn) else {
                if self.rtmp.contains_key(&player.conn) {
                    let out = Outgoing::Media {
                        stream_id: player.stream_id,
                        message: progress.fan_out.message.clone(),
                    };
                    self.deliver_rtmp(player.conn, out);
                }
                continue;
            };
            let Some(client) = self.rtmfp.get_mut(&session) else {
                continue;
            };
            let skipped_for_lag = &mut self.frames_skipped_for_lag;
            let mut skipping = false;
            let (lane, class) = (progress.lane, progress.class);
            let (framed, deadline) = (&progress.framed, progress.deadline);
            let waited = now.saturating_since(progress.since);
            self.endpoint.queue_media_on(session, |s| {
                let flow = lane_flow(client, s, player.stream_id, lane);
                let admitted =
                    admit_to_rtmfp_player(client, s, now, waited, player.stream_id, class);
                skipping = client.skipping_to_keyframe.contains(&player.stream_id);
                if !admitted {
                    *skipped_for_lag += 1;
                    return false;
                }
                s.send_shared(flow, framed, deadline)
            });
            if let Some(mark) = progress.skipping.get_mut(i) {
                *mark = skipping;
            }
        }
        progress.next = end;
        if end < players.len() {
            self.fan_out = Some(progress);
        } else {
            self.skip_marks.put_back(players, progress.skipping);
            let took = now.saturating_since(progress.since);
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.fan_out_latency.add(&FAN_OUT_BOUNDS_MICROS, micros);
        }
    }

    /// Media frames RTMFP players did not get because they lagged by more than
    /// [`RTMFP_LAG_LIMIT`] (they resumed at the next keyframe).
    /// Starts shutting down (SIGTERM): no new sessions (IHellos go unanswered), every
    /// client is told `NetConnection.Connect.AppShutdown`, and every session closes once
    /// what it has queued is acknowledged, or after [`DRAIN_FLUSH`]. [`Self::drained`]
    /// says when none is left.
    pub fn begin_drain(&mut self, now: Instant) {
        if std::mem::replace(&mut self.draining, true) {
            return;
        }
        self.endpoint.stop_accepting();
        self.app.announce_shutdown();
        for session in self.endpoint.session_ids() {
            self.closing.insert(session, now + DRAIN_FLUSH);
        }
        self.pump(now);
    }

    /// Draining, and every session is closed (or closed by its client and lingering).
    pub fn drained(&self) -> bool {
        // A session the client closed lingers (RFC 7016's close handshake) only to answer its
        // retransmitted close: the drain owes it nothing and does not wait out the linger.
        self.draining && self.endpoint.unfinished_session_count() == 0
    }

    /// The server's config was reloaded (SIGHUP): the application judges everything
    /// from now on by `config`, and ends what it no longer allows ([`App::reload`]).
    /// The endpoint keeps its settings: `config` carries the running ones
    /// ([`ServerConfig::reload`]).
    pub fn reload_config(&mut self, now: Instant, config: Arc<ServerConfig>) {
        let outcome = self.app.reload(config);
        self.pump(now);
        // After the app's own events: the summary follows the clients it names.
        self.events.push_back(ServerEvent::ConfigReloaded(outcome));
    }

    pub fn frames_skipped_for_lag(&self) -> u64 {
        self.frames_skipped_for_lag
    }

    fn deliver_rtmfp(&mut self, now: Instant, since: Instant, session: SessionId, out: Outgoing) {
        let mut media_class = None;
        let (stream_id, lane, message, deadline) = match out {
            Outgoing::Message {
                stream_id,
                kind,
                timestamp,
                payload,
            } => (stream_id, Lane::Control, (kind, timestamp, payload), None),
            Outgoing::Media { stream_id, message } => {
                media_class = Some(MediaClass::of(&message));
                let (lane, kind) = Lane::for_media(message.kind);
                let deadline = (lane != Lane::Data).then_some(since + MEDIA_DEADLINE);
                (
                    stream_id,
                    lane,
                    (kind, message.timestamp, message.payload),
                    deadline,
                )
            }
            Outgoing::PeerAddresses(addresses) => {
                self.endpoint.set_reported_addresses(session, addresses);
                return;
            }
            Outgoing::Close => {
                self.closing.insert(session, now + CLOSE_FLUSH_LIMIT);
                return;
            }
            Outgoing::GroupMember { group, peer } => {
                self.send_member_notice(session, group, peer);
                return;
            }
            Outgoing::LeaveGroup { group } => {
                self.end_group_flow(session, group);
                return;
            }
        };
        let Some(client) = self.rtmfp.get_mut(&session) else {
            return;
        };
        let Some(s) = self.endpoint.session_mut(session) else {
            return;
        };
        let (kind, _, payload) = &message;
        let stream_ends = *kind == kind::USER_CONTROL
            && payload.starts_with(&user_control::STREAM_EOF.to_be_bytes());
        if stream_ends {
            // RFC 7425 §5.2: the end of the stream must not overtake its last frames,
            // which may still be queued on the media flows. Sync every flow of the
            // stream, then retire the media flows; the next publication opens new ones.
            let lanes: Vec<(Lane, u64)> = client
                .outbound
                .iter()
                .filter(|((sid, _), _)| *sid == stream_id)
                .map(|((_, lane), f)| (lane, f))
                .collect();
            if lanes.len() > 1 {
                let sync = client.sync_ids.next(lanes.len() as u32);
                for (lane, f) in lanes {
                    s.send(f, &sync, None);
                    if lane != Lane::Control {
                        s.close_flow(f);
                        client.outbound.remove((stream_id, lane));
                    }
                }
            }
        }
        let flow = lane_flow(client, s, stream_id, lane);
        if let Some(class) = media_class {
            if class.keyframe {
                // It may end this player's skipping: the fan-out's marks are stale.
                self.skip_marks.clear();
            }
            let waited = now.saturating_since(since);
            if !admit_to_rtmfp_player(client, s, now, waited, stream_id, class) {
                self.frames_skipped_for_lag += 1;
                return;
            }
        }
        let (kind, timestamp, payload) = message;
        // Framed once for all players; each session's fragments are slices of it.
        let framed = framed(&mut self.last_framed, kind, timestamp, &payload);
        s.send_shared(flow, &framed, deadline);
    }

    fn deliver_rtmp(&mut self, conn: ConnId, out: Outgoing) {
        let Some(client) = self.rtmp.get_mut(&conn) else {
            return;
        };
        let message = match out {
            Outgoing::Message {
                stream_id,
                kind,
                timestamp,
                payload,
            } => {
                // RTMP carries user control events on stream 0.
                let stream_id = if kind == kind::USER_CONTROL {
                    0
                } else {
                    stream_id
                };
                RtmpMessage::new(
                    MessageType::from(kind),
                    timestamp,
                    stream_id,
                    payload.to_vec(),
                )
            }
            Outgoing::Media { stream_id, message } => {
                if !admit_to_rtmp_player(client, &message) {
                    return;
                }
                let kind = match message.kind {
                    MediaKind::Audio => MessageType::Audio,
                    MediaKind::Video => MessageType::Video,
                    MediaKind::Data => MessageType::DataAmf0,
                };
                RtmpMessage::new(kind, message.timestamp, stream_id, message.payload.to_vec())
            }
            Outgoing::PeerAddresses(_)
            | Outgoing::GroupMember { .. }
            | Outgoing::LeaveGroup { .. } => return,
            Outgoing::Close => {
                client.close_after_flush = true;
                return;
            }
        };
        if let Err(e) = client.connection.send_message(&message) {
            let error = Some(e.to_string());
            self.rtmp_closed(conn, error);
        }
    }
}

/// Our flow for `stream_id`'s `lane` to this client, opened on first use (in return
/// association with the client's NetConnection flow, or else the stream's).
fn lane_flow(
    client: &mut RtmfpClient,
    s: &mut crate::proto::session::Session,
    stream_id: u32,
    lane: Lane,
) -> u64 {
    let key = (stream_id, lane);
    if let Some(flow) = client.outbound.get(key) {
        return flow;
    }
    let return_flow = client
        .client_flow
        .get(&0)
        .or_else(|| client.client_flow.get(&stream_id))
        .copied();
    let flow = s.open_flow(FlowMetadata::net_stream(stream_id).encode(), return_flow);
    s.set_priority(flow, lane.priority());
    client.outbound.insert(key, flow);
    flow
}

/// `payload` behind its RFC 7425 message header, reusing the last framing when it is
/// the same message (same buffer, kind and timestamp).
fn framed(
    cache: &mut Option<FramedMessage>,
    kind: u8,
    timestamp: u32,
    payload: &bytes::Bytes,
) -> bytes::Bytes {
    if let Some(c) = cache {
        if c.kind == kind
            && c.timestamp == timestamp
            && c.payload.as_ptr() == payload.as_ptr()
            && c.payload.len() == payload.len()
        {
            return c.framed.clone();
        }
    }
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.extend_from_slice(&message_header(kind, timestamp));
    buf.extend_from_slice(payload);
    let framed = bytes::Bytes::from(buf);
    *cache = Some(FramedMessage {
        kind,
        timestamp,
        payload: payload.clone(),
        framed: framed.clone(),
    });
    framed
}

/// For the last few fan-out lists (one per stream and media kind in use), a mark per
/// player: skipping to the next keyframe when last checked. A player only leaves that
/// state at a keyframe, which is checked in full and clears every mark (an audio list's
/// too), so between keyframes a marked player
/// costs the fan-out a look at one bit instead of its client and session (with
/// thousands of lagging players, most of a fan-out's time went there).
#[derive(Default)]
struct SkipMarks {
    lists: VecDeque<(Arc<[crate::server::app::StreamRef]>, Vec<bool>)>,
}

impl SkipMarks {
    /// Lists kept: more than streams times media kinds on a busy shard.
    const LISTS: usize = 16;

    /// The marks of `players` (all clear for a list not seen before), taken out while
    /// the fan-out updates them.
    fn take(&mut self, players: &Arc<[crate::server::app::StreamRef]>) -> Vec<bool> {
        match self
            .lists
            .iter()
            .position(|(list, _)| Arc::ptr_eq(list, players))
        {
            Some(i) => self.lists.remove(i).map(|(_, m)| m).unwrap_or_default(),
            None => vec![false; players.len()],
        }
    }

    fn clear(&mut self) {
        self.lists.clear();
    }

    fn put_back(&mut self, players: Arc<[crate::server::app::StreamRef]>, marks: Vec<bool>) {
        if self.lists.len() >= Self::LISTS {
            self.lists.pop_back();
        }
        self.lists.push_front((players, marks));
    }
}

/// What the lag policy needs to know of a media message.
#[derive(Debug, Clone, Copy)]
struct MediaClass {
    /// Codec headers and data messages: a player needs them whatever it skips.
    always: bool,
    keyframe: bool,
}

impl MediaClass {
    fn of(message: &MediaMessage) -> Self {
        Self {
            always: message.is_sequence_header() || message.kind == MediaKind::Data,
            keyframe: message.kind == MediaKind::Video && message.is_keyframe(),
        }
    }
}

/// A slow RTMFP player (its oldest unacknowledged media older than [`RTMFP_LAG_LIMIT`],
/// nothing acknowledged for that long, or the message itself that late leaving the
/// server) skips audio and video up to the next keyframe, taken once it has caught up to
/// half the limit, so what it plays still decodes.
fn admit_to_rtmfp_player(
    client: &mut RtmfpClient,
    session: &crate::proto::session::Session,
    now: Instant,
    waited: Duration,
    stream_id: u32,
    class: MediaClass,
) -> bool {
    if class.always {
        return true;
    }
    // A message that waited in the server (behind fan-outs it could not keep up with)
    // is that much behind for every player: the server sheds load as a slow path does.
    // The oldest media still unacknowledged on any of the session's flows (every media
    // flow carries the same deadline for its age): the path is shared.
    let lag = session
        .earliest_pending_deadline()
        .map_or(Duration::ZERO, |d| {
            (now + MEDIA_DEADLINE).saturating_since(d)
        })
        // Stale messages abandoned unacknowledged leave no deadline behind: a player whose
        // path went dark shows by its silence.
        .max(session.unanswered_for(now))
        .max(waited);
    let skipping = client
        .skipping_to_keyframe
        .iter()
        .position(|&s| s == stream_id);
    match skipping {
        None if lag <= RTMFP_LAG_LIMIT => true,
        None => {
            client.skipping_to_keyframe.push(stream_id);
            false
        }
        Some(i) if class.keyframe && lag <= RTMFP_LAG_LIMIT / 2 => {
            client.skipping_to_keyframe.swap_remove(i);
            true
        }
        Some(_) => false,
    }
}

/// A slow RTMP player (TCP backlog over the limit) skips ahead to the next keyframe
/// instead of falling ever further behind.
fn admit_to_rtmp_player(client: &mut RtmpClient, message: &MediaMessage) -> bool {
    let backlog = client.output.len() - client.flushed;
    if backlog > RTMP_BACKLOG_LIMIT {
        client.skipping_to_keyframe = true;
    }
    if !client.skipping_to_keyframe
        || message.is_sequence_header()
        || message.kind == MediaKind::Data
    {
        return true;
    }
    if message.is_keyframe() && backlog <= RTMP_BACKLOG_LIMIT / 2 {
        client.skipping_to_keyframe = false;
        return true;
    }
    false
}
