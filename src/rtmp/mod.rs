//! RTMP over TCP, sans-IO: the handshake, the chunk stream and a connection object that
//! ties them together and answers the protocol control messages itself. Commands (connect,
//! publish, play) and their AMF bodies are for the layer above.
//!
//! References are to Adobe's "Real-Time Messaging Protocol (RTMP) specification" (2012).

pub mod chunk;
pub mod connection;
pub mod handshake;
pub mod message;

pub use chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits};
pub use connection::{ConnectionConfig, Event, RtmpConnection};
pub use handshake::{ClientHandshakeMode, HandshakeKind, ServerHandshakeMode};
pub use message::{
    split_aggregate, BandwidthLimit, MessageType, ProtocolControl, RtmpMessage, UserControlEvent,
};

use thiserror::Error;

/// Why an RTMP byte stream was refused. Every variant leaves the connection unusable: RTMP
/// has no way to resynchronise a chunk stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtmpError {
    #[error("handshake asked for RTMP version {0}; only version 3 (plain, unencrypted RTMP) is supported")]
    HandshakeVersion(u8),
    #[error("handshake {0} digest does not verify; the server is not speaking the Flash digest handshake correctly")]
    HandshakeDigest(&'static str),
    #[error("handshake S2 does not echo our C1")]
    HandshakeEcho,
    #[error("chunk of format {fmt} on chunk stream {csid}, which has no earlier header to inherit from; expected format 0 first")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("chunk header of format {fmt} on chunk stream {csid} while a message there is still incomplete; expected a format 3 continuation")]
    HeaderMidMessage { csid: u32, fmt: u8 },
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLong { len: u32, max: u32 },
    #[error("more than {max} chunk streams in use")]
    TooManyChunkStreams { max: usize },
    #[error("more than {max} bytes of incomplete messages buffered")]
    TooMuchBuffered { max: usize },
    #[error("chunk size {0:#x} out of range; expected 1..=0x7fffffff")]
    BadChunkSize(u32),
    #[error("chunk stream id {0} out of range; expected 2..=65599")]
    BadChunkStreamId(u32),
    #[error("control message of type {type_id} has {got} bytes; expected at least {need}")]
    ShortControlMessage {
        type_id: u8,
        need: usize,
        got: usize,
    },
    #[error("Set Peer Bandwidth limit type {0}; expected 0 (hard), 1 (soft) or 2 (dynamic)")]
    BadBandwidthLimit(u8),
    #[error("malformed aggregate message: {0}")]
    BadAggregate(&'static str),
    #[error("connection already failed: {0}")]
    Failed(Box<RtmpError>),
}
