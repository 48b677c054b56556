//! The IP multicast datagram (docs/ipmulticast.md): one group-stream fragment, or a
//! repair shard over a block of them (`super::fec`), authenticated under a key the server hands only to members it
//! admitted, numbered so that a receiver drops replays.
//!
//! ```text
//! 0      4       8              16               24     25                  n-16    n
//! | "RMC" 1 | key id | stream tag (8) | sequence (u64) | kind | payload ... | tag (16) |
//! ```
//! - `key id` names the key (keys rotate); a receiver that has no key of that id drops
//!   the datagram.
//! - `stream tag` is the first 8 bytes of the group stream's key.
//! - `sequence` counts the sender's datagrams under this key, from 1.
//! - `kind` is `01` for a fragment (the payload is the fragment as it travels on a
//!   member's media flow, docs/netgroup.md §3.8), `02` for a repair (`super::fec`).
//! - `tag` is HMAC-SHA256 under the key, over everything before it, cut to 16 bytes.
//!
//! Sans-IO: bytes in, bytes out.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first four bytes of every datagram: "RMC" and the format version.
pub const MAGIC: [u8; 4] = *b"RMC\x01";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 25;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Largest datagram we send or take (a fragment of 959 bytes and its header fit well
/// within a 1280-byte IPv6 minimum MTU).
pub const MAX_DATAGRAM: usize = 1400;
/// How far behind the newest sequence a datagram may be and still be taken (reordering).
pub const REPLAY_WINDOW: u64 = 1024;

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Fragment,
    /// A Reed-Solomon repair shard over a block of fragment datagrams (`super::fec`).
    Repair,
}

impl PayloadKind {
    fn code(self) -> u8 {
        match self {
            PayloadKind::Fragment => 0x01,
            PayloadKind::Repair => 0x02,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(PayloadKind::Fragment),
            0x02 => Some(PayloadKind::Repair),
            _ => None,
        }
    }
}

/// A key the server hands to the members of a group, with the id datagrams name it by.
#[derive(Clone, PartialEq, Eq)]
pub struct MulticastKey {
    pub id: u32,
    pub secret: [u8; 32],
}

impl std::fmt::Debug for MulticastKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        write!(f, "MulticastKey({})", self.id)
    }
}

impl MulticastKey {
    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }
}

/// A datagram taken apart (after its tag checked out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastDatagram<'a> {
    pub key_id: u32,
    pub stream_tag: [u8; 8],
    pub sequence: u64,
    pub kind: PayloadKind,
    pub payload: &'a [u8],
}

/// Why a datagram was dropped; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Shorter than a header and a tag, longer than we take, or not our magic.
    Malformed,
    /// Names a key we do not have.
    UnknownKey,
    /// The tag does not check out: forged, or corrupted.
    BadTag,
    /// Not the stream we play.
    OtherStream,
    /// Seen already, or too far behind the newest to tell.
    Replayed,
    /// A payload kind we do not know.
    UnknownKind,
    /// A repair that checked out but cannot be used: its payload does not read as one,
    /// or it disagrees with its block (`super::fec::RepairRefusal`).
    BadRepair,
}

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownKey => "unknown_key",
            DropReason::BadTag => "bad_tag",
            DropReason::OtherStream => "other_stream",
            DropReason::Replayed => "replayed",
            DropReason::UnknownKind => "unknown_kind",
            DropReason::BadRepair => "bad_repair",
        }
    }
}

/// Writes a datagram into `out` (cleared first).
pub fn seal(
    key: &MulticastKey,
    stream_tag: [u8; 8],
    sequence: u64,
    kind: PayloadKind,
    payload: &[&[u8]],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&key.id.to_be_bytes());
    out.extend_from_slice(&stream_tag);
    out.extend_from_slice(&sequence.to_be_bytes());
    out.push(kind.code());
    for part in payload {
        out.extend_from_slice(part);
    }
    let mut mac = key.mac();
    mac.update(out);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(&tag[..TAG_LEN]);
}

/// A receiver's side: the keys it was given, the stream it plays, the sequences it has
/// seen, and what it dropped.
#[derive(Debug, Default)]
pub struct Receiver {
    keys: Vec<MulticastKey>,
    stream_tag: Option<[u8; 8]>,
    /// Per key id: the newest sequence taken, and which of the `REPLAY_WINDOW` before it
    /// were taken (bit i = newest - i).
    windows: BTreeMap<u32, (u64, Vec<u64>)>,
    drops: BTreeMap<DropReason, u64>,
    taken: u64,
}

/// Keys a receiver keeps at once (the current one and those before it, for rotation).
const KEPT_KEYS: usize = 2;

