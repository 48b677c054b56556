//! The shards of one server are one server to its clients: they present the same
//! certificate (so the same peer id, which NetGroup members connect to) and accept each
//! other's cookies, so a handshake whose IHello reached one shard and whose IIKeying
//! reached another still opens a session.
//!
//! Sans-IO: endpoints in memory.

use std::net::SocketAddr;

use rtmfp_edge::proto::endpoint::{EndpointConfig, Event};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
use rtmfp_edge::proto::keying::HandshakeLayout;
use rtmfp_edge::proto::{Endpoint, Instant};

fn shard(index: u8, identity: Option<[u8; 64]>) -> Endpoint {
    let config = EndpointConfig {
        shard: index,
        server_identity: identity,
        ..EndpointConfig::server()
    };
    Endpoint::new(config, [index + 1; 32])
}

/// Which of the server's identities the client connects to.
#[derive(Clone, Copy)]
enum Target {
    /// The certificate it presents in RHello (clients connecting to it as a server).
    Server,
    /// Its Flash-era static-key certificate (peers connecting to it as a NetGroup
    /// member).
    Peer,
}

/// Connects a client to one of the server's peer ids; its first datagram (the IHello)
/// goes to shard 0, all the others to shard 1. Returns whether both ends saw the
/// session open.
fn handshake_across_shards(identity: Option<[u8; 64]>, target: Target) -> (bool, bool) {
    let server: SocketAddr = "10.0.0.1:1935".parse().unwrap();
    let client_addr: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let mut shards = [shard(0, identity), shard(1, identity)];
    let mut client = Endpoint::new(
        EndpointConfig {
            initiator_layouts: vec![HandshakeLayout::FlashEra],
            ..EndpointConfig::default()
        },
        [7; 32],
    );
    let target = match target {
        Target::Server => shards[0].server_peer_id(),
        Target::Peer => {
            // Both shards made their static keys at start, as a republishing server does.
            shards[1].client_peer_ids();
            shards[0].client_peer_ids().0
        }
    };
    let mut now = Instant::ZERO;
    client.connect(now, server, EndpointDiscriminator::for_peer(target));
    let (mut client_open, mut server_open) = (false, false);
    let mut sent = 0;
    for _ in 0..200 {
        while let Some(t) = client.poll_transmit(now) {
            let to = usize::from(sent > 0);
            shards[to].handle(now, client_addr, &t.payload);
            sent += 1;
        }
        for s in &mut shards {
            while let Some(t) = s.poll_transmit(now) {
                client.handle(now, server, &t.payload);
            }
            while let Some(e) = s.poll_event() {
                server_open |= matches!(e, Event::SessionOpened { .. });
            }
        }
        while let Some(e) = client.poll_event() {
            client_open |= matches!(e, Event::SessionOpened { .. });
        }
        if client_open && server_open {
            break;
        }
        now = now + std::time::Duration::from_millis(10);
        client.handle_timeout(now);
        for s in &mut shards {
            s.handle_timeout(now);
        }
    }
    (client_open, server_open)
}

#[test]
fn a_handshake_split_across_shards_of_one_identity_opens_a_session() {
    let identity = Some([0x5a; 64]);
    assert_eq!(
        shard(0, identity).server_peer_id(),
        shard(1, identity).server_peer_id(),
        "one peer id for the whole server"
    );
    assert_eq!(
        shard(0, identity).client_peer_ids(),
        shard(1, identity).client_peer_ids(),
        "one static-key identity (the server's peer id as a group member)"
    );
    assert_eq!(
        handshake_across_shards(identity, Target::Server),
        (true, true)
    );
    assert_eq!(
        handshake_across_shards(identity, Target::Peer),
        (true, true)
    );
}

#[test]
fn without_a_shared_identity_the_second_shard_refuses_the_first_shards_cookie() {
    // What the shared identity fixes: each shard alone mints cookies only it accepts.
    assert_ne!(
        shard(0, None).server_peer_id(),
        shard(1, None).server_peer_id()
    );
    assert_eq!(
        handshake_across_shards(None, Target::Server),
        (false, false)
    );
}
