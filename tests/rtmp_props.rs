//! Property tests for the RTMP chunk stream and FLV codecs: whatever messages go in, with
//! whatever chunk size and however the bytes are cut on the way, the same messages come
//! out; and no input makes a decoder panic.

use proptest::collection::vec;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use rtmfp_edge::flv::{
    AudioTagHeader, FlvHeader, FlvReader, FlvTag, FlvWriter, TagType, VideoTagHeader,
};
use rtmfp_edge::rtmp::message::build_aggregate;
use rtmfp_edge::rtmp::{
    split_aggregate, ChunkDecoder, ChunkEncoder, ConnectionConfig, Event, MessageType,
    ProtocolControl, RtmpConnection, RtmpMessage, UserControlEvent,
};

/// Cuts `bytes` at the given fractions (each in 0..1000 per mille) into pieces.
fn cut<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| bytes.len() * c as usize / 1000)
        .collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

fn chunk_stream_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        2u32..=63,
        64u32..=319,
        320u32..=65599,
        Just(3u32),
        Just(4u32)
    ]
}

/// Message types the decoder passes through untouched (Set Chunk Size and Abort would
/// change how the decoder reads what follows).
fn message_type() -> impl Strategy<Value = MessageType> {
    prop_oneof![
        Just(MessageType::Audio),
        Just(MessageType::Video),
        Just(MessageType::DataAmf0),
        Just(MessageType::CommandAmf0),
        Just(MessageType::Acknowledgement),
        (23u8..=255).prop_map(MessageType::from),
    ]
}

fn timestamp() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..100_000, 0xff_fff0u32..0x100_0010, any::<u32>()]
}

fn message() -> impl Strategy<Value = (u32, RtmpMessage)> {
    (
        chunk_stream_id(),
        message_type(),
        timestamp(),
        prop_oneof![Just(0u32), Just(1u32), any::<u32>()],
        vec(any::<u8>(), 0..700),
    )
        .prop_map(|(csid, t, ts, sid, payload)| (csid, RtmpMessage::new(t, ts, sid, payload)))
}

/// A message sequence where, as in real streams, consecutive messages on a chunk stream
/// often share type, length and timestamp spacing, so every header format gets used.
fn message_sequence() -> impl Strategy<Value = Vec<(u32, RtmpMessage)>> {
    vec((message(), 0u8..4, 0u32..100), 1..40).prop_map(|items| {
        let mut out: Vec<(u32, RtmpMessage)> = Vec::new();
        for ((csid, msg), repeat, delta) in items {
            out.push((csid, msg.clone()));
            let mut last = msg;
            for _ in 0..repeat {
                let mut next = last.clone();
                next.timestamp = next.timestamp.wrapping_add(delta);
                out.push((csid, next.clone()));
                last = next;
            }
        }
        out
    })
}

