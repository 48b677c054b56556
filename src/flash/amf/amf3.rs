//! AMF3: the ActionScript 3 encoding, with variable-length integers (U29) and reference
//! tables for strings, complex values and object traits.

use std::collections::HashMap;

use super::reader::{Reader, Table};
use super::value::{Array, Date, Dictionary, Object, ObjectVector, Properties, Value, Vector};
use super::AmfError;

/// AMF3 type markers (AMF3 specification §3.1).
mod marker {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOCUMENT: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const ARRAY: u8 = 0x09;
    pub const OBJECT: u8 = 0x0a;
    pub const XML: u8 = 0x0b;
    pub const BYTE_ARRAY: u8 = 0x0c;
    pub const VECTOR_INT: u8 = 0x0d;
    pub const VECTOR_UINT: u8 = 0x0e;
    pub const VECTOR_DOUBLE: u8 = 0x0f;
    pub const VECTOR_OBJECT: u8 = 0x10;
    pub const DICTIONARY: u8 = 0x11;
}

/// Smallest integer AMF3 sends as an integer (29-bit two's complement).
pub const AMF3_INTEGER_MIN: i32 = -(1 << 28);
/// Largest integer AMF3 sends as an integer; larger ones go out as doubles.
pub const AMF3_INTEGER_MAX: i32 = (1 << 28) - 1;

/// Largest U29: lengths, counts and reference indices share its 29 bits with flag bits.
const U29_MAX: u32 = (1 << 29) - 1;

/// Low bit of most U29 headers: 1 = the value follows inline, 0 = a reference index.
const INLINE: u32 = 1;

/// An object's traits as a message's traits table keeps them.
pub(super) struct Traits {
    class_name: String,
    sealed_names: Vec<String>,
    dynamic: bool,
    externalizable: bool,
    /// What copying the names into an object costs.
    cost: usize,
}

/// Decodes one AMF3 value, resolving string, object and traits references against the
/// reader's AMF3 tables (one set per message).
pub fn decode_amf3(reader: &mut Reader<'_>) -> Result<Value, AmfError> {
    let depth = reader.depth();
    let result = value(reader);
    reader.reset_depth(depth);
    result
}

pub(super) fn value(reader: &mut Reader<'_>) -> Result<Value, AmfError> {
    let at = reader.position();
    let marker = reader.u8()?;
    reader.charge_value()?;
    Ok(match marker {
        marker::UNDEFINED => Value::Undefined,
        marker::NULL => Value::Null,
        marker::FALSE => Value::Boolean(false),
        marker::TRUE => Value::Boolean(true),
        marker::INTEGER => Value::Integer(integer_from_u29(u29(reader)?)),
        marker::DOUBLE => Value::Number(reader.f64()?),
        marker::STRING => Value::String(string(reader)?),
        marker::XML_DOCUMENT => complex(reader, |reader, len| {
            Ok(Value::XmlDocument(reader.utf8(len)?))
        })?,
        marker::XML => complex(reader, |reader, len| Ok(Value::Xml(reader.utf8(len)?)))?,
        marker::BYTE_ARRAY => complex(reader, |reader, len| {
            Ok(Value::ByteArray(reader.bytes(len)?))
        })?,
        // A date's header carries no length: its bits above the inline flag are unused.
        marker::DATE => complex(reader, |reader, _| {
            Ok(Value::Date(Date {
                millis: reader.f64()?,
                timezone: 0,
            }))
        })?,
        marker::ARRAY => complex(reader, array)?,
        marker::OBJECT => complex(reader, object)?,
        marker::VECTOR_INT => complex(reader, |reader, count| {
            let (fixed, items) = numbers(reader, count, 4, Reader::i32)?;
            Ok(Value::VectorInt(Vector { fixed, items }))
        })?,
        marker::VECTOR_UINT => complex(reader, |reader, count| {
            let (fixed, items) = numbers(reader, count, 4, Reader::u32)?;
            Ok(Value::VectorUint(Vector { fixed, items }))
        })?,
        marker::VECTOR_DOUBLE => complex(reader, |reader, count| {
            let (fixed, items) = numbers(reader, count, 8, Reader::f64)?;
            Ok(Value::VectorDouble(Vector { fixed, items }))
        })?,
        marker::VECTOR_OBJECT => complex(reader, |reader, count| {
            let fixed = reader.u8()? != 0;
            let type_name = string(reader)?;
            let count = reader.count(count, 1)?;
            let mut items = Vec::with_capacity(Reader::capacity(count));
            for _ in 0..count {
                items.push(value(reader)?);
            }
            Ok(Value::VectorObject(ObjectVector {
                fixed,
                type_name,
                items,
            }))
        })?,
        marker::DICTIONARY => complex(reader, |reader, count| {
            let weak_keys = reader.u8()? != 0;
            let count = reader.count(count, 2)?;
            let mut entries = Vec::with_capacity(Reader::capacity(count));
            for _ in 0..count {
                let key = value(reader)?;
                entries.push((key, value(reader)?));
            }
            Ok(Value::Dictionary(Dictionary { weak_keys, entries }))
        })?,
        _ => return Err(AmfError::UnknownAmf3Marker { at, marker }),
    })
}

