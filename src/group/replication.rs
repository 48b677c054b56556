//! Object replication (Flash's `NetGroup.addHaveObjects`, `addWantObjects`,
//! `writeRequestedObject`, `denyRequestedObject`): members say which numbered objects
//! they have, and a member that wants some fetches each from a neighbour that has it.
//! The application holds the objects: a neighbour's request comes to it as an event and
//! it answers with the object (or refuses).
//!
//! Nothing public shows Flash's wire format for this, so it is ours (docs/netgroup.md
//! §9), on the same `GR 1d` flow as routed messages, told apart by the first byte:
//! - `03` have: VLU count, then that many (first, last) VLU pairs: the sender's whole
//!   have set, sent to a neighbour when it comes up and whenever the set changes;
//! - `04` request: VLU index;
//! - `05` object: VLU index, one AMF0 value;
//! - `06` denied: VLU index (the neighbour does not have it, or its application said no).
//!
//! Sans-IO: this keeps the sets and decides; the member sends what it returns.

use std::collections::HashMap;
use std::time::Duration;

use crate::flash::amf::Value;
use crate::proto::endpoint::SessionId;
use crate::proto::vlu::{put_vlu, Reader};
use crate::proto::Instant;

use super::posting::{self, PostError};

/// Ranges one have set may hold; past it the set is refused as unreadable.
pub const MAX_RANGES: usize = 1024;
/// A request unanswered this long is asked of another neighbour.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests a member has out at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// Sorted, disjoint, inclusive ranges of object indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSet {
    ranges: Vec<(u64, u64)>,
}

impl IndexSet {
    pub fn contains(&self, index: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, last)| last < index);
        self.ranges.get(i).is_some_and(|&(first, _)| first <= index)
    }

    /// Adds `first..=last`; true if the set changed.
    pub fn add(&mut self, first: u64, last: u64) -> bool {
        if first > last {
            return false;
        }
        let before = self.ranges.clone();
        let (mut lo, mut hi) = (first, last);
        self.ranges.retain(|&(a, b)| {
            let touches = a <= hi.saturating_add(1) && lo <= b.saturating_add(1);
            if touches {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            !touches
        });
        let at = self.ranges.partition_point(|&(a, _)| a < lo);
        self.ranges.insert(at, (lo, hi));
        self.ranges != before
    }

    /// Removes `first..=last`; true if the set changed.
    pub fn remove(&mut self, first: u64, last: u64) -> bool {
        if first > last {
            return false;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut changed = false;
        for &(a, b) in &self.ranges {
            if b < first || a > last {
                out.push((a, b));
                continue;
            }
            changed = true;
            if a < first {
                out.push((a, first - 1));
            }
            if b > last {
                out.push((last + 1, b));
            }
        }
        self.ranges = out;
        changed
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Indexes in the set, lowest first, at most `limit`.
    fn first_indexes(&self, limit: usize) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b).take(limit)
    }
}

/// A replication message on a `GR 1d` flow.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationMessage {
    Have(IndexSet),
    Request(u64),
    /// The index and the object, AMF0.
    Object(u64, Vec<u8>),
    Denied(u64),
}

/// First bytes of the replication messages.
pub const KINDS: [u8; 4] = [0x03, 0x04, 0x05, 0x06];

