//! FLV (Adobe Flash Video File Format Specification v10.1, annex E): the file header, the
//! tag stream with its back pointers, an incremental reader fed in pieces of any size and
//! a writer; plus the few facts about audio and video tag bodies that ingest needs
//! (keyframes, sequence headers), legacy and enhanced-RTMP forms alike.
//!
//! RTMP audio and video message payloads are FLV tag bodies, so the body helpers apply to
//! them as well.

use std::collections::VecDeque;

use thiserror::Error;

const SIGNATURE: &[u8; 3] = b"FLV";
pub const HEADER_LEN: usize = 9;
pub const TAG_HEADER_LEN: usize = 11;
const BACK_POINTER_LEN: usize = 4;
/// The data size field is 24 bits.
pub const MAX_TAG_DATA_LEN: usize = 0xff_ffff;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    #[error("not an FLV stream: expected signature \"FLV\", found {0:02x?}")]
    BadSignature([u8; 3]),
    #[error("FLV header size {0} is smaller than the 9-byte header itself")]
    BadHeaderSize(u32),
    #[error("first PreviousTagSize is {0}; expected 0")]
    BadFirstBackPointer(u32),
    #[error("PreviousTagSize {found} does not match the tag before it ({expected} bytes)")]
    BackPointerMismatch { expected: u32, found: u32 },
    #[error("tag type {0} unknown; expected 8 (audio), 9 (video) or 18 (script data)")]
    UnknownTagType(u8),
    #[error("tag is encrypted (filter bit set); encrypted FLV is not supported")]
    Encrypted,
    #[error("tag data of {0} bytes exceeds the 24-bit size field")]
    TagTooLong(usize),
    #[error("{0} tag body too short to hold its header")]
    ShortBody(&'static str),
    #[error("stream ends inside {0}")]
    Truncated(&'static str),
}

/// The 9-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    pub version: u8,
    pub has_audio: bool,
    pub has_video: bool,
    /// Offset of the first back pointer: the header's own size, 9 for version 1.
    pub data_offset: u32,
}

impl FlvHeader {
    pub fn new(has_audio: bool, has_video: bool) -> Self {
        FlvHeader {
            version: 1,
            has_audio,
            has_video,
            data_offset: HEADER_LEN as u32,
        }
    }

    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, FlvError> {
        if &b[..3] != SIGNATURE {
            return Err(FlvError::BadSignature([b[0], b[1], b[2]]));
        }
        let data_offset = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        if data_offset < HEADER_LEN as u32 {
            return Err(FlvError::BadHeaderSize(data_offset));
        }
        Ok(FlvHeader {
            version: b[3],
            has_audio: b[4] & 0x04 != 0,
            has_video: b[4] & 0x01 != 0,
            data_offset,
        })
    }

    /// Writes the header and the zero back pointer that precedes the first tag. Extra
    /// header bytes (`data_offset` above 9) are written as zeros.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(SIGNATURE);
        out.push(self.version);
        out.push((self.has_audio as u8) << 2 | self.has_video as u8);
        let offset = self.data_offset.max(HEADER_LEN as u32);
        out.extend_from_slice(&offset.to_be_bytes());
        out.resize(out.len() + (offset as usize - HEADER_LEN), 0);
        out.extend_from_slice(&0u32.to_be_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagType {
    Audio = 8,
    Video = 9,
    Script = 18,
}

impl TagType {
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            8 => Some(TagType::Audio),
            9 => Some(TagType::Video),
            18 => Some(TagType::Script),
            _ => None,
        }
    }
}

/// One FLV tag. The stream id field is always 0 in FLV and is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub tag_type: TagType,
    /// Milliseconds, 32 bits (24 in the field plus the extension byte).
    pub timestamp: u32,
    pub data: Vec<u8>,
}

impl FlvTag {
    pub fn new(tag_type: TagType, timestamp: u32, data: Vec<u8>) -> Self {
        FlvTag {
            tag_type,
            timestamp,
            data,
        }
    }

