//! Shard-to-shard handoff: one producer thread and one consumer thread move 1 million
//! `bytes::Bytes` handles (clones of one 1200-byte payload) through a 1024-slot queue.
//!
//! Compared, in the same run: our SPSC ring item by item and in batches of 32 (as a shard
//! drains per io_uring completion cycle), `crossbeam_channel::bounded`, and
//! `crossbeam_queue::ArrayQueue`. Criterion prints items/s; take ratios to
//! `crossbeam_channel` from one run. Each side spins (no parking) when the queue is full or
//! empty, except the channel, which parks as it would in use.
//!
//! The handles are cloned before the clock starts, so the timing is the queue's, not the
//! payload refcount's; the consumer still drops each handle, as a shard does once sent.
//! Both threads need a core each: on a 2-core machine anything else running skews it.
//!
//! Run: `cargo bench --bench shard_ring -- --warm-up-time 1 --measurement-time 5`

use std::hint::{black_box, spin_loop};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;

use rtmfp_edge::engine::ring::ring;

const ITEMS: usize = 1_000_000;
const CAPACITY: usize = 1024;
const BATCH: usize = 32;

/// Runs `produce` and `consume` on two threads released together; the time is from the
/// release until the consumer has taken the last item.
fn transfer<P, C>(handles: Vec<Bytes>, produce: P, consume: C) -> Duration
where
    P: FnOnce(Vec<Bytes>) -> Vec<Bytes> + Send,
    C: FnOnce() + Send,
{
    let start = Barrier::new(2);
    let (elapsed, emptied) = thread::scope(|s| {
        let producer = s.spawn(|| {
            start.wait();
            // Hand the emptied vector back so freeing it falls outside the timing.
            produce(handles)
        });
        start.wait();
        let t0 = Instant::now();
        consume();
        let elapsed = t0.elapsed();
        (elapsed, producer.join().unwrap())
    });
    drop(emptied);
    elapsed
}

/// Pushes every item, spinning while the queue is full; hands the emptied vector back.
fn push_spinning(
    mut items: Vec<Bytes>,
    mut push: impl FnMut(Bytes) -> Result<(), Bytes>,
) -> Vec<Bytes> {
    for mut h in items.drain(..) {
        while let Err(back) = push(h) {
            h = back;
            spin_loop();
        }
    }
    items
}

/// Takes `ITEMS` items, spinning while the queue is empty, and drops each.
fn pop_spinning(mut pop: impl FnMut() -> Option<Bytes>) {
    let mut taken = 0;
    while taken < ITEMS {
        match pop() {
            Some(h) => {
                black_box(h);
                taken += 1;
            }
            None => spin_loop(),
        }
    }
}

fn handles(payload: &Bytes) -> Vec<Bytes> {
    vec![payload.clone(); ITEMS]
}

fn bench_shard_ring(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x5au8; 1200]);
    let mut group = c.benchmark_group("shard_ring_1M_bytes");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.sample_size(20);

    group.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = crossbeam_channel::bounded::<Bytes>(CAPACITY);
                    transfer(
                        handles(&payload),
                        move |mut items| {
                            for h in items.drain(..) {
                                tx.send(h).unwrap();
                            }
                            items
                        },
                        move || {
                            for _ in 0..ITEMS {
                                black_box(rx.recv().unwrap());
                            }
                        },
                    )
                })
                .sum()
        })
    });

    group.bench_function("crossbeam_array_queue", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let queue = ArrayQueue::<Bytes>::new(CAPACITY);
                    let queue = &queue;
                    transfer(
                        handles(&payload),
                        move |items| push_spinning(items, |h| queue.push(h)),
                        move || pop_spinning(|| queue.pop()),
                    )
                })
                .sum()
        })
    });

    group.bench_function("ring", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (mut tx, mut rx) = ring::<Bytes>(CAPACITY);
                    transfer(
                        handles(&payload),
                        move |items| push_spinning(items, |h| tx.push(h)),
                        move || pop_spinning(|| rx.pop()),
                    )
                })
                .sum()
        })
    });

    group.bench_function("ring_batch32", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (mut tx, mut rx) = ring::<Bytes>(CAPACITY);
                    transfer(
                        handles(&payload),
                        move |mut items| {
                            let mut batch = Vec::with_capacity(BATCH);
                            let mut source = items.drain(..);
                            loop {
                                batch.extend(source.by_ref().take(BATCH - batch.len()));
                                if batch.is_empty() {
                                    break;
                                }
                                if tx.push_batch(&mut batch) == 0 {
                                    spin_loop();
                                }
                            }
                            drop(source);
                            items
                        },
                        move || {
                            let mut out = Vec::with_capacity(BATCH);
                            let mut taken = 0;
                            while taken < ITEMS {
                                let n = rx.pop_batch(&mut out, BATCH);
                                if n == 0 {
                                    spin_loop();
                                }
                                taken += n;
                                black_box(&out);
                                out.clear();
                            }
                        },
                    )
                })
                .sum()
        })
    });

    group.finish();
    assert!(payload.is_unique(), "a handle leaked");
}

criterion_group!(benches, bench_shard_ring);
criterion_main!(benches);