impl ReplicationMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ReplicationMessage::Have(set) => {
                out.push(0x03);
                put_vlu(&mut out, set.ranges.len() as u64);
                for &(a, b) in &set.ranges {
                    put_vlu(&mut out, a);
                    put_vlu(&mut out, b);
                }
            }
            ReplicationMessage::Request(i) => {
                out.push(0x04);
                put_vlu(&mut out, *i);
            }
            ReplicationMessage::Object(i, value) => {
                out.push(0x05);
                put_vlu(&mut out, *i);
                out.extend_from_slice(value);
            }
            ReplicationMessage::Denied(i) => {
                out.push(0x06);
                put_vlu(&mut out, *i);
            }
        }
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<ReplicationMessage, PostError> {
        let (&kind, rest) = bytes.split_first().ok_or(PostError::Truncated)?;
        let mut r = Reader::new(rest);
        let vlu = |r: &mut Reader<'_>| r.vlu().map_err(|_| PostError::Truncated);
        let message = match kind {
            0x03 => {
                let n = vlu(&mut r)?;
                if n > MAX_RANGES as u64 {
                    return Err(PostError::Unreadable);
                }
                let mut set = IndexSet::default();
                for _ in 0..n {
                    let (a, b) = (vlu(&mut r)?, vlu(&mut r)?);
                    if a > b {
                        return Err(PostError::Unreadable);
                    }
                    set.add(a, b);
                }
                ReplicationMessage::Have(set)
            }
            0x04 => ReplicationMessage::Request(vlu(&mut r)?),
            0x05 => {
                let i = vlu(&mut r)?;
                let value = r.rest().to_vec();
                posting::read_post(&value)?;
                ReplicationMessage::Object(i, value)
            }
            0x06 => ReplicationMessage::Denied(vlu(&mut r)?),
            other => return Err(PostError::UnknownKind(other)),
        };
        if !r.is_empty() {
            return Err(PostError::Unreadable);
        }
        Ok(message)
    }
}

/// A neighbour's request, as the application answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRequest {
    pub session: SessionId,
    pub index: u64,
}

/// What the member must send or tell its application.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationAction {
    Send(SessionId, ReplicationMessage),
    /// A neighbour asks for an object we have: the application answers with
    /// `write_requested_object` or `deny_requested_object`.
    Requested(ObjectRequest),
    /// An object we wanted came.
    Fetched {
        index: u64,
        object: Value,
    },
}

/// One member's replication state.
#[derive(Debug, Default)]
pub struct Replication {
    have: IndexSet,
    want: IndexSet,
    /// Each neighbour's have set.
    theirs: HashMap<SessionId, IndexSet>,
    /// Requests out: index -> (neighbour, when).
    in_flight: HashMap<u64, (SessionId, Instant)>,
    /// Neighbours that refused an index (not asked again for it).
    denied: HashMap<u64, Vec<SessionId>>,
    /// Requests the application has not answered yet.
    asked: Vec<ObjectRequest>,
}

impl Replication {
    pub fn have(&self) -> &IndexSet {
        &self.have
    }

    pub fn want(&self) -> &IndexSet {
        &self.want
    }

    /// Our have set changed: every neighbour hears it.
    fn announce(&self, neighbours: &[SessionId], out: &mut Vec<ReplicationAction>) {
        for &s in neighbours {
            out.push(ReplicationAction::Send(
                s,
                ReplicationMessage::Have(self.have.clone()),
            ));
        }
    }

    pub fn add_have(
        &mut self,
        first: u64,
        last: u64,
        neighbours: &[SessionId],
        out: &mut Vec<ReplicationAction>,
    ) {
        if self.have.add(first, last) {
            self.announce(neighbours, out);
        }
    }

    pub fn remove_have(
        &mut self,
        first: u64,
        last: u64,
        neighbours: &[SessionId],
        out: &mut Vec<ReplicationAction>,
    ) {
        if self.have.remove(first, last) {
            self.announce(neighbours, out);
        }
    }

    pub fn add_want(
        &mut self,
        now: Instant,
        first: u64,
        last: u64,
        out: &mut Vec<ReplicationAction>,
    ) {
        self.want.add(first, last);
        self.fetch(now, out);
    }

    pub fn remove_want(&mut self, first: u64, last: u64) {
        self.want.remove(first, last);
        self.in_flight.retain(|i, _| !(first..=last).contains(i));
    }

