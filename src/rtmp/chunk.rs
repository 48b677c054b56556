//! The RTMP chunk stream (RTMP spec §5.3): messages cut into chunks, each chunk with a
//! basic header (format and chunk stream id) and a message header compressed against the
//! previous one on the same chunk stream.
//!
//! Timestamp rule shared by decoder and encoder: a chunk stream remembers the last
//! timestamp *field* it saw (absolute after format 0, a delta after 1 and 2). A format 3
//! chunk that starts a new message adds that field again. A format 3 chunk carries the
//! 4-byte extended timestamp whenever the last format 0-2 header on its chunk stream did
//! (RTMP spec §5.3.1.3), continuation chunks included.

use std::collections::HashMap;

use super::message::{validate_chunk_size, MessageType, RtmpMessage};
use super::RtmpError;

/// Until a Set Chunk Size says otherwise (RTMP spec §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// 31 bits: the top bit of Set Chunk Size must be zero.
pub const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;
/// The three-byte field value that announces an extended timestamp.
const EXTENDED: u32 = 0xff_ffff;
/// The message length field is 24 bits.
pub const MAX_MESSAGE_LEN: u32 = 0xff_ffff;
/// Lowest and highest chunk stream id a basic header can carry (0 and 1 select the wider
/// forms; 2 is the lowest usable id).
pub const MIN_CHUNK_STREAM_ID: u32 = 2;
pub const MAX_CHUNK_STREAM_ID: u32 = 65599;
/// Longest chunk header: 3-byte basic header, 11-byte message header, 4-byte extension.
const MAX_HEADER_LEN: usize = 18;

/// Bounds on what a peer can make the decoder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Longest message accepted.
    pub max_message_len: u32,
    /// Most chunk streams with header state at any one time.
    pub max_chunk_streams: usize,
    /// Most bytes of unfinished messages held across all chunk streams.
    pub max_buffered: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 16 * 1024 * 1024,
            max_chunk_streams: 64,
            max_buffered: 32 * 1024 * 1024,
        }
    }
}

/// A message being reassembled on one chunk stream.
struct Partial {
    type_id: MessageType,
    timestamp: u32,
    stream_id: u32,
    len: usize,
    data: Vec<u8>,
}

/// What a chunk stream remembers from its last header, for the formats that omit fields.
struct InboundStream {
    timestamp: u32,
    ts_field: u32,
    extended: bool,
    len: u32,
    type_id: MessageType,
    stream_id: u32,
    partial: Option<Partial>,
}

/// A chunk header as it came off the wire, before the chunk stream's state fills the gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawHeader {
    fmt: u8,
    csid: u32,
    /// Timestamp or delta (format 0-2), resolved through the extended field when used.
    ts_field: Option<u32>,
    extended: bool,
    len: u32,
    type_id: u8,
    stream_id: u32,
}

#[derive(Debug, Clone, Copy)]
enum DecodeState {
    Header,
    Payload { csid: u32, remaining: usize },
}

