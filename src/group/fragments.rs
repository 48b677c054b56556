//! Group media fragments: the pieces a NetGroup stream travels in between members
//! (docs/netgroup.md §3.6–§3.8).
//!
//! The publisher cuts each media message into pieces of at most 959 bytes and numbers them
//! with one counter per stream starting at 1 ([`Fragmenter`]). Members keep the pieces of the
//! last window in a [`FragmentStore`] to serve pulls and pushes, tell neighbours what they
//! hold with a [`FragmentsMap`] (`22`), and rebuild the media messages for their own player
//! with a [`Reassembler`], which also holds back what a decoder could not use yet
//! ([`DecodableStart`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::media::{MediaKind, MediaMessage};
use crate::proto::vlu::{put_vlu, vlu_len, Reader};
use crate::proto::{Instant, ParseError};

/// Largest payload of one fragment (librtmfp: include/NetGroup.h `NETGROUP_MAX_PACKET_SIZE`).
pub const MAX_FRAGMENT_PAYLOAD: usize = 959;
/// A split message has one first piece and at most 255 more: `rest` is a single byte.
pub const MAX_PIECES: usize = 256;
/// The largest media message the wire format can carry.
pub const MAX_MESSAGE_LEN: usize = MAX_PIECES * MAX_FRAGMENT_PAYLOAD;
/// Bitmap bytes kept in a fragments map, built or parsed (librtmfp: include/PeerMedia.h
/// `MAX_FRAGMENT_MAP_SIZE`): 8192 ids before `lastId`.
pub const MAX_MAP_BITMAP_LEN: usize = 1024;
/// Subscription option `03` default (docs/netgroup.md §5).
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(8000);
/// librtmfp's `relayMargin` default: how much longer than the window fragments stay.
pub const DEFAULT_RELAY_MARGIN: Duration = Duration::from_millis(2000);

/// Ids above this are refused: no stream reaches it (2^62 fragments), and it leaves room
/// for `id + rest + 1` without overflow anywhere.
pub const MAX_FRAGMENT_ID: u64 = 1 << 62;
/// Default distance ahead of the newest id (store) or of the output point (reassembler)
/// beyond which a fragment is refused: one stray far-future id would otherwise end a
/// stream for everyone (everything real would then be "too old"). Far more than a window
/// holds (8192 ids in a full map).
pub const DEFAULT_MAX_AHEAD: u64 = 1 << 16;

/// Flow message type of a fragments map (docs/netgroup.md §3.2).
pub const FRAGMENTS_MAP_TYPE: u8 = 0x22;

/// RTMP message types a group stream carries (docs/netgroup.md §3.8).
pub mod rtmp_type {
    pub const AUDIO: u8 = 0x08;
    pub const VIDEO: u8 = 0x09;
    /// AMF3 data: the payload is a `00` byte then AMF0.
    pub const DATA_AMF3: u8 = 0x0f;
    /// AMF3 invocation (`UnpublishNotify`, `closeStream` at the end of a publication).
    pub const INVOCATION_AMF3: u8 = 0x11;
    pub const DATA_AMF0: u8 = 0x12;
}

/// The RTMP type byte a fragment carries for a media message of this kind.
pub fn rtmp_type_of(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Audio => rtmp_type::AUDIO,
        MediaKind::Video => rtmp_type::VIDEO,
        MediaKind::Data => rtmp_type::DATA_AMF0,
    }
}

/// Why a group media flow message was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupMediaParseError {
    #[error("empty message: expected a type byte (20, 30, 10 or 00 for a fragment, 22 for a map)")]
    Empty,
    #[error("message type {0:#04x} is not a fragment (20, 30, 10, 00)")]
    NotAFragment(u8),
    #[error("message type {0:#04x} is not a fragments map (22)")]
    NotAMap(u8),
    #[error("message ends inside its header (id, rest, type or time)")]
    Truncated,
    #[error("fragment id above 2^62 (no stream gets that far)")]
    IdOverflow,
    #[error("fragment id 0: ids start at 1")]
    ZeroId,
    #[error("split piece with rest = 0: only the last piece (00) ends a message")]
    ZeroRest,
}

impl From<ParseError> for GroupMediaParseError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::VluOverflow => GroupMediaParseError::IdOverflow,
            ParseError::Truncated | ParseError::BadValue => GroupMediaParseError::Truncated,
        }
    }
}

fn checked_id(id: u64) -> Result<u64, GroupMediaParseError> {
    match id {
        0 => Err(GroupMediaParseError::ZeroId),
        id if id > MAX_FRAGMENT_ID => Err(GroupMediaParseError::IdOverflow),
        id => Ok(id),
    }
}

/// Which part of a media message a fragment holds, with the header fields that part
/// carries on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Piece {
    /// `20`: the whole message.
    Whole { media_type: u8, time: u32 },
    /// `30`: the first piece; `rest` pieces follow with the next ids.
    First { rest: u8, media_type: u8, time: u32 },
    /// `10`: a middle piece; `rest` pieces follow it (counts down to 1).
    Middle { rest: u8 },
    /// `00`: the last piece.
    Last,
}

impl Piece {
    pub const WHOLE: u8 = 0x20;
    pub const FIRST: u8 = 0x30;
    pub const MIDDLE: u8 = 0x10;
    pub const LAST: u8 = 0x00;

    /// The flow message type byte.
    pub fn marker(&self) -> u8 {
        match self {
            Piece::Whole { .. } => Self::WHOLE,
            Piece::First { .. } => Self::FIRST,
            Piece::Middle { .. } => Self::MIDDLE,
            Piece::Last => Self::LAST,
        }
    }

    /// Whether a message starts with this piece.
    pub fn starts_message(&self) -> bool {
        matches!(self, Piece::Whole { .. } | Piece::First { .. })
    }
}

/// One numbered piece of a group stream, as carried on a media flow (`00 47 52 12`).
/// The payload is a slice of the message it came from: cloning never copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFragment {
    pub id: u64,
    pub piece: Piece,
    pub payload: Bytes,
}

impl GroupFragment {
    /// Reads one media flow message. The payload is a slice of `message`; any payload size
    /// is accepted (librtmfp does not check it either), the store's byte cap bounds memory.
    pub fn parse(message: &Bytes) -> Result<GroupFragment, GroupMediaParseError> {
        let mut r = Reader::new(message);
        let marker = r.u8().map_err(|_| GroupMediaParseError::Empty)?;
        let id = checked_id(r.vlu()?)?;
        let piece = match marker {
            Piece::WHOLE => Piece::Whole {
                media_type: r.u8()?,
                time: r.u32()?,
            },
            Piece::FIRST => {
                let rest = r.u8()?;
                if rest == 0 {
                    return Err(GroupMediaParseError::ZeroRest);
                }
                Piece::First {
                    rest,
                    media_type: r.u8()?,
                    time: r.u32()?,
                }
            }
            Piece::MIDDLE => {
                let rest = r.u8()?;
                if rest == 0 {
                    return Err(GroupMediaParseError::ZeroRest);
                }
                Piece::Middle { rest }
            }
            Piece::LAST => Piece::Last,
            other => return Err(GroupMediaParseError::NotAFragment(other)),
        };
        let header = message.len() - r.remaining();
        Ok(GroupFragment {
            id,
            piece,
            payload: message.slice(header..),
        })
    }

    /// Bytes before the payload on the wire.
    pub fn header_len(&self) -> usize {
        let fixed = match self.piece {
            Piece::Whole { .. } => 1 + 4,
            Piece::First { .. } => 1 + 1 + 4,
            Piece::Middle { .. } => 1,
            Piece::Last => 0,
        };
        1 + vlu_len(self.id) + fixed
    }

    /// Appends the header only, for senders that gather the payload separately.
    pub fn write_header(&self, out: &mut Vec<u8>) {
        out.push(self.piece.marker());
        put_vlu(out, self.id);
        match self.piece {
            Piece::Whole { media_type, time } => {
                out.push(media_type);
                out.extend_from_slice(&time.to_be_bytes());
            }
            Piece::First {
                rest,
                media_type,
                time,
            } => {
                out.push(rest);
                out.push(media_type);
                out.extend_from_slice(&time.to_be_bytes());
            }
            Piece::Middle { rest } => out.push(rest),
            Piece::Last => {}
        }
    }

    /// Appends the whole flow message: header then payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.header_len() + self.payload.len());
        self.write_header(out);
        out.extend_from_slice(&self.payload);
    }

    /// The first id after the message this fragment belongs to, when the fragment says it;
    /// for a first piece or a whole message, that is where the *next* message starts.
    fn message_end(&self) -> u64 {
        let rest = match self.piece {
            Piece::Whole { .. } | Piece::Last => 0,
            Piece::First { rest, .. } | Piece::Middle { rest } => rest,
        };
        self.id.saturating_add(u64::from(rest) + 1)
    }

    /// The lowest message boundary this fragment proves that is above `after`: its own id
    /// if it starts a message, else the id after its message's end.
    fn boundary_after(&self, after: u64) -> u64 {
        if self.piece.starts_message() && self.id > after {
            self.id
        } else {
            self.message_end()
        }
    }
}

/// A media message too long for one group stream message: more than 256 pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("media message of {len} bytes is longer than a group stream carries ({MAX_MESSAGE_LEN} bytes, 256 pieces of 959)")]
pub struct MessageTooLarge {
    pub len: usize,
}

/// Cuts a stream's media messages into numbered fragments (the publisher's side;
/// librtmfp: sources/GroupMedia.cpp `onMedia`).
#[derive(Debug, Clone)]
pub struct Fragmenter {
    next_id: u64,
}

impl Default for Fragmenter {
    fn default() -> Self {
        Fragmenter::new()
    }
}

impl Fragmenter {
    /// A new stream: its first fragment is id 1.
    pub fn new() -> Self {
        Fragmenter { next_id: 1 }
    }

    /// The id the next fragment will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The fragments of one media message.
    pub fn fragment(
        &mut self,
        message: &MediaMessage,
    ) -> Result<Vec<GroupFragment>, MessageTooLarge> {
        self.fragment_raw(
            rtmp_type_of(message.kind),
            message.timestamp,
            &message.payload,
        )
    }

