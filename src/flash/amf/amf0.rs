//! AMF0: the original Flash encoding, one type marker byte before each value.

use super::amf3::Amf3Encoder;
use super::reader::{Reader, Table};
use super::value::{Date, EcmaArray, Object, Properties, Value};
use super::{amf3, AmfError};

/// AMF0 type markers (AMF0 specification §2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
    pub const UNSUPPORTED: u8 = 0x0d;
    pub const RECORDSET: u8 = 0x0e;
    pub const XML_DOCUMENT: u8 = 0x0f;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// Decodes one AMF0 value. Objects and arrays it contains are numbered in the reader's
/// AMF0 reference table, and references to earlier ones are resolved to copies.
///
/// The AMF0 `unsupported` marker decodes to [`Value::Undefined`]; the 0x11 marker switches
/// to AMF3 for one value, which decodes to whatever that AMF3 value is.
pub fn decode_amf0(reader: &mut Reader<'_>) -> Result<Value, AmfError> {
    let depth = reader.depth();
    let result = value(reader);
    reader.reset_depth(depth);
    result
}

fn value(reader: &mut Reader<'_>) -> Result<Value, AmfError> {
    let at = reader.position();
    let marker = reader.u8()?;
    reader.charge_value()?;
    Ok(match marker {
        marker::NUMBER => Value::Number(reader.f64()?),
        marker::BOOLEAN => Value::Boolean(reader.u8()? != 0),
        marker::STRING => {
            let len = reader.u16()?;
            Value::String(reader.utf8(usize::from(len))?)
        }
        marker::LONG_STRING => Value::String(long_utf8(reader)?),
        marker::XML_DOCUMENT => Value::XmlDocument(long_utf8(reader)?),
        marker::NULL => Value::Null,
        marker::UNDEFINED | marker::UNSUPPORTED => Value::Undefined,
        marker::DATE => {
            let millis = reader.f64()?;
            let timezone = reader.i16()?;
            Value::Date(Date { millis, timezone })
        }
        marker::OBJECT => complex(reader, |reader| {
            Ok(Value::Object(Object {
                dynamic: Some(properties(reader)?),
                ..Object::default()
            }))
        })?,
        marker::TYPED_OBJECT => complex(reader, |reader| {
            let class_name = short_utf8(reader)?;
            Ok(Value::Object(Object {
                class_name,
                sealed: Vec::new(),
                dynamic: Some(properties(reader)?),
            }))
        })?,
        marker::ECMA_ARRAY => complex(reader, |reader| {
            let count_hint = reader.u32()?;
            Ok(Value::EcmaArray(EcmaArray {
                count_hint,
                entries: properties(reader)?,
            }))
        })?,
        marker::STRICT_ARRAY => complex(reader, |reader| {
            let count = reader.u32()?;
            let count = reader.count(usize::try_from(count).unwrap_or(usize::MAX), 1)?;
            let mut items = Vec::with_capacity(Reader::capacity(count));
            for _ in 0..count {
                items.push(value(reader)?);
            }
            Ok(Value::StrictArray(items))
        })?,
        marker::REFERENCE => {
            let index = reader.u16()?;
            reader.resolve(Table::Amf0Objects, usize::from(index), at)?
        }
        marker::AVMPLUS => amf3::value(reader)?,
        marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd { at }),
        marker::MOVIECLIP | marker::RECORDSET => {
            return Err(AmfError::ReservedAmf0Marker { at, marker })
        }
        _ => return Err(AmfError::UnknownAmf0Marker { at, marker }),
    })
}

