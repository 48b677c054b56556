//! Property tests for the wire codec: every chunk variant, VLUs, option lists, encoded
//! addresses and whole packets round-trip through encoder and decoder; and no input, random
//! or tampered, makes a decoder panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;

use rtmfp_edge::proto::address::{AddressOrigin, EncodedAddress};
use rtmfp_edge::proto::chunk::{
    kind, AckRange, Chunk, ChunkIter, DataOptions, Fragmentation, PacketView, UserData,
};
use rtmfp_edge::proto::cipher::{
    cbc_encrypt_in_place, internet_checksum, PacketCipher, PacketProtection,
};
use rtmfp_edge::proto::epd::{Certificate, EndpointDiscriminator, PeerId};
use rtmfp_edge::proto::packet::{scramble_session_id, unscramble_session_id, Mode, PacketHeader};
use rtmfp_edge::proto::vlu::{
    find_option, options, put_marker, put_option, put_option_vlu, put_vlu, put_vlu_field, vlu_len,
    Reader,
};
use rtmfp_edge::proto::{DropReason, ParseError};

/// Every chunk type the decoder gives a variant of its own (0xff ends a packet instead).
const KNOWN_KINDS: [u8; 18] = [
    kind::PADDING_0,
    kind::PING,
    kind::SESSION_CLOSE_REQUEST,
    kind::FORWARDED_IHELLO,
    kind::USER_DATA,
    kind::NEXT_USER_DATA,
    kind::BUFFER_PROBE,
    kind::IHELLO,
    kind::IIKEYING,
    kind::PING_REPLY,
    kind::SESSION_CLOSE_ACK,
    kind::ACK_BITMAP,
    kind::ACK_RANGES,
    kind::FLOW_EXCEPTION,
    kind::RHELLO,
    kind::REDIRECT,
    kind::RIKEYING,
    kind::RHELLO_COOKIE_CHANGE,
];

const ROUND_TRIP_CASES: u32 = 256;
const NO_PANIC_CASES: u32 = 2000;

// ---------------------------------------------------------------------------------------
// Owned descriptions of chunks (chunks borrow their byte fields, strategies must own them).

#[derive(Debug, Clone)]
struct FragmentSpec {
    fragmentation: Fragmentation,
    abandon: bool,
    final_fragment: bool,
    /// `Some((metadata, return_flow))` sets the options flag.
    options: Option<(Option<Vec<u8>>, Option<u64>)>,
    data: Vec<u8>,
}

impl FragmentSpec {
    fn fragment(&self) -> UserData<'_> {
        UserData {
            fragmentation: self.fragmentation,
            abandon: self.abandon,
            final_fragment: self.final_fragment,
            options: self
                .options
                .as_ref()
                .map(|(metadata, return_flow)| DataOptions {
                    metadata: metadata.as_deref(),
                    return_flow: *return_flow,
                    unknown_mandatory: false,
                }),
            data: &self.data,
        }
    }
}

#[derive(Debug, Clone)]
enum Spec {
    Padding(usize),
    IHello {
        epd: Vec<u8>,
        tag: Vec<u8>,
    },
    ForwardedIHello {
        epd: Vec<u8>,
        reply_address: EncodedAddress,
        tag: Vec<u8>,
    },
    RHello {
        tag: Vec<u8>,
        cookie: Vec<u8>,
        certificate: Vec<u8>,
    },
    Redirect {
        tag: Vec<u8>,
        addresses: Vec<EncodedAddress>,
    },
    RHelloCookieChange {
        old_cookie: Vec<u8>,
        new_cookie: Vec<u8>,
    },
    IIKeying {
        session_id: u32,
        cookie: Vec<u8>,
        certificate: Vec<u8>,
        keying: Vec<u8>,
        signature: Vec<u8>,
    },
    RIKeying {
        session_id: u32,
        keying: Vec<u8>,
        signature: Vec<u8>,
    },
    Ping(Vec<u8>),
    PingReply(Vec<u8>),
    UserData {
        flow_id: u64,
        sequence: u64,
        fsn_offset: u64,
        fragment: FragmentSpec,
    },
    NextUserData(FragmentSpec),
    AckBitmap {
        flow_id: u64,
        buffer_blocks: u64,
        cumulative_ack: u64,
        bitmap: Vec<u8>,
    },
    AckRanges {
        flow_id: u64,
        buffer_blocks: u64,
        cumulative_ack: u64,
        ranges: Vec<AckRange>,
    },
    BufferProbe(u64),
    FlowException(u64, u64),
    SessionCloseRequest,
    SessionCloseAck,
    Unknown(u8, Vec<u8>),
}