    /// Appends the tag and the back pointer that follows it.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FlvError> {
        if self.data.len() > MAX_TAG_DATA_LEN {
            return Err(FlvError::TagTooLong(self.data.len()));
        }
        let len = self.data.len() as u32;
        out.push(self.tag_type as u8);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&self.timestamp.to_be_bytes()[1..]);
        out.push((self.timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&(len + TAG_HEADER_LEN as u32).to_be_bytes());
        Ok(())
    }

    pub fn video_header(&self) -> Option<VideoTagHeader> {
        (self.tag_type == TagType::Video)
            .then(|| VideoTagHeader::parse(&self.data).ok())
            .flatten()
    }

    pub fn audio_header(&self) -> Option<AudioTagHeader> {
        (self.tag_type == TagType::Audio)
            .then(|| AudioTagHeader::parse(&self.data).ok())
            .flatten()
    }

    pub fn is_keyframe(&self) -> bool {
        self.video_header().is_some_and(|h| h.is_keyframe())
    }

    /// A video or audio decoder configuration record, of any codec.
    pub fn is_sequence_header(&self) -> bool {
        self.video_header().is_some_and(|h| h.is_sequence_header())
            || self.audio_header().is_some_and(|h| h.is_sequence_header())
    }

    pub fn is_avc_sequence_header(&self) -> bool {
        self.video_header()
            .is_some_and(|h| h.is_avc_sequence_header())
    }

    pub fn is_aac_sequence_header(&self) -> bool {
        self.audio_header()
            .is_some_and(|h| h.is_aac_sequence_header())
    }
}

/// Writes a header once, then tags.
#[derive(Debug, Clone)]
pub struct FlvWriter {
    header: Option<FlvHeader>,
}

impl FlvWriter {
    pub fn new(header: FlvHeader) -> Self {
        FlvWriter {
            header: Some(header),
        }
    }

