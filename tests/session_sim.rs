//! Transport behaviour over the deterministic simulator: handshakes in both layouts, bulk
//! transfer under loss and reordering, partial reliability, close, and address mobility.

mod sim;

use std::time::Duration;

use rtmfp_edge::proto::endpoint::{EndpointConfig, Event};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
use rtmfp_edge::proto::flow_send::Priority;
use rtmfp_edge::proto::keying::HandshakeLayout;
use rtmfp_edge::proto::session::{CloseReason, SessionEvent};
use rtmfp_edge::proto::Endpoint;
use sim::{Link, Network};

const SERVER: &str = "10.0.0.1:1935";
const CLIENT: &str = "10.0.0.2:50000";

fn pair(seed: u64, link: Link, client_config: EndpointConfig) -> (Network, usize, usize, u32) {
    let mut net = Network::new(seed, link);
    let s = net.add(SERVER, Endpoint::new(EndpointConfig::server(), [1; 32]));
    let c = net.add(CLIENT, Endpoint::new(client_config, [2; 32]));
    let now = net.now;
    let sid = net.nodes[c].endpoint.connect(
        now,
        SERVER.parse().unwrap(),
        EndpointDiscriminator::for_uri("rtmfp://10.0.0.1/live"),
    );
    (net, s, c, sid)
}

fn opened(net: &Network, node: usize) -> Option<u32> {
    net.nodes[node].events.iter().find_map(|e| match e {
        Event::SessionOpened { session, .. } => Some(*session),
        _ => None,
    })
}

#[test]
fn handshake_completes_in_rfc_layout_with_hmac_and_sequence_numbers() {
    let (mut net, s, c, sid) = pair(1, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    let info = &net.nodes[c].endpoint.session(sid).unwrap().info;
    assert_eq!(info.layout, HandshakeLayout::Rfc7425);
    assert_eq!(info.dh_group, 16);
    assert_eq!(info.tx_hmac, Some(16));
    assert!(info.tx_sequence_numbers && info.rx_sequence_numbers);
    assert_eq!(info.far_peer_id, net.nodes[s].endpoint.server_peer_id());
}

#[test]
fn flash_era_client_gets_flash_era_keying() {
    let cfg = EndpointConfig {
        initiator_layouts: vec![HandshakeLayout::FlashEra],
        ..Default::default()
    };
    let (mut net, s, c, sid) = pair(2, Link::default(), cfg);
    assert!(net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()));
    let info = net.nodes[c].endpoint.session(sid).unwrap().info.clone();
    assert_eq!(info.layout, HandshakeLayout::FlashEra);
    assert_eq!(info.dh_group, 2);
    assert_eq!(info.tx_hmac, None);
    let server_sid = opened(&net, s).unwrap();
    assert_eq!(
        net.nodes[s]
            .endpoint
            .session(server_sid)
            .unwrap()
            .info
            .layout,
        HandshakeLayout::FlashEra
    );
}

fn transfer(seed: u64, link: Link, size: usize) -> Vec<u8> {
    let (mut net, s, c, sid) = pair(seed, link, EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(30), |n| opened(n, c).is_some()
            && opened(n, s).is_some()),
        "handshake"
    );
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let session = net.nodes[c].endpoint.session_mut(sid).unwrap();
    let flow = session.open_flow(b"bulk".to_vec(), None);
    for chunk in payload.chunks(64 * 1024) {
        assert!(session.send(flow, chunk, None));
    }
    session.close_flow(flow);
    let mut received = Vec::new();
    let mut finished = false;
    net.run_until(Duration::from_secs(600), |n| {
        for e in n.drain_events(s) {
            match e {
                Event::Session {
                    event: SessionEvent::Message { data, .. },
                    ..
                } => received.extend_from_slice(&data),
                Event::Session {
                    event: SessionEvent::FlowFinished { .. },
                    ..
                } => finished = true,
                _ => {}
            }
        }
        finished
    });
    assert!(
        finished,
        "flow finished; got {} of {} bytes",
        received.len(),
        size
    );
    received
}

