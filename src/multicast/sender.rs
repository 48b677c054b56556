//! The server's IP multicast sender for one group (docs/ipmulticast.md): it seals each
//! fragment of the group's stream once, under the group's key, numbered in one sequence,
//! into a datagram for the multicast address; with FEC, R repair datagrams follow every
//! block of K fragment datagrams (`super::fec`).
//!
//! Datagrams leave paced ([`super::pacer`]): those the pacer holds back wait in a queue of
//! at most [`MAX_QUEUED`], and [`MulticastSender::poll_timeout`] says when the next may go.
//!
//! Sans-IO: fragments in ([`MulticastSender::push_fragment`]), datagrams out
//! ([`MulticastSender::poll_transmit`]).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::datagram::{seal, MulticastKey, PayloadKind, MAX_DATAGRAM};
use super::fec::{FecEncoder, FecScheme, BLOCK_MAX_AGE};
use super::pacer::Pacer;
use crate::proto::endpoint::Transmit;
use crate::proto::Instant;

/// Datagrams that may wait for the pacer. A stream that outruns its pacing this far
/// loses its oldest waiting datagrams (counted), not its newest: the player wants to
/// catch up, and FEC or pulls can make up for a few.
pub const MAX_QUEUED: usize = 1024;

#[derive(Debug)]
pub struct MulticastSender {
    address: SocketAddr,
    key: MulticastKey,
    /// Datagrams sealed under the key so far (the next gets one more).
    sequence: u64,
    /// The stream being sent: the first 8 bytes of its key. `None`: nothing is sent.
    stream_tag: Option<[u8; 8]>,
    /// Sealed datagrams not yet handed out, oldest first.
    queue: VecDeque<Vec<u8>>,
    pacer: Pacer,
    /// Datagrams handed out.
    sent: u64,
    /// Datagrams dropped from a full queue.
    dropped: u64,
    /// Repair datagrams sealed.
    repairs: u64,
    /// The open FEC block, if the stream is protected.
    fec: Option<FecEncoder>,
    repair_payloads: Vec<Vec<u8>>,
    datagram: Vec<u8>,
}

impl MulticastSender {
    /// A sender of datagrams sealed under `key` to `address`, with repair datagrams
    /// after every block if `fec` says K+R.
    pub fn new(address: SocketAddr, key: MulticastKey, fec: Option<FecScheme>) -> Self {
        MulticastSender {
            address,
            key,
            sequence: 0,
            stream_tag: None,
            queue: VecDeque::new(),
            pacer: Pacer::default(),
            sent: 0,
            dropped: 0,
            repairs: 0,
            fec: fec.map(FecEncoder::new),
            repair_payloads: Vec::new(),
            datagram: Vec::with_capacity(MAX_DATAGRAM),
        }
    }

    /// The FEC scheme, if the stream is protected.
    pub fn fec(&self) -> Option<FecScheme> {
        self.fec.as_ref().map(|f| f.scheme())
    }

    /// Repair datagrams sealed so far.
    pub fn repairs(&self) -> u64 {
        self.repairs
    }

    /// Datagrams dropped because the queue was full: the stream outran its pacing.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Datagrams waiting for the pacer.
    pub fn queued(&self) -> usize {
        self.queue.len()
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

    /// Starts sending the stream whose key begins with `stream_tag`. A block of the
    /// stream before, if one is open, is closed first: its repairs carry its own tag.
    pub fn start(&mut self, now: Instant, stream_tag: [u8; 8]) {
        self.close_block(now);
        self.stream_tag = Some(stream_tag);
    }

    /// The stream stopped: its last block is closed with the fragments it has (its
    /// repairs say how many), and later fragments are not sent.
    pub fn stop(&mut self, now: Instant) {
        self.close_block(now);
        self.stream_tag = None;
    }

    /// One fragment of the stream, as it travels on a member's media flow: its header
    /// and payload (docs/netgroup.md §3.8). Ignored while no stream is started.
    pub fn push_fragment(&mut self, now: Instant, header: &[u8], payload: &[u8]) {
        let Some(tag) = self.stream_tag else {
            return;
        };
        let protected = FecEncoder::fits(header.len() + payload.len());
        if !protected {
            // It cannot be in a block: the open one closes before it, it goes alone.
            self.close_block(now);
        }
        self.sequence += 1;
        seal(
            &self.key,
            tag,
            self.sequence,
            PayloadKind::Fragment,
            &[header, payload],
            &mut self.datagram,
        );
        self.enqueue(now);
        let full = match &mut self.fec {
            Some(fec) if protected => fec.add(now, self.sequence, &[header, payload]),
            _ => false,
        };
        if full {
            self.close_block(now);
        }
    }

    /// Closes the open block, if any: its repair datagrams take the next sequences, right
    /// after its last fragment (nothing else was sealed since).
    fn close_block(&mut self, now: Instant) {
        let (Some(fec), Some(tag)) = (&mut self.fec, self.stream_tag) else {
            return;
        };
        fec.finish(&mut self.repair_payloads);
        let mut payloads = std::mem::take(&mut self.repair_payloads);
        for payload in payloads.drain(..) {
            self.sequence += 1;
            seal(
                &self.key,
                tag,
                self.sequence,
                PayloadKind::Repair,
                &[&payload],
                &mut self.datagram,
            );
            self.enqueue(now);
            self.repairs += 1;
        }
        self.repair_payloads = payloads;
    }

    /// Queues the datagram just sealed, for the pacer to release.
    fn enqueue(&mut self, now: Instant) {
        self.pacer.fed(now, self.datagram.len());
        self.queue.push_back(self.datagram.clone());
        while self.queue.len() > MAX_QUEUED {
            self.queue.pop_front();
            self.dropped += 1;
        }
    }

    /// When there is something to do: the pacer lets the next datagram go (see
    /// [`MulticastSender::poll_transmit`]), or an open block reaches [`BLOCK_MAX_AGE`]
    /// (see [`MulticastSender::handle_timeout`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let block = self.block_deadline();
        let next = self.queue.front().map(|d| self.pacer.next_send(d.len()));
        block.into_iter().chain(next).min()
    }

