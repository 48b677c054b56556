//! An endpoint discriminator (RFC 7425 §4.4.1) as found in IHello and FIHello.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::proto::epd::EndpointDiscriminator;

fuzz_target!(|data: &[u8]| {
    let Ok(epd) = EndpointDiscriminator::parse(data) else {
        return;
    };
    let encoded = epd.encode();
    assert_eq!(
        EndpointDiscriminator::parse(&encoded).as_ref(),
        Ok(&epd),
        "re-encoded {encoded:02x?}"
    );
});