#[test]
fn ten_megabytes_arrive_exactly_under_ten_percent_loss_and_reordering() {
    let link = Link {
        loss: 0.10,
        duplicate: 0.02,
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(15),
        mtu: 1400,
    };
    let size = 10 * 1024 * 1024;
    let got = transfer(7, link, size);
    let expected: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    assert!(got == expected, "byte-exact");
}

#[test]
fn partially_reliable_flow_abandons_stale_messages_instead_of_stalling() {
    let (mut net, s, c, sid) = pair(3, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    let now = net.now;
    let session = net.nodes[c].endpoint.session_mut(sid).unwrap();
    let flow = session.open_flow(b"media".to_vec(), None);
    session.send(flow, b"frame-1", Some(now + Duration::from_millis(100)));
    // The path goes dark for a second: frame 1 is lost and goes stale.
    net.link.loss = 1.0;
    net.run_until(Duration::from_millis(40), |_| false);
    net.link.loss = 0.0;
    net.run_until(Duration::from_millis(300), |_| false);
    let now = net.now;
    let session = net.nodes[c].endpoint.session_mut(sid).unwrap();
    session.send(flow, b"frame-2", Some(now + Duration::from_secs(5)));
    let mut frames = Vec::new();
    net.run_until(Duration::from_secs(10), |n| {
        for e in n.drain_events(s) {
            if let Event::Session {
                event: SessionEvent::Message { data, .. },
                ..
            } = e
            {
                frames.push(data);
            }
        }
        !frames.is_empty()
    });
    assert_eq!(
        frames,
        vec![b"frame-2".to_vec()],
        "stale frame abandoned, later frame delivered"
    );
}

#[test]
fn session_closes_cleanly_on_both_sides() {
    let (mut net, s, c, sid) = pair(4, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    let now = net.now;
    net.nodes[c].endpoint.session_mut(sid).unwrap().close(now);
    let closed = |n: &Network, node: usize, want: CloseReason| {
        n.nodes[node].events.iter().any(
            |e| matches!(e, Event::Session { event: SessionEvent::Closed(r), .. } if *r == want),
        )
    };
    assert!(net.run_until(Duration::from_secs(10), |n| closed(
        n,
        c,
        CloseReason::LocalClose
    ) && closed(
        n,
        s,
        CloseReason::PeerClosed
    )));
    assert!(net.nodes[c].endpoint.session(sid).is_none());
}

#[test]
fn ping_right_after_an_idle_poll_still_measures_rtt() {
    // A poll that finds nothing to send must not use up the current timestamp tick:
    // the ping that follows at the same instant has to carry a timestamp so the far end
    // can echo it (RFC 7016 §3.5.2.2), or no RTT is ever measured.
    for layout in [HandshakeLayout::Rfc7425, HandshakeLayout::FlashEra] {
        let cfg = EndpointConfig {
            initiator_layouts: vec![layout],
            ..Default::default()
        };
        let (mut net, s, c, sid) = pair(6, Link::default(), cfg);
        assert!(
            net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
                && opened(n, s).is_some())
        );
        let now = net.now;
        assert!(net.nodes[c].endpoint.poll_transmit(now).is_none());
        let samples = |n: &sim::Network| n.nodes[c].endpoint.session(sid).unwrap().rtt_samples();
        let before = samples(&net);
        net.nodes[c].endpoint.session_mut(sid).unwrap().ping(now);
        assert!(
            net.run_until(Duration::from_secs(1), |n| samples(n) > before),
            "{layout}: no RTT sample after a ping"
        );
    }
}

#[test]
fn a_first_message_lost_is_sent_again_within_round_trips_not_the_initial_three_seconds() {
    // The handshake gives each side its first round-trip sample (the initiator from
    // IIKeying to RIKeying, the responder from RIKeying to the session's first packet),
    // so a first data packet lost does not wait out the initial ERTO of 3 s.
    fn open_pair(seed: u64) -> (sim::Network, usize, usize, u32, u32) {
        let (mut net, s, c, client_sid) = pair(seed, Link::default(), EndpointConfig::default());
        assert!(
            net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
                && opened(n, s).is_some())
        );
        let server_sid = opened(&net, s).unwrap();
        (net, s, c, client_sid, server_sid)
    }
    /// Sends `data` on a new flow from `from`, losing `lost_from`'s next datagram;
    /// how long until `to` has it.
    fn delivery(
        net: &mut sim::Network,
        (from, sid): (usize, u32),
        to: usize,
        lost_from: Option<&str>,
        data: &[u8],
    ) -> Duration {
        let session = net.nodes[from].endpoint.session_mut(sid).unwrap();
        let flow = session.open_flow(data.to_vec(), None);
        assert!(session.send(flow, data, None));
        if let Some(addr) = lost_from {
            net.drop_next_from(addr.parse().unwrap());
        }
        let sent = net.now;
        let mut arrived = false;
        assert!(net.run_until(Duration::from_secs(10), |n| {
            arrived |= n.drain_events(to).iter().any(|e| {
                matches!(e, Event::Session { event: SessionEvent::Message { data: got, .. }, .. }
                    if got.as_slice() == data)
            });
            arrived
        }));
        net.now.saturating_since(sent)
    }

    // The client's first packet (its connect, for a Flash client) is lost.
    let (mut net, s, c, client_sid, _) = open_pair(12);
    let took = delivery(&mut net, (c, client_sid), s, Some(CLIENT), b"connect");
    assert!(took < Duration::from_secs(1), "client: took {took:?}");

    // The server's first packet (its answer) is lost.
    let (mut net, s, c, client_sid, server_sid) = open_pair(13);
    delivery(&mut net, (c, client_sid), s, None, b"connect");
    let took = delivery(&mut net, (s, server_sid), c, Some(SERVER), b"_result");
    assert!(took < Duration::from_secs(1), "server: took {took:?}");
}

