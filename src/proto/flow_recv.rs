//! Receiving flows (RFC 7016 §3.6.3): reassembly of fragments into messages, in-order or
//! as-soon-as-complete delivery, skipping what the sender abandoned, and the
//! acknowledgement state (cumulative ack, ranges, receive window).

use std::collections::BTreeMap;

use super::chunk::{AckRange, Fragmentation};

/// How a receiving flow hands messages up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Messages in sequence order; a gap holds back later messages until filled or
    /// abandoned by the sender.
    InOrder,
    /// Each message as soon as all its fragments are in (media that tolerates reordering).
    AsSoonAsComplete,
}

#[derive(Debug, Clone)]
struct ReceivedFragment {
    fragmentation: Fragmentation,
    data: Vec<u8>,
    abandoned: bool,
    delivered: bool,
}

#[derive(Debug)]
pub struct RecvFlow {
    pub id: u64,
    pub metadata: Vec<u8>,
    pub return_flow: Option<u64>,
    pub delivery: Delivery,
    /// Fragments held above the cumulative point (or not yet delivered).
    held: BTreeMap<u64, ReceivedFragment>,
    /// Every sequence number <= this is received, abandoned, or below the sender's FSN.
    cumulative: u64,
    /// In-order delivery has handed up everything <= this.
    delivered_through: u64,
    final_sequence: Option<u64>,
    capacity: u64,
    held_bytes: u64,
    pub rejected: Option<u64>,
    /// Something changed that the sender should hear about.
    pub ack_due: bool,
}

impl RecvFlow {
    pub fn new(id: u64, metadata: Vec<u8>, return_flow: Option<u64>, capacity: u64) -> Self {
        RecvFlow {
            id,
            metadata,
            return_flow,
            delivery: Delivery::InOrder,
            held: BTreeMap::new(),
            cumulative: 0,
            delivered_through: 0,
            final_sequence: None,
            capacity,
            held_bytes: 0,
            rejected: None,
            ack_due: false,
        }
    }

    /// Takes one fragment; returns true if it was new (not a duplicate).
    pub fn on_fragment(
        &mut self,
        sequence: u64,
        forward_sequence: u64,
        fragmentation: Fragmentation,
        abandoned: bool,
        final_fragment: bool,
        data: &[u8],
    ) -> bool {
        self.ack_due = true;
        if final_fragment {
            self.final_sequence = Some(sequence);
        }
        let new = sequence > self.cumulative && !self.held.contains_key(&sequence);
        if new {
            self.held_bytes += data.len() as u64;
            self.held.insert(
                sequence,
                ReceivedFragment {
                    fragmentation,
                    data: data.to_vec(),
                    abandoned,
                    delivered: false,
                },
            );
        }
        self.advance(forward_sequence);
        new
    }

    /// Moves the cumulative point over contiguous fragments and over what the sender
    /// says is settled (its forward sequence number).
    fn advance(&mut self, forward_sequence: u64) {
        if forward_sequence > self.cumulative {
            // Anything at or below the sender's FSN that we lack will never come.
            self.cumulative = forward_sequence;
        }
        while self.held.contains_key(&(self.cumulative + 1)) {
            self.cumulative += 1;
        }
    }

    /// Messages ready for the application, in the order they should be delivered.
    pub fn take_messages(&mut self) -> Vec<Vec<u8>> {
        match self.delivery {
            Delivery::InOrder => self.take_in_order(),
            Delivery::AsSoonAsComplete => self.take_complete(),
        }
    }

