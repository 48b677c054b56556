//! The FLV reader fed hostile bytes in pieces, and the Flash command parser on each tag
//! body and on the whole input: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::flash::command::Command;
use rtmfp_edge::flash::tc::{FlowMetadata, TcMessage};
use rtmfp_edge::flv::FlvReader;
use rtmfp_edge::media::{MediaKind, MediaMessage};

fuzz_target!(|data: &[u8]| {
    let _ = Command::parse(data);
    let _ = FlowMetadata::parse(data);
    if let Ok(m) = TcMessage::parse(data) {
        let _ = m.amf_body().map(Command::parse);
    }
    let mut reader = FlvReader::new();
    for chunk in data.chunks(97) {
        if reader.feed(chunk).is_err() {
            return;
        }
        while let Some(tag) = reader.poll_tag() {
            for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
                let m = MediaMessage::new(kind, tag.timestamp, tag.data.clone());
                let _ = (m.is_keyframe(), m.is_sequence_header(), m.is_metadata());
            }
        }
    }
    let _ = reader.finish();
});
