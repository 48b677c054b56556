//! RTMP messages as the chunk layer delivers them, and the meaning of the few message
//! types this layer itself acts on: protocol control (types 1-3, 5, 6), user control
//! (type 4) and aggregates (type 22). Commands and media are left as bytes.

use super::RtmpError;

/// Message type id of the RTMP message header (RTMP spec §5.4, §6.2, §7.1).
///
/// Equality and hashing go by the numeric id, so `Other(8)` equals `Audio`; build values
/// with `MessageType::from(u8)` to get the named variant.
#[derive(Debug, Clone, Copy, Eq)]
pub enum MessageType {
    SetChunkSize,
    Abort,
    Acknowledgement,
    UserControl,
    WindowAckSize,
    SetPeerBandwidth,
    Audio,
    Video,
    DataAmf3,
    SharedObjectAmf3,
    CommandAmf3,
    DataAmf0,
    SharedObjectAmf0,
    CommandAmf0,
    Aggregate,
    Other(u8),
}

impl MessageType {
    pub fn id(self) -> u8 {
        match self {
            MessageType::SetChunkSize => 1,
            MessageType::Abort => 2,
            MessageType::Acknowledgement => 3,
            MessageType::UserControl => 4,
            MessageType::WindowAckSize => 5,
            MessageType::SetPeerBandwidth => 6,
            MessageType::Audio => 8,
            MessageType::Video => 9,
            MessageType::DataAmf3 => 15,
            MessageType::SharedObjectAmf3 => 16,
            MessageType::CommandAmf3 => 17,
            MessageType::DataAmf0 => 18,
            MessageType::SharedObjectAmf0 => 19,
            MessageType::CommandAmf0 => 20,
            MessageType::Aggregate => 22,
            MessageType::Other(id) => id,
        }
    }

    /// Types 1, 2, 3, 5 and 6: consumed by the chunk layer itself (RTMP spec §5.4).
    pub fn is_protocol_control(self) -> bool {
        matches!(self.id(), 1..=3 | 5 | 6)
    }
}

impl From<u8> for MessageType {
    fn from(id: u8) -> Self {
        match id {
            1 => MessageType::SetChunkSize,
            2 => MessageType::Abort,
            3 => MessageType::Acknowledgement,
            4 => MessageType::UserControl,
            5 => MessageType::WindowAckSize,
            6 => MessageType::SetPeerBandwidth,
            8 => MessageType::Audio,
            9 => MessageType::Video,
            15 => MessageType::DataAmf3,
            16 => MessageType::SharedObjectAmf3,
            17 => MessageType::CommandAmf3,
            18 => MessageType::DataAmf0,
            19 => MessageType::SharedObjectAmf0,
            20 => MessageType::CommandAmf0,
            22 => MessageType::Aggregate,
            other => MessageType::Other(other),
        }
    }
}

impl PartialEq for MessageType {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl std::hash::Hash for MessageType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}

/// One complete RTMP message. `stream_id` is the message stream id, which the chunk
/// header carries little-endian (RTMP spec §5.3.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpMessage {
    pub type_id: MessageType,
    /// Milliseconds; wraps at 2^32 (RTMP spec §5.3.1.3 uses serial arithmetic).
    pub timestamp: u32,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

impl RtmpMessage {
    pub fn new(type_id: MessageType, timestamp: u32, stream_id: u32, payload: Vec<u8>) -> Self {
        RtmpMessage {
            type_id,
            timestamp,
            stream_id,
            payload,
        }
    }
}

/// Limit of a Set Peer Bandwidth message (RTMP spec §5.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthLimit {
    Hard = 0,
    Soft = 1,
    Dynamic = 2,
}

/// The protocol control messages of RTMP spec §5.4, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolControl {
    SetChunkSize(u32),
    Abort { chunk_stream_id: u32 },
    Acknowledgement { sequence: u32 },
    WindowAckSize(u32),
    SetPeerBandwidth { window: u32, limit: BandwidthLimit },
}

/// Protocol control messages travel on chunk stream 2, message stream 0 (RTMP spec §5.4).
pub const CONTROL_CHUNK_STREAM: u32 = 2;

