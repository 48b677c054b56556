//! VLUs, fields and option lists (RFC 7016 §2.1.2, §2.1.3), the bottom of every parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::proto::vlu::{find_option, options, put_option, put_vlu, vlu_len, Reader, MAX_VLU_LEN};

fuzz_target!(|data: &[u8]| {
    // A run of VLUs: each decoded value re-encodes to at most as many bytes as it took.
    let mut r = Reader::new(data);
    loop {
        let before = r.remaining();
        let Ok(v) = r.vlu() else { break };
        let used = before - r.remaining();
        assert!(used <= MAX_VLU_LEN && vlu_len(v) <= used);
        let mut out = Vec::new();
        put_vlu(&mut out, v);
        assert_eq!(Reader::new(&out).vlu(), Ok(v));
    }
    // An option list: each option re-encodes to one that decodes the same.
    for (kind, value) in options(data).map_while(Result::ok) {
        let mut out = Vec::new();
        put_option(&mut out, kind, value);
        assert_eq!(Reader::new(&out).option(), Ok(Some((kind, value))));
        assert!(find_option(data, kind).is_some());
    }
    let mut r = Reader::new(data);
    while let Ok(Some(_)) = r.option() {}
    let mut r = Reader::new(data);
    // Every field read consumes at least its length byte, so this ends.
    while r.vlu_field().is_ok() {}
});