fn chunk_size() -> impl Strategy<Value = u32> {
    prop_oneof![
        1u32..=300,
        Just(128u32),
        300u32..=70_000,
        Just(0x7fff_ffffu32)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_messages_with_any_chunk_size_decode_back_in_any_slicing(
        msgs in message_sequence(),
        size in chunk_size(),
        cuts in vec(0u16..1000, 0..40),
    ) {
        let mut enc = ChunkEncoder::new();
        let mut wire = Vec::new();
        enc.encode(2, &ProtocolControl::SetChunkSize(size).to_message(), &mut wire).unwrap();
        enc.set_chunk_size(size).unwrap();
        for (csid, m) in &msgs {
            enc.encode(*csid, m, &mut wire).unwrap();
        }
        let mut dec = ChunkDecoder::default();
        for piece in cut(&wire, &cuts) {
            dec.feed(piece).unwrap();
        }
        prop_assert_eq!(dec.poll_message().unwrap().type_id, MessageType::SetChunkSize);
        let got: Vec<RtmpMessage> = std::iter::from_fn(|| dec.poll_message()).collect();
        let want: Vec<RtmpMessage> = msgs.into_iter().map(|(_, m)| m).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn connections_carry_messages_across_a_handshake_in_any_slicing(
        msgs in vec(message(), 1..15),
        size in 1u32..=5000,
        cuts in vec(0u16..1000, 0..30),
        digest in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut config = ConnectionConfig::default();
        if digest {
            config.client_handshake = rtmfp_edge::rtmp::ClientHandshakeMode::Digest;
        }
        let mut client = RtmpConnection::client(config, &mut rng);
        let mut server = RtmpConnection::server(config, &mut rng);
        server.feed(&client.take_output()).unwrap();
        client.feed(&server.take_output()).unwrap();
        client.set_chunk_size(size).unwrap();
        // Protocol control bodies here are random, so not valid; keep to other types.
        let msgs: Vec<(u32, RtmpMessage)> = msgs
            .into_iter()
            .filter(|(_, m)| !m.type_id.is_protocol_control())
            .collect();
        for (_, m) in &msgs {
            client.send_message(m).unwrap();
        }
        let wire = client.take_output();
        for piece in cut(&wire, &cuts) {
            server.feed(piece).unwrap();
        }
        let got: Vec<RtmpMessage> = std::iter::from_fn(|| server.poll_event())
            .filter_map(|e| match e { Event::Message(m) => Some(m), _ => None })
            .collect();
        let want: Vec<RtmpMessage> = msgs
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn random_bytes_never_panic_the_chunk_decoder(bytes in vec(any::<u8>(), 0..4000), cuts in vec(0u16..1000, 0..10)) {
        let mut dec = ChunkDecoder::default();
        for piece in cut(&bytes, &cuts) {
            if dec.feed(piece).is_err() {
                break;
            }
        }
        while dec.poll_message().is_some() {}
    }

    #[test]
    fn random_bytes_after_a_handshake_never_panic_a_connection(
        bytes in vec(any::<u8>(), 0..4000),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut client = RtmpConnection::client(ConnectionConfig::default(), &mut rng);
        let mut server = RtmpConnection::server(ConnectionConfig::default(), &mut rng);
        server.feed(&client.take_output()).unwrap();
        client.feed(&server.take_output()).unwrap();
        server.feed(&client.take_output()).unwrap();
        let _ = server.feed(&bytes);
        while server.poll_event().is_some() {}
        // And the raw bytes as a handshake.
        let mut fresh = RtmpConnection::server(ConnectionConfig::default(), &mut rng);
        let _ = fresh.feed(&bytes);
    }

    #[test]
    fn random_bodies_never_panic_the_small_parsers(bytes in vec(any::<u8>(), 0..300), ts in any::<u32>()) {
        let _ = UserControlEvent::decode(&bytes);
        let _ = VideoTagHeader::parse(&bytes);
        let _ = AudioTagHeader::parse(&bytes);
        let _ = split_aggregate(&RtmpMessage::new(MessageType::Aggregate, ts, 1, bytes.clone()));
        for t in 1..=6u8 {
            let _ = ProtocolControl::from_message(&RtmpMessage::new(MessageType::from(t), 0, 0, bytes.clone()));
        }
    }

    #[test]
    fn aggregates_split_back_into_their_parts(
        parts in vec((prop_oneof![Just(8u8), Just(9u8), Just(18u8)], 0u32..0x0100_0000, vec(any::<u8>(), 0..200)), 1..10),
        ts in any::<u32>(),
    ) {
        let subs: Vec<RtmpMessage> = parts
            .iter()
            .map(|(t, sts, p)| RtmpMessage::new(MessageType::from(*t), *sts, 0, p.clone()))
            .collect();
        let split = split_aggregate(&build_aggregate(ts, 7, &subs)).unwrap();
        prop_assert_eq!(split.len(), subs.len());
        for (s, orig) in split.iter().zip(&subs) {
            prop_assert_eq!(&s.payload, &orig.payload);
            prop_assert_eq!(s.stream_id, 7);
            prop_assert_eq!(s.timestamp, ts.wrapping_add(orig.timestamp.wrapping_sub(subs[0].timestamp)));
        }
    }

    #[test]
    fn flv_tags_round_trip_in_any_slicing(
        tags in vec((prop_oneof![Just(TagType::Audio), Just(TagType::Video), Just(TagType::Script)], any::<u32>(), vec(any::<u8>(), 0..500)), 0..20),
        cuts in vec(0u16..1000, 0..30),
    ) {
        let tags: Vec<FlvTag> = tags.into_iter().map(|(t, ts, d)| FlvTag::new(t, ts, d)).collect();
        let mut w = FlvWriter::new(FlvHeader::new(true, true));
        let mut bytes = Vec::new();
        FlvHeader::new(true, true).encode(&mut bytes);
        for t in &tags {
            t.encode(&mut bytes).unwrap();
        }
        let mut via_writer = Vec::new();
        for t in &tags {
            w.write_tag(t, &mut via_writer).unwrap();
        }
        if !tags.is_empty() {
            prop_assert_eq!(&via_writer, &bytes);
        }
        let mut r = FlvReader::new();
        for piece in cut(&bytes, &cuts) {
            r.feed(piece).unwrap();
        }
        r.finish().unwrap();
        let got: Vec<FlvTag> = std::iter::from_fn(|| r.poll_tag()).collect();
        prop_assert_eq!(got, tags);
    }

    #[test]
    fn random_bytes_never_panic_the_flv_reader(bytes in vec(any::<u8>(), 0..3000), with_header in any::<bool>()) {
        let mut r = FlvReader::new();
        if with_header {
            let mut h = Vec::new();
            FlvHeader::new(true, true).encode(&mut h);
            r.feed(&h).unwrap();
        }
        if r.feed(&bytes).is_ok() {
            let _ = r.finish();
        }
        while r.poll_tag().is_some() {}
    }
}
