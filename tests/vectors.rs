//! The codec against captures of real RTMFP peers (`shared/vectors`, see its README).
//!
//! Handshake packets travel under the well-known default key, so every one of them can be
//! decrypted, checksummed, parsed and re-encoded here without any secret. Re-encoding with
//! our encoder and sealing with our cipher must reproduce the captured bytes exactly: any
//! drift in the VLU, option, chunk, header, padding, checksum or CBC code shows up as a
//! byte mismatch against what rtmfp-cpp, librtmfp and MonaServer2 actually sent.
//!
//! Packets under session keys are checked only for their shape.

#[path = "support/pcap.rs"]
mod pcap;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use rtmfp_edge::proto::address::EncodedAddress;
use rtmfp_edge::proto::chunk::{Chunk, ChunkIter};
use rtmfp_edge::proto::cipher::PacketCipher;
use rtmfp_edge::proto::dh::{DhGroup, DhKeyPair};
use rtmfp_edge::proto::epd::{Certificate, EndpointDiscriminator};
use rtmfp_edge::proto::packet::{
    scramble_session_id, unscramble_session_id, Mode, PacketHeader, FLAG_TIMESTAMP,
};
use rtmfp_edge::proto::vlu::{options, Reader};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors");

const CPP2CPP: &str = "cpp2cpp-first40.pcap";
const LIBRTMFP2MONA: &str = "librtmfp2mona-first40.pcap";
const NETGROUP_MONA: &str = "netgroup_mona-first40.pcap";
const P2P_TCSERVER: &str = "p2p_direct_tcserver-first40.pcap";
const FILES: [&str; 4] = [CPP2CPP, LIBRTMFP2MONA, NETGROUP_MONA, P2P_TCSERVER];

/// Chunk types a startup (default-key) packet may carry: IHello, RHello, IIKeying,
/// RIKeying, Redirect, Forwarded IHello, RHello Cookie Change.
const HANDSHAKE_KINDS: [u8; 7] = [0x30, 0x70, 0x38, 0x78, 0x71, 0x0f, 0x79];

/// The smallest datagram that can be RTMFP: a session id and one AES block.
const MIN_DATAGRAM: usize = 4 + 16;

/// What one capture yielded, owned so the tests can look at it after decoding.
#[derive(Debug, Default)]
struct Decoded {
    link_type: u32,
    /// Datagrams decrypted under the default key and checked end to end.
    handshake_packets: usize,
    /// Of those, how many were addressed to a non-zero session id (RIKeying).
    handshake_to_session: usize,
    /// Of those, how many travelled over IPv6.
    handshake_over_ipv6: usize,
    /// Datagrams under session keys: only their length was checked.
    shape_only: usize,
    /// UDP datagrams too short to be RTMFP at all (skipped).
    too_short: Vec<usize>,
    /// pcap records that were not UDP datagrams (skipped by the reader).
    not_udp: usize,
    kinds: BTreeMap<u8, usize>,
    ihello_epds: Vec<Vec<u8>>,
    fihello: Vec<(Vec<u8>, EncodedAddress)>,
    /// (tag, cookie, certificate)
    rhellos: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// (cookie, certificate, keying component)
    iikeyings: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    rikeying_components: Vec<Vec<u8>>,
    redirects: Vec<Vec<EncodedAddress>>,
    cookie_changes: Vec<(Vec<u8>, Vec<u8>)>,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(VECTORS)
}

fn decode_file(name: &str) -> Decoded {
    let path = vectors_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the vectors live in shared/vectors beside the repository)",
            path.display()
        )
    });
    let capture = pcap::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut decoded = Decoded {
        link_type: capture.link_type,
        not_udp: capture.skipped.len(),
        ..Default::default()
    };
    for d in &capture.datagrams {
        check_datagram(name, d, &mut decoded);
    }
    decoded
}

/// Decrypts under the default key; `Some` when the checksum verifies.
fn open_startup(ciphertext: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let range = PacketCipher::startup().open(ciphertext, &mut out).ok()?;
    // The range starts after the two checksum bytes and runs to the end of the buffer.
    assert_eq!(
        range.start, 2,
        "no session sequence number under the startup cipher"
    );
    assert_eq!(range.end, out.len());
    Some(out[range].to_vec())
}