impl Spec {
    fn chunk(&self) -> Chunk<'_> {
        match self {
            Spec::Padding(n) => Chunk::Padding(*n),
            Spec::IHello { epd, tag } => Chunk::IHello { epd, tag },
            Spec::ForwardedIHello {
                epd,
                reply_address,
                tag,
            } => Chunk::ForwardedIHello {
                epd,
                reply_address: *reply_address,
                tag,
            },
            Spec::RHello {
                tag,
                cookie,
                certificate,
            } => Chunk::RHello {
                tag,
                cookie,
                certificate,
            },
            Spec::Redirect { tag, addresses } => Chunk::Redirect {
                tag,
                addresses: addresses.clone(),
            },
            Spec::RHelloCookieChange {
                old_cookie,
                new_cookie,
            } => Chunk::RHelloCookieChange {
                old_cookie,
                new_cookie,
            },
            Spec::IIKeying {
                session_id,
                cookie,
                certificate,
                keying,
                signature,
            } => Chunk::IIKeying {
                initiator_session_id: *session_id,
                cookie,
                certificate,
                keying_component: keying,
                signature,
            },
            Spec::RIKeying {
                session_id,
                keying,
                signature,
            } => Chunk::RIKeying {
                responder_session_id: *session_id,
                keying_component: keying,
                signature,
            },
            Spec::Ping(m) => Chunk::Ping { message: m },
            Spec::PingReply(m) => Chunk::PingReply { message: m },
            Spec::UserData {
                flow_id,
                sequence,
                fsn_offset,
                fragment,
            } => Chunk::UserData {
                flow_id: *flow_id,
                sequence: *sequence,
                fsn_offset: *fsn_offset,
                fragment: fragment.fragment(),
            },
            Spec::NextUserData(f) => Chunk::NextUserData {
                fragment: f.fragment(),
            },
            Spec::AckBitmap {
                flow_id,
                buffer_blocks,
                cumulative_ack,
                bitmap,
            } => Chunk::AckBitmap {
                flow_id: *flow_id,
                buffer_blocks: *buffer_blocks,
                cumulative_ack: *cumulative_ack,
                bitmap,
            },
            Spec::AckRanges {
                flow_id,
                buffer_blocks,
                cumulative_ack,
                ranges,
            } => Chunk::AckRanges {
                flow_id: *flow_id,
                buffer_blocks: *buffer_blocks,
                cumulative_ack: *cumulative_ack,
                ranges: ranges.clone(),
            },
            Spec::BufferProbe(f) => Chunk::BufferProbe { flow_id: *f },
            Spec::FlowException(f, c) => Chunk::FlowException {
                flow_id: *f,
                code: *c,
            },
            Spec::SessionCloseRequest => Chunk::SessionCloseRequest,
            Spec::SessionCloseAck => Chunk::SessionCloseAck,
            Spec::Unknown(k, body) => Chunk::Unknown { kind: *k, body },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// VLU-carried values: small ones (one or two bytes, the common case on the wire), values
/// at the 7-bit group boundaries, and anything up to `u64::MAX`.
fn vlu_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300,
        (1u32..=9, -1i64..=1).prop_map(|(groups, d)| (1u64 << (7 * groups)).wrapping_add_signed(d)),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn origin() -> impl Strategy<Value = AddressOrigin> {
    prop_oneof![
        Just(AddressOrigin::Unknown),
        Just(AddressOrigin::Local),
        Just(AddressOrigin::Remote),
        Just(AddressOrigin::Relay),
    ]
}

fn address_v4() -> impl Strategy<Value = EncodedAddress> {
    (any::<[u8; 4]>(), any::<u16>(), origin()).prop_map(|(ip, port, o)| {
        EncodedAddress::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port), o)
    })
}

fn address_v6() -> impl Strategy<Value = EncodedAddress> {
    (any::<[u8; 16]>(), any::<u16>(), origin()).prop_map(|(ip, port, o)| {
        EncodedAddress::new(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port), o)
    })
}

fn address() -> impl Strategy<Value = EncodedAddress> {
    prop_oneof![address_v4(), address_v6()]
}

fn fragmentation() -> impl Strategy<Value = Fragmentation> {
    prop_oneof![
        Just(Fragmentation::Whole),
        Just(Fragmentation::Begin),
        Just(Fragmentation::End),
        Just(Fragmentation::Middle),
    ]
}