    /// A neighbour came up: it hears what we have.
    pub fn on_neighbour(&mut self, session: SessionId, out: &mut Vec<ReplicationAction>) {
        if !self.have.is_empty() {
            out.push(ReplicationAction::Send(
                session,
                ReplicationMessage::Have(self.have.clone()),
            ));
        }
    }

    pub fn on_neighbour_gone(
        &mut self,
        now: Instant,
        session: SessionId,
        out: &mut Vec<ReplicationAction>,
    ) {
        self.theirs.remove(&session);
        self.asked.retain(|r| r.session != session);
        let lost = self.in_flight.len();
        self.in_flight.retain(|_, (s, _)| *s != session);
        if self.in_flight.len() != lost {
            self.fetch(now, out);
        }
    }

    pub fn on_message(
        &mut self,
        now: Instant,
        session: SessionId,
        message: ReplicationMessage,
        out: &mut Vec<ReplicationAction>,
    ) {
        match message {
            ReplicationMessage::Have(set) => {
                self.theirs.insert(session, set);
                self.fetch(now, out);
            }
            ReplicationMessage::Request(index) => {
                let request = ObjectRequest { session, index };
                if self.have.contains(index) && !self.asked.contains(&request) {
                    self.asked.push(request);
                    out.push(ReplicationAction::Requested(request));
                } else if !self.have.contains(index) {
                    out.push(ReplicationAction::Send(
                        session,
                        ReplicationMessage::Denied(index),
                    ));
                }
            }
            ReplicationMessage::Object(index, bytes) => {
                let from_asked = self
                    .in_flight
                    .get(&index)
                    .is_some_and(|(s, _)| *s == session);
                if from_asked && self.want.contains(index) {
                    self.in_flight.remove(&index);
                    self.want.remove(index, index);
                    self.denied.remove(&index);
                    if let Ok((_, object)) = posting::read_post(&bytes) {
                        out.push(ReplicationAction::Fetched { index, object });
                    }
                }
                self.fetch(now, out);
            }
            ReplicationMessage::Denied(index) => {
                if self
                    .in_flight
                    .get(&index)
                    .is_some_and(|(s, _)| *s == session)
                {
                    self.in_flight.remove(&index);
                    self.denied.entry(index).or_default().push(session);
                }
                self.fetch(now, out);
            }
        }
    }

    /// The application's answer to a request.
    pub fn answer(
        &mut self,
        request: ObjectRequest,
        object: Option<&Value>,
        out: &mut Vec<ReplicationAction>,
    ) -> Result<(), PostError> {
        let Some(at) = self.asked.iter().position(|r| *r == request) else {
            return Ok(());
        };
        self.asked.swap_remove(at);
        let message = match object {
            Some(value) => ReplicationMessage::Object(request.index, posting::serialize(value)?.0),
            None => ReplicationMessage::Denied(request.index),
        };
        out.push(ReplicationAction::Send(request.session, message));
        Ok(())
    }

    /// Requests what we want and is not asked for yet, each of a neighbour that has it
    /// (spread over them, skipping those that refused it).
    fn fetch(&mut self, now: Instant, out: &mut Vec<ReplicationAction>) {
        let mut holders: Vec<SessionId> = self.theirs.keys().copied().collect();
        holders.sort_unstable();
        if holders.is_empty() {
            return;
        }
        let wanted: Vec<u64> = self.want.first_indexes(4 * MAX_IN_FLIGHT).collect();
        for index in wanted {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            if self.in_flight.contains_key(&index) {
                continue;
            }
            let refused = self.denied.get(&index);
            let start = (index as usize) % holders.len();
            let holder = (0..holders.len())
                .map(|k| holders[(start + k) % holders.len()])
                .find(|s| {
                    self.theirs.get(s).is_some_and(|set| set.contains(index))
                        && !refused.is_some_and(|r| r.contains(s))
                });
            if let Some(session) = holder {
                self.in_flight.insert(index, (session, now));
                out.push(ReplicationAction::Send(
                    session,
                    ReplicationMessage::Request(index),
                ));
            }
        }
    }

