//! The status page (`GET /` on the metrics address) and the document it polls,
//! `GET /status.json`: per-shard load and drops, live streams with their publishers and
//! players, NetGroups with their members and the links the server knows of.
//! docs/status.md describes the page and every field of the document.
//!
//! The shard numbers are the metrics' own atomics. Streams and groups are names and ids,
//! which do not fit in atomics: while somebody has asked for the document lately, each
//! shard copies them into a [`ShardStatus`] at most once a [`STATUS_EVERY`] and leaves
//! it in its [`StatusSlot`]. The shard never waits for the slot: it tries its lock, and
//! if a reader holds it (for the time of an `Arc` clone) it tries again next turn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::server_snapshot::ServerSnapshot;
use crate::engine::shard::ShardStats;
use crate::group::rendezvous::NOTIFY_EACH_SIDE;
use crate::group::spec::group_address;
use crate::group::GroupId;
use crate::proto::epd::PeerId;
use crate::proto::DropReason;
use crate::server::app::ConnId;
use crate::server::edge::EdgeServer;

/// The page, served as is: HTML, CSS and JavaScript in one file, no external assets.
pub const PAGE: &str = include_str!("status.html");
/// The document's format; bumped when a field changes meaning or goes away.
pub const FORMAT: u32 = 1;
/// How often a shard copies its streams and groups while the document is asked for.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Players listed per stream and shard (all are counted).
pub const MAX_PLAYERS_LISTED: usize = 50;
/// Members listed per group (all are counted); links are drawn among those listed.
pub const MAX_MEMBERS_LISTED: usize = 200;
/// A copy older than this is refreshed before answering (nobody asked for a while).
const STALE: Duration = Duration::from_secs(3);
/// How long a request waits for the shards to refresh a stale copy.
const REFRESH_WAIT: Duration = Duration::from_millis(600);

/// A client as the status page names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClientRef {
    /// The application's connection id (unique across shards), as a string: it may not
    /// fit a JavaScript number.
    pub conn: String,
    pub address: Option<IpAddr>,
}

/// One live stream as one shard knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// `app/name`.
    pub key: String,
    /// A client of this shard publishes it.
    pub publisher: Option<ClientRef>,
    /// Another shard publishes it (mirrored here): that shard.
    pub published_on: Option<u8>,
    pub players: usize,
    pub player_list: Vec<ClientRef>,
}

/// A client of this shard in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub group: GroupId,
    pub peer: PeerId,
    pub client: ClientRef,
}

/// The server's own member of a group, on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMemberStatus {
    pub group: GroupId,
    /// Peers whose group handshake with this member passed (sessions on this shard).
    pub neighbours: Vec<PeerId>,
    /// The stream it publishes into the group, if any.
    pub stream: Option<String>,
    pub fragments_published: u64,
    pub fragments_sent: u64,
    pub pulls_answered: u64,
    /// `(address, fusion, datagrams sent by this shard)` when the group's stream goes
    /// out by IP multicast.
    pub ip_multicast: Option<(String, bool, u64)>,
}

/// What one shard holds, copied on its thread for the status document.
#[derive(Debug, Clone)]
pub struct ShardStatus {
    pub built: StdInstant,
    pub server_peer: Option<PeerId>,
    pub streams: Vec<StreamStatus>,
    pub members: Vec<MemberStatus>,
    pub server_members: Vec<ServerMemberStatus>,
    /// Group names the config knows (by id): groupspecs carry the name, ids do not.
    pub group_names: Vec<(GroupId, String)>,
}

