//! Byte vectors written by hand from the AMF0 and AMF3 specifications, and the decoder's
//! behaviour on malformed and hostile input.

use super::*;

/// Bytes from a hex string with any whitespace: `"00 3f f0"`.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn amf0(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf0(value, &mut out).unwrap();
    out
}

fn amf3(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf3(value, &mut out).unwrap();
    out
}

fn from_amf0(bytes: &[u8]) -> Result<Value, AmfError> {
    let mut reader = Reader::new(bytes);
    let value = decode_amf0(&mut reader)?;
    assert!(reader.is_empty(), "{} bytes left over", reader.remaining());
    Ok(value)
}

fn from_amf3(bytes: &[u8]) -> Result<Value, AmfError> {
    let mut reader = Reader::new(bytes);
    let value = decode_amf3(&mut reader)?;
    assert!(reader.is_empty(), "{} bytes left over", reader.remaining());
    Ok(value)
}

/// Encodes to exactly `bytes`, and `bytes` decode to exactly `value`.
fn assert_amf0(value: Value, bytes: &str) {
    let bytes = hex(bytes);
    assert_eq!(amf0(&value), bytes, "encoding {value:?}");
    assert_eq!(from_amf0(&bytes).unwrap(), value);
}

fn assert_amf3(value: Value, bytes: &str) {
    let bytes = hex(bytes);
    assert_eq!(amf3(&value), bytes, "encoding {value:?}");
    assert_eq!(from_amf3(&bytes).unwrap(), value);
}

