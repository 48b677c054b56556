//! Time as the sans-IO core sees it: a point the caller hands in, never read from a clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Microseconds since an arbitrary epoch chosen by the driver (engine: process start;
/// simulator: zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// RFC 7016 §2.2.4: the 16-bit packet timestamp counts 4 ms ticks.
    pub fn timestamp_ticks(self) -> u16 {
        (self.0 / 4000) as u16
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.as_micros() as u64))
    }
}
