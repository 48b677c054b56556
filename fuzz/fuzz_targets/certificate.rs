//! A certificate (RFC 7425 §4.4) as found in RHello and IIKeying.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::proto::epd::{Certificate, EndpointDiscriminator, PeerId};

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = Certificate::parse(data) else { return };
    assert_eq!(cert.raw(), data);
    let id = cert.peer_id();
    assert!(cert.is_selected_by(&EndpointDiscriminator::for_peer(id)));
    let mut other = id.0;
    other[0] ^= 1;
    assert!(!cert.is_selected_by(&EndpointDiscriminator::for_peer(PeerId(other))));
    for group in [2, 14, 16] {
        let _ = cert.offers_group(group);
        let _ = cert.static_key(group);
    }
    let _ = cert.is_selected_by(&EndpointDiscriminator::for_uri("rtmfp://localhost/live"));
});
