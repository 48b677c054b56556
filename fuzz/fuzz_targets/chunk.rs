//! One chunk: the first byte is the chunk type, the rest its body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::proto::chunk::{Chunk, ChunkIter};

/// The one piece of a decoded chunk that is, by design, not re-encoded.
fn forget_unknown_options(mut c: Chunk<'_>) -> Chunk<'_> {
    if let Chunk::UserData { fragment, .. } | Chunk::NextUserData { fragment } = &mut c {
        if let Some(o) = &mut fragment.options {
            o.unknown_mandatory = false;
        }
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let parsed = Chunk::parse(kind, body);
    if body.len() <= usize::from(u16::MAX) {
        let mut framed = vec![kind];
        framed.extend_from_slice(&(body.len() as u16).to_be_bytes());
        framed.extend_from_slice(body);
        let framed_parse = ChunkIter::new(&framed).next();
        if kind == 0xff {
            assert!(framed_parse.is_none(), "0xff is padding, it ends the packet");
        } else {
            assert_eq!(framed_parse, Some(parsed.clone()));
        }
    }
    let Ok(chunk) = parsed else { return };
    assert_eq!(chunk.kind(), kind);
    let mut again = Vec::new();
    chunk.emit_body(&mut again);
    assert_eq!(chunk.encoded_len(), again.len() + 3);
    let reparsed = Chunk::parse(kind, &again).expect("a decoded chunk re-encodes to a valid one");
    assert_eq!(forget_unknown_options(reparsed), forget_unknown_options(chunk));
});
