//! A handshake flood from spoofed addresses, in memory: a million session-id-0 datagrams,
//! valid IHellos and junk, against one server endpoint on a virtual clock. The server
//! keeps no per-source state before a valid cookie, answers junk with nothing, sends no
//! address more than `amplification_limit` times what it got from it, answers no more
//! RHellos than `max_handshakes_per_sec` allows, and a real client still gets through.
//!
//! 1,000,000 datagrams in release (CI runs `cargo nextest run --release`), 100,000 in a
//! debug build. docs/hardening.md has the numbers.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use rtmfp_edge::proto::chunk::Chunk;
use rtmfp_edge::proto::cipher::PacketCipher;
use rtmfp_edge::proto::endpoint::{
    EndpointConfig, Event, DEFAULT_AMPLIFICATION_LIMIT, DEFAULT_MAX_HANDSHAKES_PER_SEC,
    IHELLO_MIN_DATAGRAM,
};
use rtmfp_edge::proto::epd::{EndpointDiscriminator, PeerId};
use rtmfp_edge::proto::packet::{scramble_session_id, Mode, PacketHeader};
use rtmfp_edge::proto::{DropReason, Endpoint, Instant};

const SERVER: &str = "10.0.0.1:1935";
const CLIENT: &str = "192.0.2.7:50000";
const URI: &str = "rtmfp://10.0.0.1/live";

/// A startup-key datagram with session id 0 carrying `chunks`, no padding of ours.
fn startup_datagram(chunks: &[Chunk<'_>]) -> Vec<u8> {
    let mut packet = Vec::new();
    let mut header = PacketHeader::new(Mode::Startup);
    header.timestamp = Some(0);
    header.emit(&mut packet);
    for c in chunks {
        c.emit(&mut packet);
    }
    let mut payload = vec![0u8; 4];
    PacketCipher::startup().seal(&packet, &mut payload);
    scramble_session_id(&mut payload, 0);
    payload
}

/// What librtmfp sends (tests/vectors.rs, librtmfp2mona): an EPD naming only the app.
fn librtmfp_ihello() -> Vec<u8> {
    let epd = EndpointDiscriminator {
        ancillary_data: Some(b"live".to_vec()),
        ..Default::default()
    };
    startup_datagram(&[Chunk::IHello {
        epd: &epd.encode(),
        tag: &[7; 16],
    }])
}

/// The IHello our own client sends first.
fn our_ihello(seed: u8) -> Vec<u8> {
    let mut client = Endpoint::new(EndpointConfig::default(), [seed; 32]);
    client.connect(
        Instant::from_micros(0),
        SERVER.parse().unwrap(),
        EndpointDiscriminator::for_uri(URI),
    );
    client
        .poll_transmit(Instant::from_micros(0))
        .expect("an IHello")
        .payload
}

fn answers(server: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, usize)> {
    std::iter::from_fn(|| server.poll_transmit(now))
        .map(|t| (t.destination, t.payload.len()))
        .collect()
}

fn spoofed(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 | (i % 50_000));
    SocketAddr::V4(SocketAddrV4::new(ip, 1024 + (i % 7) as u16))
}

#[test]
fn our_client_pads_its_ihello_to_three_times_under_our_rhello() {
    let ihello = our_ihello(2);
    assert!(ihello.len() >= IHELLO_MIN_DATAGRAM, "{}", ihello.len());
    let mut server = Endpoint::new(
        EndpointConfig {
            amplification_limit: 3,
            ..EndpointConfig::server()
        },
        [1; 32],
    );
    let now = Instant::from_micros(1_000_000);
    server.handle(now, CLIENT.parse().unwrap(), &ihello);
    let sent = answers(&mut server, now);
    assert_eq!(sent.len(), 1, "answered at QUIC's 3×");
    let rhello = sent[0].1;
    println!(
        "our IHello {} bytes, RHello {rhello} bytes ({:.2}×)",
        ihello.len(),
        rhello as f64 / ihello.len() as f64
    );
    assert!(rhello <= 3 * ihello.len());
}

