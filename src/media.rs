//! What the server needs to know about audio/video payloads (the FLV/RTMP tag bodies):
//! which messages are keyframes and which are codec headers a late joiner needs first.
//! The tag-header parsing (legacy codec ids and the enhanced-RTMP ex-header form) is
//! `flv`'s.

use bytes::Bytes;

use crate::flv::{AudioTagHeader, VideoTagHeader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// Script data such as `onMetaData` (AMF0).
    Data,
}

/// One audio, video or data message of a live stream. The payload is shared: fanning it
/// out to many players clones a reference, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaMessage {
    pub kind: MediaKind,
    /// Milliseconds, as in RTMP and FLV.
    pub timestamp: u32,
    pub payload: Bytes,
}

impl MediaMessage {
    pub fn new(kind: MediaKind, timestamp: u32, payload: impl Into<Bytes>) -> Self {
        MediaMessage {
            kind,
            timestamp,
            payload: payload.into(),
        }
    }

    /// A video message that starts a decodable sequence (frame type 1).
    pub fn is_keyframe(&self) -> bool {
        self.kind == MediaKind::Video
            && VideoTagHeader::parse(&self.payload).is_ok_and(|h| h.is_keyframe())
    }

    /// A decoder configuration record (AVC/HEVC sequence header, AAC
    /// AudioSpecificConfig, or an enhanced-RTMP SequenceStart).
    pub fn is_sequence_header(&self) -> bool {
        match self.kind {
            MediaKind::Video => {
                VideoTagHeader::parse(&self.payload).is_ok_and(|h| h.is_sequence_header())
            }
            MediaKind::Audio => {
                AudioTagHeader::parse(&self.payload).is_ok_and(|h| h.is_sequence_header())
            }
            MediaKind::Data => false,
        }
    }

    /// Script data whose first AMF0 value is the string `onMetaData` (or
    /// `@setDataFrame`, which publishers send to set it).
    pub fn is_metadata(&self) -> bool {
        if self.kind != MediaKind::Data {
            return false;
        }
        let p = &self.payload;
        let name = |s: &[u8]| {
            p.len() >= 3 + s.len()
                && p[0] == 0x02
                && usize::from(u16::from_be_bytes([p[1], p[2]])) == s.len()
                && &p[3..3 + s.len()] == s
        };
        name(b"onMetaData") || name(b"@setDataFrame")
    }
}

const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

impl MediaMessage {
    /// Publishers send `@setDataFrame, onMetaData, {...}` to set the metadata players
    /// receive as `onMetaData, {...}`: strip the first value.
    pub fn without_set_data_frame(&self) -> MediaMessage {
        match self.payload.strip_prefix(SET_DATA_FRAME) {
            Some(_) if self.kind == MediaKind::Data => MediaMessage {
                kind: self.kind,
                timestamp: self.timestamp,
                payload: self.payload.slice(SET_DATA_FRAME.len()..),
            },
            _ => self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(p: &'static [u8]) -> MediaMessage {
        MediaMessage::new(MediaKind::Video, 0, p)
    }
    fn audio(p: &'static [u8]) -> MediaMessage {
        MediaMessage::new(MediaKind::Audio, 0, p)
    }

    #[test]
    fn avc_keyframes_and_headers_are_recognised() {
        assert!(video(b"\x17\x00\x00\x00\x00").is_sequence_header());
        assert!(
            !video(b"\x17\x00\x00\x00\x00").is_keyframe(),
            "a sequence header holds no picture"
        );
        assert!(video(b"\x17\x01\x00\x00\x00").is_keyframe());
        assert!(!video(b"\x17\x01\x00\x00\x00").is_sequence_header());
        assert!(!video(b"\x27\x01\x00\x00\x00").is_keyframe());
        assert!(!video(b"").is_keyframe());
    }

    #[test]
    fn enhanced_rtmp_video_uses_the_packet_type_nibble() {
        // ex-header, key frame, SequenceStart, FourCC hvc1
        assert!(video(b"\x90hvc1\x01").is_sequence_header());
        assert!(video(b"\x91hvc1\x01").is_keyframe());
        // ex-header, inter frame, CodedFrames
        let p = video(b"\xa1av01");
        assert!(!p.is_keyframe() && !p.is_sequence_header());
    }

    #[test]
    fn aac_config_is_a_header_and_raw_aac_is_not() {
        assert!(audio(b"\xaf\x00\x12\x10").is_sequence_header());
        assert!(!audio(b"\xaf\x01\x21").is_sequence_header());
        assert!(
            !audio(b"\x2f\x00").is_sequence_header(),
            "mp3 has no header"
        );
    }

    #[test]
    fn metadata_is_recognised_by_its_name() {
        let m = MediaMessage::new(MediaKind::Data, 0, &b"\x02\x00\x0aonMetaData\x08"[..]);
        assert!(m.is_metadata());
        let other = MediaMessage::new(MediaKind::Data, 0, &b"\x02\x00\x06onPing"[..]);
        assert!(!other.is_metadata());
        let set = MediaMessage::new(
            MediaKind::Data,
            0,
            &b"\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData\x08"[..],
        );
        assert!(set.is_metadata());
        assert_eq!(set.without_set_data_frame().payload, m.payload);
    }
}
