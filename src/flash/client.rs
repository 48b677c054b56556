//! A NetConnection/NetStream client over RTMFP, sans-IO: connect to an app, create
//! streams, publish or play them through the server, or directly between peers (the
//! server introduces the player to the publisher by peer ID, RFC 7016 §3.5.1.5, and the
//! media never touches it). The `publish`, `play` and `demo` subcommands and the tests
//! drive it; it is also what a Flash-compatible client looks like on the wire.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::amf::Value;
use super::command::{code, on_status, status_code, Command, Level};
use super::flow_sync::{FlowSyncReceiver, FlowSyncSender};
use super::tc::{self, kind, message_header, FlowMetadata, Lane, TcMessage};
use crate::group::member::{GroupEvent, GroupMember};
use crate::group::posting::{PostError, PostId};
use crate::group::GroupSpec;
use crate::media::{MediaKind, MediaMessage};
use crate::proto::endpoint::{EndpointConfig, Event, SessionId, Transmit};
use crate::proto::epd::{EndpointDiscriminator, PeerId};
use crate::proto::handshake::HandshakeFailure;
use crate::proto::keying::HandshakeLayout;
use crate::proto::session::{CloseReason, Session, SessionEvent};
use crate::proto::{Endpoint, Instant};
use crate::server::live::LiveStreams;

/// Media a publisher sends is abandoned after this long unacknowledged.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(2);
/// The stream id a direct player uses on its session with the publisher.
const DIRECT_STREAM: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `NetConnection.Connect.Success`.
    Connected,
    /// The handshake failed, or the server refused the connect.
    Failed {
        code: String,
        description: String,
    },
    StreamCreated {
        stream_id: u32,
    },
    /// An `onStatus` for a stream (or the connection, stream 0). For a direct play the
    /// stream id is the one `play_direct` returned.
    Status {
        stream_id: u32,
        code: String,
        description: String,
    },
    Media {
        stream_id: u32,
        message: MediaMessage,
    },
    /// Something happened in the NetGroup we joined.
    Group(GroupEvent),
    /// The session with the server ended.
    Closed(CloseReason),
}

/// One session's flows: ours by (stream id, lane), the far end's by flow id, and the
/// flow-sync barriers across the far end's.
#[derive(Debug, Default)]
struct Flows {
    ours: HashMap<(u32, Lane), u64>,
    theirs: HashMap<u64, u32>,
    sync: FlowSyncReceiver,
    /// The far end's NetConnection flow (its first flow for stream 0): our NetStream
    /// flows are in return association with it (RFC 7425; rtmfp-cpp's tcserver takes a
    /// flow without one for a new client).
    their_control: Option<u64>,
}

