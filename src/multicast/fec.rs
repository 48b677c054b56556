//! Forward error correction for the IP multicast stream (docs/ipmulticast.md, "Repair
//! datagrams"): after every block of K fragment datagrams the sender sends R repair
//! datagrams (kind 02), Reed-Solomon shards computed over the block's fragments, so that
//! a receiver that lost up to R of the block's K+R datagrams rebuilds the fragments it
//! lost without asking anyone.
//!
//! A block is K fragment datagrams of consecutive sequences `first..first+K`, and its R
//! repair datagrams take the R sequences right after (`first+K+i` for repair `i`): the
//! sender seals nothing else in between. Fragments differ in length, the shards of a
//! block do not: each fragment's shard is its length (2 bytes, big-endian), its bytes,
//! and zeros up to the block's shard length, the longest fragment's plus 2, made even.
//!
//! Repair payload (after the datagram's kind byte):
//!
//! ```text
//! 0      8        9   10      11          13
//! | first (u64) | K | R | index | shard len (u16) | repair shard (shard len bytes) |
//! ```
//!
//! Sans-IO: payloads in, payloads out. Authentication and replay checks are the
//! datagram's (`super::datagram`): a repair payload reaches this module only once its
//! datagram checked out.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use rustc_hash::FxHashMap as HashMap;

use super::datagram::{HEADER_LEN, MAX_DATAGRAM, TAG_LEN};
use crate::proto::Instant;

/// Bytes of a repair payload before its shard.
pub const REPAIR_HEADER_LEN: usize = 13;
/// Datagrams in a block at most, fragments and repairs (K and R travel in a byte each).
pub const MAX_BLOCK: usize = 255;
/// The longest shard: a repair datagram fits in [`MAX_DATAGRAM`].
pub const MAX_SHARD: usize = MAX_DATAGRAM - HEADER_LEN - REPAIR_HEADER_LEN - TAG_LEN;
/// The longest fragment payload a block can cover (a shard holds it and its length). The
/// group fragmenter's are far shorter (959 bytes and a header of a few).
pub const MAX_PROTECTED: usize = MAX_SHARD - 2;
/// Recent fragment payloads a receiver keeps for the blocks their repairs will name: a
/// block holds at most [`MAX_BLOCK`] datagrams, so this covers the largest one.
pub const FRAGMENTS_KEPT: usize = 256;
/// Blocks a receiver keeps at once (those whose repairs came and that are not rebuilt
/// yet, and those done, so that their late repairs are not taken for new blocks).
pub const BLOCKS_KEPT: usize = 4;

/// K+R: K fragment datagrams per block, R repair datagrams after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecScheme {
    fragments: u8,
    repairs: u8,
}

/// Why a K+R text is not a scheme we use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecSchemeError {
    #[error("{0:?} is not K+R; give two numbers such as \"8+2\"")]
    NotKPlusR(String),
    #[error("K is 0; a block needs at least one fragment")]
    NoFragments,
    #[error("R is 0; a block needs at least one repair datagram (leave FEC out for none)")]
    NoRepairs,
    #[error("K+R is {0}; a block holds at most 255 datagrams")]
    TooLarge(u64),
}

impl FecScheme {
    pub fn new(fragments: u64, repairs: u64) -> Result<FecScheme, FecSchemeError> {
        if fragments == 0 {
            return Err(FecSchemeError::NoFragments);
        }
        if repairs == 0 {
            return Err(FecSchemeError::NoRepairs);
        }
        let total = fragments.saturating_add(repairs);
        if total > MAX_BLOCK as u64 {
            return Err(FecSchemeError::TooLarge(total));
        }
        Ok(FecScheme {
            fragments: fragments as u8,
            repairs: repairs as u8,
        })
    }

    /// `"8+2"`: 8 fragments per block, 2 repairs.
    pub fn parse(text: &str) -> Result<FecScheme, FecSchemeError> {
        let not = || FecSchemeError::NotKPlusR(text.to_string());
        let (k, r) = text.split_once('+').ok_or_else(not)?;
        let number = |s: &str| -> Result<u64, FecSchemeError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not());
            }
            // Digits only: anything too long for a u64 is far over 255 anyway.
            Ok(s.parse().unwrap_or(u64::MAX))
        };
        FecScheme::new(number(k)?, number(r)?)
    }

    /// K: fragment datagrams per block.
    pub fn fragments(self) -> usize {
        self.fragments.into()
    }

    /// R: repair datagrams per block.
    pub fn repairs(self) -> usize {
        self.repairs.into()
    }
}