/// A U29: up to four bytes, seven bits from each of the first three (high bit = more
/// follow), all eight from the fourth.
fn u29(reader: &mut Reader<'_>) -> Result<u32, AmfError> {
    let mut value = 0;
    for _ in 0..3 {
        let byte = reader.u8()?;
        value = (value << 7) | u32::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Ok((value << 8) | u32::from(reader.u8()?))
}

fn integer_from_u29(bits: u32) -> i32 {
    // Sign-extend bit 28: shift it up to bit 31 and arithmetic-shift back.
    ((bits << 3) as i32) >> 3
}

/// A string in the string table's terms: inline (and remembered unless empty) or a
/// reference to an earlier one. Values, names and class names all share this table.
fn string(reader: &mut Reader<'_>) -> Result<String, AmfError> {
    let at = reader.position();
    let header = u29(reader)?;
    let field = (header >> 1) as usize;
    if header & INLINE == 0 {
        let known = reader.amf3_strings.len();
        let len = match reader.amf3_strings.get(field) {
            Some(text) => text.len(),
            None => {
                return Err(AmfError::BadReference {
                    at,
                    table: "AMF3 string",
                    index: field,
                    known,
                })
            }
        };
        reader.charge(len)?;
        return Ok(reader.amf3_strings[field].clone());
    }
    if field == 0 {
        return Ok(String::new());
    }
    let text = reader.utf8(field)?;
    reader.spend(field)?;
    reader.amf3_strings.push(text.clone());
    Ok(text)
}

/// A complex value: a reference to an earlier one, or one built by `body` from the
/// header's count or length field, numbered in the object table as it begins.
fn complex(
    reader: &mut Reader<'_>,
    body: impl FnOnce(&mut Reader<'_>, usize) -> Result<Value, AmfError>,
) -> Result<Value, AmfError> {
    let at = reader.position();
    let header = u29(reader)?;
    let field = (header >> 1) as usize;
    if header & INLINE == 0 {
        return reader.resolve(Table::Amf3Objects, field, at);
    }
    let registration = reader.register(Table::Amf3Objects);
    reader.enter()?;
    let value = body(reader, field)?;
    reader.leave();
    reader.complete(Table::Amf3Objects, registration, &value)?;
    Ok(value)
}

/// Name–value pairs up to the empty name.
fn associative(reader: &mut Reader<'_>) -> Result<Properties, AmfError> {
    let mut properties = Vec::new();
    loop {
        let name = string(reader)?;
        if name.is_empty() {
            return Ok(properties);
        }
        properties.push((name, value(reader)?));
    }
}

fn array(reader: &mut Reader<'_>, dense_count: usize) -> Result<Value, AmfError> {
    let associative = associative(reader)?;
    let dense_count = reader.count(dense_count, 1)?;
    let mut dense = Vec::with_capacity(Reader::capacity(dense_count));
    for _ in 0..dense_count {
        dense.push(value(reader)?);
    }
    Ok(Value::Array(Array { dense, associative }))
}

/// An object after its U29O-ref inline bit: `flags` holds the remaining header bits.
fn object(reader: &mut Reader<'_>, flags: usize) -> Result<Value, AmfError> {
    let at = reader.position();
    let traits_index = if flags & 1 == 0 {
        // U29O-traits-ref: the traits of an earlier object.
        let index = flags >> 1;
        let known = reader.amf3_traits.len();
        let cost = match reader.amf3_traits.get(index) {
            Some(traits) => traits.cost,
            None => {
                return Err(AmfError::BadReference {
                    at,
                    table: "AMF3 traits",
                    index,
                    known,
                })
            }
        };
        reader.charge(cost)?;
        index
    } else {
        let externalizable = flags & 0b10 != 0;
        let dynamic = flags & 0b100 != 0;
        let sealed_count = if externalizable { 0 } else { flags >> 3 };
        let mark = reader.value_cost();
        let class_name = string(reader)?;
        let sealed_count = reader.count(sealed_count, 1)?;
        let mut sealed_names = Vec::with_capacity(Reader::capacity(sealed_count));
        for _ in 0..sealed_count {
            sealed_names.push(string(reader)?);
            reader.charge_value()?;
        }
        let cost = reader.value_cost() - mark;
        reader.spend(cost)?;
        reader.amf3_traits.push(Traits {
            class_name,
            sealed_names,
            dynamic,
            externalizable,
            cost,
        });
        reader.amf3_traits.len() - 1
    };
    let traits = &reader.amf3_traits[traits_index];
    if traits.externalizable {
        return Err(AmfError::Externalizable {
            at,
            class_name: traits.class_name.clone(),
        });
    }
    let class_name = traits.class_name.clone();
    let sealed_names = traits.sealed_names.clone();
    let dynamic = traits.dynamic;
    let mut sealed = Vec::with_capacity(sealed_names.len());
    for name in sealed_names {
        sealed.push((name, value(reader)?));
    }
    let dynamic = if dynamic {
        Some(associative(reader)?)
    } else {
        None
    };
    Ok(Value::Object(Object {
        class_name,
        sealed,
        dynamic,
    }))
}

/// The fixed flag and `count` numbers of `width` bytes each.
fn numbers<'a, T>(
    reader: &mut Reader<'a>,
    count: usize,
    width: usize,
    read: fn(&mut Reader<'a>) -> Result<T, AmfError>,
) -> Result<(bool, Vec<T>), AmfError> {
    let fixed = reader.u8()? != 0;
    let count = reader.count(count, width)?;
    reader.charge(count * width)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(read(reader)?);
    }
    Ok((fixed, items))
}

/// Appends the AMF3 encoding of `value` with fresh reference tables. On error `out` is
/// left as it was. See [`Amf3Encoder`] for how values map.
pub fn encode_amf3(value: &Value, out: &mut Vec<u8>) -> Result<(), AmfError> {
    Amf3Encoder::new().encode(value, out)
}

/// An AMF3 encoder for one message: strings and traits it has sent once are referenced
/// after that, as the receiver's tables expect.
///
/// AMF0-only shapes map to their AMF3 counterparts: a strict array is an array with only a
/// dense part, an ECMA array one with only an associative part (its count hint is not
/// sent), a date loses its timezone field. Integers outside the 29-bit range are sent as
/// doubles. Complex values are always sent in full, never as object references.
#[derive(Debug, Default)]
pub struct Amf3Encoder {
    strings: HashMap<String, u32>,
    traits: HashMap<TraitsKey, u32>,
}

/// What makes two objects' traits the same.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TraitsKey {
    class_name: String,
    sealed_names: Vec<String>,
    dynamic: bool,
}