impl ShardStatus {
    /// Copies what `server` holds. Runs on the shard's thread.
    pub fn build(server: &EdgeServer) -> ShardStatus {
        let app = server.app();
        let client = |conn: ConnId| ClientRef {
            conn: conn.to_string(),
            address: app.client_address(conn),
        };
        let streams = app
            .streams()
            .map(|(key, publisher, players)| StreamStatus {
                key: key.to_owned(),
                publisher: publisher.and_then(|p| p.ok()).map(client),
                published_on: publisher.and_then(|p| p.err()),
                players: players.len(),
                player_list: players
                    .iter()
                    .take(MAX_PLAYERS_LISTED)
                    .map(|p| client(p.conn))
                    .collect(),
            })
            .collect();
        let members = app
            .group_memberships()
            .map(|(conn, group, peer)| MemberStatus {
                group,
                peer,
                client: client(conn),
            })
            .collect();
        let groups = server.groups();
        let server_members = groups
            .status_members()
            .map(|(group, member, ip)| {
                let stream = member.stream();
                let counters = stream.map(|s| s.counters()).unwrap_or_default();
                ServerMemberStatus {
                    group: *group,
                    neighbours: member.neighbours().collect(),
                    stream: stream.map(|s| s.name().to_owned()),
                    fragments_published: counters.fragments_published,
                    fragments_sent: counters.fragments_sent,
                    pulls_answered: counters.pulls_answered,
                    ip_multicast: ip.map(|(a, fusion, sent)| (a.to_string(), fusion, sent)),
                }
            })
            .collect();
        let group_names = app
            .config()
            .republish_groups()
            .iter()
            .filter_map(|spec| {
                let name = spec.name()?;
                Some((spec.group_id(), String::from_utf8_lossy(name).into_owned()))
            })
            .collect();
        ShardStatus {
            built: StdInstant::now(),
            server_peer: (!groups.is_empty()).then(|| groups.server_peer()),
            streams,
            members,
            server_members,
            group_names,
        }
    }
}

/// Where a shard leaves its latest [`ShardStatus`], and how readers ask for one.
#[derive(Debug, Default)]
pub struct StatusSlot {
    /// Set by readers; the shard copies only while it is set, and clears it.
    wanted: AtomicBool,
    /// When the shard last copied (its clock, microseconds); 0: never.
    built_at: AtomicU64,
    latest: Mutex<Option<Arc<ShardStatus>>>,
}

impl StatusSlot {
    /// The shard's side, once per loop turn: copies `server` if somebody asked and the
    /// last copy is [`STATUS_EVERY`] old. Never blocks.
    pub fn offer(&self, server: &EdgeServer, now_micros: u64) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let last = self.built_at.load(Ordering::Relaxed);
        if last != 0 && now_micros.saturating_sub(last) < STATUS_EVERY.as_micros() as u64 {
            return;
        }
        let Ok(mut slot) = self.latest.try_lock() else {
            return;
        };
        *slot = Some(Arc::new(ShardStatus::build(server)));
        drop(slot);
        self.built_at.store(now_micros.max(1), Ordering::Relaxed);
        self.wanted.store(false, Ordering::Relaxed);
    }

    /// The reader's side: asks for a fresh copy and returns the latest one.
    pub fn latest(&self) -> Option<Arc<ShardStatus>> {
        self.wanted.store(true, Ordering::Relaxed);
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    #[cfg(test)]
    fn put(&self, status: ShardStatus) {
        *self.latest.lock().unwrap() = Some(Arc::new(status));
    }
}

