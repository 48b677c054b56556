//! Congestion control (RFC 7016 §3.5.2): pluggable, with a TCP-compatible default.

use std::time::Duration;

use super::time::Instant;

/// Where a session stands with respect to time-critical traffic (RFC 7016 §3.5.2.2 and
/// §3.5.2.3): whether it sent time-critical data lately, and whether the far end told us
/// (TCR) that it is receiving time-critical data from someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeCriticality {
    /// Neither: plain TCP-compatible behaviour.
    #[default]
    Ordinary,
    /// We sent time-critical data within the last 800 ms.
    SendingTimeCritical,
    /// The far end reported time-critical data from another sender within the last
    /// 800 ms and we are not sending any ourselves: grow more gently and leave it room.
    YieldingToTimeCritical,
}

/// A congestion controller decides how many bytes may be in flight.
pub trait CongestionController: Send + std::fmt::Debug {
    /// Bytes newly acknowledged by one ack-bearing packet.
    fn on_ack(
        &mut self,
        now: Instant,
        acked_bytes: usize,
        srtt: Option<Duration>,
        criticality: TimeCriticality,
    );
    /// A fragment was declared lost by negative acknowledgement (at most once per RTT
    /// counts as a congestion event).
    fn on_loss(&mut self, now: Instant, srtt: Option<Duration>);
    /// The retransmission timer fired with data outstanding.
    fn on_timeout(&mut self, now: Instant);
    /// The congestion window in bytes.
    fn window(&self) -> usize;
}

/// The controller RFC 7016 §3.5.2.2 describes: slow start, additive increase, halving on
/// loss, collapse to two segments on timeout. While yielding to someone else's
/// time-critical data it grows at half the usual rate.
#[derive(Debug, Clone)]
pub struct TcpCompatible {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    acked_in_avoidance: usize,
    recovery_until: Option<Instant>,
}

impl TcpCompatible {
    pub fn new(mss: usize) -> Self {
        TcpCompatible {
            mss,
            cwnd: 3 * mss,
            ssthresh: usize::MAX,
            acked_in_avoidance: 0,
            recovery_until: None,
        }
    }
}

impl CongestionController for TcpCompatible {
    fn on_ack(
        &mut self,
        _now: Instant,
        acked_bytes: usize,
        _srtt: Option<Duration>,
        criticality: TimeCriticality,
    ) {
        if acked_bytes == 0 {
            return;
        }
        let yielding = criticality == TimeCriticality::YieldingToTimeCritical;
        if self.cwnd < self.ssthresh {
            // Slow start counts acknowledged bytes up to two segments per ack (RFC 3465,
            // L = 2): a receiver that acknowledges every other packet still doubles the
            // window per round trip, and one stretch ack cannot open a burst.
            let step = acked_bytes.min(2 * self.mss);
            self.cwnd += if yielding { step / 2 } else { step };
            if self.cwnd > self.ssthresh {
                self.cwnd = self.ssthresh;
            }
        } else {
            self.acked_in_avoidance += acked_bytes;
            let per_increase = if yielding { 2 * self.cwnd } else { self.cwnd };
            if self.acked_in_avoidance >= per_increase {
                self.acked_in_avoidance -= per_increase;
                self.cwnd += self.mss;
            }
        }
    }

    fn on_loss(&mut self, now: Instant, srtt: Option<Duration>) {
        if self.recovery_until.is_some_and(|until| now < until) {
            return;
        }
        self.ssthresh = (self.cwnd / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked_in_avoidance = 0;
        self.recovery_until = Some(now + srtt.unwrap_or(Duration::from_millis(200)));
    }

    fn on_timeout(&mut self, _now: Instant) {
        self.ssthresh = (self.cwnd / 2).max(2 * self.mss);
        self.cwnd = 2 * self.mss;
        self.acked_in_avoidance = 0;
    }

    fn window(&self) -> usize {
        self.cwnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_halving_then_timeout_collapse() {
        let mut cc = TcpCompatible::new(1000);
        let t = Instant::ZERO;
        assert_eq!(cc.window(), 3000);
        for _ in 0..10 {
            cc.on_ack(t, 1000, None, TimeCriticality::Ordinary);
        }
        assert_eq!(cc.window(), 13000);
        cc.on_loss(t, Some(Duration::from_millis(50)));
        assert_eq!(cc.window(), 6500);
        cc.on_loss(t + Duration::from_millis(10), None);
        assert_eq!(cc.window(), 6500, "one halving per round trip");
        cc.on_timeout(t);
        assert_eq!(cc.window(), 2000);
    }

    #[test]
    fn yielding_to_time_critical_traffic_grows_half_as_fast() {
        let t = Instant::ZERO;
        let mut ordinary = TcpCompatible::new(1000);
        let mut yielding = TcpCompatible::new(1000);
        for _ in 0..10 {
            ordinary.on_ack(t, 1000, None, TimeCriticality::Ordinary);
            yielding.on_ack(t, 1000, None, TimeCriticality::YieldingToTimeCritical);
        }
        assert_eq!(ordinary.window() - 3000, 2 * (yielding.window() - 3000));
        // In congestion avoidance too.
        ordinary.on_loss(t, None);
        yielding.on_loss(t, None);
        let (o0, y0) = (ordinary.window(), yielding.window());
        for _ in 0..100 {
            ordinary.on_ack(t, 1000, None, TimeCriticality::Ordinary);
            yielding.on_ack(t, 1000, None, TimeCriticality::YieldingToTimeCritical);
        }
        assert!(ordinary.window() - o0 > yielding.window() - y0);
        assert!(yielding.window() > y0);
    }
}
