//! Pacing of the IP multicast sender (docs/ipmulticast.md, "Pacing"): datagrams leave at
//! the stream's own rate, with headroom, instead of in bursts of a keyframe's worth (50
//! fragments or more at once), which overflow switch and receiver buffers that the
//! average rate never would.
//!
//! A token bucket: it fills at [`HEADROOM`] times the rate the stream was fed at over the
//! last [`WINDOW`] (never below [`FLOOR`]), holds at most [`DEPTH`] bytes, and a datagram
//! may leave when the bucket holds its length. Sans-IO: time comes in as
//! [`crate::proto::Instant`].

use std::collections::VecDeque;
use std::time::Duration;

use super::datagram::MAX_DATAGRAM;
use crate::proto::Instant;

/// The paced rate is this many times the measured one (in tenths): room for the
/// stream's own swings, so that pacing smooths bursts without falling behind.
pub const HEADROOM_TENTHS: u64 = 15;
/// The same, as a factor, for the docs.
pub const HEADROOM: f64 = HEADROOM_TENTHS as f64 / 10.0;
/// How far back the stream's rate is measured (give or take a slot).
pub const WINDOW: Duration = Duration::from_secs(1);
/// The shortest span a rate is measured over: a stream's first keyframe is not taken
/// for a second's worth of stream.
pub const MIN_SPAN: Duration = Duration::from_millis(100);
/// The slowest the bucket fills, in bytes per second (256 kbit/s): a stream that has
/// just started, or is nearly silent, is not held back below this.
pub const FLOOR: u64 = 32_000;
/// Bytes the bucket holds at least: a few datagrams may leave back to back.
pub const DEPTH: u64 = 4 * MAX_DATAGRAM as u64;
/// ... and at least this long at the paced rate: the coarsest timer a driver sleeps on
/// (epoll's millisecond). A bucket shallower than one tick of the rate caps the sender at
/// `DEPTH` per tick, whatever the rate (4,000 datagrams a second on a 1 ms timer).
pub const DEPTH_TIME: Duration = Duration::from_millis(1);
/// The measuring window's slots.
const SLOT: Duration = Duration::from_millis(50);

/// Credit is kept in millionths of a byte, so that a rate in bytes per second times
/// microseconds adds up exactly.
const MICRO: u64 = 1_000_000;

#[derive(Debug)]
pub struct Pacer {
    /// Bytes fed per slot of the window, oldest first: (slot start, bytes).
    slots: VecDeque<(Instant, u64)>,
    /// Sum of `slots`.
    window_bytes: u64,
    /// When the bytes now in the window began coming.
    since: Option<Instant>,
    /// The bucket, in millionths of a byte, as of `filled_at`.
    credit: u64,
    filled_at: Option<Instant>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            slots: VecDeque::new(),
            window_bytes: 0,
            since: None,
            credit: DEPTH * MICRO,
            filled_at: None,
        }
    }
}

impl Pacer {
    /// `bytes` were queued at `now`: they count towards the measured rate.
    pub fn fed(&mut self, now: Instant, bytes: usize) {
        self.forget_before(now);
        let slot = Instant::from_micros(now.as_micros() - now.as_micros() % slot_micros());
        match self.slots.back_mut() {
            Some((start, sum)) if *start == slot => *sum += bytes as u64,
            _ => self.slots.push_back((slot, bytes as u64)),
        }
        self.window_bytes += bytes as u64;
        self.since.get_or_insert(now);
    }

    /// The paced rate, in bytes per second: what the window holds over the time it
    /// took to come (at least [`MIN_SPAN`]), with headroom.
    pub fn rate(&self, now: Instant) -> u64 {
        let span = match self.since {
            Some(since) => now.saturating_since(since).max(MIN_SPAN),
            None => WINDOW,
        };
        let measured = self.window_bytes.saturating_mul(MICRO) / (span.as_micros() as u64).max(1);
        (measured.saturating_mul(HEADROOM_TENTHS) / 10).max(FLOOR)
    }

    /// Whether a datagram of `len` bytes may leave at `now`; if so its bytes are taken
    /// from the bucket.
    pub fn try_send(&mut self, now: Instant, len: usize) -> bool {
        self.fill(now);
        let cost = (len as u64).saturating_mul(MICRO);
        if self.credit < cost.min(self.depth(now)) {
            return false;
        }
        self.credit = self.credit.saturating_sub(cost);
        true
    }

    /// When a datagram of `len` bytes may leave, if not at the last
    /// [`Pacer::try_send`].
    pub fn next_send(&self, len: usize) -> Instant {
        let at = self.filled_at.unwrap_or(Instant::ZERO);
        let cost = (len as u64).saturating_mul(MICRO).min(self.depth(at));
        let missing = cost.saturating_sub(self.credit);
        let rate = self.rate(at);
        // Rounded up: at that instant the credit is there.
        at + Duration::from_micros(missing.div_ceil(rate))
    }

