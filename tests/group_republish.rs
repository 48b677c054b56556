//! The server republishes a published stream into a NetGroup (`[[app.republish]]`,
//! `serve --group`): a client publishes to the server as usual, members that join the
//! group play it from each other, the server being one member among them. Every member's
//! output decodes from its start and has every frame after it; members get most of the
//! stream from peers, not from the server; a member of another group is not served.
//!
//! Sans-IO: our server and clients in memory (tests/support/group_world.rs).

#[path = "support/group_world.rs"]
mod group_world;

use std::sync::Arc;
use std::time::Duration;

use group_world::{Member, World, SERVER, SPEC, TC_URL};
use rtmfp_edge::flash::client::FlashClient;
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::media::{MediaKind, MediaMessage};
use rtmfp_edge::proto::endpoint::EndpointConfig;
use rtmfp_edge::proto::Instant;
use rtmfp_edge::server::config::{FecScheme, MulticastForm, ServerConfig};
use rtmfp_edge::server::edge::EdgeServer;

const FRAMES: u32 = 250; // 10 s at 25 frames/s
const GOP: u32 = 25;
const PLAYERS: usize = 8;

fn avc_header() -> MediaMessage {
    MediaMessage::new(
        MediaKind::Video,
        0,
        vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f],
    )
}

fn aac_header() -> MediaMessage {
    MediaMessage::new(MediaKind::Audio, 0, vec![0xaf, 0x00, 0x12, 0x10])
}

