//! The RTMFP core (RFC 7016) with the Flash profile's crypto (RFC 7425), sans-IO.
//!
//! Nothing in this module opens a socket, reads a clock or spawns a thread. The caller feeds
//! `(now, from, datagram)` into an [`Endpoint`], asks it for datagrams to send and for the
//! next timer deadline, and drains typed [`Event`]s. The engine, the CLI, the tests and the
//! network simulator all drive this same core.

pub mod address;
pub mod batch;
pub mod chunk;
pub mod cipher;
pub mod congestion;
pub mod cookie;
pub mod dh;
pub mod endpoint;
pub mod epd;
pub mod flow_recv;
pub mod flow_send;
pub mod handshake;
pub mod keying;
pub mod packet;
pub mod peek;
pub mod session;
pub mod time;
pub mod timer_wheel;
pub mod token_bucket;
pub mod vlu;

pub use endpoint::{Endpoint, EndpointConfig, Event, Transmit};
pub use time::Instant;

use thiserror::Error;

/// Why a piece of untrusted input could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("input ends before the field it announces")]
    Truncated,
    #[error("variable length integer wider than 64 bits")]
    VluOverflow,
    #[error("field value out of range")]
    BadValue,
}

/// Why a received datagram was dropped. The engine counts these per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than a session id plus one cipher block, or not a whole number of blocks.
    BadLength,
    /// Checksum or HMAC did not verify under the key of the session it names.
    BadAuthentication,
    /// Session sequence number already seen or too old.
    Replayed,
    /// Decrypted but the header or a chunk is malformed.
    Malformed,
    /// Names a session id we do not have.
    UnknownSession,
    /// Header mode not allowed here (for example our own mode echoed back).
    WrongMode,
    /// Handshake chunk that does not match any handshake in progress.
    UnexpectedHandshake,
    /// Cookie failed verification or expired.
    BadCookie,
    /// Key agreement failed (bad public key, unsupported group, failed negotiation).
    KeyingFailed,
    /// A handshake while the server drains (shutting down): no new sessions.
    Draining,
    /// An IHello past `max_handshakes_per_sec`: the RHello budget of this second is spent.
    HandshakeRate,
    /// A handshake answer to an address not yet validated would have weighed more than
    /// `amplification_limit` times the datagram that asked for it.
    Amplification,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::BadLength,
        DropReason::BadAuthentication,
        DropReason::Replayed,
        DropReason::Malformed,
        DropReason::UnknownSession,
        DropReason::WrongMode,
        DropReason::UnexpectedHandshake,
        DropReason::BadCookie,
        DropReason::KeyingFailed,
        DropReason::Draining,
        DropReason::HandshakeRate,
        DropReason::Amplification,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::BadLength => "bad_length",
            DropReason::BadAuthentication => "bad_authentication",
            DropReason::Replayed => "replayed",
            DropReason::Malformed => "malformed",
            DropReason::UnknownSession => "unknown_session",
            DropReason::WrongMode => "wrong_mode",
            DropReason::UnexpectedHandshake => "unexpected_handshake",
            DropReason::BadCookie => "bad_cookie",
            DropReason::KeyingFailed => "keying_failed",
            DropReason::Draining => "draining",
            DropReason::HandshakeRate => "handshake_rate",
            DropReason::Amplification => "amplification",
        }
    }
}
