//! Property tests for the AMF codec: values of every shape round-trip through AMF0 and
//! AMF3 (alone and as multi-value messages sharing reference tables), repeated strings
//! are referenced, and no input, random or mangled, makes a decoder panic.

use proptest::collection::vec;
use proptest::prelude::*;

use rtmfp_edge::flash::amf::{
    decode_amf0, decode_amf0_sequence, decode_amf3, decode_amf3_sequence, encode_amf0,
    encode_amf0_sequence, encode_amf3, encode_amf3_sequence, Array, Date, Dictionary, EcmaArray,
    Object, ObjectVector, Properties, Reader, Value, Vector, AMF3_INTEGER_MAX, AMF3_INTEGER_MIN,
};

const ROUND_TRIP_CASES: u32 = 512;
const NO_PANIC_CASES: u32 = 4000;

// ---------------------------------------------------------------------------------------
// Strategies. Each encoding gets values in the shapes its decoder produces, so a round
// trip must give back exactly what went in.

/// Any double but NaN (which is never equal to itself; its bits are checked separately).
fn number() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN", |n| !n.is_nan())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{0,6}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

/// AMF3 uses the empty name to end a list of dynamic members or associative entries.
fn member_name() -> impl Strategy<Value = String> {
    text().prop_filter("empty name", |name| !name.is_empty())
}

fn properties(
    name: impl Strategy<Value = String>,
    value: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Properties> {
    vec((name, value), 0..5)
}

fn amf3_integer() -> impl Strategy<Value = i32> {
    prop_oneof![AMF3_INTEGER_MIN..=AMF3_INTEGER_MAX, -300..300i32]
}

/// AMF3 values with no children, as the AMF3 decoder produces them.
fn amf3_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Undefined),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        amf3_integer().prop_map(Value::Integer),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
        number().prop_map(|millis| Value::Date(Date {
            millis,
            timezone: 0
        })),
        text().prop_map(Value::XmlDocument),
        text().prop_map(Value::Xml),
        vec(any::<u8>(), 0..8).prop_map(Value::ByteArray),
        (any::<bool>(), vec(any::<i32>(), 0..4))
            .prop_map(|(fixed, items)| Value::VectorInt(Vector { fixed, items })),
        (any::<bool>(), vec(any::<u32>(), 0..4))
            .prop_map(|(fixed, items)| Value::VectorUint(Vector { fixed, items })),
        (any::<bool>(), vec(number(), 0..4))
            .prop_map(|(fixed, items)| Value::VectorDouble(Vector { fixed, items })),
    ]
}

/// AMF3 values whose own type AMF0 lacks, so AMF0 sends them behind the switch marker.
fn amf3_only(inner: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        amf3_integer().prop_map(Value::Integer),
        text().prop_map(Value::Xml),
        vec(any::<u8>(), 0..8).prop_map(Value::ByteArray),
        (
            vec(inner.clone(), 0..4),
            properties(member_name(), inner.clone())
        )
            .prop_map(|(dense, associative)| Value::Array(Array { dense, associative })),
        (any::<bool>(), text(), vec(inner.clone(), 0..4)).prop_map(|(fixed, type_name, items)| {
            Value::VectorObject(ObjectVector {
                fixed,
                type_name,
                items,
            })
        }),
        (any::<bool>(), vec((inner.clone(), inner), 0..4))
            .prop_map(|(weak_keys, entries)| Value::Dictionary(Dictionary { weak_keys, entries })),
        (any::<bool>(), vec(any::<i32>(), 0..4))
            .prop_map(|(fixed, items)| Value::VectorInt(Vector { fixed, items })),
    ]
}

fn amf3_value() -> BoxedStrategy<Value> {
    amf3_leaf()
        .prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                amf3_only(inner.clone()),
                (
                    text(),
                    properties(text(), inner.clone()),
                    proptest::option::of(properties(member_name(), inner)),
                )
                    .prop_map(|(class_name, sealed, dynamic)| Value::Object(
                        Object {
                            class_name,
                            sealed,
                            dynamic,
                        }
                    )),
            ]
        })
        .boxed()
}

/// AMF0 values with no children.
fn amf0_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Undefined),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
        (number(), any::<i16>())
            .prop_map(|(millis, timezone)| Value::Date(Date { millis, timezone })),
        text().prop_map(Value::XmlDocument),
    ]
}

fn amf0_value() -> BoxedStrategy<Value> {
    amf0_leaf()
        .prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                (text(), properties(text(), inner.clone())).prop_map(|(class_name, members)| {
                    Value::Object(Object {
                        class_name,
                        sealed: Vec::new(),
                        dynamic: Some(members),
                    })
                }),
                (any::<u32>(), properties(text(), inner.clone())).prop_map(
                    |(count_hint, entries)| Value::EcmaArray(EcmaArray {
                        count_hint,
                        entries
                    })
                ),
                vec(inner, 0..5).prop_map(Value::StrictArray),
                amf3_only(amf3_value()),
            ]
        })
        .boxed()
}

fn encoded_amf0(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf0(value, &mut out).expect("generated values are encodable");
    out
}

fn encoded_amf3(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf3(value, &mut out).expect("generated values are encodable");
    out
}

/// Any byte string, biased towards AMF-looking prefixes so decoding gets past the marker.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(
            prop_oneof![0u8..0x14, Just(0xff), Just(0x80), any::<u8>()],
            0..256
        ),
    ]
}

