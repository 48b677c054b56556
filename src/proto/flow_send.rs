//! Sending flows (RFC 7016 §3.6.2): messages cut into fragments with sequence numbers,
//! retransmitted until acknowledged, or abandoned when stale (partial reliability).

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunk::Fragmentation;
use super::time::Instant;

/// One fragment the sender still owns. Its bytes are a slice of the message's buffer,
/// which may be shared with every other session sending the same message (fan-out):
/// queuing a shared message copies nothing.
#[derive(Debug, Clone)]
pub struct SendFragment {
    pub data: Bytes,
    pub fragmentation: Fragmentation,
    pub final_fragment: bool,
    /// Abandoned: sent as an empty fragment with the abandon flag from now on.
    pub abandoned: bool,
    pub in_flight: bool,
    /// Session-wide transmission number of the last send (orders NAK counting).
    pub tsn: u64,
    pub nak_count: u32,
    pub sent_once: bool,
}

impl SendFragment {
    /// Bytes this fragment occupies in flight.
    pub fn wire_len(&self) -> usize {
        if self.abandoned {
            0
        } else {
            self.data.len()
        }
    }
}

/// A flow's unacknowledged fragments by sequence number. Sequence numbers are handed
/// out in order and acknowledged mostly in order, so they live in a ring indexed by
/// `seq - base`, with holes where fragments were acknowledged out of order: inserting
/// and removing cost O(1) and allocate only when the window grows, where a tree would
/// allocate and rebalance for every fragment of every session in a fan-out.
#[derive(Debug, Default)]
pub struct FragmentWindow {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<SendFragment>>,
    count: usize,
}

impl FragmentWindow {
    /// Adds the fragment with the next sequence number (one past every one so far).
    fn push(&mut self, seq: u64, fragment: SendFragment) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        debug_assert_eq!(seq, self.base + self.slots.len() as u64);
        self.slots.push_back(Some(fragment));
        self.count += 1;
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    pub fn get(&self, seq: &u64) -> Option<&SendFragment> {
        self.slots.get(self.index(*seq)?)?.as_ref()
    }

    pub fn get_mut(&mut self, seq: &u64) -> Option<&mut SendFragment> {
        let i = self.index(*seq)?;
        self.slots.get_mut(i)?.as_mut()
    }

    pub fn remove(&mut self, seq: &u64) -> Option<SendFragment> {
        let i = self.index(*seq)?;
        let fragment = self.slots.get_mut(i)?.take()?;
        self.count -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(fragment)
    }

