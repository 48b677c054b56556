//! A member's IP multicast intake (docs/ipmulticast.md): datagrams in, checked
//! ([`super::datagram::Receiver`]), and the fragments they bring out, those that came and
//! those rebuilt from repair datagrams ([`super::fec::FecDecoder`]).
//!
//! Sans-IO: [`MulticastReceiver::handle`] takes a datagram, [`MulticastReceiver::poll_fragment`]
//! gives the fragments to take in, each once.

use std::collections::VecDeque;

use bytes::Bytes;

use super::datagram::{DropReason, MulticastKey, PayloadKind, Receiver};
use super::fec::FecDecoder;

/// How a fragment came by IP multicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In its own datagram.
    Received,
    /// Rebuilt from its block's other fragments and repairs.
    Repaired,
}

#[derive(Debug, Default)]
pub struct MulticastReceiver {
    checks: Receiver,
    fec: FecDecoder,
    ready: VecDeque<(Bytes, Arrival)>,
}

impl MulticastReceiver {
    /// Takes a key the server handed us (see [`Receiver::add_key`]).
    pub fn add_key(&mut self, key: MulticastKey) {
        self.checks.add_key(key);
    }

    /// Takes only datagrams of the stream whose key starts with `tag`.
    pub fn play_stream(&mut self, tag: [u8; 8]) {
        self.checks.play_stream(tag);
    }

    /// A datagram from the multicast address: dropped (and counted) unless it checks out
    /// and, for a repair, fits its block; the fragments it brings, or rebuilds, wait for
    /// [`MulticastReceiver::poll_fragment`].
    pub fn handle(&mut self, datagram: &[u8]) -> Result<(), DropReason> {
        let d = self.checks.open(datagram)?;
        let mut result = Ok(());
        match d.kind {
            PayloadKind::Fragment => {
                let payload = Bytes::copy_from_slice(d.payload);
                self.fec.on_fragment(d.key_id, d.sequence, payload.clone());
                self.ready.push_back((payload, Arrival::Received));
            }
            PayloadKind::Repair => {
                let (key_id, sequence) = (d.key_id, d.sequence);
                let refused = self.fec.on_repair(key_id, sequence, d.payload).is_err();
                if refused {
                    self.checks.drop_taken(DropReason::BadRepair);
                    result = Err(DropReason::BadRepair);
                }
            }
        }
        while let Some(p) = self.fec.poll_rebuilt() {
            self.ready.push_back((p, Arrival::Repaired));
        }
        result
    }

    /// The next fragment (its payload as a fragment datagram carries it) to take in.
    pub fn poll_fragment(&mut self) -> Option<(Bytes, Arrival)> {
        self.ready.pop_front()
    }

    /// Datagrams dropped, by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.checks.drops().iter().map(|(r, n)| (*r, *n))
    }

    /// Datagrams taken (fragments and repairs).
    pub fn taken(&self) -> u64 {
        self.checks.taken()
    }

    /// Fragments rebuilt from repairs.
    pub fn repaired(&self) -> u64 {
        self.fec.recovered()
    }
}