impl Amf3Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one value. On error `out` is left as it was (the tables may remember
    /// strings of the failed value, so start a new encoder for a new message).
    pub fn encode(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), AmfError> {
        let start = out.len();
        let result = self.write(value, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Appends one value, leaving partial output on error.
    pub(super) fn write(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), AmfError> {
        match value {
            Value::Undefined => out.push(marker::UNDEFINED),
            Value::Null => out.push(marker::NULL),
            Value::Boolean(false) => out.push(marker::FALSE),
            Value::Boolean(true) => out.push(marker::TRUE),
            Value::Integer(integer) if (AMF3_INTEGER_MIN..=AMF3_INTEGER_MAX).contains(integer) => {
                out.push(marker::INTEGER);
                // Two's complement truncated to 29 bits.
                write_u29(*integer as u32 & U29_MAX, out);
            }
            Value::Integer(integer) => write_double(f64::from(*integer), out),
            Value::Number(number) => write_double(*number, out),
            Value::String(text) => {
                out.push(marker::STRING);
                self.string(text, out)?;
            }
            Value::XmlDocument(text) => {
                out.push(marker::XML_DOCUMENT);
                write_inline_header("XML document", text.len(), out)?;
                out.extend_from_slice(text.as_bytes());
            }
            Value::Xml(text) => {
                out.push(marker::XML);
                write_inline_header("XML", text.len(), out)?;
                out.extend_from_slice(text.as_bytes());
            }
            Value::ByteArray(bytes) => {
                out.push(marker::BYTE_ARRAY);
                write_inline_header("ByteArray", bytes.len(), out)?;
                out.extend_from_slice(bytes);
            }
            Value::Date(date) => {
                out.push(marker::DATE);
                write_u29(INLINE, out);
                out.extend_from_slice(&date.millis.to_be_bytes());
            }
            Value::StrictArray(dense) => self.array(dense, &[], out)?,
            Value::EcmaArray(array) => self.array(&[], &array.entries, out)?,
            Value::Array(array) => self.array(&array.dense, &array.associative, out)?,
            Value::Object(object) => self.object(object, out)?,
            Value::VectorInt(vector) => {
                write_vector_header(marker::VECTOR_INT, vector.items.len(), vector.fixed, out)?;
                for item in &vector.items {
                    out.extend_from_slice(&item.to_be_bytes());
                }
            }
            Value::VectorUint(vector) => {
                write_vector_header(marker::VECTOR_UINT, vector.items.len(), vector.fixed, out)?;
                for item in &vector.items {
                    out.extend_from_slice(&item.to_be_bytes());
                }
            }
            Value::VectorDouble(vector) => {
                write_vector_header(marker::VECTOR_DOUBLE, vector.items.len(), vector.fixed, out)?;
                for item in &vector.items {
                    out.extend_from_slice(&item.to_be_bytes());
                }
            }
            Value::VectorObject(vector) => {
                write_vector_header(marker::VECTOR_OBJECT, vector.items.len(), vector.fixed, out)?;
                self.string(&vector.type_name, out)?;
                for item in &vector.items {
                    self.write(item, out)?;
                }
            }
            Value::Dictionary(dictionary) => {
                out.push(marker::DICTIONARY);
                write_inline_header("Dictionary", dictionary.entries.len(), out)?;
                out.push(u8::from(dictionary.weak_keys));
                for (key, value) in &dictionary.entries {
                    self.write(key, out)?;
                    self.write(value, out)?;
                }
            }
        }
        Ok(())
    }

    /// A string by reference if sent before; the empty string is always inline.
    fn string(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), AmfError> {
        if let Some(&index) = self.strings.get(text) {
            write_u29(index << 1, out);
            return Ok(());
        }
        write_inline_header("string", text.len(), out)?;
        out.extend_from_slice(text.as_bytes());
        if !text.is_empty() {
            let index = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
            // Past the largest index a reference can carry, strings are simply sent again.
            if index <= U29_MAX >> 1 {
                self.strings.insert(text.to_owned(), index);
            }
        }
        Ok(())
    }

    fn array(
        &mut self,
        dense: &[Value],
        associative: &[(String, Value)],
        out: &mut Vec<u8>,
    ) -> Result<(), AmfError> {
        out.push(marker::ARRAY);
        write_inline_header("array", dense.len(), out)?;
        self.associative(associative, "array key", out)?;
        for item in dense {
            self.write(item, out)?;
        }
        Ok(())
    }

    fn associative(
        &mut self,
        properties: &[(String, Value)],
        what: &'static str,
        out: &mut Vec<u8>,
    ) -> Result<(), AmfError> {
        for (name, value) in properties {
            if name.is_empty() {
                return Err(AmfError::EmptyName { what });
            }
            self.string(name, out)?;
            self.write(value, out)?;
        }
        self.string("", out)
    }

    fn object(&mut self, object: &Object, out: &mut Vec<u8>) -> Result<(), AmfError> {
        out.push(marker::OBJECT);
        let key = TraitsKey {
            class_name: object.class_name.clone(),
            sealed_names: object.sealed.iter().map(|(name, _)| name.clone()).collect(),
            dynamic: object.dynamic.is_some(),
        };
        if let Some(&index) = self.traits.get(&key) {
            // U29O-traits-ref: object inline, traits by reference.
            write_u29((index << 2) | 0b01, out);
        } else {
            let sealed_count = object.sealed.len();
            if sealed_count > (U29_MAX >> 4) as usize {
                return Err(AmfError::TooLong {
                    what: "sealed member list",
                    len: sealed_count,
                    limit: (U29_MAX >> 4) as usize,
                });
            }
            // U29O-traits: object inline, traits inline, not externalizable.
            let dynamic_flag = if key.dynamic { 0b1000 } else { 0 };
            write_u29(((sealed_count as u32) << 4) | dynamic_flag | 0b011, out);
            self.string(&object.class_name, out)?;
            for name in &key.sealed_names {
                self.string(name, out)?;
            }
            let index = u32::try_from(self.traits.len()).unwrap_or(u32::MAX);
            if index <= U29_MAX >> 2 {
                self.traits.insert(key, index);
            }
        }
        for (_, value) in &object.sealed {
            self.write(value, out)?;
        }
        if let Some(dynamic) = &object.dynamic {
            self.associative(dynamic, "dynamic member name", out)?;
        }
        Ok(())
    }
}

fn write_double(number: f64, out: &mut Vec<u8>) {
    out.push(marker::DOUBLE);
    out.extend_from_slice(&number.to_be_bytes());
}

/// `value` must be at most [`U29_MAX`].
fn write_u29(value: u32, out: &mut Vec<u8>) {
    debug_assert!(value <= U29_MAX);
    if value < 1 << 7 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&[(value >> 7) as u8 | 0x80, value as u8 & 0x7f]);
    } else if value < 1 << 21 {
        out.extend_from_slice(&[
            (value >> 14) as u8 | 0x80,
            (value >> 7) as u8 | 0x80,
            value as u8 & 0x7f,
        ]);
    } else {
        out.extend_from_slice(&[
            (value >> 22) as u8 | 0x80,
            (value >> 15) as u8 | 0x80,
            (value >> 8) as u8 | 0x80,
            value as u8,
        ]);
    }
}

/// The U29 header of an inline value: `len << 1 | 1`.
fn write_inline_header(what: &'static str, len: usize, out: &mut Vec<u8>) -> Result<(), AmfError> {
    let limit = (U29_MAX >> 1) as usize;
    if len > limit {
        return Err(AmfError::TooLong { what, len, limit });
    }
    write_u29(((len as u32) << 1) | INLINE, out);
    Ok(())
}

fn write_vector_header(
    marker: u8,
    len: usize,
    fixed: bool,
    out: &mut Vec<u8>,
) -> Result<(), AmfError> {
    out.push(marker);
    write_inline_header("vector", len, out)?;
    out.push(u8::from(fixed));
    Ok(())
}