    /// The fragments of a message given by its RTMP type byte (for the `0f`/`11` messages
    /// that are not [`MediaMessage`]s). An empty payload yields no fragment and takes no
    /// id, as in librtmfp.
    pub fn fragment_raw(
        &mut self,
        media_type: u8,
        time: u32,
        payload: &Bytes,
    ) -> Result<Vec<GroupFragment>, MessageTooLarge> {
        let len = payload.len();
        if len > MAX_MESSAGE_LEN {
            return Err(MessageTooLarge { len });
        }
        let pieces = len.div_ceil(MAX_FRAGMENT_PAYLOAD);
        let first_id = self.next_id;
        self.next_id += pieces as u64;
        Ok((0..pieces)
            .map(|i| {
                let start = i * MAX_FRAGMENT_PAYLOAD;
                let end = (start + MAX_FRAGMENT_PAYLOAD).min(len);
                // `pieces <= 256`, so the rest count fits a byte.
                let rest = (pieces - 1 - i) as u8;
                let piece = match (i, rest) {
                    (0, 0) => Piece::Whole { media_type, time },
                    (0, _) => Piece::First {
                        rest,
                        media_type,
                        time,
                    },
                    (_, 0) => Piece::Last,
                    _ => Piece::Middle { rest },
                };
                GroupFragment {
                    id: first_id + i as u64,
                    piece,
                    payload: payload.slice(start..end),
                }
            })
            .collect())
    }
}

/// A media message rebuilt from its fragments, typed by its RTMP type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    /// Id of its first fragment.
    pub id: u64,
    pub media_type: u8,
    /// Milliseconds from the start of the group publication.
    pub time: u32,
    pub payload: Bytes,
}

impl GroupMessage {
    /// As a player-side media message, for the types that are one (`08`, `09`, `12`, and
    /// `0f` without its leading `00`).
    pub fn to_media(&self) -> Option<MediaMessage> {
        let (kind, payload) = match self.media_type {
            rtmp_type::AUDIO => (MediaKind::Audio, self.payload.clone()),
            rtmp_type::VIDEO => (MediaKind::Video, self.payload.clone()),
            rtmp_type::DATA_AMF0 => (MediaKind::Data, self.payload.clone()),
            rtmp_type::DATA_AMF3 => match self.payload.first() {
                Some(0) => (MediaKind::Data, self.payload.slice(1..)),
                _ => return None,
            },
            _ => return None,
        };
        Some(MediaMessage {
            kind,
            timestamp: self.time,
            payload,
        })
    }
}

/// The player-side start rule: what a member writes to its player always decodes.
///
/// Until the first video keyframe, codec headers (AVC/HEVC/AAC sequence headers) and
/// metadata are held back, the latest of each kind, and every other audio, video and data
/// message is dropped. The keyframe releases the held headers (in stream order) and then
/// itself; the headers therefore follow any message that passed while waiting. After a loss ([`DecodableStart::gap`]) video waits for the next keyframe again,
/// since the inter frames after a lost picture do not decode; audio goes on.
///
/// An audio-only stream has no keyframe: when no video message has been seen while audio
/// spans `audio_only_after_ms` of media time, the next audio message starts the output.
/// Messages that are neither media nor data (`11` invocations such as `closeStream`) always
/// pass: they never confuse a decoder and a player must not miss the end of a stream.
#[derive(Debug, Clone)]
pub struct DecodableStart {
    audio_only_after_ms: u32,
    started: bool,
    video_needs_keyframe: bool,
    video_seen: bool,
    first_audio_time: Option<u32>,
    dropped: u64,
    video_header: Option<GroupMessage>,
    audio_header: Option<GroupMessage>,
    metadata: Option<GroupMessage>,
    /// An AAC configuration went out: AAC frames decode from here on.
    aac_config_out: bool,
}

/// Video whose decoder needs a sequence header before any frame: AVC (codec 7), HEVC
/// (12), and enhanced-RTMP codecs (the high bit of the first byte).
fn video_needs_header(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|b| b & 0x80 != 0 || matches!(b & 0x0f, 7 | 12))
}

/// AAC audio (sound format 10), which needs its AudioSpecificConfig first.
fn is_aac(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b >> 4 == 10)
}

/// Default media time of audio without any video before an audio-only stream starts.
pub const DEFAULT_AUDIO_ONLY_AFTER_MS: u32 = 1000;

impl Default for DecodableStart {
    fn default() -> Self {
        DecodableStart::new(DEFAULT_AUDIO_ONLY_AFTER_MS)
    }
}

impl DecodableStart {
    pub fn new(audio_only_after_ms: u32) -> Self {
        DecodableStart {
            audio_only_after_ms,
            started: false,
            video_needs_keyframe: true,
            video_seen: false,
            first_audio_time: None,
            dropped: 0,
            video_header: None,
            audio_header: None,
            metadata: None,
            aac_config_out: false,
        }
    }

    /// Whether output has started.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Messages dropped so far, including held headers replaced by newer ones.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Some message was lost: video resumes at the next keyframe.
    pub fn gap(&mut self) {
        self.video_needs_keyframe = true;
    }

    /// Feeds one message in stream order; what the player should get is appended to `out`.
    pub fn push(&mut self, message: GroupMessage, out: &mut VecDeque<GroupMessage>) {
        let Some(media) = message.to_media() else {
            out.push_back(message);
            return;
        };
        let header = media.is_sequence_header();
        if media.kind == MediaKind::Video {
            self.video_seen = true;
        }
        if self.started {
            if media.kind == MediaKind::Video && !header {
                if media.is_keyframe() {
                    self.video_needs_keyframe = false;
                } else if self.video_needs_keyframe {
                    self.dropped += 1;
                    return;
                }
            }
            if media.kind == MediaKind::Audio && is_aac(&media.payload) {
                if header {
                    self.aac_config_out = true;
                } else if !self.aac_config_out {
                    // AAC frames before their configuration do not decode.
                    self.dropped += 1;
                    return;
                }
            }
            out.push_back(message);
            return;
        }
        let slot = if header {
            match media.kind {
                MediaKind::Video => Some(&mut self.video_header),
                _ => Some(&mut self.audio_header),
            }
        } else if media.is_metadata() {
            Some(&mut self.metadata)
        } else {
            None
        };
        if let Some(slot) = slot {
            if slot.replace(message).is_some() {
                self.dropped += 1;
            }
            return;
        }
        let starts = match media.kind {
            // A keyframe decodes only after its codec's sequence header: one that came
            // before the header (a member joining between the two) does not start.
            MediaKind::Video => {
                media.is_keyframe()
                    && (self.video_header.is_some() || !video_needs_header(&media.payload))
            }
            MediaKind::Audio => {
                let first = *self.first_audio_time.get_or_insert(media.timestamp);
                !self.video_seen
                    && media.timestamp.saturating_sub(first) >= self.audio_only_after_ms
            }
            MediaKind::Data => false,
        };
        if !starts {
            self.dropped += 1;
            return;
        }
        self.started = true;
        self.video_needs_keyframe = media.kind != MediaKind::Video;
        let mut held: Vec<GroupMessage> = [
            self.metadata.take(),
            self.video_header.take(),
            self.audio_header.take(),
        ]
        .into_iter()
        .flatten()
        .collect();
        held.sort_by_key(|m| m.id);
        self.aac_config_out |= held
            .iter()
            .any(|m| m.media_type == rtmp_type::AUDIO && is_aac(&m.payload));
        out.extend(held);
        out.push_back(message);
    }
}

/// Tuning of a [`Reassembler`].
#[derive(Debug, Clone)]
pub struct ReassemblerConfig {
    /// How long a missing fragment may hold back fragments that arrived after it before its
    /// message is given up. librtmfp retries a pull after one fetch period (2.5 s), so the
    /// default of two fetch periods allows one retry.
    pub max_wait: Duration,
    /// Bytes of fragments waiting behind a hole; beyond it the oldest hole is given up at
    /// once, whatever `max_wait` says, so memory stays bounded.
    pub max_pending_bytes: usize,
    /// Fragments further than this ahead of the output point are refused, unless nothing
    /// was accepted for `max_wait` and nothing waits: then the output jumps to them (the
    /// stream went on without us).
    pub max_ahead: u64,
    /// Apply the [`DecodableStart`] rule; off, every complete message is output.
    pub decodable_start: bool,
    /// See [`DecodableStart`].
    pub audio_only_after_ms: u32,
    /// Before the player has started, how long a hole may hold back a complete keyframe
    /// (that decodes) behind it; then the output starts at that keyframe. Long enough
    /// for a pull and its answer (the pull delay is 500 ms by default): holes are
    /// normal while neighbours' pushes and repairs arrive out of order.
    pub start_wait: Duration,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        ReassemblerConfig {
            max_wait: Duration::from_millis(5000),
            max_pending_bytes: 8 << 20,
            max_ahead: DEFAULT_MAX_AHEAD,
            decodable_start: true,
            audio_only_after_ms: DEFAULT_AUDIO_ONLY_AFTER_MS,
            start_wait: Duration::from_millis(1500),
        }
    }
}

/// What a [`Reassembler`] did with what it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Messages output to the player.
    pub delivered: u64,
    /// Complete messages dropped by the decodable start rule (held headers that a newer
    /// one replaced included).
    pub held_back: u64,
    /// Times the output skipped over a hole (each skips at least one message).
    pub gaps: u64,
    /// Fragment ids given up without having arrived.
    pub missing: u64,
    /// Fragments that arrived but were dropped because their message was incomplete.
    pub discarded: u64,
    /// Fragments that arrived after their id was given up.
    pub late: u64,
    /// Fragments already held or already output, and fragments from before the start.
    pub duplicates: u64,
    /// Fragments refused for an id out of range (above [`MAX_FRAGMENT_ID`] or too far ahead).
    pub refused: u64,
}

/// Per-fragment memory charged on top of the payload, so that empty payloads still count.
const ENTRY_OVERHEAD: usize = 64;

