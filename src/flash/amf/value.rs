//! The decoded form of an AMF value, shared by the AMF0 and AMF3 codecs.
//!
//! One type serves both encodings. Variants that only one encoding can express say so; the
//! other encoder maps them as documented on [`crate::flash::amf::encode_amf0`] and
//! [`crate::flash::amf::encode_amf3`].

/// Ordered `name → value` pairs: AMF keeps the sender's property order and so do we.
pub type Properties = Vec<(String, Value)>;

/// One AMF value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// AMF0 `undefined` (0x06, also what the AMF0 `unsupported` marker decodes to), AMF3 0x00.
    Undefined,
    /// AMF0 0x05, AMF3 0x01.
    Null,
    /// AMF0 0x01; AMF3 `false` (0x02) and `true` (0x03).
    Boolean(bool),
    /// IEEE 754 double: AMF0 number (0x00), AMF3 double (0x05).
    Number(f64),
    /// AMF3 integer (0x04): 29-bit signed on the wire. Out of that range it is sent as a
    /// double, and AMF0 sends it as a number.
    Integer(i32),
    /// UTF-8 text: AMF0 string (0x02) or long string (0x0c, chosen by length), AMF3 0x06.
    String(String),
    /// Milliseconds since the Unix epoch, UTC, plus the AMF0 timezone field (AMF3 has none).
    Date(Date),
    /// AMF0 XML document (0x0f), AMF3 legacy XMLDocument (0x07).
    XmlDocument(String),
    /// AMF3 E4X XML (0x0b).
    Xml(String),
    /// AMF0 anonymous (0x03) or typed (0x10) object; AMF3 object (0x0a).
    Object(Object),
    /// AMF0 ECMA array (0x08): an associative array with its count hint.
    EcmaArray(EcmaArray),
    /// AMF0 strict array (0x0a): dense, zero-based.
    StrictArray(Vec<Value>),
    /// AMF3 array (0x09): a dense part and an associative part.
    Array(Array),
    /// AMF3 ByteArray (0x0c).
    ByteArray(Vec<u8>),
    /// AMF3 `Vector.<int>` (0x0d).
    VectorInt(Vector<i32>),
    /// AMF3 `Vector.<uint>` (0x0e).
    VectorUint(Vector<u32>),
    /// AMF3 `Vector.<Number>` (0x0f).
    VectorDouble(Vector<f64>),
    /// AMF3 `Vector.<T>` of objects (0x10).
    VectorObject(ObjectVector),
    /// AMF3 Dictionary (0x11).
    Dictionary(Dictionary),
}

/// An AMF date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Date {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub millis: f64,
    /// AMF0 timezone offset in minutes; the AMF0 spec says to send 0 and to ignore it on
    /// receipt, but we keep what came so a message re-encodes byte for byte.
    pub timezone: i16,
}

/// An object: anonymous when `class_name` is empty.
///
/// AMF3 splits members into the sealed ones its traits name and, for a dynamic object,
/// the dynamic ones after them. AMF0 has no such split: its properties are all `dynamic`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    /// Empty for an anonymous object.
    pub class_name: String,
    /// AMF3 sealed members, in trait order (the traits list their names).
    pub sealed: Properties,
    /// Dynamic members; `None` for an AMF3 object whose traits are not dynamic.
    pub dynamic: Option<Properties>,
}

/// An AMF0 ECMA array. The count is only a hint on the wire (the entries run until the
/// object end marker), so it is kept as sent rather than recomputed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EcmaArray {
    pub count_hint: u32,
    pub entries: Properties,
}

/// An AMF3 array: `dense` holds indices `0..n`, `associative` every other key, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Array {
    pub dense: Vec<Value>,
    pub associative: Properties,
}

/// An AMF3 vector of numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vector<T> {
    /// A fixed-length vector refuses to grow on the ActionScript side.
    pub fixed: bool,
    pub items: Vec<T>,
}

/// An AMF3 vector of objects, with the element type's class name (empty for `Object`,
/// `"*"` for untyped).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectVector {
    pub fixed: bool,
    pub type_name: String,
    pub items: Vec<Value>,
}

/// An AMF3 Dictionary: any value may be a key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dictionary {
    pub weak_keys: bool,
    pub entries: Vec<(Value, Value)>,
}

