//! FEC of the IP multicast stream (src/multicast/fec.rs): one block of 8 fragments of
//! about 1000 bytes with 2 repairs (`fec = "8+2"`).
//!
//! - `send/seal_8`: the baseline, the 8 fragment datagrams sealed without FEC;
//! - `send/seal_8_encode_2`: the same, and the block's 2 repair datagrams computed and
//!   sealed (what the sender does with FEC);
//! - `receive/open_8`: the baseline, the 8 fragment datagrams checked and taken;
//! - `receive/open_10_none_lost`: a member's intake with FEC when nothing is lost: the
//!   8 fragments and the 2 repairs checked and taken, nothing to rebuild;
//! - `receive/open_8_of_10_rebuild_2`: 6 fragments and 2 repairs checked and taken, the
//!   2 lost fragments rebuilt (the worst a block of 8+2 can be repaired from);
//! - `codec/encode` and `codec/decode_2`: the Reed-Solomon work alone.
//!
//! Every benchmark counts 8 fragments per iteration, so criterion prints fragments/s;
//! compare each with the baseline of its group from the same run.
//!
//! Run: `cargo bench --bench multicast_fec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use rtmfp_edge::multicast::datagram::{seal, MulticastKey, PayloadKind, Receiver};
use rtmfp_edge::multicast::fec::{FecDecoder, FecEncoder, FecScheme};
use rtmfp_edge::multicast::receiver::MulticastReceiver;
use rtmfp_edge::proto::Instant;

const K: usize = 8;
const R: usize = 2;
const TAG: [u8; 8] = [7; 8];

fn key() -> MulticastKey {
    MulticastKey {
        id: 1,
        secret: [0x42; 32],
    }
}

/// 8 fragment payloads of 990 to 1004 bytes (fragments differ in length).
fn fragments() -> Vec<Vec<u8>> {
    (0..K)
        .map(|i| (0..990 + 2 * i).map(|b| (b * 31 + i * 7) as u8).collect())
        .collect()
}

/// The block's datagrams as the sender seals them: 8 fragments, then 2 repairs.
fn block_datagrams(encoder: &mut FecEncoder, frags: &[Vec<u8>], out: &mut Vec<Vec<u8>>) {
    let k = key();
    let mut buf = Vec::with_capacity(1400);
    out.clear();
    for (i, f) in frags.iter().enumerate() {
        let sequence = 1 + i as u64;
        seal(&k, TAG, sequence, PayloadKind::Fragment, &[f], &mut buf);
        out.push(buf.clone());
        encoder.add(Instant::ZERO, sequence, &[f]);
    }
    let mut repairs = Vec::new();
    encoder.finish(&mut repairs);
    for (i, r) in repairs.iter().enumerate() {
        let sequence = 1 + (K + i) as u64;
        seal(&k, TAG, sequence, PayloadKind::Repair, &[r], &mut buf);
        out.push(buf.clone());
    }
}