#[test]
fn session_survives_client_address_change() {
    let (mut net, s, c, sid) = pair(5, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    let server_sid = opened(&net, s).unwrap();
    net.rebind(c, "10.0.0.3:40000");
    let session = net.nodes[c].endpoint.session_mut(sid).unwrap();
    let flow = session.open_flow(b"after-move".to_vec(), None);
    session.send(flow, b"hello from a new address", None);
    let mut got = None;
    let mut moved = false;
    net.run_until(Duration::from_secs(20), |n| {
        for e in n.drain_events(s) {
            match e {
                Event::Session {
                    event: SessionEvent::Message { data, .. },
                    ..
                } => got = Some(data),
                Event::Session {
                    event: SessionEvent::AddressChanged { to, .. },
                    ..
                } => moved = to == "10.0.0.3:40000".parse().unwrap(),
                _ => {}
            }
        }
        got.is_some() && moved
    });
    assert_eq!(got.as_deref(), Some(&b"hello from a new address"[..]));
    assert!(moved);
    // And the server's replies reach the new address.
    let session = net.nodes[s].endpoint.session_mut(server_sid).unwrap();
    let flow = session.open_flow(b"reply".to_vec(), None);
    session.send(flow, b"welcome", None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.nodes[c].events.iter().any(|e| matches!(e, Event::Session { event: SessionEvent::Message { data, .. }, .. } if data == b"welcome"))));
}

