//! Transport behaviour over the deterministic simulator: handshakes in both layouts, bulk
//! transfer under loss and reordering, partial reliability, close, and address mobility.

mod sim;

use std::time::Duration;

use rtmfp_edge::proto::endpoint::{EndpointConfig, Event};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
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
        net.nodes[c].endpoint.session_mut(sid).unwrap().ping(now);
        assert!(
            net.run_until(Duration::from_secs(1), |n| n.nodes[c]
                .endpoint
                .session(sid)
                .is_some_and(|s| s.srtt().is_some())),
            "{layout}: no RTT sample after a ping"
        );
    }
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