    /// Fills the bucket for the time since it was last filled, at the rate of then (as
    /// [`Pacer::next_send`] reckons), then lets the window move on.
    fn fill(&mut self, now: Instant) {
        let at = self.filled_at.unwrap_or(now);
        let elapsed = now.saturating_since(at).as_micros() as u64;
        let rate = self.rate(at);
        self.credit = self
            .credit
            .saturating_add(rate.saturating_mul(elapsed))
            .min(self.depth(at));
        self.filled_at = Some(now.max(at));
        self.forget_before(now);
    }

    /// What the bucket holds at most, in millionths of a byte: [`DEPTH`], or
    /// [`DEPTH_TIME`] at the rate of `at` when that is more.
    fn depth(&self, at: Instant) -> u64 {
        let tick = self.rate(at).saturating_mul(DEPTH_TIME.as_micros() as u64);
        (DEPTH * MICRO).max(tick)
    }

    /// Drops the slots that left the window; once it is empty the stream's rate is
    /// measured anew.
    fn forget_before(&mut self, now: Instant) {
        let horizon = now - WINDOW;
        while let Some(&(start, bytes)) = self.slots.front() {
            if start + SLOT > horizon {
                break;
            }
            self.slots.pop_front();
            self.window_bytes -= bytes;
        }
        if self.slots.is_empty() {
            self.since = None;
        } else if let Some(since) = self.since {
            // The oldest bytes still counted came no earlier than their slot.
            self.since = Some(since.max(self.slots[0].0));
        }
    }
}

fn slot_micros() -> u64 {
    SLOT.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_micros(10_000_000 + ms * 1000)
    }

    #[test]
    fn a_fast_stream_gets_a_millisecond_of_credit_per_wakeup_not_four_datagrams() {
        let mut p = Pacer::default();
        // 100 MB/s fed for a second (a 800 Mbit/s stream): 100 kB every millisecond.
        for i in 0..1000 {
            p.fed(at(i), 100_000);
        }
        let now = at(1000);
        let rate = p.rate(now);
        assert!(rate >= 140_000_000, "{rate}");
        // A driver that wakes once a millisecond: each wakeup lets a millisecond's worth
        // go (rate * 1 ms, about 150 datagrams), not just DEPTH's four.
        while p.try_send(now, 1000) {}
        let mut sent = 0;
        while p.try_send(now + Duration::from_millis(1), 1000) {
            sent += 1;
        }
        let tick = (rate / 1000 / 1000) as usize;
        assert!(
            (tick - 2..=tick + 1).contains(&sent),
            "sent {sent}, a tick is {tick}"
        );
        assert!(
            sent as u64 * 1000 > 10 * DEPTH,
            "{sent}: no more than the fixed depth"
        );
    }

    #[test]
    fn a_burst_leaves_at_one_and_a_half_times_the_streams_rate() {
        let mut p = Pacer::default();
        // A steady 100 kB/s for two seconds: 1000 bytes every 10 ms, each sent as fed.
        for i in 0..200 {
            p.fed(at(i * 10), 1000);
            assert!(p.try_send(at(i * 10), 1000), "steady datagram {i}");
        }
        let now = at(2000);
        let rate = p.rate(now);
        assert!((145_000..=155_000).contains(&rate), "{rate}");
        // A keyframe's worth at once: the bucket's depth goes now, the rest at the rate.
        for _ in 0..50 {
            p.fed(now, 1000);
        }
        let mut sent = 0;
        while p.try_send(now, 1000) {
            sent += 1;
        }
        assert!((4..=6).contains(&sent), "{sent} back to back");
        let next = p.next_send(1000);
        assert!(next > now);
        assert!(p.try_send(next, 1000), "the credit is there when it says");
        // The other 45 leave over ~0.2 s at ~200 kB/s (the rate now counts the burst).
        let mut t = next;
        for _ in 0..(49 - sent) {
            t = p.next_send(1000);
            assert!(p.try_send(t, 1000));
        }
        let took = t.saturating_since(now);
        assert!(
            took > Duration::from_millis(150) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }

    #[test]
    fn a_new_stream_is_not_held_below_the_floor_and_its_first_burst_is_short() {
        let mut p = Pacer::default();
        assert_eq!(p.rate(at(0)), FLOOR);
        // The first keyframe, 60 kB: measured over the shortest span, not a second.
        for _ in 0..60 {
            p.fed(at(0), 1000);
        }
        assert_eq!(p.rate(at(0)), 60_000 * 10 * 15 / 10);
        let mut t = at(0);
        for _ in 0..60 {
            t = p.next_send(1000).max(t);
            assert!(p.try_send(t, 1000));
        }
        assert!(
            t.saturating_since(at(0)) < Duration::from_millis(100),
            "{t:?}"
        );
        // Silence for longer than the window: the rate is measured anew.
        p.fed(at(5000), 100);
        assert_eq!(p.rate(at(5000)), FLOOR);
    }

    #[test]
    fn a_datagram_longer_than_the_bucket_still_leaves() {
        let mut p = Pacer::default();
        assert!(p.try_send(at(0), 100_000));
        assert!(!p.try_send(at(0), 100_000));
        assert!(p.try_send(p.next_send(100_000), 100_000));
    }
}
