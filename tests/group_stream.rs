//! A live stream over a NetGroup among our own members: one publishes into the group,
//! the others play it from their neighbours. Every player's output starts with the codec
//! headers and a keyframe, then has every frame to the end; a link that fails is made up
//! for by the other neighbours (every frame after the cut came from peers); memory stays
//! bounded by the window.
//!
//! Sans-IO: our server and members in memory (tests/support/group_world.rs).

#[path = "support/group_world.rs"]
mod group_world;

use std::time::Duration;

use group_world::{World, SPEC};
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::media::{MediaKind, MediaMessage};

const FRAMES: u32 = 250; // 10 s at 25 frames/s
const GOP: u32 = 25;

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

/// What a player wrote: (video frame index or None for other messages, message).
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

fn run(players: usize, cut_link: bool) -> World {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = World::new();
    let publisher = world.add_member(&spec);
    for _ in 0..players {
        let p = world.add_member(&spec);
        world.members[p].client.play_from_group("cam");
    }
    world.run_for(Duration::from_secs(2));
    let now = world.now;
    world.members[publisher]
        .client
        .publish_to_group(now, "cam", [0x42; 32]);
    world.run_for(Duration::from_millis(500));
    for i in 0..FRAMES {
        let now = world.now;
        let c = &mut world.members[publisher].client;
        if i % GOP == 0 {
            // As Flash publishers do: codec headers again before every keyframe, so a
            // member that joins mid-stream can start.
            c.send_group_media(now, &avc_header());
            c.send_group_media(now, &aac_header());
        }
        c.send_group_media(now, &frame(i));
        c.send_group_media(now, &audio(i));
        if cut_link && i == 100 {
            // The publisher's link to the first player fails for the rest of the run.
            world.cut = Some((publisher, 1));
        }
        world.run_for(Duration::from_millis(40));
    }
    world.run_for(Duration::from_secs(4));
    world
}

fn check_players(world: &World, players: usize) {
    for p in 1..=players {
        let events = &world.members[p].events;
        let media: Vec<&MediaMessage> = events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Media(m) => Some(m),
                _ => None,
            })
            .collect();
        assert!(
            media.len() > 2,
            "player {p} got media: {} events",
            events.len()
        );
        // Decodable from the first message: headers, then a keyframe.
        let first_video = media
            .iter()
            .position(|m| m.kind == MediaKind::Video && !m.is_sequence_header())
            .expect("video");
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
        assert_eq!(
            frames,
            (start..FRAMES).collect::<Vec<_>>(),
            "player {p}: every frame from its start, in order"
        );
        assert!(start <= GOP, "player {p} started at frame {start}");
    }
}

#[test]
fn players_get_every_frame_decodable_from_their_start_in_bounded_memory() {
    let world = run(4, false);
    check_players(&world, 4);
    let stream = |i: usize| world.members[i].client.group().unwrap().stream().unwrap();
    // Memory per member stays bounded by the window, whatever the stream's length:
    // 10 s of ~3 fragments per frame, against a window of 8 s + 2 s margin.
    for p in 0..=4 {
        let (held, bytes) = stream(p).held();
        assert!(held <= 25 * 3 * 11, "member {p} holds {held} fragments");
        assert!(bytes <= 16 << 20, "member {p} holds {bytes} bytes");
    }
}

#[test]
fn a_failed_link_is_made_up_for_by_other_neighbours() {
    let world = run(3, true);
    // Player 1 has every frame to the end, though after the cut the publisher could
    // send it nothing: the last 150 frames came from the other players.
    check_players(&world, 3);
}

/// What a run cost: the publisher's and the busiest player's uploads against the stream,
/// and the players' duplicates and pulls.
#[derive(Debug)]
struct Cost {
    published: u64,
    publisher_sent: u64,
    publisher_pulled: u64,
    max_player_sent: u64,
    duplicates: u64,
    pulls: u64,
    received: u64,
    rotations: u64,
}

fn cost(world: &World, players: usize) -> Cost {
    let stream = |i: usize| world.members[i].client.group().unwrap().stream().unwrap();
    let publisher = stream(0).counters();
    let players: Vec<_> = (1..=players).map(|p| stream(p).counters()).collect();
    Cost {
        published: publisher.fragments_published,
        publisher_sent: publisher.fragments_sent,
        publisher_pulled: publisher.pulls_answered,
        max_player_sent: players.iter().map(|c| c.fragments_sent).max().unwrap_or(0),
        duplicates: players.iter().map(|c| c.duplicates).sum(),
        pulls: players.iter().map(|c| c.pulls_sent).sum(),
        received: players.iter().map(|c| c.fragments_received).sum(),
        rotations: players.iter().map(|c| c.push_rotations).sum(),
    }
}

/// Twenty players on the ring overlay the rendezvous builds (each told of its three
/// ring neighbours on each side). Each fragment should cross each player's links about
/// once: the publisher pushes each class to a couple of neighbours, the players relay
/// it on to each other from whoever proved to deliver it first, and pulls only repair.
/// The naive dealing (classes by session order, whoever holds the stream) cost the
/// publisher 4.7x the stream, and the players 44% duplicates and 45% pulls.
#[test]
fn twenty_players_share_the_upload_and_the_publisher_sends_each_fragment_a_few_times() {
    const PLAYERS: usize = 20;
    let world = run(PLAYERS, false);
    check_players(&world, PLAYERS);
    let c = cost(&world, PLAYERS);
    eprintln!(
        "published {} | publisher sent {} ({} pulled) | busiest player sent {} | \
         players: received {}, duplicates {}, pulls {}, push rotations {}",
        c.published,
        c.publisher_sent,
        c.publisher_pulled,
        c.max_player_sent,
        c.received,
        c.duplicates,
        c.pulls,
        c.rotations
    );
    // Every fragment the publisher cut: its counter, not what players saw.
    let n = c.published;
    assert!(n > 3 * u64::from(FRAMES), "published {n} fragments");
    assert!(
        c.publisher_sent <= 4 * n,
        "publisher sent {} fragments for {n}: over 4x",
        c.publisher_sent
    );
    assert!(
        c.max_player_sent <= 4 * n,
        "a player sent {} fragments for {n}: over 4x",
        c.max_player_sent
    );
    // A duplicate comes only while a class changes pushers (a pull answered after the
    // new pusher's push, or the old one's fragments in flight): over the whole run,
    // fewer than if every player got one of the eight classes twice over.
    let all = n * PLAYERS as u64;
    assert!(
        c.duplicates <= all / 8,
        "players got {} duplicates for {all} fragments",
        c.duplicates
    );
    // Pulls repair: most fragments come pushed.
    assert!(
        c.pulls <= c.received / 4,
        "players pulled {} of {} fragments",
        c.pulls,
        c.received
    );
}