impl Object {
    /// An anonymous object with these properties, in this order.
    pub fn anonymous<K: Into<String>>(properties: impl IntoIterator<Item = (K, Value)>) -> Self {
        Object {
            class_name: String::new(),
            sealed: Vec::new(),
            dynamic: Some(collect_properties(properties)),
        }
    }

    /// Every member, sealed ones first, in wire order.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.sealed
            .iter()
            .chain(self.dynamic.iter().flatten())
            .map(|(name, value)| (name.as_str(), value))
    }

    /// The first member with this name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// Replaces the value of an existing member, or appends a dynamic one (making the
    /// object dynamic if it was not).
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        let name = name.into();
        let existing = self
            .sealed
            .iter_mut()
            .chain(self.dynamic.iter_mut().flatten())
            .find(|(key, _)| *key == name);
        match existing {
            Some((_, slot)) => *slot = value,
            None => self
                .dynamic
                .get_or_insert_with(Vec::new)
                .push((name, value)),
        }
    }
}

impl Value {
    /// An anonymous object, the shape of RTMP command objects and info objects:
    /// `Value::object([("code", "NetStream.Play.Start".into()), ("level", "status".into())])`.
    pub fn object<K: Into<String>>(properties: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Object(Object::anonymous(properties))
    }

    /// An object of a registered class (AMF0 typed object, AMF3 dynamic object with a
    /// class name).
    pub fn typed_object<K: Into<String>>(
        class_name: impl Into<String>,
        properties: impl IntoIterator<Item = (K, Value)>,
    ) -> Self {
        Value::Object(Object {
            class_name: class_name.into(),
            ..Object::anonymous(properties)
        })
    }

    /// An ECMA array whose count hint is its number of entries.
    pub fn ecma_array<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Self {
        let entries = collect_properties(entries);
        Value::EcmaArray(EcmaArray {
            count_hint: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            entries,
        })
    }

    /// A named member of an object, ECMA array or the associative part of an AMF3 array.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(object) => object.get(name),
            Value::EcmaArray(array) => find(&array.entries, name),
            Value::Array(array) => find(&array.associative, name),
            _ => None,
        }
    }

    /// Every named member, in wire order (empty for values without named members).
    pub fn properties(&self) -> Box<dyn Iterator<Item = (&str, &Value)> + '_> {
        match self {
            Value::Object(object) => Box::new(object.properties()),
            Value::EcmaArray(array) => Box::new(pairs(&array.entries)),
            Value::Array(array) => Box::new(pairs(&array.associative)),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// A number, whichever encoding carried it (AMF3 integers included).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(number) => Some(*number),
            Value::Integer(integer) => Some(f64::from(*integer)),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(flag) => Some(*flag),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The elements of a strict array or the dense part of an AMF3 array.
    pub fn as_slice(&self) -> Option<&[Value]> {
        match self {
            Value::StrictArray(items) => Some(items),
            Value::Array(array) => Some(&array.dense),
            _ => None,
        }
    }

    /// `null` and `undefined`: RTMP commands put one of them where there is no command
    /// object, and senders disagree on which.
    pub fn is_null_or_undefined(&self) -> bool {
        matches!(self, Value::Null | Value::Undefined)
    }
}

fn collect_properties<K: Into<String>>(
    properties: impl IntoIterator<Item = (K, Value)>,
) -> Properties {
    properties
        .into_iter()
        .map(|(name, value)| (name.into(), value))
        .collect()
}

fn find<'v>(properties: &'v Properties, name: &str) -> Option<&'v Value> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn pairs(properties: &Properties) -> impl Iterator<Item = (&str, &Value)> {
    properties
        .iter()
        .map(|(name, value)| (name.as_str(), value))
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::String(text)
    }
}

impl From<f64> for Value {
    fn from(number: f64) -> Self {
        Value::Number(number)
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Value::Boolean(flag)
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        Value::Object(object)
    }
}

impl From<Date> for Value {
    fn from(date: Date) -> Self {
        Value::Date(date)
    }
}

impl From<Vec<Value>> for Value {
    /// A strict array (AMF0) / dense array (AMF3).
    fn from(items: Vec<Value>) -> Self {
        Value::StrictArray(items)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is `null`.
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}