#[test]
fn peers_behind_nats_meet_through_the_servers_introduction() {
    let mut net = Network::new(6, Link::default());
    let s = net.add(SERVER, Endpoint::new(EndpointConfig::server(), [1; 32]));
    let a = net.add_behind_nat(
        "192.168.1.10:5000",
        "203.0.113.1:61000",
        Endpoint::new(EndpointConfig::default(), [2; 32]),
    );
    let b = net.add_behind_nat(
        "192.168.7.20:6000",
        "198.51.100.9:62000",
        Endpoint::new(EndpointConfig::default(), [3; 32]),
    );
    let now = net.now;
    let server_addr = SERVER.parse().unwrap();
    let app = || EndpointDiscriminator::for_uri("rtmfp://10.0.0.1/live");
    let a_to_server = net.nodes[a].endpoint.connect(now, server_addr, app());
    let b_to_server = net.nodes[b].endpoint.connect(now, server_addr, app());
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.nodes[a].endpoint.session(a_to_server).is_some()
            && n.nodes[b].endpoint.session(b_to_server).is_some()
    }));
    // The server knows B by the peer ID of the certificate B presented; that is what it
    // hands to other members.
    let b_public = net.nodes[b].reachable_at();
    let b_peer_id = net.nodes[s]
        .endpoint
        .session_ids()
        .into_iter()
        .filter_map(|id| net.nodes[s].endpoint.session(id))
        .find(|sess| sess.peer == b_public)
        .map(|sess| sess.info.far_peer_id)
        .expect("server has B's session");

    // Straight to B's public address, A's IHello dies at B's NAT.
    let now = net.now;
    let unintroduced =
        net.nodes[a]
            .endpoint
            .connect(now, b_public, EndpointDiscriminator::for_peer(b_peer_id));
    net.run_until(Duration::from_secs(3), |_| false);
    assert!(net.nodes[a].endpoint.session(unintroduced).is_none());
    assert!(net.nodes[b].nat.as_ref().unwrap().refused > 0);

    // Through the server it works: the forwarded IHello makes B answer toward A, which
    // opens B's mapping for A while A's redirected IHello opens A's for B.
    let now = net.now;
    let direct =
        net.nodes[a]
            .endpoint
            .connect(now, server_addr, EndpointDiscriminator::for_peer(b_peer_id));
    assert!(
        net.run_until(Duration::from_secs(20), |n| n.nodes[a]
            .endpoint
            .session(direct)
            .is_some_and(|sess| sess.peer == b_public)),
        "A opened a session straight to B's public address, A at step {:?}",
        net.nodes[a].endpoint.handshake_step(direct)
    );
    assert!(net.nodes[s]
        .events
        .iter()
        .any(|e| matches!(e, Event::Introduced { target, .. } if *target == b_peer_id)));
    let b_side = net.nodes[b]
        .events
        .iter()
        .find_map(|e| match e {
            Event::SessionOpened {
                session,
                peer,
                as_initiator: false,
            } if *peer == net.nodes[a].reachable_at() => Some(*session),
            _ => None,
        })
        .expect("B accepted A's session");

    // Data moves peer to peer without the server.
    let server_delivered_before = net.delivered;
    let session = net.nodes[a].endpoint.session_mut(direct).unwrap();
    let flow = session.open_flow(b"p2p".to_vec(), None);
    session.send(flow, b"straight to you", None);
    assert!(net.run_until(Duration::from_secs(5), |n| n.nodes[b].events.iter().any(
        |e| matches!(e, Event::Session { session, event: SessionEvent::Message { data, .. } } if *session == b_side && data == b"straight to you")
    )));
    assert!(net.delivered > server_delivered_before);
}

