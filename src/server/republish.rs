//! The server's own NetGroup members: one per group it republishes streams into
//! (`[[app.republish]]`, `serve --group`; docs/netgroup.md §4).
//!
//! The server is a member of each such group under its own peer id, on the rendezvous
//! ring like any other. It connects to nobody: a member the ring makes its neighbour is
//! told to open a session to the server's peer id, which the server answers as itself.
//! The first message on that session's group report flow is the group handshake; it
//! names the group, and so which of our members takes the session. From there the
//! session is a neighbour link like any between two members: reports, stream
//! subscriptions, fragments pushed and pulled.
//!
//! What the server publishes into a group comes from the application as a
//! [`GroupFeed`]: every shard gets the same feed for every publication, so every shard's
//! member cuts the same fragments under the same stream key.

use std::collections::VecDeque;
use std::net::SocketAddr;

use rustc_hash::FxHashMap as HashMap;
use sha2::{Digest, Sha256};

use super::app::{GroupFeed, Publication};
use super::config::{MulticastForm, MulticastRequest, ServerConfig};
use crate::group::member::GroupMember;
use crate::group::peer_messages::{GroupFlowRole, ReportFlowMessage};
use crate::group::stream::StreamCounters;
use crate::group::GroupId;
use crate::media::{MediaKind, MediaMessage};
use crate::multicast::datagram::MulticastKey;
use crate::multicast::sender::MulticastSender;
use crate::proto::endpoint::SessionId;
use crate::proto::endpoint::Transmit;
use crate::proto::epd::PeerId;
use crate::proto::session::SessionEvent;
use crate::proto::{Endpoint, Instant};

/// Group flow events one session may have waiting for its handshake.
const PENDING_EVENTS: usize = 8;
/// Flow exception code for group flows naming a group we are not in.
const NOT_OUR_GROUP: u64 = 0;

/// How one group's stream goes out by IP multicast (docs/ipmulticast.md).
#[derive(Debug)]
struct IpMulticast {
    sender: MulticastSender,
    /// Fusion: members relay what IP multicast brings them, and we push as usual.
    fusion: bool,
}

pub struct ServerGroups {
    server_peer: PeerId,
    /// Per member (same order): its IP multicast sender, if the group's stream goes to
    /// a multicast address.
    senders: Vec<Option<IpMulticast>>,
    /// This shard sends the IP multicast datagrams (one shard does, for the server).
    sends_multicast: bool,
    fragment_header: Vec<u8>,
    members: Vec<(GroupId, GroupMember)>,
    /// Per member (same order): the stream's headers, repeated before every keyframe.
    headers: Vec<StreamHeaders>,
    /// Sessions whose group handshake named one of our groups.
    routed: HashMap<SessionId, GroupId>,
    /// Group flow events of sessions whose handshake has not come yet.
    pending: HashMap<SessionId, Vec<SessionEvent>>,
    /// Sessions that opened group flows for a group we are not a member of.
    refused: u64,
    /// What multicast keys are derived from (the same on every shard).
    secret: [u8; 32],
}

impl ServerGroups {
    /// A member for every group `config` republishes into, known as `server_peer`.
    /// Multicast keys are derived from `secret`, the same on every shard of the server;
    /// `sends_multicast` on one shard only.
    pub fn new(
        config: &ServerConfig,
        server_peer: PeerId,
        secret: [u8; 32],
        sends_multicast: bool,
    ) -> Self {
        let members: Vec<(GroupId, GroupMember)> = config
            .republish_groups()
            .iter()
            .map(|spec| (spec.group_id(), GroupMember::serving(spec, server_peer)))
            .collect();
        let senders = members
            .iter()
            .map(|(group, _)| {
                config
                    .multicast_form(group)
                    .map(|(address, form)| IpMulticast {
                        sender: MulticastSender::new(
                            address,
                            multicast_key(&secret, group),
                            config.multicast_fec(group),
                        ),
                        fusion: form == MulticastForm::Fusion,
                    })
            })
            .collect();
        ServerGroups {
            server_peer,
            senders,
            sends_multicast,
            fragment_header: Vec::with_capacity(16),
            headers: members.iter().map(|_| StreamHeaders::default()).collect(),
            members,
            routed: HashMap::default(),
            pending: HashMap::default(),
            refused: 0,
            secret,
        }
    }