    /// Removes every fragment numbered `from..=to`, handing each to `each`: what an
    /// acknowledgement range does, without collecting the numbers first.
    fn remove_range(&mut self, from: u64, to: u64, mut each: impl FnMut(SendFragment)) {
        let span = self.span(from..=to);
        for slot in self.slots.range_mut(span) {
            if let Some(fragment) = slot.take() {
                self.count -= 1;
                each(fragment);
            }
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Slot indexes covering sequence numbers in `range`.
    fn span(&self, range: impl std::ops::RangeBounds<u64>) -> std::ops::Range<usize> {
        use std::ops::Bound;
        let len = self.slots.len() as u64;
        let start = match range.start_bound() {
            Bound::Included(&s) => s.saturating_sub(self.base),
            Bound::Excluded(&s) => (s + 1).saturating_sub(self.base),
            Bound::Unbounded => 0,
        }
        .min(len);
        let end = match range.end_bound() {
            Bound::Included(&e) => (e + 1).saturating_sub(self.base),
            Bound::Excluded(&e) => e.saturating_sub(self.base),
            Bound::Unbounded => len,
        }
        .min(len);
        start as usize..end.max(start) as usize
    }

    /// Fragments with sequence numbers in `range`, lowest first.
    pub fn range(
        &self,
        range: impl std::ops::RangeBounds<u64>,
    ) -> impl Iterator<Item = (u64, &SendFragment)> {
        let span = self.span(range);
        let first = self.base + span.start as u64;
        self.slots
            .range(span)
            .zip(first..)
            .filter_map(|(f, seq)| Some((seq, f.as_ref()?)))
    }

    pub fn range_mut(
        &mut self,
        range: impl std::ops::RangeBounds<u64>,
    ) -> impl Iterator<Item = (u64, &mut SendFragment)> {
        let span = self.span(range);
        let first = self.base + span.start as u64;
        self.slots
            .range_mut(span)
            .zip(first..)
            .filter_map(|(f, seq)| Some((seq, f.as_mut()?)))
    }

    pub fn values(&self) -> impl Iterator<Item = &SendFragment> {
        self.slots.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// The lowest sequence number still outstanding (holes at the front are trimmed).
    pub fn lowest(&self) -> Option<u64> {
        (self.count > 0).then_some(self.base)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.count = 0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFlowState {
    Open,
    /// Final fragment queued; waiting for everything to be acknowledged.
    Closing,
    /// All acknowledged after close, or rejected by the receiver.
    Complete,
}

#[derive(Debug)]
pub struct SendFlow {
    pub id: u64,
    pub metadata: Vec<u8>,
    pub return_flow: Option<u64>,
    pub state: SendFlowState,
    next_sequence: u64,
    /// Unacknowledged fragments by sequence number.
    pub outstanding: FragmentWindow,
    /// Sequence numbers to (re)transmit, lowest first.
    pub queue: VecDeque<u64>,
    /// Last receive-window advertisement in bytes (starts permissive until the first ack).
    pub peer_window: u64,
    /// The receiver has acknowledged at least once: options need not be repeated.
    pub options_acknowledged: bool,
    pub exception: Option<u64>,
    pub priority: Priority,
    /// Bytes of fragments currently in flight (kept, not summed, on the per-packet path).
    in_flight_bytes: u64,
    /// Highest sequence number ever transmitted: nothing above it can be in flight.
    highest_sent: u64,
    /// Message deadlines as `(deadline, first, last)` sequence ranges, earliest first.
    /// Deadlines are nearly always queued in order (now + a fixed lifetime), so a
    /// sorted ring costs a push at the back, not a tree node per message.
    deadlines: VecDeque<(Instant, u64, u64)>,
    /// Every sequence number up to this one is acknowledged or abandoned (the last
    /// forward sequence number computed).
    abandoned_through: std::cell::Cell<u64>,
}

/// Fragment `i` of a message cut into `n`.
fn fragmentation(n: usize, i: usize) -> Fragmentation {
    match (n, i) {
        (1, _) => Fragmentation::Whole,
        (_, 0) => Fragmentation::Begin,
        (_, i) if i == n - 1 => Fragmentation::End,
        _ => Fragmentation::Middle,
    }
}

/// A session's sending flows by id. A session has a handful (a NetConnection flow, and
/// per stream a control, audio and video flow) and ids only grow, so a vector in id
/// order serves: a lookup is a short binary search in one allocation, where a tree
/// would chase a node per level through memory on every message of a fan-out.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: Vec<SendFlow>,
}

impl FlowTable {
    /// Adds a flow whose id is above every id so far.
    pub fn insert(&mut self, id: u64, flow: SendFlow) {
        debug_assert!(self.flows.last().map_or(true, |f| f.id < id));
        debug_assert_eq!(flow.id, id);
        self.flows.push(flow);
    }

    pub fn get(&self, id: &u64) -> Option<&SendFlow> {
        let i = self.flows.binary_search_by_key(id, |f| f.id).ok()?;
        self.flows.get(i)
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut SendFlow> {
        let i = self.flows.binary_search_by_key(id, |f| f.id).ok()?;
        self.flows.get_mut(i)
    }

    pub fn values(&self) -> impl Iterator<Item = &SendFlow> {
        self.flows.iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut SendFlow> {
        self.flows.iter_mut()
    }

    /// `(id, flow)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &SendFlow)> {
        self.flows.iter().map(|f| (&f.id, f))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&u64, &mut SendFlow) -> bool) {
        self.flows.retain_mut(|f| {
            let id = f.id;
            keep(&id, f)
        });
    }
}

/// A sending flow's priority, 0 (lowest) to 7. Higher-priority flows are served first;
/// flows at [`Priority::TIME_CRITICAL`] or above carry time-critical data, which sets the
/// TC flag on packets (RFC 7016 §2.2.4, §3.5.2.3). Media flows sit there; bulk below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    pub const BACKGROUND: Priority = Priority(0);
    pub const ROUTINE: Priority = Priority(2);
    pub const TIME_CRITICAL: Priority = Priority(4);
    pub const IMMEDIATE: Priority = Priority(5);
    pub const HIGHEST: Priority = Priority(7);

    /// Levels above 7 are clamped to 7.
    pub fn new(level: u8) -> Self {
        Priority(level.min(7))
    }

    pub fn level(self) -> u8 {
        self.0
    }

    pub fn is_time_critical(self) -> bool {
        self >= Priority::TIME_CRITICAL
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::ROUTINE
    }
}

impl SendFlow {
    pub fn new(id: u64, metadata: Vec<u8>, return_flow: Option<u64>) -> Self {
        SendFlow {
            id,
            metadata,
            return_flow,
            state: SendFlowState::Open,
            next_sequence: 1,
            outstanding: FragmentWindow::default(),
            queue: VecDeque::new(),
            peer_window: 65536,
            options_acknowledged: false,
            exception: None,
            priority: Priority::ROUTINE,
            in_flight_bytes: 0,
            highest_sent: 0,
            deadlines: VecDeque::new(),
            abandoned_through: std::cell::Cell::new(0),
        }
    }

    /// Cuts `message` into fragments of at most `max_fragment` bytes and queues them.
    pub fn queue_message(
        &mut self,
        message: &[u8],
        max_fragment: usize,
        deadline: Option<Instant>,
    ) {
        self.queue_message_parts(&[message], max_fragment, deadline);
    }

    /// Queues `message` (shared: its fragments are slices of it, not copies), cut into
    /// fragments of at most `max_fragment` bytes.
    pub fn queue_shared_message(
        &mut self,
        message: &Bytes,
        max_fragment: usize,
        deadline: Option<Instant>,
    ) {
        if self.state != SendFlowState::Open {
            return;
        }
        let max_fragment = max_fragment.max(1);
        let n = message.len().div_ceil(max_fragment).max(1);
        let first = self.next_sequence;
        for i in 0..n {
            let start = i * max_fragment;
            let end = (start + max_fragment).min(message.len());
            self.push_fragment(message.slice(start..end), fragmentation(n, i), false);
        }
        if let Some(d) = deadline {
            self.add_deadline((d, first, self.next_sequence - 1));
        }
    }

    /// Queues the concatenation of `parts` as one message (copied once into a buffer of
    /// its own), cut into fragments of at most `max_fragment` bytes. Messages shared by
    /// many sessions go through [`SendFlow::queue_shared_message`] instead.
    pub fn queue_message_parts(
        &mut self,
        parts: &[&[u8]],
        max_fragment: usize,
        deadline: Option<Instant>,
    ) {
        if self.state != SendFlowState::Open {
            return;
        }
        self.queue_shared_message(&Bytes::from(parts.concat()), max_fragment, deadline);
    }

    fn push_fragment(&mut self, data: Bytes, fragmentation: Fragmentation, final_fragment: bool) {
        let seq = self.next_sequence;
        self.next_sequence += 1;
        self.outstanding.push(
            seq,
            SendFragment {
                data,
                fragmentation,
                final_fragment,
                abandoned: false,
                in_flight: false,
                tsn: 0,
                nak_count: 0,
                sent_once: false,
            },
        );
        self.queue.push_back(seq);
    }

    /// Queues the final fragment (RFC 7016 §3.6.2.3.2): an empty message with `fin`.
    pub fn close(&mut self) {
        if self.state == SendFlowState::Open {
            self.push_fragment(Bytes::new(), Fragmentation::Whole, true);
            self.state = SendFlowState::Closing;
        }
    }

    /// The forward sequence number: every sequence number up to it is acknowledged or
    /// abandoned (RFC 7016 §3.6.2.2).
    ///
    /// Abandoned fragments stay outstanding until acknowledged, and an overloaded flow
    /// can hold thousands; a fragment never stops being abandoned, so the scan resumes
    /// where the last one stopped instead of walking them again for every packet.
    pub fn forward_sequence(&self) -> u64 {
        let mut fsn = self.next_sequence - 1;
        let from = self.abandoned_through.get() + 1;
        for (seq, frag) in self.outstanding.range(from..) {
            if !frag.abandoned {
                fsn = seq - 1;
                break;
            }
        }
        self.abandoned_through.set(fsn);
        fsn
    }

    fn add_deadline(&mut self, entry: (Instant, u64, u64)) {
        let at = self
            .deadlines
            .iter()
            .rposition(|e| *e <= entry)
            .map_or(0, |i| i + 1);
        self.deadlines.insert(at, entry);
    }

    /// Drops deadlines of messages wholly acknowledged: without this a session would
    /// wake at the deadline of every message it ever sent (in a fan-out, every player
    /// for every frame) only to find nothing left to abandon.
    fn forget_settled_deadlines(&mut self) {
        let lowest = self.outstanding.lowest().unwrap_or(self.next_sequence);
        while self
            .deadlines
            .front()
            .is_some_and(|&(_, _, last)| last < lowest)
        {
            self.deadlines.pop_front();
        }
    }

    /// The earliest message deadline still pending, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|&(d, _, _)| d)
    }

    /// Marks fragments of messages past their deadline abandoned; returns the bytes that
    /// were in flight among them.
    pub fn abandon_stale(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        while let Some(&(deadline, first, last)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            for frag in self.outstanding.range_mut(first..=last).map(|(_, f)| f) {
                if frag.abandoned {
                    continue;
                }
                if frag.in_flight {
                    freed += frag.data.len();
                }
                frag.abandoned = true;
                frag.data = Bytes::new();
            }
        }
        self.in_flight_bytes -= freed as u64;
        freed
    }

    /// Bytes in flight on this flow (what the receiver's window is measured against).
    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }

    /// Records a transmission of `seq` with session transmission number `tsn`; returns the
    /// bytes it puts in flight.
    pub fn mark_sent(&mut self, seq: u64, tsn: u64) -> usize {
        let Some(frag) = self.outstanding.get_mut(&seq) else {
            return 0;
        };
        let wire = frag.wire_len();
        if !frag.in_flight {
            self.in_flight_bytes += wire as u64;
        }
        frag.in_flight = true;
        frag.sent_once = true;
        frag.tsn = tsn;
        frag.nak_count = 0;
        self.highest_sent = self.highest_sent.max(seq);
        wire
    }

    /// One strike against every in-flight fragment sent before `max_tsn` (RFC 7016
    /// §3.6.2.4: a later transmission was acknowledged, so these were passed over).
    pub fn count_naks(&mut self, max_tsn: u64) {
        for frag in self
            .outstanding
            .range_mut(..=self.highest_sent)
            .map(|(_, f)| f)
        {
            if frag.in_flight && frag.tsn < max_tsn {
                frag.nak_count += 1;
            }
        }
    }

    /// Takes fragments with `naks` strikes out of flight and queues them for
    /// retransmission; returns (fragments declared lost, their bytes).
    pub fn take_lost(&mut self, naks: u32) -> (usize, usize) {
        let mut lost = Vec::new();
        for (seq, frag) in self.outstanding.range_mut(..=self.highest_sent) {
            if frag.in_flight && frag.nak_count >= naks {
                lost.push(seq);
            }
        }
        let count = lost.len();
        (count, lost.into_iter().map(|seq| self.requeue(seq)).sum())
    }

    /// Everything in flight is presumed lost (retransmission timeout); returns its
    /// bytes and how many fragments.
    pub fn requeue_all_in_flight(&mut self) -> (usize, usize) {
        let in_flight: Vec<u64> = self
            .outstanding
            .range(..=self.highest_sent)
            .filter(|(_, f)| f.in_flight)
            .map(|(s, _)| s)
            .collect();
        let count = in_flight.len();
        (
            in_flight.into_iter().map(|seq| self.requeue(seq)).sum(),
            count,
        )
    }

    fn requeue(&mut self, seq: u64) -> usize {
        let Some(frag) = self.outstanding.get_mut(&seq) else {
            return 0;
        };
        let wire = if frag.in_flight { frag.wire_len() } else { 0 };
        frag.in_flight = false;
        frag.nak_count = 0;
        self.in_flight_bytes -= wire as u64;
        // The queue stays sorted: retransmissions go out lowest sequence first.
        if let Err(at) = self.queue.binary_search(&seq) {
            self.queue.insert(at, seq);
        }
        wire
    }

    /// The receiver rejected the flow: drop everything; returns bytes that were in flight.
    pub fn reject(&mut self, code: u64) -> usize {
        let freed = self.in_flight_bytes as usize;
        self.exception = Some(code);
        self.outstanding.clear();
        self.queue.clear();
        self.deadlines.clear();
        self.in_flight_bytes = 0;
        freed
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Bytes not yet acknowledged (what the receiver's window is measured against).
    pub fn unacknowledged_bytes(&self) -> u64 {
        self.outstanding.values().map(|f| f.data.len() as u64).sum()
    }

    /// Removes acknowledged `[from, to]`; returns (bytes acked that were in flight,
    /// greatest tsn among them).
    pub fn acknowledge(&mut self, from: u64, to: u64) -> (usize, u64) {
        let mut removed = false;
        let mut bytes = 0;
        let mut max_tsn = 0;
        self.outstanding.remove_range(from, to, |f| {
            removed = true;
            if f.in_flight {
                bytes += f.wire_len();
            }
            if f.sent_once {
                max_tsn = max_tsn.max(f.tsn);
            }
        });
        if !removed {
            return (0, 0);
        }
        self.in_flight_bytes -= bytes as u64;
        self.forget_settled_deadlines();
        // Acknowledged sequence numbers left in the queue are skipped when it is drained.
        if self.state == SendFlowState::Closing && self.outstanding.is_empty() {
            self.state = SendFlowState::Complete;
        }
        (bytes, max_tsn)
    }

    pub fn is_complete(&self) -> bool {
        self.state == SendFlowState::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_message_in_parts_fragments_like_the_joined_message() {
        let header = [9u8, 0, 0, 0, 7];
        let payload: Vec<u8> = (0..2600u32).map(|i| i as u8).collect();
        let joined = [&header[..], &payload].concat();
        let (mut parts, mut whole) = (
            SendFlow::new(1, vec![], None),
            SendFlow::new(2, vec![], None),
        );
        parts.queue_message_parts(&[&header, &[], &payload], 1000, None);
        whole.queue_message(&joined, 1000, None);
        let frags = |f: &SendFlow| -> Vec<(Vec<u8>, Fragmentation)> {
            f.outstanding
                .values()
                .map(|x| (x.data.to_vec(), x.fragmentation))
                .collect()
        };
        assert_eq!(frags(&parts), frags(&whole));
        assert_eq!(parts.outstanding.len(), 3);
        let mut empty = SendFlow::new(3, vec![], None);
        empty.queue_message_parts(&[], 1000, None);
        assert_eq!(frags(&empty), vec![(vec![], Fragmentation::Whole)]);
    }

    #[test]
    fn messages_fragment_and_forward_sequence_tracks_abandonment() {
        let mut f = SendFlow::new(1, vec![], None);
        f.queue_message(
            &[1; 2500],
            1000,
            Some(Instant::ZERO + Duration::from_millis(100)),
        );
        let kinds: Vec<_> = f.outstanding.values().map(|x| x.fragmentation).collect();
        assert_eq!(
            kinds,
            vec![
                Fragmentation::Begin,
                Fragmentation::Middle,
                Fragmentation::End
            ]
        );
        assert_eq!(f.forward_sequence(), 0);
        f.abandon_stale(Instant::ZERO + Duration::from_millis(100));
        assert_eq!(f.forward_sequence(), 3);
        f.acknowledge(1, 3);
        assert!(f.outstanding.is_empty());
    }

    #[test]
    fn acknowledged_messages_stop_waking_the_sender() {
        let at = |ms| Some(Instant::ZERO + Duration::from_millis(ms));
        let mut f = SendFlow::new(1, vec![], None);
        f.queue_message(&[1; 1500], 1000, at(100)); // sequence numbers 1-2
        f.queue_message(&[2; 10], 1000, at(110)); // 3
        f.queue_message(&[3; 10], 1000, at(120)); // 4
        assert_eq!(f.next_deadline(), at(100));
        // Half of the first message: its deadline still matters.
        f.acknowledge(1, 1);
        assert_eq!(f.next_deadline(), at(100));
        // The second message alone, out of order: the first still holds the front.
        f.acknowledge(3, 3);
        assert_eq!(f.next_deadline(), at(100));
        f.acknowledge(2, 2);
        assert_eq!(
            f.next_deadline(),
            at(120),
            "settled messages leave no deadline"
        );
        f.acknowledge(4, 4);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn closing_completes_when_all_acknowledged() {
        let mut f = SendFlow::new(1, vec![], None);
        f.queue_message(b"x", 100, None);
        f.close();
        assert_eq!(f.state, SendFlowState::Closing);
        f.acknowledge(1, 2);
        assert!(f.is_complete());
    }

    #[test]
    fn a_shared_message_is_fragmented_by_reference() {
        let message = Bytes::from((0..2600u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut f = SendFlow::new(1, vec![], None);
        f.queue_shared_message(&message, 1000, None);
        let frags: Vec<&SendFragment> = f.outstanding.values().collect();
        assert_eq!(frags.len(), 3);
        let mut offset = 0;
        for frag in frags {
            assert_eq!(
                frag.data.as_ptr(),
                message[offset..].as_ptr(),
                "a fragment points into the shared buffer"
            );
            offset += frag.data.len();
        }
        assert_eq!(offset, message.len());
    }

    proptest::proptest! {
        #[test]
        fn fragment_window_matches_an_ordered_map(
            ops in proptest::collection::vec((0u8..5, 0u64..40, 0u64..40), 1..200)
        ) {
            let mut window = FragmentWindow::default();
            let mut model = std::collections::BTreeMap::new();
            let mut next = 1u64;
            let fragment = |n: u64| SendFragment {
                data: Bytes::from(n.to_be_bytes().to_vec()),
                fragmentation: Fragmentation::Whole,
                final_fragment: false,
                abandoned: false,
                in_flight: false,
                tsn: n,
                nak_count: 0,
                sent_once: false,
            };
            for (op, a, b) in ops {
                match op {
                    0 | 1 => {
                        window.push(next, fragment(next));
                        model.insert(next, next);
                        next += 1;
                    }
                    2 => {
                        let seq = next.saturating_sub(a + 1);
                        proptest::prop_assert_eq!(
                            window.remove(&seq).map(|f| f.tsn),
                            model.remove(&seq)
                        );
                    }
                    3 => {
                        let (lo, hi) = (a.min(b), a.max(b));
                        let mut got = Vec::new();
                        window.remove_range(lo, hi, |f| got.push(f.tsn));
                        let want: Vec<u64> = model.range(lo..=hi).map(|(&s, _)| s).collect();
                        model.retain(|&s, _| !(lo..=hi).contains(&s));
                        proptest::prop_assert_eq!(got, want);
                    }
                    _ => {
                        let (lo, hi) = (a.min(b), a.max(b));
                        let got: Vec<u64> = window.range(lo..=hi).map(|(s, f)| {
                            assert_eq!(s, f.tsn);
                            s
                        }).collect();
                        let want: Vec<u64> = model.range(lo..=hi).map(|(&s, _)| s).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                proptest::prop_assert_eq!(window.len(), model.len());
                proptest::prop_assert_eq!(
                    window.get(&next.saturating_sub(1)).map(|f| f.tsn),
                    model.get(&next.saturating_sub(1)).copied()
                );
            }
        }
    }
}
