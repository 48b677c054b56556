//! A token bucket on the caller's clock: caps how many of something happen per second
//! (RHellos, for the endpoint) while letting one second's worth through in a burst.

use super::time::Instant;

/// Tokens are counted in millionths so a whole second's refill at any rate stays exact.
const PARTS: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second; 0: no cap.
    rate: u64,
    /// Millionths of a token on hand, at most `rate * PARTS`.
    parts: u64,
    /// When `parts` was last brought up to date.
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket: `per_sec` tokens now, `per_sec` more each second. 0: unlimited.
    pub fn new(per_sec: u32) -> Self {
        let rate = u64::from(per_sec);
        TokenBucket {
            rate,
            parts: rate * PARTS,
            at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        // Time only moves forward here: a `now` before the last one refills nothing.
        let elapsed = match self.at {
            Some(at) if at >= now => return,
            Some(at) => now.as_micros() - at.as_micros(),
            None => 0,
        };
        self.at = Some(now);
        let cap = self.rate * PARTS;
        self.parts = self
            .parts
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(cap);
    }

    /// Whether a token is on hand at `now` (without taking it).
    pub fn ready(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        self.parts >= PARTS
    }

    /// Takes a token, if one is on hand.
    pub fn take(&mut self, now: Instant) -> bool {
        if !self.ready(now) {
            return false;
        }
        if self.rate != 0 {
            self.parts -= PARTS;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_micros(ms * 1_000)
    }

    #[test]
    fn a_full_second_bursts_then_the_rate_refills() {
        let mut b = TokenBucket::new(10);
        let taken = (0..100).filter(|_| b.take(at_ms(0))).count();
        assert_eq!(taken, 10, "one second's worth at once");
        assert!(!b.take(at_ms(50)), "half a token is not a token");
        assert!(b.take(at_ms(100)));
        assert!(!b.take(at_ms(100)));
        let later = (0..100).filter(|_| b.take(at_ms(10_000))).count();
        assert_eq!(later, 10, "refill stops at the burst");
    }

    #[test]
    fn zero_is_unlimited_and_time_going_back_refills_nothing() {
        let mut free = TokenBucket::new(0);
        assert!((0..1000).all(|_| free.take(at_ms(0))));
        let mut b = TokenBucket::new(1);
        assert!(b.take(at_ms(5_000)));
        assert!(!b.take(at_ms(1_000)));
        assert!(!b.take(at_ms(5_500)));
        assert!(b.take(at_ms(6_000)));
    }
}
