//! Packet-path micro-benchmarks: what one ~1200-byte session datagram costs to build and
//! seal, and to open and decode, next to the bare AES-128-CBC it is built on.
//!
//! Every benchmark counts one packet per iteration (`Throughput::Elements(1)`), so criterion
//! prints packets/s. Compare each against `aes_cbc_raw_1200` (or `aes_cbc_raw_decrypt_1200`
//! for the receive side) from the same run: the ratio is what the codec, the checksum or
//! HMAC, and the copies add on top of the unavoidable cipher work.
//!
//! `fanout_drain` measures the endpoint's output path: N sessions each with one message
//! queued, drained through `poll_transmit`; throughput in datagrams. `fanout_batch` does
//! the same through `poll_transmit_batch` with the scalar and the multi-buffer cipher.
//!
//! Run: `cargo bench --bench packet -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes::cipher::{generic_array::GenericArray, KeyInit};
use aes::Aes128;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use rtmfp_edge::engine::batch_cipher::MultiBufferCipher;
use rtmfp_edge::proto::batch::{BatchCipher, ScalarBatchCipher, TransmitBatch};
use rtmfp_edge::proto::chunk::{Chunk, Fragmentation, PacketView, UserData};
use rtmfp_edge::proto::cipher::{
    cbc_decrypt_in_place, cbc_encrypt_in_place, PacketCipher, PacketProtection, BLOCK,
};
use rtmfp_edge::proto::dh::DhGroup;
use rtmfp_edge::proto::endpoint::{EndpointConfig, Event, Transmit};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
use rtmfp_edge::proto::packet::{scramble_session_id, unscramble_session_id, Mode, PacketHeader};
use rtmfp_edge::proto::Endpoint;

/// The datagram size we aim for: UDP payload of a full session packet.
const TARGET_DATAGRAM: usize = 1200;
/// Scrambled session id in front of the ciphertext (RFC 7016 §2.2.2).
const SESSION_ID_LEN: usize = 4;
/// Bytes a session-sequence-number VLU may take in these runs (values below 2^28).
const MAX_SEQ_VLU: usize = 4;
/// Distinct sealed datagrams the open benchmarks cycle through. With sequence numbers on,
/// the receiver's replay window refuses a datagram twice, so the receiver is reset each
/// time the ring wraps.
const RING: usize = 256;

const SESSION_ID: u32 = 0x5eed_1d00;
const KEY: [u8; 16] = *b"bench-session-k!";
const FLOW_ID: u64 = 3;
const SEQUENCE: u64 = 1_000;
const FSN_OFFSET: u64 = 4;

/// One benchmark case: the negotiated protection and the payload that makes its sealed
/// datagram as large as fits in `TARGET_DATAGRAM`.
struct Case {
    name: &'static str,
    protection: PacketProtection,
    payload: Vec<u8>,
}

impl Case {
    fn new(name: &'static str, protection: PacketProtection) -> Self {
        let hmac = protection.hmac_len.unwrap_or(0);
        // Ciphertext is whole AES blocks; leave room for the session id and the HMAC tag.
        let ciphertext = (TARGET_DATAGRAM - SESSION_ID_LEN - hmac) / BLOCK * BLOCK;
        // Inside the ciphertext: sequence number (reserve its widest form so the block
        // count never changes as it grows) or the 2-byte checksum, then the packet.
        let prefix = if protection.sequence_numbers {
            MAX_SEQ_VLU
        } else {
            0
        } + if protection.hmac_len.is_none() { 2 } else { 0 };
        let empty_packet = encode(&header(), &[], &mut Vec::new()).len();
        let payload_len = ciphertext - prefix - empty_packet;
        let payload = (0..payload_len).map(|i| (i * 31 + 7) as u8).collect();
        Case {
            name,
            protection,
            payload,
        }
    }