fn props(pairs: &[(&str, Value)]) -> Properties {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// AMF0 types

#[test]
fn amf0_scalars_have_the_spec_encodings() {
    assert_amf0(Value::Number(1.0), "00 3f f0 00 00 00 00 00 00");
    assert_amf0(Value::Number(-2.5), "00 c0 04 00 00 00 00 00 00");
    assert_amf0(Value::Boolean(true), "01 01");
    assert_amf0(Value::Boolean(false), "01 00");
    assert_amf0(Value::String("abc".into()), "02 00 03 61 62 63");
    assert_amf0(Value::String(String::new()), "02 00 00");
    assert_amf0(Value::Null, "05");
    assert_amf0(Value::Undefined, "06");
    assert_amf0(
        Value::Date(Date {
            millis: 1.0,
            timezone: -60,
        }),
        "0b 3f f0 00 00 00 00 00 00 ff c4",
    );
    assert_amf0(
        Value::XmlDocument("<a/>".into()),
        "0f 00 00 00 04 3c 61 2f 3e",
    );
}

#[test]
fn amf0_any_boolean_byte_but_zero_is_true() {
    assert_eq!(from_amf0(&hex("01 7f")).unwrap(), Value::Boolean(true));
}

#[test]
fn amf0_strings_past_65535_bytes_become_long_strings() {
    let longest_short = "a".repeat(0xffff);
    let bytes = amf0(&longest_short.as_str().into());
    assert_eq!(bytes[..3], hex("02 ff ff"));
    assert_eq!(bytes.len(), 3 + 0xffff);

    let long = "a".repeat(0x10000);
    let bytes = amf0(&long.as_str().into());
    assert_eq!(bytes[..5], hex("0c 00 01 00 00"));
    assert_eq!(from_amf0(&bytes).unwrap(), Value::String(long));
}

#[test]
fn amf0_short_text_in_a_long_string_decodes_to_a_string() {
    assert_eq!(
        from_amf0(&hex("0c 00 00 00 02 68 69")).unwrap(),
        Value::String("hi".into())
    );
}

#[test]
fn amf0_unsupported_marker_decodes_to_undefined() {
    assert_eq!(from_amf0(&hex("0d")).unwrap(), Value::Undefined);
}

#[test]
fn amf0_anonymous_object_keeps_property_order() {
    assert_amf0(
        Value::object([("b", Value::Number(1.0)), ("a", Value::Null)]),
        "03 00 01 62 00 3f f0 00 00 00 00 00 00  00 01 61 05  00 00 09",
    );
}

#[test]
fn amf0_typed_object_carries_its_class_name() {
    assert_amf0(
        Value::typed_object("C", [("x", Value::Null)]),
        "10 00 01 43  00 01 78 05  00 00 09",
    );
}

#[test]
fn amf0_ecma_array_keeps_its_count_hint_even_when_wrong() {
    assert_amf0(
        Value::EcmaArray(EcmaArray {
            count_hint: 5,
            entries: props(&[("k", true.into())]),
        }),
        "08 00 00 00 05  00 01 6b 01 01  00 00 09",
    );
    assert_eq!(
        Value::ecma_array([("k", Value::Null)]),
        Value::EcmaArray(EcmaArray {
            count_hint: 1,
            entries: props(&[("k", Value::Null)])
        })
    );
}

#[test]
fn amf0_strict_array_is_counted() {
    assert_amf0(
        Value::StrictArray(vec![1.0.into(), "a".into()]),
        "0a 00 00 00 02  00 3f f0 00 00 00 00 00 00  02 00 01 61",
    );
}

#[test]
fn amf0_property_with_an_empty_name_is_not_the_object_end() {
    assert_amf0(Value::object([("", Value::Null)]), "03 00 00 05 00 00 09");
}

#[test]
fn amf0_reference_resolves_to_a_copy_of_the_earlier_object() {
    // Strict array is complex value 0, the object inside it 1; `07 00 01` names the object.
    let decoded = from_amf0(&hex("0a 00 00 00 02  03 00 01 61 05 00 00 09  07 00 01")).unwrap();
    let object = Value::object([("a", Value::Null)]);
    assert_eq!(decoded, Value::StrictArray(vec![object.clone(), object]));
}

#[test]
fn amf0_references_reach_across_the_values_of_a_message() {
    let values = decode_amf0_sequence(&hex("03 00 01 61 05 00 00 09  07 00 00")).unwrap();
    assert_eq!(values[0], values[1]);
}

#[test]
fn amf0_reference_into_an_unfinished_object_is_a_cycle_error() {
    let error = from_amf0(&hex("03 00 01 61 07 00 00 00 00 09")).unwrap_err();
    assert_eq!(error, AmfError::CyclicReference { at: 4, index: 0 });
}

#[test]
fn amf0_reference_past_the_table_is_an_error() {
    assert!(matches!(
        from_amf0(&hex("07 00 00")),
        Err(AmfError::BadReference {
            index: 0,
            known: 0,
            ..
        })
    ));
}

#[test]
fn amf0_markers_without_a_value_are_errors() {
    assert_eq!(
        from_amf0(&hex("09")),
        Err(AmfError::UnexpectedObjectEnd { at: 0 })
    );
    assert_eq!(
        from_amf0(&hex("04")),
        Err(AmfError::ReservedAmf0Marker { at: 0, marker: 4 })
    );
    assert_eq!(
        from_amf0(&hex("0e")),
        Err(AmfError::ReservedAmf0Marker {
            at: 0,
            marker: 0x0e
        })
    );
    assert_eq!(
        from_amf0(&hex("12")),
        Err(AmfError::UnknownAmf0Marker {
            at: 0,
            marker: 0x12
        })
    );
}

#[test]
fn amf0_switch_marker_embeds_one_amf3_value() {
    assert_amf0(Value::Integer(5), "11 04 05");
    assert_amf0(Value::ByteArray(vec![1, 2]), "11 0c 05 01 02");
    // AMF3 values AMF0 can express decode to the same values as their AMF0 forms.
    assert_eq!(
        from_amf0(&hex("11 06 07 61 62 63")).unwrap(),
        Value::String("abc".into())
    );
}

#[test]
fn amf0_switched_values_share_the_message_amf3_string_table() {
    let values = decode_amf0_sequence(&hex("11 06 07 61 62 63  11 06 00")).unwrap();
    assert_eq!(values, vec![Value::from("abc"), Value::from("abc")]);
}

#[test]
fn amf0_encoder_refuses_names_longer_than_a_short_string_and_leaves_out_untouched() {
    let mut out = vec![0xaa];
    let value = Value::object([("n".repeat(0x10000), Value::Null)]);
    let error = encode_amf0(&value, &mut out).unwrap_err();
    assert!(matches!(error, AmfError::TooLong { len: 0x10000, .. }));
    assert_eq!(out, vec![0xaa]);
}

/// What a Flash Player sends as its first command on a NetConnection.
#[test]
fn rtmp_connect_command_decodes_and_re_encodes_byte_for_byte() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\x02\x00\x07connect");
    bytes.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"); // transaction 1
    bytes.extend_from_slice(b"\x03");
    bytes.extend_from_slice(b"\x00\x03app\x02\x00\x04live");
    bytes.extend_from_slice(b"\x00\x08flashVer\x02\x00\x0eWIN 32,0,0,114");
    bytes.extend_from_slice(b"\x00\x05tcUrl\x02\x00\x18rtmfp://example.com/live");
    bytes.extend_from_slice(b"\x00\x04fpad\x01\x00");
    bytes.extend_from_slice(b"\x00\x0ccapabilities\x00\x40\x6d\xe0\x00\x00\x00\x00\x00"); // 239
    bytes.extend_from_slice(b"\x00\x0baudioCodecs\x00\x40\xab\xee\x00\x00\x00\x00\x00"); // 3575
    bytes.extend_from_slice(b"\x00\x0bvideoCodecs\x00\x40\x6f\x80\x00\x00\x00\x00\x00"); // 252
    bytes.extend_from_slice(b"\x00\x0dvideoFunction\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"); // 1
    bytes.extend_from_slice(b"\x00\x0eobjectEncoding\x00\x00\x00\x00\x00\x00\x00\x00\x00"); // 0
    bytes.extend_from_slice(b"\x00\x00\x09");

    let values = decode_amf0_sequence(&bytes).unwrap();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0].as_str(), Some("connect"));
    assert_eq!(values[1].as_f64(), Some(1.0));
    let command = &values[2];
    assert_eq!(command.get("app").and_then(Value::as_str), Some("live"));
    assert_eq!(
        command.get("tcUrl").and_then(Value::as_str),
        Some("rtmfp://example.com/live")
    );
    assert_eq!(command.get("fpad").and_then(Value::as_bool), Some(false));
    assert_eq!(
        command.get("capabilities").and_then(Value::as_f64),
        Some(239.0)
    );
    assert_eq!(
        command.get("audioCodecs").and_then(Value::as_f64),
        Some(3575.0)
    );
    assert_eq!(
        command.get("videoCodecs").and_then(Value::as_f64),
        Some(252.0)
    );
    assert_eq!(
        command.get("videoFunction").and_then(Value::as_f64),
        Some(1.0)
    );
    assert_eq!(
        command.get("objectEncoding").and_then(Value::as_f64),
        Some(0.0)
    );
    assert_eq!(command.properties().count(), 9);

    let mut again = Vec::new();
    encode_amf0_sequence(&values, &mut again).unwrap();
    assert_eq!(again, bytes);

    // The same command built with the accessors encodes to the same bytes.
    let built = [
        "connect".into(),
        1.0.into(),
        Value::object([
            ("app", "live".into()),
            ("flashVer", "WIN 32,0,0,114".into()),
            ("tcUrl", "rtmfp://example.com/live".into()),
            ("fpad", false.into()),
            ("capabilities", 239.0.into()),
            ("audioCodecs", 3575.0.into()),
            ("videoCodecs", 252.0.into()),
            ("videoFunction", 1.0.into()),
            ("objectEncoding", 0.0.into()),
        ]),
    ];
    let mut from_built = Vec::new();
    encode_amf0_sequence(&built, &mut from_built).unwrap();
    assert_eq!(from_built, bytes);
}

