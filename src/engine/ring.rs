//! Bounded single-producer single-consumer ring between two shards.
//!
//! Shards hand each other `bytes::Bytes` handles (a pointer and a refcount bump, never the
//! payload) through these rings, so the data path between cores takes no lock. One shard
//! owns the [`Producer`], another the [`Consumer`]; neither half can be cloned or shared,
//! which is what makes a single writer per index, and so plain loads and stores, enough.
//!
//! Positions are free-running `usize` counters (`tail` = next slot to write, `head` = next
//! slot to read), reduced to a slot by masking with `capacity - 1`; `tail - head` (wrapping)
//! is the number of items in the ring and never exceeds the capacity. Each index has one
//! writer; each side keeps a private copy of the other side's index and only reloads the
//! shared one when the cached value says the ring is full (producer) or empty (consumer),
//! so in steady state each side touches the other's cache line once per lap, not per item.
//!
//! Ordering: the producer writes a slot, then stores `tail` with `Release`; the consumer
//! loads `tail` with `Acquire`, so the slot's contents happen-before its read. Symmetrically
//! the consumer moves an item out, then stores `head` with `Release`; the producer loads
//! `head` with `Acquire`, so the move-out happens-before the slot is overwritten. Each side
//! reads its own index from a private field, so no other ordering is needed.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps a value on its own cache line pair: 128 bytes covers the adjacent-line prefetcher
/// on x86 and the 128-byte lines of some ARM cores, so `head` and `tail` never share one.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The state both halves point at. Dropped when the second half is dropped.
struct Shared<T> {
    /// Next position the consumer reads; written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next position the producer writes; written only by the producer.
    tail: CachePadded<AtomicUsize>,
    /// `capacity` slots; slot `pos & mask` is initialised iff `head <= pos < tail`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `capacity - 1`; the capacity is a power of two.
    mask: usize,
}

impl<T> Shared<T> {
    /// The slot for free-running position `pos`.
    #[inline]
    fn slot(&self, pos: usize) -> *mut MaybeUninit<T> {
        // SAFETY: `slots.len() == mask + 1`, so `pos & mask` is always in bounds.
        unsafe { self.slots.get_unchecked(pos & self.mask) }.get()
    }

    fn capacity(&self) -> usize {
        self.mask + 1
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both halves are gone: `&mut self` is exclusive, and `Arc`'s release/acquire on its
        // count makes every write either half made visible here.
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        let mut pos = head;
        while pos != tail {
            // SAFETY: positions in `head..tail` hold initialised items that were never moved
            // out (the consumer advances `head` past every item it reads), and each is
            // dropped exactly once here.
            unsafe { (*self.slot(pos)).assume_init_drop() };
            pos = pos.wrapping_add(1);
        }
    }
}

/// Creates a ring holding up to `capacity` items.
///
/// # Panics
/// If `capacity` is not a power of two (zero is not); masking a free-running position
/// needs one, and a shard sizes its rings once, at start-up.
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity.is_power_of_two(),
        "ring capacity must be a power of two, got {capacity}"
    );
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        slots,
        mask: capacity - 1,
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail: 0,
        cached_head: 0,
    };
    let consumer = Consumer {
        shared,
        head: 0,
        cached_tail: 0,
    };
    (producer, consumer)
}

/// The writing half. `Send` (it may move to its shard's thread) but neither `Sync` nor
/// `Clone`: the ring is only sound with one producer.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<rtmfp_edge::engine::ring::Producer<u32>>();
/// ```
///
/// ```compile_fail
/// let (p, _c) = rtmfp_edge::engine::ring::ring::<u32>(4);
/// let _second = p.clone();
/// ```
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Our own position, equal to `shared.tail` (we are its only writer).
    tail: usize,
    /// Last `head` we loaded; the consumer may be further ahead, never behind.
    cached_head: usize,
}

