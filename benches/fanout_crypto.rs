//! Fan-out encryption: one 1200-byte packet sealed for each of 64 sessions, each under its
//! own key. The baseline runs single-stream CBC session after session; `encrypt_lanes`
//! runs the sessions in lock-step through each backend this CPU has.
//!
//! Every benchmark counts `SESSIONS` packets per iteration, so criterion prints packets/s;
//! compare each backend with `single_stream` from the same run.
//!
//! Run: `cargo bench --bench fanout_crypto -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use aes::cipher::{generic_array::GenericArray, KeyInit};
use aes::Aes128;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use rtmfp_edge::engine::multi_cbc::{backend, encrypt_lanes_with, Backend, CbcLane, ExpandedKey};
use rtmfp_edge::proto::cipher::cbc_encrypt_in_place;

const SESSIONS: usize = 64;
/// Ciphertext of a full session datagram: whole blocks, as the Flash profile pads.
const PACKET: usize = 1200;

fn key(session: usize) -> [u8; 16] {
    let mut k = *b"fanout-session-k";
    k[..8].copy_from_slice(&(session as u64 * 0x9e37_79b9_7f4a_7c15).to_le_bytes());
    k
}

fn bench_fanout(c: &mut Criterion) {
    let ciphers: Vec<Aes128> = (0..SESSIONS)
        .map(|s| Aes128::new(GenericArray::from_slice(&key(s))))
        .collect();
    let keys: Vec<ExpandedKey> = (0..SESSIONS).map(|s| ExpandedKey::new(&key(s))).collect();
    let plain: Vec<u8> = (0..PACKET).map(|i| (i * 31 + 7) as u8).collect();
    let mut bufs = vec![plain.clone(); SESSIONS];
    eprintln!("encrypt_lanes picks {} here", backend());

    let mut group = c.benchmark_group("fanout_64x1200");
    group.throughput(Throughput::Elements(SESSIONS as u64));

    group.bench_function("single_stream", |b| {
        b.iter(|| {
            for (cipher, buf) in ciphers.iter().zip(bufs.iter_mut()) {
                cbc_encrypt_in_place(cipher, black_box(&mut buf[..]));
            }
        })
    });

    for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        // Sanity: the backend agrees with the baseline before it is timed.
        let mut want = vec![plain.clone(); SESSIONS];
        for (cipher, buf) in ciphers.iter().zip(want.iter_mut()) {
            cbc_encrypt_in_place(cipher, buf);
        }
        let mut got = vec![plain.clone(); SESSIONS];
        let mut lanes: Vec<CbcLane<'_>> = keys
            .iter()
            .zip(got.iter_mut())
            .map(|(key, buf)| CbcLane { key, buf })
            .collect();
        encrypt_lanes_with(backend, &mut lanes);
        assert!(
            got == want,
            "{} disagrees with single-stream CBC",
            backend.name()
        );

        // The engine keeps its lane list between packets; so does the benchmark.
        let mut lanes: Vec<CbcLane<'_>> = keys
            .iter()
            .zip(bufs.iter_mut())
            .map(|(key, buf)| CbcLane { key, buf })
            .collect();
        group.bench_function(backend.name(), |b| {
            b.iter(|| encrypt_lanes_with(backend, black_box(&mut lanes)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fanout);
criterion_main!(benches);