// ---------------------------------------------------------------------------------------
// AMF3 types

#[test]
fn amf3_integers_use_the_u29_encoding() {
    for (integer, bytes) in [
        (0, "04 00"),
        (0x7f, "04 7f"),
        (0x80, "04 81 00"),
        (0x3fff, "04 ff 7f"),
        (0x4000, "04 81 80 00"),
        (0x1f_ffff, "04 ff ff 7f"),
        (0x20_0000, "04 80 c0 80 00"),
        (0x0fff_ffff, "04 bf ff ff ff"),
        (-1, "04 ff ff ff ff"),
        (-(1 << 28), "04 c0 80 80 00"),
    ] {
        assert_amf3(Value::Integer(integer), bytes);
    }
    assert_eq!(AMF3_INTEGER_MAX, 0x0fff_ffff);
    assert_eq!(AMF3_INTEGER_MIN, -(1 << 28));
}

#[test]
fn amf3_integers_outside_29_bits_are_sent_as_doubles() {
    assert_eq!(
        amf3(&Value::Integer(1 << 28)),
        hex("05 41 b0 00 00 00 00 00 00")
    );
    assert_eq!(
        amf3(&Value::Integer(i32::MIN)),
        hex("05 c1 e0 00 00 00 00 00 00")
    );
    assert_eq!(
        from_amf3(&hex("05 41 b0 00 00 00 00 00 00")).unwrap(),
        Value::Number(268_435_456.0)
    );
}