    fn sender(&self) -> PacketCipher {
        PacketCipher::new(&KEY, &KEY).with_protection(
            self.protection,
            b"hmac-key-a",
            self.protection,
            b"hmac-key-a",
        )
    }

    fn receiver(&self) -> PacketCipher {
        self.sender()
    }
}

fn header() -> PacketHeader {
    let mut h = PacketHeader::new(Mode::Initiator);
    h.timestamp = Some(0x1234);
    h
}

/// Header and one whole-message User Data chunk, as a session's send path lays them out.
fn encode<'o>(header: &PacketHeader, data: &[u8], out: &'o mut Vec<u8>) -> &'o [u8] {
    out.clear();
    header.emit(out);
    let chunk = Chunk::UserData {
        flow_id: FLOW_ID,
        sequence: SEQUENCE,
        fsn_offset: FSN_OFFSET,
        fragment: UserData {
            fragmentation: Fragmentation::Whole,
            abandon: false,
            final_fragment: false,
            options: None,
            data,
        },
    };
    let fits = chunk.emit(out);
    debug_assert!(fits);
    out
}

/// Encode, seal and scramble into `datagram` (cleared first); returns the datagram length.
fn seal_datagram(
    cipher: &mut PacketCipher,
    data: &[u8],
    plain: &mut Vec<u8>,
    datagram: &mut Vec<u8>,
) -> usize {
    encode(&header(), data, plain);
    datagram.clear();
    datagram.extend_from_slice(&[0; SESSION_ID_LEN]);
    cipher.seal(plain, datagram);
    scramble_session_id(datagram, SESSION_ID);
    datagram.len()
}

/// Unscramble, decrypt, parse the header and walk every chunk; returns user-data bytes seen.
fn open_datagram(cipher: &mut PacketCipher, datagram: &[u8], buf: &mut Vec<u8>) -> usize {
    let sid = unscramble_session_id(datagram).expect("datagram long enough");
    assert_eq!(sid, SESSION_ID);
    let range = cipher
        .open(&datagram[SESSION_ID_LEN..], buf)
        .expect("datagram opens");
    let view = PacketView::parse(&buf[range]).expect("header parses");
    let mut seen = 0;
    for chunk in view.chunks() {
        if let Chunk::UserData { fragment, .. } = chunk.expect("chunk parses") {
            seen += fragment.data.len();
        }
    }
    seen
}

/// Seals `RING` datagrams with consecutive session sequence numbers.
fn sealed_ring(case: &Case) -> Vec<Vec<u8>> {
    let mut sender = case.sender();
    let mut plain = Vec::new();
    (0..RING)
        .map(|_| {
            let mut d = Vec::new();
            seal_datagram(&mut sender, &case.payload, &mut plain, &mut d);
            d
        })
        .collect()
}