impl Receiver {
    /// Takes a key the server handed us; the oldest beyond [`KEPT_KEYS`] goes.
    pub fn add_key(&mut self, key: MulticastKey) {
        self.keys.retain(|k| k.id != key.id);
        self.keys.push(key);
        while self.keys.len() > KEPT_KEYS {
            let old = self.keys.remove(0);
            self.windows.remove(&old.id);
        }
    }

    /// Plays only datagrams of the stream whose key starts with `tag`.
    pub fn play_stream(&mut self, tag: [u8; 8]) {
        self.stream_tag = Some(tag);
    }

    pub fn drops(&self) -> &BTreeMap<DropReason, u64> {
        &self.drops
    }

    /// Datagrams taken.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// A datagram [`Receiver::open`] took turned out unusable for what its payload held:
    /// counted as dropped instead. Its sequence stays seen (it was authentic).
    pub(super) fn drop_taken(&mut self, reason: DropReason) {
        self.taken = self.taken.saturating_sub(1);
        *self.drops.entry(reason).or_default() += 1;
    }

    /// Checks a datagram; a good one is taken (its sequence remembered) and returned.
    pub fn open<'a>(&mut self, datagram: &'a [u8]) -> Result<MulticastDatagram<'a>, DropReason> {
        let result = self.check(datagram);
        match &result {
            Ok(_) => self.taken += 1,
            Err(reason) => *self.drops.entry(*reason).or_default() += 1,
        }
        result
    }

    fn check<'a>(&mut self, datagram: &'a [u8]) -> Result<MulticastDatagram<'a>, DropReason> {
        if datagram.len() < HEADER_LEN + TAG_LEN
            || datagram.len() > MAX_DATAGRAM
            || datagram[..4] != MAGIC
        {
            return Err(DropReason::Malformed);
        }
        let key_id = u32::from_be_bytes(
            datagram[4..8]
                .try_into()
                .map_err(|_| DropReason::Malformed)?,
        );
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(DropReason::UnknownKey)?;
        let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let mut mac = key.mac();
        mac.update(body);
        mac.verify_truncated_left(tag)
            .map_err(|_| DropReason::BadTag)?;
        let mut stream_tag = [0u8; 8];
        stream_tag.copy_from_slice(&body[8..16]);
        if self.stream_tag.is_some_and(|t| t != stream_tag) {
            return Err(DropReason::OtherStream);
        }
        let sequence =
            u64::from_be_bytes(body[16..24].try_into().map_err(|_| DropReason::Malformed)?);
        let kind = PayloadKind::from_code(body[24]).ok_or(DropReason::UnknownKind)?;
        self.remember(key_id, sequence)?;
        Ok(MulticastDatagram {
            key_id,
            stream_tag,
            sequence,
            kind,
            payload: &body[HEADER_LEN..],
        })
    }

    /// Marks `sequence` seen under `key_id`; a replay, or one too old to tell, fails.
    fn remember(&mut self, key_id: u32, sequence: u64) -> Result<(), DropReason> {
        const WORDS: usize = (REPLAY_WINDOW / 64) as usize;
        let (newest, bits) = self
            .windows
            .entry(key_id)
            .or_insert_with(|| (0, vec![0u64; WORDS]));
        if sequence == 0 {
            return Err(DropReason::Replayed);
        }
        if sequence > *newest {
            let shift = sequence - *newest;
            shift_window(bits, shift);
            *newest = sequence;
            bits[0] |= 1;
            return Ok(());
        }
        let behind = *newest - sequence;
        if behind >= REPLAY_WINDOW {
            return Err(DropReason::Replayed);
        }
        let (word, bit) = ((behind / 64) as usize, behind % 64);
        if bits[word] & (1 << bit) != 0 {
            return Err(DropReason::Replayed);
        }
        bits[word] |= 1 << bit;
        Ok(())
    }
}

