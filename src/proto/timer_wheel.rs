//! A hierarchical hashed timing wheel: one deadline per key, O(1) insert and cancel, and
//! the next deadline found from six occupancy bitmaps instead of a walk over entries.
//!
//! Time is in ticks (the endpoint uses 1 ms). Level `L` has 64 slots of `64^L` ticks; an
//! entry sits at the level of the highest 6-bit digit in which its deadline differs from
//! the wheel's current tick, so every entry of a lower level is due before any entry of a
//! higher one. When time reaches a higher-level slot its entries move down ("cascade").
//! Deadlines beyond the top level (2^36 ticks) wait in an overflow list that is sorted
//! into the wheel when time enters their 2^36-tick epoch. Deadlines at or before the
//! current tick are due at once.
//!
//! Entries live in a slab threaded by intrusive doubly-linked lists, so cancelling needs
//! no search; a map from key to slab index makes the API keyed.

use std::collections::HashMap;
use std::hash::Hash;

const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
const LEVELS: usize = 6;
/// Ticks the levels cover together.
const HORIZON_BITS: u32 = BITS * LEVELS as u32;
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Slot { level: u8, slot: u8 },
    Due,
    Overflow,
}

#[derive(Debug, Clone)]
struct Entry<K> {
    key: K,
    when: u64,
    place: Place,
    prev: u32,
    next: u32,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
}

impl List {
    const EMPTY: List = List { head: NIL };
}

