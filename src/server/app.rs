//! The NetConnection/NetStream application, protocol-neutral: RTMFP sessions and RTMP
//! connections both feed it `(stream id, message)` and carry out what it queues. It
//! authorizes connects and publishes against the config, runs live streams, and fans
//! media out to players by reference.

use std::collections::VecDeque;

// Keys here are ids we hand out (connections, sessions, flows): no hash flooding to fear,
// and every media message looks several up per player.
use rustc_hash::FxHashMap as HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use super::config::{
    ConnectRequest, Limit, MulticastRequest, Refusal, RefusalKind, RequestedStream, ServerConfig,
    SharedToken,
};
use super::directory::Directory;
use super::live::{LiveStreams, PublishError};
use crate::flash::amf::Value;
use crate::flash::command::{code, info, on_status, Command, Level};
use crate::flash::tc::{self, kind};
use crate::group::GroupId;
use crate::media::{MediaKind, MediaMessage};
use crate::proto::epd::PeerId;

/// A connection of either transport, numbered by the application.
pub type ConnId = u64;

/// A publication, server-wide: its publisher's connection (unique across shards) and
/// NetStream.
pub type Publication = (ConnId, u32);

/// A player or publisher: one NetStream of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRef {
    pub conn: ConnId,
    pub stream_id: u32,
}

/// What the application queued for the transports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// For one connection.
    To(ConnId, Outgoing),
    /// One media message for many players.
    FanOut(FanOut),
}

/// A publisher's media message for every player of its stream on this shard that takes
/// its kind (not those that turned it off with `receiveAudio`/`receiveVideo`): one queue
/// entry, whatever the number of players, and the transport walks the list. The list is
/// shared by every message until a player joins, leaves or changes what it receives.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOut {
    pub message: MediaMessage,
    pub players: Arc<[StreamRef]>,
}

/// What a transport must do for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A command, data or user-control message on a stream (0 = the NetConnection).
    Message {
        stream_id: u32,
        kind: u8,
        timestamp: u32,
        payload: Bytes,
    },
    /// Media for a player's stream.
    Media {
        stream_id: u32,
        message: MediaMessage,
    },
    /// The client reported the addresses it can be reached at (`setPeerInfo`): RTMFP
    /// hands them out in redirects when introducing peers.
    PeerAddresses(Vec<SocketAddr>),
    /// Tell this NetGroup member of a peer to open a session to: a new neighbour on the
    /// group's ring (docs/netgroup.md §2.2).
    GroupMember { group: GroupId, peer: PeerId },
    /// This member may no longer be in `group` (a reloaded config stopped allowing it):
    /// it has left it here; end its group flows.
    LeaveGroup { group: GroupId },
    /// Send what is queued, then close (a refused connect).
    Close,
}

/// What the application on one shard tells the applications on the other shards: the
/// engine carries these over its rings. Media travels as a [`MediaMessage`], whose
/// payload is a refcounted buffer: crossing shards costs a pointer, never a copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Relay {
    Published {
        stream: Arc<str>,
        /// Names the publication server-wide (for the group stream key).
        publication: Publication,
        /// The multicast form its publisher asked for (`fms.multicast.*`), if any.
        request: Option<Arc<MulticastRequest>>,
    },
    Media {
        stream: Arc<str>,
        message: MediaMessage,
    },
    Unpublished {
        stream: Arc<str>,
    },
    /// A member notice for a member connected to another shard (`to` carries it).
    GroupMember {
        to: ConnId,
        group: GroupId,
        peer: PeerId,
    },
}

/// What the server's own NetGroup member must do for a stream it republishes
/// (`[[app.republish]]`). Every shard gets the same feed, in the same order, for every
/// publication (its own and the mirrored ones): each shard's member cuts the same
/// fragments, under the same stream key, for the members whose sessions it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupFeed {
    Start {
        group: GroupId,
        /// The stream's name in the group (the name it was published under).
        name: String,
        /// Names this publication server-wide: the same on every shard.
        publication: Publication,
        /// Set when the publisher asked for the group in its stream name
        /// (`fms.multicast.*`): the server joins that group for it, in that form.
        request: Option<Arc<MulticastRequest>>,
    },
    Media {
        group: GroupId,
        message: MediaMessage,
    },
    Stop {
        group: GroupId,
        /// The stream's name in the group, for the members' unpublish notice.
        name: String,
    },
}

/// What happened, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    Connected {
        conn: ConnId,
        app: String,
    },
    /// A connect, publish, play or group join refused: the status `code` it was answered
    /// with and the reason it was given (counted by kind, `App::refusals`).
    Refused {
        conn: ConnId,
        code: &'static str,
        reason: String,
    },
    Publishing {
        conn: ConnId,
        stream: String,
    },
    Unpublished {
        conn: ConnId,
        stream: String,
    },
    Playing {
        conn: ConnId,
        stream: String,
    },
    GroupJoined {
        conn: ConnId,
        group: GroupId,
        /// Members now, all shards.
        members: usize,
    },
    GroupLeft {
        conn: ConnId,
        group: GroupId,
    },
    /// A reloaded config no longer allows what this client was doing: it was told why
    /// with the status a refusal carries (`code`, `reason`), and its connection closed
    /// (`NetConnection.Connect.*`), its publication ended (`NetStream.Publish.Denied`)
    /// or its group membership ended (`NetGroup.Connect.Rejected`).
    Revoked {
        conn: ConnId,
        code: &'static str,
        reason: String,
    },
}

/// What a reload ([`App::reload`]) ended on this shard because the new config no longer
/// allows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Connections closed: their app is gone, or its connect rule now refuses them.
    pub connections: usize,
    /// Publications ended: the app's publish rule now refuses them.
    pub publications: usize,
    /// Group memberships ended: the app's `[app.group] allow` no longer has the group.
    pub memberships: usize,
}