    /// When a request times out next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight
            .values()
            .map(|(_, at)| *at + REQUEST_TIMEOUT)
            .min()
    }

    /// Requests unanswered for [`REQUEST_TIMEOUT`] go to another neighbour.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<ReplicationAction>) {
        let expired: Vec<(u64, SessionId)> = self
            .in_flight
            .iter()
            .filter(|(_, (_, at))| now >= *at + REQUEST_TIMEOUT)
            .map(|(i, (s, _))| (*i, *s))
            .collect();
        for (index, session) in &expired {
            self.in_flight.remove(index);
            self.denied.entry(*index).or_default().push(*session);
        }
        if !expired.is_empty() {
            self.fetch(now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sets_merge_split_and_answer_membership() {
        let mut s = IndexSet::default();
        assert!(s.add(5, 9));
        assert!(s.add(10, 12)); // adjacent: merges
        assert!(s.add(20, 20));
        assert!(!s.add(6, 8)); // already in
        assert_eq!(s.ranges(), &[(5, 12), (20, 20)]);
        assert!(s.contains(12) && !s.contains(13) && s.contains(20) && !s.contains(4));
        assert!(s.remove(7, 8));
        assert_eq!(s.ranges(), &[(5, 6), (9, 12), (20, 20)]);
        assert!(!s.remove(30, 40));
        assert!(s.add(0, 100));
        assert_eq!(s.ranges(), &[(0, 100)]);
    }

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        let mut set = IndexSet::default();
        set.add(1, 3);
        set.add(1000, 1_000_000);
        let (value, _) = posting::serialize(&Value::String("obj".into())).unwrap();
        for m in [
            ReplicationMessage::Have(set),
            ReplicationMessage::Request(77),
            ReplicationMessage::Object(77, value),
            ReplicationMessage::Denied(77),
        ] {
            assert_eq!(ReplicationMessage::parse(&m.encode()).unwrap(), m);
        }
        assert!(ReplicationMessage::parse(&[0x03, 0x01, 0x05, 0x02]).is_err()); // 5 > 2
        assert!(ReplicationMessage::parse(&[0x04]).is_err());
        assert!(ReplicationMessage::parse(&[0x05, 0x01, 0xff]).is_err());
        assert!(ReplicationMessage::parse(&[0x04, 0x01, 0x00]).is_err()); // trailing byte
    }

    #[test]
    fn a_want_is_fetched_from_a_holder_and_retried_elsewhere_on_refusal() {
        let (a, b) = (SessionId::from(1u32), SessionId::from(2u32));
        let now = Instant::ZERO;
        let mut r = Replication::default();
        let mut out = Vec::new();
        r.add_want(now, 7, 7, &mut out);
        assert!(out.is_empty(), "nobody has it yet");
        let mut has7 = IndexSet::default();
        has7.add(0, 10);
        r.on_message(now, a, ReplicationMessage::Have(has7.clone()), &mut out);
        r.on_message(now, b, ReplicationMessage::Have(has7), &mut out);
        let first = match out.as_slice() {
            [ReplicationAction::Send(s, ReplicationMessage::Request(7))] => *s,
            other => panic!("{other:?}"),
        };
        out.clear();
        r.on_message(now, first, ReplicationMessage::Denied(7), &mut out);
        let second = match out.as_slice() {
            [ReplicationAction::Send(s, ReplicationMessage::Request(7))] => *s,
            other => panic!("{other:?}"),
        };
        assert_ne!(first, second);
        out.clear();
        let (bytes, _) = posting::serialize(&Value::Number(7.0)).unwrap();
        r.on_message(now, second, ReplicationMessage::Object(7, bytes), &mut out);
        assert_eq!(
            out,
            [ReplicationAction::Fetched {
                index: 7,
                object: Value::Number(7.0)
            }]
        );
        assert!(!r.want().contains(7));
    }
}
