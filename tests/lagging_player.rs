//! A live RTMFP player that falls behind (its path to the server goes dark for a while)
//! skips to the next keyframe instead of being fed seconds of stale frames: what it
//! plays after the gap decodes, it catches up with the live edge, and a healthy player
//! of the same stream loses nothing.
//!
//! Sans-IO: one `EdgeServer` and three `FlashClient`s exchanging datagrams in memory on
//! a virtual clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
use rtmfp_edge::media::{MediaKind, MediaMessage};
use rtmfp_edge::proto::endpoint::EndpointConfig;
use rtmfp_edge::proto::Instant;
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::EdgeServer;

const SERVER: &str = "10.0.0.1:1935";
const TC_URL: &str = "rtmfp://10.0.0.1/live";
const STEP: Duration = Duration::from_millis(5);
const FRAME_INTERVAL: Duration = Duration::from_millis(40);
const FRAMES_PER_GOP: u32 = 25;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Peer {
    client: FlashClient,
    addr: SocketAddr,
    /// Datagrams from the server are lost while this is set.
    dark: bool,
    stream: Option<u32>,
    playing: bool,
    /// Frame indexes received, in order, with whether the frame was a keyframe.
    frames: Vec<(u32, bool)>,
    /// Audio frame indexes received, in order.
    audio: Vec<u32>,
}

impl Peer {
    fn new(now: Instant, addr_text: &str, seed: u8) -> Peer {
        Peer {
            client: FlashClient::connect(
                now,
                addr(SERVER),
                TC_URL,
                "live",
                vec![],
                EndpointConfig::default(),
                [seed; 32],
            ),
            addr: addr(addr_text),
            dark: false,
            stream: None,
            playing: false,
            frames: Vec::new(),
            audio: Vec::new(),
        }
    }
}

/// An AVC frame carrying its index: a keyframe every `FRAMES_PER_GOP`.
fn video_frame(index: u32) -> MediaMessage {
    let keyframe = index % FRAMES_PER_GOP == 0;
    let mut payload = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.extend_from_slice(&index.to_be_bytes());
    payload.resize(900, 0xab);
    MediaMessage::new(MediaKind::Video, index * 40, payload)
}

/// An AAC frame carrying the index of the video frame it follows.
fn audio_frame(index: u32) -> MediaMessage {
    let mut payload = vec![0xaf, 1];
    payload.extend_from_slice(&index.to_be_bytes());
    payload.resize(200, 0xcd);
    MediaMessage::new(MediaKind::Audio, index * 40 + 20, payload)
}

fn avc_sequence_header() -> MediaMessage {
    MediaMessage::new(
        MediaKind::Video,
        0,
        vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff],
    )
}

struct World {
    now: Instant,
    server: EdgeServer,
    peers: Vec<Peer>,
}

impl World {
    /// Moves every queued datagram once, then lets timers run and the clock advance.
    fn step(&mut self) {
        let now = self.now;
        let mut to_server = VecDeque::new();
        for peer in &mut self.peers {
            while let Some(t) = peer.client.poll_transmit(now) {
                to_server.push_back((peer.addr, t.payload));
            }
        }
        for (from, payload) in to_server {
            self.server.handle_datagram(now, from, &payload);
        }
        while let Some(t) = self.server.poll_transmit(now) {
            if let Some(peer) = self.peers.iter_mut().find(|p| p.addr == t.destination) {
                if !peer.dark {
                    peer.client.handle_datagram(now, addr(SERVER), &t.payload);
                }
            }
        }
        for peer in &mut self.peers {
            peer.client.handle_timeout(now);
            while let Some(event) = peer.client.poll_event() {
                match event {
                    ClientEvent::Connected => peer.client.create_stream(),
                    ClientEvent::StreamCreated { stream_id } => peer.stream = Some(stream_id),
                    ClientEvent::Status { code, .. } if code == "NetStream.Play.Start" => {
                        peer.playing = true
                    }
                    ClientEvent::Media { message, .. }
                        if message.kind == MediaKind::Video && !message.is_sequence_header() =>
                    {
                        let index = u32::from_be_bytes(message.payload[5..9].try_into().unwrap());
                        peer.frames.push((index, message.is_keyframe()));
                    }
                    ClientEvent::Media { message, .. } if message.kind == MediaKind::Audio => {
                        let index = u32::from_be_bytes(message.payload[2..6].try_into().unwrap());
                        peer.audio.push(index);
                    }
                    _ => {}
                }
            }
        }
        self.server.handle_timeout(now);
        while self.server.poll_event().is_some() {}
        self.now = now + STEP;
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }
}