#[test]
fn amf3_scalars_have_the_spec_encodings() {
    assert_amf3(Value::Undefined, "00");
    assert_amf3(Value::Null, "01");
    assert_amf3(Value::Boolean(false), "02");
    assert_amf3(Value::Boolean(true), "03");
    assert_amf3(Value::Number(1.5), "05 3f f8 00 00 00 00 00 00");
    assert_amf3(Value::String("abc".into()), "06 07 61 62 63");
    assert_amf3(Value::String(String::new()), "06 01");
    assert_amf3(Value::XmlDocument("<a/>".into()), "07 09 3c 61 2f 3e");
    assert_amf3(Value::Xml("<a/>".into()), "0b 09 3c 61 2f 3e");
    assert_amf3(Value::ByteArray(vec![1, 2, 3]), "0c 07 01 02 03");
    assert_amf3(
        Value::Date(Date {
            millis: 1.0,
            timezone: 0,
        }),
        "08 01 3f f0 00 00 00 00 00 00",
    );
}

#[test]
fn amf3_repeated_strings_are_sent_as_references() {
    let values = ["abc", "abc", "", "", "abc"].map(Value::from);
    let mut out = Vec::new();
    encode_amf3_sequence(&values, &mut out).unwrap();
    assert_eq!(out, hex("06 07 61 62 63  06 00  06 01  06 01  06 00"));
    assert_eq!(decode_amf3_sequence(&out).unwrap(), values);
}

#[test]
fn amf3_empty_string_never_enters_the_string_table() {
    // Reference 0 after "", "x" is "x": the empty string took no index.
    let values = decode_amf3_sequence(&hex("06 01  06 03 78  06 00")).unwrap();
    assert_eq!(values, ["", "x", "x"].map(Value::from));
}

#[test]
fn amf3_member_names_share_the_string_table_with_values() {
    assert_amf3(
        Value::object([("abc", "abc".into())]),
        // Object, traits inline + dynamic with no sealed members, class "", then "abc"
        // inline as a name and by reference as the value, then the empty name.
        "0a 0b 01  07 61 62 63  06 00  01",
    );
}

#[test]
fn amf3_second_object_of_a_class_references_its_traits() {
    let point = |x| {
        Value::Object(Object {
            class_name: "P".into(),
            sealed: props(&[("x", Value::Integer(x))]),
            dynamic: None,
        })
    };
    assert_amf3(
        Value::Array(Array {
            dense: vec![point(1), point(2)],
            associative: Vec::new(),
        }),
        // Array of 2; first object: traits inline, sealed count 1, not dynamic (0x13),
        // class "P", member "x", value 1; second object: traits reference 0 (0x01).
        "09 05 01  0a 13 03 50 03 78 04 01  0a 01 04 02",
    );
}