fn be_u32(payload: &[u8], type_id: MessageType, need: usize) -> Result<u32, RtmpError> {
    if payload.len() < need {
        return Err(RtmpError::ShortControlMessage {
            type_id: type_id.id(),
            need,
            got: payload.len(),
        });
    }
    Ok(u32::from_be_bytes([
        payload[0], payload[1], payload[2], payload[3],
    ]))
}

impl ProtocolControl {
    /// Decodes `msg` if it is a protocol control message; `Ok(None)` for any other type.
    pub fn from_message(msg: &RtmpMessage) -> Result<Option<Self>, RtmpError> {
        let p = &msg.payload;
        let t = msg.type_id;
        Ok(Some(match t {
            MessageType::SetChunkSize => {
                let size = be_u32(p, t, 4)?;
                validate_chunk_size(size)?;
                ProtocolControl::SetChunkSize(size)
            }
            MessageType::Abort => ProtocolControl::Abort {
                chunk_stream_id: be_u32(p, t, 4)?,
            },
            MessageType::Acknowledgement => ProtocolControl::Acknowledgement {
                sequence: be_u32(p, t, 4)?,
            },
            MessageType::WindowAckSize => ProtocolControl::WindowAckSize(be_u32(p, t, 4)?),
            MessageType::SetPeerBandwidth => {
                let window = be_u32(p, t, 5)?;
                let limit = match p[4] {
                    0 => BandwidthLimit::Hard,
                    1 => BandwidthLimit::Soft,
                    2 => BandwidthLimit::Dynamic,
                    other => return Err(RtmpError::BadBandwidthLimit(other)),
                };
                ProtocolControl::SetPeerBandwidth { window, limit }
            }
            _ => return Ok(None),
        }))
    }

    pub fn to_message(&self) -> RtmpMessage {
        let (type_id, payload) = match *self {
            ProtocolControl::SetChunkSize(size) => {
                (MessageType::SetChunkSize, size.to_be_bytes().to_vec())
            }
            ProtocolControl::Abort { chunk_stream_id } => {
                (MessageType::Abort, chunk_stream_id.to_be_bytes().to_vec())
            }
            ProtocolControl::Acknowledgement { sequence } => (
                MessageType::Acknowledgement,
                sequence.to_be_bytes().to_vec(),
            ),
            ProtocolControl::WindowAckSize(size) => {
                (MessageType::WindowAckSize, size.to_be_bytes().to_vec())
            }
            ProtocolControl::SetPeerBandwidth { window, limit } => {
                let mut p = window.to_be_bytes().to_vec();
                p.push(limit as u8);
                (MessageType::SetPeerBandwidth, p)
            }
        };
        RtmpMessage::new(type_id, 0, 0, payload)
    }
}

/// RTMP spec §5.4.1: 31 bits, the top bit must be zero, and a chunk carries at least one byte.
pub fn validate_chunk_size(size: u32) -> Result<(), RtmpError> {
    if size == 0 || size > super::chunk::MAX_CHUNK_SIZE {
        return Err(RtmpError::BadChunkSize(size));
    }
    Ok(())
}

/// User control events (RTMP spec §6.2 and §7.1.7), carried in message type 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControlEvent {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength { stream_id: u32, buffer_ms: u32 },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    Unknown { event_type: u16, data: Vec<u8> },
}

