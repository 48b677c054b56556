//! The server's IP multicast sender for one group (docs/ipmulticast.md): it seals each
//! fragment of the group's stream once, under the group's key, numbered in one sequence,
//! into a datagram for the multicast address.
//!
//! Sans-IO: fragments in ([`MulticastSender::push_fragment`]), datagrams out
//! ([`MulticastSender::poll_transmit`]).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::datagram::{seal, MulticastKey, PayloadKind, MAX_DATAGRAM};
use crate::proto::endpoint::Transmit;
use crate::proto::Instant;

#[derive(Debug)]
pub struct MulticastSender {
    address: SocketAddr,
    key: MulticastKey,
    /// Datagrams sealed under the key so far (the next gets one more).
    sequence: u64,
    /// The stream being sent: the first 8 bytes of its key. `None`: nothing is sent.
    stream_tag: Option<[u8; 8]>,
    /// Sealed datagrams not yet handed out.
    queue: VecDeque<Vec<u8>>,
    /// Datagrams handed out.
    sent: u64,
    datagram: Vec<u8>,
}

impl MulticastSender {
    /// A sender of datagrams sealed under `key` to `address`.
    pub fn new(address: SocketAddr, key: MulticastKey) -> Self {
        MulticastSender {
            address,
            key,
            sequence: 0,
            stream_tag: None,
            queue: VecDeque::new(),
            sent: 0,
            datagram: Vec::with_capacity(MAX_DATAGRAM),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn key(&self) -> &MulticastKey {
        &self.key
    }

    /// Datagrams handed out so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Starts sending the stream whose key begins with `stream_tag`.
    pub fn start(&mut self, stream_tag: [u8; 8]) {
        self.stream_tag = Some(stream_tag);
    }

    /// The stream stopped: later fragments are not sent.
    pub fn stop(&mut self) {
        self.stream_tag = None;
    }

    /// One fragment of the stream, as it travels on a member's media flow: its header
    /// and payload (docs/netgroup.md §3.8). Ignored while no stream is started.
    pub fn push_fragment(&mut self, _now: Instant, header: &[u8], payload: &[u8]) {
        let Some(tag) = self.stream_tag else {
            return;
        };
        self.sequence += 1;
        seal(
            &self.key,
            tag,
            self.sequence,
            PayloadKind::Fragment,
            &[header, payload],
            &mut self.datagram,
        );
        self.queue.push_back(self.datagram.clone());
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        let payload = self.queue.pop_front()?;
        self.sent += 1;
        Some(Transmit {
            destination: self.address,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multicast::datagram::Receiver;

    fn key() -> MulticastKey {
        MulticastKey {
            id: 1,
            secret: [3; 32],
        }
    }

    #[test]
    fn each_fragment_is_sealed_once_in_sequence_and_opens_to_its_bytes() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key());
        sender.push_fragment(Instant::ZERO, b"h", b"before the stream");
        assert!(
            sender.poll_transmit(Instant::ZERO).is_none(),
            "no stream yet"
        );
        sender.start([7; 8]);
        sender.push_fragment(Instant::ZERO, b"h1", b"first");
        sender.push_fragment(Instant::ZERO, b"h2", b"second");
        let mut receiver = Receiver::default();
        receiver.add_key(key());
        receiver.play_stream([7; 8]);
        for (seq, bytes) in [(1, &b"h1first"[..]), (2, b"h2second")] {
            let t = sender.poll_transmit(Instant::ZERO).unwrap();
            assert_eq!(t.destination, address);
            let d = receiver.open(&t.payload).unwrap();
            assert_eq!(
                (d.sequence, d.kind, d.payload),
                (seq, PayloadKind::Fragment, bytes)
            );
        }
        assert!(sender.poll_transmit(Instant::ZERO).is_none());
        sender.stop();
        sender.push_fragment(Instant::ZERO, b"h", b"after");
        assert!(sender.poll_transmit(Instant::ZERO).is_none(), "stopped");
        assert_eq!(sender.sent(), 2);
    }
}