// SAFETY: a Producer only moves `T`s into the ring (so `T: Send` is enough for them to
// reach the consumer's thread), and it is the only writer of `tail` and of the free slots.
// It is not `Sync` (`Arc<Shared<T>>` is not, `Shared` holding `UnsafeCell`s), so `&mut self`
// methods keep that single-writer invariant.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// Free slots, reloading the consumer's `head` only when the cached one shows fewer than
    /// `want`.
    #[inline]
    fn free(&mut self, want: usize) -> usize {
        let cap = self.shared.capacity();
        let free = cap - self.tail.wrapping_sub(self.cached_head);
        if free >= want {
            return free;
        }
        // Acquire: pairs with the consumer's Release store of `head`, so its move-out of
        // every slot before `head` happens-before we overwrite that slot.
        self.cached_head = self.shared.head.load(Ordering::Acquire);
        cap - self.tail.wrapping_sub(self.cached_head)
    }

    /// Moves `item` into the ring, or hands it back if the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.free(1) == 0 {
            return Err(item);
        }
        // SAFETY: `tail - head < capacity`, so slot `tail` is outside `head..tail`: the
        // consumer neither reads it nor has an unread item in it, and the Acquire in `free`
        // ordered its last move-out before this write.
        unsafe { (*self.shared.slot(self.tail)).write(item) };
        self.tail = self.tail.wrapping_add(1);
        // Release: the slot write above happens-before the consumer's Acquire of this tail.
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Moves as many items as fit from the front of `items` into the ring, in order, with a
    /// single publishing store; the rest stay in `items`. Returns how many moved.
    pub fn push_batch(&mut self, items: &mut Vec<T>) -> usize {
        if items.is_empty() {
            return 0;
        }
        let n = self.free(items.len()).min(items.len());
        if n == 0 {
            return 0;
        }
        let mut pos = self.tail;
        for item in items.drain(..n) {
            // SAFETY: `pos` runs over `tail..tail + n` with `n` at most the free count, so
            // every slot written is outside `head..tail` (see `push`); moves cannot panic,
            // so no slot is left half-published.
            unsafe { (*self.shared.slot(pos)).write(item) };
            pos = pos.wrapping_add(1);
        }
        self.tail = pos;
        // Release: all `n` slot writes happen-before the consumer's Acquire of this tail.
        self.shared.tail.store(self.tail, Ordering::Release);
        n
    }

    /// Items in the ring now; the consumer may lower it at any moment.
    pub fn len(&self) -> usize {
        self.tail
            .wrapping_sub(self.shared.head.load(Ordering::Acquire))
    }

    /// Whether the ring is empty now; the consumer can only keep it so.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items the ring holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }
}

/// The reading half. `Send` but neither `Sync` nor `Clone`: the ring is only sound with one
/// consumer.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<rtmfp_edge::engine::ring::Consumer<u32>>();
/// ```
///
/// ```compile_fail
/// let (_p, c) = rtmfp_edge::engine::ring::ring::<u32>(4);
/// let _second = c.clone();
/// ```
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Our own position, equal to `shared.head` (we are its only writer).
    head: usize,
    /// Last `tail` we loaded; the producer may be further ahead, never behind.
    cached_tail: usize,
}