impl fmt::Display for FecScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.fragments, self.repairs)
    }
}

/// The fields of a repair payload before its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairHeader {
    /// Sequence of the block's first fragment datagram.
    pub first: u64,
    /// Fragment datagrams in the block (fewer than the scheme's K for a block closed
    /// early: at a stream's end, after [`BLOCK_MAX_AGE`], before a fragment too long).
    pub fragments: u8,
    /// Repair datagrams of the block.
    pub repairs: u8,
    /// This repair's index, `0..repairs`.
    pub index: u8,
    /// Bytes of every shard of the block.
    pub shard_len: u16,
}

impl RepairHeader {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.first.to_be_bytes());
        out.extend_from_slice(&[self.fragments, self.repairs, self.index]);
        out.extend_from_slice(&self.shard_len.to_be_bytes());
    }

    /// Reads and checks a repair payload: the header, and the shard it carries.
    pub fn parse(payload: &[u8]) -> Option<(RepairHeader, &[u8])> {
        if payload.len() < REPAIR_HEADER_LEN {
            return None;
        }
        let (head, shard) = payload.split_at(REPAIR_HEADER_LEN);
        let mut first = [0u8; 8];
        first.copy_from_slice(&head[..8]);
        let header = RepairHeader {
            first: u64::from_be_bytes(first),
            fragments: head[8],
            repairs: head[9],
            index: head[10],
            shard_len: u16::from_be_bytes([head[11], head[12]]),
        };
        let (k, r, len) = (
            usize::from(header.fragments),
            usize::from(header.repairs),
            usize::from(header.shard_len),
        );
        let sound = k > 0
            && r > 0
            && k + r <= MAX_BLOCK
            && header.index < header.repairs
            && len >= 2
            && len % 2 == 0
            && len <= MAX_SHARD
            && shard.len() == len
            && header.first > 0;
        sound.then_some((header, shard))
    }

    /// The sequence this repair's datagram must carry: right after the block's
    /// fragments, in index order.
    pub fn sequence(&self) -> Option<u64> {
        self.first
            .checked_add(u64::from(self.fragments))?
            .checked_add(u64::from(self.index))
    }
}

/// How long a block may stay open, waiting for its K-th fragment, before the sender
/// closes it with what it has: a stream that slows down does not leave its last
/// fragments unprotected for long.
pub const BLOCK_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(200);

/// The sender's side: the fragments of the open block, and the repairs it makes of
/// them.
pub struct FecEncoder {
    scheme: FecScheme,
    /// Sequence of the open block's first fragment.
    first: u64,
    /// The open block's fragment payloads, end to end, and their lengths.
    data: Vec<u8>,
    lens: Vec<usize>,
    opened_at: Option<Instant>,
    codec: Option<ReedSolomonEncoder>,
    shard: Vec<u8>,
}

impl fmt::Debug for FecEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FecEncoder")
            .field("scheme", &self.scheme)
            .field("first", &self.first)
            .field("fragments", &self.lens.len())
            .finish()
    }
}

impl FecEncoder {
    pub fn new(scheme: FecScheme) -> FecEncoder {
        FecEncoder {
            scheme,
            first: 0,
            data: Vec::new(),
            lens: Vec::with_capacity(scheme.fragments()),
            opened_at: None,
            codec: None,
            shard: Vec::new(),
        }
    }

    pub fn scheme(&self) -> FecScheme {
        self.scheme
    }

    /// Whether a fragment payload of `len` bytes can be in a block.
    pub fn fits(len: usize) -> bool {
        len <= MAX_PROTECTED
    }

    /// Fragments in the open block.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// When the open block's first fragment came, if one is open.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// The fragment datagram `sequence` (its payload in `parts`) joins the open block,
    /// which it follows directly. True when that fills the block: close it now.
    pub fn add(&mut self, now: Instant, sequence: u64, parts: &[&[u8]]) -> bool {
        if self.lens.is_empty() {
            self.first = sequence;
            self.opened_at = Some(now);
        }
        debug_assert_eq!(sequence, self.first + self.lens.len() as u64);
        let before = self.data.len();
        for p in parts {
            self.data.extend_from_slice(p);
        }
        self.lens.push(self.data.len() - before);
        self.lens.len() >= self.scheme.fragments()
    }

