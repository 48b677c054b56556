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

/// Memory a batch's slots live in: the batch's own allocation, or memory the engine lends
/// it (an AF_XDP UMEM region, so the encryption writes the frames the NIC sends).
pub trait SlotMemory: Send {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl SlotMemory for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Datagrams to send: fixed-stride slots in memory that never moves while the batch lives
/// (slot `i`'s datagram starts `i * stride + headroom` bytes into it), so their addresses
/// can go to the kernel (io_uring `sendmsg`, an AF_XDP TX ring) and stay valid until it is
/// done. The `headroom` before each datagram is where a caller that builds its own
/// Ethernet/IP/UDP headers puts them.
pub struct TransmitBatch {
    arena: Box<dyn SlotMemory>,
    stride: usize,
    headroom: usize,
    /// Destination and length of each filled slot, in order.
    filled: Vec<(SocketAddr, usize)>,
}

impl std::fmt::Debug for TransmitBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransmitBatch")
            .field("capacity", &self.capacity())
            .field("stride", &self.stride)
            .field("headroom", &self.headroom)
            .field("filled", &self.filled.len())
            .finish()
    }
}

impl TransmitBatch {
    /// `capacity` slots of [`SLOT_STRIDE`] bytes, back to back, in the batch's own memory.
    pub fn new(capacity: usize) -> Self {
        let arena: Box<[u8]> = vec![0; capacity * SLOT_STRIDE].into_boxed_slice();
        TransmitBatch::over(Box::new(arena), SLOT_STRIDE, 0)
    }

    /// Slots every `stride` bytes of `memory`, each datagram `headroom` bytes in.
    ///
    /// # Panics
    /// When a datagram of [`SLOT_STRIDE`] bytes does not fit after the headroom.
    pub fn over(memory: Box<dyn SlotMemory>, stride: usize, headroom: usize) -> Self {
        assert!(
            headroom + SLOT_STRIDE <= stride,
            "a slot holds a whole datagram"
        );
        let capacity = memory.bytes().len() / stride;
        TransmitBatch {
            arena: memory,
            stride,
            headroom,
            filled: Vec::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.arena.bytes().len() / self.stride
    }

    /// Bytes from one slot's start to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Bytes before each datagram in its slot.
    pub fn headroom(&self) -> usize {
        self.headroom
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

    /// Empties the batch for reuse; the memory stays where it is.
    pub fn clear(&mut self) {
        self.filled.clear();
    }

    fn datagram_at(&self, i: usize) -> usize {
        i * self.stride + self.headroom
    }

    /// Slot `i`'s destination and datagram.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let &(to, len) = self.filled.get(i)?;
        let at = self.datagram_at(i);
        Some((to, &self.arena.bytes()[at..at + len]))
    }

    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Filled slot `i`'s destination, datagram length, and the whole slot (headroom
    /// first) to write headers into.
    pub fn filled_slot_mut(&mut self, i: usize) -> Option<(SocketAddr, usize, &mut [u8])> {
        let &(to, len) = self.filled.get(i)?;
        let at = i * self.stride;
        Some((to, len, &mut self.arena.bytes_mut()[at..at + self.stride]))
    }

    /// Where the memory starts; slot `i`'s datagram is `i * stride + headroom` further.
    pub fn arena_ptr(&self) -> *const u8 {
        self.arena.bytes().as_ptr()
    }

    /// Appends an already sealed datagram (a handshake packet); false when full or too big.
    pub fn push(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        if self.is_full() || datagram.len() > SLOT_STRIDE {
            return false;
        }
        let at = self.datagram_at(self.len());
        self.arena.bytes_mut()[at..at + datagram.len()].copy_from_slice(datagram);
        self.filled.push((to, datagram.len()));
        true
    }

    /// Slot `i`'s datagram space, to fill before `commit`.
    pub(super) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let at = self.datagram_at(i);
        &mut self.arena.bytes_mut()[at..at + SLOT_STRIDE]
    }

    /// The datagram space of slots `from..from + n`, each [`SLOT_STRIDE`] long.
    pub(super) fn slots_mut(
        &mut self,
        from: usize,
        n: usize,
    ) -> impl Iterator<Item = &mut [u8]> + '_ {
        let (stride, headroom) = (self.stride, self.headroom);
        self.arena.bytes_mut()[from * stride..(from + n) * stride]
            .chunks_exact_mut(stride)
            .map(move |slot| &mut slot[headroom..headroom + SLOT_STRIDE])
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