    /// Appends `tag` to `out`, preceded by the file header on the first call.
    pub fn write_tag(&mut self, tag: &FlvTag, out: &mut Vec<u8>) -> Result<(), FlvError> {
        if let Some(h) = self.header.take() {
            h.encode(out);
        }
        tag.encode(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum ReadState {
    Header,
    SkipHeader(u32),
    BackPointer { expected: u32 },
    TagHeader,
    TagData { remaining: usize },
}

/// Incremental FLV reader: feed bytes in pieces of any size, take whole tags.
#[derive(Debug)]
pub struct FlvReader {
    state: ReadState,
    buf: Vec<u8>,
    header: Option<FlvHeader>,
    partial: Option<FlvTag>,
    tags: VecDeque<FlvTag>,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvReader {
    pub fn new() -> Self {
        FlvReader {
            state: ReadState::Header,
            buf: Vec::with_capacity(TAG_HEADER_LEN),
            header: None,
            partial: None,
            tags: VecDeque::new(),
        }
    }

    /// The file header, once read.
    pub fn header(&self) -> Option<&FlvHeader> {
        self.header.as_ref()
    }

    pub fn poll_tag(&mut self) -> Option<FlvTag> {
        self.tags.pop_front()
    }

    /// Fills `self.buf` to `want` bytes from `input`; true when it got there.
    fn gather(&mut self, want: usize, input: &mut &[u8]) -> bool {
        let take = (want - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        self.buf.len() == want
    }

    /// Consumes all of `input`. An error means the stream is unusable from here on.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), FlvError> {
        while !input.is_empty() {
            match self.state {
                ReadState::Header => {
                    if !self.gather(HEADER_LEN, &mut input) {
                        // Refuse a wrong signature without waiting for all nine bytes.
                        if !SIGNATURE.starts_with(&self.buf[..self.buf.len().min(3)]) {
                            let mut sig = [0u8; 3];
                            sig[..self.buf.len().min(3)]
                                .copy_from_slice(&self.buf[..self.buf.len().min(3)]);
                            return Err(FlvError::BadSignature(sig));
                        }
                        continue;
                    }
                    let mut b = [0u8; HEADER_LEN];
                    b.copy_from_slice(&self.buf);
                    let h = FlvHeader::parse(&b)?;
                    self.buf.clear();
                    self.header = Some(h);
                    self.state = ReadState::SkipHeader(h.data_offset - HEADER_LEN as u32);
                }
                ReadState::SkipHeader(left) => {
                    let take = (left as usize).min(input.len());
                    input = &input[take..];
                    let left = left - take as u32;
                    self.state = if left == 0 {
                        ReadState::BackPointer { expected: 0 }
                    } else {
                        ReadState::SkipHeader(left)
                    };
                }
                ReadState::BackPointer { expected } => {
                    if !self.gather(BACK_POINTER_LEN, &mut input) {
                        continue;
                    }
                    let found =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    self.buf.clear();
                    if let Some(tag) = self.partial.take() {
                        if found != expected {
                            return Err(FlvError::BackPointerMismatch { expected, found });
                        }
                        self.tags.push_back(tag);
                    } else if found != 0 {
                        return Err(FlvError::BadFirstBackPointer(found));
                    }
                    self.state = ReadState::TagHeader;
                }
                ReadState::TagHeader => {
                    if !self.gather(TAG_HEADER_LEN, &mut input) {
                        continue;
                    }
                    let b = &self.buf;
                    // Two reserved bits (for FMS), the filter bit, five bits of type.
                    if b[0] & 0x20 != 0 {
                        return Err(FlvError::Encrypted);
                    }
                    let tag_type =
                        TagType::from_id(b[0] & 0x1f).ok_or(FlvError::UnknownTagType(b[0]))?;
                    let len = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
                    let timestamp = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
                    self.buf.clear();
                    self.partial = Some(FlvTag::new(
                        tag_type,
                        timestamp,
                        Vec::with_capacity(len.min(64 * 1024)),
                    ));
                    self.state = if len == 0 {
                        ReadState::BackPointer {
                            expected: TAG_HEADER_LEN as u32,
                        }
                    } else {
                        ReadState::TagData { remaining: len }
                    };
                }
                ReadState::TagData { remaining } => {
                    let take = remaining.min(input.len());
                    // Tag data is only read after a tag header set up `partial`.
                    let Some(tag) = self.partial.as_mut() else {
                        self.state = ReadState::TagHeader;
                        continue;
                    };
                    tag.data.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.state = if take == remaining {
                        ReadState::BackPointer {
                            expected: (tag.data.len() + TAG_HEADER_LEN) as u32,
                        }
                    } else {
                        ReadState::TagData {
                            remaining: remaining - take,
                        }
                    };
                }
            }
        }
        Ok(())
    }

    /// Call at end of input. A tag whose trailing back pointer is missing is still
    /// delivered (writers that die mid-file leave that); anything shorter is an error.
    pub fn finish(&mut self) -> Result<(), FlvError> {
        match self.state {
            ReadState::Header | ReadState::SkipHeader(_) => {
                Err(FlvError::Truncated("the file header"))
            }
            ReadState::BackPointer { .. } if self.buf.is_empty() => {
                if let Some(tag) = self.partial.take() {
                    self.tags.push_back(tag);
                }
                Ok(())
            }
            ReadState::BackPointer { .. } => Err(FlvError::Truncated("a PreviousTagSize")),
            ReadState::TagHeader if self.buf.is_empty() => Ok(()),
            ReadState::TagHeader => Err(FlvError::Truncated("a tag header")),
            ReadState::TagData { .. } => Err(FlvError::Truncated("tag data")),
        }
    }
}

/// A FourCC codec tag of enhanced RTMP ("hvc1", "av01", "vp09", …).
pub type FourCc = [u8; 4];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// The 4-bit codec id of the legacy header: 2 Sorenson H.263, 4 VP6, 7 AVC, …
    Legacy(u8),
    /// Enhanced RTMP ex-header codec.
    FourCc(FourCc),
}

/// Video codec id of H.264 in the legacy header.
pub const CODEC_AVC: u8 = 7;
/// Sound format of AAC in the legacy audio header.
pub const SOUND_AAC: u8 = 10;
/// Sound format that announces an enhanced-RTMP audio ex-header.
pub const SOUND_EX_HEADER: u8 = 9;

/// Frame types (legacy 4-bit field, enhanced 3-bit field).
pub mod frame_type {
    pub const KEY: u8 = 1;
    pub const INTER: u8 = 2;
    pub const DISPOSABLE_INTER: u8 = 3;
    pub const GENERATED_KEY: u8 = 4;
    pub const COMMAND: u8 = 5;
}

/// Enhanced RTMP video packet types.
pub mod video_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
    pub const MOD_EX: u8 = 7;
}

/// The leading bytes of a video tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTagHeader {
    pub frame_type: u8,
    pub codec: VideoCodec,
    /// AVCPacketType for legacy AVC (0 sequence header, 1 NALUs, 2 end of sequence), the
    /// enhanced packet type for ex-headers, `None` for other legacy codecs.
    pub packet_type: Option<u8>,
}

impl VideoTagHeader {
    pub fn parse(data: &[u8]) -> Result<Self, FlvError> {
        let Some(&first) = data.first() else {
            return Err(FlvError::ShortBody("video"));
        };
        if first & 0x80 != 0 {
            // Enhanced RTMP: IsExHeader, 3-bit frame type, 4-bit packet type, FourCC.
            let packet_type = first & 0x0f;
            let frame_type = (first >> 4) & 0x07;
            let fourcc = match packet_type {
                // Multitrack and ModEx put more fields before (or instead of) the FourCC;
                // a single-track FourCC we cannot claim to know.
                video_packet::MULTITRACK | video_packet::MOD_EX => [0; 4],
                _ => data
                    .get(1..5)
                    .ok_or(FlvError::ShortBody("enhanced video"))?
                    .try_into()
                    .expect("four bytes"),
            };
            return Ok(VideoTagHeader {
                frame_type,
                codec: VideoCodec::FourCc(fourcc),
                packet_type: Some(packet_type),
            });
        }
        let codec = first & 0x0f;
        let packet_type = if codec == CODEC_AVC {
            Some(*data.get(1).ok_or(FlvError::ShortBody("AVC video"))?)
        } else {
            None
        };
        Ok(VideoTagHeader {
            frame_type: first >> 4,
            codec: VideoCodec::Legacy(codec),
            packet_type,
        })
    }

