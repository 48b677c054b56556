//! A client's sending flows, one per (stream id, lane), kept inline in its record: the
//! fan-out looks one up for every player and every media message, and a list on the
//! heap of its own would cost a cache miss there each time.

use crate::flash::tc::Lane;

/// A NetStream's lane.
pub type FlowKey = (u32, Lane);

/// A player of one stream has up to four lanes (control, audio, video, data).
const INLINE: usize = 4;

#[derive(Debug, Default)]
pub struct OutboundFlows {
    inline: [Option<(FlowKey, u64)>; INLINE],
    /// Beyond four: a client playing or publishing several streams.
    spill: Vec<(FlowKey, u64)>,
}

impl OutboundFlows {
    pub fn get(&self, key: FlowKey) -> Option<u64> {
        self.iter().find(|&(k, _)| k == key).map(|(_, flow)| flow)
    }

    /// Records `flow` as the lane's flow, replacing any before it.
    pub fn insert(&mut self, key: FlowKey, flow: u64) {
        self.remove(key);
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some((key, flow)),
            None => self.spill.push((key, flow)),
        }
    }

    pub fn remove(&mut self, key: FlowKey) {
        for slot in &mut self.inline {
            if slot.is_some_and(|(k, _)| k == key) {
                *slot = None;
            }
        }
        self.spill.retain(|&(k, _)| k != key);
    }

    /// Every (lane, flow), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, u64)> + '_ {
        self.inline
            .iter()
            .flatten()
            .chain(self.spill.iter())
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_beyond_the_inline_ones_are_kept_and_removed_like_the_rest() {
        let mut flows = OutboundFlows::default();
        let lanes = [Lane::Control, Lane::Audio, Lane::Video, Lane::Data];
        for stream in 1..=2u32 {
            for (i, &lane) in lanes.iter().enumerate() {
                flows.insert((stream, lane), u64::from(stream) * 10 + i as u64);
            }
        }
        assert_eq!(flows.iter().count(), 8);
        assert_eq!(flows.get((2, Lane::Video)), Some(22));
        assert_eq!(flows.get((1, Lane::Data)), Some(13));
        flows.remove((1, Lane::Audio));
        flows.remove((2, Lane::Data));
        assert_eq!(flows.get((1, Lane::Audio)), None);
        assert_eq!(flows.get((2, Lane::Data)), None);
        assert_eq!(flows.iter().count(), 6);
        // A freed inline slot is reused; a replaced lane keeps one entry.
        flows.insert((3, Lane::Audio), 31);
        flows.insert((3, Lane::Audio), 32);
        assert_eq!(flows.get((3, Lane::Audio)), Some(32));
        assert_eq!(flows.iter().count(), 7);
    }
}