impl Flows {
    fn send(
        &mut self,
        session: &mut Session,
        stream_id: u32,
        lane: Lane,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> bool {
        let return_flow = match stream_id {
            0 => None,
            _ => self.their_control,
        };
        let flow = *self.ours.entry((stream_id, lane)).or_insert_with(|| {
            let f = session.open_flow(FlowMetadata::net_stream(stream_id).encode(), return_flow);
            session.set_priority(f, lane.priority());
            f
        });
        session.send_parts(flow, parts, deadline)
    }

    /// RFC 7425 §5.2: puts one FlowSync on every media flow of `stream_id` and on
    /// `also` (command flows that carry what must come after), then retires the media
    /// flows.
    /// Records a flow the far end opened.
    fn opened(&mut self, flow_id: u64, metadata: &[u8]) {
        if let Ok(m) = FlowMetadata::parse(metadata) {
            self.theirs.insert(flow_id, m.stream_id);
            if m.stream_id == 0 && self.their_control.is_none() {
                self.their_control = Some(flow_id);
            }
        }
    }

    fn sync_and_retire_media(
        &mut self,
        session: &mut Session,
        ids: &mut FlowSyncSender,
        stream_id: u32,
        also: &[u32],
    ) {
        let media: Vec<(Lane, u64)> = self
            .ours
            .iter()
            .filter(|((sid, lane), _)| *sid == stream_id && *lane != Lane::Control)
            .map(|((_, lane), f)| (*lane, *f))
            .collect();
        if media.is_empty() {
            return;
        }
        let sync = ids.next((media.len() + also.len()) as u32);
        for (lane, f) in media {
            session.send(f, &sync, None);
            session.close_flow(f);
            self.ours.remove(&(stream_id, lane));
        }
        for &sid in also {
            self.send(session, sid, Lane::Control, &[&sync], None);
        }
    }
}

fn command_bytes(cmd: &Command) -> Vec<u8> {
    TcMessage {
        kind: kind::COMMAND_AMF0,
        timestamp: 0,
        payload: &cmd.encode(),
    }
    .to_vec()
}

/// A peer we have a direct session with.
#[derive(Debug, Default)]
struct DirectPeer {
    flows: Flows,
    /// As the player: the stream name we asked for, until the session opens.
    wants: Option<String>,
}

/// A direct subscriber: a peer session and its stream id.
type DirectSubscriber = (SessionId, u32);

pub struct FlashClient {
    pub endpoint: Endpoint,
    session: Option<SessionId>,
    tc_url: String,
    app: String,
    connect_args: Vec<Value>,
    /// Flows of the session with the server.
    flows: Flows,
    next_transaction: f64,
    create_stream_calls: Vec<f64>,
    connect_sent: bool,
    events: VecDeque<ClientEvent>,
    sync_ids: FlowSyncSender,
    /// Send audio, video and data on one flow, keeping their order (see
    /// [`FlashClient::keep_media_order`]).
    one_media_flow: bool,
    /// Streams we publish straight to peers, by our stream id, and who plays them.
    direct: LiveStreams<DirectSubscriber>,
    direct_names: HashMap<u32, String>,
    peers: HashMap<SessionId, DirectPeer>,
    server: SocketAddr,
    /// The NetGroup we joined, if any.
    group: Option<GroupMember>,
}

impl FlashClient {
    /// Starts the RTMFP handshake toward `server` for `tc_url` (rtmfp://host/app); the
    /// `connect` command follows when the session opens. `connect_args` go after the
    /// command object (a token, for servers that want one).
    pub fn connect(
        now: Instant,
        server: SocketAddr,
        tc_url: &str,
        app: &str,
        connect_args: Vec<Value>,
        config: EndpointConfig,
        seed: [u8; 32],
    ) -> Self {
        let mut endpoint = Endpoint::new(config, seed);
        let session = endpoint.connect(now, server, EndpointDiscriminator::for_uri(tc_url));
        FlashClient {
            endpoint,
            session: Some(session),
            tc_url: tc_url.to_owned(),
            app: app.to_owned(),
            connect_args,
            flows: Flows::default(),
            next_transaction: 2.0,
            create_stream_calls: Vec::new(),
            connect_sent: false,
            events: VecDeque::new(),
            sync_ids: FlowSyncSender::default(),
            one_media_flow: false,
            direct: LiveStreams::default(),
            direct_names: HashMap::new(),
            peers: HashMap::new(),
            server,
            group: None,
        }
    }

    /// Joins the NetGroup `spec` through the server (after `Connected`): the server
    /// names members to open sessions to, and each passes the group handshake. False if
    /// the connection is not up yet.
    pub fn join_group(&mut self, spec: &GroupSpec) -> bool {
        let peer_id = self.peer_id();
        let (Some(session), Some(&nc_flow), Some(peer_id)) = (
            self.session,
            self.flows.ours.get(&(0, Lane::Control)),
            peer_id,
        ) else {
            return false;
        };
        let mut member = GroupMember::new(spec, peer_id, self.server);
        member.join(&mut self.endpoint, session, nc_flow);
        self.group = Some(member);
        true
    }

    /// The NetGroup we joined.
    pub fn group(&self) -> Option<&GroupMember> {
        self.group.as_ref()
    }

    /// Plays `name` from the group we joined (its messages come as
    /// `ClientEvent::Group(GroupEvent::Media)`).
    pub fn play_from_group(&mut self, name: &str) {
        if let Some(g) = &mut self.group {
            g.play(name);
        }
    }