    pub fn is_enhanced(&self) -> bool {
        matches!(self.codec, VideoCodec::FourCc(_))
    }

    /// A frame that decoding can start from. Sequence headers carry frame type 1 too but
    /// hold no picture, so they do not count.
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == frame_type::KEY && !self.is_sequence_header()
    }

    /// Decoder configuration (AVC/HEVC/AV1/VP9 configuration record).
    pub fn is_sequence_header(&self) -> bool {
        match self.codec {
            VideoCodec::Legacy(CODEC_AVC) => self.packet_type == Some(0),
            VideoCodec::Legacy(_) => false,
            VideoCodec::FourCc(_) => self.packet_type == Some(video_packet::SEQUENCE_START),
        }
    }

    pub fn is_avc_sequence_header(&self) -> bool {
        self.is_sequence_header()
            && matches!(
                self.codec,
                VideoCodec::Legacy(CODEC_AVC) | VideoCodec::FourCc([b'a', b'v', b'c', b'1'])
            )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// The 4-bit sound format of the legacy header: 2 MP3, 10 AAC, …
    Legacy(u8),
    /// Enhanced RTMP audio ex-header codec ("Opus", "fLaC", "mp4a", …).
    FourCc(FourCc),
}

/// The leading bytes of an audio tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTagHeader {
    pub codec: AudioCodec,
    /// AACPacketType for legacy AAC (0 sequence header, 1 raw), the enhanced packet type
    /// for ex-headers, `None` for other legacy formats.
    pub packet_type: Option<u8>,
}