/// Added to the reason a reload gives, so a client long connected knows why now.
const RELOADED: &str = " (the server's config changed)";

/// The status a NetGroup member gets when the server refuses its join.
pub const GROUP_REJECTED: &str = "NetGroup.Connect.Rejected";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Idle,
    Publishing {
        name: String,
        /// The publish token the publisher presented, to judge it again on a reload.
        token: Option<SharedToken>,
        /// The group its publisher asked to be republished into (`fms.multicast.*`).
        group: Option<GroupId>,
    },
    Playing {
        name: String,
        audio: bool,
        video: bool,
    },
}

#[derive(Debug)]
struct Connection {
    client: IpAddr,
    /// The app after a successful connect.
    app: Option<String>,
    /// The token presented with the connect, to judge the client again on a reload.
    token: Option<SharedToken>,
    streams: HashMap<u32, Role>,
    next_stream_id: u32,
    /// NetGroups joined, with the peer id the member joined as.
    groups: Vec<(GroupId, PeerId)>,
}

/// Live stream names are per app: `app/stream`.
fn stream_key(app: &str, stream: &str) -> String {
    format!("{app}/{stream}")
}

/// The stream name in a key.
fn stream_name(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, name)| name)
}

/// Connection ids start at 1: 0 marks a publisher on another shard, mirrored here, and
/// its `stream_id` is that shard.
const REMOTE_CONN: ConnId = 0;

/// The server itself as a NetGroup member: its entry on the rendezvous ring of a group it
/// republishes streams into. Members it would be told of are told of it instead.
pub const SERVER_MEMBER: ConnId = ConnId::MAX;

fn remote_publisher(shard: u8) -> StreamRef {
    StreamRef {
        conn: REMOTE_CONN,
        stream_id: u32::from(shard),
    }
}

/// What one shard's application holds at a moment ([`App::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppCensus {
    /// Clients connected to an app (after a successful `connect`), RTMFP and RTMP.
    pub connections: usize,
    /// Streams published by a client of this shard (mirrors of other shards' are not).
    pub streams: usize,
    /// Players of this shard's clients.
    pub players: usize,
    /// Group memberships of this shard's clients (a client in two groups counts twice).
    pub group_members: usize,
}

pub struct App {
    config: Arc<ServerConfig>,
    /// Shared by the applications of all shards.
    directory: Arc<Directory>,
    /// This application's shard, and whether other shards need our publications.
    shard: u8,
    relaying: bool,
    relays: VecDeque<Relay>,
    live: LiveStreams<StreamRef>,
    conns: HashMap<ConnId, Connection>,
    next_conn: ConnId,
    outgoing: VecDeque<Output>,
    /// Per stream key, its players that take each media kind (audio, video, data), for
    /// [`FanOut`]s: all forgotten when a player joins, leaves or changes what it
    /// receives, and each rebuilt at its stream's next message of that kind.
    fan_out_lists: HashMap<String, [Option<Arc<[StreamRef]>>; 3]>,
    /// `(LiveStreams::players_version, wants_version)` the lists were built at.
    fan_out_versions: (u64, u64),
    /// Counts changes to what players receive (`receiveAudio`, `receiveVideo`).
    wants_version: u64,
    events: VecDeque<AppEvent>,
    /// Bytes each publisher sent in its current measuring window, for `max_publish_kbps`.
    publish_rates: HashMap<StreamRef, RateWindow>,
    /// The server's peer id, once it is a member of the groups it republishes into.
    server_peer: Option<PeerId>,
    /// Streams being republished (by key), and into which groups.
    republishing: HashMap<String, Vec<GroupId>>,
    group_feed: VecDeque<GroupFeed>,
    /// Connects, publishes, plays and group joins refused since this shard started, by
    /// [`RefusalKind::ALL`]'s order.
    refusals: [u64; RefusalKind::ALL.len()],
}

/// Whether `player` takes media of `kind` (plays the stream, and has not turned the kind
/// off).
fn takes(conns: &HashMap<ConnId, Connection>, player: &StreamRef, kind: MediaKind) -> bool {
    match conns
        .get(&player.conn)
        .and_then(|c| c.streams.get(&player.stream_id))
    {
        Some(Role::Playing { audio, video, .. }) => match kind {
            MediaKind::Audio => *audio,
            MediaKind::Video => *video,
            MediaKind::Data => true,
        },
        _ => false,
    }
}

/// How much a publisher sent since `start` (media time, milliseconds).
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    start: u32,
    bytes: u64,
}

/// A publisher's rate is judged over this much media time.
const RATE_WINDOW_MS: u32 = 2000;