/// How many ranges of given-up ids are remembered to tell late fragments from duplicates.
const REMEMBERED_GAPS: usize = 64;

#[derive(Debug, Clone)]
struct Pending {
    fragment: GroupFragment,
    arrived: Instant,
}

/// Rebuilds a stream's media messages from fragments that arrive in any order, possibly
/// twice, possibly never, and outputs them in id order (the member's player side;
/// librtmfp: sources/GroupBuffer.cpp).
///
/// Output starts at the first message boundary the first fragment proves (or at
/// [`Reassembler::start_at`]). A hole holds later messages back until `max_wait` after the
/// first fragment behind it arrived, or until the bytes waiting pass the cap; then the
/// output skips to the next message boundary it knows of, counting the skipped ids as
/// missing. Sans-IO: time comes in as `now`; [`Reassembler::poll_timeout`] says when to call
/// [`Reassembler::handle_timeout`].
#[derive(Debug, Clone)]
pub struct Reassembler {
    config: ReassemblerConfig,
    next_id: Option<u64>,
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    /// When a fragment was last taken (or first offered).
    last_accepted: Option<Instant>,
    /// Recent ranges of ids given up without having arrived, to tell late from duplicate.
    missing: VecDeque<(u64, u64)>,
    start: Option<DecodableStart>,
    out: VecDeque<GroupMessage>,
    stats: ReassemblyStats,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(ReassemblerConfig::default())
    }
}

impl Reassembler {
    pub fn new(config: ReassemblerConfig) -> Self {
        let start = config
            .decodable_start
            .then(|| DecodableStart::new(config.audio_only_after_ms));
        Reassembler {
            config,
            next_id: None,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            last_accepted: None,
            missing: VecDeque::new(),
            start,
            out: VecDeque::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// Starts the output at `id`, which must be a message boundary (for instance the first
    /// id a member pulls). Only before the first fragment; later calls are ignored.
    /// Fragments below it count as duplicates.
    pub fn start_at(&mut self, id: u64) {
        if self.next_id.is_none() {
            self.next_id = Some(id.max(1));
        }
    }

    /// The next id the output waits for.
    pub fn next_id(&self) -> Option<u64> {
        self.next_id
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Fragments held waiting behind a hole.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held waiting behind a hole (payload plus a fixed overhead per fragment).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Takes one fragment.
    pub fn insert(&mut self, now: Instant, fragment: GroupFragment) {
        if fragment.id == 0 || fragment.id > MAX_FRAGMENT_ID {
            self.stats.refused += 1;
            return;
        }
        let next = *self
            .next_id
            .get_or_insert_with(|| fragment.boundary_after(0).max(1));
        if fragment.id < next {
            if self.take_missing(fragment.id) {
                self.stats.late += 1;
            } else {
                self.stats.duplicates += 1;
            }
            return;
        }
        let mut resync = None;
        if fragment.id - next > self.config.max_ahead {
            // Far ahead: a stray id while the stream flows, or the stream itself after an
            // outage. Only the second kind finds us idle for a whole wait.
            let since = *self.last_accepted.get_or_insert(now);
            let idle = self.pending.is_empty() && now >= since + self.config.max_wait;
            if !idle {
                self.stats.refused += 1;
                return;
            }
            resync = Some(fragment.boundary_after(next));
        }
        if self.pending.contains_key(&fragment.id) {
            self.stats.duplicates += 1;
            return;
        }
        self.last_accepted = Some(now);
        self.pending_bytes += fragment.payload.len() + ENTRY_OVERHEAD;
        self.pending.insert(
            fragment.id,
            Pending {
                fragment,
                arrived: now,
            },
        );
        if let Some(to) = resync {
            // Everything before goes, this fragment too if it ends a message we missed the
            // start of.
            self.skip(next, to);
        }
        self.advance();
        while self.pending_bytes > self.config.max_pending_bytes && self.give_up_head() {
            self.advance();
        }
        self.start_past_hole(now);
    }

    /// Before the player has started: skips the hole at the head once it has held back
    /// a complete keyframe for `start_wait` (see [`Self::decodable_run_behind_hole`]).
    fn start_past_hole(&mut self, now: Instant) {
        // Once playing (every fragment a member takes after its first seconds), nothing
        // to look at.
        if self.start.as_ref().map_or(true, DecodableStart::started) {
            return;
        }
        let (Some(next), Some(since)) = (self.next_id, self.blocked_since()) else {
            return;
        };
        if now < since + self.config.start_wait {
            return;
        }
        if let Some(to) = self.decodable_run_behind_hole() {
            self.skip(next, to);
            self.advance();
        }
    }

    /// Since when a hole holds the output back: the arrival of the first fragment
    /// behind it.
    fn blocked_since(&self) -> Option<Instant> {
        let blocked = self.blocked_at()?;
        let (_, behind) = self.pending.range(blocked + 1..).next()?;
        Some(behind.arrived)
    }

    /// Gives up every message that starts below `id`, for instance when the store evicted
    /// them: nobody can serve them any more.
    pub fn skip_before(&mut self, id: u64) {
        while let Some(next) = self.next_id.filter(|&next| next < id) {
            // Up to the next boundary, but not beyond `id`: what follows may still come. If
            // `id` is inside a message, the head is then an orphan piece and goes too.
            let to = self.next_boundary().map_or(id, |b| b.min(id));
            self.skip(next, to);
            self.advance();
        }
    }

    /// When a hole's wait runs out, if the output is held back by one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.blocked_since()?;
        let wait = match self.decodable_run_behind_hole() {
            Some(_) => self.config.start_wait.min(self.config.max_wait),
            None => self.config.max_wait,
        };
        Some(since + wait)
    }

    /// Gives up the holes whose wait has run out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_past_hole(now);
        while self.poll_timeout().is_some_and(|t| t <= now) {
            if !self.give_up_head() {
                break;
            }
            self.advance();
        }
    }

    /// The next message for the player, in stream order.
    pub fn poll_message(&mut self) -> Option<GroupMessage> {
        self.out.pop_front()
    }

    /// The first id the output is waiting for, if it is waiting.
    fn blocked_at(&self) -> Option<u64> {
        let next = self.next_id?;
        let head = self.pending.get(&next);
        match head.map(|p| p.fragment.piece) {
            None => (!self.pending.is_empty()).then_some(next),
            Some(Piece::First { rest, .. }) => (1..=u64::from(rest))
                .map(|k| next + k)
                .find(|id| !self.pending.contains_key(id)),
            Some(_) => None,
        }
    }

    /// Before the player has started, where a hole at the head need not be waited for
    /// past `start_wait`: the first message start behind it from which the messages held
    /// run complete and in a row up to a video keyframe that decodes (its codec header
    /// held already, or in the run). The start rule drops everything before that keyframe
    /// anyway, so waiting on the hole for all of `max_wait` would only delay the first
    /// picture. Linear in the fragments held: a run that breaks is not looked at again.
    fn decodable_run_behind_hole(&self) -> Option<u64> {
        let start = self.start.as_ref().filter(|s| !s.started())?;
        let next = self.next_id?;
        let header_held = start.video_header.is_some();
        let mut run: Option<u64> = None;
        let mut header_in_run = header_held;
        let mut cursor = next + 1;
        while let Some((&id, held)) = self.pending.range(cursor..).next() {
            if id != cursor {
                (run, header_in_run) = (None, header_held);
            }
            let (media_type, time, len) = match held.fragment.piece {
                Piece::Whole { media_type, time } => (media_type, time, 1),
                Piece::First {
                    rest,
                    media_type,
                    time,
                } => (media_type, time, u64::from(rest) + 1),
                Piece::Middle { .. } | Piece::Last => {
                    (run, header_in_run) = (None, header_held);
                    cursor = id + 1;
                    continue;
                }
            };
            if !self.holds_whole_message(id, len) {
                (run, header_in_run) = (None, header_held);
                cursor = id + 1;
                continue;
            }
            let run_start = *run.get_or_insert(id);
            let opening = GroupMessage {
                id,
                media_type,
                time,
                payload: held.fragment.payload.clone(),
            };
            if let Some(media) = opening.to_media().filter(|m| m.kind == MediaKind::Video) {
                if media.is_sequence_header() {
                    header_in_run = true;
                } else if media.is_keyframe()
                    && (header_in_run || !video_needs_header(&media.payload))
                {
                    return Some(run_start);
                }
            }
            cursor = id + len;
        }
        None
    }

    /// Whether the `len` pieces of the message starting at `first` are all held, each the
    /// piece expected there.
    fn holds_whole_message(&self, first: u64, len: u64) -> bool {
        (1..len).all(|k| {
            let expected = if k == len - 1 {
                Piece::Last
            } else {
                Piece::Middle {
                    rest: (len - 1 - k) as u8,
                }
            };
            self.pending
                .get(&(first + k))
                .is_some_and(|p| p.fragment.piece == expected)
        })
    }

    /// Outputs every message that is complete at the head.
    fn advance(&mut self) {
        while let Some(next) = self.next_id {
            let Some(head) = self.pending.get(&next) else {
                return;
            };
            match head.fragment.piece {
                Piece::Whole { media_type, time } => {
                    let payload = head.fragment.payload.clone();
                    self.remove(next);
                    self.next_id = Some(next + 1);
                    self.output(GroupMessage {
                        id: next,
                        media_type,
                        time,
                        payload,
                    });
                }
                Piece::First {
                    rest,
                    media_type,
                    time,
                } => {
                    let rest = u64::from(rest);
                    for k in 1..=rest {
                        let expected = if k == rest {
                            Piece::Last
                        } else {
                            Piece::Middle {
                                rest: (rest - k) as u8,
                            }
                        };
                        match self.pending.get(&(next + k)) {
                            None => return,
                            Some(p) if p.fragment.piece == expected => {}
                            Some(_) => {
                                // Pieces that do not fit together: the message is broken.
                                self.skip(next, next + k);
                                break;
                            }
                        }
                    }
                    if self.next_id != Some(next) {
                        continue;
                    }
                    let mut payload = BytesMut::new();
                    for id in next..=next + rest {
                        if let Some(p) = self.remove(id) {
                            payload.extend_from_slice(&p.fragment.payload);
                        }
                    }
                    self.next_id = Some(next + rest + 1);
                    self.output(GroupMessage {
                        id: next,
                        media_type,
                        time,
                        payload: payload.freeze(),
                    });
                }
                // A lone last piece right after a complete message: Flash sometimes sends
                // one (librtmfp: sources/GroupBuffer.cpp); it has no type to play it as.
                Piece::Last => {
                    self.remove(next);
                    self.stats.discarded += 1;
                    self.next_id = Some(next + 1);
                }
                // The rest of a message whose first piece is gone.
                Piece::Middle { .. } => {
                    let end = head.fragment.message_end();
                    self.skip(next, end);
                }
            }
        }
    }

    /// Skips the blocked head message to the next boundary known. False if nothing is
    /// known beyond the head.
    fn give_up_head(&mut self) -> bool {
        match self.next_boundary() {
            Some(to) => {
                self.skip(self.next_id.unwrap_or(to), to);
                true
            }
            None => false,
        }
    }

    /// The lowest message boundary above the head that the fragments held prove.
    fn next_boundary(&self) -> Option<u64> {
        let next = self.next_id?;
        let mut best: Option<u64> = None;
        for (&id, p) in self.pending.range(next..) {
            if best.is_some_and(|b| id >= b) {
                break;
            }
            let boundary = p.fragment.boundary_after(next);
            if boundary > next {
                best = Some(best.map_or(boundary, |b| b.min(boundary)));
            }
        }
        best
    }

    /// Drops ids `from..to`, counting what was there and what was not.
    fn skip(&mut self, from: u64, to: u64) {
        let mut dropped = self.pending.split_off(&to);
        std::mem::swap(&mut dropped, &mut self.pending);
        let mut cursor = from;
        for (&id, p) in &dropped {
            self.pending_bytes -= p.fragment.payload.len() + ENTRY_OVERHEAD;
            self.remember_missing(cursor, id);
            cursor = id + 1;
        }
        self.remember_missing(cursor, to);
        self.stats.discarded += dropped.len() as u64;
        self.stats.missing += (to - from).saturating_sub(dropped.len() as u64);
        self.stats.gaps += 1;
        self.next_id = Some(to);
        if let Some(start) = &mut self.start {
            start.gap();
        }
    }

    fn remember_missing(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        if self.missing.len() == REMEMBERED_GAPS {
            self.missing.pop_front();
        }
        self.missing.push_back((from, to));
    }

    /// Whether `id` was given up without having arrived; forgets it, so that it is late
    /// only once.
    fn take_missing(&mut self, id: u64) -> bool {
        let Some(i) = self.missing.iter().position(|&(a, b)| (a..b).contains(&id)) else {
            return false;
        };
        let (a, b) = self.missing[i];
        self.missing[i] = (a, id);
        self.missing.insert(i + 1, (id + 1, b));
        self.missing.retain(|&(a, b)| a < b);
        while self.missing.len() > REMEMBERED_GAPS {
            self.missing.pop_front();
        }
        true
    }

    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.pending_bytes -= p.fragment.payload.len() + ENTRY_OVERHEAD;
        Some(p)
    }

