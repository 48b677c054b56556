//! Flow synchronization (RFC 7425 §5.2): the flows of one NetStream (commands, audio,
//! video, data) are independent RTMFP flows, so a state change sent on one could
//! overtake media still queued on another. The sender puts a FlowSync user control
//! message `(sync id, count)` on each of the `count` flows; the receiver holds each flow
//! at its FlowSync until all `count` have reached it, then lets them all go on. A flow
//! that reached a barrier and then closed (senders retire media flows right after their
//! FlowSync) still counts there.

use std::collections::{HashMap, VecDeque};

use super::tc::{kind, user_control};

/// Messages held behind an open barrier, per flow, before we give up holding.
const MAX_HELD_PER_FLOW: usize = 4096;

/// The FlowSync message: user control 34, sync id, count (timestamp 0).
pub fn flow_sync_message(sync_id: u32, count: u32) -> Vec<u8> {
    let mut m = vec![kind::USER_CONTROL, 0, 0, 0, 0];
    m.extend_from_slice(&user_control::FLOW_SYNC.to_be_bytes());
    m.extend_from_slice(&sync_id.to_be_bytes());
    m.extend_from_slice(&count.to_be_bytes());
    m
}

/// `(sync id, count)` if `message` (a whole flow message, type byte first) is a FlowSync.
pub fn parse_flow_sync(message: &[u8]) -> Option<(u32, u32)> {
    if message.len() < 15
        || message[0] != kind::USER_CONTROL
        || message[5..7] != user_control::FLOW_SYNC.to_be_bytes()
    {
        return None;
    }
    let id = u32::from_be_bytes([message[7], message[8], message[9], message[10]]);
    let count = u32::from_be_bytes([message[11], message[12], message[13], message[14]]);
    Some((id, count))
}

/// The receiving side: holds flows at barriers and releases them together.
#[derive(Debug, Default)]
pub struct FlowSyncReceiver {
    /// Flows that reached each open barrier.
    barriers: HashMap<u32, Vec<u64>>,
    /// Flows held at a barrier, with what arrived on them since.
    held: HashMap<u64, VecDeque<Vec<u8>>>,
}

impl FlowSyncReceiver {
    /// One message from `flow`, in the flow's order. Messages ready for the application
    /// are appended to `ready`, in order, with their flow.
    pub fn receive(&mut self, flow: u64, message: Vec<u8>, ready: &mut Vec<(u64, Vec<u8>)>) {
        if let Some(queue) = self.held.get_mut(&flow) {
            if queue.len() < MAX_HELD_PER_FLOW {
                queue.push_back(message);
                return;
            }
            // A sender that never completes its barrier must not make us hoard: let go.
            self.release_flow(flow, ready);
            return self.receive(flow, message, ready);
        }
        let Some((sync_id, count)) = parse_flow_sync(&message) else {
            ready.push((flow, message));
            return;
        };
        let arrived = self.barriers.entry(sync_id).or_default();
        if !arrived.contains(&flow) {
            arrived.push(flow);
        }
        if arrived.len() >= count as usize {
            let flows = self.barriers.remove(&sync_id).unwrap_or_default();
            for f in flows {
                self.release_flow(f, ready);
            }
        } else {
            self.held.insert(flow, VecDeque::new());
        }
    }

    fn release_flow(&mut self, flow: u64, ready: &mut Vec<(u64, Vec<u8>)>) {
        let Some(queue) = self.held.remove(&flow) else {
            return;
        };
        for m in queue {
            self.receive(flow, m, ready);
        }
    }
}

/// Numbers barriers on the sending side.
#[derive(Debug, Default)]
pub struct FlowSyncSender {
    next_id: u32,
}

impl FlowSyncSender {
    /// A fresh FlowSync message for `count` flows.
    pub fn next(&mut self, count: u32) -> Vec<u8> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        flow_sync_message(id, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8) -> Vec<u8> {
        vec![kind::VIDEO, 0, 0, 0, 0, tag]
    }

    #[test]
    fn a_status_behind_a_barrier_waits_for_media_on_the_other_flows() {
        let mut r = FlowSyncReceiver::default();
        let mut ready = Vec::new();
        const CONTROL: u64 = 1;
        const VIDEO: u64 = 2;
        // The control flow's barrier and the status behind it arrive first...
        r.receive(CONTROL, flow_sync_message(7, 2), &mut ready);
        r.receive(CONTROL, msg(0xee), &mut ready);
        assert!(ready.is_empty(), "held at the barrier");
        // ...then the last video frames and the video flow's barrier.
        r.receive(VIDEO, msg(1), &mut ready);
        r.receive(VIDEO, msg(2), &mut ready);
        r.receive(VIDEO, flow_sync_message(7, 2), &mut ready);
        let order: Vec<u8> = ready.iter().map(|(_, m)| m[5]).collect();
        assert_eq!(order, vec![1, 2, 0xee], "frames first, then the status");
    }

    #[test]
    fn a_flow_closed_after_its_flow_sync_still_counts_at_the_barrier() {
        let mut r = FlowSyncReceiver::default();
        let mut ready = Vec::new();
        r.receive(2, msg(1), &mut ready);
        r.receive(2, flow_sync_message(1, 2), &mut ready);
        // Flow 2 is closed now; it still counts at the barrier it reached.
        r.receive(1, flow_sync_message(1, 2), &mut ready);
        r.receive(1, msg(5), &mut ready);
        assert_eq!(ready, vec![(2, msg(1)), (1, msg(5))]);
        assert_eq!(parse_flow_sync(&flow_sync_message(9, 4)), Some((9, 4)));
        assert_eq!(parse_flow_sync(&msg(1)), None);
    }
}
