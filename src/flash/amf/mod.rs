//! AMF0 and AMF3, the value encodings of Flash's RTMP-style messages (RFC 7425 §4.1 carries
//! them on RTMFP flows; the formats are Adobe's "Action Message Format" AMF0 and AMF3
//! specifications).
//!
//! A message (an RTMP command such as `connect`: name, transaction id, command object,
//! arguments) is a sequence of values that may reference earlier ones, so decoding goes
//! through one [`Reader`] per message. Encoders never emit AMF0 references or AMF3 object
//! references (a repeated value is sent in full); the AMF3 encoder does reference repeated
//! strings and traits, as Flash Player does.

mod amf0;
mod amf3;
mod reader;
mod value;

pub use amf0::{decode_amf0, encode_amf0, Amf0Encoder};
pub use amf3::{decode_amf3, encode_amf3, Amf3Encoder, AMF3_INTEGER_MAX, AMF3_INTEGER_MIN};
pub use reader::{Reader, MAX_DECODED_BYTES, MAX_DEPTH};
pub use value::{
    Array, Date, Dictionary, EcmaArray, Object, ObjectVector, Properties, Value, Vector,
};

use thiserror::Error;

/// Why AMF bytes could not be decoded, or a value could not be encoded. Decoding errors
/// carry the byte offset in the message where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmfError {
    #[error(
        "AMF value cut short at byte {at}: it needs {needed} more bytes but {remaining} are left"
    )]
    Truncated {
        at: usize,
        needed: usize,
        remaining: usize,
    },
    #[error("unknown AMF0 type marker {marker:#04x} at byte {at}")]
    UnknownAmf0Marker { at: usize, marker: u8 },
    #[error("AMF0 type marker {marker:#04x} at byte {at} is reserved (MovieClip or RecordSet) and has no defined encoding")]
    ReservedAmf0Marker { at: usize, marker: u8 },
    #[error("AMF0 object end marker at byte {at} where a value was expected")]
    UnexpectedObjectEnd { at: usize },
    #[error("unknown AMF3 type marker {marker:#04x} at byte {at}")]
    UnknownAmf3Marker { at: usize, marker: u8 },
    #[error("text at byte {at} is not valid UTF-8")]
    InvalidUtf8 { at: usize },
    #[error("{table} reference {index} at byte {at}, but the message has only {known} so far")]
    BadReference {
        at: usize,
        table: &'static str,
        index: usize,
        known: usize,
    },
    #[error("reference at byte {at} to complex value {index}, which contains the reference itself; cyclic values are not supported")]
    CyclicReference { at: usize, index: usize },
    #[error("count {count} at byte {at} is more than the {remaining} bytes left can hold")]
    CountExceedsInput {
        at: usize,
        count: usize,
        remaining: usize,
    },
    #[error("values nest deeper than {limit} levels at byte {at}")]
    TooDeep { at: usize, limit: usize },
    #[error("decoding the message would take more than {limit} bytes of memory (at byte {at}); it references the same values too often")]
    TooLarge { at: usize, limit: usize },
    #[error("AMF3 object of externalizable class {class_name:?} at byte {at}: its body is class-specific and cannot be decoded generically")]
    Externalizable { at: usize, class_name: String },
    #[error("cannot encode {what} of length {len}: the format allows at most {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("cannot encode an empty {what} in AMF3: an empty name ends the list")]
    EmptyName { what: &'static str },
}

/// Every value of a whole AMF0 message, such as an RTMP command (`"connect"`, `1.0`,
/// command object, arguments...). AMF3 values switched into with the 0x11 marker share
/// the message's AMF3 reference tables.
pub fn decode_amf0_sequence(bytes: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut reader = Reader::new(bytes);
    let mut values = Vec::new();
    while !reader.is_empty() {
        values.push(decode_amf0(&mut reader)?);
    }
    Ok(values)
}

/// Every value of a whole AMF3 message, with one set of reference tables.
pub fn decode_amf3_sequence(bytes: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut reader = Reader::new(bytes);
    let mut values = Vec::new();
    while !reader.is_empty() {
        values.push(decode_amf3(&mut reader)?);
    }
    Ok(values)
}

/// Appends the AMF0 encoding of each value of a message in turn (values switched to AMF3
/// share one set of AMF3 tables). On error `out` is left as it was.
pub fn encode_amf0_sequence<'v>(
    values: impl IntoIterator<Item = &'v Value>,
    out: &mut Vec<u8>,
) -> Result<(), AmfError> {
    let start = out.len();
    let mut encoder = Amf0Encoder::new();
    for value in values {
        if let Err(error) = encoder.encode(value, out) {
            out.truncate(start);
            return Err(error);
        }
    }
    Ok(())
}

/// Appends the AMF3 encoding of each value in turn, with one set of reference tables (a
/// string repeated across values is sent once). On error `out` is left as it was.
pub fn encode_amf3_sequence<'v>(
    values: impl IntoIterator<Item = &'v Value>,
    out: &mut Vec<u8>,
) -> Result<(), AmfError> {
    let start = out.len();
    let mut encoder = Amf3Encoder::new();
    for value in values {
        if let Err(error) = encoder.encode(value, out) {
            out.truncate(start);
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
