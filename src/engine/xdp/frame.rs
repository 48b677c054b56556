//! Ethernet/IP/UDP framing for the AF_XDP path: reading the datagram out of a received
//! frame, and writing the headers in front of a datagram the endpoint sealed in place.
//! Plain safe code on byte slices.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub type Mac = [u8; 6];

const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

/// Header bytes [`write_headers`] puts before an IPv4 datagram.
pub const IPV4_HEADERS: usize = ETH_HEADER + IPV4_HEADER + UDP_HEADER;
/// Header bytes [`write_headers`] puts before an IPv6 datagram.
pub const IPV6_HEADERS: usize = ETH_HEADER + IPV6_HEADER + UDP_HEADER;

/// A UDP datagram found in a received Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    /// The frame's source MAC: the sender, or the router it came through.
    pub source_mac: Mac,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The UDP datagram in `frame` (Ethernet, up to two VLAN tags, IPv4 without fragments or
/// IPv6 without extension headers); None for anything else or anything cut short.
pub fn parse_udp(frame: &[u8]) -> Option<Received<'_>> {
    let source_mac: Mac = frame.get(6..12)?.try_into().ok()?;
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            at += VLAN_TAG;
            ethertype = be16(frame, at)?;
        }
    }
    let ip = at + 2;
    let (from_ip, to_ip, udp, ip_end) = match ethertype {
        ETH_P_IPV4 => {
            let header = frame.get(ip..ip + IPV4_HEADER)?;
            let ihl = usize::from(header[0] & 0x0f) * 4;
            let fragmented = be16(header, 6)? & 0x3fff != 0;
            if header[0] >> 4 != 4 || ihl < IPV4_HEADER || header[9] != IPPROTO_UDP || fragmented {
                return None;
            }
            let total = usize::from(be16(header, 2)?);
            let from = Ipv4Addr::from(<[u8; 4]>::try_from(&header[12..16]).ok()?);
            let to = Ipv4Addr::from(<[u8; 4]>::try_from(&header[16..20]).ok()?);
            (IpAddr::V4(from), IpAddr::V4(to), ip + ihl, ip + total)
        }
        ETH_P_IPV6 => {
            let header = frame.get(ip..ip + IPV6_HEADER)?;
            if header[0] >> 4 != 6 || header[6] != IPPROTO_UDP {
                return None;
            }
            let payload = usize::from(be16(header, 4)?);
            let from = Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?);
            let to = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
            (
                IpAddr::V6(from),
                IpAddr::V6(to),
                ip + IPV6_HEADER,
                ip + IPV6_HEADER + payload,
            )
        }
        _ => return None,
    };
    let header = frame.get(udp..udp + UDP_HEADER)?;
    let udp_len = usize::from(be16(header, 4)?);
    let end = udp.checked_add(udp_len)?;
    if udp_len < UDP_HEADER || end > ip_end || end > frame.len() {
        return None;
    }
    Some(Received {
        source_mac,
        from: SocketAddr::new(from_ip, be16(header, 0)?),
        to: SocketAddr::new(to_ip, be16(header, 2)?),
        payload: &frame[udp + UDP_HEADER..end],
    })
}

/// The Internet checksum's running sum over `bytes` (RFC 1071), added to `sum`.
fn sum_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_be_bytes(c.try_into().expect("8 bytes"));
        // Fold as we go: four 16-bit lanes summed without overflow.
        sum += (word >> 32) + (word & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    fold(sum_words(0, bytes))
}

/// Where a datagram goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub source_mac: Mac,
    pub destination_mac: Mac,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
}

/// TTL of unicast datagrams, as the kernel's default.
pub const UNICAST_HOP_LIMIT: u8 = 64;

