//! NetGroup messages that are not media: posts, flooded to every member once
//! (`NetGroup.post`), and messages routed towards a group address or handed to the
//! neighbours (`sendToNearest`, `sendToAllNeighbors`). docs/netgroup.md §4 and §9.
//!
//! The public facts are thin (librtmfp only logs posts), so beyond the flow roles the
//! format is ours, documented in §9:
//! - a post is one AMF0 value on a `GR 19` flow; its id is the SHA-256 of those bytes,
//!   as Flash defines a post's `messageID` (the hash of the message's serialization),
//!   so a message posted twice is one post and members pass each post on once;
//! - a routed message on a `GR 1d` flow is a kind byte, the 32-byte group address it
//!   goes to, and one AMF0 value.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::flash::amf::{decode_amf0_sequence, encode_amf0_sequence, Value};
use crate::proto::Instant;

/// A post's id: SHA-256 of its AMF0 serialization.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PostId(pub [u8; 32]);

impl PostId {
    pub fn of(serialized: &[u8]) -> PostId {
        PostId(Sha256::digest(serialized).into())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostId({})", self.to_hex())
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Largest post or routed message we send or take, serialized.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a post or routed message could not be sent or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("the message does not serialize as AMF0: {0}")]
    Unserializable(String),
    #[error("the message is {0} bytes serialized; at most {MAX_MESSAGE} are sent")]
    TooLarge(usize),
    #[error("not one AMF0 value")]
    Unreadable,
    #[error("unknown routed message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("routed message shorter than its header")]
    Truncated,
}

/// One value, serialized for the wire (AMF0), and its post id.
pub fn serialize(message: &Value) -> Result<(Vec<u8>, PostId), PostError> {
    let mut bytes = Vec::new();
    encode_amf0_sequence(std::slice::from_ref(message), &mut bytes)
        .map_err(|e| PostError::Unserializable(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(PostError::TooLarge(bytes.len()));
    }
    let id = PostId::of(&bytes);
    Ok((bytes, id))
}

/// A post as it came off the wire: its id and value.
pub fn read_post(bytes: &[u8]) -> Result<(PostId, Value), PostError> {
    Ok((PostId::of(bytes), read_one(bytes)?))
}

fn read_one(bytes: &[u8]) -> Result<Value, PostError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(PostError::TooLarge(bytes.len()));
    }
    match decode_amf0_sequence(bytes) {
        Ok(mut values) if values.len() == 1 => Ok(values.remove(0)),
        _ => Err(PostError::Unreadable),
    }
}

/// Where a routed message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On towards the member whose group address is nearest `address`
    /// (`sendToNearest`); that member takes it.
    Nearest,
    /// To the neighbour that gets it, which takes it (`sendToAllNeighbors`,
    /// `sendToNeighbor`).
    Neighbour,
}

impl Route {
    fn code(self) -> u8 {
        match self {
            Route::Nearest => 0x01,
            Route::Neighbour => 0x02,
        }
    }
}

/// A message on a `GR 1d` flow.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedMessage {
    pub route: Route,
    /// The group address it goes to (for `Neighbour`, the receiver's own).
    pub address: [u8; 32],
    /// The value, AMF0.
    pub payload: Vec<u8>,
}

impl RoutedMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.payload.len());
        out.push(self.route.code());
        out.extend_from_slice(&self.address);
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<RoutedMessage, PostError> {
        let (&kind, rest) = bytes.split_first().ok_or(PostError::Truncated)?;
        let route = match kind {
            0x01 => Route::Nearest,
            0x02 => Route::Neighbour,
            other => return Err(PostError::UnknownKind(other)),
        };
        if rest.len() < 32 {
            return Err(PostError::Truncated);
        }
        let mut address = [0u8; 32];
        address.copy_from_slice(&rest[..32]);
        let payload = rest[32..].to_vec();
        read_one(&payload)?;
        Ok(RoutedMessage {
            route,
            address,
            payload,
        })
    }

    /// The value it carries.
    pub fn value(&self) -> Result<Value, PostError> {
        read_one(&self.payload)
    }
}

/// Posts seen lately, so each is taken and passed on once: bounded in count, and each
/// remembered for `keep`.
#[derive(Debug)]
pub struct PostLog {
    seen: HashMap<PostId, Instant>,
    order: VecDeque<(Instant, PostId)>,
    keep: Duration,
    capacity: usize,
}

/// How long a post is remembered, and how many at most.
pub const POST_MEMORY: Duration = Duration::from_secs(300);
pub const POST_CAPACITY: usize = 4096;

impl Default for PostLog {
    fn default() -> Self {
        PostLog::new(POST_MEMORY, POST_CAPACITY)
    }
}

impl PostLog {
    pub fn new(keep: Duration, capacity: usize) -> Self {
        PostLog {
            seen: HashMap::new(),
            order: VecDeque::new(),
            keep,
            capacity: capacity.max(1),
        }
    }

    /// Whether `id` is new (and now remembered).
    pub fn first_sighting(&mut self, now: Instant, id: PostId) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            let expired = now.saturating_since(at) >= self.keep;
            if !expired && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&id) {
            return false;
        }
        self.seen.insert(id, now);
        self.order.push_back((now, id));
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_id_is_the_hash_of_its_serialization_and_reads_back() {
        let (bytes, id) = serialize(&Value::String("hello".into())).unwrap();
        assert_eq!(bytes, [0x02, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(id, PostId::of(&bytes));
        assert_eq!(
            read_post(&bytes).unwrap(),
            (id, Value::String("hello".into()))
        );
        assert_ne!(serialize(&Value::Number(1.0)).unwrap().1, id);
    }

    #[test]
    fn unreadable_and_oversized_messages_are_refused() {
        assert_eq!(read_post(&[0xff]), Err(PostError::Unreadable));
        // Two values are not one post.
        assert_eq!(read_post(&[0x05, 0x05]), Err(PostError::Unreadable));
        let big = Value::String("x".repeat(MAX_MESSAGE));
        assert!(matches!(serialize(&big), Err(PostError::TooLarge(_))));
        assert_eq!(
            RoutedMessage::parse(&[0x01, 1, 2]),
            Err(PostError::Truncated)
        );
        assert_eq!(
            RoutedMessage::parse(&[0x07; 40]),
            Err(PostError::UnknownKind(7))
        );
    }

    #[test]
    fn routed_messages_round_trip() {
        let (payload, _) = serialize(&Value::Number(42.0)).unwrap();
        let m = RoutedMessage {
            route: Route::Nearest,
            address: [9; 32],
            payload,
        };
        let back = RoutedMessage::parse(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.value().unwrap(), Value::Number(42.0));
    }

    #[test]
    fn the_log_takes_each_post_once_and_forgets_old_ones() {
        let mut log = PostLog::new(Duration::from_secs(10), 3);
        let t0 = Instant::ZERO;
        let id = |n: u8| PostId([n; 32]);
        assert!(log.first_sighting(t0, id(1)));
        assert!(!log.first_sighting(t0, id(1)));
        assert!(log.first_sighting(t0, id(2)));
        assert!(log.first_sighting(t0, id(3)));
        // Over capacity: the oldest goes.
        assert!(log.first_sighting(t0, id(4)));
        assert_eq!(log.len(), 3);
        assert!(log.first_sighting(t0, id(1)));
        // Past its time, a post is forgotten.
        let later = t0 + Duration::from_secs(11);
        assert!(log.first_sighting(later, id(4)));
        assert_eq!(log.len(), 1);
    }
}