fn fragment() -> impl Strategy<Value = FragmentSpec> {
    (
        fragmentation(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((
            proptest::option::of(bytes(40)),
            proptest::option::of(vlu_value()),
        )),
        bytes(64),
    )
        .prop_map(
            |(fragmentation, abandon, final_fragment, options, data)| FragmentSpec {
                fragmentation,
                abandon,
                final_fragment,
                options,
                data,
            },
        )
}

fn unknown_kind() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("a type with a variant of its own", |k| {
        !KNOWN_KINDS.contains(k) && *k != kind::PADDING_FF
    })
}

fn chunk_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (0usize..64).prop_map(Spec::Padding),
        (bytes(48), bytes(32)).prop_map(|(epd, tag)| Spec::IHello { epd, tag }),
        (bytes(48), address(), bytes(32)).prop_map(|(epd, reply_address, tag)| {
            Spec::ForwardedIHello {
                epd,
                reply_address,
                tag,
            }
        }),
        (bytes(32), bytes(80), bytes(160)).prop_map(|(tag, cookie, certificate)| Spec::RHello {
            tag,
            cookie,
            certificate
        }),
        (bytes(32), vec(address(), 0..5))
            .prop_map(|(tag, addresses)| Spec::Redirect { tag, addresses }),
        (bytes(80), bytes(80)).prop_map(|(old_cookie, new_cookie)| Spec::RHelloCookieChange {
            old_cookie,
            new_cookie
        }),
        (any::<u32>(), bytes(80), bytes(200), bytes(200), bytes(40)).prop_map(
            |(session_id, cookie, certificate, keying, signature)| Spec::IIKeying {
                session_id,
                cookie,
                certificate,
                keying,
                signature
            }
        ),
        (any::<u32>(), bytes(200), bytes(40)).prop_map(|(session_id, keying, signature)| {
            Spec::RIKeying {
                session_id,
                keying,
                signature,
            }
        }),
        bytes(64).prop_map(Spec::Ping),
        bytes(64).prop_map(Spec::PingReply),
        (vlu_value(), vlu_value(), any::<u64>(), fragment()).prop_map(
            |(flow_id, sequence, off, fragment)| {
                // The forward sequence number offset never exceeds the sequence number.
                let fsn_offset = if sequence == u64::MAX {
                    off
                } else {
                    off % (sequence + 1)
                };
                Spec::UserData {
                    flow_id,
                    sequence,
                    fsn_offset,
                    fragment,
                }
            }
        ),
        fragment().prop_map(Spec::NextUserData),
        (vlu_value(), vlu_value(), vlu_value(), bytes(32)).prop_map(
            |(flow_id, buffer_blocks, cumulative_ack, bitmap)| Spec::AckBitmap {
                flow_id,
                buffer_blocks,
                cumulative_ack,
                bitmap
            }
        ),
        (
            vlu_value(),
            vlu_value(),
            vlu_value(),
            vec(
                (vlu_value(), vlu_value()).prop_map(|(h, r)| AckRange {
                    holes_minus_one: h,
                    received_minus_one: r
                }),
                0..8
            )
        )
            .prop_map(
                |(flow_id, buffer_blocks, cumulative_ack, ranges)| Spec::AckRanges {
                    flow_id,
                    buffer_blocks,
                    cumulative_ack,
                    ranges
                }
            ),
        vlu_value().prop_map(Spec::BufferProbe),
        (vlu_value(), vlu_value()).prop_map(|(f, c)| Spec::FlowException(f, c)),
        Just(Spec::SessionCloseRequest),
        Just(Spec::SessionCloseAck),
        (unknown_kind(), bytes(64)).prop_map(|(k, b)| Spec::Unknown(k, b)),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Initiator),
        Just(Mode::Responder),
        Just(Mode::Startup)
    ]
}