impl AudioTagHeader {
    pub fn parse(data: &[u8]) -> Result<Self, FlvError> {
        let Some(&first) = data.first() else {
            return Err(FlvError::ShortBody("audio"));
        };
        let format = first >> 4;
        if format == SOUND_EX_HEADER {
            let packet_type = first & 0x0f;
            // Multitrack (5) and ModEx (7) put more fields before the FourCC.
            let fourcc = match packet_type {
                5 | 7 => [0; 4],
                _ => data
                    .get(1..5)
                    .ok_or(FlvError::ShortBody("enhanced audio"))?
                    .try_into()
                    .expect("four bytes"),
            };
            return Ok(AudioTagHeader {
                codec: AudioCodec::FourCc(fourcc),
                packet_type: Some(packet_type),
            });
        }
        let packet_type = if format == SOUND_AAC {
            Some(*data.get(1).ok_or(FlvError::ShortBody("AAC audio"))?)
        } else {
            None
        };
        Ok(AudioTagHeader {
            codec: AudioCodec::Legacy(format),
            packet_type,
        })
    }

    pub fn is_sequence_header(&self) -> bool {
        match self.codec {
            AudioCodec::Legacy(f) => f == SOUND_AAC && self.packet_type == Some(0),
            AudioCodec::FourCc(_) => self.packet_type == Some(0),
        }
    }