    /// Publishes `name` into the group we joined; `key` (32 random bytes) names it there.
    pub fn publish_to_group(&mut self, now: Instant, name: &str, key: [u8; 32]) {
        if let Some(g) = &mut self.group {
            g.publish(now, &mut self.endpoint, name, key);
        }
    }

    /// A datagram that arrived on the group's IP multicast address (see
    /// [`GroupEvent::MulticastAddress`]); false if it was dropped.
    pub fn handle_multicast(&mut self, now: Instant, datagram: &[u8]) -> bool {
        match &mut self.group {
            Some(g) => g.on_multicast_datagram(now, &mut self.endpoint, datagram),
            None => false,
        }
    }

    /// Our group member and the endpoint it sends through, for the NetGroup calls that
    /// have no shortcut here (object replication, sendToAllNeighbors...).
    pub fn group_and_endpoint(&mut self) -> Option<(&mut GroupMember, &mut Endpoint)> {
        let g = self.group.as_mut()?;
        Some((g, &mut self.endpoint))
    }

    /// Posts `message` to the group we joined (`NetGroup.post`); its id, or why not.
    /// `None` if we joined no group.
    pub fn post_to_group(
        &mut self,
        now: Instant,
        message: &Value,
    ) -> Option<Result<PostId, PostError>> {
        let g = self.group.as_mut()?;
        Some(g.post(now, &mut self.endpoint, message))
    }

    /// Sends `message` towards the group member nearest `address`
    /// (`NetGroup.sendToNearest`). `None` if we joined no group.
    pub fn send_to_nearest(
        &mut self,
        now: Instant,
        address: [u8; 32],
        message: &Value,
    ) -> Option<Result<(), PostError>> {
        let g = self.group.as_mut()?;
        Some(g.send_to_nearest(now, &mut self.endpoint, address, message))
    }

    /// Media for the stream we publish into the group.
    pub fn send_group_media(&mut self, now: Instant, message: &MediaMessage) {
        if let Some(g) = &mut self.group {
            g.send_media(now, &mut self.endpoint, message);
        }
    }

    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// Our peer ID as the server knows it (the fingerprint of the certificate we
    /// presented), once the session is open: what a peer asks the server for to play
    /// from us directly.
    pub fn peer_id(&mut self) -> Option<PeerId> {
        let layout = self
            .session
            .and_then(|s| self.endpoint.session(s))?
            .info
            .layout;
        let (flash, rfc) = self.endpoint.client_peer_ids();
        Some(match layout {
            HandshakeLayout::FlashEra => flash,
            HandshakeLayout::Rfc7425 => rfc,
        })
    }

    /// The server's peer id (the fingerprint of the certificate it presented), once the
    /// session is open: a NetGroup member it republishes into is this peer.
    pub fn server_peer_id(&self) -> Option<PeerId> {
        let session = self.endpoint.session(self.session?)?;
        Some(session.info.far_peer_id)
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.endpoint.handle(now, from, datagram);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        if let Some(g) = &mut self.group {
            g.handle_timeout(now, &mut self.endpoint);
        }
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let group = self.group.as_ref().and_then(GroupMember::poll_timeout);
        match (self.endpoint.poll_timeout(), group) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.endpoint.poll_transmit(now)
    }

    /// Asks for a NetStream; `StreamCreated` reports its id.
    pub fn create_stream(&mut self) {
        let tx = self.transaction();
        self.create_stream_calls.push(tx);
        self.call(0, &Command::new("createStream", tx, Value::Null, vec![]));
    }

    pub fn publish(&mut self, stream_id: u32, name: &str) {
        let cmd = Command::new(
            "publish",
            0.0,
            Value::Null,
            vec![name.into(), "live".into()],
        );
        self.call(stream_id, &cmd);
    }

    pub fn play(&mut self, stream_id: u32, name: &str) {
        self.call(stream_id, &play_command(name));
    }

    /// Publishes `name` straight to peers (Flash's DIRECT_CONNECTIONS): peers the server
    /// introduces to us may play it. `stream_id` is any id of ours that
    /// [`FlashClient::send_media`] will use; it needs no `createStream`.
    pub fn publish_direct(&mut self, stream_id: u32, name: &str) {
        let _ = self.direct.publish(name, (0, stream_id));
        self.direct_names.insert(stream_id, name.to_owned());
    }