    fn output(&mut self, message: GroupMessage) {
        let before = self.out.len();
        match &mut self.start {
            Some(start) => {
                start.push(message, &mut self.out);
                self.stats.held_back = start.dropped();
            }
            None => self.out.push_back(message),
        }
        self.stats.delivered += (self.out.len() - before) as u64;
    }
}

/// Bounds of a [`FragmentStore`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The stream's window duration (subscription option `03`).
    pub window: Duration,
    /// Extra time fragments stay available for relaying.
    pub relay_margin: Duration,
    /// Memory cap: payload bytes plus a fixed overhead per fragment. The oldest ids go
    /// first when it is passed, whatever their age.
    pub max_bytes: usize,
    /// Fragments further than this ahead of the newest id held are refused.
    pub max_ahead: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            window: DEFAULT_WINDOW,
            relay_margin: DEFAULT_RELAY_MARGIN,
            max_bytes: 16 << 20,
            max_ahead: DEFAULT_MAX_AHEAD,
        }
    }
}

/// What [`FragmentStore::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Kept (it may already be gone again if it alone passed the byte cap).
    New,
    /// The id was already held.
    Duplicate,
    /// Below the window: already evicted.
    TooOld,
    /// Id 0, above [`MAX_FRAGMENT_ID`], or too far ahead of the newest id held.
    OutOfRange,
}

/// The fragments of one stream that a member holds to serve neighbours: pulls
/// ([`FragmentStore::get`]), pushes and availability maps ([`FragmentStore::map`]).
///
/// A fragment's age is counted from when the stream's newest id first reached it
/// (librtmfp: sources/GroupMedia.cpp `eraseOldFragments`), not from when the fragment
/// itself arrived: a hole filled late by a pull leaves with its neighbours. Fragments
/// older than window + relay margin are evicted, and so are the oldest ids when the byte cap
/// is passed; ids below what was evicted are refused afterwards.
#[derive(Debug, Clone)]
pub struct FragmentStore {
    config: StoreConfig,
    fragments: BTreeMap<u64, GroupFragment>,
    bytes: usize,
    /// `(when, id)`: `id` became the newest id at `when`; increasing in both.
    marks: VecDeque<(Instant, u64)>,
    /// The lowest id that may still be stored.
    floor: u64,
    evicted: u64,
}

impl Default for FragmentStore {
    fn default() -> Self {
        FragmentStore::new(StoreConfig::default())
    }
}

impl FragmentStore {
    pub fn new(config: StoreConfig) -> Self {
        FragmentStore {
            config,
            fragments: BTreeMap::new(),
            bytes: 0,
            marks: VecDeque::new(),
            floor: 1,
            evicted: 0,
        }
    }

    /// Adds a fragment received at (or created at) `now`, evicting what `now` makes too old.
    pub fn insert(&mut self, now: Instant, fragment: GroupFragment) -> Stored {
        self.expire(now);
        let id = fragment.id;
        if id == 0
            || id > MAX_FRAGMENT_ID
            || self
                .newest()
                .is_some_and(|newest| id > newest.saturating_add(self.config.max_ahead))
        {
            return Stored::OutOfRange;
        }
        if id < self.floor {
            return Stored::TooOld;
        }
        if self.fragments.contains_key(&id) {
            return Stored::Duplicate;
        }
        if self.marks.back().map_or(true, |&(_, newest)| id > newest) {
            self.marks.push_back((now, id));
        }
        self.bytes += fragment.payload.len() + ENTRY_OVERHEAD;
        self.fragments.insert(id, fragment);
        while self.bytes > self.config.max_bytes {
            let Some((&oldest, _)) = self.fragments.first_key_value() else {
                break;
            };
            self.evict_below(oldest + 1);
        }
        Stored::New
    }

    /// Evicts the fragments older than window + relay margin at `now`.
    pub fn expire(&mut self, now: Instant) {
        let keep = self.config.window + self.config.relay_margin;
        while let Some(&(when, id)) = self.marks.front() {
            if when + keep > now {
                break;
            }
            self.evict_below(id + 1);
        }
    }

    /// When the oldest fragment expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        let keep = self.config.window + self.config.relay_margin;
        self.marks.front().map(|&(when, _)| when + keep)
    }

    /// Drops every id below `id`, and refuses them from now on.
    pub fn evict_below(&mut self, id: u64) {
        if id <= self.floor {
            return;
        }
        let kept = self.fragments.split_off(&id);
        for f in std::mem::replace(&mut self.fragments, kept).into_values() {
            self.bytes -= f.payload.len() + ENTRY_OVERHEAD;
            self.evicted += 1;
        }
        self.floor = id;
        while self.marks.front().is_some_and(|&(_, m)| m < id) {
            self.marks.pop_front();
        }
    }

    pub fn get(&self, id: u64) -> Option<&GroupFragment> {
        self.fragments.get(&id)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.fragments.contains_key(&id)
    }

    /// The newest id held.
    pub fn newest(&self) -> Option<u64> {
        self.fragments.last_key_value().map(|(&id, _)| id)
    }

    /// The oldest id held.
    pub fn oldest(&self) -> Option<u64> {
        self.fragments.first_key_value().map(|(&id, _)| id)
    }

    /// The lowest id the store still accepts: everything below was evicted.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn len(&self) -> usize {
        self.fragments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// Memory charged against the cap.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Fragments evicted so far, by age or by the byte cap.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Held fragments from `from` up, in id order (for pushing what a neighbour asks).
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = &GroupFragment> {
        self.fragments.range(from..).map(|(_, f)| f)
    }

    /// Our availability map, or `None` while we hold nothing.
    pub fn map(&self) -> Option<FragmentsMap> {
        let last_id = self.newest()?;
        let oldest = self.oldest().unwrap_or(last_id);
        let len = ((last_id - oldest).div_ceil(8) as usize).min(MAX_MAP_BITMAP_LEN);
        let mut bitmap = vec![0u8; len];
        for (&id, _) in self.fragments.range(..last_id).rev() {
            let distance = last_id - 1 - id;
            let byte = (distance / 8) as usize;
            if byte >= len {
                break;
            }
            bitmap[byte] |= 1 << (distance % 8);
        }
        Some(FragmentsMap {
            last_id,
            bitmap: Bytes::from(bitmap),
        })
    }

    /// The ids a neighbour's map shows that we lack and may still store, from `from` to
    /// `to` (both included), oldest first: librtmfp pulls the holes in ascending order from
    /// where its previous pass stopped up to the newest id announced one fetch period ago
    /// (sources/GroupMedia.cpp `sendPullRequests`).
    pub fn pull_candidates<'a>(
        &'a self,
        map: &'a FragmentsMap,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = u64> + 'a {
        let from = from.max(self.floor).max(map.oldest_covered());
        let to = to.min(map.last_id);
        (from..=to).filter(move |&id| map.contains(id) && !self.contains(id))
    }
}

