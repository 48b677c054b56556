//! A fan-out to more players than one slice (`FAN_OUT_SLICE`): the server queues media
//! for a slice of players, sends their datagrams, then goes on with the next slice. Every
//! player must still get every message, in order, also when the publisher's next
//! messages arrive while a fan-out is under way, and whether the driver pulls datagrams
//! one by one (`poll_transmit`) or only runs timers.
//!
//! Sans-IO: one `EdgeServer` and `FAN_OUT_SLICE + 44` `FlashClient` players exchanging
//! datagrams in memory on a virtual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
use rtmfp_edge::media::{MediaKind, MediaMessage};
use rtmfp_edge::proto::endpoint::EndpointConfig;
use rtmfp_edge::proto::Instant;
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::{EdgeServer, FAN_OUT_SLICE};

const SERVER: &str = "10.0.0.1:1935";
const STEP: Duration = Duration::from_millis(5);

fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

struct Peer {
    client: FlashClient,
    addr: SocketAddr,
    stream: Option<u32>,
    playing: bool,
    /// Indexes of the video frames received, in order.
    frames: Vec<u32>,
}

struct World {
    now: Instant,
    server: EdgeServer,
    peers: Vec<Peer>,
}

impl World {
    fn new(players: usize) -> World {
        let now = Instant::ZERO;
        let server = EdgeServer::new(
            Arc::new(ServerConfig::embedded_default()),
            EndpointConfig::server(),
            [1; 32],
        );
        let peers = (0..=players)
            .map(|i| Peer {
                client: FlashClient::connect(
                    now,
                    server_addr(),
                    "rtmfp://10.0.0.1/live",
                    "live",
                    vec![],
                    EndpointConfig::default(),
                    seed(i),
                ),
                addr: SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 5000)),
                stream: None,
                playing: false,
                frames: Vec::new(),
            })
            .collect();
        World { now, server, peers }
    }

    /// Everything the players sent goes to the server; then what the server sends goes
    /// to the players, pulled one datagram at a time (with `pull`) or not at all.
    fn exchange(&mut self, pull: bool) {
        let now = self.now;
        for peer in &mut self.peers {
            while let Some(t) = peer.client.poll_transmit(now) {
                self.server.handle_datagram(now, peer.addr, &t.payload);
            }
        }
        if !pull {
            return;
        }
        while let Some(t) = self.server.poll_transmit(now) {
            let i = self
                .peers
                .binary_search_by_key(&t.destination, |p| p.addr)
                .expect("a datagram to one of the players");
            self.peers[i]
                .client
                .handle_datagram(now, server_addr(), &t.payload);
        }
    }

    fn step(&mut self) {
        self.exchange(true);
        let now = self.now;
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
                        peer.frames.push(index);
                    }
                    _ => {}
                }
            }
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        while self.server.poll_event().is_some() {}
        self.now = now + STEP;
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    fn publish(&mut self, index: u32) {
        let stream = self.peers[0].stream.expect("publisher stream");
        let now = self.now;
        assert!(self.peers[0]
            .client
            .send_media(now, stream, &video_frame(index)));
    }
}

fn seed(i: usize) -> [u8; 32] {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed
}

fn video_frame(index: u32) -> MediaMessage {
    let keyframe = index % 25 == 0;
    let mut payload = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.extend_from_slice(&index.to_be_bytes());
    payload.resize(600, 0xab);
    MediaMessage::new(MediaKind::Video, index * 40, payload)
}

#[test]
fn every_player_of_a_fan_out_longer_than_a_slice_gets_every_frame_in_order() {
    let players = FAN_OUT_SLICE + 44;
    let mut world = World::new(players);
    world.run_for(Duration::from_secs(1));
    let stream = world.peers[0].stream.expect("publisher got a stream");
    world.peers[0].client.publish(stream, "cam");
    world.run_for(Duration::from_millis(300));
    for peer in &mut world.peers[1..] {
        let s = peer.stream.expect("player got a stream");
        peer.client.play(s, "cam");
    }
    world.run_for(Duration::from_millis(500));
    let playing = world.peers[1..].iter().filter(|p| p.playing).count();
    assert_eq!(playing, players, "every player plays");

    let mut index = 0;
    for round in 0..20 {
        // Three frames reach the server before it is asked for a single datagram: the
        // second and third fan-outs wait behind the first.
        for _ in 0..3 {
            world.publish(index);
            index += 1;
        }
        // Every other round, the driver only runs timers for a while: the fan-out under
        // way must go on from the timeout alone.
        let pull = round % 2 == 0;
        world.exchange(pull);
        if !pull {
            assert!(
                world.server.fan_out_under_way(),
                "a fan-out longer than a slice"
            );
            assert!(
                world.server.poll_timeout().is_some_and(|t| t <= world.now),
                "a fan-out under way is due now"
            );
            // Three fan-outs of two slices each, and the sessions' own timers: a few
            // timeouts at the same instant finish them all.
            // A millisecond passes between timeouts: these fan-outs take milliseconds.
            for _ in 0..20 {
                if world.server.poll_timeout().is_some_and(|t| t <= world.now) {
                    world.server.handle_timeout(world.now);
                }
                world.now = world.now + Duration::from_millis(1);
            }
            assert!(
                !world.server.fan_out_under_way(),
                "timeouts alone finished the fan-outs"
            );
        }
        world.run_for(Duration::from_millis(120));
    }
    world.run_for(Duration::from_secs(1));

    // One observation per message. Pulled on at once, a fan-out takes no time on the
    // virtual clock; driven by timeouts a millisecond apart, the second and third of a
    // round wait for the ones before them and take milliseconds.
    let counts = world.server.fan_out_latency().counts();
    let (rounds, per_round) = (20, 3);
    assert_eq!(counts.iter().sum::<u64>(), rounds * per_round, "{counts:?}");
    assert_eq!(counts[0], rounds / 2 * per_round + rounds / 2, "{counts:?}");
    assert_eq!(
        counts[3..].iter().sum::<u64>(),
        rounds / 2 * (per_round - 1),
        "timeout-driven fan-outs took a millisecond or more: {counts:?}"
    );

    let want: Vec<u32> = (0..index).collect();
    for (i, peer) in world.peers[1..].iter().enumerate() {
        assert_eq!(peer.frames, want, "player {i} got every frame, in order");
    }
}
