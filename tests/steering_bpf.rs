//! The reuseport steering program on real sockets: a reuseport group on loopback, the
//! program attached, datagrams from a client, and a check of which socket each one
//! reached and what the program counted.
//!
//! These tests need root (or CAP_BPF + CAP_NET_ADMIN) and a crate built with clang
//! present; on a machine without them they fail with the reason, they do not skip:
//! scripts/setup installs clang and CI runs as root.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rtmfp_edge::engine::steering::{owner_shard, ReuseportSteering, SteeringCounters};
use rtmfp_edge::proto::packet::unscramble_session_id;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// RTMFP stacks keep datagrams to about 1200 bytes so they fit the path MTU.
const LARGEST: usize = 1232;

/// A datagram as a client would build it (RFC 7016 §2.2.2), written here independently of
/// the crate's own scrambler: the first word is the session id XOR the next two words.
fn encode(session_id: u32, word1: u32, word2: u32, len: usize, rng: &mut impl Rng) -> Vec<u8> {
    assert!(len >= 12);
    let mut d = vec![0u8; len];
    rng.fill(&mut d[12..]);
    d[0..4].copy_from_slice(&(session_id ^ word1 ^ word2).to_be_bytes());
    d[4..8].copy_from_slice(&word1.to_be_bytes());
    d[8..12].copy_from_slice(&word2.to_be_bytes());
    d
}

/// A session datagram for a session owned by `shard`, of a realistic size.
fn session_datagram(shard: u8, rng: &mut impl Rng) -> Vec<u8> {
    let id = (u32::from(shard) << 24) | rng.gen_range(1..=0x00ff_ffff);
    let len = rng.gen_range(32..=LARGEST);
    encode(id, rng.gen(), rng.gen(), len, rng)
}

/// A session datagram of 12 to 20 bytes. These pin what `ctx->len` counts: the program
/// takes it to include the 8-byte UDP header, and were that wrong it would call these
/// short instead of steering them.
fn tiny_session_datagram(shard: u8, rng: &mut impl Rng) -> Vec<u8> {
    let id = (u32::from(shard) << 24) | rng.gen_range(1..=0x00ff_ffff);
    let len = rng.gen_range(12..=20);
    encode(id, rng.gen(), rng.gen(), len, rng)
}

/// A handshake datagram (session id 0), IHello-sized.
fn handshake_datagram(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.gen_range(40..=120);
    encode(0, rng.gen(), rng.gen(), len, rng)
}

/// Too short to carry a scrambled session id.
fn short_datagram(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.gen_range(0..12);
    (0..len).map(|_| rng.gen()).collect()
}