/// A fragments map (`22`): the ids a member holds, as `lastId` and a bitmap of the ids
/// before it (docs/netgroup.md §3.6). Bit `k` (LSB = 0) of bitmap byte `j` stands for
/// `lastId − 1 − 8j − k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentsMap {
    /// The newest id the sender holds; held by definition.
    pub last_id: u64,
    /// At most [`MAX_MAP_BITMAP_LEN`] bytes.
    pub bitmap: Bytes,
}

impl FragmentsMap {
    /// Reads a whole `22` message. A longer bitmap than 1024 bytes is cut (it only speaks
    /// of ids older than any window keeps).
    pub fn parse(message: &Bytes) -> Result<FragmentsMap, GroupMediaParseError> {
        let mut r = Reader::new(message);
        let kind = r.u8().map_err(|_| GroupMediaParseError::Empty)?;
        if kind != FRAGMENTS_MAP_TYPE {
            return Err(GroupMediaParseError::NotAMap(kind));
        }
        let last_id = checked_id(r.vlu()?)?;
        let start = message.len() - r.remaining();
        let end = message.len().min(start + MAX_MAP_BITMAP_LEN);
        Ok(FragmentsMap {
            last_id,
            bitmap: message.slice(start..end),
        })
    }

    /// Appends the whole `22` message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FRAGMENTS_MAP_TYPE);
        put_vlu(out, self.last_id);
        out.extend_from_slice(&self.bitmap);
    }

    /// Whether the map shows `id`.
    pub fn contains(&self, id: u64) -> bool {
        if id == 0 || id > self.last_id {
            return false;
        }
        if id == self.last_id {
            return true;
        }
        let distance = self.last_id - 1 - id;
        let byte = distance / 8;
        byte < self.bitmap.len() as u64 && self.bitmap[byte as usize] & (1 << (distance % 8)) != 0
    }

    /// The oldest id the bitmap speaks about (at least 1).
    pub fn oldest_covered(&self) -> u64 {
        self.last_id
            .saturating_sub(8 * self.bitmap.len() as u64)
            .max(1)
    }

    /// The ids shown, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        (self.oldest_covered()..=self.last_id).filter(|&id| self.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    fn bytes(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    fn encoded(f: &GroupFragment) -> Vec<u8> {
        let mut out = Vec::new();
        f.encode(&mut out);
        out
    }

    fn whole(id: u64, payload: &[u8]) -> GroupFragment {
        GroupFragment {
            id,
            piece: Piece::Whole {
                media_type: rtmp_type::AUDIO,
                time: 0,
            },
            payload: bytes(payload),
        }
    }

    // ---- wire codec ----

    #[test]
    fn whole_fragment_bytes_follow_the_documented_layout() {
        // 20 id(VLU) type(1) time(4) payload
        let f = GroupFragment {
            id: 1,
            piece: Piece::Whole {
                media_type: rtmp_type::VIDEO,
                time: 0x0102_0304,
            },
            payload: bytes(&[0x17, 0x01]),
        };
        let wire = [0x20, 0x01, 0x09, 0x01, 0x02, 0x03, 0x04, 0x17, 0x01];
        assert_eq!(encoded(&f), wire);
        assert_eq!(f.header_len(), 7);
        assert_eq!(GroupFragment::parse(&bytes(&wire)), Ok(f));
    }

    #[test]
    fn split_fragment_bytes_follow_the_documented_layout() {
        // id 200 is the two-byte VLU 81 48.
        let first = GroupFragment {
            id: 200,
            piece: Piece::First {
                rest: 2,
                media_type: rtmp_type::AUDIO,
                time: 0x10,
            },
            payload: bytes(b"ab"),
        };
        let middle = GroupFragment {
            id: 201,
            piece: Piece::Middle { rest: 1 },
            payload: bytes(b"cd"),
        };
        let last = GroupFragment {
            id: 202,
            piece: Piece::Last,
            payload: bytes(b"e"),
        };
        let expected: [&[u8]; 3] = [
            &[0x30, 0x81, 0x48, 0x02, 0x08, 0, 0, 0, 0x10, b'a', b'b'],
            &[0x10, 0x81, 0x49, 0x01, b'c', b'd'],
            &[0x00, 0x81, 0x4a, b'e'],
        ];
        for (f, wire) in [first, middle, last].iter().zip(expected) {
            assert_eq!(encoded(f), wire);
            assert_eq!(f.header_len() + f.payload.len(), wire.len());
            assert_eq!(GroupFragment::parse(&bytes(wire)).as_ref(), Ok(f));
        }
    }

    #[test]
    fn malformed_fragments_are_refused_with_a_reason() {
        use GroupMediaParseError::*;
        let parse = |b: &[u8]| GroupFragment::parse(&bytes(b));
        assert_eq!(parse(&[]), Err(Empty));
        assert_eq!(parse(&[0x22, 0x01]), Err(NotAFragment(0x22)));
        assert_eq!(parse(&[0x20]), Err(Truncated));
        assert_eq!(parse(&[0x20, 0x81]), Err(Truncated));
        assert_eq!(parse(&[0x20, 0x01, 0x09, 0, 0, 0]), Err(Truncated));
        assert_eq!(parse(&[0x30, 0x01, 0x02, 0x09, 0, 0, 0]), Err(Truncated));
        assert_eq!(parse(&[0x10, 0x01]), Err(Truncated));
        assert_eq!(parse(&[0x00, 0x00]), Err(ZeroId));
        assert_eq!(parse(&[0x30, 0x01, 0x00, 0x09, 0, 0, 0, 0]), Err(ZeroRest));
        assert_eq!(parse(&[0x10, 0x01, 0x00]), Err(ZeroRest));
        assert_eq!(
            parse(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(IdOverflow)
        );
        // 2^62 + 1 is a valid VLU, but no stream gets there.
        let above = [0x00, 0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(parse(&above), Err(IdOverflow));
        let max = [0x00, 0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(parse(&max).map(|f| f.id), Ok(MAX_FRAGMENT_ID));
        // Headers without payload are fine: the payload may be empty.
        assert_eq!(parse(&[0x00, 0x05]).map(|f| f.payload.len()), Ok(0));
    }

    #[test]
    fn parsed_payload_shares_the_message_buffer() {
        let wire = bytes(&[0x00, 0x05, 1, 2, 3]);
        let f = GroupFragment::parse(&wire).unwrap();
        assert_eq!(f.payload.as_ptr(), wire[2..].as_ptr());
    }

    fn any_piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            (any::<u8>(), any::<u32>())
                .prop_map(|(media_type, time)| Piece::Whole { media_type, time }),
            (1..=255u8, any::<u8>(), any::<u32>()).prop_map(|(rest, media_type, time)| {
                Piece::First {
                    rest,
                    media_type,
                    time,
                }
            }),
            (1..=255u8).prop_map(|rest| Piece::Middle { rest }),
            Just(Piece::Last),
        ]
    }

    proptest! {
        #[test]
        fn fragments_round_trip(
            id in 1..=MAX_FRAGMENT_ID,
            piece in any_piece(),
            payload in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            let f = GroupFragment { id, piece, payload: Bytes::from(payload) };
            let wire = encoded(&f);
            prop_assert_eq!(wire.len(), f.header_len() + f.payload.len());
            prop_assert_eq!(GroupFragment::parse(&Bytes::from(wire)), Ok(f));
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..64)) {
            let wire = Bytes::from(wire);
            if let Ok(f) = GroupFragment::parse(&wire) {
                // What parses encodes back to the same fragment (a peer may write an id
                // as a longer VLU than needed, `80 01` for 1; we write the shortest).
                let again = Bytes::from(encoded(&f));
                prop_assert!(again.len() <= wire.len());
                prop_assert_eq!(GroupFragment::parse(&again), Ok(f));
            }
            if let Ok(m) = FragmentsMap::parse(&wire) {
                let mut out = Vec::new();
                m.encode(&mut out);
                prop_assert!(out.len() <= wire.len());
                prop_assert_eq!(FragmentsMap::parse(&Bytes::from(out)), Ok(m));
            }
        }
    }

    // ---- fragmenter ----

    fn message_of_len(len: usize) -> MediaMessage {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        MediaMessage::new(MediaKind::Video, 40, payload)
    }

    #[test]
    fn messages_up_to_959_bytes_travel_whole() {
        let mut f = Fragmenter::new();
        let out = f.fragment(&message_of_len(959)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, 1);
        assert_eq!(
            out[0].piece,
            Piece::Whole {
                media_type: 0x09,
                time: 40
            }
        );
        assert_eq!(out[0].payload.len(), 959);
        assert_eq!(f.next_id(), 2);
    }

    #[test]
    fn longer_messages_split_into_959_byte_pieces_with_rest_counting_down() {
        let mut f = Fragmenter::new();
        let message = message_of_len(959 * 3 + 1);
        let out = f.fragment(&message).unwrap();
        let pieces: Vec<Piece> = out.iter().map(|f| f.piece).collect();
        assert_eq!(
            pieces,
            [
                Piece::First {
                    rest: 3,
                    media_type: 0x09,
                    time: 40
                },
                Piece::Middle { rest: 2 },
                Piece::Middle { rest: 1 },
                Piece::Last,
            ]
        );
        let sizes: Vec<usize> = out.iter().map(|f| f.payload.len()).collect();
        assert_eq!(sizes, [959, 959, 959, 1]);
        assert_eq!(out.iter().map(|f| f.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
        // Slices of the message, not copies.
        for (i, piece) in out.iter().enumerate() {
            assert_eq!(piece.payload.as_ptr(), message.payload[i * 959..].as_ptr());
        }
        // Exactly two pieces when the message is one byte over.
        let two = f.fragment(&message_of_len(960)).unwrap();
        assert_eq!(two.iter().map(|f| f.id).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(two[1].piece, Piece::Last);
    }

    #[test]
    fn kinds_map_to_rtmp_type_bytes() {
        let mut f = Fragmenter::new();
        for (kind, byte) in [
            (MediaKind::Audio, 0x08),
            (MediaKind::Video, 0x09),
            (MediaKind::Data, 0x12),
        ] {
            let out = f.fragment(&MediaMessage::new(kind, 7, &b"x"[..])).unwrap();
            assert_eq!(
                out[0].piece,
                Piece::Whole {
                    media_type: byte,
                    time: 7
                }
            );
        }
    }

    #[test]
    fn empty_messages_take_no_id_and_oversized_ones_are_refused() {
        let mut f = Fragmenter::new();
        assert!(f.fragment(&message_of_len(0)).unwrap().is_empty());
        assert_eq!(f.next_id(), 1);
        let largest = f.fragment(&message_of_len(MAX_MESSAGE_LEN)).unwrap();
        assert_eq!(largest.len(), 256);
        assert!(matches!(largest[0].piece, Piece::First { rest: 255, .. }));
        assert_eq!(
            f.fragment(&message_of_len(MAX_MESSAGE_LEN + 1)),
            Err(MessageTooLarge {
                len: MAX_MESSAGE_LEN + 1
            })
        );
        assert_eq!(f.next_id(), 257, "a refused message takes no id");
    }

    // ---- reassembly ----

    fn plain() -> ReassemblerConfig {
        ReassemblerConfig {
            decodable_start: false,
            ..ReassemblerConfig::default()
        }
    }

    /// Messages of the given lengths, fragmented; returns (messages with their first id, fragments).
    fn stream(lens: &[usize]) -> (Vec<(u64, usize, Bytes)>, Vec<GroupFragment>) {
        let mut f = Fragmenter::new();
        let mut messages = Vec::new();
        let mut fragments = Vec::new();
        for (n, &len) in lens.iter().enumerate() {
            let payload: Bytes = (0..len).map(|i| (i + n) as u8).collect::<Vec<u8>>().into();
            let pieces = f
                .fragment_raw(rtmp_type::AUDIO, n as u32, &payload)
                .unwrap();
            messages.push((pieces[0].id, pieces.len(), payload));
            fragments.extend(pieces);
        }
        (messages, fragments)
    }

    fn drain(r: &mut Reassembler) -> Vec<GroupMessage> {
        std::iter::from_fn(|| r.poll_message()).collect()
    }

    #[test]
    fn out_of_order_pieces_come_out_as_whole_messages_in_order() {
        let (messages, mut fragments) = stream(&[10, 2000, 959, 3000]);
        fragments.reverse();
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        for f in fragments {
            r.insert(ms(0), f);
        }
        let out = drain(&mut r);
        assert_eq!(out.len(), 4);
        for (got, (id, _, payload)) in out.iter().zip(&messages) {
            assert_eq!((got.id, &got.payload), (*id, payload));
        }
        assert_eq!(r.stats().delivered, 4);
        assert_eq!(r.pending_len(), 0);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn a_hole_holds_later_messages_until_the_wait_runs_out_then_is_counted_missing() {
        let (_, fragments) = stream(&[10, 2000, 10]); // ids 1, 2..=4, 5
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        r.insert(ms(0), fragments[0].clone());
        r.insert(ms(10), fragments[1].clone()); // first piece of message 2
        r.insert(ms(20), fragments[3].clone()); // its last piece; 3 is lost
        r.insert(ms(30), fragments[4].clone());
        assert_eq!(drain(&mut r).len(), 1);
        // The wait counts from the first fragment behind the hole (id 4, at 20 ms).
        assert_eq!(r.poll_timeout(), Some(ms(20) + Duration::from_millis(5000)));
        r.handle_timeout(ms(5019));
        assert!(r.poll_message().is_none());
        r.handle_timeout(ms(5020));
        let out = drain(&mut r);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [5]);
        let s = r.stats();
        assert_eq!((s.delivered, s.gaps, s.missing, s.discarded), (2, 1, 1, 2));
        // The lost piece turns up after all: late, and nothing else moves.
        r.insert(ms(6000), fragments[2].clone());
        assert_eq!(r.stats().late, 1);
        assert!(r.poll_message().is_none());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn the_first_fragment_fixes_the_start_at_a_message_boundary() {
        let (_, fragments) = stream(&[2000, 10, 10]); // ids 1..=3, 4, 5
        let mut r = Reassembler::new(plain());
        r.insert(ms(0), fragments[1].clone()); // middle piece (rest 1): start after its message
        assert_eq!(r.next_id(), Some(4));
        for f in &fragments {
            r.insert(ms(0), f.clone());
        }
        assert_eq!(
            drain(&mut r).iter().map(|m| m.id).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(
            r.stats().duplicates,
            4,
            "three from before the start, one repeat"
        );
        assert_eq!(r.stats().missing, 0);
    }

    #[test]
    fn pieces_that_do_not_fit_together_are_discarded() {
        let (_, fragments) = stream(&[2000, 10]); // ids 1..=3, 4
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        r.insert(ms(0), fragments[0].clone());
        // id 2 claims to be a whole message inside message 1.
        r.insert(ms(0), whole(2, b"bogus"));
        let out = drain(&mut r);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [2]);
        r.insert(ms(0), fragments[2].clone()); // orphan last piece of message 1
        r.insert(ms(0), fragments[3].clone());
        assert_eq!(drain(&mut r).iter().map(|m| m.id).collect::<Vec<_>>(), [4]);
        assert_eq!(r.stats().discarded, 2);
    }

    #[test]
    fn waiting_memory_is_capped() {
        let (_, fragments) = stream(&[500; 200]);
        let mut r = Reassembler::new(ReassemblerConfig {
            max_pending_bytes: 10_000,
            ..plain()
        });
        r.start_at(1);
        // Id 1 never comes: without the cap everything would wait behind it.
        for f in fragments.into_iter().skip(1) {
            r.insert(ms(0), f);
            assert!(r.pending_bytes() <= 10_000);
        }
        assert_eq!(drain(&mut r).len(), 199);
        assert_eq!(r.stats().missing, 1);
    }

    #[test]
    fn skipping_below_an_evicted_id_releases_the_output() {
        let (_, fragments) = stream(&[10, 10, 10, 10]);
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        r.insert(ms(0), fragments[3].clone());
        r.skip_before(3);
        assert!(r.poll_message().is_none(), "id 3 may still come");
        r.skip_before(4);
        assert_eq!(drain(&mut r).iter().map(|m| m.id).collect::<Vec<_>>(), [4]);
        assert_eq!(r.stats().missing, 3);
    }

    #[test]
    fn a_stray_far_future_id_cannot_end_the_stream() {
        let (_, fragments) = stream(&[10, 10, 10]);
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        r.insert(ms(0), whole(1 + DEFAULT_MAX_AHEAD + 1, b"stray"));
        r.insert(ms(0), whole(MAX_FRAGMENT_ID + 1, b"stray"));
        r.handle_timeout(ms(1_000_000));
        for f in fragments {
            r.insert(ms(1_000_000), f);
        }
        assert_eq!(drain(&mut r).len(), 3);
        assert_eq!(r.stats().refused, 2);
        assert_eq!(r.stats().missing, 0);
    }

    #[test]
    fn after_an_outage_the_output_jumps_to_where_the_stream_is() {
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        r.insert(ms(0), whole(1, b"a"));
        let far = 2 + DEFAULT_MAX_AHEAD + 10;
        r.insert(ms(4_999), whole(far, b"b"));
        assert_eq!(r.stats().refused, 1, "not idle for a whole wait yet");
        r.insert(ms(5_000), whole(far, b"b"));
        let out = drain(&mut r);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [1, far]);
        let s = r.stats();
        assert_eq!((s.gaps, s.missing), (1, far - 2));
    }

    #[test]
    fn coming_back_in_the_middle_of_a_message_starts_at_the_next_one() {
        let mut r = Reassembler::new(plain());
        r.start_at(1);
        r.insert(ms(0), whole(1, b"a"));
        let far = 2 + DEFAULT_MAX_AHEAD + 10;
        let middle = GroupFragment {
            id: far,
            piece: Piece::Middle { rest: 1 },
            payload: bytes(b"m"),
        };
        r.insert(ms(10_000), middle);
        r.insert(ms(10_000), whole(far + 2, b"c"));
        let out = drain(&mut r);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [1, far + 2]);
        let s = r.stats();
        assert_eq!((s.discarded, s.missing), (1, far + 1 - 2 - 1 + 1));
        assert_eq!(r.pending_len(), 0);
    }

    proptest! {
        /// All fragments arrive (shuffled, some twice, some never) before any wait runs out.
        #[test]
        fn every_complete_message_is_delivered_once_in_order(
            lens in proptest::collection::vec(1..3000usize, 1..30),
            order in proptest::collection::vec(any::<u32>(), 200),
            fate in proptest::collection::vec(0..10u8, 200),
        ) {
            let (messages, fragments) = stream(&lens);
            let n = fragments.len();
            let mut sends: Vec<(u32, usize)> = Vec::new();
            let mut dropped = std::collections::BTreeSet::new();
            for i in 0..n {
                match fate[i % fate.len()] {
                    0 => { dropped.insert(fragments[i].id); }
                    1 => {
                        sends.push((order[i % order.len()], i));
                        sends.push((order[(i + 7) % order.len()], i));
                    }
                    _ => sends.push((order[i % order.len()], i)),
                }
            }
            sends.sort();
            let mut r = Reassembler::new(plain());
            r.start_at(1);
            for &(_, i) in &sends {
                r.insert(ms(0), fragments[i].clone());
            }
            r.handle_timeout(ms(1_000_000));
            let out = drain(&mut r);

            let complete: Vec<&(u64, usize, Bytes)> = messages
                .iter()
                .filter(|(id, pieces, _)| (*id..*id + *pieces as u64).all(|i| !dropped.contains(&i)))
                .collect();
            prop_assert_eq!(out.len(), complete.len());
            for (got, (id, _, payload)) in out.iter().zip(&complete) {
                prop_assert_eq!(got.id, *id);
                prop_assert_eq!(&got.payload, payload);
            }
            let s = r.stats();
            let next = r.next_id().unwrap();
            prop_assert_eq!(s.missing, dropped.range(..next).count() as u64);
            let delivered_pieces: u64 = complete.iter().map(|m| m.1 as u64).sum();
            prop_assert_eq!(s.discarded + delivered_pieces + s.missing, next - 1);
            prop_assert_eq!(s.duplicates as usize, sends.len() - (n - dropped.len()));
            prop_assert_eq!(s.late, 0);
        }

        /// Fragments arrive over time with jitter, waits run out on the way.
        #[test]
        fn with_timeouts_every_message_is_delivered_at_most_once_or_counted(
            lens in proptest::collection::vec(1..2500usize, 1..25),
            delay in proptest::collection::vec(0..300u64, 200),
            fate in proptest::collection::vec(0..12u8, 200),
        ) {
            let (messages, fragments) = stream(&lens);
            let mut sends: Vec<(u64, usize)> = Vec::new();
            for (i, _) in fragments.iter().enumerate() {
                let at = i as u64 * 10 + delay[i % delay.len()];
                match fate[i % fate.len()] {
                    0 => {}
                    1 => { sends.push((at, i)); sends.push((at + 50, i)); }
                    _ => sends.push((at, i)),
                }
            }
            sends.sort();
            let mut r = Reassembler::new(ReassemblerConfig { max_wait: Duration::from_millis(100), ..plain() });
            r.start_at(1);
            let mut out = Vec::new();
            let mut first_arrivals = std::collections::BTreeSet::new();
            for &(at, i) in &sends {
                r.handle_timeout(ms(at));
                r.insert(ms(at), fragments[i].clone());
                first_arrivals.insert(fragments[i].id);
                out.extend(drain(&mut r));
            }
            r.handle_timeout(ms(1_000_000));
            out.extend(drain(&mut r));

            // In order, each at most once, each intact.
            prop_assert!(out.windows(2).all(|w| w[0].id < w[1].id));
            let mut delivered_pieces = 0;
            for m in &out {
                let original = messages.iter().find(|o| o.0 == m.id);
                prop_assert!(original.is_some());
                let original = original.unwrap();
                prop_assert_eq!(&m.payload, &original.2);
                delivered_pieces += original.1 as u64;
            }
            // Every id below the output point was delivered, discarded or given up.
            let s = r.stats();
            let next = r.next_id().unwrap();
            prop_assert_eq!(delivered_pieces + s.discarded + s.missing, next - 1);
            // Every fragment that came was used, discarded, counted late, or still waits.
            prop_assert_eq!(
                delivered_pieces + s.discarded + s.late + r.pending_len() as u64,
                first_arrivals.len() as u64
            );
            prop_assert!(s.late <= s.missing);
        }
    }

    proptest! {
        /// Garbage from a hostile peer: no panic, bounded memory, output still in order.
        #[test]
        fn arbitrary_fragments_keep_the_reassembler_sane(
            input in proptest::collection::vec(
                (1..400u64, any_piece(), 0..1500usize, 0..200u64),
                1..300,
            ),
        ) {
            let mut r = Reassembler::new(ReassemblerConfig {
                max_pending_bytes: 20_000,
                max_wait: Duration::from_millis(300),
                ..ReassemblerConfig::default()
            });
            let mut now = 0;
            let mut last_out = 0;
            for (id, piece, len, step) in input {
                now += step;
                r.handle_timeout(ms(now));
                r.insert(ms(now), GroupFragment { id, piece, payload: Bytes::from(vec![0x17; len]) });
                prop_assert!(r.pending_bytes() <= 20_000);
                for m in drain(&mut r) {
                    prop_assert!(m.id > last_out);
                    last_out = m.id;
                }
            }
        }
    }

    // ---- decodable start ----

    const AVC_HEADER: &[u8] = b"\x17\x00\x00\x00\x00";
    const KEYFRAME: &[u8] = b"\x17\x01\x00\x00\x00";
    const INTER: &[u8] = b"\x27\x01\x00\x00\x00";
    const AAC_HEADER: &[u8] = b"\xaf\x00\x12\x10";
    const AAC: &[u8] = b"\xaf\x01\x21";
    const MP3: &[u8] = b"\x2f\xff\xfb";
    const METADATA: &[u8] = b"\x02\x00\x0aonMetaData\x08";

    fn media_stream(items: &[(u8, u32, &[u8])]) -> Vec<GroupFragment> {
        let mut f = Fragmenter::new();
        items
            .iter()
            .flat_map(|&(t, time, p)| f.fragment_raw(t, time, &bytes(p)).unwrap())
            .collect()
    }

    fn played(items: &[(u8, u32, &[u8])], skip_ids: &[u64]) -> (Vec<u64>, ReassemblyStats) {
        let mut r = Reassembler::default();
        r.start_at(1);
        for f in media_stream(items) {
            if !skip_ids.contains(&f.id) {
                r.insert(ms(0), f);
            }
        }
        r.handle_timeout(ms(1_000_000));
        (drain(&mut r).iter().map(|m| m.id).collect(), r.stats())
    }

    #[test]
    fn output_starts_at_a_keyframe_with_the_latest_headers_first() {
        use rtmp_type::*;
        let (ids, stats) = played(
            &[
                (DATA_AMF0, 0, METADATA), // 1
                (VIDEO, 0, AVC_HEADER),   // 2: replaced by 5
                (AUDIO, 0, AAC_HEADER),   // 3
                (VIDEO, 40, INTER),       // 4: undecodable
                (VIDEO, 80, AVC_HEADER),  // 5
                (AUDIO, 90, AAC),         // 6: before the start
                (VIDEO, 120, KEYFRAME),   // 7
                (AUDIO, 130, AAC),        // 8
                (VIDEO, 160, INTER),      // 9
            ],
            &[],
        );
        assert_eq!(ids, [1, 3, 5, 7, 8, 9]);
        assert_eq!(stats.held_back, 3);
        assert_eq!(stats.delivered, 6);
    }

    #[test]
    fn a_keyframe_before_its_codec_header_does_not_start_the_output() {
        use rtmp_type::*;
        // A member that joins mid-stream: the first keyframe it gets came before any
        // AVC sequence header it has, and AAC frames before their configuration.
        let (ids, _) = played(
            &[
                (AUDIO, 0, AAC),          // 1: no configuration yet
                (VIDEO, 0, KEYFRAME),     // 2: no header yet: does not decode
                (VIDEO, 40, INTER),       // 3
                (VIDEO, 80, AVC_HEADER),  // 4: re-sent before the next keyframe
                (VIDEO, 120, KEYFRAME),   // 5: starts
                (AUDIO, 130, AAC),        // 6: AAC still without its configuration
                (AUDIO, 140, AAC_HEADER), // 7
                (AUDIO, 150, AAC),        // 8
                (VIDEO, 160, INTER),      // 9
            ],
            &[],
        );
        assert_eq!(ids, [4, 5, 7, 8, 9]);
    }

    #[test]
    fn after_a_loss_video_waits_for_the_next_keyframe_and_audio_goes_on() {
        use rtmp_type::*;
        let (ids, _) = played(
            &[
                (VIDEO, 0, AVC_HEADER), // 1
                (VIDEO, 0, KEYFRAME),   // 2
                (VIDEO, 40, INTER),     // 3: lost
                (VIDEO, 80, INTER),     // 4: depends on 3
                (AUDIO, 90, MP3),       // 5
                (VIDEO, 120, KEYFRAME), // 6
                (VIDEO, 160, INTER),    // 7
            ],
            &[3],
        );
        assert_eq!(ids, [1, 2, 5, 6, 7]);
    }

    #[test]
    fn audio_only_streams_start_once_no_video_came_for_a_while() {
        use rtmp_type::*;
        let (ids, _) = played(
            &[
                (AUDIO, 0, AAC_HEADER),  // 1
                (AUDIO, 0, AAC),         // 2
                (AUDIO, 500, AAC),       // 3
                (AUDIO, 1000, AAC),      // 4: a second of audio and no video
                (AUDIO, 1023, AAC),      // 5
                (VIDEO, 1040, INTER),    // 6: video joins late, needs its keyframe
                (VIDEO, 1080, KEYFRAME), // 7
            ],
            &[],
        );
        assert_eq!(ids, [1, 4, 5, 7]);
    }

    #[test]
    fn before_the_start_a_hole_is_not_waited_for_when_a_decodable_keyframe_is_behind_it() {
        use rtmp_type::*;
        let big_keyframe = [KEYFRAME, &[0x55; 2000][..]].concat();
        let fragments = media_stream(&[
            (VIDEO, 0, AVC_HEADER),     // 1
            (VIDEO, 0, KEYFRAME),       // 2: lost
            (VIDEO, 40, INTER),         // 3
            (VIDEO, 80, AVC_HEADER),    // 4: the header the server repeats
            (VIDEO, 80, &big_keyframe), // 5-7: three pieces
            (VIDEO, 120, INTER),        // 8
        ]);
        let mut r = Reassembler::default();
        r.start_at(1);
        for f in fragments.iter().filter(|f| f.id != 2 && f.id != 6) {
            r.insert(ms(0), f.clone());
        }
        // The keyframe behind the hole misses a piece: nothing to start at yet.
        assert!(drain(&mut r).is_empty());
        r.insert(ms(10), fragments[5].clone());
        // Complete now: the output starts there after the start wait, not the hole's.
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), Some(ms(1500)));
        r.handle_timeout(ms(1499));
        assert!(drain(&mut r).is_empty());
        r.handle_timeout(ms(1500));
        let ids: Vec<u64> = drain(&mut r).iter().map(|m| m.id).collect();
        assert_eq!(ids, [4, 5, 8]);
        assert_eq!((r.stats().gaps, r.stats().missing), (1, 1));

        // Once playing, a hole is waited for all of `max_wait` again.
        r.insert(ms(2000), whole(10, INTER));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), Some(ms(7000)));

        // A hole filled within the start wait (pushes out of order) loses nothing.
        let mut r = Reassembler::default();
        r.start_at(1);
        for f in fragments.iter().filter(|f| f.id != 2) {
            r.insert(ms(0), f.clone());
        }
        r.insert(ms(1400), fragments[1].clone());
        let ids: Vec<u64> = drain(&mut r).iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 8]);
    }

    #[test]
    fn before_the_start_a_keyframe_without_its_header_behind_a_hole_is_waited_for() {
        use rtmp_type::*;
        let fragments = media_stream(&[
            (VIDEO, 0, AVC_HEADER), // 1: lost
            (VIDEO, 0, KEYFRAME),   // 2: no header held, none in the run
            (VIDEO, 40, INTER),     // 3
        ]);
        let mut r = Reassembler::default();
        r.start_at(1);
        for f in &fragments[1..] {
            r.insert(ms(0), f.clone());
        }
        assert!(drain(&mut r).is_empty());
        // The header comes late: everything plays from the start.
        r.insert(ms(300), fragments[0].clone());
        let ids: Vec<u64> = drain(&mut r).iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn invocations_pass_even_before_the_start() {
        use rtmp_type::*;
        let (ids, _) = played(
            &[
                (VIDEO, 0, INTER),
                (INVOCATION_AMF3, 0, b"\x00\x02\x00\x0bcloseStream"),
            ],
            &[],
        );
        assert_eq!(ids, [2]);
    }

    #[test]
    fn amf3_data_plays_as_amf0_without_its_leading_zero() {
        let m = GroupMessage {
            id: 1,
            media_type: rtmp_type::DATA_AMF3,
            time: 5,
            payload: bytes(b"\x00\x02\x00\x0aonMetaData"),
        };
        let media = m.to_media().unwrap();
        assert_eq!(media.kind, MediaKind::Data);
        assert!(media.is_metadata());
    }

    // ---- store ----

    fn store(window_ms: u64, margin_ms: u64, max_bytes: usize) -> FragmentStore {
        FragmentStore::new(StoreConfig {
            window: Duration::from_millis(window_ms),
            relay_margin: Duration::from_millis(margin_ms),
            max_bytes,
            max_ahead: DEFAULT_MAX_AHEAD,
        })
    }

    #[test]
    fn fragments_older_than_window_plus_margin_are_evicted() {
        let mut s = FragmentStore::default();
        for id in 1..=10 {
            // One fragment a second.
            assert_eq!(s.insert(ms((id - 1) * 1000), whole(id, b"x")), Stored::New);
        }
        assert_eq!(s.next_expiry(), Some(ms(10_000)));
        s.expire(ms(9_999));
        assert_eq!(s.oldest(), Some(1));
        s.expire(ms(12_000)); // ids created at 0, 1 and 2 s are 10 s old
        assert_eq!((s.oldest(), s.newest(), s.len()), (Some(4), Some(10), 7));
        assert_eq!(s.floor(), 4);
        assert_eq!(s.evicted(), 3);
        assert!(!s.contains(3) && s.get(3).is_none());
        assert_eq!(s.get(4).map(|f| f.id), Some(4));
        assert_eq!(s.insert(ms(12_000), whole(2, b"x")), Stored::TooOld);
        assert_eq!(s.insert(ms(12_000), whole(4, b"x")), Stored::Duplicate);
        assert_eq!(s.insert(ms(12_000), whole(0, b"x")), Stored::OutOfRange);
        let far = 10 + DEFAULT_MAX_AHEAD + 1;
        assert_eq!(s.insert(ms(12_000), whole(far, b"x")), Stored::OutOfRange);
        assert_eq!(s.insert(ms(12_000), whole(far - 1, b"x")), Stored::New);
    }

    #[test]
    fn a_late_pulled_fragment_ages_with_its_neighbours() {
        let mut s = store(8000, 2000, usize::MAX);
        s.insert(ms(0), whole(5, b"x"));
        s.insert(ms(5_000), whole(6, b"x"));
        s.insert(ms(9_000), whole(4, b"x")); // pulled long after 5 was seen
        s.expire(ms(10_000));
        assert_eq!(s.oldest(), Some(6), "4 and 5 were reached at 0 s");
    }

    #[test]
    fn the_byte_cap_evicts_the_oldest_ids_first() {
        let per = 100 + ENTRY_OVERHEAD;
        let mut s = store(8000, 2000, per * 3);
        for id in 1..=5 {
            s.insert(ms(0), whole(id, &[0; 100]));
        }
        assert_eq!((s.oldest(), s.len(), s.bytes()), (Some(3), 3, per * 3));
        // One fragment bigger than the cap does not stay either.
        s.insert(ms(0), whole(6, &vec![0; per * 4]));
        assert!(s.is_empty());
        assert_eq!(s.floor(), 7);
        assert_eq!(s.bytes(), 0);
    }

    proptest! {
        #[test]
        fn store_memory_stays_bounded_whatever_arrives(
            arrivals in proptest::collection::vec((1..2000u64, 0..3000usize, 0..50u64), 1..300),
        ) {
            let max = 20_000;
            let mut s = store(1000, 500, max);
            let mut now = 0;
            for (id, len, step) in arrivals {
                now += step;
                s.insert(ms(now), whole(id, &vec![0; len]));
                prop_assert!(s.bytes() <= max);
                let held: usize = s.range_from(0).map(|f| f.payload.len() + ENTRY_OVERHEAD).sum();
                prop_assert_eq!(held, s.bytes());
                prop_assert!(s.oldest().map_or(true, |o| o >= s.floor()));
                prop_assert!(s.marks.len() <= s.len());
            }
        }
    }

    // ---- availability maps ----

    #[test]
    fn map_bits_count_back_from_last_id_lsb_first() {
        let mut s = FragmentStore::default();
        // Hold 20 (last), 19, 17, 12, 11.
        for id in [11, 12, 17, 19, 20] {
            s.insert(ms(0), whole(id, b"x"));
        }
        let map = s.map().unwrap();
        // byte 0: ids 19..=12 at bits 0..=7 -> 19 (bit 0), 17 (bit 2), 12 (bit 7)
        // byte 1: ids 11..=4 -> 11 (bit 0)
        assert_eq!(map.last_id, 20);
        assert_eq!(&map.bitmap[..], &[0b1000_0101, 0b0000_0001]);
        let mut wire = Vec::new();
        map.encode(&mut wire);
        assert_eq!(wire, [0x22, 20, 0x85, 0x01]);
        let parsed = FragmentsMap::parse(&Bytes::from(wire)).unwrap();
        assert_eq!(parsed, map);
        assert_eq!(parsed.ids().collect::<Vec<_>>(), [11, 12, 17, 19, 20]);
        assert!(!parsed.contains(18) && !parsed.contains(21) && !parsed.contains(0));
    }

    #[test]
    fn a_complete_store_writes_the_publishers_ff_form() {
        let mut s = FragmentStore::default();
        for id in 1..=18 {
            s.insert(ms(0), whole(id, b"x"));
        }
        // 17 ids before the last: two full bytes and one bit.
        let map = s.map().unwrap();
        assert_eq!(&map.bitmap[..], &[0xff, 0xff, 0x01]);
        assert_eq!(FragmentStore::default().map(), None);
        let mut only = FragmentStore::default();
        only.insert(ms(0), whole(7, b"x"));
        assert_eq!(only.map().map(|m| m.bitmap.len()), Some(0));
    }

    #[test]
    fn maps_are_cut_at_1024_bitmap_bytes() {
        let mut wire = vec![0x22, 0xc0, 0x00]; // lastId 8192
        wire.extend(std::iter::repeat(0xff).take(2000));
        let map = FragmentsMap::parse(&Bytes::from(wire)).unwrap();
        assert_eq!(map.bitmap.len(), MAX_MAP_BITMAP_LEN);
        assert_eq!(map.oldest_covered(), 1);
        assert!(map.contains(1) && map.contains(8192));
        assert_eq!(
            FragmentsMap::parse(&bytes(&[0x22, 0x00])),
            Err(GroupMediaParseError::ZeroId)
        );
        assert_eq!(
            FragmentsMap::parse(&bytes(&[0x20, 0x01])),
            Err(GroupMediaParseError::NotAMap(0x20))
        );
        assert_eq!(
            FragmentsMap::parse(&bytes(&[0x22])),
            Err(GroupMediaParseError::Truncated)
        );

        let mut s = FragmentStore::default();
        for id in 1..=10_000 {
            s.insert(ms(0), whole(id, b""));
        }
        let built = s.map().unwrap();
        assert_eq!(built.bitmap.len(), MAX_MAP_BITMAP_LEN);
        assert_eq!(built.oldest_covered(), 10_000 - 8192);
    }

    #[test]
    fn pull_candidates_are_the_holes_a_neighbour_can_fill_oldest_first() {
        let mut theirs = FragmentStore::default();
        for id in [3, 4, 5, 7, 8, 9, 10] {
            theirs.insert(ms(0), whole(id, b"x"));
        }
        let map = theirs.map().unwrap();
        let mut ours = FragmentStore::default();
        for id in [4, 8] {
            ours.insert(ms(0), whole(id, b"x"));
        }
        assert_eq!(
            ours.pull_candidates(&map, 1, 100).collect::<Vec<_>>(),
            [3, 5, 7, 9, 10]
        );
        assert_eq!(
            ours.pull_candidates(&map, 5, 9).collect::<Vec<_>>(),
            [5, 7, 9]
        );
        ours.evict_below(6);
        assert_eq!(
            ours.pull_candidates(&map, 1, 100).collect::<Vec<_>>(),
            [7, 9, 10]
        );
    }

    proptest! {
        #[test]
        fn maps_round_trip_and_show_exactly_what_is_held(
            ids in proptest::collection::btree_set(1..3000u64, 1..200),
        ) {
            let mut s = FragmentStore::default();
            for &id in &ids {
                s.insert(ms(0), whole(id, b""));
            }
            let map = s.map().unwrap();
            let mut wire = Vec::new();
            map.encode(&mut wire);
            let parsed = FragmentsMap::parse(&Bytes::from(wire)).unwrap();
            prop_assert_eq!(&parsed, &map);
            prop_assert_eq!(parsed.ids().collect::<Vec<_>>(), ids.iter().copied().collect::<Vec<_>>());
            for id in 0..3100 {
                prop_assert_eq!(parsed.contains(id), ids.contains(&id));
            }
        }
    }
}
