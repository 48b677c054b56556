//! The SPSC ring across two real threads: order and identity survive the handoff.
//!
//! Meant for `--release`; in a debug build the 10 million items take a while.

use std::hint::spin_loop;
use std::thread;

use bytes::Bytes;
use rtmfp_edge::engine::ring::ring;

const SEQUENCE: u64 = 10_000_000;

/// Waits a little for the other side: spin first, then give the core away, since the test
/// harness may run other tests on the same two cores.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        spin_loop();
    } else {
        thread::yield_now();
    }
}

#[test]
fn ten_million_sequence_numbers_arrive_in_order() {
    let (mut tx, mut rx) = ring::<u64>(1024);
    let producer = thread::spawn(move || {
        for mut seq in 0..SEQUENCE {
            let mut spins = 0;
            while let Err(back) = tx.push(seq) {
                seq = back;
                backoff(&mut spins);
            }
        }
    });
    let mut expected = 0;
    let mut spins = 0;
    while expected < SEQUENCE {
        match rx.pop() {
            Some(seq) => {
                assert_eq!(seq, expected);
                expected += 1;
                spins = 0;
            }
            None => backoff(&mut spins),
        }
    }
    producer.join().unwrap();
    assert_eq!(rx.pop(), None);
}

#[test]
fn ten_million_sequence_numbers_arrive_in_order_in_batches() {
    let (mut tx, mut rx) = ring::<u64>(1024);
    let producer = thread::spawn(move || {
        let mut batch = Vec::with_capacity(32);
        let mut next = 0;
        let mut spins = 0;
        while next < SEQUENCE || !batch.is_empty() {
            // Uneven batch sizes so batches straddle the end of the slots.
            let want = 1 + (next % 37) as usize;
            while batch.len() < want && next < SEQUENCE {
                batch.push(next);
                next += 1;
            }
            if tx.push_batch(&mut batch) == 0 {
                backoff(&mut spins);
            } else {
                spins = 0;
            }
        }
    });
    let mut out = Vec::with_capacity(32);
    let mut expected = 0;
    let mut spins = 0;
    while expected < SEQUENCE {
        out.clear();
        if rx.pop_batch(&mut out, 32) == 0 {
            backoff(&mut spins);
            continue;
        }
        spins = 0;
        for &seq in &out {
            assert_eq!(seq, expected);
            expected += 1;
        }
    }
    producer.join().unwrap();
    assert!(rx.is_empty());
}

#[test]
fn bytes_handles_cross_without_copying_the_payload() {
    const HANDLES: usize = 1_000_000;
    let payload = Bytes::from((0..=255u8).cycle().take(1200).collect::<Vec<u8>>());
    let base = payload.as_ptr() as usize;
    let (mut tx, mut rx) = ring::<(usize, Bytes)>(256);
    let source = payload.clone();
    let producer = thread::spawn(move || {
        for i in 0..HANDLES {
            // A different sub-slice each time: the handle, not the bytes, carries identity.
            let offset = i % 1000;
            let mut item = (i, source.slice(offset..offset + 200));
            let mut spins = 0;
            while let Err(back) = tx.push(item) {
                item = back;
                backoff(&mut spins);
            }
        }
    });
    let mut received = 0;
    let mut spins = 0;
    while received < HANDLES {
        let Some((i, handle)) = rx.pop() else {
            backoff(&mut spins);
            continue;
        };
        spins = 0;
        assert_eq!(i, received, "handles out of order");
        let offset = i % 1000;
        assert_eq!(
            handle.as_ptr() as usize,
            base + offset,
            "payload was copied"
        );
        assert_eq!(handle.len(), 200);
        assert_eq!(handle[0], offset as u8);
        received += 1;
    }
    producer.join().unwrap();
    drop(rx);
    // Every clone that crossed (and the producer's source) has been dropped: the refcount is
    // back to one, so no handle leaked or was dropped twice along the way.
    assert!(payload.is_unique());
}
