//! AMF messages: the first byte picks AMF0 (even) or AMF3 (odd), the rest is the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::flash::amf::{
    decode_amf0_sequence, decode_amf3_sequence, encode_amf0_sequence, encode_amf3_sequence,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        let Ok(values) = decode_amf0_sequence(message) else {
            return;
        };
        // AMF0 may refuse what it decoded (an AMF3 name too long for AMF0); never panic.
        let mut encoded = Vec::new();
        if encode_amf0_sequence(&values, &mut encoded).is_ok() {
            let again = decode_amf0_sequence(&encoded).expect("our AMF0 decodes");
            let mut encoded_again = Vec::new();
            encode_amf0_sequence(&again, &mut encoded_again).expect("decoded AMF0 re-encodes");
            assert_eq!(encoded, encoded_again, "AMF0 re-encoding is stable");
        }
    } else {
        let Ok(values) = decode_amf3_sequence(message) else {
            return;
        };
        let mut encoded = Vec::new();
        encode_amf3_sequence(&values, &mut encoded).expect("decoded AMF3 re-encodes");
        let again = decode_amf3_sequence(&encoded).expect("our AMF3 decodes");
        let mut encoded_again = Vec::new();
        encode_amf3_sequence(&again, &mut encoded_again).expect("decoded AMF3 re-encodes");
        assert_eq!(encoded, encoded_again, "AMF3 re-encoding is stable");
    }
});