    /// The publisher asked for `request`'s group and form in its stream name
    /// (`fms.multicast.*`): we become a member of that group if we are not one, and its
    /// stream goes out as asked. Returns the member's index.
    fn follow_request(&mut self, request: &MulticastRequest) -> usize {
        let group = request.group.group_id();
        let i = match self.members.iter().position(|(g, _)| *g == group) {
            Some(i) => i,
            None => {
                self.members.push((
                    group,
                    GroupMember::serving(&request.group, self.server_peer),
                ));
                self.headers.push(StreamHeaders::default());
                self.senders.push(None);
                self.members.len() - 1
            }
        };
        let same = self.senders[i]
            .as_ref()
            .is_some_and(|s| Some(s.sender.address()) == request.address);
        if !same {
            self.senders[i] = request
                .address
                .filter(|_| request.form.uses_ip())
                .map(|address| IpMulticast {
                    sender: MulticastSender::new(
                        address,
                        multicast_key(&self.secret, &group),
                        None,
                    ),
                    fusion: request.form == MulticastForm::Fusion,
                });
        } else if let Some(ip) = &mut self.senders[i] {
            ip.fusion = request.form == MulticastForm::Fusion;
        }
        i
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn member(&mut self, group: &GroupId) -> Option<&mut GroupMember> {
        self.members
            .iter_mut()
            .find(|(g, _)| g == group)
            .map(|(_, m)| m)
    }

    /// Our member of `group`.
    pub fn get(&self, group: &GroupId) -> Option<&GroupMember> {
        self.members
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, m)| m)
    }

    /// The IP multicast address and key of `group`'s stream, for the members it admits.
    pub fn multicast_key_for(&self, group: &GroupId) -> Option<(SocketAddr, MulticastKey, bool)> {
        let i = self.members.iter().position(|(g, _)| g == group)?;
        self.senders[i]
            .as_ref()
            .map(|s| (s.sender.address(), s.sender.key().clone(), s.fusion))
    }

    /// IP multicast datagrams this shard sent.
    pub fn multicast_sent(&self) -> u64 {
        self.senders.iter().flatten().map(|s| s.sender.sent()).sum()
    }

    /// IP multicast datagrams waiting for their senders' pacing.
    pub fn multicast_queued(&self) -> usize {
        self.senders
            .iter()
            .flatten()
            .map(|s| s.sender.queued())
            .sum()
    }

    /// IP multicast datagrams dropped because their sender's queue was full (the
    /// stream outran its pacing).
    pub fn multicast_dropped(&self) -> u64 {
        self.senders
            .iter()
            .flatten()
            .map(|s| s.sender.dropped())
            .sum()
    }

    /// IP multicast repair datagrams (FEC) this shard sealed.
    pub fn multicast_repairs(&self) -> u64 {
        self.senders
            .iter()
            .flatten()
            .map(|s| s.sender.repairs())
            .sum()
    }

    /// Sessions that opened group flows for a group the server is not in.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// What the server's members did with the streams they publish, summed.
    pub fn counters(&self) -> StreamCounters {
        let mut sum = StreamCounters::default();
        for stream in self.members.iter().filter_map(|(_, m)| m.stream()) {
            let c = stream.counters();
            sum.fragments_received += c.fragments_received;
            sum.duplicates += c.duplicates;
            sum.fragments_sent += c.fragments_sent;
            sum.pulls_sent += c.pulls_sent;
            sum.unreadable += c.unreadable;
            sum.fragments_published += c.fragments_published;
            sum.pulls_answered += c.pulls_answered;
            sum.push_rotations += c.push_rotations;
        }
        sum
    }

    /// An event of a session: group traffic is ours (`None`); anything else, and a
    /// session's end, which the caller must see too, is handed back.
    pub fn on_session_event(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionId,
        event: SessionEvent,
    ) -> Option<SessionEvent> {
        if self.members.is_empty() {
            return Some(event);
        }
        if let Some(group) = self.routed.get(&session).copied() {
            let member = self.member(&group)?;
            if let SessionEvent::Closed(reason) = event {
                member.on_peer_event(now, endpoint, session, SessionEvent::Closed(reason));
                self.routed.remove(&session);
                return Some(SessionEvent::Closed(reason));
            }
            return member.on_peer_event(now, endpoint, session, event);
        }
        match event {
            SessionEvent::FlowOpened { ref metadata, .. }
                if GroupFlowRole::from_metadata(metadata).is_some() =>
            {
                let waiting = self.pending.entry(session).or_default();
                if waiting.len() < PENDING_EVENTS {
                    waiting.push(event);
                }
                None
            }
            SessionEvent::Message { flow_id, ref data } if self.is_pending(session, flow_id) => {
                let group = match ReportFlowMessage::parse(data) {
                    Ok(ReportFlowMessage::Handshake(h)) => Some(h.group),
                    _ => None,
                };
                let waiting = self.pending.remove(&session).unwrap_or_default();
                match group.and_then(|g| self.member(&g).map(|_| g)) {
                    Some(group) => {
                        self.routed.insert(session, group);
                        let member = self.member(&group)?;
                        member.adopt(now, endpoint, session);
                        for e in waiting.into_iter().chain(std::iter::once(event)) {
                            member.on_peer_event(now, endpoint, session, e);
                        }
                    }
                    None => {
                        self.refused += 1;
                        if let Some(s) = endpoint.session_mut(session) {
                            for e in &waiting {
                                if let SessionEvent::FlowOpened { flow_id, .. } = e {
                                    s.reject_flow(*flow_id, NOT_OUR_GROUP);
                                }
                            }
                        }
                    }
                }
                None
            }
            SessionEvent::Closed(_) => {
                self.pending.remove(&session);
                Some(event)
            }
            other => Some(other),
        }
    }

    fn is_pending(&self, session: SessionId, flow: u64) -> bool {
        self.pending.get(&session).is_some_and(|events| {
            events
                .iter()
                .any(|e| matches!(e, SessionEvent::FlowOpened { flow_id, .. } if *flow_id == flow))
        })
    }

    /// What the application tells our members to publish. IP multicast datagrams go to
    /// `out`.
    pub fn on_feed(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        feed: GroupFeed,
        out: &mut VecDeque<Transmit>,
    ) {
        match feed {
            GroupFeed::Start {
                group,
                name,
                publication,
                request,
            } => {
                let key = stream_key(&self.server_peer, &group, &name, publication);
                let found = match &request {
                    Some(r) => Some(self.follow_request(r)),
                    None => self.members.iter().position(|(g, _)| *g == group),
                };
                let Some(i) = found else {
                    return;
                };
                self.headers[i] = StreamHeaders::default();
                self.members[i].1.publish(now, endpoint, &name, key);
                if let Some(ip) = &mut self.senders[i] {
                    let mut tag = [0u8; 8];
                    tag.copy_from_slice(&key[..8]);
                    ip.sender.start(now, tag);
                    if !ip.fusion {
                        // Native IP multicast brings every member the stream: no pushes,
                        // only pull answers to repair what it lost.
                        self.members[i].1.limit_pushes(0);
                    }
                }
            }
            GroupFeed::Media { group, message } => {
                let Some(i) = self.members.iter().position(|(g, _)| *g == group) else {
                    return;
                };
                let member = &mut self.members[i].1;
                let mut fragments = Vec::new();
                for m in self.headers[i].before(&message) {
                    fragments.extend(member.send_media(now, endpoint, &m));
                }
                fragments.extend(member.send_media(now, endpoint, &message));
                let ip = self.senders[i].as_mut().filter(|_| self.sends_multicast);
                if let Some(IpMulticast { sender, .. }) = ip {
                    for f in &fragments {
                        self.fragment_header.clear();
                        f.write_header(&mut self.fragment_header);
                        sender.push_fragment(now, &self.fragment_header, &f.payload);
                    }
                    while let Some(t) = sender.poll_transmit(now) {
                        out.push_back(t);
                    }
                }
            }
            GroupFeed::Stop { group, .. } => {
                let Some(i) = self.members.iter().position(|(g, _)| *g == group) else {
                    return;
                };
                self.members[i].1.stop_publishing(now);
                if let Some(ip) = &mut self.senders[i] {
                    ip.sender.stop(now);
                }
                self.release_multicast(now, out);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let senders = self
            .senders
            .iter()
            .flatten()
            .filter(|_| self.sends_multicast)
            .filter_map(|ip| ip.sender.poll_timeout());
        self.members
            .iter()
            .filter_map(|(_, m)| m.poll_timeout())
            .chain(senders)
            .min()
    }

    /// Timers of our members and IP multicast senders; datagrams the senders release go
    /// to `out`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        out: &mut VecDeque<Transmit>,
    ) {
        self.release_multicast(now, out);
        for (_, member) in &mut self.members {
            if member.poll_timeout().is_some_and(|t| now >= t) {
                member.handle_timeout(now, endpoint);
            }
            // Our members play nothing; what they reassemble is not wanted.
            while member.poll_event().is_some() {}
        }
    }

    /// Runs the IP multicast senders' timers; what they release goes to `out`.
    fn release_multicast(&mut self, now: Instant, out: &mut VecDeque<Transmit>) {
        if !self.sends_multicast {
            return;
        }
        for ip in self.senders.iter_mut().flatten() {
            ip.sender.handle_timeout(now);
            while let Some(t) = ip.sender.poll_transmit(now) {
                out.push_back(t);
            }
        }
    }

    /// For the status page: the server's peer id in its groups.
    pub fn server_peer(&self) -> PeerId {
        self.server_peer
    }

    /// For the status page: the server's member of each group, and how its stream
    /// goes out by IP multicast (address, Fusion, datagrams sent by this shard) if it does.
    pub fn status_members(
        &self,
    ) -> impl Iterator<Item = (&GroupId, &GroupMember, Option<(SocketAddr, bool, u64)>)> {
        self.members.iter().zip(&self.senders).map(|((g, m), s)| {
            let ip = s
                .as_ref()
                .map(|s| (s.sender.address(), s.fusion, s.sender.sent()));
            (g, m, ip)
        })
    }
}