    /// Plays `name` straight from the peer `publisher`: asks the server at `server` to
    /// introduce us, then plays over the direct session. Status and media events carry
    /// the returned stream id.
    pub fn play_direct(
        &mut self,
        now: Instant,
        server: SocketAddr,
        publisher: PeerId,
        name: &str,
    ) -> u32 {
        let session =
            self.endpoint
                .connect(now, server, EndpointDiscriminator::for_peer(publisher));
        self.peers.insert(
            session,
            DirectPeer {
                wants: Some(name.to_owned()),
                ..Default::default()
            },
        );
        DIRECT_STREAM
    }

    /// Ends a publication or playback on `stream_id` and deletes the stream. The media
    /// flows are synced with the command flows first (RFC 7425 §5.2), so `closeStream`
    /// and `deleteStream` cannot overtake the last frames. Direct players of the stream
    /// are told it ended.
    pub fn delete_stream(&mut self, stream_id: u32) {
        if let Some(name) = self.direct_names.remove(&stream_id) {
            for (peer, peer_stream) in self.direct.unpublish(&name, (0, stream_id)) {
                self.end_direct_playback(peer, peer_stream, &name);
            }
            return;
        }
        if let Some(s) = self.session.and_then(|s| self.endpoint.session_mut(s)) {
            self.flows
                .sync_and_retire_media(s, &mut self.sync_ids, stream_id, &[stream_id, 0]);
        }
        self.call(
            stream_id,
            &Command::new("closeStream", 0.0, Value::Null, vec![]),
        );
        let cmd = Command::new(
            "deleteStream",
            0.0,
            Value::Null,
            vec![f64::from(stream_id).into()],
        );
        self.call(0, &cmd);
    }

    /// By default audio, video and data go on flows of their own, so a lost video
    /// fragment never holds up audio. A publisher sending faster than real time (a file
    /// upload) should keep them in one flow instead: separate flows at different
    /// priorities would deliver all the audio before the video.
    pub fn keep_media_order(&mut self, one_flow: bool) {
        self.one_media_flow = one_flow;
    }

    /// Sends one media message of a stream we publish (to the server, or to our direct
    /// players). Returns false if the session with the server is gone.
    pub fn send_media(&mut self, now: Instant, stream_id: u32, message: &MediaMessage) -> bool {
        let (lane, kind) = Lane::for_media(message.kind);
        let deadline = (message.kind != MediaKind::Data).then_some(now + PUBLISH_DEADLINE);
        let lane = if self.one_media_flow {
            Lane::Video
        } else {
            lane
        };
        let header = message_header(kind, message.timestamp);
        let parts: [&[u8]; 2] = [&header, &message.payload];
        if let Some(name) = self.direct_names.get(&stream_id) {
            let subscribers = self
                .direct
                .forward(name, (0, stream_id), message)
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            for (peer, peer_stream) in subscribers {
                self.send_to_peer(peer, peer_stream, lane, &parts, deadline);
            }
            return self.session.is_some();
        }
        self.send_on(stream_id, lane, &parts, deadline)
    }

    /// Bytes queued but not yet acknowledged by the server: a publisher reading a file
    /// faster than real time waits while this is large.
    pub fn unacknowledged_bytes(&self) -> u64 {
        self.session
            .and_then(|s| self.endpoint.session(s))
            .map_or(0, |s| s.unacknowledged_bytes())
    }

    /// Closes the session with the server and every session with peers (group
    /// neighbours included: leaving the server is leaving the group).
    pub fn close(&mut self, now: Instant) {
        let mut peers: Vec<SessionId> = self.peers.keys().copied().collect();
        // Our member is gone with it: it connects to nobody any more.
        if let Some(g) = self.group.take() {
            peers.extend(g.link_sessions());
        }
        for id in self.session.into_iter().chain(peers) {
            if let Some(s) = self.endpoint.session_mut(id) {
                s.close(now);
            }
        }
    }

    fn transaction(&mut self) -> f64 {
        let tx = self.next_transaction;
        self.next_transaction += 1.0;
        tx
    }