fn header() -> impl Strategy<Value = PacketHeader> {
    (
        mode(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(mode, tc, tcr, ts, tse)| PacketHeader {
            mode,
            time_critical: tc,
            time_critical_reverse: tcr,
            timestamp: ts,
            timestamp_echo: tse,
        })
}

/// Header and chunks, encoded. Returns the plaintext packet.
fn encode_packet(header: &PacketHeader, chunks: &[Chunk<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    header.emit(&mut out);
    for c in chunks {
        assert!(c.emit(&mut out), "{c:?} fits in a chunk");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Decoders on arbitrary input: exercised fully, results checked for internal consistency.

/// Parses a decrypted packet and walks all of its chunks; every chunk that parses must
/// re-encode to something that parses back to the same chunk.
fn walk_packet(packet: &[u8]) {
    let Ok(view) = PacketView::parse(packet) else {
        return;
    };
    assert!(view.chunks.len() < packet.len());
    let mut count = 0;
    for chunk in view.chunks() {
        count += 1;
        assert!(
            count <= packet.len() / 3 + 1,
            "the chunk iterator makes progress"
        );
        if let Ok(c) = chunk {
            check_canonical(&c);
        }
    }
}

/// `parse(emit(c)) == c` for any chunk the decoder produced, except that the flag saying
/// "an option we could not understand was present" is (by design) not re-encoded.
fn check_canonical(c: &Chunk<'_>) {
    let mut body = Vec::new();
    c.emit_body(&mut body);
    assert_eq!(c.encoded_len(), body.len() + 3);
    let again = Chunk::parse(c.kind(), &body)
        .unwrap_or_else(|e| panic!("{c:?} re-encodes to {body:02x?}: {e}"));
    assert_eq!(
        forget_unknown_options(again),
        forget_unknown_options(c.clone())
    );
}

fn forget_unknown_options(mut c: Chunk<'_>) -> Chunk<'_> {
    if let Chunk::UserData { fragment, .. } | Chunk::NextUserData { fragment } = &mut c {
        if let Some(o) = &mut fragment.options {
            o.unknown_mandatory = false;
        }
    }
    c
}

fn no_panic_on(bytes: &[u8]) {
    // Multiplex layer.
    let sid = unscramble_session_id(bytes);
    assert_eq!(sid.is_some(), bytes.len() >= 12);
    if let Some(sid) = sid {
        let mut copy = bytes.to_vec();
        scramble_session_id(&mut copy, sid);
        assert_eq!(
            copy, bytes,
            "scrambling the unscrambled id gives the datagram back"
        );
    }

    // Startup cipher on the bytes as they are, and on the bytes after a session id.
    for ciphertext in [bytes, bytes.get(4..).unwrap_or(&[])] {
        let mut out = Vec::new();
        match PacketCipher::startup().open(ciphertext, &mut out) {
            Ok(range) => {
                assert!(range.start < range.end && range.end <= out.len());
                walk_packet(&out[range]);
            }
            Err(e) => assert!(
                matches!(
                    e,
                    DropReason::BadLength | DropReason::BadAuthentication | DropReason::Malformed
                ),
                "{e:?}"
            ),
        }
    }

    // Packet and chunk decoders directly on the bytes.
    walk_packet(bytes);
    for c in ChunkIter::new(bytes).flatten() {
        check_canonical(&c);
    }
    for k in 0..=255u8 {
        if let Ok(c) = Chunk::parse(k, bytes) {
            assert_eq!(c.kind(), k);
            check_canonical(&c);
        }
    }

    // Certificates and endpoint discriminators.
    if let Ok(cert) = Certificate::parse(bytes) {
        assert_eq!(cert.raw(), bytes);
        let _ = cert.peer_id();
        for g in [2, 14, 16] {
            let _ = cert.offers_group(g);
        }
        let _ = cert.is_selected_by(&EndpointDiscriminator::for_uri("rtmfp://x/live"));
        let _ = cert.is_selected_by(&EndpointDiscriminator::for_peer(PeerId([0; 32])));
    }
    if let Ok(epd) = EndpointDiscriminator::parse(bytes) {
        assert_eq!(
            EndpointDiscriminator::parse(&epd.encode()),
            Ok(epd.clone()),
            "EPD re-encodes"
        );
    }

    // VLUs and option lists.
    let mut r = Reader::new(bytes);
    while let Ok(v) = r.vlu() {
        assert!(vlu_len(v) <= 10);
    }
    for (kind, value) in options(bytes).flatten() {
        let mut again = Vec::new();
        put_option(&mut again, kind, value);
        assert_eq!(Reader::new(&again).option(), Ok(Some((kind, value))));
    }
    let _ = find_option(bytes, 0x15);
    let mut r = Reader::new(bytes);
    while let Ok(Some(_)) = r.option() {}
    let _ = Reader::new(bytes).vlu_field();
}

/// Byte strings with some structure: `[type][len][body]` runs whose lengths are usually
/// right, behind a header flags byte, so the chunk decoders get past the framing.
fn chunky_bytes() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), vec((any::<u8>(), bytes(48), 0u8..8), 0..6)).prop_map(|(flags, runs)| {
        let mut out = vec![flags];
        for (k, body, lie) in runs {
            out.push(k);
            let len = if lie == 0 { body.len() + 5 } else { body.len() };
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&body);
        }
        out
    })
}

// ---------------------------------------------------------------------------------------
// Round trips.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ROUND_TRIP_CASES))]

    #[test]
    fn every_chunk_variant_round_trips(spec in chunk_spec()) {
        let chunk = spec.chunk();
        let mut out = vec![0xaa];
        prop_assert!(chunk.emit(&mut out));
        let encoded = &out[1..];
        prop_assert_eq!(encoded.len(), chunk.encoded_len());
        prop_assert_eq!(encoded[0], chunk.kind());
        prop_assert_eq!(usize::from(u16::from_be_bytes([encoded[1], encoded[2]])), encoded.len() - 3);
        prop_assert_eq!(Chunk::parse(chunk.kind(), &encoded[3..]), Ok(chunk.clone()));
        let mut it = ChunkIter::new(encoded);
        prop_assert_eq!(it.next(), Some(Ok(chunk.clone())));
        prop_assert_eq!(it.next(), None);
    }

    #[test]
    fn packets_of_chunks_round_trip_through_the_startup_cipher(
        header in header(),
        specs in vec(chunk_spec(), 0..8),
        padding in 0usize..40,
    ) {
        let chunks: Vec<Chunk<'_>> = specs.iter().map(Spec::chunk).collect();
        let mut packet = encode_packet(&header, &chunks);
        let used = packet.len();
        packet.resize(used + padding, 0xff);

        let view = PacketView::parse(&packet).unwrap();
        prop_assert_eq!(view.header, header);
        let parsed: Vec<Chunk<'_>> = view.chunks().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&parsed, &chunks);

        let mut datagram = vec![0u8; 4];
        PacketCipher::startup().seal(&packet, &mut datagram);
        prop_assert_eq!((datagram.len() - 4) % 16, 0);
        scramble_session_id(&mut datagram, 0);
        prop_assert_eq!(unscramble_session_id(&datagram), Some(0));
        let mut out = Vec::new();
        let range = PacketCipher::startup().open(&datagram[4..], &mut out).unwrap();
        let opened = &out[range];
        prop_assert_eq!(&opened[..packet.len()], &packet[..]);
        prop_assert!(opened[packet.len()..].iter().all(|&b| b == 0xff));
        let view = PacketView::parse(opened).unwrap();
        prop_assert_eq!(view.header, header);
        let reparsed: Vec<Chunk<'_>> = view.chunks().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(reparsed, chunks);
    }

    #[test]
    fn vlu_round_trips(v in vlu_value(), tail in bytes(4)) {
        let mut out = Vec::new();
        put_vlu(&mut out, v);
        prop_assert_eq!(out.len(), vlu_len(v));
        prop_assert!(out.len() <= 10);
        prop_assert!(out.len() == 1 || out[0] != 0x80, "shortest encoding");
        prop_assert!(out[..out.len() - 1].iter().all(|b| b & 0x80 != 0));
        prop_assert_eq!(out[out.len() - 1] & 0x80, 0);
        out.extend_from_slice(&tail);
        let mut r = Reader::new(&out);
        prop_assert_eq!(r.vlu(), Ok(v));
        prop_assert_eq!(r.rest(), &tail[..]);
        // Every strict prefix is truncated, not a different value.
        for cut in 0..vlu_len(v) {
            prop_assert_eq!(Reader::new(&out[..cut]).vlu(), Err(ParseError::Truncated));
        }
    }

    #[test]
    fn option_lists_round_trip(opts in vec((vlu_value(), bytes(40)), 0..6), after in vec((vlu_value(), bytes(8)), 0..3)) {
        let mut out = Vec::new();
        for (k, v) in &opts {
            put_option(&mut out, *k, v);
        }
        put_marker(&mut out);
        for (k, v) in &after {
            put_option(&mut out, *k, v);
        }
        let parsed: Vec<(u64, &[u8])> = options(&out).collect::<Result<_, _>>().unwrap();
        let expected: Vec<(u64, &[u8])> = opts.iter().map(|(k, v)| (*k, &v[..])).collect();
        prop_assert_eq!(parsed, expected);
        if let Some((k, v)) = opts.first() {
            prop_assert_eq!(find_option(&out, *k), Some(&v[..]));
        }
    }

    #[test]
    fn vlu_options_and_fields_round_trip(kind in vlu_value(), value in vlu_value(), field in bytes(300)) {
        let mut out = Vec::new();
        put_option_vlu(&mut out, kind, value);
        put_vlu_field(&mut out, &field);
        let mut r = Reader::new(&out);
        let (k, v) = r.option().unwrap().unwrap();
        prop_assert_eq!(k, kind);
        prop_assert_eq!(Reader::new(v).vlu(), Ok(value));
        prop_assert_eq!(r.vlu_field(), Ok(&field[..]));
        prop_assert!(r.is_empty());
    }

    #[test]
    fn ipv4_addresses_round_trip(a in address_v4(), tail in bytes(4)) {
        let mut out = Vec::new();
        a.emit(&mut out);
        prop_assert_eq!(out.len(), 1 + 4 + 2);
        prop_assert_eq!(out[0] & 0x80, 0);
        prop_assert_eq!(out[0] & 0x03, a.origin as u8);
        out.extend_from_slice(&tail);
        let mut r = Reader::new(&out);
        prop_assert_eq!(EncodedAddress::parse(&mut r), Ok(a));
        prop_assert_eq!(r.rest(), &tail[..]);
    }

    #[test]
    fn ipv6_addresses_round_trip(a in address_v6(), tail in bytes(4)) {
        let mut out = Vec::new();
        a.emit(&mut out);
        prop_assert_eq!(out.len(), 1 + 16 + 2);
        prop_assert_eq!(out[0] & 0x80, 0x80);
        prop_assert_eq!(out[0] & 0x03, a.origin as u8);
        out.extend_from_slice(&tail);
        let mut r = Reader::new(&out);
        prop_assert_eq!(EncodedAddress::parse(&mut r), Ok(a));
        prop_assert_eq!(r.rest(), &tail[..]);
    }

    #[test]
    fn endpoint_discriminators_round_trip(
        hostname in proptest::option::of(bytes(32)),
        ancillary in proptest::option::of(bytes(64)),
        fingerprint in proptest::option::of(any::<[u8; 32]>()),
    ) {
        let epd = EndpointDiscriminator { required_hostname: hostname, ancillary_data: ancillary, fingerprint: fingerprint.map(PeerId) };
        let none = epd.required_hostname.is_none() && epd.ancillary_data.is_none() && epd.fingerprint.is_none();
        let parsed = EndpointDiscriminator::parse(&epd.encode());
        if none {
            prop_assert_eq!(parsed, Err(ParseError::BadValue));
        } else {
            prop_assert_eq!(parsed, Ok(epd));
        }
    }

    #[test]
    fn certificates_keep_groups_keys_and_fingerprint(
        groups in vec(vlu_value(), 0..4),
        keys in vec((vlu_value(), bytes(64)), 0..3),
        randomness in proptest::option::of(bytes(64)),
        trailer in vec((vlu_value(), bytes(16)), 0..3),
    ) {
        let mut canonical = Vec::new();
        for (g, k) in &keys {
            let mut v = Vec::new();
            put_vlu(&mut v, *g);
            v.extend_from_slice(k);
            put_option(&mut canonical, 0x1d, &v);
        }
        for g in &groups {
            put_option_vlu(&mut canonical, 0x15, *g);
        }
        if let Some(r) = &randomness {
            put_option(&mut canonical, 0x0e, r);
        }
        let mut raw = canonical.clone();
        if !trailer.is_empty() {
            put_marker(&mut raw);
            for (k, v) in &trailer {
                put_option(&mut raw, *k, v);
            }
        }
        let cert = Certificate::parse(&raw).unwrap();
        prop_assert_eq!(&cert.supported_groups, &groups);
        prop_assert_eq!(&cert.static_keys, &keys);
        prop_assert_eq!(cert.raw(), &raw[..]);
        // The peer ID covers the options before the marker only.
        prop_assert_eq!(cert.peer_id(), Certificate::parse(&canonical).unwrap().peer_id());
    }
}

