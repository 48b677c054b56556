//! IP multicast datagrams (docs/ipmulticast.md): whatever arrives on the multicast port,
//! a receiver drops or takes it without panicking, and what it takes was sealed under
//! its key; a datagram it seals itself opens to the same fields. Repair datagrams (FEC):
//! authentic ones with any payload, at any sequence, between any fragments, go through a
//! member's intake without a panic; and the blocks a real sender makes of the input,
//! with one datagram of each lost, give back every fragment's exact bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp_edge::multicast::datagram::{seal, MulticastKey, PayloadKind, Receiver, HEADER_LEN};
use rtmfp_edge::multicast::fec::FecScheme;
use rtmfp_edge::multicast::receiver::MulticastReceiver;
use rtmfp_edge::multicast::sender::MulticastSender;
use rtmfp_edge::proto::Instant;

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

    // Authentic datagrams of either kind with arbitrary payloads: each chunk's first
    // byte says the kind (bit 4) and how far the sequence moves (low bits).
    let mut intake = MulticastReceiver::default();
    intake.add_key(key.clone());
    let mut sequence = 0u64;
    let mut sealed = Vec::new();
    for chunk in data.chunks(97) {
        let Some((&op, body)) = chunk.split_first() else { continue };
        sequence += u64::from(op & 0x0f) + 1;
        let kind = if op & 0x10 != 0 { PayloadKind::Repair } else { PayloadKind::Fragment };
        seal(&key, [1; 8], sequence, kind, &[body], &mut sealed);
        let _ = intake.handle(&sealed);
        while intake.poll_fragment().is_some() {}
    }

    // A real sender's blocks over the input's bytes, one datagram of each block lost.
    let [k, r, cut, ..] = *data else { return };
    let Ok(scheme) = FecScheme::new(u64::from(k % 16) + 1, u64::from(r % 4) + 1) else {
        return;
    };
    // Three blocks at most (the last one short): every block rebuilt costs the codec a
    // fixed ~0.2 ms (its erasure locator spans GF(2^16)), and runs per second are what
    // finds bugs.
    let most = 2 * scheme.fragments() + 1;
    let fragments: Vec<&[u8]> = data[3..].chunks(usize::from(cut % 200) + 1).take(most).collect();
    let mut sender = MulticastSender::new("239.1.2.3:30000".parse().unwrap(), key.clone(), Some(scheme));
    sender.start(Instant::ZERO, [1; 8]);
    for f in &fragments {
        sender.push_fragment(Instant::ZERO, &f[..1], &f[1..]);
    }
    sender.stop(Instant::ZERO);
    let mut datagrams = Vec::new();
    let mut now = Instant::ZERO;
    loop {
        match sender.poll_transmit(now) {
            Some(t) => datagrams.push(t.payload),
            None => match sender.poll_timeout() {
                Some(t) if t > now => now = t,
                _ => break,
            },
        }
    }
    let mut intake = MulticastReceiver::default();
    intake.add_key(key);
    let lost = usize::from(cut) % (scheme.fragments() + scheme.repairs());
    let mut in_block = 0;
    let mut repairs_seen = false;
    for d in &datagrams {
        let repair = d[HEADER_LEN - 1] == 2;
        if repairs_seen && !repair {
            in_block = 0;
        }
        repairs_seen = repair;
        if in_block != lost {
            intake.handle(d).expect("the sender's datagrams check out");
        }
        in_block += 1;
    }
    let mut got: Vec<Vec<u8>> = std::iter::from_fn(|| intake.poll_fragment())
        .map(|(b, _)| b.to_vec())
        .collect();
    let mut want: Vec<Vec<u8>> = fragments.iter().map(|f| f.to_vec()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "one loss per block is rebuilt");
});