#[test]
fn quiet_session_stays_open_on_keepalives() {
    let (mut net, s, c, sid) = pair(8, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    let server_sid = opened(&net, s).unwrap();
    let delivered = net.delivered;
    // Five minutes without application data: more than twice the idle timeout.
    net.run_until(Duration::from_secs(300), |_| false);
    assert!(net.nodes[c].endpoint.session(sid).is_some());
    assert!(net.nodes[s].endpoint.session(server_sid).is_some());
    assert!(
        net.delivered > delivered + 10,
        "keepalive pings crossed the link"
    );
    assert!(!net.nodes[c].events.iter().any(|e| matches!(
        e,
        Event::Session {
            event: SessionEvent::Closed(_),
            ..
        }
    )));
}

#[test]
fn vanished_peer_is_detected_and_its_session_closed() {
    let config = EndpointConfig::default();
    let idle = config.session.idle_timeout;
    let (mut net, s, c, _) = pair(9, Link::default(), config);
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    let server_sid = opened(&net, s).unwrap();
    // The client disappears without a word (power loss, cable pulled).
    net.link.loss = 1.0;
    let closed_on_server = |n: &Network| {
        n.nodes[s].events.iter().find_map(|e| match e {
            Event::Session {
                session,
                event: SessionEvent::Closed(reason),
            } if *session == server_sid => Some(*reason),
            _ => None,
        })
    };
    assert!(
        net.run_until(idle + Duration::from_secs(30), |n| closed_on_server(n)
            .is_some())
    );
    let reason = closed_on_server(&net).unwrap();
    assert!(
        matches!(
            reason,
            CloseReason::IdleTimeout | CloseReason::RetransmitLimit
        ),
        "{reason:?}"
    );
    assert!(net.nodes[s].endpoint.session(server_sid).is_none());
}

fn delivered_on(net: &mut Network, node: usize, metadata: &[u8], flows: &mut Vec<u64>) -> usize {
    let mut bytes = 0;
    for e in net.drain_events(node) {
        match e {
            Event::Session {
                event:
                    SessionEvent::FlowOpened {
                        flow_id,
                        metadata: m,
                        ..
                    },
                ..
            } if m == metadata => flows.push(flow_id),
            Event::Session {
                event: SessionEvent::Message { flow_id, data },
                ..
            } if flows.contains(&flow_id) => bytes += data.len(),
            other => net.nodes[node].events.push(other),
        }
    }
    bytes
}

#[test]
fn time_critical_flow_goes_ahead_of_bulk_data_queued_before_it() {
    let (mut net, s, c, sid) = pair(10, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    net.drain_events(s);
    let session = net.nodes[c].endpoint.session_mut(sid).unwrap();
    let bulk = session.open_flow(b"bulk".to_vec(), None);
    for _ in 0..16 {
        session.send(bulk, &[0xb0; 64 * 1024], None);
    }
    let media = session.open_flow(b"media".to_vec(), None);
    session.set_priority(media, Priority::TIME_CRITICAL);
    let keyframe = vec![0x17; 256 * 1024];
    session.send(media, &keyframe, None);

    let (mut bulk_flows, mut media_flows) = (Vec::new(), Vec::new());
    let (mut bulk_bytes, mut media_bytes) = (0, 0);
    let mut bulk_bytes_when_media_done = None;
    assert!(net.run_until(Duration::from_secs(60), |n| {
        media_bytes += delivered_on(n, s, b"media", &mut media_flows);
        bulk_bytes += delivered_on(n, s, b"bulk", &mut bulk_flows);
        if media_bytes == keyframe.len() && bulk_bytes_when_media_done.is_none() {
            bulk_bytes_when_media_done = Some(bulk_bytes);
        }
        bulk_bytes == 16 * 64 * 1024
    }));
    assert_eq!(
        bulk_bytes_when_media_done,
        Some(0),
        "the keyframe arrived whole before any bulk message"
    );
}

#[test]
fn time_critical_sender_makes_the_server_ask_other_senders_to_yield() {
    let mut net = Network::new(11, Link::default());
    let _server = net.add(SERVER, Endpoint::new(EndpointConfig::server(), [1; 32]));
    let publisher = net.add(CLIENT, Endpoint::new(EndpointConfig::default(), [2; 32]));
    let uploader = net.add(
        "10.0.0.3:50000",
        Endpoint::new(EndpointConfig::default(), [3; 32]),
    );
    let now = net.now;
    let app = || EndpointDiscriminator::for_uri("rtmfp://10.0.0.1/live");
    let server_addr = SERVER.parse().unwrap();
    let p = net.nodes[publisher]
        .endpoint
        .connect(now, server_addr, app());
    let u = net.nodes[uploader]
        .endpoint
        .connect(now, server_addr, app());
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.nodes[publisher].endpoint.session(p).is_some()
            && n.nodes[uploader].endpoint.session(u).is_some()
    }));
    // The uploader sends routine data all along.
    let session = net.nodes[uploader].endpoint.session_mut(u).unwrap();
    let upload = session.open_flow(b"upload".to_vec(), None);
    for _ in 0..64 {
        session.send(upload, &[1; 16 * 1024], None);
    }
    net.run_until(Duration::from_millis(500), |_| false);
    let now = net.now;
    assert!(!net.nodes[uploader]
        .endpoint
        .session(u)
        .unwrap()
        .yields_to_time_critical(now));

    // The publisher starts sending time-critical media.
    let session = net.nodes[publisher].endpoint.session_mut(p).unwrap();
    let media = session.open_flow(b"media".to_vec(), None);
    session.set_priority(media, Priority::TIME_CRITICAL);
    for _ in 0..10 {
        session.send(media, &[9; 4000], None);
    }
    assert!(net.run_until(Duration::from_secs(1), |n| n.nodes[uploader]
        .endpoint
        .session(u)
        .unwrap()
        .yields_to_time_critical(n.now)));
    let now = net.now;
    assert!(
        !net.nodes[publisher]
            .endpoint
            .session(p)
            .unwrap()
            .yields_to_time_critical(now),
        "the time-critical sender itself is not told to yield"
    );
    // Once the media stops, the reverse notification lapses.
    net.run_until(Duration::from_secs(2), |_| false);
    let session = net.nodes[uploader].endpoint.session_mut(u).unwrap();
    session.send(upload, &[2; 1000], None);
    net.run_until(Duration::from_millis(300), |_| false);
    let now = net.now;
    assert!(!net.nodes[uploader]
        .endpoint
        .session(u)
        .unwrap()
        .yields_to_time_critical(now));
}