#[test]
fn librtmfp_ihello_is_answered_by_default_and_refused_at_three() {
    let ihello = librtmfp_ihello();
    assert_eq!(ihello.len(), 36, "as captured from librtmfp");
    let from: SocketAddr = CLIENT.parse().unwrap();
    let now = Instant::from_micros(1_000_000);
    let mut server = Endpoint::new(EndpointConfig::server(), [1; 32]);
    server.handle(now, from, &ihello);
    let sent = answers(&mut server, now);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1 <= DEFAULT_AMPLIFICATION_LIMIT as usize * ihello.len());
    println!("librtmfp IHello 36 bytes, RHello {} bytes", sent[0].1);

    let mut strict = Endpoint::new(
        EndpointConfig {
            amplification_limit: 3,
            ..EndpointConfig::server()
        },
        [1; 32],
    );
    strict.handle(now, from, &ihello);
    assert!(answers(&mut strict, now).is_empty());
    assert_eq!(strict.drops().get(&DropReason::Amplification), Some(&1));
    assert_eq!(strict.counters().cookies_sent, 0);

    let mut off = Endpoint::new(
        EndpointConfig {
            amplification_limit: 0,
            ..EndpointConfig::server()
        },
        [1; 32],
    );
    off.handle(now, from, &ihello);
    assert_eq!(answers(&mut off, now).len(), 1, "0 turns the bound off");
}

#[test]
fn many_ihellos_in_one_datagram_share_one_budget() {
    // Twenty IHello chunks in one datagram would each draw an RHello: the bound is on
    // the datagram, not the chunk.
    let epd = EndpointDiscriminator::for_uri(URI).encode();
    let tags: Vec<[u8; 16]> = (0..20u8).map(|i| [i; 16]).collect();
    let chunks: Vec<Chunk<'_>> = tags
        .iter()
        .map(|tag| Chunk::IHello { epd: &epd, tag })
        .collect();
    let datagram = startup_datagram(&chunks);
    let mut server = Endpoint::new(
        EndpointConfig {
            amplification_limit: 3,
            ..EndpointConfig::server()
        },
        [1; 32],
    );
    let now = Instant::from_micros(1_000_000);
    server.handle(now, CLIENT.parse().unwrap(), &datagram);
    let sent: usize = answers(&mut server, now).iter().map(|(_, n)| n).sum();
    assert!(sent > 0);
    assert!(
        sent <= 3 * datagram.len(),
        "{sent} bytes for {}",
        datagram.len()
    );
    assert!(server.drops().get(&DropReason::Amplification).copied() > Some(0));
}