    fn call(&mut self, stream_id: u32, cmd: &Command) {
        self.send_on(stream_id, Lane::Control, &[&command_bytes(cmd)], None);
    }

    fn send_on(
        &mut self,
        stream_id: u32,
        lane: Lane,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> bool {
        let Some(s) = self.session.and_then(|s| self.endpoint.session_mut(s)) else {
            return false;
        };
        self.flows.send(s, stream_id, lane, parts, deadline)
    }

    fn send_to_peer(
        &mut self,
        peer: SessionId,
        stream_id: u32,
        lane: Lane,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) {
        if let (Some(p), Some(s)) = (self.peers.get_mut(&peer), self.endpoint.session_mut(peer)) {
            p.flows.send(s, stream_id, lane, parts, deadline);
        }
    }

    fn status_to_peer(
        &mut self,
        peer: SessionId,
        stream_id: u32,
        level: Level,
        code: &str,
        text: &str,
    ) {
        let bytes = command_bytes(&on_status(level, code, text, vec![]));
        self.send_to_peer(peer, stream_id, Lane::Control, &[&bytes], None);
    }

    fn user_control_to_peer(&mut self, peer: SessionId, stream_id: u32, event: Vec<u8>) {
        let header = message_header(kind::USER_CONTROL, 0);
        self.send_to_peer(peer, stream_id, Lane::Control, &[&header, &event], None);
    }

    fn end_direct_playback(&mut self, peer: SessionId, peer_stream: u32, name: &str) {
        if let (Some(p), Some(s)) = (self.peers.get_mut(&peer), self.endpoint.session_mut(peer)) {
            p.flows
                .sync_and_retire_media(s, &mut self.sync_ids, peer_stream, &[peer_stream]);
        }
        self.user_control_to_peer(peer, peer_stream, tc::stream_eof(peer_stream));
        self.status_to_peer(
            peer,
            peer_stream,
            Level::Status,
            code::PLAY_UNPUBLISH_NOTIFY,
            &format!("{name} is now unpublished."),
        );
    }

    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::SessionOpened { session, .. }
                    if Some(session) == self.session && !self.connect_sent =>
                {
                    self.connect_sent = true;
                    self.send_connect();
                }
                Event::SessionOpened {
                    session,
                    as_initiator,
                    ..
                } if Some(session) != self.session => {
                    self.on_peer_opened(now, session, as_initiator)
                }
                Event::HandshakeFailed { session, failure } if Some(session) == self.session => {
                    self.session = None;
                    self.events.push_back(ClientEvent::Failed {
                        code: handshake_code(&failure).into(),
                        description: failure.to_string(),
                    });
                }
                Event::HandshakeFailed { session, .. }
                    if self
                        .group
                        .as_mut()
                        .is_some_and(|g| g.on_peer_failed(session)) => {}
                Event::HandshakeFailed { session, failure }
                    if self.peers.remove(&session).is_some() =>
                {
                    self.events.push_back(ClientEvent::Status {
                        stream_id: DIRECT_STREAM,
                        code: code::PLAY_FAILED.into(),
                        description: format!("no direct session with the publisher: {failure}"),
                    });
                }
                Event::Session { session, event } if Some(session) == self.session => {
                    self.on_session_event(now, event)
                }
                Event::Session { session, event } => self.on_peer_event(now, session, event),
                _ => {}
            }
        }
        if let Some(g) = &mut self.group {
            while let Some(e) = g.poll_event() {
                self.events.push_back(ClientEvent::Group(e));
            }
        }
    }

    fn send_connect(&mut self) {
        let object = Value::object([
            ("app", Value::from(self.app.as_str())),
            ("flashVer", "rtmfp-edge/0.1".into()),
            ("tcUrl", self.tc_url.as_str().into()),
            ("fpad", false.into()),
            ("capabilities", 235.0.into()),
            ("audioCodecs", 3575.0.into()),
            ("videoCodecs", 252.0.into()),
            ("videoFunction", 1.0.into()),
            ("objectEncoding", 0.0.into()),
        ]);
        let cmd = Command::new(
            "connect",
            1.0,
            object,
            std::mem::take(&mut self.connect_args),
        );
        self.call(0, &cmd);
    }

    fn on_session_event(&mut self, now: Instant, event: SessionEvent) {
        if let Some(g) = &mut self.group {
            if g.on_server_event(now, &mut self.endpoint, &event) {
                return;
            }
        }
        match event {
            SessionEvent::FlowOpened {
                flow_id, metadata, ..
            } => self.flows.opened(flow_id, &metadata),
            SessionEvent::Message { flow_id, data } => {
                let mut ready = Vec::new();
                self.flows.sync.receive(flow_id, data, &mut ready);
                for (stream_id, kind, timestamp, payload) in parse_ready(&self.flows, ready) {
                    self.on_message(stream_id, kind, timestamp, payload);
                }
            }
            SessionEvent::FlowFinished { flow_id } => {
                self.flows.theirs.remove(&flow_id);
            }
            SessionEvent::Closed(reason) => {
                self.session = None;
                self.events.push_back(ClientEvent::Closed(reason));
            }
            _ => {}
        }
    }

    fn on_message(&mut self, stream_id: u32, kind: u8, timestamp: u32, payload: Bytes) {
        let media = |k| ClientEvent::Media {
            stream_id,
            message: MediaMessage::new(k, timestamp, payload.clone()),
        };
        match kind {
            kind::AUDIO => self.events.push_back(media(MediaKind::Audio)),
            kind::VIDEO => self.events.push_back(media(MediaKind::Video)),
            kind::DATA_AMF0 => self.events.push_back(media(MediaKind::Data)),
            kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => {
                if let Some(cmd) = parse_command(kind, &payload) {
                    self.on_command(stream_id, cmd);
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) {
        let code = status_code(&cmd).unwrap_or_default().to_owned();
        let description = description_of(&cmd);
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == 1.0 => self.events.push_back(ClientEvent::Connected),
            "_error" if cmd.transaction_id == 1.0 => self
                .events
                .push_back(ClientEvent::Failed { code, description }),
            "_result" if self.create_stream_calls.contains(&cmd.transaction_id) => {
                self.create_stream_calls
                    .retain(|t| *t != cmd.transaction_id);
                if let Some(id) = cmd.argument(0).and_then(Value::as_f64) {
                    self.events.push_back(ClientEvent::StreamCreated {
                        stream_id: id as u32,
                    });
                }
            }
            "onStatus" => self.events.push_back(ClientEvent::Status {
                stream_id,
                code,
                description,
            }),
            _ => {}
        }
    }

    // ---------------- direct sessions ----------------

    fn on_peer_opened(&mut self, now: Instant, session: SessionId, as_initiator: bool) {
        if let Some(g) = &mut self.group {
            // A member we connected to, or one that connects to us: group links are
            // told apart from direct playback by whose session it is.
            if !(as_initiator && self.peers.contains_key(&session)) {
                g.on_peer_opened(now, &mut self.endpoint, session, as_initiator);
                return;
            }
        }
        if as_initiator {
            // We asked for this publisher: play what we came for.
            let Some(name) = self.peers.get_mut(&session).and_then(|p| p.wants.take()) else {
                return;
            };
            let bytes = command_bytes(&play_command(&name));
            self.send_to_peer(session, DIRECT_STREAM, Lane::Control, &[&bytes], None);
        } else if !self.direct_names.is_empty() {
            // A peer the server introduced to us, to play what we publish directly.
            self.peers.insert(session, DirectPeer::default());
        } else if let Some(s) = self.endpoint.session_mut(session) {
            // We publish nothing directly: nobody has business here.
            s.abort();
        }
    }

    fn on_peer_event(&mut self, now: Instant, session: SessionId, event: SessionEvent) {
        let event = match &mut self.group {
            Some(g) => match g.on_peer_event(now, &mut self.endpoint, session, event) {
                Some(theirs) => theirs,
                None => return,
            },
            None => event,
        };
        let Some(peer) = self.peers.get_mut(&session) else {
            return;
        };
        match event {
            SessionEvent::FlowOpened {
                flow_id, metadata, ..
            } => peer.flows.opened(flow_id, &metadata),
            SessionEvent::Message { flow_id, data } => {
                let mut ready = Vec::new();
                peer.flows.sync.receive(flow_id, data, &mut ready);
                for (stream_id, kind, timestamp, payload) in parse_ready(&peer.flows, ready) {
                    self.on_peer_message(session, stream_id, kind, timestamp, payload);
                }
            }
            SessionEvent::FlowFinished { flow_id } => {
                peer.flows.theirs.remove(&flow_id);
            }
            SessionEvent::Closed(_) => {
                self.peers.remove(&session);
                let names: Vec<String> = self.direct_names.values().cloned().collect();
                for name in names {
                    let subscribers: Vec<DirectSubscriber> = self.direct.players(&name).to_vec();
                    for sub in subscribers.into_iter().filter(|(s, _)| *s == session) {
                        self.direct.stop_playing(&name, sub);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_peer_message(
        &mut self,
        peer: SessionId,
        stream_id: u32,
        kind: u8,
        timestamp: u32,
        payload: Bytes,
    ) {
        let Some(cmd) = parse_command(kind, &payload) else {
            // Media and data from a publisher we play directly.
            return self.on_message(stream_id, kind, timestamp, payload);
        };
        match cmd.name.as_str() {
            "play" => {
                let name = cmd
                    .argument(0)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if !self.direct_names.values().any(|n| *n == name) {
                    return self.status_to_peer(
                        peer,
                        stream_id,
                        Level::Error,
                        code::PLAY_STREAM_NOT_FOUND,
                        &format!("{name} is not published here"),
                    );
                }
                let join = self.direct.play(&name, (peer, stream_id));
                self.user_control_to_peer(peer, stream_id, tc::stream_begin(stream_id));
                self.status_to_peer(
                    peer,
                    stream_id,
                    Level::Status,
                    code::PLAY_RESET,
                    &format!("Playing and resetting {name}."),
                );
                self.status_to_peer(
                    peer,
                    stream_id,
                    Level::Status,
                    code::PLAY_START,
                    &format!("Started playing {name}."),
                );
                for m in join.catch_up {
                    let (lane, kind) = Lane::for_media(m.kind);
                    let header = message_header(kind, m.timestamp);
                    self.send_to_peer(peer, stream_id, lane, &[&header, &m.payload], None);
                }
            }
            "closeStream" | "deleteStream" => {
                let names: Vec<String> = self.direct_names.values().cloned().collect();
                for name in names {
                    self.direct.stop_playing(&name, (peer, stream_id));
                }
            }
            _ => self.on_command(stream_id, cmd),
        }
    }
}

fn play_command(name: &str) -> Command {
    Command::new(
        "play",
        0.0,
        Value::Null,
        vec![name.into(), (-1000.0).into()],
    )
}

fn parse_command(kind: u8, payload: &Bytes) -> Option<Command> {
    let body = match kind {
        kind::COMMAND_AMF0 => payload.clone(),
        kind::COMMAND_AMF3 => payload.slice(1.min(payload.len())..),
        _ => return None,
    };
    Command::parse(&body).ok()
}

fn description_of(cmd: &Command) -> String {
    cmd.arguments
        .iter()
        .find_map(|v| v.get("description").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

/// Messages past the flow-sync barriers, with the stream id of their flow.
fn parse_ready(flows: &Flows, ready: Vec<(u64, Vec<u8>)>) -> Vec<(u32, u8, u32, Bytes)> {
    ready
        .into_iter()
        .filter_map(|(flow_id, data)| {
            let stream_id = *flows.theirs.get(&flow_id)?;
            let m = TcMessage::parse(&data).ok()?;
            let (kind, timestamp) = (m.kind, m.timestamp);
            Some((stream_id, kind, timestamp, Bytes::from(data).slice(5..)))
        })
        .collect()
}

fn handshake_code(failure: &HandshakeFailure) -> &'static str {
    match failure {
        HandshakeFailure::NoAnswer(_) => "RTMFP.Handshake.NoAnswer",
        _ => "RTMFP.Handshake.Failed",
    }
}