fn seeded_rng(test: &str) -> ChaCha8Rng {
    let seed: u64 = match std::env::var("STEERING_SEED") {
        Ok(s) => s.parse().expect("STEERING_SEED is a u64"),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: STEERING_SEED={seed}");
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` UDP sockets with SO_REUSEPORT on one port of a loopback address of their own.
///
/// The address is random in 127/8 (all of it is loopback on Linux) because a port-0 bind
/// with SO_REUSEPORT may join another test's group on the same address and owner, which
/// would mix two tests' sockets in one group.
fn reuseport_group(n: usize) -> (Vec<UdpSocket>, SocketAddr) {
    let ip = Ipv4Addr::new(
        127,
        rand::random::<u8>().max(2),
        rand::random(),
        rand::random::<u8>().max(1),
    );
    let mut at = SocketAddr::V4(SocketAddrV4::new(ip, 0));
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("udp socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.bind(&at.into())
            .unwrap_or_else(|e| panic!("bind {at}: {e}"));
        let s: UdpSocket = s.into();
        at = s.local_addr().expect("local_addr");
        s.set_nonblocking(true).expect("non-blocking");
        sockets.push(s);
    }
    (sockets, at)
}

fn attach(sockets: &[UdpSocket]) -> ReuseportSteering {
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.as_fd()).collect();
    ReuseportSteering::attach(&fds).unwrap_or_else(|e| {
        panic!("steering must attach here (CI runs as root with clang from scripts/setup): {e}")
    })
}

/// Sends every datagram from one client socket and returns, for each one, the index of
/// the group socket it arrived on. Sends in small batches and drains between them, so no
/// receive buffer overflows: a datagram that does not arrive is a failure, not noise.
fn deliver(datagrams: &[Vec<u8>], sockets: &[UdpSocket], to: SocketAddr) -> Vec<usize> {
    const BATCH: usize = 32;
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    let mut arrived_on = vec![usize::MAX; datagrams.len()];
    // Payload -> indices sent with it and not yet received (short ones may repeat).
    let mut pending: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    for (start, batch) in datagrams
        .chunks(BATCH)
        .enumerate()
        .map(|(i, b)| (i * BATCH, b))
    {
        for (i, d) in batch.iter().enumerate() {
            pending.entry(d.clone()).or_default().push(start + i);
            let sent = client.send_to(d, to).expect("send_to");
            assert_eq!(sent, d.len());
        }
        let mut received = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while received < batch.len() {
            let mut any = false;
            for (shard, socket) in sockets.iter().enumerate() {
                loop {
                    match socket.recv_from(&mut buf) {
                        Ok((n, _)) => {
                            let index = pending
                                .get_mut(&buf[..n])
                                .and_then(Vec::pop)
                                .unwrap_or_else(|| {
                                    panic!("socket {shard} got a datagram nobody sent ({n} bytes)")
                                });
                            arrived_on[index] = shard;
                            received += 1;
                            any = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("recv on socket {shard}: {e}"),
                    }
                }
            }
            if !any {
                assert!(
                    Instant::now() < deadline,
                    "{} of a batch of {} datagrams never arrived on any socket",
                    batch.len() - received,
                    batch.len()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    arrived_on
}

fn steers_by_session_id(shards: usize, test: &str) {
    let mut rng = seeded_rng(test);
    let (sockets, at) = reuseport_group(shards);
    let steering = attach(&sockets);
    assert_eq!(steering.shards(), shards);
    assert_eq!(steering.counters(), SteeringCounters::default());

    let owners: Vec<u8> = (0..1000).map(|_| rng.gen_range(0..shards as u8)).collect();
    let datagrams: Vec<Vec<u8>> = owners
        .iter()
        .map(|&s| session_datagram(s, &mut rng))
        .collect();
    let arrived_on = deliver(&datagrams, &sockets, at);

    let mut per_socket = vec![0usize; shards];
    let mut misrouted = Vec::new();
    for (i, (&owner, &socket)) in owners.iter().zip(&arrived_on).enumerate() {
        per_socket[socket] += 1;
        if socket != usize::from(owner) {
            misrouted.push((i, owner, socket));
        }
    }
    eprintln!("{test}: datagrams per socket {per_socket:?}");
    assert!(
        misrouted.is_empty(),
        "{} of 1000 datagrams reached the wrong shard; first (index, owner, socket): {:?}",
        misrouted.len(),
        &misrouted[..misrouted.len().min(5)]
    );
    let expected: Vec<usize> = (0..shards)
        .map(|s| owners.iter().filter(|&&o| usize::from(o) == s).count())
        .collect();
    assert_eq!(per_socket, expected);
    assert_eq!(
        steering.counters(),
        SteeringCounters {
            steered: 1000,
            ..SteeringCounters::default()
        }
    );
}

/// Also pins the payload offset: the program reads the scrambled id 8 bytes past the
/// start of its data (the UDP header), and with random words any other offset would send
/// most datagrams to the wrong socket.
#[test]
fn two_shards_each_receive_exactly_their_own_sessions() {
    steers_by_session_id(2, "two_shards");
}

#[test]
fn four_shards_each_receive_exactly_their_own_sessions() {
    steers_by_session_id(4, "four_shards");
}

#[test]
fn handshakes_short_datagrams_and_unknown_shards_reach_some_socket_and_are_counted() {
    let mut rng = seeded_rng("unowned");
    let (sockets, at) = reuseport_group(4);
    let steering = attach(&sockets);

    let mut datagrams = Vec::new();
    datagrams.extend((0..200).map(|_| handshake_datagram(&mut rng)));
    datagrams.extend((0..100).map(|_| short_datagram(&mut rng)));
    // Top bytes 4..=255 name shards with no socket in the map.
    datagrams.extend((0..100).map(|_| session_datagram(rng.gen_range(4..=255), &mut rng)));

    // deliver() fails if any of them is lost.
    let arrived_on = deliver(&datagrams, &sockets, at);
    assert!(arrived_on.iter().all(|&s| s < sockets.len()));
    assert_eq!(
        steering.counters(),
        SteeringCounters {
            steered: 0,
            handshake: 200,
            short: 100,
            no_such_shard: 100
        }
    );
}

/// One rule, two implementations: for a mixed stream, what the BPF program did with each
/// datagram is what `owner_shard` says should happen to it.
#[test]
fn bpf_program_and_owner_shard_agree_on_a_mixed_stream() {
    const SHARDS: usize = 3;
    let mut rng = seeded_rng("agree");
    let (sockets, at) = reuseport_group(SHARDS);
    let steering = attach(&sockets);

    let datagrams: Vec<Vec<u8>> = (0..1000)
        .map(|_| match rng.gen_range(0..10) {
            0 => handshake_datagram(&mut rng),
            1 => short_datagram(&mut rng),
            2 => session_datagram(rng.gen(), &mut rng),
            3 => tiny_session_datagram(rng.gen_range(0..SHARDS as u8), &mut rng),
            _ => session_datagram(rng.gen_range(0..SHARDS as u8), &mut rng),
        })
        .collect();
    let arrived_on = deliver(&datagrams, &sockets, at);

    let mut expected = SteeringCounters::default();
    for (d, &socket) in datagrams.iter().zip(&arrived_on) {
        match owner_shard(d) {
            Some(owner) if usize::from(owner) < SHARDS => {
                assert_eq!(
                    socket,
                    usize::from(owner),
                    "owner_shard says {owner} for a {}-byte datagram",
                    d.len()
                );
                expected.steered += 1;
            }
            Some(_) => expected.no_such_shard += 1,
            None if d.len() < 12 => expected.short += 1,
            None => expected.handshake += 1,
        }
    }
    assert_eq!(steering.counters(), expected);
}

/// The control: without the program the kernel's 4-tuple hash puts one client's datagrams
/// on one socket whatever their session ids, so the checks above do catch a group that is
/// not steered.
#[test]
fn without_the_program_the_kernel_ignores_session_ids() {
    let mut rng = seeded_rng("control");
    let (sockets, at) = reuseport_group(4);
    let owners: Vec<u8> = (0..200).map(|i| (i % 4) as u8).collect();
    let datagrams: Vec<Vec<u8>> = owners
        .iter()
        .map(|&s| session_datagram(s, &mut rng))
        .collect();
    let arrived_on = deliver(&datagrams, &sockets, at);
    let misrouted = owners
        .iter()
        .zip(&arrived_on)
        .filter(|(&o, &s)| usize::from(o) != s)
        .count();
    assert!(
        misrouted >= 100,
        "only {misrouted} of 200 missed their owner without steering"
    );
}

proptest! {
    #[test]
    fn owner_shard_decodes_what_a_client_encoded(
        id: u32, word1: u32, word2: u32, len in 12usize..=LARGEST, seed: u64,
    ) {
        let d = encode(id, word1, word2, len, &mut ChaCha8Rng::seed_from_u64(seed));
        let expected = if id == 0 { None } else { Some((id >> 24) as u8) };
        prop_assert_eq!(owner_shard(&d), expected);
        prop_assert_eq!(unscramble_session_id(&d), Some(id));
    }

    #[test]
    fn datagrams_shorter_than_twelve_bytes_have_no_owner(d in prop::collection::vec(any::<u8>(), 0..12)) {
        prop_assert_eq!(owner_shard(&d), None);
    }
}
