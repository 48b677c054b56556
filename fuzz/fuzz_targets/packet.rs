//! A whole datagram: unscramble the session id, decrypt under the startup key, parse the
//! header and every chunk. The decrypted path is rarely reached from raw bytes (the
//! checksum must verify), so the same bytes are also parsed as an already-decrypted packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::proto::chunk::{Chunk, PacketView};
use rtmfp_edge::proto::cipher::PacketCipher;
use rtmfp_edge::proto::packet::{scramble_session_id, unscramble_session_id};

fn walk(packet: &[u8]) {
    let Ok(view) = PacketView::parse(packet) else { return };
    let mut out = Vec::new();
    view.header.emit(&mut out);
    assert_eq!(out.len(), view.header.len());
    for chunk in view.chunks().flatten() {
        out.clear();
        if chunk.emit(&mut out) {
            assert_eq!(out.len(), chunk.encoded_len());
            // Whatever we decoded, we encode into something that decodes again.
            let again = Chunk::parse(out[0], &out[3..]);
            assert!(again.is_ok(), "{chunk:?} re-encodes to {out:02x?}: {again:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(session_id) = unscramble_session_id(data) {
        let mut copy = data.to_vec();
        scramble_session_id(&mut copy, session_id);
        assert_eq!(copy, data);
    }
    let mut out = Vec::new();
    if let Ok(range) = PacketCipher::startup().open(data.get(4..).unwrap_or_default(), &mut out) {
        walk(&out[range]);
    }
    walk(data);
    // Anything we seal under the startup key opens again to itself.
    let mut sealed = Vec::new();
    PacketCipher::startup().seal(data, &mut sealed);
    let range = PacketCipher::startup()
        .open(&sealed, &mut out)
        .expect("our own sealed packet opens");
    assert_eq!(&out[range][..data.len()], data);
});