#[derive(Debug, Clone)]
pub struct TimerWheel<K> {
    /// The current tick: everything at or before it has been handed out by `expire`.
    elapsed: u64,
    slots: [[List; SLOTS]; LEVELS],
    /// Earliest deadline in each slot, as of the last insert there: exact for level 0
    /// (one tick a slot), possibly early after a cancel above it (which costs at most
    /// one early answer from `next_deadline`, after which the slot cascades).
    slot_min: [[u64; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    due: List,
    due_min: u64,
    overflow: List,
    overflow_min: u64,
    entries: Vec<Entry<K>>,
    free: Vec<u32>,
    index: HashMap<K, u32>,
}

impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// A wheel whose current tick is `now`.
    pub fn new(now: u64) -> Self {
        TimerWheel {
            elapsed: now,
            slots: [[List::EMPTY; SLOTS]; LEVELS],
            slot_min: [[u64::MAX; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            due: List::EMPTY,
            due_min: u64::MAX,
            overflow: List::EMPTY,
            overflow_min: u64::MAX,
            entries: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The tick `expire` last advanced to.
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// The deadline `key` is waiting for.
    pub fn deadline(&self, key: &K) -> Option<u64> {
        self.index.get(key).map(|&i| self.entries[i as usize].when)
    }

    /// Sets `key`'s deadline to `when`, replacing any it had.
    pub fn insert(&mut self, key: K, when: u64) {
        if let Some(&i) = self.index.get(&key) {
            if self.entries[i as usize].when == when {
                return;
            }
            self.unlink(i);
            self.entries[i as usize].when = when;
            self.place(i);
            return;
        }
        let entry = Entry {
            key,
            when,
            place: Place::Due,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.place(i);
    }

    /// Cancels `key`'s deadline; returns it.
    pub fn remove(&mut self, key: &K) -> Option<u64> {
        let i = self.index.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        Some(self.entries[i as usize].when)
    }

    /// A tick at or before the earliest deadline, and equal to it unless a cancel left a
    /// slot's minimum stale; `None` when the wheel is empty.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.due.head != NIL {
            return Some(self.due_min);
        }
        if let Some((level, slot)) = self.next_slot() {
            return Some(self.slot_min[level][slot]);
        }
        (self.overflow.head != NIL).then_some(self.overflow_min)
    }

    /// Advances to `now` and appends to `out` every key whose deadline is at or before it,
    /// removing them. Time never goes back: an earlier `now` only collects what is due.
    pub fn expire(&mut self, now: u64, out: &mut Vec<K>) {
        while let Some((level, slot)) = self.next_slot() {
            let start = self.slot_start(level, slot);
            if start > now {
                break;
            }
            // Time reaches this slot: its entries go down a level (or fall due).
            self.elapsed = start;
            let mut i = std::mem::replace(&mut self.slots[level][slot], List::EMPTY).head;
            self.occupied[level] &= !(1 << slot);
            self.slot_min[level][slot] = u64::MAX;
            while i != NIL {
                let next = self.entries[i as usize].next;
                self.place(i);
                i = next;
            }
        }
        if now > self.elapsed {
            let epoch_changed = now >> HORIZON_BITS != self.elapsed >> HORIZON_BITS;
            self.elapsed = now;
            if epoch_changed {
                let mut i = std::mem::replace(&mut self.overflow, List::EMPTY).head;
                self.overflow_min = u64::MAX;
                while i != NIL {
                    let next = self.entries[i as usize].next;
                    self.place(i);
                    i = next;
                }
            }
        }
        let mut i = std::mem::replace(&mut self.due, List::EMPTY).head;
        self.due_min = u64::MAX;
        while i != NIL {
            let e = &self.entries[i as usize];
            let next = e.next;
            out.push(e.key);
            self.index.remove(&e.key);
            self.free.push(i);
            i = next;
        }
    }

    /// The first occupied slot: lowest level first, since lower levels are due first.
    fn next_slot(&self) -> Option<(usize, usize)> {
        (0..LEVELS).find_map(|level| {
            let here = ((self.elapsed >> (BITS * level as u32)) as usize) & (SLOTS - 1);
            let ahead = self.occupied[level] & (u64::MAX << here);
            (ahead != 0).then(|| (level, ahead.trailing_zeros() as usize))
        })
    }

    /// The first tick of `slot` at `level` in the current rotation.
    fn slot_start(&self, level: usize, slot: usize) -> u64 {
        let shift = BITS * level as u32;
        let above = self.elapsed >> (shift + BITS) << (shift + BITS);
        above | (slot as u64) << shift
    }

    /// Links entry `i` where its deadline belongs relative to the current tick.
    fn place(&mut self, i: u32) {
        let when = self.entries[i as usize].when;
        let place = if when <= self.elapsed {
            self.due_min = self.due_min.min(when);
            Place::Due
        } else {
            let differing = 63 - ((self.elapsed ^ when) | (SLOTS as u64 - 1)).leading_zeros();
            let level = (differing / BITS) as usize;
            if level >= LEVELS {
                self.overflow_min = self.overflow_min.min(when);
                Place::Overflow
            } else {
                let slot = ((when >> (BITS * level as u32)) as usize) & (SLOTS - 1);
                if self.occupied[level] & (1 << slot) == 0 {
                    self.slot_min[level][slot] = when;
                    self.occupied[level] |= 1 << slot;
                } else {
                    let m = &mut self.slot_min[level][slot];
                    *m = (*m).min(when);
                }
                Place::Slot {
                    level: level as u8,
                    slot: slot as u8,
                }
            }
        };
        let head = self.list_mut(place).head;
        {
            let e = &mut self.entries[i as usize];
            e.place = place;
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = i;
        }
        self.list_mut(place).head = i;
    }

    /// Takes entry `i` out of its list.
    fn unlink(&mut self, i: u32) {
        let Entry {
            place, prev, next, ..
        } = self.entries[i as usize];
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.list_mut(place).head = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        match place {
            Place::Slot { level, slot } => {
                let (level, slot) = (level as usize, slot as usize);
                if self.slots[level][slot].head == NIL {
                    self.occupied[level] &= !(1 << slot);
                    self.slot_min[level][slot] = u64::MAX;
                }
            }
            Place::Due => {
                if self.due.head == NIL {
                    self.due_min = u64::MAX;
                }
            }
            Place::Overflow => {
                // Kept exact: a stale minimum here could stay behind the current tick
                // (nothing cascades the overflow before its epoch), and it is rarely used.
                let mut m = u64::MAX;
                let mut j = self.overflow.head;
                while j != NIL {
                    m = m.min(self.entries[j as usize].when);
                    j = self.entries[j as usize].next;
                }
                self.overflow_min = m;
            }
        }
    }

    fn list_mut(&mut self, place: Place) -> &mut List {
        match place {
            Place::Slot { level, slot } => &mut self.slots[level as usize][slot as usize],
            Place::Due => &mut self.due,
            Place::Overflow => &mut self.overflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Remove(u8),
        Expire(u64),
    }

    /// Deadlines spread over every level and the overflow, relative to the current tick.
    fn offset() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..70,
            0u64..5_000,
            0u64..300_000,
            0u64..(1 << 37),
            Just(0),
            Just(64),
            Just(4096),
            Just(1 << 36),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), offset()).prop_map(|(k, d)| Op::Insert(k % 32, d)),
            1 => any::<u8>().prop_map(|k| Op::Remove(k % 32)),
            3 => offset().prop_map(Op::Expire),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The wheel against a map from key to deadline: same keys fire at the same
        /// `expire`, and `next_deadline` is never after the earliest deadline.
        #[test]
        fn wheel_matches_a_sorted_map(
            start in prop_oneof![Just(0u64), 0u64..(1 << 40), Just((1 << 36) - 3)],
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let mut wheel = TimerWheel::new(start);
            let mut model: BTreeMap<u8, u64> = BTreeMap::new();
            let mut now = start;
            for op in ops {
                match op {
                    Op::Insert(k, d) => {
                        // Sometimes in the past: due at once.
                        let when = (now + d).saturating_sub(2);
                        wheel.insert(k, when);
                        model.insert(k, when);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(wheel.remove(&k), model.remove(&k));
                    }
                    Op::Expire(d) => {
                        let next = wheel.next_deadline();
                        let earliest = model.values().min().copied();
                        prop_assert_eq!(next.is_some(), earliest.is_some());
                        if let (Some(n), Some(e)) = (next, earliest) {
                            prop_assert!(n <= e, "next {} after earliest {}", n, e);
                        }
                        now += d;
                        let mut fired = Vec::new();
                        wheel.expire(now, &mut fired);
                        fired.sort_unstable();
                        let expected: Vec<u8> =
                            model.iter().filter(|(_, &w)| w <= now).map(|(&k, _)| k).collect();
                        model.retain(|_, w| *w > now);
                        prop_assert_eq!(fired, expected);
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                for (k, w) in &model {
                    prop_assert_eq!(wheel.deadline(k), Some(*w));
                }
            }
        }

        /// Without cancels, `next_deadline` is exact, and expiring at it fires something:
        /// a driver that sleeps until the answer never wakes for nothing.
        #[test]
        fn next_deadline_is_exact_without_cancels(
            start in 0u64..(1 << 40),
            deadlines in prop::collection::vec(offset(), 1..100),
        ) {
            let mut wheel = TimerWheel::new(start);
            let mut model = BTreeMap::new();
            for (k, d) in deadlines.into_iter().enumerate() {
                wheel.insert(k, start + d);
                model.insert(k, start + d);
            }
            while let Some(next) = wheel.next_deadline() {
                let earliest = model.values().min().copied();
                prop_assert_eq!(Some(next), earliest);
                let mut fired = Vec::new();
                wheel.expire(next, &mut fired);
                prop_assert!(!fired.is_empty());
                for k in fired {
                    prop_assert!(model.remove(&k).is_some_and(|w| w <= next));
                }
            }
            prop_assert!(model.is_empty());
        }
    }

    #[test]
    fn cancelled_minimum_costs_at_most_one_early_answer() {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(1u32, 10_000);
        wheel.insert(2, 12_000);
        wheel.remove(&1);
        let early = wheel.next_deadline().unwrap();
        assert!(early <= 12_000);
        let mut fired = Vec::new();
        wheel.expire(early, &mut fired);
        assert!(fired.is_empty());
        assert_eq!(wheel.next_deadline(), Some(12_000));
        wheel.expire(12_000, &mut fired);
        assert_eq!(fired, vec![2]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn deadline_beyond_the_horizon_fires_on_time() {
        let mut wheel = TimerWheel::new(5);
        let far = (1u64 << 36) * 3 + 17;
        wheel.insert(7u32, far);
        wheel.insert(8, 100);
        let mut fired = Vec::new();
        wheel.expire(100, &mut fired);
        assert_eq!(fired, vec![8]);
        assert_eq!(wheel.next_deadline(), Some(far));
        wheel.expire(far - 1, &mut fired);
        assert_eq!(fired, vec![8]);
        wheel.expire(far, &mut fired);
        assert_eq!(fired, vec![8, 7]);
    }
}