fn bench_packets(c: &mut Criterion) {
    let cases = [
        Case::new("1200", PacketProtection::default()),
        Case::new(
            "1200_hmac16_seq",
            PacketProtection {
                hmac_len: Some(16),
                sequence_numbers: true,
            },
        ),
    ];

    let mut group = c.benchmark_group("packet");
    group.throughput(Throughput::Elements(1));

    // Baselines: bare AES-128-CBC over the ciphertext size of the checksum case.
    let raw_len = (TARGET_DATAGRAM - SESSION_ID_LEN) / BLOCK * BLOCK;
    let aes = Aes128::new(GenericArray::from_slice(&KEY));
    let mut raw = vec![0xa5u8; raw_len];
    group.bench_function("aes_cbc_raw_1200", |b| {
        b.iter(|| {
            cbc_encrypt_in_place(&aes, black_box(&mut raw[..]));
        })
    });
    group.bench_function("aes_cbc_raw_decrypt_1200", |b| {
        b.iter(|| {
            cbc_decrypt_in_place(&aes, black_box(&mut raw[..]));
        })
    });

    for case in &cases {
        // Sanity: the sizes are what the names promise, and the round trip works.
        let ring = sealed_ring(case);
        let len = ring[0].len();
        assert!(
            len <= TARGET_DATAGRAM
                && len + BLOCK > TARGET_DATAGRAM - case.protection.hmac_len.unwrap_or(0)
        );
        let mut rx = case.receiver();
        assert_eq!(
            open_datagram(&mut rx, &ring[0], &mut Vec::new()),
            case.payload.len()
        );
        eprintln!(
            "case {}: datagram {} bytes, user data {} bytes, hmac {:?}, sequence numbers {}",
            case.name,
            len,
            case.payload.len(),
            case.protection.hmac_len,
            case.protection.sequence_numbers
        );

        let mut sender = case.sender();
        let mut plain = Vec::with_capacity(TARGET_DATAGRAM);
        let mut datagram = Vec::with_capacity(TARGET_DATAGRAM + 64);
        group.bench_function(format!("seal_{}", case.name), |b| {
            b.iter(|| {
                seal_datagram(
                    &mut sender,
                    black_box(&case.payload),
                    &mut plain,
                    &mut datagram,
                )
            })
        });

        let template = case.receiver();
        let mut buf = Vec::with_capacity(TARGET_DATAGRAM + 64);
        group.bench_function(format!("open_{}", case.name), |b| {
            // One packet per iteration, cycling through the ring. A fresh receiver per ring
            // pass keeps the sequence numbers new to its replay window; that clone is
            // timed but amortised over RING packets.
            b.iter_custom(|iters| {
                let mut rx = template.clone();
                let mut seen = 0;
                let start = Instant::now();
                for i in 0..iters as usize {
                    let k = i % RING;
                    if k == 0 && i != 0 {
                        rx = template.clone();
                    }
                    seen += open_datagram(&mut rx, black_box(&ring[k]), &mut buf);
                }
                let elapsed = start.elapsed();
                black_box(seen);
                elapsed
            })
        });
    }
    group.finish();
}

/// A server endpoint with `n` open sessions (all from one client endpoint, so the setup
/// pays one static key pair), each with one sending flow, and the client that acks them.
struct FanOut {
    now: rtmfp_edge::proto::Instant,
    server: Endpoint,
    client: Endpoint,
    /// (server session, its flow), in opening order.
    flows: Vec<(u32, u64)>,
}

const SERVER_ADDR: &str = "10.0.0.1:1935";
const CLIENT_ADDR: &str = "10.0.0.2:50000";

impl FanOut {
    fn new(n: usize) -> Self {
        // Group 2 only: the setup runs thousands of handshakes, not what is measured.
        let config = |base: EndpointConfig| EndpointConfig {
            groups: vec![DhGroup::Modp1024],
            ..base
        };
        let mut w = FanOut {
            now: rtmfp_edge::proto::Instant::from_micros(1_000_000),
            server: Endpoint::new(config(EndpointConfig::server()), [1; 32]),
            client: Endpoint::new(config(EndpointConfig::default()), [2; 32]),
            flows: Vec::new(),
        };
        let server: SocketAddr = SERVER_ADDR.parse().unwrap();
        let epd = EndpointDiscriminator::for_uri("rtmfp://10.0.0.1/live");
        // A few hundred handshakes in flight at a time keeps the cookie jar happy.
        let mut opened = Vec::new();
        for start in (0..n).step_by(256) {
            for _ in start..(start + 256).min(n) {
                w.client.connect(w.now, server, epd.clone());
            }
            w.exchange();
            while let Some(e) = w.server.poll_event() {
                if let Event::SessionOpened { session, .. } = e {
                    opened.push(session);
                }
            }
            while w.client.poll_event().is_some() {}
        }
        assert_eq!(opened.len(), n, "every handshake completes");
        for sid in opened {
            let s = w.server.session_mut(sid).unwrap();
            let flow = s.open_flow(b"media".to_vec(), None);
            w.flows.push((sid, flow));
        }
        w
    }