/// Moves the window `shift` places towards the past (bit i becomes bit i + shift).
fn shift_window(bits: &mut [u64], shift: u64) {
    let words = bits.len();
    if shift >= (words as u64) * 64 {
        bits.iter_mut().for_each(|w| *w = 0);
        return;
    }
    let (word_shift, bit_shift) = ((shift / 64) as usize, (shift % 64) as u32);
    for i in (0..words).rev() {
        let from = i.checked_sub(word_shift);
        let mut v = from.map_or(0, |f| bits[f] << bit_shift);
        if bit_shift > 0 {
            if let Some(f) = from.and_then(|f| f.checked_sub(1)) {
                v |= bits[f] >> (64 - bit_shift);
            }
        }
        bits[i] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> MulticastKey {
        MulticastKey {
            id,
            secret: [id as u8; 32],
        }
    }

    fn datagram(k: &MulticastKey, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(k, [7; 8], seq, PayloadKind::Fragment, &[payload], &mut out);
        out
    }

    #[test]
    fn a_sealed_datagram_opens_with_its_key_and_says_what_it_carries() {
        let k = key(1);
        let d = datagram(&k, 1, b"fragment bytes");
        assert_eq!(d.len(), HEADER_LEN + 14 + TAG_LEN);
        let mut r = Receiver::default();
        r.add_key(k);
        r.play_stream([7; 8]);
        let m = r.open(&d).unwrap();
        assert_eq!(
            (m.key_id, m.stream_tag, m.sequence, m.kind, m.payload),
            (1, [7; 8], 1, PayloadKind::Fragment, &b"fragment bytes"[..])
        );
        assert_eq!(r.taken(), 1);
    }

    #[test]
    fn forged_replayed_truncated_and_foreign_datagrams_are_dropped_and_counted() {
        let k = key(1);
        let mut r = Receiver::default();
        r.add_key(k.clone());
        r.play_stream([7; 8]);
        let good = datagram(&k, 5, b"x");
        assert!(r.open(&good).is_ok());
        // Replay.
        assert_eq!(r.open(&good), Err(DropReason::Replayed));
        // Forged: the right layout under a key the server never gave out.
        let forged = datagram(
            &MulticastKey {
                id: 1,
                secret: [9; 32],
            },
            6,
            b"x",
        );
        assert_eq!(r.open(&forged), Err(DropReason::BadTag));
        // A flipped payload bit.
        let mut flipped = datagram(&k, 7, b"x");
        flipped[HEADER_LEN] ^= 1;
        assert_eq!(r.open(&flipped), Err(DropReason::BadTag));
        // Truncated: its tag cut.
        let d = datagram(&k, 8, b"xyz");
        assert_eq!(r.open(&d[..d.len() - 1]), Err(DropReason::BadTag));
        assert_eq!(r.open(&d[..HEADER_LEN]), Err(DropReason::Malformed));
        // A key we do not have.
        assert_eq!(
            r.open(&datagram(&key(2), 1, b"x")),
            Err(DropReason::UnknownKey)
        );
        // Another stream under our key.
        let mut other = Vec::new();
        seal(&k, [8; 8], 9, PayloadKind::Fragment, &[b"x"], &mut other);
        assert_eq!(r.open(&other), Err(DropReason::OtherStream));
        let drops = r.drops();
        assert_eq!(drops[&DropReason::Replayed], 1);
        assert_eq!(drops[&DropReason::BadTag], 3);
        assert_eq!(drops[&DropReason::Malformed], 1);
        assert_eq!(drops[&DropReason::UnknownKey], 1);
        assert_eq!(drops[&DropReason::OtherStream], 1);
        assert_eq!(r.taken(), 1);
    }

    #[test]
    fn reordering_within_the_window_is_taken_and_older_is_stale() {
        let k = key(3);
        let mut r = Receiver::default();
        r.add_key(k.clone());
        for seq in [10, 12, 11, 9, 2000, 1500, 1200] {
            assert!(r.open(&datagram(&k, seq, b"x")).is_ok(), "seq {seq}");
        }
        for seq in [10, 12, 1500] {
            assert_eq!(r.open(&datagram(&k, seq, b"x")), Err(DropReason::Replayed));
        }
        // 2000 - 976 = 1024 behind: outside the window, stale.
        assert_eq!(r.open(&datagram(&k, 976, b"x")), Err(DropReason::Replayed));
        assert!(r.open(&datagram(&k, 977, b"x")).is_ok());
        // A jump far ahead clears the window.
        assert!(r.open(&datagram(&k, 1_000_000, b"x")).is_ok());
        assert!(r.open(&datagram(&k, 999_999, b"x")).is_ok());
    }

    #[test]
    fn keys_rotate_and_the_oldest_is_forgotten() {
        let mut r = Receiver::default();
        for id in 1..=3 {
            r.add_key(key(id));
        }
        assert_eq!(
            r.open(&datagram(&key(1), 1, b"x")),
            Err(DropReason::UnknownKey)
        );
        assert!(r.open(&datagram(&key(2), 1, b"x")).is_ok());
        assert!(r.open(&datagram(&key(3), 1, b"x")).is_ok());
    }

    #[test]
    fn the_window_shift_moves_bits_across_words() {
        let mut bits = vec![0b1u64, 0, 0];
        shift_window(&mut bits, 63);
        assert_eq!(bits, vec![1 << 63, 0, 0]);
        shift_window(&mut bits, 1);
        assert_eq!(bits, vec![0, 1, 0]);
        shift_window(&mut bits, 70);
        assert_eq!(bits, vec![0, 0, 1 << 6]);
        shift_window(&mut bits, 1000);
        assert_eq!(bits, vec![0, 0, 0]);
    }
}