#[test]
fn handshake_flood_from_spoofed_sources() {
    let total: u32 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    // One datagram every 40 µs: 25,000 datagrams a second of virtual time, 15,625 of
    // them IHellos we would answer, over the 10,000 a second the server is allowed.
    let step = Duration::from_micros(40);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let client_addr: SocketAddr = CLIENT.parse().unwrap();
    let mut server = Endpoint::new(EndpointConfig::server(), [1; 32]);
    let rate = u64::from(DEFAULT_MAX_HANDSHAKES_PER_SEC);
    let limit = DEFAULT_AMPLIFICATION_LIMIT as u64;

    let valid: Vec<Vec<u8>> = (10..42).map(our_ihello).collect();
    let short = librtmfp_ihello();
    // Junk that passes the startup checksum: an IHello for a peer nobody has, an IIKeying
    // with a forged cookie, a chunk type no one knows.
    let unknown_peer = startup_datagram(&[Chunk::IHello {
        epd: &EndpointDiscriminator::for_peer(PeerId([5; 32])).encode(),
        tag: &[1; 16],
    }]);
    let forged_cookie = startup_datagram(&[Chunk::IIKeying {
        initiator_session_id: 77,
        cookie: &[0xab; 64],
        certificate: &[0x02, 0x1d, 0x02],
        keying_component: &[0x02, 0x1d, 0x02],
        signature: b"X",
    }]);
    let unknown_chunk = startup_datagram(&[Chunk::Unknown {
        kind: 0x5a,
        body: &[1, 2, 3],
    }]);

    let mut received: HashMap<SocketAddr, u64> = HashMap::new();
    let mut sent: HashMap<SocketAddr, u64> = HashMap::new();
    let mut rhellos = 0u64;
    let mut junk_sent = 0u64;
    let mut client: Option<(Endpoint, u32)> = None;
    let mut client_opened_at = None;
    let mut junk = vec![0u8; 1500];
    let started = std::time::Instant::now();
    let mut now = Instant::from_micros(1_000_000);

    for i in 0..total {
        now = Instant::from_micros(now.as_micros() + step.as_micros() as u64);
        let from = spoofed(i);
        let kind = i % 8;
        let datagram: &[u8] = match kind {
            0..=3 => &valid[(i as usize / 8) % valid.len()],
            4 => &short,
            5 => {
                // Random bytes behind session id 0.
                let len = rng.gen_range(0..1300);
                rng.fill_bytes(&mut junk[..len]);
                if len >= 12 {
                    scramble_session_id(&mut junk[..len], 0);
                }
                &junk[..len]
            }
            6 => &unknown_peer,
            7 if i % 16 == 7 => &forged_cookie,
            _ => &unknown_chunk,
        };
        *received.entry(from).or_default() += datagram.len() as u64;
        server.handle(now, from, datagram);
        for (to, len) in answers(&mut server, now) {
            assert_eq!(to, from, "an answer goes only to who asked");
            if kind >= 5 {
                junk_sent += 1;
            } else {
                rhellos += 1;
            }
            *sent.entry(to).or_default() += len as u64;
        }
        // Nothing per source before a valid cookie: only the real client's session and
        // the RIKeying kept for its retransmitted IIKeying (3 entries), once it is in.
        let real = if server.session_ids().is_empty() {
            0
        } else {
            3
        };
        assert_eq!(
            server.per_peer_state_len(),
            real,
            "no per-source state before a valid cookie"
        );

        // Halfway through, a real client starts its handshake and runs alongside.
        if i == total / 2 {
            let mut c = Endpoint::new(EndpointConfig::default(), [3; 32]);
            let sid = c.connect(now, server_addr, EndpointDiscriminator::for_uri(URI));
            client = Some((c, sid));
        }
        if let Some((c, _)) = client.as_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            while let Some(t) = c.poll_transmit(now) {
                server.handle(now, client_addr, &t.payload);
                while let Some(back) = server.poll_transmit(now) {
                    assert_eq!(back.destination, client_addr);
                    c.handle(now, server_addr, &back.payload);
                }
            }
            while let Some(e) = c.poll_event() {
                if let Event::SessionOpened { .. } = e {
                    client_opened_at.get_or_insert(i);
                }
                if let Event::HandshakeFailed { failure, .. } = e {
                    panic!("the real client's handshake failed: {failure:?}");
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let virtual_secs = total as f64 * step.as_secs_f64();

    assert_eq!(junk_sent, 0, "junk gets no answer at all");
    let mut worst = 0f64;
    for (addr, out) in &sent {
        let inb = received[addr];
        assert!(
            *out <= limit * inb,
            "{addr}: sent {out} bytes for {inb} received"
        );
        worst = worst.max(*out as f64 / inb as f64);
    }
    // A full bucket at the start, then `rate` a second.
    let cap = rate + (virtual_secs * rate as f64) as u64;
    assert!(rhellos <= cap, "{rhellos} RHellos, cap {cap}");
    assert!(
        rhellos >= cap * 9 / 10,
        "valid IHellos outnumber the cap: it should be nearly reached ({rhellos} of {cap})"
    );
    let drops = server.drops();
    assert!(drops.get(&DropReason::HandshakeRate).copied() > Some(0));
    let opened_at = client_opened_at.expect("the real client got through the flood");
    assert_eq!(
        server.session_ids().len(),
        1,
        "only the real client's session"
    );

    let total_in: u64 = received.values().sum();
    let total_out: u64 = sent.values().sum();
    println!(
        "{total} datagrams in {:.2} s ({:.0} datagrams/s), {:.1} s virtual; \
         {rhellos} RHellos (cap {cap}); bytes out/in {:.3} overall, worst source {worst:.2}; \
         client opened after {} more datagrams; drops {drops:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        virtual_secs,
        total_out as f64 / total_in as f64,
        opened_at - total / 2,
    );
}
