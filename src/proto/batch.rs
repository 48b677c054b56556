//! Batched output: a caller-owned arena of datagram slots that
//! [`Endpoint::poll_transmit_batch`](super::Endpoint::poll_transmit_batch) fills, and the
//! [`BatchCipher`] through which it encrypts several sessions' packets in lock-step.
//!
//! CBC is serial within a packet but packets of different sessions are independent, so
//! the endpoint lays out up to [`LOCKSTEP`] sessions' plaintexts in their slots, encrypts
//! them in one call, then finishes each (HMAC, scrambled session id) in place. The
//! ciphertext is written once, straight into the slot the kernel will send from.

use std::net::SocketAddr;

use aes::Aes128;

use super::cipher::cbc_encrypt_in_place;
use super::packet::MAX_SESSION_PACKET;

/// Bytes a slot holds: the largest sealed datagram (session id, sequence number,
/// checksum, packet, padding, HMAC) fits.
pub const SLOT_STRIDE: usize = 1536;
const _: () = assert!(4 + 10 + 2 + MAX_SESSION_PACKET + 16 + 32 <= SLOT_STRIDE);

/// Sessions whose packets are encrypted in one [`BatchCipher`] call.
pub const LOCKSTEP: usize = 16;

/// Datagrams to send: `capacity` fixed-stride slots in one allocation that never moves
/// while the batch lives (slot `i` starts at `arena_ptr() + i * SLOT_STRIDE`), so their
/// addresses can go to the kernel (io_uring `sendmsg`) and stay valid until it is done.
#[derive(Debug)]
pub struct TransmitBatch {
    arena: Box<[u8]>,
    /// Destination and length of each filled slot, in order.
    filled: Vec<(SocketAddr, usize)>,
}

impl TransmitBatch {
    pub fn new(capacity: usize) -> Self {
        TransmitBatch {
            arena: vec![0; capacity * SLOT_STRIDE].into_boxed_slice(),
            filled: Vec::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.arena.len() / SLOT_STRIDE
    }

    /// Filled slots.
    pub fn len(&self) -> usize {
        self.filled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filled.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Empties the batch for reuse; the arena stays where it is.
    pub fn clear(&mut self) {
        self.filled.clear();
    }

    /// Slot `i`'s destination and datagram.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let &(to, len) = self.filled.get(i)?;
        Some((to, &self.arena[i * SLOT_STRIDE..i * SLOT_STRIDE + len]))
    }

    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Where slot 0 starts; slot `i` is `i * SLOT_STRIDE` further.
    pub fn arena_ptr(&self) -> *const u8 {
        self.arena.as_ptr()
    }

    /// Appends an already sealed datagram (a handshake packet); false when full or too big.
    pub fn push(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        if self.is_full() || datagram.len() > SLOT_STRIDE {
            return false;
        }
        let at = self.len() * SLOT_STRIDE;
        self.arena[at..at + datagram.len()].copy_from_slice(datagram);
        self.filled.push((to, datagram.len()));
        true
    }

    /// The next free slot, to fill before `commit`.
    pub(super) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.arena[i * SLOT_STRIDE..(i + 1) * SLOT_STRIDE]
    }

    /// Slots `from..from + n`, each one `SLOT_STRIDE` long.
    pub(super) fn slots_mut(
        &mut self,
        from: usize,
        n: usize,
    ) -> std::slice::ChunksExactMut<'_, u8> {
        self.arena[from * SLOT_STRIDE..(from + n) * SLOT_STRIDE].chunks_exact_mut(SLOT_STRIDE)
    }

    /// Marks the next free slot filled.
    pub(super) fn commit(&mut self, to: SocketAddr, len: usize) {
        debug_assert!(!self.is_full() && len <= SLOT_STRIDE);
        self.filled.push((to, len));
    }
}

/// One packet to encrypt in place: AES-128-CBC under `key`, IV zero, `buf.len()` a
/// multiple of 16.
#[derive(Debug)]
pub struct BatchLane<'a> {
    pub key: &'a [u8; 16],
    /// The same key already expanded, for implementations that use the `aes` crate.
    pub cipher: &'a Aes128,
    pub buf: &'a mut [u8],
}

/// Encrypts several sessions' packets at once (RFC 7425 §4.2: AES-128-CBC, zero IV).
/// The engine provides a multi-buffer implementation; [`ScalarBatchCipher`] is the
/// reference every implementation must match byte for byte.
pub trait BatchCipher {
    fn encrypt_lanes(&mut self, lanes: &mut [BatchLane<'_>]);
}

/// One lane after another, through the same code as `PacketCipher::seal`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScalarBatchCipher;

impl BatchCipher for ScalarBatchCipher {
    fn encrypt_lanes(&mut self, lanes: &mut [BatchLane<'_>]) {
        for lane in lanes {
            cbc_encrypt_in_place(lane.cipher, lane.buf);
        }
    }
}
