//! Property tests for multi-buffer CBC: whatever the mix of lane counts, lengths and keys,
//! every backend the CPU runs produces exactly what single-stream CBC produces per lane.

use aes::cipher::{generic_array::GenericArray, KeyInit};
use aes::Aes128;
use proptest::collection::vec;
use proptest::prelude::*;

use rtmfp_edge::engine::multi_cbc::{
    encrypt_lanes, encrypt_lanes_with, Backend, CbcLane, ExpandedKey,
};
use rtmfp_edge::proto::cipher::cbc_encrypt_in_place;

/// One lane: its key, its length in blocks (a 1200-byte packet is 75), and its bytes' seed.
fn lane() -> impl Strategy<Value = ([u8; 16], usize, u64)> {
    (any::<[u8; 16]>(), 0usize..=75, any::<u64>())
}

fn plaintext(blocks: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..blocks * 16)
        .map(|_| {
            // xorshift64: cheap bytes, so proptest spends its time on shapes, not bytes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn encrypt(run: impl Fn(&mut [CbcLane<'_>]), keys: &[ExpandedKey], bufs: &mut [Vec<u8>]) {
    let mut lanes: Vec<CbcLane<'_>> = keys
        .iter()
        .zip(bufs.iter_mut())
        .map(|(key, buf)| CbcLane { key, buf })
        .collect();
    run(&mut lanes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_backend_equals_single_stream_cbc(lanes in vec(lane(), 1..=40)) {
        let plain: Vec<Vec<u8>> = lanes.iter().map(|&(_, b, seed)| plaintext(b, seed)).collect();
        let mut want = plain.clone();
        for ((key, _, _), buf) in lanes.iter().zip(want.iter_mut()) {
            cbc_encrypt_in_place(&Aes128::new(GenericArray::from_slice(key)), buf);
        }
        let keys: Vec<ExpandedKey> = lanes.iter().map(|(k, _, _)| ExpandedKey::new(k)).collect();

        for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let mut got = plain.clone();
            encrypt(|l| encrypt_lanes_with(backend, l), &keys, &mut got);
            prop_assert_eq!(&got, &want, "backend {}", backend.name());
        }
        let mut got = plain.clone();
        encrypt(encrypt_lanes, &keys, &mut got);
        prop_assert_eq!(&got, &want, "detected backend");
    }
}
