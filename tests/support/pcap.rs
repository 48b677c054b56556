//! A minimal reader for classic pcap files, enough to pull UDP datagrams out of the
//! captures under `shared/vectors`. No dependency: the format is a 24-byte file header and
//! a 16-byte header per record.
//!
//! Supported: both byte orders, micro- and nanosecond magics; link types 0 (BSD
//! loopback), 1 (Ethernet, with 802.1Q tags), 101 and 12 (raw IP), 113 (Linux cooked
//! capture v1), 276 (Linux cooked capture v2); IPv4 (unfragmented) and IPv6 (with the
//! common extension headers); UDP only. Records that are truncated by the snap length,
//! fragmented, or not UDP are reported as skipped rather than guessed at.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW_OPENBSD: u32 = 12;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

/// One UDP datagram found in a capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// 1-based record number in the file (as Wireshark numbers frames).
    pub frame: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// Why a record produced no datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// Captured length shorter than the original length (snap length).
    Truncated,
    /// Link-layer payload that is neither IPv4 nor IPv6.
    NotIp,
    /// IP but not UDP (or an IPv6 extension header we do not walk).
    NotUdp,
    /// An IPv4 fragment (we do not reassemble).
    Fragment,
    /// Headers whose lengths do not add up.
    Malformed,
}

#[derive(Debug)]
pub struct Capture {
    pub link_type: u32,
    pub datagrams: Vec<Datagram>,
    pub skipped: Vec<(usize, Skip)>,
}

#[derive(Debug, Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            Order::Little => u16::from_le_bytes(a),
            Order::Big => u16::from_be_bytes(a),
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        }
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Parses a whole classic pcap file. Errors are for files that are not pcap at all or
/// use a link type we do not know; a bad record ends the file with an error too.
pub fn parse(file: &[u8]) -> Result<Capture, String> {
    if file.len() < 24 {
        return Err(format!(
            "{} bytes is too short for a pcap file header",
            file.len()
        ));
    }
    let order = match file[..4] {
        // 0xa1b2c3d4 (microseconds) and 0xa1b23c4d (nanoseconds), as written on disk.
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => Order::Little,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => Order::Big,
        _ => {
            return Err(format!(
                "not a classic pcap file (magic {:02x?}); pcapng is not supported",
                &file[..4]
            ))
        }
    };
    let major = order.u16(&file[4..6]);
    if major != 2 {
        return Err(format!("pcap major version {major}, expected 2"));
    }
    // The link type is the low 16 bits; the upper bits carry the FCS length flags.
    let link_type = order.u32(&file[20..24]) & 0xffff;
    if ![
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_OPENBSD,
        LINKTYPE_RAW,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
    ]
    .contains(&link_type)
    {
        return Err(format!("unsupported link type {link_type}"));
    }

    let mut capture = Capture {
        link_type,
        datagrams: Vec::new(),
        skipped: Vec::new(),
    };
    let mut at = 24;
    let mut frame = 0;
    while at < file.len() {
        frame += 1;
        let header = file
            .get(at..at + 16)
            .ok_or_else(|| format!("record {frame}: header cut short"))?;
        let incl = order.u32(&header[8..12]) as usize;
        let orig = order.u32(&header[12..16]) as usize;
        at += 16;
        let data = file
            .get(at..at + incl)
            .ok_or_else(|| format!("record {frame}: {incl} bytes announced, file ends"))?;
        at += incl;
        if incl < orig {
            capture.skipped.push((frame, Skip::Truncated));
            continue;
        }
        match link_payload(link_type, data, order).and_then(ip_to_udp) {
            Ok((src, dst, payload)) => capture.datagrams.push(Datagram {
                frame,
                src,
                dst,
                payload: payload.to_vec(),
            }),
            Err(skip) => capture.skipped.push((frame, skip)),
        }
    }
    Ok(capture)
}

/// The network-layer packet inside a link-layer frame, tagged with its IP version.
enum Net<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Result<Net<'_>, Skip> {
    match ethertype {
        ETHERTYPE_IPV4 => Ok(Net::V4(rest)),
        ETHERTYPE_IPV6 => Ok(Net::V6(rest)),
        _ => Err(Skip::NotIp),
    }
}

fn by_version(packet: &[u8]) -> Result<Net<'_>, Skip> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Ok(Net::V4(packet)),
        Some(6) => Ok(Net::V6(packet)),
        _ => Err(Skip::NotIp),
    }
}