#[test]
fn a_player_that_fell_behind_resumes_at_a_keyframe_and_catches_up() {
    let now = Instant::ZERO;
    let server = EdgeServer::new(
        Arc::new(ServerConfig::embedded_default()),
        EndpointConfig::server(),
        [1; 32],
    );
    let peers = vec![
        Peer::new(now, "10.0.0.2:5000", 2), // publisher
        Peer::new(now, "10.0.0.3:5000", 3), // healthy player
        Peer::new(now, "10.0.0.4:5000", 4), // player whose path goes dark
    ];
    let mut world = World { now, server, peers };

    world.run_for(Duration::from_secs(1));
    let publish_stream = world.peers[0].stream.expect("publisher got a stream");
    world.peers[0].client.publish(publish_stream, "cam");
    world.run_for(Duration::from_millis(500));
    for i in 1..3 {
        let s = world.peers[i].stream.expect("player got a stream");
        world.peers[i].client.play(s, "cam");
    }
    world.run_for(Duration::from_millis(500));
    assert!(
        world.peers[1].playing && world.peers[2].playing,
        "both play"
    );

    let sent_header =
        world.peers[0]
            .client
            .send_media(world.now, publish_stream, &avc_sequence_header());
    assert!(sent_header);

    // 12 s of video at 25 frames/s, an audio frame after each; the slow player's path is
    // dark from 2 s to 5.5 s.
    let total_frames = 300u32;
    let dark = (50u32, 137u32);
    for index in 0..total_frames {
        world.peers[2].dark = (dark.0..dark.1).contains(&index);
        let now = world.now;
        assert!(world.peers[0]
            .client
            .send_media(now, publish_stream, &video_frame(index)));
        world.run_for(FRAME_INTERVAL / 2);
        let now = world.now;
        assert!(world.peers[0]
            .client
            .send_media(now, publish_stream, &audio_frame(index)));
        world.run_for(FRAME_INTERVAL / 2);
    }
    world.run_for(Duration::from_secs(3));

    let healthy: Vec<u32> = world.peers[1].frames.iter().map(|f| f.0).collect();
    assert_eq!(
        healthy,
        (0..total_frames).collect::<Vec<_>>(),
        "the healthy player gets every frame, in order"
    );
    assert_eq!(
        world.peers[1].audio,
        (0..total_frames).collect::<Vec<_>>(),
        "the healthy player gets every audio frame, in order"
    );

    let slow = &world.peers[2].frames;
    assert!(
        world.server.frames_skipped_for_lag() > 0,
        "the lagging player was skipped ahead"
    );
    // Whatever it lost, the frame after each gap starts a GOP: its output decodes.
    for pair in slow.windows(2) {
        let ((before, _), (after, keyframe)) = (pair[0], pair[1]);
        assert!(
            after > before,
            "frames arrive in order: {before} then {after}"
        );
        if after != before + 1 {
            assert!(
                keyframe,
                "after losing frames {}..{} the player resumed at frame {after}, not a keyframe",
                before + 1,
                after
            );
        }
    }
    // It did not get stale frames from the dark period once back...
    let first_after_dark = slow
        .iter()
        .find(|f| f.0 >= dark.0 && !(dark.0..dark.0 + 3).contains(&f.0))
        .expect("frames after the dark period");
    let resumed_within = (first_after_dark.0 - dark.1) * 40;
    assert!(
        first_after_dark.0 >= dark.1,
        "frame {} was sent while the path was dark and delivered seconds late",
        first_after_dark.0
    );
    // ...resumed soon after the path came back: once the server's backed-off
    // retransmission timer (~2 s after 3.5 s of silence) finds the path working again,
    // at the next keyframe it may take (a GOP is 1 s)...
    assert!(
        resumed_within <= 3_000,
        "resumed {resumed_within} ms after the path came back"
    );
    // ...and caught up: from the resuming keyframe on, every frame to the end.
    let tail: Vec<u32> = slow
        .iter()
        .map(|f| f.0)
        .filter(|&i| i >= first_after_dark.0)
        .collect();
    assert_eq!(
        tail,
        (first_after_dark.0..total_frames).collect::<Vec<_>>(),
        "after resuming it gets every frame to the live edge"
    );
    // Audio resumes with the video (an audio frame skipped while lagging must not keep
    // the player's audio skipped once its video resumed).
    let audio_tail: Vec<u32> = world.peers[2]
        .audio
        .iter()
        .copied()
        .filter(|&i| i >= first_after_dark.0)
        .collect();
    assert_eq!(
        audio_tail,
        (first_after_dark.0..total_frames).collect::<Vec<_>>(),
        "after resuming it gets every audio frame to the live edge"
    );
}