#[test]
fn amf3_object_reference_resolves_to_a_copy() {
    // The array is object 0, the object in it object 1; `0a 02` references 1.
    let decoded = from_amf3(&hex("09 05 01  0a 0b 01 03 61 04 01 01  0a 02")).unwrap();
    let object = Value::object([("a", Value::Integer(1))]);
    assert_eq!(decoded.as_slice(), Some(&[object.clone(), object][..]));
}

#[test]
fn amf3_dates_and_byte_arrays_are_numbered_with_objects() {
    let decoded = from_amf3(&hex(
        "09 07 01  08 01 3f f0 00 00 00 00 00 00  0c 03 ff  08 02",
    ))
    .unwrap();
    let date = Value::Date(Date {
        millis: 1.0,
        timezone: 0,
    });
    assert_eq!(
        decoded.as_slice(),
        Some(&[date.clone(), Value::ByteArray(vec![0xff]), date][..])
    );
}

#[test]
fn amf3_array_has_an_associative_part_before_its_dense_part() {
    assert_amf3(
        Value::Array(Array {
            dense: vec![Value::Integer(1)],
            associative: props(&[("k", true.into())]),
        }),
        "09 03  03 6b 03  01  04 01",
    );
}

#[test]
fn amf3_carries_amf0_arrays_as_one_part_arrays() {
    assert_eq!(
        amf3(&Value::StrictArray(vec![Value::Null])),
        hex("09 03 01 01")
    );
    assert_eq!(
        amf3(&Value::ecma_array([("k", Value::Null)])),
        hex("09 01 03 6b 01 01")
    );
}

#[test]
fn amf3_sealed_and_dynamic_members_round_trip_in_their_places() {
    assert_amf3(
        Value::Object(Object {
            class_name: "C".into(),
            sealed: props(&[("s", Value::Null)]),
            dynamic: Some(props(&[("d", Value::Undefined)])),
        }),
        // 0x1b: traits inline, dynamic, one sealed member.
        "0a 1b 03 43 03 73  01  03 64 00 01",
    );
}

#[test]
fn amf3_vectors_and_dictionaries_decode() {
    assert_amf3(
        Value::VectorInt(Vector {
            fixed: false,
            items: vec![1, -1],
        }),
        "0d 05 00  00 00 00 01  ff ff ff ff",
    );
    assert_amf3(
        Value::VectorUint(Vector {
            fixed: true,
            items: vec![0xffff_ffff],
        }),
        "0e 03 01  ff ff ff ff",
    );
    assert_amf3(
        Value::VectorDouble(Vector {
            fixed: true,
            items: vec![1.0],
        }),
        "0f 03 01  3f f0 00 00 00 00 00 00",
    );
    assert_amf3(
        Value::VectorObject(ObjectVector {
            fixed: false,
            type_name: String::new(),
            items: vec![Value::Null],
        }),
        "10 03 00 01  01",
    );
    assert_amf3(
        Value::Dictionary(Dictionary {
            weak_keys: false,
            entries: vec![(Value::Integer(1), "a".into())],
        }),
        "11 03 00  04 01 06 03 61",
    );
}

#[test]
fn amf3_externalizable_object_is_a_clear_error() {
    let error = from_amf3(&hex("0a 07 07 66 6f 6f  01 02 03")).unwrap_err();
    assert_eq!(
        error,
        AmfError::Externalizable {
            at: 2,
            class_name: "foo".into()
        }
    );
    assert!(error.to_string().contains("\"foo\""));
}