// SAFETY: a Consumer only moves `T`s out of the ring to its own thread (`T: Send`), and it
// is the only writer of `head` and the only reader of filled slots. It is not `Sync`
// (`Arc<Shared<T>>` is not), so `&mut self` methods keep that single-reader invariant.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T> Consumer<T> {
    /// Filled slots, reloading the producer's `tail` only when the cached one shows fewer
    /// than `want`.
    #[inline]
    fn available(&mut self, want: usize) -> usize {
        let available = self.cached_tail.wrapping_sub(self.head);
        if available >= want {
            return available;
        }
        // Acquire: pairs with the producer's Release store of `tail`, so its writes of every
        // slot before `tail` happen-before we read them.
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(self.head)
    }

    /// Takes the oldest item, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `head < tail` as published with Release and loaded with Acquire in
        // `available`, so slot `head` holds an initialised item the producer will not touch
        // until we publish `head + 1`; advancing `head` right after means it is read once.
        let item = unsafe { (*self.shared.slot(self.head)).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        // Release: the move-out above happens-before the producer's Acquire of this head,
        // hence before it reuses the slot.
        self.shared.head.store(self.head, Ordering::Release);
        Some(item)
    }

    /// Appends up to `max` of the oldest items to `out`, in order, with a single store
    /// handing their slots back. Returns how many were taken.
    pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let n = self.available(max).min(max);
        if n == 0 {
            return 0;
        }
        // Reserve first so the pushes below cannot reallocate (and so cannot unwind midway,
        // which would leave moved-out items behind `head` to be dropped twice).
        out.reserve(n);
        let mut pos = self.head;
        for _ in 0..n {
            // SAFETY: `pos` runs over `head..head + n` with `n` at most the published count
            // (see `pop`); each slot is read once, `head` moving past all of them below.
            out.push(unsafe { (*self.shared.slot(pos)).assume_init_read() });
            pos = pos.wrapping_add(1);
        }
        self.head = pos;
        // Release: all `n` move-outs happen-before the producer reuses those slots.
        self.shared.head.store(self.head, Ordering::Release);
        n
    }

    /// Items in the ring now; the producer may raise it at any moment.
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// Whether the ring is empty now; the producer may fill it at any moment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items the ring holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn items_come_out_in_the_order_they_went_in() {
        let (mut p, mut c) = ring(8);
        for i in 0..5 {
            p.push(i).unwrap();
        }
        assert_eq!(p.len(), 5);
        assert_eq!(c.len(), 5);
        for i in 0..5 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(c.pop(), None);
        assert!(c.is_empty() && p.is_empty());
    }

    #[test]
    fn a_full_ring_hands_the_item_back() {
        let (mut p, mut c) = ring(4);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(99), Err(99));
        assert_eq!(p.len(), 4);
        assert_eq!(c.pop(), Some(0));
        p.push(4).unwrap();
        assert_eq!(p.push(100), Err(100));
        let rest: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(rest, [1, 2, 3, 4]);
    }

    #[test]
    fn an_empty_ring_pops_nothing_until_pushed() {
        let (mut p, mut c) = ring::<u8>(2);
        assert_eq!(c.pop(), None);
        assert!(c.is_empty());
        p.push(7).unwrap();
        assert_eq!(c.pop(), Some(7));
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn capacity_one_alternates_full_and_empty() {
        let (mut p, mut c) = ring(1);
        for i in 0..100 {
            p.push(i).unwrap();
            assert_eq!(p.push(i), Err(i));
            assert_eq!(c.pop(), Some(i));
            assert_eq!(c.pop(), None);
        }
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn a_capacity_that_is_not_a_power_of_two_is_refused() {
        let _ = ring::<u8>(1000);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn a_zero_capacity_is_refused() {
        let _ = ring::<u8>(0);
    }

    #[test]
    fn positions_wrap_around_the_slots_many_times() {
        let (mut p, mut c) = ring(4);
        let (mut next_in, mut next_out) = (0u32, 0u32);
        // Fill levels vary from 1 to 4 so every slot is written at every offset.
        for round in 0..10_000 {
            for _ in 0..(round % 4 + 1) {
                p.push(next_in).unwrap();
                next_in += 1;
            }
            while let Some(v) = c.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
        }
        assert_eq!(next_in, next_out);
        assert!(next_in > 20_000);
    }

    #[test]
    fn positions_near_usize_max_wrap_correctly() {
        let (mut p, mut c) = ring(4);
        // Start both sides just below the wrap of the free-running counters.
        let start = usize::MAX - 5;
        p.tail = start;
        p.cached_head = start;
        p.shared.tail.store(start, Ordering::Relaxed);
        p.shared.head.store(start, Ordering::Relaxed);
        c.head = start;
        c.cached_tail = start;
        for i in 0..40 {
            p.push(i).unwrap();
            p.push(i + 1000).unwrap();
            assert_eq!(c.len(), 2);
            assert_eq!(c.pop(), Some(i));
            assert_eq!(c.pop(), Some(i + 1000));
        }
        p.push(1).unwrap();
        drop((p, c)); // the leftover item is found across the wrap and dropped
    }

    #[test]
    fn push_batch_moves_what_fits_and_leaves_the_rest() {
        let (mut p, mut c) = ring(8);
        let mut batch: Vec<u32> = (0..5).collect();
        assert_eq!(p.push_batch(&mut batch), 5);
        assert!(batch.is_empty());
        batch.extend(5..12);
        assert_eq!(p.push_batch(&mut batch), 3);
        assert_eq!(batch, [8, 9, 10, 11]);
        assert_eq!(p.push_batch(&mut batch), 0);
        assert_eq!(p.push_batch(&mut Vec::new()), 0);
        let drained: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(drained, (0..8).collect::<Vec<_>>());
        assert_eq!(p.push_batch(&mut batch), 4);
        assert!(batch.is_empty());
    }

    #[test]
    fn pop_batch_takes_at_most_max_and_appends_in_order() {
        let (mut p, mut c) = ring(8);
        let mut out = vec![100];
        assert_eq!(c.pop_batch(&mut out, 4), 0);
        for i in 0..6 {
            p.push(i).unwrap();
        }
        assert_eq!(c.pop_batch(&mut out, 4), 4);
        assert_eq!(out, [100, 0, 1, 2, 3]);
        assert_eq!(c.pop_batch(&mut out, 0), 0);
        assert_eq!(c.pop_batch(&mut out, 32), 2);
        assert_eq!(out, [100, 0, 1, 2, 3, 4, 5]);
        assert_eq!(c.pop_batch(&mut out, 32), 0);
    }

    #[test]
    fn batches_wrap_around_the_slots() {
        let (mut p, mut c) = ring(8);
        let mut next_in = 0u32;
        let mut expected = 0u32;
        let mut out = Vec::new();
        for round in 0..5_000u32 {
            let mut batch: Vec<u32> = (next_in..next_in + round % 7 + 1).collect();
            next_in += p.push_batch(&mut batch) as u32;
            out.clear();
            c.pop_batch(&mut out, (round % 5 + 1) as usize);
            for v in out.drain(..) {
                assert_eq!(v, expected);
                expected += 1;
            }
        }
        while let Some(v) = c.pop() {
            assert_eq!(v, expected);
            expected += 1;
        }
        assert_eq!(expected, next_in);
    }

    /// Counts its drops in the counter it points at.
    struct Counted<'a>(&'a AtomicUsize);

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn items_left_in_the_ring_are_dropped_once_with_the_last_half() {
        for producer_first in [true, false] {
            let drops = AtomicUsize::new(0);
            let (mut p, mut c) = ring(8);
            for _ in 0..6 {
                assert!(p.push(Counted(&drops)).is_ok());
            }
            drop(c.pop()); // popped items are the caller's to drop
            let mut out = Vec::new();
            c.pop_batch(&mut out, 2);
            drop(out);
            assert_eq!(drops.load(Ordering::Relaxed), 3);
            if producer_first {
                drop(p);
                assert_eq!(drops.load(Ordering::Relaxed), 3, "consumer may still read");
                drop(c);
            } else {
                drop(c);
                assert_eq!(
                    drops.load(Ordering::Relaxed),
                    3,
                    "producer still holds ring"
                );
                drop(p);
            }
            assert_eq!(drops.load(Ordering::Relaxed), 6);
        }
    }

    #[test]
    fn a_refused_push_returns_the_item_undropped() {
        let drops = AtomicUsize::new(0);
        let (mut p, c) = ring(1);
        assert!(p.push(Counted(&drops)).is_ok());
        let refused = p.push(Counted(&drops)).unwrap_err();
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(refused);
        drop((p, c));
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn zero_sized_items_are_counted() {
        let (mut p, mut c) = ring(4);
        for _ in 0..4 {
            p.push(()).unwrap();
        }
        assert_eq!(p.push(()), Err(()));
        assert_eq!(c.len(), 4);
        assert_eq!(c.pop(), Some(()));
    }

    #[test]
    fn halves_are_send() {
        fn send<T: Send>() {}
        send::<Producer<bytes::Bytes>>();
        send::<Consumer<bytes::Bytes>>();
    }

    #[test]
    fn head_and_tail_sit_on_separate_cache_lines() {
        assert_eq!(std::mem::align_of::<CachePadded<AtomicUsize>>(), 128);
        let (p, _c) = ring::<u8>(2);
        let head = &*p.shared.head as *const AtomicUsize as usize;
        let tail = &*p.shared.tail as *const AtomicUsize as usize;
        assert!(head.abs_diff(tail) >= 128);
    }
}
