//! How a shard's open sessions are spread by smoothed RTT and by congestion window, as
//! its last snapshot found them: a distribution over sessions now, not over time (an
//! OpenMetrics gauge-histogram), rebuilt whole at every snapshot. docs/metrics.md gives
//! the buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// RTT bucket bounds, in nanoseconds: 1, 2, 5, 10, 20, 50, 100, 200, 500 ms, 1, 2, 5 s.
pub const RTT_BOUNDS_NANOS: [u64; 12] = {
    const MS: u64 = 1_000_000;
    [
        MS,
        2 * MS,
        5 * MS,
        10 * MS,
        20 * MS,
        50 * MS,
        100 * MS,
        200 * MS,
        500 * MS,
        1_000 * MS,
        2_000 * MS,
        5_000 * MS,
    ]
};

/// Congestion window bucket bounds, in bytes: powers of two from 2 KiB to 4 MiB. The
/// smallest window a session has is two fragments (after a timeout), a little over 2 KiB.
pub const CWND_BOUNDS_BYTES: [u64; 12] = {
    const KIB: u64 = 1024;
    [
        2 * KIB,
        4 * KIB,
        8 * KIB,
        16 * KIB,
        32 * KIB,
        64 * KIB,
        128 * KIB,
        256 * KIB,
        512 * KIB,
        1024 * KIB,
        2048 * KIB,
        4096 * KIB,
    ]
};

/// Fan-out latency bucket bounds, in microseconds: 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50,
/// 100, 250, 500 ms, 1, 2.5 s.
pub const FAN_OUT_BOUNDS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// A distribution with fixed bucket bounds, written whole by one thread (the shard) and
/// read by others (a scrape). Each bucket holds its own count, not a running total, so
/// a reader that catches a rewrite halfway still sees cumulative counts that never go
/// down, and a `+Inf` bucket equal to the count; only the sum may then be a snapshot
/// apart from them.
#[derive(Debug)]
pub struct SnapshotHistogram<const BOUNDS: usize> {
    bounds: [u64; BOUNDS],
    /// Values above the bound before (if any) and at most this bucket's bound.
    within: [AtomicU64; BOUNDS],
    above_every_bound: AtomicU64,
    sum: AtomicU64,
}

/// A [`SnapshotHistogram`]'s numbers, counted locally before they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<const BOUNDS: usize> {
    pub within: [u64; BOUNDS],
    pub above_every_bound: u64,
    pub sum: u64,
}

impl<const BOUNDS: usize> Tally<BOUNDS> {
    /// Counts `value` into the first bucket whose bound is at least `value`.
    pub fn add(&mut self, bounds: &[u64; BOUNDS], value: u64) {
        match bounds.iter().position(|&bound| value <= bound) {
            Some(i) => self.within[i] += 1,
            None => self.above_every_bound += 1,
        }
        self.sum = self.sum.saturating_add(value);
    }

    /// Every bucket's own count, then the count above every bound (as
    /// [`crate::metrics::text::HistogramSeries::counts`] wants them).
    pub fn counts(&self) -> Vec<u64> {
        let mut counts = self.within.to_vec();
        counts.push(self.above_every_bound);
        counts
    }
}

impl<const BOUNDS: usize> Default for Tally<BOUNDS> {
    fn default() -> Self {
        Tally {
            within: [0; BOUNDS],
            above_every_bound: 0,
            sum: 0,
        }
    }
}

impl<const BOUNDS: usize> SnapshotHistogram<BOUNDS> {
    pub fn new(bounds: [u64; BOUNDS]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        SnapshotHistogram {
            bounds,
            within: std::array::from_fn(|_| AtomicU64::new(0)),
            above_every_bound: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn bounds(&self) -> &[u64; BOUNDS] {
        &self.bounds
    }

    /// Replaces the distribution with `tally`'s. The one writer's call.
    pub fn store(&self, tally: &Tally<BOUNDS>) {
        for (bucket, &count) in self.within.iter().zip(&tally.within) {
            bucket.store(count, Ordering::Relaxed);
        }
        self.above_every_bound
            .store(tally.above_every_bound, Ordering::Relaxed);
        self.sum.store(tally.sum, Ordering::Relaxed);
    }

    /// The distribution last stored (each number whole; see the type's doc).
    pub fn load(&self) -> Tally<BOUNDS> {
        Tally {
            within: std::array::from_fn(|i| self.within[i].load(Ordering::Relaxed)),
            above_every_bound: self.above_every_bound.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A shard's sessions by smoothed RTT (those with an RTT sample) and by congestion
/// window (all of them).
#[derive(Debug)]
pub struct SessionHistograms {
    pub rtt_nanos: SnapshotHistogram<{ RTT_BOUNDS_NANOS.len() }>,
    pub cwnd_bytes: SnapshotHistogram<{ CWND_BOUNDS_BYTES.len() }>,
}

impl Default for SessionHistograms {
    fn default() -> Self {
        SessionHistograms {
            rtt_nanos: SnapshotHistogram::new(RTT_BOUNDS_NANOS),
            cwnd_bytes: SnapshotHistogram::new(CWND_BOUNDS_BYTES),
        }
    }
}

impl SessionHistograms {
    /// Replaces both distributions with those of `sessions`: each one's smoothed RTT
    /// (`None` before its first sample: not counted) and congestion window in bytes.
    pub fn store(&self, sessions: impl IntoIterator<Item = (Option<Duration>, usize)>) {
        let mut rtt = Tally::default();
        let mut cwnd = Tally::default();
        for (srtt, window) in sessions {
            if let Some(srtt) = srtt {
                let nanos = u64::try_from(srtt.as_nanos()).unwrap_or(u64::MAX);
                rtt.add(self.rtt_nanos.bounds(), nanos);
            }
            cwnd.add(self.cwnd_bytes.bounds(), window as u64);
        }
        self.rtt_nanos.store(&rtt);
        self.cwnd_bytes.store(&cwnd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn sessions_land_in_the_bucket_of_the_first_bound_at_or_above_them() {
        let histograms = SessionHistograms::default();
        histograms.store([
            (ms(1), 2048),                              // on a bound: that bucket
            (Some(Duration::from_micros(1_500)), 2049), // just above: the next
            (ms(150), 3 * 1024 * 1024),
            (ms(7_000), 5 * 1024 * 1024), // above every bound
            (None, 1000),                 // no RTT yet: counted by window only
        ]);
        let rtt = histograms.rtt_nanos.load();
        assert_eq!(rtt.within, [1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(rtt.above_every_bound, 1);
        assert_eq!(rtt.sum, 7_152_500_000);
        let cwnd = histograms.cwnd_bytes.load();
        assert_eq!(cwnd.within, [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(cwnd.above_every_bound, 1);
        assert_eq!(cwnd.sum, 1000 + 2048 + 2049 + 8 * 1024 * 1024);
    }

    #[test]
    fn each_snapshot_replaces_the_last() {
        let histograms = SessionHistograms::default();
        histograms.store([(ms(30), 10_000), (ms(30), 10_000)]);
        histograms.store([(ms(3), 100_000)]);
        let rtt = histograms.rtt_nanos.load();
        assert_eq!(rtt.within.iter().sum::<u64>(), 1);
        assert_eq!(rtt.within[2], 1);
        assert_eq!(rtt.sum, 3_000_000);
        let cwnd = histograms.cwnd_bytes.load();
        assert_eq!(cwnd.counts().iter().sum::<u64>(), 1);
        assert_eq!(cwnd.within[6], 1, "100 000 bytes: at most 128 KiB");
    }
}