/// A value AMF0 can reference later: numbered as it begins, stored once it ends.
fn complex(
    reader: &mut Reader<'_>,
    body: impl FnOnce(&mut Reader<'_>) -> Result<Value, AmfError>,
) -> Result<Value, AmfError> {
    let registration = reader.register(Table::Amf0Objects);
    reader.enter()?;
    let value = body(reader)?;
    reader.leave();
    reader.complete(Table::Amf0Objects, registration, &value)?;
    Ok(value)
}

/// Properties up to the object end marker (an empty name followed by 0x09).
fn properties(reader: &mut Reader<'_>) -> Result<Properties, AmfError> {
    let mut properties = Vec::new();
    loop {
        let name = short_utf8(reader)?;
        if name.is_empty() && reader.peek_u8() == Some(marker::OBJECT_END) {
            reader.u8()?;
            return Ok(properties);
        }
        properties.push((name, value(reader)?));
    }
}

fn short_utf8(reader: &mut Reader<'_>) -> Result<String, AmfError> {
    let len = reader.u16()?;
    reader.utf8(usize::from(len))
}

fn long_utf8(reader: &mut Reader<'_>) -> Result<String, AmfError> {
    let len = reader.u32()?;
    reader.utf8(usize::try_from(len).unwrap_or(usize::MAX))
}

/// Appends the AMF0 encoding of `value`, a message of its own, to `out`. On error `out`
/// is left as it was. For a message of several values use [`Amf0Encoder`] (or
/// [`super::encode_amf0_sequence`]): values switched to AMF3 share the message's AMF3
/// reference tables.
pub fn encode_amf0(value: &Value, out: &mut Vec<u8>) -> Result<(), AmfError> {
    Amf0Encoder::new().encode(value, out)
}

/// An AMF0 encoder for one message.
///
/// Strings longer than 65535 bytes go out as long strings; objects with a class name as
/// typed objects (sealed members first, then dynamic ones). Values AMF0 has no type for
/// ([`Value::Integer`], [`Value::Xml`], [`Value::Array`], [`Value::ByteArray`], vectors and
/// dictionaries) are sent as AMF3 behind the 0x11 switch marker. Those AMF3 values share
/// one set of AMF3 reference tables for the whole message, as Flash Player's do (and as
/// [`Reader`] expects). Nothing is ever sent as an AMF0 reference.
#[derive(Debug, Default)]
pub struct Amf0Encoder {
    amf3: Amf3Encoder,
}

impl Amf0Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one value. On error `out` is left as it was (the AMF3 tables may remember
    /// strings of the failed value, so start a new encoder for a new message).
    pub fn encode(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), AmfError> {
        let start = out.len();
        let result = write_value(value, out, &mut self.amf3);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>, amf3: &mut Amf3Encoder) -> Result<(), AmfError> {
    match value {
        Value::Number(number) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::Boolean(flag) => out.extend_from_slice(&[marker::BOOLEAN, u8::from(*flag)]),
        Value::String(text) => match u16::try_from(text.len()) {
            Ok(len) => {
                out.push(marker::STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Err(_) => {
                out.push(marker::LONG_STRING);
                write_long_utf8("long string", text, out)?;
            }
        },
        Value::XmlDocument(text) => {
            out.push(marker::XML_DOCUMENT);
            write_long_utf8("XML document", text, out)?;
        }
        Value::Null => out.push(marker::NULL),
        Value::Undefined => out.push(marker::UNDEFINED),
        Value::Date(date) => {
            out.push(marker::DATE);
            out.extend_from_slice(&date.millis.to_be_bytes());
            out.extend_from_slice(&date.timezone.to_be_bytes());
        }
        Value::Object(object) => {
            if object.class_name.is_empty() {
                out.push(marker::OBJECT);
            } else {
                out.push(marker::TYPED_OBJECT);
                write_short_utf8("class name", &object.class_name, out)?;
            }
            write_properties(object.properties(), out, amf3)?;
        }
        Value::EcmaArray(array) => {
            out.push(marker::ECMA_ARRAY);
            out.extend_from_slice(&array.count_hint.to_be_bytes());
            write_properties(
                array
                    .entries
                    .iter()
                    .map(|(name, value)| (name.as_str(), value)),
                out,
                amf3,
            )?;
        }
        Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            write_u32_len("strict array", items.len(), out)?;
            for item in items {
                write_value(item, out, amf3)?;
            }
        }
        Value::Integer(_)
        | Value::Xml(_)
        | Value::Array(_)
        | Value::ByteArray(_)
        | Value::VectorInt(_)
        | Value::VectorUint(_)
        | Value::VectorDouble(_)
        | Value::VectorObject(_)
        | Value::Dictionary(_) => {
            out.push(marker::AVMPLUS);
            amf3.write(value, out)?;
        }
    }
    Ok(())
}

fn write_properties<'v>(
    properties: impl Iterator<Item = (&'v str, &'v Value)>,
    out: &mut Vec<u8>,
    amf3: &mut Amf3Encoder,
) -> Result<(), AmfError> {
    for (name, value) in properties {
        write_short_utf8("property name", name, out)?;
        write_value(value, out, amf3)?;
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
    Ok(())
}

fn write_short_utf8(what: &'static str, text: &str, out: &mut Vec<u8>) -> Result<(), AmfError> {
    let len = u16::try_from(text.len()).map_err(|_| AmfError::TooLong {
        what,
        len: text.len(),
        limit: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_long_utf8(what: &'static str, text: &str, out: &mut Vec<u8>) -> Result<(), AmfError> {
    write_u32_len(what, text.len(), out)?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_u32_len(what: &'static str, len: usize, out: &mut Vec<u8>) -> Result<(), AmfError> {
    let len = u32::try_from(len).map_err(|_| AmfError::TooLong {
        what,
        len,
        limit: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}