fn check_datagram(file: &str, d: &pcap::Datagram, acc: &mut Decoded) {
    let at = format!(
        "{file} frame {} ({} -> {}, {} bytes)",
        d.frame,
        d.src,
        d.dst,
        d.payload.len()
    );
    let datagram = &d.payload[..];
    if datagram.len() < MIN_DATAGRAM {
        // Not RTMFP (for example a zero-length probe): nothing to check.
        assert_eq!(
            unscramble_session_id(datagram).is_none(),
            datagram.len() < 12,
            "{at}"
        );
        acc.too_short.push(d.frame);
        return;
    }
    let session_id = unscramble_session_id(datagram).expect("20 bytes hold a scrambled session id");
    let ciphertext = &datagram[4..];
    let plain = open_startup(ciphertext);
    if session_id == 0 {
        assert!(
            ciphertext.len() % 16 == 0,
            "{at}: session id 0 but {} bytes after it is not a whole number of AES blocks",
            ciphertext.len()
        );
    }
    let Some(plain) = plain else {
        assert_ne!(
            session_id, 0,
            "{at}: session id 0 but the default key's checksum does not verify"
        );
        // Under a session key: only the shape can be checked.
        assert!(
            !ciphertext.is_empty() && ciphertext.len() % 16 == 0,
            "{at}: {} bytes after the session id is not a positive multiple of 16",
            ciphertext.len()
        );
        acc.shape_only += 1;
        return;
    };
    acc.handshake_packets += 1;
    if d.src.is_ipv6() {
        acc.handshake_over_ipv6 += 1;
    }
    if session_id != 0 {
        acc.handshake_to_session += 1;
    }

    // Header: startup mode, flags exactly as found.
    let mut r = Reader::new(&plain);
    let header = PacketHeader::parse(&mut r).unwrap_or_else(|e| panic!("{at}: header: {e}"));
    assert_eq!(header.mode, Mode::Startup, "{at}: flags {:#04x}", plain[0]);
    assert_eq!(
        header.flags(),
        plain[0],
        "{at}: flags byte does not round-trip"
    );
    assert_eq!(
        header.timestamp.is_some(),
        plain[0] & FLAG_TIMESTAMP != 0,
        "{at}"
    );
    assert_eq!(header.len(), plain.len() - r.remaining(), "{at}");
    let chunk_bytes = r.rest();

    // Chunks: all parse, all are handshake chunks, and there is at least one.
    let chunks: Vec<Chunk<'_>> = ChunkIter::new(chunk_bytes)
        .enumerate()
        .map(|(i, c)| c.unwrap_or_else(|e| panic!("{at}: chunk {i}: {e}")))
        .collect();
    assert!(!chunks.is_empty(), "{at}: a startup packet with no chunk");
    for c in &chunks {
        assert!(
            HANDSHAKE_KINDS.contains(&c.kind()),
            "{at}: chunk type {:#04x} in a startup packet: {c:?}",
            c.kind()
        );
        *acc.kinds.entry(c.kind()).or_default() += 1;
        collect(c, acc);
    }

    // Re-encode header and chunks, pad with 0xff to the captured length, seal with the
    // startup cipher, scramble the session id: the captured datagram, byte for byte.
    let mut packet = Vec::with_capacity(plain.len());
    header.emit(&mut packet);
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.emit(&mut packet), "{at}: chunk {i} too long to emit");
    }
    let used = packet.len();
    assert!(
        used <= plain.len(),
        "{at}: re-encoding is {used} bytes, the packet only {}",
        plain.len()
    );
    assert_eq!(
        &packet[..],
        &plain[..used],
        "{at}: re-encoded header and chunks differ from the capture"
    );
    assert!(
        plain[used..].iter().all(|&b| b == 0xff),
        "{at}: bytes after the last chunk are not 0xff padding: {:02x?}",
        &plain[used..]
    );
    packet.resize(plain.len(), 0xff);
    let mut sealed = vec![0u8; 4];
    PacketCipher::startup().seal(&packet, &mut sealed);
    assert_eq!(sealed.len(), datagram.len(), "{at}: sealed length");
    assert!(
        sealed[4..] == *ciphertext,
        "{at}: sealing the re-encoded packet does not reproduce the ciphertext"
    );
    scramble_session_id(&mut sealed, session_id);
    assert_eq!(
        sealed[..4],
        datagram[..4],
        "{at}: scrambled session id {session_id:#010x}"
    );
    assert!(sealed == datagram, "{at}");
}