/// Incremental chunk stream decoder: feed bytes as they arrive, take whole messages.
///
/// Set Chunk Size and Abort take effect inside the decoder the moment they complete, since
/// they change how the very next bytes are read; they are still handed out like any
/// other message.
pub struct ChunkDecoder {
    chunk_size: u32,
    limits: ChunkLimits,
    streams: HashMap<u32, InboundStream>,
    header_buf: Vec<u8>,
    state: DecodeState,
    buffered: usize,
    ready: std::collections::VecDeque<RtmpMessage>,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(ChunkLimits::default())
    }
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: HashMap::new(),
            header_buf: Vec::with_capacity(MAX_HEADER_LEN),
            state: DecodeState::Header,
            buffered: 0,
            ready: Default::default(),
        }
    }

    /// The chunk size the peer currently sends with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Takes the next complete message, in order of completion.
    pub fn poll_message(&mut self) -> Option<RtmpMessage> {
        self.ready.pop_front()
    }

    /// Consumes all of `input`. After an error the stream is out of sync and the decoder
    /// should be dropped along with the connection.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), RtmpError> {
        while !input.is_empty() {
            match self.state {
                DecodeState::Header => {
                    let had = self.header_buf.len();
                    let take = (MAX_HEADER_LEN - had).min(input.len());
                    let parsed = if had == 0 {
                        parse_header(&input[..take], &self.streams)?
                    } else {
                        self.header_buf.extend_from_slice(&input[..take]);
                        parse_header(&self.header_buf, &self.streams)?
                    };
                    match parsed {
                        None => {
                            if had == 0 {
                                self.header_buf.extend_from_slice(&input[..take]);
                            }
                            input = &input[take..];
                        }
                        Some((header, header_len)) => {
                            input = &input[header_len - had..];
                            self.header_buf.clear();
                            self.start_chunk(header)?;
                        }
                    }
                }
                DecodeState::Payload { csid, remaining } => {
                    let take = remaining.min(input.len());
                    self.buffered += take;
                    if self.buffered > self.limits.max_buffered {
                        return Err(RtmpError::TooMuchBuffered {
                            max: self.limits.max_buffered,
                        });
                    }
                    // A payload state is only entered for a stream with a message under way.
                    let Some(stream) = self.streams.get_mut(&csid) else {
                        return Err(RtmpError::NoPreviousHeader { csid, fmt: 3 });
                    };
                    let Some(partial) = stream.partial.as_mut() else {
                        return Err(RtmpError::NoPreviousHeader { csid, fmt: 3 });
                    };
                    partial.data.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if take < remaining {
                        self.state = DecodeState::Payload {
                            csid,
                            remaining: remaining - take,
                        };
                    } else {
                        self.state = DecodeState::Header;
                        if let Some(done) = stream.partial.take_if(|p| p.data.len() == p.len) {
                            self.buffered -= done.len;
                            self.complete(RtmpMessage::new(
                                done.type_id,
                                done.timestamp,
                                done.stream_id,
                                done.data,
                            ))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a parsed header to its chunk stream and sets up reading the payload.
    fn start_chunk(&mut self, h: RawHeader) -> Result<(), RtmpError> {
        if !self.streams.contains_key(&h.csid) {
            if h.fmt != 0 {
                return Err(RtmpError::NoPreviousHeader {
                    csid: h.csid,
                    fmt: h.fmt,
                });
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(RtmpError::TooManyChunkStreams {
                    max: self.limits.max_chunk_streams,
                });
            }
        }
        let stream = self.streams.entry(h.csid).or_insert(InboundStream {
            timestamp: 0,
            ts_field: 0,
            extended: false,
            len: 0,
            type_id: MessageType::Other(0),
            stream_id: 0,
            partial: None,
        });
        if let (3, Some(p)) = (h.fmt, stream.partial.as_ref()) {
            // Continuation: nothing in the header changes (the extended timestamp, if any,
            // repeats the one already applied).
            let remaining = (p.len - p.data.len()).min(self.chunk_size as usize);
            self.state = DecodeState::Payload {
                csid: h.csid,
                remaining,
            };
            return Ok(());
        }
        if stream.partial.is_some() {
            return Err(RtmpError::HeaderMidMessage {
                csid: h.csid,
                fmt: h.fmt,
            });
        }
        // The header parser reads a timestamp field exactly for formats 0 to 2.
        match (h.fmt, h.ts_field) {
            (0, Some(ts)) => {
                stream.timestamp = ts;
                stream.ts_field = ts;
            }
            (1 | 2, Some(delta)) => {
                stream.timestamp = stream.timestamp.wrapping_add(delta);
                stream.ts_field = delta;
            }
            _ => stream.timestamp = stream.timestamp.wrapping_add(stream.ts_field),
        }
        if h.fmt <= 2 {
            stream.extended = h.extended;
        }
        if h.fmt <= 1 {
            stream.len = h.len;
            stream.type_id = MessageType::from(h.type_id);
        }
        if h.fmt == 0 {
            stream.stream_id = h.stream_id;
        }
        if stream.len > self.limits.max_message_len {
            return Err(RtmpError::MessageTooLong {
                len: stream.len,
                max: self.limits.max_message_len,
            });
        }
        let len = stream.len as usize;
        if len == 0 {
            let msg = RtmpMessage::new(stream.type_id, stream.timestamp, stream.stream_id, vec![]);
            self.state = DecodeState::Header;
            return self.complete(msg);
        }
        let first = len.min(self.chunk_size as usize);
        stream.partial = Some(Partial {
            type_id: stream.type_id,
            timestamp: stream.timestamp,
            stream_id: stream.stream_id,
            len,
            // Grows with the bytes that actually arrive, not with what the header claims.
            data: Vec::with_capacity(first.min(64 * 1024)),
        });
        self.state = DecodeState::Payload {
            csid: h.csid,
            remaining: first,
        };
        Ok(())
    }

    fn complete(&mut self, msg: RtmpMessage) -> Result<(), RtmpError> {
        match msg.type_id {
            MessageType::SetChunkSize => {
                let size = read_u32(&msg)?;
                validate_chunk_size(size)?;
                self.chunk_size = size;
            }
            MessageType::Abort => {
                let csid = read_u32(&msg)?;
                if let Some(partial) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
                    self.buffered -= partial.data.len();
                }
            }
            _ => {}
        }
        self.ready.push_back(msg);
        Ok(())
    }
}

fn read_u32(msg: &RtmpMessage) -> Result<u32, RtmpError> {
    match msg.payload.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(RtmpError::ShortControlMessage {
            type_id: msg.type_id.id(),
            need: 4,
            got: msg.payload.len(),
        }),
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// Parses one chunk header from the front of `b`; `Ok(None)` if more bytes are needed.
fn parse_header(
    b: &[u8],
    streams: &HashMap<u32, InboundStream>,
) -> Result<Option<(RawHeader, usize)>, RtmpError> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let fmt = first >> 6;
    let (csid, mut at) = match first & 0x3f {
        0 => match b.get(1) {
            Some(&x) => (64 + x as u32, 2),
            None => return Ok(None),
        },
        1 => match b.get(1..3) {
            Some(x) => (64 + x[0] as u32 + 256 * x[1] as u32, 3),
            None => return Ok(None),
        },
        id => (id as u32, 1),
    };
    let fixed = match fmt {
        0 => 11,
        1 => 7,
        2 => 3,
        _ => 0,
    };
    let Some(mh) = b.get(at..at + fixed) else {
        return Ok(None);
    };
    at += fixed;
    let mut h = RawHeader {
        fmt,
        csid,
        ts_field: None,
        extended: false,
        len: 0,
        type_id: 0,
        stream_id: 0,
    };
    if fmt <= 2 {
        let field = be24(&mh[0..3]);
        h.extended = field == EXTENDED;
        h.ts_field = Some(field);
    } else {
        match streams.get(&csid) {
            Some(s) => h.extended = s.extended,
            None => return Err(RtmpError::NoPreviousHeader { csid, fmt }),
        }
    }
    if fmt <= 1 {
        h.len = be24(&mh[3..6]);
        h.type_id = mh[6];
    }
    if fmt == 0 {
        h.stream_id = u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]);
    }
    if h.extended {
        let Some(x) = b.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        if fmt <= 2 {
            h.ts_field = Some(u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
        }
    }
    Ok(Some((h, at)))
}

/// What the encoder remembers per chunk stream to compress the next header.
struct OutboundStream {
    timestamp: u32,
    /// The delta of the last header if it was format 1 or 2; `None` after format 0, so
    /// that format 3 never relies on the absolute-field reading of other decoders.
    delta: Option<u32>,
    len: u32,
    type_id: MessageType,
    stream_id: u32,
}

/// Writes messages as chunks, compressing headers against the previous message on the
/// same chunk stream.
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: HashMap<u32, OutboundStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the size of chunks written from now on. The peer must have been told first,
    /// with a Set Chunk Size message encoded under the old size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        validate_chunk_size(size)?;
        self.chunk_size = size;
        Ok(())
    }

    /// Forgets the header state of a chunk stream, so its next message goes out with a
    /// full format 0 header (after an Abort, for example).
    pub fn reset_chunk_stream(&mut self, csid: u32) {
        self.streams.remove(&csid);
    }

    /// Appends `msg` as chunks on chunk stream `csid` to `out`.
    pub fn encode(
        &mut self,
        csid: u32,
        msg: &RtmpMessage,
        out: &mut Vec<u8>,
    ) -> Result<(), RtmpError> {
        if !(MIN_CHUNK_STREAM_ID..=MAX_CHUNK_STREAM_ID).contains(&csid) {
            return Err(RtmpError::BadChunkStreamId(csid));
        }
        let len = u32::try_from(msg.payload.len())
            .ok()
            .filter(|&l| l <= MAX_MESSAGE_LEN)
            .ok_or(RtmpError::MessageTooLong {
                len: u32::try_from(msg.payload.len()).unwrap_or(u32::MAX),
                max: MAX_MESSAGE_LEN,
            })?;
        let (fmt, field) = match self.streams.get(&csid) {
            Some(p) if p.stream_id == msg.stream_id && msg.timestamp >= p.timestamp => {
                let delta = msg.timestamp - p.timestamp;
                let fmt = if p.len != len || p.type_id != msg.type_id {
                    1
                } else if p.delta == Some(delta) {
                    3
                } else {
                    2
                };
                (fmt, delta)
            }
            _ => (0, msg.timestamp),
        };
        let extended = field >= EXTENDED;
        let short_field = field.min(EXTENDED);

        put_basic_header(out, fmt, csid);
        if fmt <= 2 {
            out.extend_from_slice(&short_field.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.push(msg.type_id.id());
        }
        if fmt == 0 {
            out.extend_from_slice(&msg.stream_id.to_le_bytes());
        }
        if extended {
            out.extend_from_slice(&field.to_be_bytes());
        }
        let mut chunks = msg.payload.chunks(self.chunk_size as usize);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for chunk in chunks {
            put_basic_header(out, 3, csid);
            if extended {
                out.extend_from_slice(&field.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }

        let delta = match fmt {
            0 => None,
            3 => self.streams.get(&csid).and_then(|p| p.delta),
            _ => Some(field),
        };
        self.streams.insert(
            csid,
            OutboundStream {
                timestamp: msg.timestamp,
                delta,
                len,
                type_id: msg.type_id,
                stream_id: msg.stream_id,
            },
        );
        Ok(())
    }
}

fn put_basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    let f = fmt << 6;
    match csid {
        2..=63 => out.push(f | csid as u8),
        64..=319 => out.extend_from_slice(&[f, (csid - 64) as u8]),
        _ => {
            let id = csid - 64;
            out.extend_from_slice(&[f | 1, id as u8, (id >> 8) as u8]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<RtmpMessage>, RtmpError> {
        let mut d = ChunkDecoder::default();
        d.feed(bytes)?;
        Ok(std::iter::from_fn(|| d.poll_message()).collect())
    }

    fn msg(t: u8, ts: u32, sid: u32, payload: &[u8]) -> RtmpMessage {
        RtmpMessage::new(MessageType::from(t), ts, sid, payload.to_vec())
    }

    #[test]
    fn format_0_with_one_byte_chunk_stream_id() {
        // csid 3, ts 0x000102, len 3, type 20, stream id 1 (little-endian).
        let bytes = [
            0x03, 0x00, 0x01, 0x02, 0x00, 0x00, 0x03, 0x14, 0x01, 0x00, 0x00, 0x00, b'a', b'b',
            b'c',
        ];
        assert_eq!(decode_all(&bytes).unwrap(), [msg(20, 0x102, 1, b"abc")]);
    }

    #[test]
    fn two_and_three_byte_chunk_stream_ids() {
        // csid 64 + 0x10 = 80 in the 2-byte form, csid 64 + 0x0102 = 322 in the 3-byte form.
        let mut bytes = vec![0x00, 0x10, 0, 0, 5, 0, 0, 1, 8, 0, 0, 0, 0, 0xaa];
        bytes.extend_from_slice(&[0x01, 0x02, 0x01, 0, 0, 6, 0, 0, 1, 9, 0, 0, 0, 0, 0xbb]);
        // Format 2 on csid 80 via the 3-byte form of the same id: delta 4.
        bytes.extend_from_slice(&[0x81, 0x10, 0x00, 0, 0, 4, 0xcc]);
        let got = decode_all(&bytes).unwrap();
        assert_eq!(
            got,
            [
                msg(8, 5, 0, &[0xaa]),
                msg(9, 6, 0, &[0xbb]),
                msg(8, 9, 0, &[0xcc])
            ]
        );
        let mut out = Vec::new();
        put_basic_header(&mut out, 0, 80);
        put_basic_header(&mut out, 1, 322);
        put_basic_header(&mut out, 3, 65599);
        assert_eq!(out, [0x00, 0x10, 0x41, 0x02, 0x01, 0xc1, 0xff, 0xff]);
    }

    #[test]
    fn formats_1_2_3_inherit_from_the_previous_header() {
        let bytes = [
            // fmt 0: ts 1000, len 2, type 8, stream 1
            0x04, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x02, 0x08, 0x01, 0x00, 0x00, 0x00, 1, 2,
            // fmt 1: delta 20, len 1, type 9
            0x44, 0x00, 0x00, 0x14, 0x00, 0x00, 0x01, 0x09, 3, // fmt 2: delta 30
            0x84, 0x00, 0x00, 0x1e, 4, // fmt 3: new message, same delta 30 again
            0xc4, 5,
        ];
        assert_eq!(
            decode_all(&bytes).unwrap(),
            [
                msg(8, 1000, 1, &[1, 2]),
                msg(9, 1020, 1, &[3]),
                msg(9, 1050, 1, &[4]),
                msg(9, 1080, 1, &[5]),
            ]
        );
    }

    #[test]
    fn message_split_over_chunks_of_the_default_size() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = vec![0x06, 0, 0, 0, 0, 0x01, 0x2c, 0x09, 0, 0, 0, 0];
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xc6);
        bytes.extend_from_slice(&payload[128..256]);
        bytes.push(0xc6);
        bytes.extend_from_slice(&payload[256..]);
        assert_eq!(decode_all(&bytes).unwrap(), [msg(9, 0, 0, &payload)]);
    }

    #[test]
    fn extended_timestamp_repeats_in_format_3_chunks() {
        let payload = vec![7u8; 200];
        let ts = 0x0100_0000u32;
        let mut bytes = vec![0x05, 0xff, 0xff, 0xff, 0, 0, 200, 0x12, 0, 0, 0, 0];
        bytes.extend_from_slice(&ts.to_be_bytes());
        bytes.extend_from_slice(&payload[..128]);
        // Continuation chunk: the extended timestamp comes again.
        bytes.push(0xc5);
        bytes.extend_from_slice(&ts.to_be_bytes());
        bytes.extend_from_slice(&payload[128..]);
        assert_eq!(decode_all(&bytes).unwrap(), [msg(18, ts, 0, &payload)]);

        // And the encoder writes exactly these bytes.
        let mut out = Vec::new();
        ChunkEncoder::new()
            .encode(5, &msg(18, ts, 0, &payload), &mut out)
            .unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn extended_delta_applies_again_on_a_new_format_3_message() {
        let delta = 0x0100_0000u32;
        let mut bytes = vec![0x04, 0, 0, 10, 0, 0, 1, 8, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&[0x84, 0xff, 0xff, 0xff]);
        bytes.extend_from_slice(&delta.to_be_bytes());
        bytes.push(2);
        bytes.push(0xc4);
        bytes.extend_from_slice(&delta.to_be_bytes());
        bytes.push(3);
        let got = decode_all(&bytes).unwrap();
        let times: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [10, 10 + delta, 10 + 2 * delta]);
    }

    #[test]
    fn set_chunk_size_applies_to_the_very_next_chunk() {
        let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 1, 0];
        let payload = vec![9u8; 256];
        bytes.extend_from_slice(&[0x06, 0, 0, 0, 0, 1, 0, 9, 0, 0, 0, 0]);
        bytes.extend_from_slice(&payload);
        let got = decode_all(&bytes).unwrap();
        assert_eq!(got[1], msg(9, 0, 0, &payload));
    }

    #[test]
    fn set_chunk_size_accepts_the_maximum_and_rejects_zero_and_the_top_bit() {
        for (size, ok) in [(0x7fff_ffffu32, true), (0, false), (0x8000_0000, false)] {
            let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
            bytes.extend_from_slice(&size.to_be_bytes());
            assert_eq!(decode_all(&bytes).is_ok(), ok, "size {size:#x}");
        }
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut bytes = vec![0x06, 0, 0, 0, 0, 0, 200, 9, 0, 0, 0, 0];
        bytes.extend_from_slice(&[1u8; 128]);
        // Abort csid 6, then a fresh format 0 message on it.
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 6]);
        bytes.extend_from_slice(&[0x06, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0xee]);
        let got = decode_all(&bytes).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], msg(9, 0, 0, &[0xee]));
    }

    #[test]
    fn interleaved_chunk_streams_reassemble_separately() {
        let a = vec![0xaau8; 200];
        let b = vec![0xbbu8; 150];
        let mut bytes = vec![0x04, 0, 0, 1, 0, 0, 200, 8, 1, 0, 0, 0];
        bytes.extend_from_slice(&a[..128]);
        bytes.extend_from_slice(&[0x06, 0, 0, 2, 0, 0, 150, 9, 1, 0, 0, 0]);
        bytes.extend_from_slice(&b[..128]);
        bytes.push(0xc4);
        bytes.extend_from_slice(&a[128..]);
        bytes.push(0xc6);
        bytes.extend_from_slice(&b[128..]);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            [msg(8, 1, 1, &a), msg(9, 2, 1, &b)]
        );
    }

    #[test]
    fn protocol_violations_are_errors() {
        // Format 1 on a chunk stream never seen.
        assert!(matches!(
            decode_all(&[0x44, 0, 0, 0, 0, 0, 1, 8, 0]),
            Err(RtmpError::NoPreviousHeader { csid: 4, fmt: 1 })
        ));
        // A new format 0 header while a message is half read.
        let mut bytes = vec![0x04, 0, 0, 0, 0, 0, 200, 8, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0]);
        assert!(matches!(
            decode_all(&bytes),
            Err(RtmpError::HeaderMidMessage { csid: 4, fmt: 0 })
        ));
    }

    #[test]
    fn limits_bound_what_a_peer_can_make_us_hold() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_len: 1000,
            max_chunk_streams: 2,
            max_buffered: 300,
        });
        assert!(matches!(
            d.feed(&[0x04, 0, 0, 0, 0, 0x03, 0xe9, 8, 0, 0, 0, 0]),
            Err(RtmpError::MessageTooLong {
                len: 1001,
                max: 1000
            })
        ));
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_chunk_streams: 2,
            ..ChunkLimits::default()
        });
        d.feed(&[0x04, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]).unwrap();
        d.feed(&[0x05, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]).unwrap();
        assert!(matches!(
            d.feed(&[0x06, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]),
            Err(RtmpError::TooManyChunkStreams { max: 2 })
        ));
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_buffered: 300,
            ..ChunkLimits::default()
        });
        let mut bytes = Vec::new();
        for csid in 4..8u8 {
            bytes.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xe8, 8, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[0u8; 128]);
        }
        assert!(matches!(
            d.feed(&bytes),
            Err(RtmpError::TooMuchBuffered { max: 300 })
        ));
    }

    #[test]
    fn encoder_compresses_headers_when_allowed() {
        let mut e = ChunkEncoder::new();
        let mut out = Vec::new();
        e.encode(4, &msg(8, 1000, 1, &[1, 2]), &mut out).unwrap();
        assert_eq!(out[0] >> 6, 0);
        out.clear();
        e.encode(4, &msg(8, 1020, 1, &[3, 4]), &mut out).unwrap();
        assert_eq!(out, [0x84, 0, 0, 20, 3, 4]);
        out.clear();
        e.encode(4, &msg(8, 1040, 1, &[5, 6]), &mut out).unwrap();
        assert_eq!(out, [0xc4, 5, 6]);
        out.clear();
        e.encode(4, &msg(8, 1050, 1, &[7]), &mut out).unwrap();
        assert_eq!(out, [0x44, 0, 0, 10, 0, 0, 1, 8, 7]);
        out.clear();
        // Another message stream, or time going back, needs a full header.
        e.encode(4, &msg(8, 1060, 2, &[7]), &mut out).unwrap();
        assert_eq!(out[0], 0x04);
        out.clear();
        e.encode(4, &msg(8, 5, 2, &[7]), &mut out).unwrap();
        assert_eq!(out[0], 0x04);
        assert!(e.encode(1, &msg(8, 5, 2, &[7]), &mut out).is_err());
        assert!(e.encode(65600, &msg(8, 5, 2, &[7]), &mut out).is_err());
    }
}
