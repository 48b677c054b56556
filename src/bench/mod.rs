//! `bench fanout`: the end-to-end fan-out benchmark. One publisher, N subscriber sessions
//! in a network namespace behind a veth pair, the server as a child process, and in the
//! same run the plain-kernel ceiling for sending the same datagrams to the same N
//! destinations from one core. See docs/bench.md.
//!
//! `netns` builds and tears down the topology, `ceiling` measures the kernel, `publisher`
//! sends the synthetic stream (over RTMFP, or `rtmp_publisher` over RTMP),
//! `subscribers` does the N real handshakes and plays (or joins the group, `mode`),
//! `receiver` is the cheap per-datagram counter and acker that replaces them,
//! `multicast_counter` counts what reaches the multicast group, `report` the summary
//! line, CSV and plot, and `fanout` runs the sweep.
//!
//! `bench group`: a stream republished into a NetGroup and played by N members from
//! each other (`group`: options, stream, measures; `group_sim` in memory on a virtual
//! clock, `group_udp` on loopback sockets).

pub mod ceiling;
pub mod fanout;
pub mod group;
pub mod group_sim;
pub mod group_udp;
pub mod mode;
pub mod multicast_counter;
pub mod netns;
pub mod publisher;
pub mod receiver;
pub mod report;
pub mod rtmp_publisher;
pub mod subscribers;
pub mod xdp_ceiling;

use std::sync::atomic::{AtomicBool, Ordering};

/// CLOCK_MONOTONIC in microseconds: one clock for the publisher (root namespace) and the
/// subscribers (their namespace), which stamps and reads the send time in every frame.
pub fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into a flag every loop of the benchmark checks, so a Ctrl-C
/// unwinds through the guards that kill the server and delete the namespace.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fails with "interrupted" once a signal came.
pub fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// The `q`-quantile (0..=1) of `sorted` by nearest rank; `None` when empty.
pub fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Raises the open-file soft limit to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and then to pass back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