    /// Closes the open block: the payloads of its R repair datagrams go to `out`, in
    /// index order (nothing if no block is open). The datagrams must take the
    /// sequences right after the block's last fragment.
    pub fn finish(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.lens.is_empty() {
            return;
        }
        let k = self.lens.len();
        let r = self.scheme.repairs();
        let longest = self.lens.iter().copied().max().unwrap_or(0);
        let shard_len = (longest + 2 + 1) & !1;
        let first = self.first;
        let header = |index: usize| RepairHeader {
            first,
            fragments: k as u8,
            repairs: r as u8,
            index: index as u8,
            shard_len: shard_len as u16,
        };
        if self.encode(k, r, shard_len).is_ok() {
            if let Some(result) = self.codec.as_mut().and_then(|c| c.encode().ok()) {
                for (index, shard) in result.recovery_iter().enumerate() {
                    let mut payload = Vec::with_capacity(REPAIR_HEADER_LEN + shard.len());
                    header(index).write(&mut payload);
                    payload.extend_from_slice(shard);
                    out.push(payload);
                }
            }
        }
        self.data.clear();
        self.lens.clear();
        self.opened_at = None;
    }

    /// Hands the block's shards to the codec.
    fn encode(
        &mut self,
        k: usize,
        r: usize,
        shard_len: usize,
    ) -> Result<(), reed_solomon_simd::Error> {
        match &mut self.codec {
            Some(codec) => codec.reset(k, r, shard_len)?,
            None => self.codec = Some(ReedSolomonEncoder::new(k, r, shard_len)?),
        }
        let Some(codec) = self.codec.as_mut() else {
            return Ok(());
        };
        let mut at = 0;
        for &len in &self.lens {
            write_shard(&mut self.shard, &self.data[at..at + len], shard_len);
            codec.add_original_shard(&self.shard)?;
            at += len;
        }
        Ok(())
    }
}

/// A fragment's shard: its length, its bytes, zeros to `shard_len`.
fn write_shard(out: &mut Vec<u8>, fragment: &[u8], shard_len: usize) {
    out.clear();
    out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
    out.extend_from_slice(fragment);
    out.resize(shard_len, 0);
}

/// Why a repair datagram that checked out was of no use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairRefusal {
    /// Its payload does not read as a repair, or its sequence is not where its block
    /// puts it.
    Malformed,
    /// It disagrees with other repairs of its block, or with the block's fragments
    /// (shard length, K, R): a sender bug, as nobody else can seal one.
    Inconsistent,
}

/// A block the receiver heard a repair of.
struct Block {
    key_id: u32,
    first: u64,
    fragments: u8,
    repairs: u8,
    shard_len: u16,
    /// The repair shards received, by index.
    shards: Vec<(u8, Vec<u8>)>,
    /// Rebuilt, complete without repairs, or unusable: later repairs are ignored.
    done: bool,
}

/// The receiver's side: recent fragments, the blocks whose repairs came, and the
/// fragments rebuilt from them.
#[derive(Default)]
pub struct FecDecoder {
    /// Recent fragment payloads by key id and sequence, and their order of arrival (the
    /// oldest is forgotten first).
    fragments: HashMap<(u32, u64), Bytes>,
    order: VecDeque<(u32, u64)>,
    blocks: VecDeque<Block>,
    /// Fragments rebuilt and not yet polled.
    rebuilt: VecDeque<Bytes>,
    recovered: u64,
    codec: Option<ReedSolomonDecoder>,
    shard: Vec<u8>,
}

impl fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FecDecoder")
            .field("fragments", &self.fragments.len())
            .field("blocks", &self.blocks.len())
            .field("recovered", &self.recovered)
            .finish()
    }
}

impl FecDecoder {
    /// Fragments rebuilt from repairs so far.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// The next fragment payload rebuilt from repairs (as a fragment datagram would
    /// have carried it).
    pub fn poll_rebuilt(&mut self) -> Option<Bytes> {
        self.rebuilt.pop_front()
    }