fn bench_send(c: &mut Criterion) {
    let frags = fragments();
    let k = key();
    let mut group = c.benchmark_group("send");
    group.throughput(Throughput::Elements(K as u64));
    let mut buf = Vec::with_capacity(1400);
    group.bench_function("seal_8", |b| {
        b.iter(|| {
            for (i, f) in frags.iter().enumerate() {
                seal(&k, TAG, 1 + i as u64, PayloadKind::Fragment, &[f], &mut buf);
                black_box(&buf);
            }
        })
    });
    let scheme = FecScheme::new(K as u64, R as u64).unwrap();
    let mut encoder = FecEncoder::new(scheme);
    let mut out = Vec::new();
    group.bench_function("seal_8_encode_2", |b| {
        b.iter(|| {
            block_datagrams(&mut encoder, black_box(&frags), &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

/// Blocks sealed ahead for the receive benchmarks: a receiver takes each sequence once,
/// so the timed loops go through these and start a new receiver when they wrap (once
/// per `BLOCKS` blocks: its setup is a small share of the time).
const BLOCKS: usize = 256;

/// A block's 10 datagrams, and its 2 repair payloads.
type SealedBlock = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// `BLOCKS` consecutive blocks.
fn sealed_blocks(frags: &[Vec<u8>]) -> Vec<SealedBlock> {
    let scheme = FecScheme::new(K as u64, R as u64).unwrap();
    let mut encoder = FecEncoder::new(scheme);
    let k = key();
    let mut buf = Vec::with_capacity(1400);
    (0..BLOCKS)
        .map(|b| {
            let first = 1 + (b * (K + R)) as u64;
            let mut datagrams = Vec::new();
            for (i, f) in frags.iter().enumerate() {
                let sequence = first + i as u64;
                seal(&k, TAG, sequence, PayloadKind::Fragment, &[f], &mut buf);
                datagrams.push(buf.clone());
                encoder.add(Instant::ZERO, sequence, &[f]);
            }
            let mut repairs = Vec::new();
            encoder.finish(&mut repairs);
            for (i, r) in repairs.iter().enumerate() {
                let sequence = first + (K + i) as u64;
                seal(&k, TAG, sequence, PayloadKind::Repair, &[r], &mut buf);
                datagrams.push(buf.clone());
            }
            (datagrams, repairs)
        })
        .collect()
}

fn bench_receive(c: &mut Criterion) {
    let frags = fragments();
    let blocks = sealed_blocks(&frags);
    // Sanity: the repaired receive gives back the lost fragments before it is timed.
    let mut check = MulticastReceiver::default();
    check.add_key(key());
    for d in blocks[0].0.iter().skip(2) {
        check.handle(d).unwrap();
    }
    assert_eq!(check.repaired(), 2);
    let new_receiver = || {
        let mut r = Receiver::default();
        r.add_key(key());
        r
    };
    let new_intake = || {
        let mut r = MulticastReceiver::default();
        r.add_key(key());
        r
    };

    let mut group = c.benchmark_group("receive");
    group.throughput(Throughput::Elements(K as u64));
    group.bench_function("open_8", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut r = new_receiver();
            for i in 0..iters as usize {
                if i % BLOCKS == 0 {
                    r = new_receiver();
                }
                for d in &blocks[i % BLOCKS].0[..K] {
                    black_box(r.open(d).unwrap());
                }
            }
            start.elapsed()
        })
    });
    group.bench_function("open_10_none_lost", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut r = new_intake();
            for i in 0..iters as usize {
                if i % BLOCKS == 0 {
                    r = new_intake();
                }
                for d in &blocks[i % BLOCKS].0 {
                    r.handle(d).unwrap();
                }
                while let Some(f) = r.poll_fragment() {
                    black_box(f);
                }
            }
            start.elapsed()
        })
    });
    group.bench_function("open_8_of_10_rebuild_2", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut r = new_intake();
            for i in 0..iters as usize {
                if i % BLOCKS == 0 {
                    r = new_intake();
                }
                for d in &blocks[i % BLOCKS].0[2..] {
                    r.handle(d).unwrap();
                }
                while let Some(f) = r.poll_fragment() {
                    black_box(f);
                }
            }
            start.elapsed()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(K as u64));
    let scheme = FecScheme::new(K as u64, R as u64).unwrap();
    let mut encoder = FecEncoder::new(scheme);
    let mut repairs = Vec::new();
    group.bench_function("encode", |b| {
        b.iter(|| {
            for (i, f) in frags.iter().enumerate() {
                encoder.add(Instant::ZERO, 1 + i as u64, &[f]);
            }
            repairs.clear();
            encoder.finish(&mut repairs);
            black_box(&repairs);
        })
    });
    let payloads: Vec<Bytes> = frags.iter().map(|f| Bytes::from(f.clone())).collect();
    group.bench_function("decode_2", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut dec = FecDecoder::default();
            for i in 0..iters as usize {
                if i % BLOCKS == 0 {
                    dec = FecDecoder::default();
                }
                let first = 1 + ((i % BLOCKS) * (K + R)) as u64;
                for (j, f) in payloads.iter().enumerate().skip(2) {
                    dec.on_fragment(1, first + j as u64, f.clone());
                }
                for (j, r) in blocks[i % BLOCKS].1.iter().enumerate() {
                    dec.on_repair(1, first + (K + j) as u64, r).unwrap();
                }
                while let Some(f) = dec.poll_rebuilt() {
                    black_box(f);
                }
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_send, bench_receive);
criterion_main!(benches);
