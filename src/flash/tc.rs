//! RTMP-style messages on RTMFP flows (RFC 7425 §5): the flow metadata that names the
//! NetStream a flow belongs to, and the message framing inside a flow.

use crate::media::MediaKind;
use crate::proto::flow_send::Priority;
use crate::proto::vlu::{put_vlu, Reader};

/// Message type ids, shared with RTMP (RFC 7425 §5.1.2).
pub mod kind {
    pub const USER_CONTROL: u8 = 4;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
}

/// User control event types used on RTMFP (RFC 7425 §5.2, §5.3.4).
pub mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const FLOW_SYNC: u16 = 34;
    pub const SET_KEEPALIVE: u16 = 41;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcError {
    #[error("flow metadata is not an RTMP-style signature (expected \"TC\", flags, stream id)")]
    NotTcMetadata,
    #[error("flow metadata lacks the stream-id-present flag")]
    NoStreamId,
    #[error("stream id {0} does not fit in 32 bits")]
    StreamIdTooLarge(u64),
    #[error("message shorter than its 5-byte header")]
    Truncated,
}

/// How the receiver wants a flow's messages delivered (RFC 7425 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiveIntent {
    /// In the order they were sent (commands, and media by default).
    #[default]
    Sequence,
    /// As they arrive: media may skip what is late.
    Network,
}

const FLAG_STREAM_ID: u8 = 0x04;
const FLAG_RECEIVE_INTENT_NETWORK: u8 = 0x01;

/// Flow metadata of a NetConnection (stream id 0) or NetStream flow: `"TC"`, flags, VLU
/// stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowMetadata {
    pub stream_id: u32,
    pub receive_intent: ReceiveIntent,
}

impl FlowMetadata {
    pub fn net_connection() -> Self {
        FlowMetadata {
            stream_id: 0,
            receive_intent: ReceiveIntent::Sequence,
        }
    }

    pub fn net_stream(stream_id: u32) -> Self {
        FlowMetadata {
            stream_id,
            receive_intent: ReceiveIntent::Sequence,
        }
    }

    pub fn parse(metadata: &[u8]) -> Result<Self, TcError> {
        let mut r = Reader::new(metadata);
        let signature = r.take(2).map_err(|_| TcError::NotTcMetadata)?;
        if signature != b"TC" {
            return Err(TcError::NotTcMetadata);
        }
        let flags = r.u8().map_err(|_| TcError::NotTcMetadata)?;
        if flags & FLAG_STREAM_ID == 0 {
            return Err(TcError::NoStreamId);
        }
        let id = r.vlu().map_err(|_| TcError::NotTcMetadata)?;
        let stream_id = u32::try_from(id).map_err(|_| TcError::StreamIdTooLarge(id))?;
        let receive_intent = if flags & FLAG_RECEIVE_INTENT_NETWORK != 0 {
            ReceiveIntent::Network
        } else {
            ReceiveIntent::Sequence
        };
        Ok(FlowMetadata {
            stream_id,
            receive_intent,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"TC".to_vec();
        let mut flags = FLAG_STREAM_ID;
        if self.receive_intent == ReceiveIntent::Network {
            flags |= FLAG_RECEIVE_INTENT_NETWORK;
        }
        out.push(flags);
        put_vlu(&mut out, u64::from(self.stream_id));
        out
    }
}

/// Which of a NetStream's flows carries a message. Media kinds get flows of their own,
/// so a lost video fragment never holds up audio, each at its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Commands, statuses and user control events.
    Control,
    Audio,
    Video,
    Data,
}

impl Lane {
    pub fn priority(self) -> Priority {
        match self {
            Lane::Control => Priority::HIGHEST,
            Lane::Audio => Priority::IMMEDIATE,
            Lane::Video => Priority::TIME_CRITICAL,
            Lane::Data => Priority::ROUTINE,
        }
    }