    fn block_deadline(&self) -> Option<Instant> {
        let opened = self.fec.as_ref().and_then(|f| f.opened_at())?;
        Some(opened + BLOCK_MAX_AGE)
    }

    /// Closes a block open for [`BLOCK_MAX_AGE`] with the fragments it has.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.block_deadline().is_some_and(|t| now >= t) {
            self.close_block(now);
        }
    }

    /// The next datagram to send, if the pacer lets it go at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let len = self.queue.front()?.len();
        if !self.pacer.try_send(now, len) {
            return None;
        }
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
    use std::time::Duration;

    use super::*;
    use crate::multicast::datagram::{Receiver, HEADER_LEN};
    use crate::multicast::fec::MAX_PROTECTED;
    use crate::multicast::receiver::{Arrival, MulticastReceiver};

    fn key() -> MulticastKey {
        MulticastKey {
            id: 1,
            secret: [3; 32],
        }
    }

    #[test]
    fn each_fragment_is_sealed_once_in_sequence_and_opens_to_its_bytes() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key(), None);
        sender.push_fragment(Instant::ZERO, b"h", b"before the stream");
        assert!(
            sender.poll_transmit(Instant::ZERO).is_none(),
            "no stream yet"
        );
        sender.start(Instant::ZERO, [7; 8]);
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
        sender.stop(Instant::ZERO);
        sender.push_fragment(Instant::ZERO, b"h", b"after");
        assert!(sender.poll_transmit(Instant::ZERO).is_none(), "stopped");
        assert_eq!(sender.sent(), 2);
        assert_eq!(sender.repairs(), 0);
    }

    fn drain(sender: &mut MulticastSender, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| sender.poll_transmit(now))
            .map(|t| t.payload)
            .collect()
    }

    fn kinds(datagrams: &[Vec<u8>]) -> String {
        datagrams
            .iter()
            .map(|d| if d[HEADER_LEN - 1] == 1 { 'F' } else { 'R' })
            .collect()
    }

    #[test]
    fn repairs_follow_each_block_and_the_last_one_is_closed_at_stop() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let fec = FecScheme::new(4, 2).ok();
        let mut sender = MulticastSender::new(address, key(), fec);
        sender.start(Instant::ZERO, [7; 8]);
        let fragments: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        for f in &fragments {
            sender.push_fragment(Instant::ZERO, &f[..1], &f[1..]);
        }
        sender.stop(Instant::ZERO);
        let datagrams = drain(&mut sender, Instant::ZERO);
        assert_eq!(kinds(&datagrams), "FFFFRRFFFFRRFFRR");
        assert_eq!(sender.repairs(), 6);
        // A receiver that loses two of every block's datagrams still has every fragment.
        let mut receiver = MulticastReceiver::default();
        receiver.add_key(key());
        for (i, d) in datagrams.iter().enumerate() {
            if ![0, 3, 7, 10, 13, 14].contains(&i) {
                receiver.handle(d).unwrap();
            }
        }
        let mut got: Vec<(Vec<u8>, Arrival)> = std::iter::from_fn(|| receiver.poll_fragment())
            .map(|(b, a)| (b.to_vec(), a))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let repaired = got.iter().filter(|(_, a)| *a == Arrival::Repaired).count();
        assert_eq!(repaired, 4);
        assert_eq!(receiver.repaired(), 4);
        let got: Vec<Vec<u8>> = got.into_iter().map(|(b, _)| b).collect();
        assert_eq!(got, fragments);
    }

    #[test]
    fn a_keyframe_leaves_paced_in_order_and_the_timer_says_when() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key(), None);
        sender.start(Instant::ZERO, [7; 8]);
        let t0 = Instant::from_micros(5_000_000);
        for _ in 0..60 {
            sender.push_fragment(t0, b"h", &[0; 999]);
        }
        let first = drain(&mut sender, t0).len();
        assert!((1..=6).contains(&first), "{first} go at once");
        assert_eq!(sender.queued(), 60 - first);
        let mut now = t0;
        let mut sequences = Vec::new();
        let mut receiver = Receiver::default();
        receiver.add_key(key());
        while sender.queued() > 0 {
            let next = sender.poll_timeout().expect("a timer while datagrams wait");
            assert!(next > now, "the timer moves on");
            now = next;
            sender.handle_timeout(now);
            for d in drain(&mut sender, now) {
                sequences.push(receiver.open(&d).unwrap().sequence);
            }
        }
        assert_eq!(sequences, (first as u64 + 1..=60).collect::<Vec<_>>());
        // 60 kB fed at once is measured over 100 ms: it leaves within about 70 ms.
        let took = now.saturating_since(t0);
        assert!(took > Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_millis(100), "{took:?}");
        assert_eq!(sender.poll_timeout(), None);
        assert_eq!((sender.sent(), sender.dropped()), (60, 0));
    }

    #[test]
    fn a_stream_that_outruns_its_pacing_loses_its_oldest_datagrams() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key(), None);
        sender.start(Instant::ZERO, [7; 8]);
        for _ in 0..MAX_QUEUED + 100 {
            sender.push_fragment(Instant::ZERO, b"h", &[0; 999]);
        }
        assert_eq!(sender.queued(), MAX_QUEUED);
        assert_eq!(sender.dropped(), 100);
        let mut receiver = Receiver::default();
        receiver.add_key(key());
        let d = sender.poll_transmit(Instant::ZERO).unwrap();
        assert_eq!(
            receiver.open(&d.payload).unwrap().sequence,
            101,
            "the newest kept"
        );
    }

    #[test]
    fn a_new_stream_closes_the_block_of_the_one_before_under_its_tag() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key(), FecScheme::new(4, 1).ok());
        sender.start(Instant::ZERO, [7; 8]);
        sender.push_fragment(Instant::ZERO, b"h", b"old stream");
        sender.start(Instant::ZERO, [8; 8]);
        sender.push_fragment(Instant::ZERO, b"h", b"new stream");
        let datagrams = drain(&mut sender, Instant::ZERO);
        assert_eq!(kinds(&datagrams), "FRF");
        let tags: Vec<u8> = datagrams.iter().map(|d| d[8]).collect();
        assert_eq!(tags, vec![7, 7, 8]);
    }

    #[test]
    fn a_block_open_too_long_is_closed_with_what_it_has() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key(), FecScheme::new(8, 1).ok());
        sender.start(Instant::ZERO, [7; 8]);
        let t0 = Instant::from_micros(1_000_000);
        sender.push_fragment(t0, b"h", b"lonely");
        assert_eq!(kinds(&drain(&mut sender, t0)), "F");
        assert_eq!(sender.poll_timeout(), Some(t0 + BLOCK_MAX_AGE));
        sender.handle_timeout(t0 + BLOCK_MAX_AGE / 2);
        assert!(drain(&mut sender, t0).is_empty(), "not yet");
        sender.handle_timeout(t0 + BLOCK_MAX_AGE);
        assert_eq!(kinds(&drain(&mut sender, t0 + BLOCK_MAX_AGE)), "R");
        assert_eq!(sender.poll_timeout(), None);
    }

    #[test]
    fn a_fragment_too_long_for_a_block_closes_the_open_one_and_goes_alone() {
        let address: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let mut sender = MulticastSender::new(address, key(), FecScheme::new(4, 1).ok());
        sender.start(Instant::ZERO, [7; 8]);
        sender.push_fragment(Instant::ZERO, b"h", b"short");
        sender.push_fragment(Instant::ZERO, b"h", &[0; MAX_PROTECTED]);
        sender.push_fragment(Instant::ZERO, b"h", b"short again");
        sender.stop(Instant::ZERO);
        assert_eq!(kinds(&drain(&mut sender, Instant::ZERO)), "FRFFR");
    }
}
