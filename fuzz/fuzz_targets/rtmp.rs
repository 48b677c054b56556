//! RTMP fed hostile bytes in pieces whose sizes come from the input: the first byte's low
//! bit picks the chunk-stream decoder alone (past the handshake, where most parsing is)
//! or a whole server connection (handshake first). Errors are fine; panics and unbounded
//! memory are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rtmfp_edge::rtmp::{split_aggregate, ChunkDecoder, ChunkLimits, ConnectionConfig, RtmpConnection};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(selector >> 1).max(1);
    if selector & 1 == 0 {
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        for chunk in input.chunks(piece) {
            if decoder.feed(chunk).is_err() {
                return;
            }
            while let Some(m) = decoder.poll_message() {
                let _ = split_aggregate(&m);
            }
        }
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut conn = RtmpConnection::server(ConnectionConfig::default(), &mut rng);
        for chunk in input.chunks(piece) {
            if conn.feed(chunk).is_err() {
                return;
            }
            while conn.poll_event().is_some() {}
            let _ = conn.take_output();
        }
    }
});