/// The encoded-length of a U29 below 2^21 (the model below only needs small ones).
fn u29_len(value: usize) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        _ => 3,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ROUND_TRIP_CASES))]

    #[test]
    fn amf0_values_round_trip(value in amf0_value()) {
        let bytes = encoded_amf0(&value);
        let mut reader = Reader::new(&bytes);
        let decoded = decode_amf0(&mut reader).unwrap();
        prop_assert!(reader.is_empty());
        prop_assert_eq!(&decoded, &value);
        prop_assert_eq!(encoded_amf0(&decoded), bytes);
    }

    #[test]
    fn amf3_values_round_trip(value in amf3_value()) {
        let bytes = encoded_amf3(&value);
        let mut reader = Reader::new(&bytes);
        let decoded = decode_amf3(&mut reader).unwrap();
        prop_assert!(reader.is_empty());
        prop_assert_eq!(&decoded, &value);
        prop_assert_eq!(encoded_amf3(&decoded), bytes);
    }

    #[test]
    fn amf0_messages_round_trip(values in vec(amf0_value(), 0..5)) {
        let mut bytes = Vec::new();
        encode_amf0_sequence(&values, &mut bytes).unwrap();
        prop_assert_eq!(decode_amf0_sequence(&bytes).unwrap(), values);
    }

    /// Later values reference strings and traits of earlier ones.
    #[test]
    fn amf3_messages_round_trip_with_shared_tables(values in vec(amf3_value(), 0..5)) {
        let mut bytes = Vec::new();
        encode_amf3_sequence(&values, &mut bytes).unwrap();
        prop_assert_eq!(decode_amf3_sequence(&bytes).unwrap(), values);
    }

    #[test]
    fn every_double_keeps_its_bits(bits in any::<u64>()) {
        let value = Value::Number(f64::from_bits(bits));
        for (encoded, decoded) in [
            (encoded_amf0(&value), decode_amf0_sequence(&encoded_amf0(&value))),
            (encoded_amf3(&value), decode_amf3_sequence(&encoded_amf3(&value))),
        ] {
            let decoded = decoded.unwrap();
            prop_assert_eq!(decoded.len(), 1);
            prop_assert_eq!(decoded[0].as_f64().map(f64::to_bits), Some(bits), "{:02x?}", encoded);
        }
    }

    #[test]
    fn amf3_integers_outside_29_bits_arrive_as_the_same_number(integer in any::<i32>()) {
        let decoded = decode_amf3_sequence(&encoded_amf3(&Value::Integer(integer))).unwrap();
        let expected = if (AMF3_INTEGER_MIN..=AMF3_INTEGER_MAX).contains(&integer) {
            Value::Integer(integer)
        } else {
            Value::Number(f64::from(integer))
        };
        prop_assert_eq!(&decoded[0], &expected);
    }

    #[test]
    fn amf3_sends_each_distinct_string_once(
        strings in vec(prop_oneof![Just(""), Just("a"), Just("bc"), Just("def")], 0..40)
    ) {
        let values: Vec<Value> = strings.iter().map(|s| Value::from(*s)).collect();
        let mut bytes = Vec::new();
        encode_amf3_sequence(&values, &mut bytes).unwrap();

        // Model: marker, then "" inline, a new string inline (and numbered), a seen one
        // by its index.
        let mut table: Vec<&str> = Vec::new();
        let mut expected_len = 0;
        for s in &strings {
            expected_len += 1;
            if s.is_empty() {
                expected_len += 1;
            } else if let Some(index) = table.iter().position(|seen| seen == s) {
                expected_len += u29_len(index << 1);
            } else {
                expected_len += u29_len((s.len() << 1) | 1) + s.len();
                table.push(s);
            }
        }
        prop_assert_eq!(bytes.len(), expected_len);
        prop_assert_eq!(decode_amf3_sequence(&bytes).unwrap(), values);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(NO_PANIC_CASES))]

    #[test]
    fn random_bytes_never_panic_the_amf0_decoder(bytes in hostile_bytes()) {
        if let Ok(values) = decode_amf0_sequence(&bytes) {
            // Whatever decodes can be sent again (or refused with an error).
            let _ = encode_amf0_sequence(&values, &mut Vec::new());
        }
    }

    /// What the AMF3 decoder produces, the encoder reproduces stably.
    #[test]
    fn random_bytes_never_panic_the_amf3_decoder(bytes in hostile_bytes()) {
        if let Ok(values) = decode_amf3_sequence(&bytes) {
            let mut first = Vec::new();
            encode_amf3_sequence(&values, &mut first).unwrap();
            let again = decode_amf3_sequence(&first).unwrap();
            let mut second = Vec::new();
            encode_amf3_sequence(&again, &mut second).unwrap();
            prop_assert_eq!(first, second);
        }
    }

    #[test]
    fn mangled_encodings_never_panic_either_decoder(
        value in amf0_value(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        // AMF3 refuses AMF0's empty member names; mangle whichever encodings exist.
        let mut amf3 = Vec::new();
        let encodings = match encode_amf3(&value, &mut amf3) {
            Ok(()) => vec![encoded_amf0(&value), amf3],
            Err(_) => vec![encoded_amf0(&value)],
        };
        for mut bytes in encodings {
            let _ = decode_amf0_sequence(&bytes[..cut.index(bytes.len())]);
            let _ = decode_amf3_sequence(&bytes[..cut.index(bytes.len())]);
            for (at, byte) in &edits {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
            let _ = decode_amf0_sequence(&bytes);
            let _ = decode_amf3_sequence(&bytes);
        }
    }
}