impl UserControlEvent {
    pub fn event_type(&self) -> u16 {
        match self {
            UserControlEvent::StreamBegin(_) => 0,
            UserControlEvent::StreamEof(_) => 1,
            UserControlEvent::StreamDry(_) => 2,
            UserControlEvent::SetBufferLength { .. } => 3,
            UserControlEvent::StreamIsRecorded(_) => 4,
            UserControlEvent::PingRequest(_) => 6,
            UserControlEvent::PingResponse(_) => 7,
            UserControlEvent::Unknown { event_type, .. } => *event_type,
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, RtmpError> {
        if payload.len() < 2 {
            return Err(RtmpError::ShortControlMessage {
                type_id: MessageType::UserControl.id(),
                need: 2,
                got: payload.len(),
            });
        }
        let event_type = u16::from_be_bytes([payload[0], payload[1]]);
        let data = &payload[2..];
        let need = match event_type {
            0..=2 | 4 | 6 | 7 => 4,
            3 => 8,
            _ => {
                return Ok(UserControlEvent::Unknown {
                    event_type,
                    data: data.to_vec(),
                })
            }
        };
        if data.len() < need {
            return Err(RtmpError::ShortControlMessage {
                type_id: MessageType::UserControl.id(),
                need: need + 2,
                got: payload.len(),
            });
        }
        let first = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        Ok(match event_type {
            0 => UserControlEvent::StreamBegin(first),
            1 => UserControlEvent::StreamEof(first),
            2 => UserControlEvent::StreamDry(first),
            3 => UserControlEvent::SetBufferLength {
                stream_id: first,
                buffer_ms: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            },
            4 => UserControlEvent::StreamIsRecorded(first),
            6 => UserControlEvent::PingRequest(first),
            _ => UserControlEvent::PingResponse(first),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.event_type().to_be_bytes().to_vec();
        match self {
            UserControlEvent::StreamBegin(v)
            | UserControlEvent::StreamEof(v)
            | UserControlEvent::StreamDry(v)
            | UserControlEvent::StreamIsRecorded(v)
            | UserControlEvent::PingRequest(v)
            | UserControlEvent::PingResponse(v) => out.extend_from_slice(&v.to_be_bytes()),
            UserControlEvent::SetBufferLength {
                stream_id,
                buffer_ms,
            } => {
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&buffer_ms.to_be_bytes());
            }
            UserControlEvent::Unknown { data, .. } => out.extend_from_slice(data),
        }
        out
    }

    /// User control messages go on chunk stream 2, message stream 0 (RTMP spec §6.2).
    pub fn to_message(&self) -> RtmpMessage {
        RtmpMessage::new(MessageType::UserControl, 0, 0, self.encode())
    }
}

/// Size of an FLV-style tag header inside an aggregate message.
const SUB_HEADER_LEN: usize = 11;
/// Each sub-message is followed by its back pointer (the FLV PreviousTagSize).
const BACK_POINTER_LEN: usize = 4;

/// Splits an aggregate message (RTMP spec §7.1.6) into its sub-messages. Sub-messages keep
/// their spacing in time but are moved so that the first one lands on the aggregate's own
/// timestamp; all take the aggregate's message stream id.
pub fn split_aggregate(msg: &RtmpMessage) -> Result<Vec<RtmpMessage>, RtmpError> {
    let mut rest = &msg.payload[..];
    let mut out = Vec::new();
    let mut first_ts: Option<u32> = None;
    while !rest.is_empty() {
        if rest.len() < SUB_HEADER_LEN {
            return Err(RtmpError::BadAggregate("sub-message header cut short"));
        }
        let type_id = MessageType::from(rest[0]);
        let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
        let body_end = SUB_HEADER_LEN + len;
        if rest.len() < body_end {
            return Err(RtmpError::BadAggregate(
                "sub-message body longer than the aggregate",
            ));
        }
        if matches!(type_id, MessageType::Aggregate) || type_id.is_protocol_control() {
            return Err(RtmpError::BadAggregate(
                "aggregate holds a nested aggregate or protocol control message",
            ));
        }
        let base = *first_ts.get_or_insert(ts);
        out.push(RtmpMessage::new(
            type_id,
            msg.timestamp.wrapping_add(ts.wrapping_sub(base)),
            msg.stream_id,
            rest[SUB_HEADER_LEN..body_end].to_vec(),
        ));
        // The back pointer is optional after the last sub-message in practice; tolerate
        // its absence there, but not a half-present one.
        let after = &rest[body_end..];
        rest = match after.len() {
            0 => after,
            n if n < BACK_POINTER_LEN => {
                return Err(RtmpError::BadAggregate("back pointer cut short"));
            }
            _ => &after[BACK_POINTER_LEN..],
        };
    }
    Ok(out)
}

/// Builds an aggregate message from sub-messages (for tests and for relaying). Sub-message
/// timestamps are written as given.
pub fn build_aggregate(timestamp: u32, stream_id: u32, subs: &[RtmpMessage]) -> RtmpMessage {
    let mut payload = Vec::new();
    for sub in subs {
        let len = (sub.payload.len() as u32).min(0xff_ffff);
        payload.push(sub.type_id.id());
        payload.extend_from_slice(&len.to_be_bytes()[1..]);
        payload.extend_from_slice(&sub.timestamp.to_be_bytes()[1..]);
        payload.push((sub.timestamp >> 24) as u8);
        payload.extend_from_slice(&[0, 0, 0]);
        payload.extend_from_slice(&sub.payload[..len as usize]);
        payload.extend_from_slice(&(len + SUB_HEADER_LEN as u32).to_be_bytes());
    }
    RtmpMessage::new(MessageType::Aggregate, timestamp, stream_id, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_ids_round_trip_and_compare_by_number() {
        for id in 0..=255u8 {
            assert_eq!(MessageType::from(id).id(), id);
        }
        assert_eq!(MessageType::Other(9), MessageType::Video);
        assert!(MessageType::WindowAckSize.is_protocol_control());
        assert!(!MessageType::UserControl.is_protocol_control());
    }

    #[test]
    fn user_control_events_round_trip() {
        let events = [
            UserControlEvent::StreamBegin(1),
            UserControlEvent::StreamEof(2),
            UserControlEvent::StreamDry(3),
            UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            },
            UserControlEvent::StreamIsRecorded(5),
            UserControlEvent::PingRequest(0xdead_beef),
            UserControlEvent::PingResponse(7),
            UserControlEvent::Unknown {
                event_type: 31,
                data: vec![1, 2, 3],
            },
        ];
        for ev in events {
            assert_eq!(UserControlEvent::decode(&ev.encode()).unwrap(), ev);
        }
        assert_eq!(
            UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_ms: 0x100
            }
            .encode(),
            [0, 3, 0, 0, 0, 1, 0, 0, 1, 0]
        );
        assert!(UserControlEvent::decode(&[0, 6, 1]).is_err());
    }

    #[test]
    fn protocol_control_round_trips_and_rejects_bad_chunk_sizes() {
        for pc in [
            ProtocolControl::SetChunkSize(4096),
            ProtocolControl::SetChunkSize(0x7fff_ffff),
            ProtocolControl::Abort { chunk_stream_id: 6 },
            ProtocolControl::Acknowledgement { sequence: 9 },
            ProtocolControl::WindowAckSize(2_500_000),
            ProtocolControl::SetPeerBandwidth {
                window: 2_500_000,
                limit: BandwidthLimit::Dynamic,
            },
        ] {
            assert_eq!(
                ProtocolControl::from_message(&pc.to_message()).unwrap(),
                Some(pc)
            );
        }
        for bad in [0u32, 0x8000_0000, 0xffff_ffff] {
            let msg = RtmpMessage::new(MessageType::SetChunkSize, 0, 0, bad.to_be_bytes().to_vec());
            assert!(matches!(
                ProtocolControl::from_message(&msg),
                Err(RtmpError::BadChunkSize(v)) if v == bad
            ));
        }
    }

    #[test]
    fn aggregate_sub_messages_move_to_the_aggregate_timestamp() {
        let subs = [
            RtmpMessage::new(MessageType::Audio, 5000, 0, vec![0xaf, 1, 2]),
            RtmpMessage::new(MessageType::Video, 5040, 0, vec![0x27, 1]),
            RtmpMessage::new(MessageType::Audio, 5023, 0, vec![]),
        ];
        let agg = build_aggregate(100, 1, &subs);
        let split = split_aggregate(&agg).unwrap();
        let times: Vec<u32> = split.iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [100, 140, 123]);
        assert!(split.iter().all(|m| m.stream_id == 1));
        assert_eq!(split[1].payload, [0x27, 1]);
        let mut cut = agg.clone();
        cut.payload.truncate(13);
        assert!(split_aggregate(&cut).is_err());
    }
}