    /// Moves datagrams both ways until both endpoints are quiet.
    fn exchange(&mut self) {
        let server: SocketAddr = SERVER_ADDR.parse().unwrap();
        let client: SocketAddr = CLIENT_ADDR.parse().unwrap();
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(self.now) {
                self.server.handle(self.now, client, &t.payload);
                moved = true;
            }
            while let Some(t) = self.server.poll_transmit(self.now) {
                self.client.handle(self.now, server, &t.payload);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// Queues one message on every session's flow.
    fn queue_one_each(&mut self, message: &[u8]) {
        for &(sid, flow) in &self.flows {
            let s = self.server.session_mut(sid).unwrap();
            assert!(s.send(flow, message, None));
        }
    }

    /// Lets the client see `sent` and ack it (after its delayed-ack timer), so windows
    /// stay open for the next round.
    fn deliver_and_ack(&mut self, sent: &mut Vec<Transmit>) {
        let server: SocketAddr = SERVER_ADDR.parse().unwrap();
        for t in sent.drain(..) {
            self.client.handle(self.now, server, &t.payload);
        }
        self.now = self.now + Duration::from_millis(250);
        self.client.handle_timeout(self.now);
        self.exchange();
        self.server.handle_timeout(self.now);
        self.exchange();
        while self.server.poll_event().is_some() {}
        while self.client.poll_event().is_some() {}
    }
}

/// The output path at fan-out scale: `n` sessions each with one message queued, drained
/// through `Endpoint::poll_transmit`. Throughput is in datagrams.
fn bench_fanout_drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_drain");
    group.sample_size(10);
    let message = vec![0x5au8; 1000];
    for n in [1_000usize, 10_000] {
        let mut w = FanOut::new(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("poll_transmit_{n}_sessions"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut sent = Vec::with_capacity(n);
                for _ in 0..iters {
                    w.queue_one_each(&message);
                    let start = Instant::now();
                    while let Some(t) = w.server.poll_transmit(w.now) {
                        sent.push(t);
                    }
                    total += start.elapsed();
                    assert_eq!(sent.len(), n, "one datagram a session");
                    w.deliver_and_ack(&mut sent);
                }
                total
            })
        });
    }
    group.finish();
}

/// Build and encrypt an `n`-session fan-out through `poll_transmit_batch` (64-slot
/// batches), with the scalar batch cipher and with the engine's multi-buffer one.
fn bench_fanout_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_batch");
    group.sample_size(10);
    let message = vec![0x5au8; 1000];
    let n = 1_000usize;
    let mut w = FanOut::new(n);
    group.throughput(Throughput::Elements(n as u64));
    type MakeCipher = fn() -> Box<dyn BatchCipher + Send>;
    let ciphers: [(&str, MakeCipher); 2] = [
        ("scalar", || Box::new(ScalarBatchCipher)),
        ("multi_buffer", || Box::new(MultiBufferCipher::new())),
    ];
    for (name, cipher) in ciphers {
        w.server.set_batch_cipher(cipher());
        let mut batch = TransmitBatch::new(64);
        group.bench_function(format!("{name}_{n}_sessions"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut sent = Vec::with_capacity(n);
                for _ in 0..iters {
                    w.queue_one_each(&message);
                    let start = Instant::now();
                    loop {
                        batch.clear();
                        if w.server.poll_transmit_batch(w.now, &mut batch) == 0 {
                            break;
                        }
                        sent.extend(batch.iter().map(|(destination, p)| Transmit {
                            destination,
                            payload: p.to_vec(),
                        }));
                    }
                    total += start.elapsed();
                    assert_eq!(sent.len(), n, "one datagram a session");
                    w.deliver_and_ack(&mut sent);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_packets,
    bench_fanout_drain,
    bench_fanout_batch
);
criterion_main!(benches);