    fn take_in_order(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let start = self.delivered_through + 1;
            let Some(first) = self.held.get(&start) else {
                if start <= self.cumulative {
                    // A hole below the cumulative point: abandoned by the sender.
                    self.delivered_through = start;
                    self.drop_partial_after_gap();
                    continue;
                }
                break;
            };
            if first.abandoned || !first.fragmentation.starts_message() {
                self.discard(start);
                self.delivered_through = start;
                continue;
            }
            // Find the end of this message.
            let mut end = start;
            let mut complete = false;
            let mut broken = false;
            loop {
                match self.held.get(&end) {
                    Some(f) if f.abandoned => {
                        broken = true;
                        break;
                    }
                    Some(f) if f.fragmentation.ends_message() => {
                        complete = true;
                        break;
                    }
                    Some(f) if end != start && f.fragmentation.starts_message() => {
                        broken = true;
                        break;
                    }
                    Some(_) => end += 1,
                    None => {
                        broken = end <= self.cumulative;
                        break;
                    }
                }
            }
            if complete {
                let mut msg = Vec::new();
                for s in start..=end {
                    if let Some(f) = self.held.remove(&s) {
                        self.held_bytes -= f.data.len() as u64;
                        msg.extend_from_slice(&f.data);
                    }
                }
                self.delivered_through = end;
                out.push(msg);
            } else if broken {
                // The message can never complete: drop what we hold of it. `end` is past
                // `start` here (the first fragment exists and starts a message).
                for s in start..end {
                    self.discard(s);
                }
                self.delivered_through = end - 1;
            } else {
                break;
            }
        }
        self.forget_below_cumulative();
        out
    }

    fn drop_partial_after_gap(&mut self) {
        // Middle/end fragments right after a gap cannot start a message.
        while let Some(f) = self.held.get(&(self.delivered_through + 1)) {
            if f.fragmentation.starts_message() && !f.abandoned {
                break;
            }
            let s = self.delivered_through + 1;
            self.discard(s);
            self.delivered_through = s;
        }
    }

    fn take_complete(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let starts: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, f)| !f.delivered && !f.abandoned && f.fragmentation.starts_message())
            .map(|(&s, _)| s)
            .collect();
        for start in starts {
            let mut end = start;
            let mut complete = false;
            while let Some(f) = self.held.get(&end) {
                if f.abandoned || (end != start && f.fragmentation.starts_message()) {
                    break;
                }
                if f.fragmentation.ends_message() {
                    complete = true;
                    break;
                }
                end += 1;
            }
            if complete {
                let mut msg = Vec::new();
                for s in start..=end {
                    if let Some(f) = self.held.get_mut(&s) {
                        msg.extend_from_slice(&f.data);
                        self.held_bytes -= f.data.len() as u64;
                        f.data = Vec::new();
                        f.delivered = true;
                    }
                }
                out.push(msg);
            }
        }
        self.delivered_through = self.cumulative;
        self.forget_below_cumulative();
        out
    }

    fn discard(&mut self, seq: u64) {
        if let Some(f) = self.held.remove(&seq) {
            self.held_bytes -= f.data.len() as u64;
        }
    }

    fn forget_below_cumulative(&mut self) {
        let keep_from = self.delivered_through.min(self.cumulative) + 1;
        let stale: Vec<u64> = self.held.range(..keep_from).map(|(&s, _)| s).collect();
        for s in stale {
            if self.delivery == Delivery::AsSoonAsComplete || s <= self.delivered_through {
                self.discard(s);
            }
        }
    }

    /// All fragments through the final one arrived and were handed up.
    pub fn is_finished(&self) -> bool {
        self.final_sequence
            .is_some_and(|f| self.cumulative >= f && self.delivered_through >= f)
    }

    /// Something is held above a hole (acknowledge at once, RFC 7016 §3.6.3.4).
    pub fn has_gap(&self) -> bool {
        self.held.range(self.cumulative + 1..).next().is_some()
    }

    pub fn cumulative_ack(&self) -> u64 {
        self.cumulative
    }

    /// Receive window to advertise, in 1024-byte blocks (RFC 7016 §2.3.13).
    pub fn buffer_blocks(&self) -> u64 {
        if self.rejected.is_some() {
            return 0;
        }
        self.capacity.saturating_sub(self.held_bytes) / 1024
    }

    /// Ranges of fragments held above the cumulative point (RFC 7016 §2.3.14).
    pub fn ack_ranges(&self, max_ranges: usize) -> Vec<AckRange> {
        let mut ranges = Vec::new();
        let mut last = self.cumulative;
        let mut iter = self
            .held
            .range(self.cumulative + 1..)
            .map(|(&s, _)| s)
            .peekable();
        while let Some(start) = iter.next() {
            if ranges.len() == max_ranges {
                break;
            }
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            ranges.push(AckRange {
                holes_minus_one: start - last - 2,
                received_minus_one: end - start,
            });
            last = end;
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Fragmentation::*;

    #[test]
    fn reassembles_out_of_order_fragments_in_order() {
        let mut f = RecvFlow::new(1, vec![], None, 1 << 20);
        f.on_fragment(2, 0, End, false, false, b"lo");
        assert!(f.take_messages().is_empty());
        assert_eq!(
            f.ack_ranges(8),
            vec![AckRange {
                holes_minus_one: 0,
                received_minus_one: 0
            }]
        );
        f.on_fragment(3, 0, Whole, false, false, b"!");
        f.on_fragment(1, 0, Begin, false, false, b"hel");
        assert_eq!(f.take_messages(), vec![b"hello".to_vec(), b"!".to_vec()]);
        assert_eq!(f.cumulative_ack(), 3);
    }

    #[test]
    fn abandoned_gap_is_skipped_and_partial_message_dropped() {
        let mut f = RecvFlow::new(1, vec![], None, 1 << 20);
        f.on_fragment(2, 0, End, false, false, b"tail");
        f.on_fragment(3, 0, Whole, false, false, b"next");
        assert!(f.take_messages().is_empty(), "held back behind the hole");
        // The sender abandoned 1 (its forward sequence number moves to 1).
        f.on_fragment(4, 1, Whole, false, false, b"later");
        assert_eq!(f.take_messages(), vec![b"next".to_vec(), b"later".to_vec()]);
    }

    #[test]
    fn as_soon_as_complete_delivers_past_holes() {
        let mut f = RecvFlow::new(1, vec![], None, 1 << 20);
        f.delivery = Delivery::AsSoonAsComplete;
        f.on_fragment(3, 0, Whole, false, false, b"c");
        assert_eq!(f.take_messages(), vec![b"c".to_vec()]);
        f.on_fragment(1, 0, Whole, false, false, b"a");
        assert_eq!(f.take_messages(), vec![b"a".to_vec()]);
    }
}