fn link_payload(link_type: u32, frame: &[u8], order: Order) -> Result<Net<'_>, Skip> {
    match link_type {
        LINKTYPE_NULL => {
            // 4-byte address family in the capturing host's byte order: AF_INET is 2
            // everywhere, AF_INET6 is 24, 28 or 30 depending on the BSD.
            let family = frame.get(..4).ok_or(Skip::Malformed)?;
            let family = order.u32(family);
            let rest = &frame[4..];
            match family {
                2 => Ok(Net::V4(rest)),
                10 | 24 | 28 | 30 => Ok(Net::V6(rest)),
                // Some writers store the family in the other byte order; trust the packet.
                _ => by_version(rest),
            }
        }
        LINKTYPE_ETHERNET => {
            if frame.len() < 14 {
                return Err(Skip::Malformed);
            }
            let mut ethertype = be16(&frame[12..14]);
            let mut rest = &frame[14..];
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                if rest.len() < 4 {
                    return Err(Skip::Malformed);
                }
                ethertype = be16(&rest[2..4]);
                rest = &rest[4..];
            }
            by_ethertype(ethertype, rest)
        }
        LINKTYPE_RAW | LINKTYPE_RAW_OPENBSD => by_version(frame),
        LINKTYPE_LINUX_SLL => {
            // packet type(2) ARPHRD(2) address length(2) address(8) protocol(2)
            if frame.len() < 16 {
                return Err(Skip::Malformed);
            }
            by_ethertype(be16(&frame[14..16]), &frame[16..])
        }
        LINKTYPE_LINUX_SLL2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8)
            if frame.len() < 20 {
                return Err(Skip::Malformed);
            }
            by_ethertype(be16(&frame[0..2]), &frame[20..])
        }
        _ => Err(Skip::NotIp),
    }
}

fn ip_to_udp(net: Net<'_>) -> Result<(SocketAddr, SocketAddr, &[u8]), Skip> {
    let (src_ip, dst_ip, udp): (IpAddr, IpAddr, &[u8]) = match net {
        Net::V4(p) => {
            if p.len() < 20 || p[0] >> 4 != 4 {
                return Err(Skip::Malformed);
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(be16(&p[2..4]));
            if ihl < 20 || total < ihl || total > p.len() {
                return Err(Skip::Malformed);
            }
            let frag = be16(&p[6..8]);
            if frag & 0x3fff != 0 {
                // More-fragments set or a non-zero offset.
                return Err(Skip::Fragment);
            }
            if p[9] != IPPROTO_UDP {
                return Err(Skip::NotUdp);
            }
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            // `total` drops any Ethernet trailer padding.
            (src.into(), dst.into(), &p[ihl..total])
        }
        Net::V6(p) => {
            if p.len() < 40 || p[0] >> 4 != 6 {
                return Err(Skip::Malformed);
            }
            let payload_len = usize::from(be16(&p[4..6]));
            if 40 + payload_len > p.len() {
                return Err(Skip::Malformed);
            }
            let mut next = p[6];
            let mut rest = &p[40..40 + payload_len];
            // Hop-by-hop, routing and destination options share one layout; a fragment
            // header (44) means we would need reassembly.
            loop {
                match next {
                    0 | 43 | 60 => {
                        if rest.len() < 8 {
                            return Err(Skip::Malformed);
                        }
                        let len = (usize::from(rest[1]) + 1) * 8;
                        if len > rest.len() {
                            return Err(Skip::Malformed);
                        }
                        next = rest[0];
                        rest = &rest[len..];
                    }
                    44 => return Err(Skip::Fragment),
                    _ => break,
                }
            }
            if next != IPPROTO_UDP {
                return Err(Skip::NotUdp);
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&p[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&p[24..40]);
            (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), rest)
        }
    };
    if udp.len() < 8 {
        return Err(Skip::Malformed);
    }
    let src_port = be16(&udp[0..2]);
    let dst_port = be16(&udp[2..4]);
    let len = usize::from(be16(&udp[4..6]));
    if len < 8 || len > udp.len() {
        return Err(Skip::Malformed);
    }
    Ok((
        SocketAddr::new(src_ip, src_port),
        SocketAddr::new(dst_ip, dst_port),
        &udp[8..len],
    ))
}