#[test]
fn amf3_bad_references_are_errors() {
    assert!(matches!(
        from_amf3(&hex("06 02")),
        Err(AmfError::BadReference {
            table: "AMF3 string",
            index: 1,
            known: 0,
            ..
        })
    ));
    assert!(matches!(
        from_amf3(&hex("0a 01")),
        Err(AmfError::BadReference {
            table: "AMF3 traits",
            index: 0,
            known: 0,
            ..
        })
    ));
    assert!(matches!(
        from_amf3(&hex("09 02")),
        Err(AmfError::BadReference {
            table: "AMF3 object",
            index: 1,
            known: 0,
            ..
        })
    ));
    assert_eq!(
        from_amf3(&hex("09 03 01  09 00")),
        Err(AmfError::CyclicReference { at: 4, index: 0 })
    );
    assert_eq!(
        from_amf3(&hex("12")),
        Err(AmfError::UnknownAmf3Marker {
            at: 0,
            marker: 0x12
        })
    );
}

#[test]
fn amf3_encoder_refuses_empty_dynamic_names() {
    let mut out = Vec::new();
    let error = encode_amf3(&Value::object([("", Value::Null)]), &mut out).unwrap_err();
    assert!(matches!(error, AmfError::EmptyName { .. }));
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------
// Hostile input

#[test]
fn counts_larger_than_the_input_are_errors_not_allocations() {
    assert!(matches!(
        from_amf0(&hex("0a ff ff ff ff 05")),
        Err(AmfError::CountExceedsInput {
            count: 0xffff_ffff,
            ..
        })
    ));
    assert!(matches!(
        from_amf3(&hex("09 ff ff ff ff 01")),
        Err(AmfError::CountExceedsInput {
            count: 0x0fff_ffff,
            ..
        })
    ));
    assert!(matches!(
        from_amf3(&hex("0f ff ff ff ff 00")),
        Err(AmfError::CountExceedsInput { .. })
    ));
    assert!(matches!(
        from_amf3(&hex("0a ff ff ff fb 01")),
        Err(AmfError::CountExceedsInput { .. })
    ));
    assert!(matches!(
        from_amf0(&hex("0c ff ff ff ff 61")),
        Err(AmfError::Truncated {
            needed: 0xffff_ffff,
            remaining: 1,
            ..
        })
    ));
}

#[test]
fn truncated_and_invalid_text_are_errors() {
    assert_eq!(
        from_amf0(&hex("00 3f f0")),
        Err(AmfError::Truncated {
            at: 1,
            needed: 8,
            remaining: 2
        })
    );
    assert_eq!(
        from_amf0(&hex("02 00 01 ff")),
        Err(AmfError::InvalidUtf8 { at: 3 })
    );
    assert!(matches!(
        from_amf3(&hex("04 ff ff")),
        Err(AmfError::Truncated { .. })
    ));
}

#[test]
fn nesting_is_limited_to_max_depth() {
    let nested = |depth: usize, open: &str, leaf: &str| {
        let mut bytes = hex(&open.repeat(depth));
        bytes.extend(hex(leaf));
        bytes
    };
    let amf0_ok = nested(MAX_DEPTH, "0a 00 00 00 01", "05");
    assert!(from_amf0(&amf0_ok).is_ok());
    let amf0_deep = nested(MAX_DEPTH + 1, "0a 00 00 00 01", "05");
    assert!(matches!(
        from_amf0(&amf0_deep),
        Err(AmfError::TooDeep { .. })
    ));

    let amf3_ok = nested(MAX_DEPTH, "09 03 01", "01");
    assert!(from_amf3(&amf3_ok).is_ok());
    let amf3_deep = nested(MAX_DEPTH + 1, "09 03 01", "01");
    assert!(matches!(
        from_amf3(&amf3_deep),
        Err(AmfError::TooDeep { .. })
    ));
}

#[test]
fn a_failed_decode_does_not_leave_the_reader_nested() {
    let mut bytes = hex(&"0a 00 00 00 01".repeat(MAX_DEPTH));
    bytes.extend(hex("12"));
    let mut reader = Reader::new(&bytes);
    assert!(decode_amf0(&mut reader).is_err());
    assert_eq!(reader.depth(), 0);
}

#[test]
fn doubling_references_exhaust_the_memory_budget_instead_of_memory() {
    // Value i is a strict array holding value i-1 twice, by reference: 2^40 copies of a
    // 60 kB string described in a few hundred bytes.
    let mut bytes = vec![0x0a, 0, 0, 0, 1, 0x0c, 0, 0, 0xea, 0x60];
    bytes.extend(std::iter::repeat(b'a').take(60_000));
    for index in 0u16..40 {
        bytes.extend_from_slice(&[0x0a, 0, 0, 0, 2]);
        for _ in 0..2 {
            bytes.push(0x07);
            bytes.extend_from_slice(&index.to_be_bytes());
        }
    }
    assert!(matches!(
        decode_amf0_sequence(&bytes),
        Err(AmfError::TooLarge {
            limit: MAX_DECODED_BYTES,
            ..
        })
    ));
}

#[test]
fn repeated_string_references_exhaust_the_memory_budget_instead_of_memory() {
    let mut bytes = hex("06 87 a9 41"); // inline string of 60 000 bytes: (60000 << 1) | 1 = 0x1d4c1
    bytes.extend(std::iter::repeat(b's').take(60_000));
    for _ in 0..5_000 {
        bytes.extend(hex("06 00"));
    }
    assert!(matches!(
        decode_amf3_sequence(&bytes),
        Err(AmfError::TooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Accessors

#[test]
fn accessors_read_commands_built_from_conversions() {
    let info = Value::object([
        ("level", "status".into()),
        ("code", "NetStream.Play.Start".into()),
        ("description", String::from("Started playing").into()),
        ("clientid", 1.0.into()),
        ("isFastPlay", false.into()),
        ("details", Option::<&str>::None.into()),
    ]);
    assert_eq!(
        info.get("code").and_then(Value::as_str),
        Some("NetStream.Play.Start")
    );
    assert_eq!(info.get("clientid").and_then(Value::as_f64), Some(1.0));
    assert_eq!(info.get("isFastPlay").and_then(Value::as_bool), Some(false));
    assert!(info.get("details").unwrap().is_null_or_undefined());
    assert_eq!(info.get("missing"), None);
    assert_eq!(Value::Integer(7).as_f64(), Some(7.0));
    assert_eq!(Value::Null.get("code"), None);
    let names: Vec<&str> = info.properties().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "level",
            "code",
            "description",
            "clientid",
            "isFastPlay",
            "details"
        ]
    );
}

#[test]
fn object_insert_replaces_or_appends() {
    let mut object = Object {
        class_name: "C".into(),
        sealed: props(&[("s", Value::Null)]),
        dynamic: None,
    };
    object.insert("s", 1.0.into());
    object.insert("d", 2.0.into());
    assert_eq!(object.get("s"), Some(&Value::Number(1.0)));
    assert_eq!(object.dynamic, Some(props(&[("d", 2.0.into())])));
}

#[test]
fn errors_say_what_was_expected_and_where() {
    let error = from_amf0(&hex("02 00 05 61")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "AMF value cut short at byte 3: it needs 5 more bytes but 1 are left"
    );
}

#[test]
fn amf0_encoder_shares_amf3_tables_across_switched_values_of_a_message() {
    let values = [Value::Xml("x".into()), Value::object([("k", Value::Null)])];
    let switched = [
        Value::Array(Array {
            dense: Vec::new(),
            associative: props(&[("ab", Value::Null)]),
        }),
        Value::Array(Array {
            dense: Vec::new(),
            associative: props(&[("ab", Value::Integer(1))]),
        }),
    ];
    let mut out = Vec::new();
    encode_amf0_sequence(&switched, &mut out).unwrap();
    // The second array's key "ab" is AMF3 string reference 0, from the first array.
    assert_eq!(out, hex("11 09 01 05 61 62 01 01  11 09 01 00 04 01 01"));
    assert_eq!(decode_amf0_sequence(&out).unwrap(), switched);
    let mut out = Vec::new();
    encode_amf0_sequence(&values, &mut out).unwrap();
    assert_eq!(decode_amf0_sequence(&out).unwrap(), values);
}