/// Sends `size` bytes on a flow from the client and runs until the server has them all.
fn send_and_finish(net: &mut Network, s: usize, c: usize, sid: u32, size: usize) {
    let session = net.nodes[c].endpoint.session_mut(sid).unwrap();
    let flow = session.open_flow(b"bulk".to_vec(), None);
    assert!(session.send(flow, &vec![7u8; size], None));
    session.close_flow(flow);
    let finished = net.run_until(Duration::from_secs(120), |n| {
        n.drain_events(s).iter().any(|e| {
            matches!(
                e,
                Event::Session {
                    event: SessionEvent::FlowFinished { .. },
                    ..
                }
            )
        })
    });
    assert!(finished, "flow finished");
}

#[test]
fn endpoint_counters_count_handshakes_sessions_bytes_and_retransmissions() {
    let (mut net, s, c, sid) = pair(11, Link::default(), EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(10), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    send_and_finish(&mut net, s, c, sid, 64 * 1024);
    let server = net.nodes[s].endpoint.counters();
    let client = net.nodes[c].endpoint.counters();
    assert_eq!(
        (
            server.cookies_sent,
            server.sessions_accepted,
            server.sessions_initiated
        ),
        (1, 1, 0)
    );
    assert_eq!(
        (client.sessions_initiated, client.handshakes_failed),
        (1, 0)
    );
    assert!(client.bytes_sent > 64 * 1024, "{client:?}");
    assert!(server.bytes_sent > 0, "{server:?}");
    assert_eq!(
        net.nodes[c].endpoint.fragments_retransmitted(),
        0,
        "no loss, no repeats"
    );

    let lossy = Link {
        loss: 0.2,
        ..Link::default()
    };
    let (mut net, s, c, sid) = pair(12, lossy, EndpointConfig::default());
    assert!(
        net.run_until(Duration::from_secs(30), |n| opened(n, c).is_some()
            && opened(n, s).is_some())
    );
    send_and_finish(&mut net, s, c, sid, 256 * 1024);
    let repeated = net.nodes[c].endpoint.fragments_retransmitted();
    assert!(repeated > 0);
    assert_eq!(net.nodes[s].endpoint.session_count(), 1);
    // A session's count outlives it.
    let now = net.now;
    net.nodes[c].endpoint.session_mut(sid).unwrap().close(now);
    assert!(net.run_until(Duration::from_secs(60), |n| n.nodes[c]
        .endpoint
        .session(sid)
        .is_none()));
    assert_eq!(net.nodes[c].endpoint.session_count(), 0);
    assert!(net.nodes[c].endpoint.fragments_retransmitted() >= repeated);
}
