//! IP multicast datagrams (docs/ipmulticast.md): whatever arrives on the multicast port,
//! a receiver drops or takes it without panicking, and what it takes was sealed under
//! its key; a datagram it seals itself opens to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::multicast::datagram::{seal, MulticastKey, PayloadKind, Receiver};

fuzz_target!(|data: &[u8]| {
    let key = MulticastKey { id: 7, secret: [0x42; 32] };
    let mut receiver = Receiver::default();
    receiver.add_key(key.clone());
    // Arbitrary input: forged as far as the receiver can tell, so never taken.
    assert!(receiver.open(data).is_err());
    // The input as a payload, sealed and opened: the same bytes come out, once.
    if data.len() <= 1300 {
        let sequence = u64::from(data.first().copied().unwrap_or(0)) + 1;
        let mut sealed = Vec::new();
        seal(&key, [1; 8], sequence, PayloadKind::Fragment, &[data], &mut sealed);
        let opened = receiver.open(&sealed).expect("a sealed datagram opens");
        assert_eq!((opened.sequence, opened.payload), (sequence, data));
        assert!(receiver.open(&sealed).is_err(), "a replay is dropped");
    }
});