impl App {
    /// The application of a server with one shard.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self::sharded(config, Arc::new(Directory::new()), 0, false)
    }

    /// The application of `shard`, one of several sharing `directory`; with `relaying`,
    /// its publications are queued for the other shards ([`App::poll_relay`]).
    pub fn sharded(
        config: Arc<ServerConfig>,
        directory: Arc<Directory>,
        shard: u8,
        relaying: bool,
    ) -> Self {
        App {
            config,
            directory,
            shard,
            relaying,
            relays: VecDeque::new(),
            live: LiveStreams::default(),
            conns: HashMap::default(),
            // Connection ids are unique across shards: the shard is in the top bits.
            next_conn: (u64::from(shard) << 48) + 1,
            outgoing: VecDeque::new(),
            fan_out_lists: HashMap::default(),
            fan_out_versions: (0, 0),
            wants_version: 0,
            events: VecDeque::new(),
            publish_rates: HashMap::default(),
            server_peer: None,
            refusals: [0; RefusalKind::ALL.len()],
            republishing: HashMap::default(),
            group_feed: VecDeque::new(),
        }
    }

    /// Makes the server, known to clients as `peer`, a member of every group the config
    /// republishes into (idempotent across shards: the directory is shared). Members
    /// that would be told of it as their ring neighbour are told instead to connect to it.
    pub fn join_republish_groups(&mut self, peer: PeerId) {
        self.server_peer = Some(peer);
        for spec in self.config.republish_groups() {
            self.join_as_server(spec.group_id());
        }
    }

    /// Makes the server a member of `group` in the directory (idempotent), once it has
    /// its peer id.
    fn join_as_server(&mut self, group: GroupId) {
        let Some(peer) = self.server_peer else {
            return;
        };
        let joined = self
            .directory
            .join_group(group, peer, SERVER_MEMBER, |_| Ok::<(), Refusal>(()));
        if let Ok(joined) = joined {
            for member in joined.notify {
                self.tell_member(member, group, peer);
            }
        }
    }

    /// What the server's own group members must do next.
    pub fn poll_group_feed(&mut self) -> Option<GroupFeed> {
        self.group_feed.pop_front()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The server is shutting down: every connection is told so
    /// (`NetConnection.Connect.AppShutdown`); the transports close them next.
    pub fn announce_shutdown(&mut self) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.status(
                conn,
                0,
                Level::Error,
                code::CONNECT_APP_SHUTDOWN,
                "the server is shutting down",
            );
        }
    }

    /// The server's config was reloaded: from now on connects, publishes, plays and group
    /// joins are judged by `config`. Clients it no longer allows are told why, with the
    /// status a refusal carries, and lose what it no longer allows: their connection
    /// (app removed, connect rule refuses them), their publication (publish rule), their
    /// group membership (`[app.group] allow`). Everything else goes on untouched; limits
    /// count admissions, so a lower limit refuses newcomers and closes nobody.
    pub fn reload(&mut self, config: Arc<ServerConfig>) -> ReloadOutcome {
        self.config = config;
        let mut outcome = ReloadOutcome::default();
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            let config = Arc::clone(&self.config);
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let Some(app_name) = c.app.clone() else {
                continue;
            };
            let app = match config.app(&app_name) {
                None => Err((
                    code::CONNECT_INVALID_APP,
                    format!("no application {app_name:?} on this server"),
                )),
                Some(app) => app
                    .reauthorize_connect(c.client, c.token.as_ref())
                    .map(|()| app)
                    .map_err(|r| (code::CONNECT_REJECTED, r.reason)),
            };
            let app = match app {
                Ok(app) => app,
                Err((status, reason)) => {
                    self.revoke_connection(conn, status, reason);
                    outcome.connections += 1;
                    continue;
                }
            };
            let client = c.client;
            let mut publications: Vec<(u32, Refusal)> = c
                .streams
                .iter()
                .filter_map(|(&stream_id, role)| match role {
                    Role::Publishing { name, token, group } => app
                        .reauthorize_publish(client, token.as_ref(), name)
                        .and_then(|()| group.map_or(Ok(()), |g| app.authorize_group(&g)))
                        .err()
                        .map(|refusal| (stream_id, refusal)),
                    _ => None,
                })
                .collect();
            publications.sort_unstable_by_key(|(stream_id, _)| *stream_id);
            let memberships: Vec<(GroupId, Refusal)> = c
                .groups
                .iter()
                .filter_map(|(group, _)| app.authorize_group(group).err().map(|r| (*group, r)))
                .collect();
            for (stream_id, refusal) in publications {
                self.end_stream_role(conn, stream_id);
                let reason = format!("{refusal}{RELOADED}");
                self.status(conn, stream_id, Level::Error, code::PUBLISH_DENIED, &reason);
                self.events.push_back(AppEvent::Revoked {
                    conn,
                    code: code::PUBLISH_DENIED,
                    reason,
                });
                outcome.publications += 1;
            }
            for (group, refusal) in memberships {
                self.leave_group(conn, group);
                let reason = format!("{refusal}{RELOADED}");
                self.status(conn, 0, Level::Error, GROUP_REJECTED, &reason);
                self.outgoing
                    .push_back(Output::To(conn, Outgoing::LeaveGroup { group }));
                self.events.push_back(AppEvent::Revoked {
                    conn,
                    code: GROUP_REJECTED,
                    reason,
                });
                outcome.memberships += 1;
            }
        }
        outcome
    }

    /// Tells a connected client the reloaded config refuses it (as a refused connect is
    /// told, but on `onStatus`: its connect was answered long ago), then closes it.
    fn revoke_connection(&mut self, conn: ConnId, status: &'static str, reason: String) {
        let reason = format!("{reason}{RELOADED}");
        self.status(conn, 0, Level::Error, status, &reason);
        self.outgoing.push_back(Output::To(conn, Outgoing::Close));
        self.events.push_back(AppEvent::Revoked {
            conn,
            code: status,
            reason,
        });
        // Its publications end and its plays stop now, not when the transport is done.
        self.close(conn);
    }

    /// A transport accepted a client; the NetConnection is not connected until `connect`.
    pub fn open(&mut self, client: IpAddr) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Connection {
                client,
                app: None,
                token: None,
                streams: HashMap::default(),
                next_stream_id: 1,
                groups: Vec::new(),
            },
        );
        id
    }

    /// The transport lost the client: its publications end, its playbacks stop.
    pub fn close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(app) = &c.app {
            self.directory.leave_session(app, c.client);
        }
        let app = c.app.unwrap_or_default();
        for (stream_id, role) in c.streams {
            self.end_role(&app, StreamRef { conn, stream_id }, role);
        }
        for (group, peer) in c.groups {
            self.leave_group_as(conn, group, peer);
        }
    }

    /// A connected client, known to the transport as `peer`, asks to join `group`. Refused
    /// (with `NetGroup.Connect.Rejected` on its NetConnection, and nobody told of it) when
    /// it has not connected, or its app's `[app.group]` does not allow it.
    pub fn join_group(
        &mut self,
        conn: ConnId,
        peer: PeerId,
        group: GroupId,
    ) -> Result<(), Refusal> {
        let outcome = match self.conns.get(&conn).and_then(|c| c.app.clone()) {
            None => Err(Refusal {
                kind: RefusalKind::GroupNotAllowed,
                reason: "a group may be joined only after NetConnection.Connect.Success".into(),
            }),
            Some(app) => {
                let config = Arc::clone(&self.config);
                let rule = config.app(&app);
                self.directory.join_group(group, peer, conn, |current| {
                    rule.map_or(Ok(()), |a| a.authorize_group_join(&group, current))
                })
            }
        };
        match outcome {
            Ok(joined) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.groups.retain(|(g, _)| *g != group);
                    c.groups.push((group, peer));
                }
                for member in joined.notify {
                    match (member, self.server_peer) {
                        // The server does not open sessions to members: the newcomer
                        // opens one to the server.
                        (SERVER_MEMBER, Some(server)) => self.tell_member(conn, group, server),
                        (SERVER_MEMBER, None) => {}
                        _ => self.tell_member(member, group, peer),
                    }
                }
                self.events.push_back(AppEvent::GroupJoined {
                    conn,
                    group,
                    members: joined.members,
                });
                Ok(())
            }
            Err(refusal) => {
                self.refusals[refusal.kind.index()] += 1;
                self.status(conn, 0, Level::Error, GROUP_REJECTED, &refusal.reason);
                self.events.push_back(AppEvent::Refused {
                    conn,
                    code: GROUP_REJECTED,
                    reason: refusal.reason.clone(),
                });
                Err(refusal)
            }
        }
    }

    /// The member closed its group flow: it leaves `group`.
    pub fn leave_group(&mut self, conn: ConnId, group: GroupId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(i) = c.groups.iter().position(|(g, _)| *g == group) else {
            return;
        };
        let (_, peer) = c.groups.swap_remove(i);
        self.leave_group_as(conn, group, peer);
    }

    fn leave_group_as(&mut self, conn: ConnId, group: GroupId, peer: PeerId) {
        if let Some(left) = self.directory.leave_group(&group, &peer, conn) {
            if let Some(bridge) = left.bridge {
                if bridge.tell != SERVER_MEMBER {
                    self.tell_member(bridge.tell, group, bridge.about);
                } else if let Some(server) = self.server_peer {
                    self.tell_member(bridge.about_handle, group, server);
                }
            }
            self.events.push_back(AppEvent::GroupLeft { conn, group });
        }
    }

    /// Queues a member notice for `member`, here or, through a relay, on its shard.
    fn tell_member(&mut self, member: ConnId, group: GroupId, peer: PeerId) {
        if member == SERVER_MEMBER {
            return;
        }
        if self.conns.contains_key(&member) {
            self.outgoing
                .push_back(Output::To(member, Outgoing::GroupMember { group, peer }));
        } else if self.relaying {
            self.relays.push_back(Relay::GroupMember {
                to: member,
                group,
                peer,
            });
        }
    }

    /// What the transports must do next, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outgoing.pop_front()
    }

    /// [`Self::poll_output`] with each fan-out spelled out as one `Outgoing::Media` per
    /// player, in list order.
    pub fn poll_outgoing(&mut self) -> Option<(ConnId, Outgoing)> {
        match self.outgoing.pop_front()? {
            Output::To(conn, out) => Some((conn, out)),
            Output::FanOut(FanOut { message, players }) => {
                for p in players.iter().rev() {
                    self.outgoing.push_front(Output::To(
                        p.conn,
                        Outgoing::Media {
                            stream_id: p.stream_id,
                            message: message.clone(),
                        },
                    ));
                }
                self.poll_outgoing()
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<AppEvent> {
        self.events.pop_front()
    }

    /// The next message for the other shards' applications.
    pub fn poll_relay(&mut self) -> Option<Relay> {
        self.relays.pop_front()
    }

    /// A message from another shard's application: a publication there, mirrored here
    /// for this shard's players.
    pub fn relayed(&mut self, from_shard: u8, relay: Relay) {
        let remote = remote_publisher(from_shard);
        match relay {
            Relay::Published {
                stream,
                publication,
                request,
            } => {
                self.drop_stale_mirror(&stream, remote);
                if self.live.publish(&stream, remote).is_ok() {
                    self.announce_publish(&stream, publication, request);
                }
            }
            Relay::Media { stream, message } => self.fan_out(&stream, remote, &message),
            Relay::Unpublished { stream } => self.announce_unpublish(&stream, remote),
            Relay::GroupMember { to, group, peer } => {
                if self.conns.contains_key(&to) {
                    self.outgoing
                        .push_back(Output::To(to, Outgoing::GroupMember { group, peer }));
                }
            }
        }
    }

    /// What this shard's application holds now, for metrics.
    pub fn census(&self) -> AppCensus {
        let (streams, players) = self.live.census(|p| p.conn != REMOTE_CONN);
        AppCensus {
            connections: self.conns.values().filter(|c| c.app.is_some()).count(),
            streams,
            players,
            group_members: self.conns.values().map(|c| c.groups.len()).sum(),
        }
    }

    /// Connects, publishes, plays and group joins this shard refused, of `kind`.
    pub fn refusals(&self, kind: RefusalKind) -> u64 {
        self.refusals[kind.index()]
    }

    /// Connected clients (after a successful `connect`) of `app`.
    pub fn sessions_in(&self, app: &str) -> usize {
        self.conns
            .values()
            .filter(|c| c.app.as_deref() == Some(app))
            .count()
    }

    /// One message from a client on `stream_id` (0 = its NetConnection).
    pub fn message(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        kind: u8,
        timestamp: u32,
        payload: Bytes,
    ) {
        match kind {
            kind::AUDIO => self.media(conn, stream_id, MediaKind::Audio, timestamp, payload),
            kind::VIDEO => self.media(conn, stream_id, MediaKind::Video, timestamp, payload),
            kind::COMMAND_AMF0 | kind::COMMAND_AMF3 | kind::DATA_AMF0 | kind::DATA_AMF3 => {
                let body = if matches!(kind, kind::COMMAND_AMF3 | kind::DATA_AMF3) {
                    payload.slice(1.min(payload.len())..)
                } else {
                    payload
                };
                let is_data = matches!(kind, kind::DATA_AMF0 | kind::DATA_AMF3);
                match Command::parse(&body) {
                    // Metadata is also kept for late joiners; everything else a publisher
                    // sends (NetStream.send, onCuePoint...) is relayed as it comes.
                    Ok(_) if is_data => {
                        self.media(conn, stream_id, MediaKind::Data, timestamp, body)
                    }
                    Ok(cmd) => self.command(conn, stream_id, cmd),
                    // A malformed command is dropped; the client times out its call.
                    Err(_) => {}
                }
            }
            _ => {}
        }
    }

    fn send_command(&mut self, conn: ConnId, stream_id: u32, cmd: &Command) {
        self.outgoing.push_back(Output::To(
            conn,
            Outgoing::Message {
                stream_id,
                kind: kind::COMMAND_AMF0,
                timestamp: 0,
                payload: cmd.encode().into(),
            },
        ));
    }

    fn user_control(&mut self, conn: ConnId, stream_id: u32, event: Vec<u8>) {
        self.outgoing.push_back(Output::To(
            conn,
            Outgoing::Message {
                stream_id,
                kind: kind::USER_CONTROL,
                timestamp: 0,
                payload: event.into(),
            },
        ));
    }

    fn status(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        level: Level,
        code: &str,
        description: &str,
    ) {
        let cmd = on_status(level, code, description, vec![]);
        self.send_command(conn, stream_id, &cmd);
    }

    fn result(&mut self, conn: ConnId, stream_id: u32, tx: f64, value: Value) {
        if tx > 0.0 {
            let cmd = Command::new("_result", tx, Value::Null, vec![value]);
            self.send_command(conn, stream_id, &cmd);
        }
    }

    fn command(&mut self, conn: ConnId, stream_id: u32, cmd: Command) {
        let connected = self.conns.get(&conn).is_some_and(|c| c.app.is_some());
        match cmd.name.as_str() {
            "connect" if stream_id == 0 && !connected => self.connect(conn, &cmd),
            _ if !connected => {
                // Nothing but connect before connect.
            }
            "createStream" => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let id = c.next_stream_id;
                c.next_stream_id += 1;
                c.streams.insert(id, Role::Idle);
                // Answered even with transaction id 0: librtmfp sends createStream that
                // way and still waits for the `_result` carrying the id.
                let result = Command::new(
                    "_result",
                    cmd.transaction_id,
                    Value::Null,
                    vec![Value::Number(f64::from(id))],
                );
                self.send_command(conn, 0, &result);
            }
            "deleteStream" => {
                let id = cmd.argument(0).and_then(Value::as_f64).unwrap_or(0.0) as u32;
                self.delete_stream(conn, id);
            }
            "closeStream" => {
                self.end_stream_role(conn, stream_id);
            }
            "publish" => self.publish(conn, stream_id, &cmd),
            "play" => self.play(conn, stream_id, &cmd),
            "receiveAudio" | "receiveVideo" => {
                let on = cmd.argument(0).and_then(Value::as_bool).unwrap_or(true);
                if let Some(Role::Playing { audio, video, .. }) = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| c.streams.get_mut(&stream_id))
                {
                    self.wants_version += 1;
                    if cmd.name == "receiveAudio" {
                        *audio = on;
                    } else {
                        *video = on;
                    }
                }
            }
            "setPeerInfo" => {
                let addresses = cmd
                    .arguments
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|s| s.parse::<SocketAddr>().ok())
                    // librtmfp reports the address it bound (0.0.0.0, [::]): no peer
                    // can reach it there, so it is not handed out.
                    .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
                    .collect();
                self.outgoing
                    .push_back(Output::To(conn, Outgoing::PeerAddresses(addresses)));
            }
            // ffmpeg and OBS announce a publish this way; they wait for a result.
            "releaseStream" | "FCPublish" | "FCUnpublish" => {
                self.result(conn, stream_id, cmd.transaction_id, Value::Null);
            }
            // A live stream has no length; players (ffmpeg) want a number.
            "getStreamLength" => self.result(conn, stream_id, cmd.transaction_id, 0.0.into()),
            _ => {
                if cmd.transaction_id > 0.0 {
                    let error = Command::new(
                        "_error",
                        cmd.transaction_id,
                        Value::Null,
                        vec![info(
                            Level::Error,
                            code::CALL_FAILED,
                            &format!("unknown method {:?}", cmd.name),
                            vec![],
                        )],
                    );
                    self.send_command(conn, stream_id, &error);
                }
            }
        }
    }

    fn connect(&mut self, conn: ConnId, cmd: &Command) {
        let request = ConnectRequest {
            app: cmd.command_object.get("app").and_then(Value::as_str),
            tc_url: cmd.command_object.get("tcUrl").and_then(Value::as_str),
            first_extra_arg: cmd.argument(0).and_then(Value::as_str),
        };
        let requested = request.app();
        let app_name = requested.name.to_owned();
        let token = request.token().map(|t| t.into_owned());
        let Some(client) = self.conns.get(&conn).map(|c| c.client) else {
            return;
        };
        let directory = &self.directory;
        let verdict = match self.config.app(&app_name) {
            None => {
                self.refusals[RefusalKind::UnknownApp.index()] += 1;
                Err((
                    code::CONNECT_INVALID_APP,
                    format!("no application {app_name:?} on this server"),
                ))
            }
            Some(app) => app
                .authorize_connect(client, token.as_deref())
                .and_then(|()| {
                    directory.admit_session(&app_name, client, |current, from_client| {
                        app.check_session_limit(current)?;
                        app.check_address_limit(client, from_client)
                    })
                })
                .map_err(|r| {
                    self.refusals[r.kind.index()] += 1;
                    (code::CONNECT_REJECTED, r.to_string())
                }),
        };
        let encoding = cmd
            .command_object
            .get("objectEncoding")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        match verdict {
            Ok(()) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.app = Some(app_name.clone());
                    c.token = SharedToken::presented(token.as_deref());
                }
                let properties = Value::object([
                    ("fmsVer", Value::from("FMS/3,5,7,7009")),
                    ("capabilities", 31.0.into()),
                    ("mode", 1.0.into()),
                ]);
                let result = Command::new(
                    "_result",
                    cmd.transaction_id,
                    properties,
                    vec![info(
                        Level::Status,
                        code::CONNECT_SUCCESS,
                        "Connection succeeded.",
                        vec![("objectEncoding", encoding.into())],
                    )],
                );
                self.send_command(conn, 0, &result);
                self.events.push_back(AppEvent::Connected {
                    conn,
                    app: app_name,
                });
            }
            Err((status, reason)) => {
                let error = Command::new(
                    "_error",
                    cmd.transaction_id,
                    Value::Null,
                    vec![info(Level::Error, status, &reason, vec![])],
                );
                self.send_command(conn, 0, &error);
                self.outgoing.push_back(Output::To(conn, Outgoing::Close));
                self.events.push_back(AppEvent::Refused {
                    conn,
                    code: status,
                    reason,
                });
            }
        }
    }

    fn publish(&mut self, conn: ConnId, stream_id: u32, cmd: &Command) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.streams.contains_key(&stream_id) {
            return;
        }
        let (client, app_name) = (c.client, c.app.clone().unwrap_or_default());
        let raw = cmd.argument(0).and_then(Value::as_str).unwrap_or("");
        let requested = RequestedStream::parse(raw);
        let name = requested.name.to_owned();
        let token = requested.query.token().map(|t| t.into_owned());
        let request = match MulticastRequest::from_query(&requested.query) {
            Ok(r) => r.map(Arc::new),
            Err(e) => {
                return self.status(
                    conn,
                    stream_id,
                    Level::Error,
                    code::PUBLISH_DENIED,
                    &e.to_string(),
                )
            }
        };
        if name.is_empty() {
            return self.status(
                conn,
                stream_id,
                Level::Error,
                code::PUBLISH_BAD_NAME,
                "no stream name",
            );
        }
        let key = stream_key(&app_name, &name);
        let prefix = stream_key(&app_name, "");
        let published_in_app = self.directory.published_under(&prefix, &key);
        let verdict = match self.config.app(&app_name) {
            Some(app) => app
                .authorize_publish(client, token.as_deref(), &name)
                .and_then(|()| app.check_stream_limit(published_in_app))
                .and_then(|()| match &request {
                    Some(r) => app.authorize_group(&r.group.group_id()),
                    None => Ok(()),
                })
                .map_err(|r| {
                    self.refusals[r.kind.index()] += 1;
                    r.to_string()
                }),
            None => Err("application is gone".to_owned()),
        };
        if let Err(reason) = verdict {
            self.status(conn, stream_id, Level::Error, code::PUBLISH_DENIED, &reason);
            return self.events.push_back(AppEvent::Refused {
                conn,
                code: code::PUBLISH_DENIED,
                reason,
            });
        }
        self.end_stream_role(conn, stream_id);
        let me = StreamRef { conn, stream_id };
        let published = if self.directory.claim_publish(&key, self.shard) {
            self.drop_stale_mirror(&key, me);
            self.live.publish(&key, me)
        } else {
            Err(PublishError::AlreadyPublished)
        };
        match published {
            Err(PublishError::AlreadyPublished) => self.status(
                conn,
                stream_id,
                Level::Error,
                code::PUBLISH_BAD_NAME,
                &format!("{name} is already being published"),
            ),
            Ok(()) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    let role = Role::Publishing {
                        name: name.clone(),
                        token: SharedToken::presented(token.as_deref()),
                        group: request.as_ref().map(|r| r.group.group_id()),
                    };
                    c.streams.insert(stream_id, role);
                }
                self.status(
                    conn,
                    stream_id,
                    Level::Status,
                    code::PUBLISH_START,
                    &format!("{name} is now published."),
                );
                let publication = (conn, stream_id);
                self.announce_publish(&key, publication, request.clone());
                if self.relaying {
                    self.relays.push_back(Relay::Published {
                        stream: key.as_str().into(),
                        publication,
                        request,
                    });
                }
                self.events
                    .push_back(AppEvent::Publishing { conn, stream: name });
            }
        }
    }

    fn play(&mut self, conn: ConnId, stream_id: u32, cmd: &Command) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.streams.contains_key(&stream_id) {
            return;
        }
        let app_name = c.app.clone().unwrap_or_default();
        let raw = cmd.argument(0).and_then(Value::as_str).unwrap_or("");
        let name = RequestedStream::parse(raw).name.to_owned();
        if name.is_empty() {
            return self.status(
                conn,
                stream_id,
                Level::Error,
                code::PLAY_STREAM_NOT_FOUND,
                "no stream name",
            );
        }
        let key = stream_key(&app_name, &name);
        // Playing the same stream again on this NetStream is a restart, not one more.
        let replaying = self
            .live
            .players(&key)
            .contains(&StreamRef { conn, stream_id });
        if replaying {
            self.end_stream_role(conn, stream_id);
        }
        let admitted = match self.config.app(&app_name) {
            Some(app) => self
                .directory
                .admit_player(&key, |others| app.check_player_limit(others)),
            None => Ok(()),
        };
        if let Err(limit_error) = admitted {
            self.refusals[limit_error.kind.index()] += 1;
            let reason = limit_error.to_string();
            self.status(conn, stream_id, Level::Error, code::PLAY_FAILED, &reason);
            return self.events.push_back(AppEvent::Refused {
                conn,
                code: code::PLAY_FAILED,
                reason,
            });
        }
        self.end_stream_role(conn, stream_id);
        let join = self.live.play(&key, StreamRef { conn, stream_id });
        if let Some(c) = self.conns.get_mut(&conn) {
            c.streams.insert(
                stream_id,
                Role::Playing {
                    name: name.clone(),
                    audio: true,
                    video: true,
                },
            );
        }
        self.user_control(conn, stream_id, tc::stream_begin(stream_id));
        self.status(
            conn,
            stream_id,
            Level::Status,
            code::PLAY_RESET,
            &format!("Playing and resetting {name}."),
        );
        self.status(
            conn,
            stream_id,
            Level::Status,
            code::PLAY_START,
            &format!("Started playing {name}."),
        );
        for message in join.catch_up {
            self.outgoing
                .push_back(Output::To(conn, Outgoing::Media { stream_id, message }));
        }
        self.events
            .push_back(AppEvent::Playing { conn, stream: name });
    }

    fn media(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(Role::Publishing { name, .. }) = c.streams.get(&stream_id) else {
            return;
        };
        let app = c.app.clone().unwrap_or_default();
        let key = stream_key(&app, name);
        let me = StreamRef { conn, stream_id };
        if let Some(refusal) = self.publish_rate_exceeded(&app, me, timestamp, payload.len()) {
            self.refusals[RefusalKind::LimitReached(Limit::PublishKbps).index()] += 1;
            self.end_stream_role(conn, stream_id);
            self.status(
                conn,
                stream_id,
                Level::Error,
                code::PUBLISH_DENIED,
                &refusal,
            );
            return self.events.push_back(AppEvent::Refused {
                conn,
                code: code::PUBLISH_DENIED,
                reason: refusal,
            });
        }
        let message = MediaMessage::new(kind, timestamp, payload);
        let message = if message.is_metadata() {
            message.without_set_data_frame()
        } else {
            message
        };
        if self.relaying && self.live.publisher(&key) == Some(me) {
            self.relays.push_back(Relay::Media {
                stream: key.as_str().into(),
                message: message.clone(),
            });
        }
        self.fan_out(&key, me, &message);
    }

    /// The directory let `new` publish `key`: a mirror of another shard's earlier
    /// publisher, whose end has not reached this shard yet, gives way.
    fn drop_stale_mirror(&mut self, key: &str, new: StreamRef) {
        if let Some(old) = self.live.publisher(key) {
            if old != new && old.conn == REMOTE_CONN {
                self.live.unpublish(key, old);
            }
        }
    }

    /// Tells the players of `key` that it is published (again), and starts its
    /// republishing into the groups the app's policy names.
    fn announce_publish(
        &mut self,
        key: &str,
        publication: Publication,
        request: Option<Arc<MulticastRequest>>,
    ) {
        let name = stream_name(key).to_owned();
        self.start_republishing(key, &name, publication, request);
        let players = self.live.players(key).to_vec();
        for p in players {
            // Players told StreamEOF by an earlier publisher need a new begin.
            self.user_control(p.conn, p.stream_id, tc::stream_begin(p.stream_id));
            self.status(
                p.conn,
                p.stream_id,
                Level::Status,
                code::PLAY_PUBLISH_NOTIFY,
                &format!("{name} is now published."),
            );
        }
    }

    /// Starts republishing `key` into the groups its publisher asked for (`request`), or
    /// else into those the app's `[[app.republish]]` rules name.
    fn start_republishing(
        &mut self,
        key: &str,
        name: &str,
        publication: Publication,
        request: Option<Arc<MulticastRequest>>,
    ) {
        self.stop_republishing(key);
        let app = key.split_once('/').map_or("", |(app, _)| app);
        let config = Arc::clone(&self.config);
        let Some(app) = config.app(app) else {
            return;
        };
        let groups: Vec<GroupId> = match &request {
            Some(r) => {
                let group = r.group.group_id();
                self.join_as_server(group);
                vec![group]
            }
            None => app.republished_into(name).map(|g| g.group_id()).collect(),
        };
        if groups.is_empty() {
            return;
        }
        for &group in &groups {
            self.group_feed.push_back(GroupFeed::Start {
                group,
                name: name.to_owned(),
                publication,
                request: request.clone(),
            });
        }
        self.republishing.insert(key.to_owned(), groups);
    }

    fn stop_republishing(&mut self, key: &str) {
        let name = stream_name(key);
        for group in self.republishing.remove(key).unwrap_or_default() {
            self.group_feed.push_back(GroupFeed::Stop {
                group,
                name: name.to_owned(),
            });
        }
    }

    /// Ends `publisher`'s publication of `key` and tells its players.
    fn announce_unpublish(&mut self, key: &str, publisher: StreamRef) {
        let name = stream_name(key).to_owned();
        if self.live.publisher(key) == Some(publisher) {
            self.stop_republishing(key);
        }
        let players = self.live.unpublish(key, publisher);
        for p in players {
            self.user_control(p.conn, p.stream_id, tc::stream_eof(p.stream_id));
            self.status(
                p.conn,
                p.stream_id,
                Level::Status,
                code::PLAY_UNPUBLISH_NOTIFY,
                &format!("{name} is now unpublished."),
            );
        }
    }

    /// Queues a publisher's message for the players of `key` that want it.
    fn fan_out(&mut self, key: &str, from: StreamRef, message: &MediaMessage) {
        let kind = message.kind;
        let republished = match self.republishing.is_empty() {
            true => None,
            false => self.republishing.get(key),
        };
        if let Some(groups) = republished.filter(|_| self.live.publisher(key) == Some(from)) {
            for &group in groups {
                self.group_feed.push_back(GroupFeed::Media {
                    group,
                    message: message.clone(),
                });
            }
        }
        let versions = (self.live.players_version(), self.wants_version);
        let Some(players) = self.live.forward(key, from, message) else {
            return;
        };
        if players.is_empty() {
            return;
        }
        if self.fan_out_versions != versions {
            self.fan_out_versions = versions;
            self.fan_out_lists.clear();
        }
        let conns = &self.conns;
        let lists = match self.fan_out_lists.get_mut(key) {
            Some(lists) => lists,
            None => self.fan_out_lists.entry(key.to_owned()).or_default(),
        };
        let slot = &mut lists[kind as usize];
        let players = slot
            .get_or_insert_with(|| {
                players
                    .iter()
                    .filter(|p| takes(conns, p, kind))
                    .copied()
                    .collect()
            })
            .clone();
        if !players.is_empty() {
            self.outgoing.push_back(Output::FanOut(FanOut {
                message: message.clone(),
                players,
            }));
        }
    }

    /// Measures a publisher over windows of media time; `Some(reason)` once a window
    /// shows it above the app's `max_publish_kbps`.
    fn publish_rate_exceeded(
        &mut self,
        app: &str,
        who: StreamRef,
        timestamp: u32,
        bytes: usize,
    ) -> Option<String> {
        let limits = self.config.app(app)?;
        let window = self.publish_rates.entry(who).or_insert(RateWindow {
            start: timestamp,
            bytes: 0,
        });
        window.bytes += bytes as u64;
        let elapsed = timestamp.wrapping_sub(window.start);
        // A timestamp that went backwards shows as a huge elapsed time: not a window.
        if !(RATE_WINDOW_MS..=u32::MAX / 2).contains(&elapsed) {
            return None;
        }
        let kbps = window.bytes * 8 / u64::from(elapsed);
        *window = RateWindow {
            start: timestamp,
            bytes: 0,
        };
        limits
            .check_publish_rate(u32::try_from(kbps).unwrap_or(u32::MAX))
            .err()
            .map(|r| r.to_string())
    }

    fn delete_stream(&mut self, conn: ConnId, stream_id: u32) {
        self.end_stream_role(conn, stream_id);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.streams.remove(&stream_id);
        }
    }

    fn end_stream_role(&mut self, conn: ConnId, stream_id: u32) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let app = c.app.clone().unwrap_or_default();
        let Some(role) = c
            .streams
            .get_mut(&stream_id)
            .map(|r| std::mem::replace(r, Role::Idle))
        else {
            return;
        };
        if let Role::Publishing { name, .. } = &role {
            self.status(
                conn,
                stream_id,
                Level::Status,
                code::UNPUBLISH_SUCCESS,
                &format!("{name} is now unpublished."),
            );
        }
        self.end_role(&app, StreamRef { conn, stream_id }, role);
    }

    fn end_role(&mut self, app: &str, who: StreamRef, role: Role) {
        self.publish_rates.remove(&who);
        match role {
            Role::Idle => {}
            Role::Publishing { name, .. } => {
                let key = stream_key(app, &name);
                if self.live.publisher(&key) == Some(who) {
                    self.directory.release_publish(&key, self.shard);
                    if self.relaying {
                        self.relays.push_back(Relay::Unpublished {
                            stream: key.as_str().into(),
                        });
                    }
                }
                self.announce_unpublish(&key, who);
                self.events.push_back(AppEvent::Unpublished {
                    conn: who.conn,
                    stream: name,
                });
            }
            Role::Playing { name, .. } => {
                let key = stream_key(app, &name);
                self.directory.leave_player(&key);
                self.live.stop_playing(&key, who);
            }
        }
    }

    /// For the status page: every live stream this shard knows (`app/name`), its
    /// publisher (`Ok(conn)` a client here, `Err(shard)` another shard's, mirrored
    /// here) and its players here.
    pub fn streams(
        &self,
    ) -> impl Iterator<Item = (&str, Option<Result<ConnId, u8>>, &[StreamRef])> {
        self.live.streams().map(|(key, publisher, players)| {
            let publisher = publisher.map(|p| match p.conn {
                REMOTE_CONN => Err(p.stream_id as u8),
                conn => Ok(conn),
            });
            (key, publisher, players)
        })
    }

    /// For the status page: the address of a connected client.
    pub fn client_address(&self, conn: ConnId) -> Option<IpAddr> {
        self.conns.get(&conn).map(|c| c.client)
    }

    /// For the status page: the group memberships of this shard's clients (connection,
    /// group, the peer id it joined as).
    pub fn group_memberships(&self) -> impl Iterator<Item = (ConnId, GroupId, PeerId)> + '_ {
        self.conns
            .iter()
            .flat_map(|(&conn, c)| c.groups.iter().map(move |&(g, p)| (conn, g, p)))
    }
}