fn collect(c: &Chunk<'_>, acc: &mut Decoded) {
    match c {
        Chunk::IHello { epd, .. } => acc.ihello_epds.push(epd.to_vec()),
        Chunk::ForwardedIHello {
            epd, reply_address, ..
        } => acc.fihello.push((epd.to_vec(), *reply_address)),
        Chunk::RHello {
            tag,
            cookie,
            certificate,
        } => acc
            .rhellos
            .push((tag.to_vec(), cookie.to_vec(), certificate.to_vec())),
        Chunk::IIKeying {
            cookie,
            certificate,
            keying_component,
            ..
        } => acc.iikeyings.push((
            cookie.to_vec(),
            certificate.to_vec(),
            keying_component.to_vec(),
        )),
        Chunk::RIKeying {
            keying_component, ..
        } => acc.rikeying_components.push(keying_component.to_vec()),
        Chunk::Redirect { addresses, .. } => acc.redirects.push(addresses.clone()),
        Chunk::RHelloCookieChange {
            old_cookie,
            new_cookie,
        } => acc
            .cookie_changes
            .push((old_cookie.to_vec(), new_cookie.to_vec())),
        _ => {}
    }
}

fn summary(name: &str, d: &Decoded) -> String {
    format!(
        "{name}: link type {}, {} handshake packets ({} to a session id, {} over IPv6), {} shape-only, \
         {} too short, {} non-UDP records; chunk types {:02x?}",
        d.link_type,
        d.handshake_packets,
        d.handshake_to_session,
        d.handshake_over_ipv6,
        d.shape_only,
        d.too_short.len(),
        d.not_udp,
        d.kinds
    )
}

#[test]
fn vectors_directory_holds_the_four_captures() {
    for name in FILES {
        let path = vectors_dir().join(name);
        assert!(path.is_file(), "{} is missing", path.display());
    }
}

#[test]
fn every_capture_is_ethernet_ipv4_or_ipv6_udp() {
    for name in FILES {
        let bytes = std::fs::read(vectors_dir().join(name)).unwrap();
        let capture = pcap::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "{name}: link type {}, {} UDP datagrams",
            capture.link_type,
            capture.datagrams.len()
        );
        assert_eq!(capture.link_type, pcap::LINKTYPE_ETHERNET, "{name}");
        assert!(
            capture.skipped.is_empty(),
            "{name}: records skipped: {:?}",
            capture.skipped
        );
        assert_eq!(
            capture.datagrams.len(),
            40,
            "{name}: the files hold the first 40 datagrams"
        );
    }
}

/// The core check: every default-key datagram of every capture decrypts, parses and
/// re-encodes to the captured bytes; everything else has the shape of RTMFP.
#[test]
fn every_handshake_packet_round_trips_byte_for_byte() {
    let mut report = Vec::new();
    let mut over_ipv6 = 0;
    for name in FILES {
        let d = decode_file(name);
        report.push(summary(name, &d));
        over_ipv6 += d.handshake_over_ipv6;
        assert!(
            d.handshake_packets > 0,
            "{name}: no handshake packet decoded"
        );
        assert!(d.kinds.contains_key(&0x30), "{name}: no IHello");
        assert!(d.kinds.contains_key(&0x70), "{name}: no RHello");
        assert!(d.kinds.contains_key(&0x38), "{name}: no IIKeying");
        // The responder's RIKeying goes to the initiator's session id under the default key.
        assert!(d.kinds.contains_key(&0x78), "{name}: no RIKeying");
        assert!(
            d.handshake_to_session > 0,
            "{name}: no RIKeying found by its checksum"
        );
        assert_eq!(
            d.handshake_to_session, d.kinds[&0x78],
            "{name}: RIKeying packets are the non-zero-id ones"
        );
    }
    for line in &report {
        eprintln!("{line}");
    }
    assert!(
        over_ipv6 > 0,
        "the peer-to-peer captures carry IPv6 handshake datagrams too"
    );
}

/// Exact per-file counts, so a codec change that silently turns a handshake packet into a
/// "shape only" one (say, an RIKeying whose checksum stops verifying) fails loudly.
#[test]
fn per_file_counts_are_as_captured() {
    // (file, handshake packets, of which RIKeying, shape-only, too short)
    let expected = [
        (CPP2CPP, 8, 2, 32, 0),
        (LIBRTMFP2MONA, 8, 2, 32, 0),
        (NETGROUP_MONA, 19, 3, 20, 1),
        (P2P_TCSERVER, 16, 3, 24, 0),
    ];
    for (name, handshake, rikeying, shape_only, too_short) in expected {
        let d = decode_file(name);
        let got = (
            d.handshake_packets,
            d.handshake_to_session,
            d.shape_only,
            d.too_short.len(),
        );
        assert_eq!(
            got,
            (handshake, rikeying, shape_only, too_short),
            "{}",
            summary(name, &d)
        );
    }
}

