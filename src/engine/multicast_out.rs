//! IP multicast datagrams into the io_uring send batches.
//!
//! The server seals each group-stream fragment once for the multicast address
//! (docs/ipmulticast.md); on io_uring those datagrams take the same path as the
//! sessions': copied into a slot of the batch being filled (no allocation), a `sendmsg`
//! entry each, all of a turn's output submitted together. When every batch is in flight
//! the rest wait here, in order, until completions free one: a datagram the server
//! handed over is never dropped for want of a slot.

use std::collections::VecDeque;

use super::uring_udp::UringUdp;
use crate::proto::batch::SLOT_STRIDE;
use crate::proto::Transmit;

/// Datagrams that found no free batch, oldest first.
#[derive(Debug, Default)]
pub struct MulticastOut {
    held: VecDeque<Transmit>,
    /// Datagrams longer than a send slot, dropped (the server never makes one: they
    /// are at most 1400 bytes).
    pub oversized: u64,
}

impl MulticastOut {
    /// Queues the held datagrams, then those `next` yields, into `uring`'s send batches
    /// until `next` has no more or no batch is free (the rest is held). Returns how many
    /// were queued; `submit` or `wait` sends them.
    pub fn queue(
        &mut self,
        uring: &mut UringUdp,
        mut next: impl FnMut() -> Option<Transmit>,
    ) -> u64 {
        let mut queued = 0;
        while let Some(t) = self.held.pop_front().or_else(&mut next) {
            if t.payload.len() > SLOT_STRIDE {
                self.oversized += 1;
                continue;
            }
            if !uring.send(t.destination, &t.payload) {
                self.held.push_front(t);
                // Take what the server has now, so its queue does not grow meanwhile.
                self.held.extend(std::iter::from_fn(&mut next));
                break;
            }
            queued += 1;
        }
        queued
    }

    /// Datagrams waiting for a free batch.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::uring_udp::BATCH_SLOTS;
    use crate::engine::waker::Waker;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn datagram(to: SocketAddr, i: u32) -> Transmit {
        let mut payload = vec![0x5a; 1200];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        Transmit {
            destination: to,
            payload,
        }
    }

    #[test]
    fn datagrams_wait_for_a_free_batch_and_go_out_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = peer.local_addr().unwrap();
        let waker = Waker::new().unwrap();
        let mut uring =
            UringUdp::new(server.as_raw_fd(), waker.fd(), None).expect("io_uring available");
        let mut out = MulticastOut::default();

        // More than every batch holds: until completions come back the rest is held.
        let capacity = uring.free_batches() * BATCH_SLOTS;
        let total = capacity as u32 + 100;
        let mut source = (0..total).map(|i| datagram(to, i));
        let queued = out.queue(&mut uring, || source.next());
        assert_eq!(queued, capacity as u64);
        assert_eq!(out.held(), 100, "the rest waits, none dropped");
        let oversized = Transmit {
            destination: to,
            payload: vec![0; SLOT_STRIDE + 1],
        };
        let mut late = Some(oversized);
        assert_eq!(out.queue(&mut uring, || late.take()), 0, "still no batch");
        assert_eq!(out.held(), 101);

        // Completions free batches; the held datagrams follow, in order.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        peer.set_nonblocking(true).unwrap();
        while uring.counters.sent + uring.counters.send_errors < u64::from(total) {
            assert!(std::time::Instant::now() < deadline, "{:?}", uring.counters);
            uring
                .wait(Some(Duration::from_millis(20)), |_, _| {})
                .unwrap();
            while let Ok((n, _)) = peer.recv_from(&mut buf) {
                assert_eq!(n, 1200);
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
            out.queue(&mut uring, || None);
            uring.submit().unwrap();
        }
        assert_eq!(uring.counters.send_errors, 0);
        // Loopback may drop some when the receive buffer fills: what arrived came in order.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
        assert!(
            got.last().is_some_and(|&i| i >= capacity as u32),
            "held ones went too"
        );
        assert_eq!((out.held(), out.oversized), (0, 1));
    }
}