// ---------------------------------------------------------------------------------------
// Robustness: nothing panics, tampering is caught.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(NO_PANIC_CASES))]

    #[test]
    fn random_bytes_never_panic(bytes in bytes(600)) {
        no_panic_on(&bytes);
    }

    #[test]
    fn random_whole_blocks_never_panic(blocks in 1usize..40, seed in bytes(64)) {
        // Whole AES blocks get past the length check into decryption and the checksum.
        let len = 4 + 16 * blocks;
        let bytes: Vec<u8> = (0..len).map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(0) ^ (i as u8)).collect();
        no_panic_on(&bytes);
    }

    #[test]
    fn structured_random_chunks_never_panic(bytes in chunky_bytes()) {
        no_panic_on(&bytes);
        // The same bytes as a valid startup packet: sealed, they must open to themselves.
        let mut sealed = vec![0u8; 4];
        PacketCipher::startup().seal(&bytes, &mut sealed);
        no_panic_on(&sealed);
        let mut out = Vec::new();
        let range = PacketCipher::startup().open(&sealed[4..], &mut out).unwrap();
        prop_assert_eq!(&out[range][..bytes.len()], &bytes[..]);
    }

    #[test]
    fn tampered_sealed_packets_are_rejected_or_still_parse(
        header in header(),
        specs in vec(chunk_spec(), 0..5),
        at in any::<usize>(),
        mask in 1u8..=255,
    ) {
        let chunks: Vec<Chunk<'_>> = specs.iter().map(Spec::chunk).collect();
        let packet = encode_packet(&header, &chunks);
        let mut sealed = Vec::new();
        PacketCipher::startup().seal(&packet, &mut sealed);
        let i = at % sealed.len();
        sealed[i] ^= mask;
        let mut out = Vec::new();
        match PacketCipher::startup().open(&sealed, &mut out) {
            // The length is unchanged, so only the checksum can object.
            Err(e) => prop_assert_eq!(e, DropReason::BadAuthentication),
            // A 1 in 65536 collision: whatever came out must still decode without panic.
            Ok(range) => walk_packet(&out[range]),
        }
    }

    #[test]
    fn random_chunk_bodies_of_every_type_never_panic(body in bytes(120)) {
        for k in 0..=255u8 {
            let mut framed = vec![k];
            framed.extend_from_slice(&(body.len() as u16).to_be_bytes());
            framed.extend_from_slice(&body);
            let direct = Chunk::parse(k, &body);
            if k == kind::PADDING_FF {
                prop_assert_eq!(ChunkIter::new(&framed).next(), None, "0xff ends the packet");
            } else {
                prop_assert_eq!(ChunkIter::new(&framed).next(), Some(direct.clone()));
            }
            if let Ok(c) = direct {
                check_canonical(&c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Edges the strategies reach rarely or never.

#[test]
fn each_variant_is_generated() {
    // Guards the strategy: a variant dropped from `chunk_spec` would silently go untested.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = chunk_spec();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let spec = strategy.new_tree(&mut runner).unwrap().current();
        let c = spec.chunk();
        seen.insert(if matches!(c, Chunk::Unknown { .. }) {
            0x100
        } else {
            u16::from(c.kind())
        });
    }
    assert_eq!(seen.len(), 19, "all 19 Chunk variants");
}

#[test]
fn oversized_chunks_are_refused_whole() {
    let big = vec![7u8; 65535];
    let mut out = vec![1, 2, 3];
    assert!(Chunk::Ping { message: &big }.emit(&mut out));
    assert_eq!(out.len(), 3 + 3 + 65535);
    let too_big = vec![7u8; 65536];
    let mut out = vec![1, 2, 3];
    assert!(!Chunk::Ping { message: &too_big }.emit(&mut out));
    assert_eq!(out, [1, 2, 3], "nothing appended");
}

#[test]
fn user_data_with_fsn_offset_past_sequence_is_refused() {
    let mut body = vec![0x00];
    put_vlu(&mut body, 2); // flow
    put_vlu(&mut body, 5); // sequence
    put_vlu(&mut body, 6); // offset > sequence
    assert_eq!(
        Chunk::parse(kind::USER_DATA, &body),
        Err(ParseError::BadValue)
    );
}

#[test]
fn unknown_mandatory_user_data_option_is_flagged() {
    let mut body = vec![0x80]; // options present
    put_vlu(&mut body, 1);
    put_vlu(&mut body, 1);
    put_vlu(&mut body, 0);
    put_option(&mut body, 0x05, b"?"); // below the mandatory cutoff, unknown
    put_option(&mut body, 0x2001, b"ignored"); // above it: ignored
    put_marker(&mut body);
    body.extend_from_slice(b"data");
    let Ok(Chunk::UserData { fragment, .. }) = Chunk::parse(kind::USER_DATA, &body) else {
        panic!()
    };
    let options = fragment.options.unwrap();
    assert!(options.unknown_mandatory);
    assert_eq!(fragment.data, b"data");
}

#[test]
fn vlu_wider_than_64_bits_is_refused() {
    // u64::MAX is 0x81 then eight 0xff then 0x7f; one more bit is an overflow.
    let mut max = Vec::new();
    put_vlu(&mut max, u64::MAX);
    assert_eq!(max.len(), 10);
    assert_eq!(max[0], 0x81);
    let mut wider = max.clone();
    wider[0] = 0x82;
    assert_eq!(Reader::new(&wider).vlu(), Err(ParseError::VluOverflow));
}

/// The comment in `Certificate::parse` says the options after the marker must still be
/// well-formed; a certificate whose trailing option claims more bytes than there are
/// should therefore be refused.
#[test]
fn certificate_with_malformed_options_after_the_marker_is_refused() {
    // accepts-ancillary-data option, marker, then an option announcing 5 bytes with 1 left.
    let raw = [0x01, 0x0a, 0x00, 0x05, 0x01];
    assert!(
        Certificate::parse(&raw).is_err(),
        "Certificate::parse accepted {raw:02x?}: the options after the marker are never checked"
    );
}

#[test]
fn peer_id_hex_round_trips_and_rejects_non_hex() {
    let id = PeerId(std::array::from_fn(|i| (i * 37 + 5) as u8));
    assert_eq!(PeerId::from_hex(&id.to_hex()), Some(id));
    assert_eq!(PeerId::from_hex(&id.to_hex().to_uppercase()), Some(id));
    assert_eq!(PeerId::from_hex(&id.to_hex()[1..]), None, "63 digits");
    assert_eq!(PeerId::from_hex(&"g0".repeat(32)), None);
    assert_eq!(
        PeerId::from_hex(&"é".repeat(32)),
        None,
        "64 bytes that are not 64 digits"
    );
}

/// `u8::from_str_radix` accepts a leading `+`, so `PeerId::from_hex` takes "+f" for "0f".
#[test]
fn peer_id_hex_refuses_plus_signs() {
    let plus = "+f".repeat(32);
    assert_eq!(
        PeerId::from_hex(&plus),
        None,
        "{plus:?} is not 64 hex digits"
    );
}

// ---------------------------------------------------------------------------------------
// Session sequence numbers (RFC 7425 §4.6.6), with packets built by hand so the sequence
// number can be any VLU.

fn seal_with_sequence(key: &[u8; 16], sequence: u64, packet: &[u8]) -> Vec<u8> {
    use aes::cipher::KeyInit;
    let mut plain = Vec::new();
    put_vlu(&mut plain, sequence);
    let checksum_at = plain.len();
    plain.extend_from_slice(&[0, 0]);
    let body_at = plain.len();
    plain.extend_from_slice(packet);
    plain.resize(plain.len().div_ceil(16) * 16, 0xff);
    let sum = internet_checksum(&plain[body_at..]);
    plain[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
    cbc_encrypt_in_place(&aes::Aes128::new(key.into()), &mut plain);
    plain
}

fn sequenced_receiver(key: &[u8; 16]) -> PacketCipher {
    let protection = PacketProtection {
        hmac_len: None,
        sequence_numbers: true,
    };
    PacketCipher::new(key, key).with_protection(protection, b"", protection, b"")
}

#[test]
fn hand_sealed_sequenced_packets_match_the_codec() {
    let key = [0x42; 16];
    let mut tx = sequenced_receiver(&key);
    for sequence in 0..3u64 {
        let packet = [0x0d, 0x12, 0x34, sequence as u8];
        let mut sealed = Vec::new();
        tx.seal(&packet, &mut sealed);
        assert_eq!(sealed, seal_with_sequence(&key, sequence, &packet));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ROUND_TRIP_CASES))]

    #[test]
    fn replayed_sequence_numbers_are_refused(first in 0..u64::MAX, later in 0..u64::MAX) {
        let key = [0x17; 16];
        let mut rx = sequenced_receiver(&key);
        let a = seal_with_sequence(&key, first, b"\x0dfirst");
        let b = seal_with_sequence(&key, later, b"\x0dlater");
        let mut out = Vec::new();
        prop_assert!(rx.open(&a, &mut out).is_ok());
        prop_assert_eq!(rx.open(&a, &mut out), Err(DropReason::Replayed));
        match rx.open(&b, &mut out) {
            Ok(_) => prop_assert_ne!(first, later),
            Err(e) => prop_assert_eq!(e, DropReason::Replayed),
        }
        prop_assert_eq!(rx.open(&b, &mut out), Err(DropReason::Replayed));
        prop_assert_eq!(rx.open(&a, &mut out), Err(DropReason::Replayed));
    }
}

/// The largest sequence number a VLU can carry cannot be tracked by the window (it keeps
/// highest + 1), so the receiver refuses it; replay protection stays on for what follows.
#[test]
fn sequence_number_u64_max_does_not_disable_replay_protection() {
    let key = [0x17; 16];
    let mut rx = sequenced_receiver(&key);
    let zero = seal_with_sequence(&key, 0, b"\x0dzero");
    let max = seal_with_sequence(&key, u64::MAX, b"\x0dmax");
    let one = seal_with_sequence(&key, 1, b"\x0done");
    let mut out = Vec::new();
    assert!(rx.open(&zero, &mut out).is_ok());
    assert_eq!(
        rx.open(&max, &mut out),
        Err(DropReason::Replayed),
        "u64::MAX is refused"
    );
    assert_eq!(
        rx.open(&zero, &mut out),
        Err(DropReason::Replayed),
        "old packets still refused"
    );
    assert!(rx.open(&one, &mut out).is_ok());
    assert_eq!(rx.open(&one, &mut out), Err(DropReason::Replayed));
}