/// The Ethernet address an IP multicast group maps to (RFC 1112 §6.4: 01:00:5e and the
/// group's low 23 bits; RFC 2464 §7: 33:33 and the low 32 bits); None for unicast.
pub fn multicast_mac(group: IpAddr) -> Option<Mac> {
    match group {
        IpAddr::V4(g) if g.is_multicast() => {
            let o = g.octets();
            Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(g) if g.is_multicast() => {
            let o = g.octets();
            Some([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => None,
    }
}

/// Bytes of headers in front of a datagram from `from` to `to`.
pub fn headers_len(to: SocketAddr) -> usize {
    match to {
        SocketAddr::V4(_) => IPV4_HEADERS,
        SocketAddr::V6(_) => IPV6_HEADERS,
    }
}

/// Writes Ethernet, IP and UDP headers into the `headers_len(to)` bytes of `slot` that end
/// at `datagram_at`, for the `datagram_len` bytes of datagram starting there; returns the
/// frame's first byte. None when the two addresses are of different families or the
/// headroom is too small. The UDP checksum is computed (correct, never zero).
pub fn write_headers(
    slot: &mut [u8],
    datagram_at: usize,
    datagram_len: usize,
    link: &Link,
    from: SocketAddr,
    to: SocketAddr,
) -> Option<usize> {
    let len = headers_len(to);
    let start = datagram_at.checked_sub(len)?;
    if slot.len() < datagram_at + datagram_len {
        return None;
    }
    let udp_len = u16::try_from(UDP_HEADER + datagram_len).ok()?;
    let (frame, datagram) = slot[start..datagram_at + datagram_len].split_at_mut(len);
    frame[0..6].copy_from_slice(&link.destination_mac);
    frame[6..12].copy_from_slice(&link.source_mac);
    let payload_sum = sum_words(0, datagram);
    let udp_at = match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
            let ip = &mut frame[ETH_HEADER..ETH_HEADER + IPV4_HEADER];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&(IPV4_HEADER as u16 + udp_len).to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            // Don't fragment, as the kernel path sends (IP_PMTUDISC_PROBE).
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = link.hop_limit;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let sum = checksum(ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ETH_HEADER + IPV4_HEADER
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
            let ip = &mut frame[ETH_HEADER..ETH_HEADER + IPV6_HEADER];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = link.hop_limit;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            ETH_HEADER + IPV6_HEADER
        }
        _ => return None,
    };
    let udp = &mut frame[udp_at..udp_at + UDP_HEADER];
    udp[0..2].copy_from_slice(&from.port().to_be_bytes());
    udp[2..4].copy_from_slice(&to.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // Pseudo-header: addresses, protocol, length; then the UDP header and payload.
    let mut sum = payload_sum + u64::from(IPPROTO_UDP) + u64::from(udp_len);
    sum = match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_words(sum_words(sum, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum_words(sum_words(sum, &s.octets()), &d.octets()),
        _ => return None,
    };
    sum = sum_words(sum, udp);
    let mut udp_sum = fold(sum);
    if udp_sum == 0 {
        // Zero means "no checksum" on the wire; its one's-complement twin is all ones.
        udp_sum = 0xffff;
    }
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
    Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0, 0, 0, 0, 2],
            hop_limit: 64,
        }
    }

    fn frame_for(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let headroom = 64;
        let mut slot = vec![0u8; headroom + payload.len()];
        slot[headroom..].copy_from_slice(payload);
        let start = write_headers(&mut slot, headroom, payload.len(), &link(), from, to)
            .expect("headers fit");
        slot[start..].to_vec()
    }

    #[test]
    fn written_headers_parse_back_to_the_same_datagram() {
        for (from, to) in [
            ("10.0.0.1:1935", "10.0.0.2:50000"),
            ("[fd00::1]:1935", "[fd00::2]:50000"),
        ] {
            let (from, to) = (from.parse().unwrap(), to.parse().unwrap());
            let payload: Vec<u8> = (0..1201u32).map(|i| (i * 7) as u8).collect();
            let frame = frame_for(from, to, &payload);
            let got = parse_udp(&frame).expect("parses");
            assert_eq!(got.from, from);
            assert_eq!(got.to, to);
            assert_eq!(got.payload, &payload[..]);
            assert_eq!(got.source_mac, link().source_mac);
        }
    }

    #[test]
    fn checksums_verify_to_zero_over_what_they_cover() {
        let from: SocketAddr = "192.168.7.1:1935".parse().unwrap();
        let to: SocketAddr = "192.168.7.9:40000".parse().unwrap();
        let payload = b"an odd-length payload!";
        let frame = frame_for(from, to, payload);
        // The IPv4 header sums to zero with its checksum in place.
        assert_eq!(checksum(&frame[14..34]), 0);
        // The UDP checksum over pseudo-header, header and payload sums to zero too.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&[192, 168, 7, 1, 192, 168, 7, 9, 0, 17]);
        pseudo.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        pseudo.extend_from_slice(&frame[34..]);
        assert_eq!(checksum(&pseudo), 0);
    }

    #[test]
    fn multicast_groups_map_to_their_ethernet_addresses() {
        let v4: IpAddr = "239.129.2.3".parse().unwrap();
        assert_eq!(
            multicast_mac(v4),
            Some([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03])
        );
        let v6: IpAddr = "ff02::1:ff00:1234".parse().unwrap();
        assert_eq!(
            multicast_mac(v6),
            Some([0x33, 0x33, 0xff, 0x00, 0x12, 0x34])
        );
        assert_eq!(multicast_mac("10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn a_known_ipv4_header_checksum() {
        // The example header from RFC 1071's companion literature (Wikipedia's IPv4
        // header checksum example): 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn vlan_tags_are_skipped_and_other_frames_refused() {
        let from: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let to: SocketAddr = "10.1.1.2:1935".parse().unwrap();
        let plain = frame_for(from, to, b"hello rtmfp datagram");
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(parse_udp(&tagged).unwrap().payload, b"hello rtmfp datagram");
        // Not UDP: protocol 6 (TCP).
        let mut tcp = plain.clone();
        tcp[23] = 6;
        assert!(parse_udp(&tcp).is_none());
        // Cut short anywhere: never a panic, never a datagram past the end.
        for cut in 0..plain.len() {
            assert!(parse_udp(&plain[..cut]).is_none(), "cut at {cut}");
        }
        // A fragment.
        let mut fragment = plain;
        fragment[20] = 0x20;
        assert!(parse_udp(&fragment).is_none());
    }

    proptest::proptest! {
        /// Frames off the wire are anything: arbitrary bytes, or a good frame with bytes
        /// changed, never panic the parser, and a payload it finds lies inside the frame.
        #[test]
        fn any_frame_parses_or_is_refused_without_panicking(
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..128),
            edits in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 0..6),
            v6 in proptest::bool::ANY,
        ) {
            let _ = parse_udp(&junk);
            let (from, to): (SocketAddr, SocketAddr) = if v6 {
                ("[fd00::1]:1935".parse().unwrap(), "[fd00::2]:5000".parse().unwrap())
            } else {
                ("10.0.0.1:1935".parse().unwrap(), "10.0.0.2:5000".parse().unwrap())
            };
            let mut frame = frame_for(from, to, b"a datagram of some length");
            for (at, byte) in edits {
                if let Some(b) = frame.get_mut(at) {
                    *b = byte;
                }
            }
            if let Some(got) = parse_udp(&frame) {
                let start = got.payload.as_ptr() as usize - frame.as_ptr() as usize;
                proptest::prop_assert!(start + got.payload.len() <= frame.len());
            }
        }
    }
}