    pub fn is_aac_sequence_header(&self) -> bool {
        self.is_sequence_header()
            && matches!(
                self.codec,
                AudioCodec::Legacy(SOUND_AAC) | AudioCodec::FourCc([b'm', b'p', b'4', b'a'])
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tags() -> Vec<FlvTag> {
        vec![
            FlvTag::new(TagType::Script, 0, vec![2, 0, 10]),
            FlvTag::new(TagType::Video, 0, vec![0x17, 0, 0, 0, 0, 1, 0x64]),
            FlvTag::new(TagType::Audio, 0, vec![0xaf, 0, 0x12, 0x10]),
            FlvTag::new(TagType::Video, 40, vec![0x17, 1, 0, 0, 0, 0xaa]),
            FlvTag::new(TagType::Audio, 0x0123_4567, vec![]),
        ]
    }

    fn write(tags: &[FlvTag]) -> Vec<u8> {
        let mut w = FlvWriter::new(FlvHeader::new(true, true));
        let mut out = Vec::new();
        for t in tags {
            w.write_tag(t, &mut out).unwrap();
        }
        out
    }

    fn read(bytes: &[u8], step: usize) -> Result<Vec<FlvTag>, FlvError> {
        let mut r = FlvReader::new();
        for piece in bytes.chunks(step.max(1)) {
            r.feed(piece)?;
        }
        r.finish()?;
        Ok(std::iter::from_fn(|| r.poll_tag()).collect())
    }

    #[test]
    fn header_and_first_tag_bytes_are_as_specified() {
        let out = write(&sample_tags()[1..2]);
        assert_eq!(
            &out[..13],
            &[b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(&out[13..24], &[9, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[out.len() - 4..], &18u32.to_be_bytes());
    }

    #[test]
    fn extended_timestamp_byte_holds_the_top_bits() {
        let mut out = Vec::new();
        FlvTag::new(TagType::Audio, 0x0123_4567, vec![])
            .encode(&mut out)
            .unwrap();
        assert_eq!(&out[4..8], &[0x23, 0x45, 0x67, 0x01]);
    }

    #[test]
    fn tags_round_trip_in_pieces_of_any_size() {
        let tags = sample_tags();
        let bytes = write(&tags);
        for step in [1, 2, 3, 5, 11, 13, 64, bytes.len()] {
            assert_eq!(read(&bytes, step).unwrap(), tags, "step {step}");
        }
    }

    #[test]
    fn header_with_extra_bytes_is_skipped() {
        let mut h = FlvHeader::new(false, true);
        h.data_offset = 15;
        let mut out = Vec::new();
        h.encode(&mut out);
        sample_tags()[1].encode(&mut out).unwrap();
        let mut r = FlvReader::new();
        r.feed(&out).unwrap();
        assert_eq!(r.header().unwrap().data_offset, 15);
        assert!(r.poll_tag().unwrap().is_avc_sequence_header());
    }

    #[test]
    fn malformed_streams_say_what_is_wrong() {
        assert!(matches!(read(b"FLX", 1), Err(FlvError::BadSignature(_))));
        assert!(matches!(
            read(b"GET / HTTP/1.1", 100),
            Err(FlvError::BadSignature(_))
        ));
        let good = write(&sample_tags());
        let mut bad = good.clone();
        bad[13] = 7;
        assert!(matches!(read(&bad, 100), Err(FlvError::UnknownTagType(7))));
        let mut bad = good.clone();
        bad[13] |= 0x20;
        assert!(matches!(read(&bad, 100), Err(FlvError::Encrypted)));
        let mut bad = good.clone();
        bad[13 + 11 + 3 + 3] ^= 1;
        assert!(matches!(
            read(&bad, 100),
            Err(FlvError::BackPointerMismatch { .. })
        ));
        let mut bad = good.clone();
        bad[12] = 1;
        assert!(matches!(
            read(&bad, 100),
            Err(FlvError::BadFirstBackPointer(1))
        ));
        assert!(matches!(
            read(&good[..good.len() - 6], 100),
            Err(FlvError::Truncated(_))
        ));
        // Only the last back pointer missing: every tag still arrives.
        assert_eq!(read(&good[..good.len() - 4], 100).unwrap().len(), 5);
    }

    #[test]
    fn legacy_video_and_audio_headers() {
        let tags = sample_tags();
        assert!(tags[1].is_avc_sequence_header());
        assert!(!tags[1].is_keyframe());
        assert!(tags[2].is_aac_sequence_header());
        assert!(tags[3].is_keyframe());
        assert!(!tags[3].is_sequence_header());
        let inter = FlvTag::new(TagType::Video, 0, vec![0x27, 1, 0, 0, 0]);
        assert!(!inter.is_keyframe());
        // Sorenson H.263 keyframe: no packet type byte.
        let h263 = FlvTag::new(TagType::Video, 0, vec![0x12]);
        assert!(h263.is_keyframe());
        let mp3 = FlvTag::new(TagType::Audio, 0, vec![0x2f]);
        assert!(!mp3.is_sequence_header());
        assert!(FlvTag::new(TagType::Video, 0, vec![0x17])
            .video_header()
            .is_none());
    }

    #[test]
    fn enhanced_rtmp_ex_headers() {
        // IsExHeader | keyframe (1 << 4) | SequenceStart, "hvc1".
        let seq = VideoTagHeader::parse(&[0x90, b'h', b'v', b'c', b'1', 1]).unwrap();
        assert_eq!(seq.codec, VideoCodec::FourCc(*b"hvc1"));
        assert!(seq.is_sequence_header() && !seq.is_keyframe());
        assert!(!seq.is_avc_sequence_header());
        // Keyframe, CodedFramesX, "av01".
        let key = VideoTagHeader::parse(&[0x93, b'a', b'v', b'0', b'1', 0]).unwrap();
        assert!(key.is_keyframe() && key.is_enhanced());
        // Inter frame, CodedFrames, "vp09".
        let inter = VideoTagHeader::parse(&[0xa1, b'v', b'p', b'0', b'9', 0, 0, 0]).unwrap();
        assert!(!inter.is_keyframe());
        assert!(VideoTagHeader::parse(&[0x91, b'h', b'v']).is_err());
        // Enhanced audio: sound format 9, SequenceStart, "mp4a".
        let aac = AudioTagHeader::parse(&[0x90, b'm', b'p', b'4', b'a', 0x12]).unwrap();
        assert!(aac.is_aac_sequence_header());
        let opus = AudioTagHeader::parse(&[0x90, b'O', b'p', b'u', b's']).unwrap();
        assert!(opus.is_sequence_header() && !opus.is_aac_sequence_header());
    }
}