    /// A fragment datagram that checked out: kept for the repairs that may name its
    /// block, and it may complete a block waiting for one more shard.
    pub fn on_fragment(&mut self, key_id: u32, sequence: u64, payload: Bytes) {
        if self.fragments.insert((key_id, sequence), payload).is_some() {
            return;
        }
        self.order.push_back((key_id, sequence));
        while self.order.len() > FRAGMENTS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.fragments.remove(&old);
            }
        }
        let waiting = self.blocks.iter().position(|b| {
            !b.done
                && b.key_id == key_id
                && sequence >= b.first
                && sequence - b.first < u64::from(b.fragments)
        });
        if let Some(i) = waiting {
            // The fragment is sound whatever its block turns out to be: a block that
            // cannot be rebuilt is let go here, its repairs were counted when they came.
            let _ = self.try_rebuild(i);
        }
    }

    /// A repair datagram that checked out (`sequence` is its datagram's). When its
    /// block then has K of its K+R shards, the fragments it lacks are rebuilt (see
    /// [`FecDecoder::poll_rebuilt`]).
    pub fn on_repair(
        &mut self,
        key_id: u32,
        sequence: u64,
        payload: &[u8],
    ) -> Result<(), RepairRefusal> {
        let (header, shard) = RepairHeader::parse(payload).ok_or(RepairRefusal::Malformed)?;
        if header.sequence() != Some(sequence) {
            return Err(RepairRefusal::Malformed);
        }
        let found = self
            .blocks
            .iter()
            .position(|b| b.key_id == key_id && b.first == header.first);
        let i = match found {
            Some(i) => {
                let b = &self.blocks[i];
                if (b.fragments, b.repairs, b.shard_len)
                    != (header.fragments, header.repairs, header.shard_len)
                {
                    return Err(RepairRefusal::Inconsistent);
                }
                i
            }
            None => {
                self.blocks.push_back(Block {
                    key_id,
                    first: header.first,
                    fragments: header.fragments,
                    repairs: header.repairs,
                    shard_len: header.shard_len,
                    shards: Vec::new(),
                    done: false,
                });
                if self.blocks.len() > BLOCKS_KEPT {
                    self.blocks.pop_front();
                }
                self.blocks.len() - 1
            }
        };
        let block = &mut self.blocks[i];
        if block.done || block.shards.iter().any(|(j, _)| *j == header.index) {
            return Ok(());
        }
        block.shards.push((header.index, shard.to_vec()));
        self.try_rebuild(i)
    }

    /// Rebuilds block `i`'s missing fragments if it has enough shards.
    fn try_rebuild(&mut self, i: usize) -> Result<(), RepairRefusal> {
        let block = &self.blocks[i];
        let (key_id, first, k) = (block.key_id, block.first, usize::from(block.fragments));
        let have: Vec<Option<&Bytes>> = (0..k as u64)
            .map(|j| self.fragments.get(&(key_id, first + j)))
            .collect();
        let present = have.iter().flatten().count();
        if present == k {
            // Every fragment came: nothing to rebuild.
            self.finish_block(i);
            return Ok(());
        }
        if present + block.shards.len() < k {
            return Ok(());
        }
        let (r, shard_len) = (usize::from(block.repairs), usize::from(block.shard_len));
        let codec = match &mut self.codec {
            Some(c) => c.reset(k, r, shard_len).map(|_| c),
            None => ReedSolomonDecoder::new(k, r, shard_len).map(|c| self.codec.insert(c)),
        };
        let Ok(codec) = codec else {
            self.finish_block(i);
            return Err(RepairRefusal::Inconsistent);
        };
        let mut fed = Ok(());
        for (j, fragment) in have.iter().enumerate() {
            let Some(fragment) = fragment else { continue };
            if fragment.len() + 2 > shard_len {
                fed = Err(RepairRefusal::Inconsistent);
                break;
            }
            write_shard(&mut self.shard, fragment, shard_len);
            if codec.add_original_shard(j, &self.shard).is_err() {
                fed = Err(RepairRefusal::Inconsistent);
                break;
            }
        }
        for (index, shard) in &block.shards {
            if fed.is_ok()
                && codec
                    .add_recovery_shard(usize::from(*index), shard)
                    .is_err()
            {
                fed = Err(RepairRefusal::Inconsistent);
            }
        }
        let mut rebuilt = Vec::new();
        if fed.is_ok() {
            match codec.decode() {
                Ok(result) => {
                    for (j, shard) in result.restored_original_iter() {
                        let len = usize::from(u16::from_be_bytes([shard[0], shard[1]]));
                        if len + 2 > shard.len() {
                            fed = Err(RepairRefusal::Inconsistent);
                            continue;
                        }
                        rebuilt.push((j, Bytes::copy_from_slice(&shard[2..2 + len])));
                    }
                }
                Err(_) => fed = Err(RepairRefusal::Inconsistent),
            }
        }
        // Done before the rebuilt fragments are taken in, so that they do not set off
        // another rebuild of this block.
        self.finish_block(i);
        for (j, fragment) in rebuilt {
            let sequence = first + j as u64;
            self.recovered += 1;
            self.rebuilt.push_back(fragment.clone());
            self.on_fragment(key_id, sequence, fragment);
        }
        fed
    }

    fn finish_block(&mut self, i: usize) {
        if let Some(b) = self.blocks.get_mut(i) {
            b.done = true;
            b.shards = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragments(lens: &[usize]) -> Vec<Vec<u8>> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i * 13) as u8).collect())
            .collect()
    }

    /// The block's datagrams as (sequence, fragment or repair payload), from `first`.
    fn block(scheme: FecScheme, first: u64, frags: &[Vec<u8>]) -> Vec<(u64, bool, Vec<u8>)> {
        let mut enc = FecEncoder::new(scheme);
        let mut out = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let seq = first + i as u64;
            out.push((seq, true, f.clone()));
            let full = enc.add(
                Instant::ZERO,
                seq,
                &[&f[..3.min(f.len())], &f[3.min(f.len())..]],
            );
            assert_eq!(full, i + 1 == scheme.fragments());
        }
        let mut repairs = Vec::new();
        enc.finish(&mut repairs);
        assert_eq!(repairs.len(), scheme.repairs());
        assert!(enc.is_empty());
        for (i, p) in repairs.into_iter().enumerate() {
            out.push((first + frags.len() as u64 + i as u64, false, p));
        }
        out
    }

    fn deliver(dec: &mut FecDecoder, datagrams: &[(u64, bool, Vec<u8>)], lost: &[usize]) {
        for (i, (seq, fragment, payload)) in datagrams.iter().enumerate() {
            if lost.contains(&i) {
                continue;
            }
            if *fragment {
                dec.on_fragment(1, *seq, Bytes::from(payload.clone()));
            } else {
                dec.on_repair(1, *seq, payload).unwrap();
            }
        }
    }

    fn rebuilt(dec: &mut FecDecoder) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| dec.poll_rebuilt())
            .map(|b| b.to_vec())
            .collect()
    }

    #[test]
    fn schemes_read_as_k_plus_r_within_a_block_of_255() {
        let s = FecScheme::parse("8+2").unwrap();
        assert_eq!(
            (s.fragments(), s.repairs(), s.to_string()),
            (8, 2, "8+2".into())
        );
        assert_eq!(FecScheme::parse(" 253 + 2 ").unwrap().fragments(), 253);
        assert_eq!(FecScheme::parse("0+2"), Err(FecSchemeError::NoFragments));
        assert_eq!(FecScheme::parse("8+0"), Err(FecSchemeError::NoRepairs));
        assert_eq!(
            FecScheme::parse("250+6"),
            Err(FecSchemeError::TooLarge(256))
        );
        assert_eq!(
            FecScheme::parse("99999999999999999999999+1"),
            Err(FecSchemeError::TooLarge(u64::MAX))
        );
        for bad in ["8", "8+", "+2", "8-2", "a+b", "8+2+1", "-1+2", ""] {
            assert!(
                matches!(FecScheme::parse(bad), Err(FecSchemeError::NotKPlusR(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn any_r_losses_of_a_block_rebuild_the_exact_fragments_of_every_length() {
        let scheme = FecScheme::new(8, 2).unwrap();
        let frags = fragments(&[1000, 17, 959, 0, 1, 512, 998, 3]);
        let datagrams = block(scheme, 41, &frags);
        // Every pair (and every single) of the 10 datagrams lost.
        for a in 0..10 {
            for b in a..10 {
                let lost = [a, b];
                let mut dec = FecDecoder::default();
                deliver(&mut dec, &datagrams, &lost);
                let mut want: Vec<Vec<u8>> = lost
                    .iter()
                    .filter(|&&i| i < 8)
                    .map(|&i| frags[i].clone())
                    .collect();
                want.dedup();
                let mut got = rebuilt(&mut dec);
                got.sort();
                want.sort();
                assert_eq!(got, want, "lost {lost:?}");
                assert_eq!(dec.recovered(), want.len() as u64);
            }
        }
    }

    #[test]
    fn repairs_arriving_before_the_fragments_still_rebuild() {
        let scheme = FecScheme::new(4, 2).unwrap();
        let frags = fragments(&[10, 20, 30, 40]);
        let mut datagrams = block(scheme, 1, &frags);
        // Repair 1 (lost), repair 0, then fragments 3, 2, 1 (lost), 0: the block has 4
        // shards only once fragment 0 comes.
        datagrams.reverse();
        let mut dec = FecDecoder::default();
        deliver(&mut dec, &datagrams, &[0, 4]);
        assert_eq!(rebuilt(&mut dec), vec![frags[1].clone()]);
    }

    #[test]
    fn more_than_r_losses_rebuild_nothing_and_a_late_shard_completes_the_block() {
        let scheme = FecScheme::new(8, 2).unwrap();
        let frags = fragments(&[100; 8]);
        let datagrams = block(scheme, 1, &frags);
        let mut dec = FecDecoder::default();
        deliver(&mut dec, &datagrams, &[0, 3, 9]);
        assert!(rebuilt(&mut dec).is_empty(), "3 lost of 8+2");
        let mut dec = FecDecoder::default();
        deliver(&mut dec, &datagrams, &[0, 3, 5, 8, 9]);
        assert!(rebuilt(&mut dec).is_empty(), "5 lost of 8+2");
        assert_eq!(dec.recovered(), 0);
        // Fragment 3 came after all (reordered): now 8 of 10 are there.
        let mut dec = FecDecoder::default();
        deliver(&mut dec, &datagrams, &[0, 3, 9]);
        dec.on_fragment(1, 4, Bytes::from(frags[3].clone()));
        assert_eq!(rebuilt(&mut dec), vec![frags[0].clone()]);
    }

    #[test]
    fn a_short_block_closed_early_names_its_own_k() {
        let scheme = FecScheme::new(8, 2).unwrap();
        let frags = fragments(&[300, 5, 77]);
        let mut enc = FecEncoder::new(scheme);
        for (i, f) in frags.iter().enumerate() {
            assert!(!enc.add(Instant::ZERO, 10 + i as u64, &[f]));
        }
        assert_eq!(enc.opened_at(), Some(Instant::ZERO));
        let mut repairs = Vec::new();
        enc.finish(&mut repairs);
        assert_eq!(enc.opened_at(), None);
        let (h, _) = RepairHeader::parse(&repairs[1]).unwrap();
        assert_eq!(
            (h.first, h.fragments, h.repairs, h.index, h.sequence()),
            (10, 3, 2, 1, Some(14))
        );
        let mut dec = FecDecoder::default();
        dec.on_fragment(1, 11, Bytes::from(frags[1].clone()));
        dec.on_repair(1, 13, &repairs[0]).unwrap();
        dec.on_repair(1, 14, &repairs[1]).unwrap();
        let mut got = rebuilt(&mut dec);
        got.sort();
        assert_eq!(got, vec![frags[0].clone(), frags[2].clone()]);
    }

    #[test]
    fn malformed_and_inconsistent_repairs_are_refused_without_panicking() {
        let scheme = FecScheme::new(2, 1).unwrap();
        let frags = fragments(&[10, 10]);
        let d = block(scheme, 5, &frags);
        let repair = d[2].2.clone();
        let mut dec = FecDecoder::default();
        // Not where its block puts it.
        assert_eq!(dec.on_repair(1, 8, &repair), Err(RepairRefusal::Malformed));
        // Cut, or with a bad field.
        assert_eq!(
            dec.on_repair(1, 7, &repair[..repair.len() - 1]),
            Err(RepairRefusal::Malformed)
        );
        for (at, value) in [(8, 0u8), (9, 0), (10, 1), (8, 255), (12, 3)] {
            let mut bad = repair.clone();
            bad[at] = value;
            assert!(dec.on_repair(1, 7, &bad).is_err(), "byte {at} = {value}");
        }
        // A fragment longer than the block's shards says: not rebuilt from it.
        dec.on_fragment(1, 5, Bytes::from(vec![1; 40]));
        assert_eq!(
            dec.on_repair(1, 7, &repair),
            Err(RepairRefusal::Inconsistent)
        );
        assert!(dec.poll_rebuilt().is_none());
        // Random bytes as repair payloads.
        let mut x = 1u32;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = dec.on_repair(1, u64::from(x), &bytes);
        }
    }

    #[test]
    fn forged_replayed_and_misplaced_repairs_are_dropped_and_rebuild_nothing() {
        use crate::multicast::datagram::{seal, DropReason, MulticastKey, PayloadKind};
        use crate::multicast::receiver::{Arrival, MulticastReceiver};
        let key = MulticastKey {
            id: 1,
            secret: [5; 32],
        };
        let sealed = |k: &MulticastKey, seq: u64, kind: PayloadKind, payload: &[u8]| {
            let mut out = Vec::new();
            seal(k, [7; 8], seq, kind, &[payload], &mut out);
            out
        };
        let frags = fragments(&[30, 40]);
        let d = block(FecScheme::new(2, 1).unwrap(), 1, &frags);
        let repair = &d[2].2;
        let mut rx = MulticastReceiver::default();
        rx.add_key(key.clone());
        rx.play_stream([7; 8]);
        // Fragment 1 comes, fragment 2 is lost.
        rx.handle(&sealed(&key, 1, PayloadKind::Fragment, &frags[0]))
            .unwrap();
        assert_eq!(rx.poll_fragment().map(|(_, a)| a), Some(Arrival::Received));
        // The repair sealed under a key the server never gave out, and one with a bit
        // of its shard flipped on the way.
        let stranger = MulticastKey {
            id: 1,
            secret: [6; 32],
        };
        let forged = sealed(&stranger, 3, PayloadKind::Repair, repair);
        assert_eq!(rx.handle(&forged), Err(DropReason::BadTag));
        let mut flipped = sealed(&key, 3, PayloadKind::Repair, repair);
        flipped[HEADER_LEN + REPAIR_HEADER_LEN + 5] ^= 1;
        assert_eq!(rx.handle(&flipped), Err(DropReason::BadTag));
        assert!(
            rx.poll_fragment().is_none(),
            "nothing rebuilt from forgeries"
        );
        // The real one rebuilds fragment 2, once.
        let real = sealed(&key, 3, PayloadKind::Repair, repair);
        rx.handle(&real).unwrap();
        let (bytes, arrival) = rx.poll_fragment().unwrap();
        assert_eq!(
            (bytes.to_vec(), arrival),
            (frags[1].clone(), Arrival::Repaired)
        );
        assert_eq!(rx.handle(&real), Err(DropReason::Replayed));
        // Authentic, but not at the sequence its block puts it.
        let misplaced = sealed(&key, 9, PayloadKind::Repair, repair);
        assert_eq!(rx.handle(&misplaced), Err(DropReason::BadRepair));
        assert!(rx.poll_fragment().is_none());
        let drops: Vec<(DropReason, u64)> = rx.drops().collect();
        assert!(drops.contains(&(DropReason::BadTag, 2)), "{drops:?}");
        assert!(drops.contains(&(DropReason::Replayed, 1)), "{drops:?}");
        assert!(drops.contains(&(DropReason::BadRepair, 1)), "{drops:?}");
        assert_eq!((rx.taken(), rx.repaired()), (2, 1));
    }

    #[test]
    fn memory_stays_bounded_to_a_few_blocks() {
        let mut dec = FecDecoder::default();
        let scheme = FecScheme::new(4, 1).unwrap();
        for b in 0..100u64 {
            let first = 1 + b * 5;
            let d = block(scheme, first, &fragments(&[50; 4]));
            // Only the repair and fragment 0: nothing to rebuild from (3 lost).
            deliver(&mut dec, &d, &[1, 2, 3]);
        }
        assert!(dec.blocks.len() <= BLOCKS_KEPT);
        assert!(dec.fragments.len() <= FRAGMENTS_KEPT && dec.order.len() <= FRAGMENTS_KEPT);
    }
}