/// The key of `group`'s IP multicast datagrams: the same on every shard (all share
/// `secret`), different for every group. Id 1: keys do not rotate yet.
fn multicast_key(secret: &[u8; 32], group: &GroupId) -> MulticastKey {
    let mut h = Sha256::new();
    h.update(b"rtmfp-edge multicast key");
    h.update(secret);
    h.update(group.0);
    MulticastKey {
        id: 1,
        secret: h.finalize().into(),
    }
}

/// A republished stream's metadata and codec headers. RTMP encoders (ffmpeg, OBS) send
/// them once, at the start; a member that joins later, or whose first fragments were
/// not the stream's first, could never start decoding. So, as Flash publishers do, the
/// server repeats them before every keyframe that does not follow them already.
#[derive(Debug, Default)]
struct StreamHeaders {
    metadata: Option<MediaMessage>,
    video: Option<MediaMessage>,
    audio: Option<MediaMessage>,
    /// Headers went out since the last keyframe.
    fresh: bool,
}

impl StreamHeaders {
    /// Notes `message` if it is a header; says which headers to send before it.
    fn before(&mut self, message: &MediaMessage) -> Vec<MediaMessage> {
        if message.is_metadata() {
            self.metadata = Some(message.clone());
        } else if message.is_sequence_header() {
            self.fresh = true;
            match message.kind {
                MediaKind::Video => self.video = Some(message.clone()),
                MediaKind::Audio => self.audio = Some(message.clone()),
                MediaKind::Data => {}
            }
        } else if message.kind == MediaKind::Video && message.is_keyframe() {
            let repeat = !std::mem::replace(&mut self.fresh, false);
            if repeat {
                let stamp = |m: &MediaMessage| {
                    MediaMessage::new(m.kind, message.timestamp, m.payload.clone())
                };
                return [&self.metadata, &self.video, &self.audio]
                    .into_iter()
                    .flatten()
                    .map(stamp)
                    .collect();
            }
        }
        Vec::new()
    }
}

/// The 32 bytes naming a republished stream in its group: the same on every shard (all
/// know the server's peer id and the publication), different for every publication, so
/// members never mix the fragments of two.
fn stream_key(server: &PeerId, group: &GroupId, name: &str, publication: Publication) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"rtmfp-edge republished stream");
    h.update(server.0);
    h.update(group.0);
    h.update(name.as_bytes());
    h.update(publication.0.to_be_bytes());
    h.update(publication.1.to_be_bytes());
    h.finalize().into()
}