    /// The lane and message type of a media message.
    pub fn for_media(media: MediaKind) -> (Lane, u8) {
        match media {
            MediaKind::Audio => (Lane::Audio, kind::AUDIO),
            MediaKind::Video => (Lane::Video, kind::VIDEO),
            MediaKind::Data => (Lane::Data, kind::DATA_AMF0),
        }
    }
}

/// The 5-byte header of a flow message (type, big-endian timestamp), to send in front of
/// a payload without joining the two.
pub fn message_header(kind: u8, timestamp: u32) -> [u8; 5] {
    let t = timestamp.to_be_bytes();
    [kind, t[0], t[1], t[2], t[3]]
}

/// One message on a flow: type, 32-bit timestamp in milliseconds, payload
/// (RFC 7425 §5.1.2). The stream id is the flow's, not the message's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcMessage<'a> {
    pub kind: u8,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

impl<'a> TcMessage<'a> {
    pub fn parse(message: &'a [u8]) -> Result<Self, TcError> {
        if message.len() < 5 {
            return Err(TcError::Truncated);
        }
        Ok(TcMessage {
            kind: message[0],
            timestamp: u32::from_be_bytes([message[1], message[2], message[3], message[4]]),
            payload: &message[5..],
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(5 + self.payload.len());
        out.extend_from_slice(&message_header(self.kind, self.timestamp));
        out.extend_from_slice(self.payload);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }

    /// The AMF0 values of a command or data message. An AMF3-typed command or data
    /// message starts with one format byte (0) before AMF0 values (RFC 7425 §5.1.2).
    pub fn amf_body(&self) -> Option<&'a [u8]> {
        match self.kind {
            kind::COMMAND_AMF0 | kind::DATA_AMF0 => Some(self.payload),
            kind::COMMAND_AMF3 | kind::DATA_AMF3 => self.payload.get(1..),
            _ => None,
        }
    }
}

/// A user control event: 16-bit type, then its fields.
pub fn user_control(event: u16, fields: &[u32]) -> Vec<u8> {
    let mut out = event.to_be_bytes().to_vec();
    for f in fields {
        out.extend_from_slice(&f.to_be_bytes());
    }
    out
}

pub fn stream_begin(stream_id: u32) -> Vec<u8> {
    user_control(user_control::STREAM_BEGIN, &[stream_id])
}

pub fn stream_eof(stream_id: u32) -> Vec<u8> {
    user_control(user_control::STREAM_EOF, &[stream_id])
}

/// RFC 7425 §5.3.4: the server tells the client how often to send keepalives, to the
/// server and to its peers (milliseconds).
pub fn set_keepalive(server_period_ms: u32, peer_period_ms: u32) -> Vec<u8> {
    user_control(
        user_control::SET_KEEPALIVE,
        &[server_period_ms, peer_period_ms],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_connection_metadata_is_tc_04_00() {
        assert_eq!(FlowMetadata::net_connection().encode(), b"TC\x04\x00");
        assert_eq!(
            FlowMetadata::parse(b"TC\x04\x00").unwrap(),
            FlowMetadata::net_connection()
        );
    }

    #[test]
    fn stream_metadata_carries_a_vlu_stream_id_and_intent() {
        let m = FlowMetadata {
            stream_id: 200,
            receive_intent: ReceiveIntent::Network,
        };
        assert_eq!(m.encode(), b"TC\x05\x81\x48");
        assert_eq!(FlowMetadata::parse(&m.encode()).unwrap(), m);
    }

    #[test]
    fn foreign_metadata_is_refused_with_the_reason() {
        assert_eq!(
            FlowMetadata::parse(b"GC\x04\x00"),
            Err(TcError::NotTcMetadata)
        );
        assert_eq!(FlowMetadata::parse(b"TC\x00\x00"), Err(TcError::NoStreamId));
        assert_eq!(FlowMetadata::parse(b"TC\x04"), Err(TcError::NotTcMetadata));
        assert!(matches!(
            FlowMetadata::parse(b"TC\x04\xff\xff\xff\xff\xff\x7f"),
            Err(TcError::StreamIdTooLarge(_))
        ));
    }

    #[test]
    fn message_header_is_type_then_big_endian_timestamp() {
        let m = TcMessage {
            kind: kind::VIDEO,
            timestamp: 0x0102_0304,
            payload: b"\x17\x01",
        };
        assert_eq!(m.to_vec(), b"\x09\x01\x02\x03\x04\x17\x01");
        assert_eq!(TcMessage::parse(&m.to_vec()).unwrap(), m);
        assert_eq!(TcMessage::parse(b"\x09\x00\x00"), Err(TcError::Truncated));
    }

    #[test]
    fn amf3_command_body_skips_the_format_byte() {
        let raw = b"\x11\x00\x00\x00\x00\x00\x02\x00\x04play";
        let m = TcMessage::parse(raw).unwrap();
        assert_eq!(m.amf_body().unwrap(), b"\x02\x00\x04play");
        assert_eq!(
            set_keepalive(15000, 10000),
            b"\x00\x29\x00\x00\x3a\x98\x00\x00\x27\x10"
        );
    }
}