/// Video frame `i` (a keyframe every GOP), 1.5 kB so it takes two fragments, its index
/// in bytes 5..9.
fn frame(i: u32) -> MediaMessage {
    let mut p = vec![if i % GOP == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    p.extend_from_slice(&i.to_be_bytes());
    p.resize(1500, (i % 251) as u8);
    MediaMessage::new(MediaKind::Video, i * 40, p)
}

fn audio(i: u32) -> MediaMessage {
    let mut p = vec![0xaf, 0x01];
    p.extend_from_slice(&i.to_be_bytes());
    p.resize(200, 7);
    MediaMessage::new(MediaKind::Audio, i * 40 + 20, p)
}

/// A server that republishes every stream of app `live` into `spec`'s group.
fn republishing_world(spec: &GroupSpec) -> World {
    republishing_world_as(spec, MulticastForm::P2p, None)
}

fn republishing_world_as(
    spec: &GroupSpec,
    form: MulticastForm,
    address: Option<std::net::SocketAddr>,
) -> World {
    republishing_world_with_fec(spec, form, address, None)
}

fn republishing_world_with_fec(
    spec: &GroupSpec,
    form: MulticastForm,
    address: Option<std::net::SocketAddr>,
    fec: Option<FecScheme>,
) -> World {
    let mut config = ServerConfig::embedded_default();
    config.republish_everything_as(spec.clone(), form, address);
    if let Some(fec) = fec {
        config.protect_multicast(&spec.group_id(), fec);
    }
    World {
        now: Instant::ZERO,
        server: EdgeServer::new(Arc::new(config), EndpointConfig::server(), [1; 32]),
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

/// A plain client (no group) that connects, creates a stream and publishes `cam` to the
/// server on it.
fn add_publisher(world: &mut World) -> usize {
    add_publisher_as(world, "cam")
}

/// The same, publishing under `name` (a stream name with its query).
fn add_publisher_as(world: &mut World, name: &str) -> usize {
    let n = world.members.len();
    let client = FlashClient::connect(
        world.now,
        SERVER.parse().unwrap(),
        TC_URL,
        "live",
        vec![],
        EndpointConfig::default(),
        [9; 32],
    );
    world.members.push(Member {
        client,
        addr: "10.0.3.1:5000".parse().unwrap(),
        connected: false,
        events: Vec::new(),
    });
    world.run_for(Duration::from_millis(300));
    assert!(world.members[n].connected, "publisher connected");
    world.members[n].client.create_stream();
    world.run_for(Duration::from_millis(200));
    // The server numbers a connection's streams from 1.
    world.members[n].client.publish(1, name);
    world.run_for(Duration::from_millis(200));
    n
}

fn video_indexes(events: &[GroupEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Media(m) if m.kind == MediaKind::Video && !m.is_sequence_header() => {
                Some(u32::from_be_bytes(m.payload[5..9].try_into().unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn stream_frames(world: &mut World, publisher: usize) {
    stream_frames_of(world, publisher, frame);
}

fn stream_frames_of(world: &mut World, publisher: usize, frame: fn(u32) -> MediaMessage) {
    for i in 0..FRAMES {
        let now = world.now;
        let c = &mut world.members[publisher].client;
        if i % GOP == 0 {
            c.send_media(now, 1, &avc_header());
            c.send_media(now, 1, &aac_header());
        }
        c.send_media(now, 1, &frame(i));
        c.send_media(now, 1, &audio(i));
        world.run_for(Duration::from_millis(40));
    }
    world.run_for(Duration::from_secs(4));
}

/// The member's output decodes from its first message and has every frame after its
/// first keyframe, which came within the first GOP.
fn check_member(world: &World, p: usize) {
    let events = &world.members[p].events;
    let media: Vec<&MediaMessage> = events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Media(m) => Some(m),
            _ => None,
        })
        .collect();
    let first_video = media
        .iter()
        .position(|m| m.kind == MediaKind::Video && !m.is_sequence_header())
        .unwrap_or_else(|| panic!("player {p} got video"));
    assert!(
        media[first_video].is_keyframe(),
        "player {p} starts at a keyframe"
    );
    assert!(
        media[..first_video]
            .iter()
            .any(|m| m.kind == MediaKind::Video && m.is_sequence_header()),
        "player {p} has the AVC header before its first frame"
    );
    let frames = video_indexes(events);
    let start = frames[0];
    assert!(start <= GOP, "player {p} started at frame {start}");
    assert_eq!(
        frames,
        (start..FRAMES).collect::<Vec<_>>(),
        "player {p}: every frame from its start, in order"
    );
}

/// Every player decodes the whole stream (see [`check_member`]), at least 90% of its
/// fragments by IP multicast.
fn check_members_by_multicast(world: &World, players: &[usize]) {
    for &p in players {
        check_member(world, p);
        let c = world.members[p]
            .client
            .group()
            .unwrap()
            .stream()
            .unwrap()
            .counters();
        assert!(
            c.from_multicast * 10 >= c.fragments_received * 9,
            "member {p}: {} of {} fragments by IP multicast",
            c.from_multicast,
            c.fragments_received
        );
    }
}

#[test]
fn members_play_the_republished_stream_mostly_from_each_other() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = republishing_world(&spec);
    let mut players = Vec::new();
    for _ in 0..PLAYERS {
        let p = world.add_member(&spec);
        world.members[p].client.play_from_group("cam");
        players.push(p);
    }
    world.run_for(Duration::from_secs(2));
    let publisher = add_publisher(&mut world);
    stream_frames(&mut world, publisher);

    let (mut from_server, mut from_peers) = (0, 0);
    for &p in &players {
        check_member(&world, p);
        let group = world.members[p].client.group().unwrap();
        let received = group.stream().unwrap().counters().fragments_received;
        let server = group.received_from_server();
        from_server += server;
        from_peers += received - server;
    }
    // The server is one member among the others: the members relay most of the stream.
    assert!(
        from_peers > from_server,
        "fragments from peers {from_peers}, from the server {from_server}"
    );
    let server_counters = world.server.groups().counters();
    assert!(server_counters.fragments_sent > 0);
    assert_eq!(server_counters.unreadable, 0);

    // The publisher stops: every member is told, by name.
    world.members[publisher].client.delete_stream(1);
    world.run_for(Duration::from_secs(1));
    for &p in &players {
        assert!(
            world.members[p]
                .events
                .contains(&GroupEvent::Unpublished("cam".into())),
            "member {p} was told of the unpublish"
        );
    }
}

#[test]
fn a_member_of_another_group_gets_nothing_from_the_server() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = republishing_world(&spec);
    // Same name, other options: another group, which the server does not republish into.
    let other = GroupSpec::from_name_or_spec("test").unwrap();
    assert_ne!(other.group_id(), spec.group_id());
    let outsider = world.add_member(&other);
    world.members[outsider].client.play_from_group("cam");
    let insider = world.add_member(&spec);
    world.members[insider].client.play_from_group("cam");
    world.run_for(Duration::from_secs(2));
    let publisher = add_publisher(&mut world);
    stream_frames(&mut world, publisher);
    assert!(
        !video_indexes(&world.members[insider].events).is_empty(),
        "the member of the republished group plays"
    );
    assert!(
        video_indexes(&world.members[outsider].events).is_empty(),
        "the member of another group gets nothing"
    );
    assert!(world.members[outsider]
        .client
        .group()
        .unwrap()
        .stream()
        .is_none());
}

#[test]
fn ip_multicast_reaches_every_member_with_each_fragment_sent_once() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let address: std::net::SocketAddr = "239.1.2.3:30000".parse().unwrap();
    let mut world = republishing_world_as(&spec, MulticastForm::Ip, Some(address));
    let mut players = Vec::new();
    for _ in 0..5 {
        let p = world.add_member(&spec);
        world.members[p].client.play_from_group("cam");
        players.push(p);
    }
    world.run_for(Duration::from_secs(1));
    for &p in &players {
        // The server told each admitted member where the stream goes, and its key.
        assert!(
            world.members[p]
                .events
                .contains(&GroupEvent::MulticastAddress(address)),
            "member {p} was told the multicast address"
        );
        world.multicast.push((address, p));
    }
    world.run_for(Duration::from_secs(1));
    let publisher = add_publisher(&mut world);
    stream_frames(&mut world, publisher);

    let server_sent = world.server.groups().multicast_sent();
    let published = world.server.groups().counters().fragments_published;
    assert!(published > 500, "{published} fragments");
    // Once per fragment, whatever the number of receivers.
    assert_eq!(server_sent, published);
    assert_eq!(world.multicast_sent, published);
    check_members_by_multicast(&world, &players);

    // Injection: a replayed datagram and a forged one are dropped and counted.
    let member = players[0];
    let replay = world.last_multicast.clone().unwrap();
    let now = world.now;
    let c = &mut world.members[member].client;
    assert!(!c.handle_multicast(now, &replay), "a replay is dropped");
    let mut forged = replay.clone();
    let n = forged.len();
    forged[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // a fresh sequence
    forged[n - 1] ^= 0x55;
    assert!(
        !c.handle_multicast(now, &forged),
        "a forged datagram is dropped"
    );
    let (drops, taken) = c.group().unwrap().multicast_counts();
    assert!(taken >= published * 9 / 10, "{taken} taken");
    assert!(drops.contains(&("replayed", 1)), "{drops:?}");
    assert!(drops.contains(&("bad_tag", 1)), "{drops:?}");
}

/// Every member joins the multicast address and loses every 5th datagram it carries,
/// each member its own: what it plays, and how each fragment came.
fn lossy_ip_multicast(fec: Option<FecScheme>) -> (World, Vec<usize>) {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let address: std::net::SocketAddr = "239.1.2.3:30000".parse().unwrap();
    let mut world = republishing_world_with_fec(&spec, MulticastForm::Ip, Some(address), fec);
    world.multicast_lose_every = 5;
    let mut players = Vec::new();
    for _ in 0..3 {
        let p = world.add_member(&spec);
        world.members[p].client.play_from_group("cam");
        players.push(p);
    }
    world.run_for(Duration::from_secs(1));
    for &p in &players {
        world.multicast.push((address, p));
    }
    world.run_for(Duration::from_secs(1));
    let publisher = add_publisher(&mut world);
    stream_frames(&mut world, publisher);
    (world, players)
}

#[test]
fn fec_rebuilds_what_ip_multicast_loses_without_pulls() {
    // Without FEC the loss bites: members pull what multicast lost from neighbours.
    let (world, players) = lossy_ip_multicast(None);
    for &p in &players {
        check_member(&world, p);
        let group = world.members[p].client.group().unwrap();
        let c = group.stream().unwrap().counters();
        assert_eq!(c.repaired_fec, 0);
        assert!(
            c.pulls_sent > 0 && c.from_multicast < c.fragments_received,
            "member {p} without FEC: {c:?}"
        );
    }

    // With 8+2, two of every ten datagrams lost are rebuilt from the other eight.
    let fec = FecScheme::parse("8+2").unwrap();
    let (world, players) = lossy_ip_multicast(Some(fec));
    let groups = world.server.groups();
    let published = groups.counters().fragments_published;
    let repairs = groups.multicast_repairs();
    assert!(published > 500, "{published} fragments");
    assert!(
        repairs >= published / 8 * 2,
        "{repairs} repairs for {published}"
    );
    assert_eq!(groups.multicast_sent(), published + repairs);
    for &p in &players {
        check_member(&world, p);
        let group = world.members[p].client.group().unwrap();
        let c = group.stream().unwrap().counters();
        assert!(c.repaired_fec > 0, "member {p}: {c:?}");
        // Two of every block's ten datagrams were lost, one or two of them fragments
        // (the loss and the blocks keep step): at least an eighth came back by FEC.
        assert!(c.repaired_fec * 9 >= published, "member {p}: {c:?}");
        assert_eq!(
            c.from_multicast + c.repaired_fec,
            c.fragments_received,
            "member {p}: every fragment by IP multicast, whole or rebuilt: {c:?}"
        );
        assert_eq!(c.pulls_sent, 0, "member {p} pulled: {c:?}");
        let (drops, _) = group.multicast_counts();
        assert!(drops.is_empty(), "member {p} dropped {drops:?}");
    }
}

/// Frame `i` as [`frame`] makes it, but keyframes of 40 kB: 42 fragments at once.
fn big_keyframe(i: u32) -> MediaMessage {
    let mut m = frame(i);
    if i % GOP == 0 {
        let mut p = m.payload.to_vec();
        p.resize(40_000, (i % 251) as u8);
        m = MediaMessage::new(MediaKind::Video, m.timestamp, p);
    }
    m
}

#[test]
fn ip_multicast_spreads_a_keyframe_over_time() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let address: std::net::SocketAddr = "239.1.2.3:30000".parse().unwrap();
    let mut world = republishing_world_as(&spec, MulticastForm::Ip, Some(address));
    // The server runs its timers only when it asks to, as the engine does: the pacer's
    // releases must show in its poll_timeout.
    world.server_on_timer = true;
    let mut players = Vec::new();
    for _ in 0..2 {
        let p = world.add_member(&spec);
        world.members[p].client.play_from_group("cam");
        players.push(p);
    }
    world.run_for(Duration::from_secs(1));
    for &p in &players {
        world.multicast.push((address, p));
    }
    world.run_for(Duration::from_secs(1));
    let publisher = add_publisher(&mut world);
    stream_frames_of(&mut world, publisher, big_keyframe);

    let published = world.server.groups().counters().fragments_published;
    assert!(published > 10 * 42, "{published} fragments");
    assert_eq!(world.server.groups().multicast_sent(), published);
    assert_eq!(world.server.groups().multicast_dropped(), 0);
    assert_eq!(
        world.multicast_unwoken, 0,
        "datagrams waited, no timer said when"
    );
    // A keyframe's 42 fragments leave a few at a time (the pacer's bucket holds four
    // datagrams, and 5 ms at the paced rate adds one or two), not at once.
    assert!(
        world.multicast_burst <= 8,
        "{} datagrams in one 5 ms step",
        world.multicast_burst
    );
    for &p in &players {
        check_member(&world, p);
        let c = world.members[p]
            .client
            .group()
            .unwrap()
            .stream()
            .unwrap()
            .counters();
        assert!(
            c.from_multicast * 10 >= c.fragments_received * 9,
            "member {p}: {c:?}"
        );
    }
}

/// No `[[app.republish]]`: the publisher names the group, the form and the address in
/// its stream name, as encoders set up for AMS's multicast service do. The server joins
/// that group, hands the members already in it the address and key, and sends the
/// stream there once per fragment.
#[test]
fn a_publisher_asking_for_ip_multicast_in_its_stream_name_gets_it() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let address: std::net::SocketAddr = "239.1.2.4:30000".parse().unwrap();
    let mut world = World::new();
    let mut players = Vec::new();
    for _ in 0..4 {
        let p = world.add_member(&spec);
        world.members[p].client.play_from_group("cam");
        players.push(p);
    }
    world.run_for(Duration::from_secs(1));
    let name = format!(
        "cam?fms.multicast.type=2&fms.multicast.groupspec={}&fms.multicast.address={address}",
        SPEC.replace(':', "%3A")
    );
    let publisher = add_publisher_as(&mut world, &name);
    for &p in &players {
        assert!(
            world.members[p]
                .events
                .contains(&GroupEvent::MulticastAddress(address)),
            "member {p} was told the multicast address when the stream started"
        );
        world.multicast.push((address, p));
    }
    stream_frames(&mut world, publisher);
    let published = world.server.groups().counters().fragments_published;
    assert!(published > 500, "{published} fragments");
    assert_eq!(world.multicast_sent, published, "once per fragment");
    check_members_by_multicast(&world, &players);
}
