//! The initiator's side of session startup (RFC 7016 §3.5.1): IHello until an RHello
//! (or a Redirect) arrives, then IIKeying until the RIKeying. The responder side is
//! stateless until IIKeying and lives in the endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use super::epd::{Certificate, EndpointDiscriminator};
use super::keying::HandshakeLayout;
use super::time::Instant;

pub const IHELLO_FIRST_RETRANSMIT: Duration = Duration::from_secs(1);
pub const IHELLO_ATTEMPTS: u32 = 8;
pub const IIKEYING_ATTEMPTS: u32 = 6;

/// The step a handshake is at, named as `probe` reports failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Sent IHello, waiting for RHello.
    Hello,
    /// Sent IIKeying, waiting for RIKeying.
    Keying,
}

impl std::fmt::Display for HandshakeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeStep::Hello => "IHello (no RHello from the responder)",
            HandshakeStep::Keying => "IIKeying (no usable RIKeying from the responder)",
        })
    }
}

/// Why an initiator gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    NoAnswer(HandshakeStep),
    /// The responder's certificate does not match what we asked for, or is malformed.
    WrongResponder(String),
    /// No common Diffie-Hellman group, or a bad public key.
    KeyAgreement(String),
    /// HMAC / sequence-number negotiation failed in every layout we tried.
    Negotiation(String),
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::NoAnswer(step) => write!(f, "no answer after {step}"),
            HandshakeFailure::WrongResponder(s) => write!(f, "RHello rejected: {s}"),
            HandshakeFailure::KeyAgreement(s) => write!(f, "key agreement failed at RIKeying: {s}"),
            HandshakeFailure::Negotiation(s) => write!(f, "negotiation failed at RIKeying: {s}"),
        }
    }
}

/// Initiator state between `connect` and an open session.
#[derive(Debug, Clone)]
pub struct Initiator {
    pub near_id: u32,
    pub epd: EndpointDiscriminator,
    pub tag: [u8; 16],
    /// Where IHellos go: the first address plus any from redirects.
    pub candidates: Vec<SocketAddr>,
    pub step: HandshakeStep,
    pub attempts: u32,
    pub next_send: Instant,
    /// When this step's message went out, while it went out only once: an answer to it
    /// is a round-trip sample (Karn: none from a message sent again).
    pub sent_once_at: Option<Instant>,
    /// Layouts still to try, current first.
    pub layouts: Vec<HandshakeLayout>,
    /// After RHello:
    pub responder: Option<SocketAddr>,
    pub cookie: Vec<u8>,
    pub responder_cert: Option<Certificate>,
    pub group: u64,
    pub our_component: Vec<u8>,
    pub our_cert: Vec<u8>,
    pub iikeying: Vec<u8>,
}

impl Initiator {
    pub fn new(
        now: Instant,
        near_id: u32,
        epd: EndpointDiscriminator,
        tag: [u8; 16],
        to: SocketAddr,
        layouts: Vec<HandshakeLayout>,
    ) -> Self {
        Initiator {
            near_id,
            epd,
            tag,
            candidates: vec![to],
            step: HandshakeStep::Hello,
            attempts: 0,
            next_send: now,
            sent_once_at: None,
            layouts,
            responder: None,
            cookie: Vec::new(),
            responder_cert: None,
            group: 0,
            our_component: Vec::new(),
            our_cert: Vec::new(),
            iikeying: Vec::new(),
        }
    }

    pub fn layout(&self) -> HandshakeLayout {
        self.layouts
            .first()
            .copied()
            .unwrap_or(HandshakeLayout::FlashEra)
    }

    /// Backoff: 1 s, then 1.5x per attempt (RFC 7016 §3.5.1.1 leaves the schedule open).
    pub fn schedule_next(&mut self, now: Instant) {
        self.attempts += 1;
        self.sent_once_at = (self.attempts == 1).then_some(now);
        let mut d = IHELLO_FIRST_RETRANSMIT;
        for _ in 1..self.attempts {
            d = d * 3 / 2;
        }
        self.next_send = now + d;
    }

    pub fn exhausted(&self) -> bool {
        match self.step {
            HandshakeStep::Hello => self.attempts >= IHELLO_ATTEMPTS,
            HandshakeStep::Keying => self.attempts >= IIKEYING_ATTEMPTS,
        }
    }

    /// Moves to the next layout, back to IHello (a fresh cookie is needed). Returns false
    /// when none is left.
    pub fn fall_back(&mut self, now: Instant) -> bool {
        if self.layouts.len() <= 1 {
            return false;
        }
        self.layouts.remove(0);
        self.step = HandshakeStep::Hello;
        self.attempts = 0;
        self.next_send = now;
        self.responder = None;
        self.cookie.clear();
        true
    }
}