/// Every shard's latest copy; when one has none or a stale one (nobody asked for a
/// while), waits up to [`REFRESH_WAIT`] for the shards to copy afresh.
fn gather<S: AsRef<ShardStats>>(shards: &[S]) -> Vec<Option<Arc<ShardStatus>>> {
    let asked = StdInstant::now();
    let deadline = asked + REFRESH_WAIT;
    loop {
        let copies: Vec<_> = shards
            .iter()
            .map(|s| s.as_ref().server.status.latest())
            .collect();
        let fresh = |c: &Option<Arc<ShardStatus>>| {
            c.as_ref()
                .is_some_and(|c| asked.saturating_duration_since(c.built) < STALE)
        };
        if copies.iter().all(fresh) || StdInstant::now() >= deadline {
            return copies;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The document `/status.json` serves, from the shards' metrics and status copies.
pub fn render_json<S: AsRef<ShardStats>>(shards: &[S]) -> String {
    let copies = gather(shards);
    let now = StdInstant::now();
    let mut doc = document(shards, &copies, now);
    if let Some(map) = doc.as_object_mut() {
        map.insert("generated_unix_ms".into(), json!(unix_ms()));
    }
    // A Value with string keys always serializes.
    serde_json::to_string(&doc).unwrap_or_default()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The document, from the shards' counters and their copies (`None`: not copied yet).
fn document<S: AsRef<ShardStats>>(
    shards: &[S],
    copies: &[Option<Arc<ShardStatus>>],
    now: StdInstant,
) -> Value {
    let get = ServerSnapshot::get;
    let shard_rows: Vec<Value> = shards
        .iter()
        .zip(copies)
        .enumerate()
        .map(|(i, (s, copy))| {
            let s = s.as_ref();
            let drops: serde_json::Map<String, Value> = DropReason::ALL
                .iter()
                .zip(&s.server.drops)
                .map(|(r, v)| (r.name().to_owned(), json!(get(v))))
                .collect();
            json!({
                "shard": i,
                "sessions": get(&s.server.sessions),
                "connections": get(&s.server.connections),
                "streams": get(&s.server.streams),
                "players": get(&s.server.players),
                "group_members": get(&s.server.group_members),
                "datagrams_received": get(&s.received),
                "received_bytes": get(&s.bytes_received),
                "datagrams_sent": get(&s.sent),
                "sent_bytes": get(&s.server.bytes_sent),
                "datagrams_handed_off": get(&s.handed_off),
                "datagrams_dropped": drops,
                "frames_skipped_for_lag": get(&s.frames_skipped_for_lag),
                "fragments_retransmitted": get(&s.server.fragments_retransmitted),
                "multicast_datagrams_sent": get(&s.server.multicast_sent),
                "multicast_datagrams_dropped": get(&s.server.multicast_dropped),
                "status_age_ms": copy
                    .as_ref()
                    .map(|c| now.saturating_duration_since(c.built).as_millis() as u64),
            })
        })
        .collect();
    let copies: Vec<(usize, &ShardStatus)> = copies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_deref().map(|c| (i, c)))
        .collect();
    json!({
        "format": FORMAT,
        "shards": shard_rows,
        "streams": streams(&copies),
        "groups": groups(&copies),
    })
}

fn streams(copies: &[(usize, &ShardStatus)]) -> Vec<Value> {
    #[derive(Default)]
    struct Merged {
        publisher: Option<Value>,
        published_on: Option<u8>,
        players: usize,
        player_list: Vec<Value>,
        players_by_shard: BTreeMap<usize, usize>,
    }
    let mut by_key: BTreeMap<&str, Merged> = BTreeMap::new();
    for &(shard, copy) in copies {
        for s in &copy.streams {
            let m = by_key.entry(&s.key).or_default();
            if let Some(p) = &s.publisher {
                m.publisher = Some(json!({"shard": shard, "conn": p.conn, "address": p.address}));
            }
            m.published_on = m.published_on.or(s.published_on);
            m.players += s.players;
            if s.players > 0 {
                m.players_by_shard.insert(shard, s.players);
            }
            m.player_list.extend(
                s.player_list
                    .iter()
                    .map(|p| json!({"shard": shard, "conn": p.conn, "address": p.address})),
            );
        }
    }
    by_key
        .into_iter()
        .map(|(key, m)| {
            let (app, name) = key.split_once('/').unwrap_or(("", key));
            let publishing = m.publisher.is_some() || m.published_on.is_some();
            json!({
                "key": key,
                "app": app,
                "name": name,
                "publishing": publishing,
                "publisher": m.publisher.unwrap_or_else(|| match m.published_on {
                    Some(shard) => json!({"shard": shard, "conn": null, "address": null}),
                    None => Value::Null,
                }),
                "players": m.players,
                "players_by_shard": m.players_by_shard
                    .iter()
                    .map(|(s, n)| (s.to_string(), json!(n)))
                    .collect::<serde_json::Map<_, _>>(),
                "player_list": m.player_list,
            })
        })
        .collect()
}

/// One group's members and links, merged from every shard's copy.
fn groups(copies: &[(usize, &ShardStatus)]) -> Vec<Value> {
    struct Node {
        peer: PeerId,
        server: bool,
        shard: Option<usize>,
        client: Option<ClientRef>,
    }
    let server_peer = copies.iter().find_map(|(_, c)| c.server_peer);
    let mut ids: BTreeSet<GroupId> = BTreeSet::new();
    let mut names: BTreeMap<GroupId, &str> = BTreeMap::new();
    for (_, c) in copies {
        ids.extend(c.members.iter().map(|m| m.group));
        ids.extend(c.server_members.iter().map(|m| m.group));
        names.extend(c.group_names.iter().map(|(g, n)| (*g, n.as_str())));
    }
    let mut out = Vec::new();
    for group in ids {
        // Members by group address: the rendezvous ring's order.
        let mut ring: BTreeMap<[u8; 32], Node> = BTreeMap::new();
        let server_members: Vec<(usize, &ServerMemberStatus)> = copies
            .iter()
            .flat_map(|(i, c)| {
                c.server_members
                    .iter()
                    .filter(move |m| m.group == group)
                    .map(move |m| (*i, m))
            })
            .collect();
        if let (Some(peer), false) = (server_peer, server_members.is_empty()) {
            ring.insert(
                group_address(&peer),
                Node {
                    peer,
                    server: true,
                    shard: None,
                    client: None,
                },
            );
        }
        for (i, c) in copies {
            for m in c.members.iter().filter(|m| m.group == group) {
                ring.insert(
                    group_address(&m.peer),
                    Node {
                        peer: m.peer,
                        server: false,
                        shard: Some(*i),
                        client: Some(m.client.clone()),
                    },
                );
            }
        }
        let count = ring.len();
        let listed: Vec<&Node> = ring.values().take(MAX_MEMBERS_LISTED).collect();
        let listed_peers: BTreeSet<PeerId> = listed.iter().map(|n| n.peer).collect();
        let mut links: BTreeMap<(PeerId, PeerId), BTreeSet<&str>> = BTreeMap::new();
        let mut link = |a: PeerId, b: PeerId, kind: &'static str| {
            if a != b && listed_peers.contains(&a) && listed_peers.contains(&b) {
                links.entry((a.min(b), a.max(b))).or_default().insert(kind);
            }
        };
        // Ring neighbours: each within NOTIFY_EACH_SIDE places of the other, the pairs
        // the rendezvous introduces on the ring as it stands.
        let all: Vec<PeerId> = ring.values().map(|n| n.peer).collect();
        for (i, &a) in all.iter().enumerate() {
            for step in 1..=NOTIFY_EACH_SIDE.min(all.len().saturating_sub(1)) {
                link(a, all[(i + step) % all.len()], "ring");
            }
        }
        // Sessions of the server's member whose group handshake passed.
        if let Some(server) = server_peer {
            for (_, m) in &server_members {
                for &n in &m.neighbours {
                    link(server, n, "server_session");
                }
            }
        }
        let members: Vec<Value> = listed
            .iter()
            .enumerate()
            .map(|(position, n)| {
                json!({
                    "peer_id": n.peer.to_hex(),
                    "server": n.server,
                    "ring_position": position,
                    "shard": n.shard,
                    "conn": n.client.as_ref().map(|c| &c.conn),
                    "address": n.client.as_ref().and_then(|c| c.address),
                })
            })
            .collect();
        let links: Vec<Value> = links
            .into_iter()
            .map(|((a, b), kinds)| {
                json!({"a": a.to_hex(), "b": b.to_hex(), "kinds": kinds.into_iter().collect::<Vec<_>>()})
            })
            .collect();
        let server_member = (!server_members.is_empty()).then(|| {
            let sum = |f: fn(&ServerMemberStatus) -> u64| -> u64 {
                server_members.iter().map(|(_, m)| f(m)).sum()
            };
            let neighbours: BTreeSet<String> = server_members
                .iter()
                .flat_map(|(_, m)| m.neighbours.iter().map(|p| p.to_hex()))
                .collect();
            let ip = server_members
                .iter()
                .find_map(|(_, m)| m.ip_multicast.as_ref());
            let multicast_sent: u64 = server_members
                .iter()
                .filter_map(|(_, m)| m.ip_multicast.as_ref().map(|ip| ip.2))
                .sum();
            let fragments_sent = sum(|m| m.fragments_sent);
            let mut sends_to = Vec::new();
            if fragments_sent > 0 || !neighbours.is_empty() {
                sends_to.push("peers");
            }
            if ip.is_some() {
                sends_to.push("ip_multicast");
            }
            json!({
                "peer_id": server_peer.map(|p| p.to_hex()),
                "stream": server_members.iter().find_map(|(_, m)| m.stream.as_deref()),
                "neighbours": neighbours,
                // Every shard's member cuts the same fragments from the same feed.
                "fragments_published": server_members
                    .iter()
                    .map(|(_, m)| m.fragments_published)
                    .max(),
                "fragments_sent_to_peers": fragments_sent,
                "pulls_answered": sum(|m| m.pulls_answered),
                "ip_multicast": ip.map(|(address, fusion, _)| json!({
                    "address": address,
                    "fusion": fusion,
                    "datagrams_sent": multicast_sent,
                })),
                "sends_to": sends_to,
            })
        });
        out.push(json!({
            "id": group.to_hex(),
            "name": names.get(&group),
            "members": count,
            "members_listed": members.len(),
            "member_list": members,
            "links": links,
            "server_member": server_member,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn client(conn: u64) -> ClientRef {
        ClientRef {
            conn: conn.to_string(),
            address: Some("192.0.2.7".parse().unwrap()),
        }
    }

    fn empty() -> ShardStatus {
        ShardStatus {
            built: StdInstant::now(),
            server_peer: None,
            streams: Vec::new(),
            members: Vec::new(),
            server_members: Vec::new(),
            group_names: Vec::new(),
        }
    }

    #[test]
    fn streams_merge_across_shards_and_groups_draw_ring_and_server_links() {
        let shards = [
            Arc::new(ShardStats::default()),
            Arc::new(ShardStats::default()),
        ];
        shards[1].received.store(9, Ordering::Relaxed);
        shards[0].server.drops[0].store(4, Ordering::Relaxed);
        let group = GroupId([5; 32]);
        let mut a = empty();
        a.server_peer = Some(peer(1));
        a.streams.push(StreamStatus {
            key: "live/cam".into(),
            publisher: Some(client(11)),
            published_on: None,
            players: 1,
            player_list: vec![client(12)],
        });
        a.server_members.push(ServerMemberStatus {
            group,
            neighbours: vec![peer(2)],
            stream: Some("cam".into()),
            fragments_published: 10,
            fragments_sent: 7,
            pulls_answered: 1,
            ip_multicast: Some(("239.1.2.3:30000".into(), false, 3)),
        });
        a.members.push(MemberStatus {
            group,
            peer: peer(2),
            client: client(13),
        });
        a.group_names.push((group, "g".into()));
        let mut b = empty();
        b.server_peer = Some(peer(1));
        b.streams.push(StreamStatus {
            key: "live/cam".into(),
            publisher: None,
            published_on: Some(0),
            players: 2,
            player_list: vec![client(21), client(22)],
        });
        b.members.push(MemberStatus {
            group,
            peer: peer(3),
            client: client(23),
        });
        shards[0].server.status.put(a);
        shards[1].server.status.put(b);
        let text = render_json(&shards);
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["format"], 1);
        assert_eq!(doc["shards"][1]["datagrams_received"], 9);
        let reason = DropReason::ALL[0].name();
        assert_eq!(doc["shards"][0]["datagrams_dropped"][reason], 4);
        let stream = &doc["streams"][0];
        assert_eq!(stream["name"], "cam");
        assert_eq!(stream["app"], "live");
        assert_eq!(stream["publishing"], true);
        assert_eq!(stream["publisher"]["conn"], "11");
        assert_eq!(stream["publisher"]["shard"], 0);
        assert_eq!(stream["players"], 3);
        assert_eq!(stream["players_by_shard"]["1"], 2);
        assert_eq!(stream["player_list"].as_array().unwrap().len(), 3);
        let g = &doc["groups"][0];
        assert_eq!(g["name"], "g");
        assert_eq!(g["members"], 3);
        let servers: Vec<&Value> = g["member_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["server"] == true)
            .collect();
        assert_eq!(servers.len(), 1);
        let links = g["links"].as_array().unwrap();
        // Three members: every pair are ring neighbours.
        assert_eq!(links.len(), 3, "{links:?}");
        let (p1, p2) = (peer(1).to_hex(), peer(2).to_hex());
        let server_link = links
            .iter()
            .find(|l| {
                let ends = [l["a"].as_str().unwrap(), l["b"].as_str().unwrap()];
                ends.contains(&p1.as_str()) && ends.contains(&p2.as_str())
            })
            .unwrap();
        assert_eq!(server_link["kinds"], json!(["ring", "server_session"]));
        let sm = &g["server_member"];
        assert_eq!(sm["fragments_sent_to_peers"], 7);
        assert_eq!(sm["ip_multicast"]["datagrams_sent"], 3);
        assert_eq!(sm["sends_to"], json!(["peers", "ip_multicast"]));
        docs_name_every_field(&doc, "");
    }

    /// docs/status.md names every field of the document (as its `path.field`).
    fn docs_name_every_field(value: &Value, path: &str) {
        let docs = include_str!("../../docs/status.md");
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let field = format!("{path}{key}");
                    // Objects documented in one row as `{a, b, c}` name their keys there.
                    let in_braces = docs.split("`{").skip(1).any(|rest| {
                        let list = rest.split('}').next().unwrap_or_default();
                        list.split(", ").any(|k| k == key)
                    });
                    assert!(
                        docs.contains(&format!("`{field}`"))
                            || docs.contains(&format!("`{field}[]`"))
                            || docs.contains(&format!("`.{key}`"))
                            || docs.contains(&format!(".{key}`"))
                            || in_braces,
                        "docs/status.md lacks {field}"
                    );
                    // Keys of these are data (reasons, shard numbers), not fields.
                    if !matches!(key.as_str(), "datagrams_dropped" | "players_by_shard") {
                        docs_name_every_field(v, &format!("{field}."));
                    }
                }
            }
            Value::Array(items) => {
                let path = format!("{}[].", path.trim_end_matches('.'));
                for item in items {
                    docs_name_every_field(item, &path);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn ring_links_reach_notify_each_side_and_no_further() {
        let group = GroupId([9; 32]);
        let mut s = empty();
        for n in 0..10u8 {
            s.members.push(MemberStatus {
                group,
                peer: peer(n),
                client: client(u64::from(n)),
            });
        }
        let doc = groups(&[(0, &s)]);
        let links = doc[0]["links"].as_array().unwrap();
        assert_eq!(links.len(), 10 * NOTIFY_EACH_SIDE);
        assert!(doc[0]["server_member"].is_null());
    }

    #[test]
    fn a_shard_without_a_copy_still_has_its_numbers() {
        let shards = [Arc::new(ShardStats::default())];
        let doc = document(&shards, &[None], StdInstant::now());
        assert!(doc["shards"][0]["status_age_ms"].is_null());
        assert_eq!(doc["streams"], json!([]));
    }

    #[test]
    fn the_page_polls_the_document_and_has_no_external_assets() {
        assert!(PAGE.contains("status.json"));
        for external in ["src=\"http", "href=\"http", "@import", "<link"] {
            assert!(!PAGE.contains(external), "{external}");
        }
    }
}