fn option_list(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    options(bytes)
        .map(|o| o.map(|(k, v)| (k, v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("option list {bytes:02x?}: {e}"))
}

/// librtmfp → MonaServer2: the Flash-era layout deployed clients and servers expect.
#[test]
fn librtmfp_to_mona_has_the_flash_era_layout() {
    let d = decode_file(LIBRTMFP2MONA);
    assert!(!d.rhellos.is_empty() && !d.iikeyings.is_empty() && !d.rikeying_components.is_empty());
    for (_, cookie, certificate) in &d.rhellos {
        assert_eq!(cookie.len(), 64, "RHello cookie");
        assert_eq!(
            certificate.len(),
            77,
            "MonaServer2's certificate: {certificate:02x?}"
        );
        let cert = Certificate::parse(certificate).unwrap();
        assert!(cert.accepts_ancillary_data);
    }
    for (i, (cookie, certificate, _)) in d.iikeyings.iter().enumerate() {
        assert_eq!(cookie.len(), 64, "IIKeying {i} echoes a 64-byte cookie");
        assert!(
            d.rhellos.iter().any(|(_, c, _)| c == cookie),
            "IIKeying {i} echoes a cookie the server sent"
        );
        // The first option of the initiator's certificate is its group 2 (1024-bit) key.
        let opts = option_list(certificate);
        let (kind, value) = &opts[0];
        assert_eq!(
            *kind, 0x1d,
            "IIKeying {i}: first certificate option is a static DH key"
        );
        let mut v = Reader::new(value);
        assert_eq!(v.vlu().unwrap(), 2, "IIKeying {i}: DH group 2");
        assert_eq!(v.rest().len(), 128, "IIKeying {i}: a 1024-bit public key");
        let cert = Certificate::parse(certificate).unwrap();
        assert_eq!(
            cert.static_keys.first().map(|(g, k)| (*g, k.len())),
            Some((2, 128))
        );
        assert!(cert.offers_group(2));
    }
    let prefix = [
        0x03, 0x1a, 0x00, 0x00, 0x02, 0x1e, 0x00, 0x81, 0x02, 0x0d, 0x02,
    ];
    for (i, component) in d.rikeying_components.iter().enumerate() {
        assert!(
            component.starts_with(&prefix),
            "RIKeying {i} component starts {:02x?}",
            &component[..component.len().min(16)]
        );
        // ...and the option after that prefix is the server's 128-byte group 2 key.
        let opts = option_list(component);
        assert!(
            opts.iter()
                .any(|(k, v)| *k == 0x0d && v.len() == 129 && v[0] == 2),
            "{opts:02x?}"
        );
    }
    for epd in &d.ihello_epds {
        let epd = EndpointDiscriminator::parse(epd).unwrap();
        let uri = epd
            .ancillary_data
            .expect("librtmfp names the server by URI");
        assert!(
            String::from_utf8_lossy(&uri).ends_with("live"),
            "EPD {uri:02x?}"
        );
    }
}

/// rtmfp-cpp → rtmfp-cpp: the RFC 7425 layout.
#[test]
fn rtmfp_cpp_has_the_rfc7425_layout() {
    let d = decode_file(CPP2CPP);
    assert!(!d.rhellos.is_empty() && !d.iikeyings.is_empty());
    for (_, cookie, certificate) in &d.rhellos {
        assert_eq!(cookie.len(), 65, "RHello cookie");
        let cert = Certificate::parse(certificate).unwrap();
        assert_eq!(
            cert.supported_groups,
            vec![16, 14, 2],
            "server offers groups 16, 14, 2 in that order"
        );
        assert!(cert.offers_group(16) && cert.offers_group(14) && cert.offers_group(2));
    }
    for (cookie, _, _) in &d.iikeyings {
        assert_eq!(cookie.len(), 65, "IIKeying cookie");
    }
}

#[test]
fn p2p_captures_introduce_peers_by_redirect() {
    let d = decode_file(P2P_TCSERVER);
    assert!(
        d.rhellos.iter().any(|(_, cookie, _)| cookie.len() == 65),
        "rtmfp-cpp server's 65-byte cookie"
    );
    for name in [P2P_TCSERVER, NETGROUP_MONA] {
        let d = decode_file(name);
        assert!(
            !d.redirects.is_empty(),
            "{name}: the server introduces the peer with a Redirect"
        );
        for addresses in &d.redirects {
            assert!(addresses.len() >= 2, "{name}: {addresses:?}");
            assert!(
                addresses.iter().any(|a| a.addr.is_ipv4()),
                "{name}: {addresses:?}"
            );
            assert!(
                addresses.iter().any(|a| a.addr.is_ipv6()),
                "{name}: {addresses:?}"
            );
            for a in addresses {
                let mut out = Vec::new();
                a.emit(&mut out);
                assert_eq!(EncodedAddress::parse(&mut Reader::new(&out)), Ok(*a));
            }
        }
    }
}

/// Every certificate and endpoint discriminator on the wire decodes with our parsers.
#[test]
fn every_certificate_and_epd_in_the_captures_parses() {
    let mut certificates = 0;
    let mut epds = 0;
    for name in FILES {
        let d = decode_file(name);
        let certs = d
            .rhellos
            .iter()
            .map(|(_, _, c)| c)
            .chain(d.iikeyings.iter().map(|(_, c, _)| c));
        for cert in certs {
            let parsed = Certificate::parse(cert)
                .unwrap_or_else(|e| panic!("{name}: certificate {cert:02x?}: {e}"));
            assert_eq!(parsed.raw(), &cert[..]);
            let _ = parsed.peer_id();
            certificates += 1;
        }
        for epd in d.ihello_epds.iter().chain(d.fihello.iter().map(|(e, _)| e)) {
            let parsed = EndpointDiscriminator::parse(epd)
                .unwrap_or_else(|e| panic!("{name}: EPD {epd:02x?}: {e}"));
            // Our encoder lists fingerprint, ancillary data, hostname in that order; the
            // peers' EPDs carry a single option, so re-encoding is exact.
            if option_list(epd).len() == 1 {
                assert_eq!(parsed.encode(), *epd, "{name}: EPD re-encodes");
            }
            epds += 1;
        }
        for (_, address) in &d.fihello {
            let mut out = Vec::new();
            address.emit(&mut out);
            assert_eq!(
                EncodedAddress::parse(&mut Reader::new(&out)).unwrap(),
                *address
            );
        }
    }
    eprintln!("{certificates} certificates and {epds} EPDs parsed");
    assert!(certificates > 0 && epds > 0);
}

/// Peer IDs as librtmfp computes them (SHA-256 of the certificate) are what our
/// `Certificate::peer_id` computes: the fingerprint an initiator puts in its EPD selects the
/// certificate the target peer answers with, and the one that peer showed the server.
#[test]
fn peer_ids_in_epds_select_the_peers_certificates() {
    let mut checked = 0;
    for name in FILES {
        let d = decode_file(name);
        let epds = d.ihello_epds.iter().chain(d.fihello.iter().map(|(e, _)| e));
        for epd in epds {
            let epd = EndpointDiscriminator::parse(epd).unwrap();
            let Some(fingerprint) = epd.fingerprint else {
                continue;
            };
            let answered = d.rhellos.iter().filter(|(_, _, c)| {
                let cert = Certificate::parse(c).unwrap();
                cert.peer_id() == fingerprint && cert.is_selected_by(&epd)
            });
            assert!(
                answered.count() > 0,
                "{name}: no RHello certificate hashes to {fingerprint}"
            );
            let shown = d
                .iikeyings
                .iter()
                .filter(|(_, c, _)| Certificate::parse(c).unwrap().peer_id() == fingerprint);
            assert!(
                shown.count() > 0,
                "{name}: no IIKeying certificate hashes to {fingerprint}"
            );
            // Nobody else's certificate matches.
            for (_, _, c) in &d.rhellos {
                let cert = Certificate::parse(c).unwrap();
                assert_eq!(cert.is_selected_by(&epd), cert.peer_id() == fingerprint);
            }
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "the NetGroup and P2P captures address peers by fingerprint"
    );
}

/// The Diffie-Hellman public keys real peers sent (static keys in certificates, option
/// 0x1d; ephemeral keys in keying components, option 0x0d) are of our groups' sizes and
/// pass our RFC 7425 acceptance checks.
#[test]
fn real_peers_public_keys_pass_our_dh_checks() {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7016);
    let mut ours = std::collections::HashMap::new();
    let mut groups_seen = std::collections::BTreeSet::new();
    for name in FILES {
        let d = decode_file(name);
        let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
        for cert in d
            .rhellos
            .iter()
            .map(|(_, _, c)| c)
            .chain(d.iikeyings.iter().map(|(_, c, _)| c))
        {
            keys.extend(Certificate::parse(cert).unwrap().static_keys);
        }
        for component in d.rikeying_components.iter() {
            for (kind, value) in option_list(component) {
                if kind == 0x0d {
                    let mut v = Reader::new(&value);
                    let group = v.vlu().unwrap();
                    keys.push((group, v.rest().to_vec()));
                }
            }
        }
        assert!(!keys.is_empty(), "{name}: no public key found");
        for (id, key) in keys {
            let group = DhGroup::from_id(id).unwrap_or_else(|| panic!("{name}: DH group {id}"));
            assert_eq!(key.len(), group.key_len(), "{name}: group {id} key length");
            let pair = ours
                .entry(id)
                .or_insert_with(|| DhKeyPair::generate(group, &mut rng));
            assert!(
                pair.shared_secret(&key).is_some(),
                "{name}: group {id} key refused: {key:02x?}"
            );
            groups_seen.insert(id);
        }
    }
    assert_eq!(groups_seen.into_iter().collect::<Vec<_>>(), vec![2, 14, 16]);
}

// ---------------------------------------------------------------------------------------
// The pcap reader itself, on every link type it claims (the captures are all Ethernet).

fn udp_v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn udp_v6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn frame(link_type: u32, ip: &[u8], v6: bool) -> Vec<u8> {
    let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut f = Vec::new();
    match link_type {
        pcap::LINKTYPE_NULL => f.extend_from_slice(&(if v6 { 30u32 } else { 2u32 }).to_le_bytes()),
        pcap::LINKTYPE_ETHERNET => {
            f.extend_from_slice(&[0; 12]);
            f.extend_from_slice(&ethertype);
        }
        pcap::LINKTYPE_RAW => {}
        pcap::LINKTYPE_LINUX_SLL => {
            f.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
            f.extend_from_slice(&ethertype);
        }
        pcap::LINKTYPE_LINUX_SLL2 => {
            f.extend_from_slice(&ethertype);
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        other => panic!("no frame builder for {other}"),
    }
    f.extend_from_slice(ip);
    if link_type == pcap::LINKTYPE_ETHERNET {
        // Ethernet trailer padding that the IP total length must cut off.
        f.extend_from_slice(&[0xee; 6]);
    }
    f
}

fn pcap_file(link_type: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&link_type.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[test]
fn pcap_reader_handles_every_supported_link_type() {
    let v6_src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let v6_dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let a = udp_v4([127, 0, 0, 1], [127, 0, 0, 2], 1935, 19350, b"four");
    let b = udp_v6(v6_src, v6_dst, 40000, 1935, b"sixsix");
    let mut tcp = udp_v4([127, 0, 0, 1], [127, 0, 0, 2], 1, 2, b"tcp");
    tcp[9] = 6;
    for link_type in [
        pcap::LINKTYPE_NULL,
        pcap::LINKTYPE_ETHERNET,
        pcap::LINKTYPE_RAW,
        pcap::LINKTYPE_LINUX_SLL,
        pcap::LINKTYPE_LINUX_SLL2,
    ] {
        let file = pcap_file(
            link_type,
            &[
                frame(link_type, &a, false),
                frame(link_type, &b, true),
                frame(link_type, &tcp, false),
            ],
        );
        let c = pcap::parse(&file).unwrap_or_else(|e| panic!("link type {link_type}: {e}"));
        assert_eq!(c.link_type, link_type);
        assert_eq!(c.datagrams.len(), 2, "link type {link_type}: {c:?}");
        assert_eq!(c.datagrams[0].payload, b"four");
        assert_eq!(
            c.datagrams[0].src,
            "127.0.0.1:1935".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            c.datagrams[0].dst,
            "127.0.0.2:19350".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.datagrams[1].payload, b"sixsix");
        assert_eq!(
            c.datagrams[1].src,
            "[fd00::1]:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.datagrams[1].frame, 2);
        assert_eq!(c.skipped, vec![(3, pcap::Skip::NotUdp)]);
    }
    assert!(pcap::parse(b"\x0a\x0d\x0d\x0a pcapng is not classic pcap").is_err());
    assert!(
        pcap::parse(&pcap_file(105, &[])).is_err(),
        "802.11 is not supported"
    );
}
