//! Messages between two NetGroup members on their group flows (docs/netgroup.md §3):
//! the group handshake, reports of neighbours, media subscriptions, availability maps,
//! push and pull requests. Fragments themselves (the media flow) are in
//! [`super::fragments`].
//!
//! Layouts are byte-exact to what Flash and librtmfp send; parsing never panics and
//! names what is wrong.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::fragments::{FragmentsMap, GroupMediaParseError};
use super::spec::GroupId;
use crate::proto::epd::PeerId;
use crate::proto::vlu::{put_vlu, vlu_len, Reader};

/// What a group flow between two members carries, named by the fourth byte of its
/// metadata (`GR` + role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupFlowRole {
    /// Handshake, begin, reports, ask-close: one per direction, unassociated.
    Report,
    /// Subscriptions, maps, push, pull for one stream; answers the peer's report flow.
    MediaReport,
    /// Fragments of one stream; answers the peer's media report flow for it.
    Media,
    /// NetGroup.sendToNearest / sendToNeighbor messages (content not interpreted).
    Message,
    /// Posting: the key flow.
    PostKey,
    /// Posting: the value flow.
    PostValue,
}

impl GroupFlowRole {
    const ALL: [(GroupFlowRole, u8); 6] = [
        (GroupFlowRole::Report, 0x1c),
        (GroupFlowRole::MediaReport, 0x11),
        (GroupFlowRole::Media, 0x12),
        (GroupFlowRole::Message, 0x1d),
        (GroupFlowRole::PostKey, 0x18),
        (GroupFlowRole::PostValue, 0x19),
    ];

    /// The flow metadata (the user-data option's value) of a flow in this role.
    pub fn metadata(self) -> Vec<u8> {
        let code = Self::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or(0, |&(_, c)| c);
        vec![b'G', b'R', code]
    }

    /// The role a flow's metadata names, if it is a group flow.
    pub fn from_metadata(metadata: &[u8]) -> Option<Self> {
        match metadata {
            [b'G', b'R', code] => Self::ALL.iter().find(|(_, c)| c == code).map(|&(r, _)| r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerMessageError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0:#04x} on a {1} flow")]
    UnknownType(u8, &'static str),
    #[error("{0}: truncated")]
    Truncated(&'static str),
    #[error("{what}: expected {expected:#x}, found {found:#x}")]
    UnexpectedMarker {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("group id is not 64 hex characters")]
    BadGroupIdText,
    #[error("address type {0:#04x} has no address family we know")]
    BadAddress(u8),
    #[error("stream name is not UTF-8 or is empty")]
    BadStreamName,
    #[error("fragments map: {0}")]
    BadMap(GroupMediaParseError),
}

type Result<T> = std::result::Result<T, PeerMessageError>;

fn truncated(what: &'static str) -> impl Fn(crate::proto::ParseError) -> PeerMessageError {
    move |_| PeerMessageError::Truncated(what)
}

// ---------------------------------------------------------------------------------------
// Addresses

/// How a member can be reached at an address (RFC 7016 §3.5.1.5 address flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Unspecified,
    Local,
    Public,
    /// The member's server (where introductions to it go).
    Redirection,
}

impl AddressKind {
    fn code(self) -> u8 {
        match self {
            AddressKind::Unspecified => 0,
            AddressKind::Local => 1,
            AddressKind::Public => 2,
            AddressKind::Redirection => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code & 0x0f {
            1 => AddressKind::Local,
            2 => AddressKind::Public,
            3 => AddressKind::Redirection,
            _ => AddressKind::Unspecified,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress {
    pub kind: AddressKind,
    pub addr: SocketAddr,
}

impl PeerAddress {
    pub fn new(kind: AddressKind, addr: SocketAddr) -> Self {
        PeerAddress { kind, addr }
    }

    /// Flag byte (`0x80` for IPv6), address bytes, port.
    fn wire_len(&self) -> usize {
        match self.addr.ip() {
            IpAddr::V4(_) => 1 + 4 + 2,
            IpAddr::V6(_) => 1 + 16 + 2,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self.addr.ip() {
            IpAddr::V4(ip) => {
                out.push(self.kind.code());
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(self.kind.code() | 0x80);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.addr.port().to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let flag = r.u8().map_err(truncated("address"))?;
        let ip = if flag & 0x80 != 0 {
            let b: [u8; 16] = r
                .take(16)
                .map_err(truncated("address"))?
                .try_into()
                .map_err(|_| PeerMessageError::Truncated("address"))?;
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            let b: [u8; 4] = r
                .take(4)
                .map_err(truncated("address"))?
                .try_into()
                .map_err(|_| PeerMessageError::Truncated("address"))?;
            IpAddr::V4(Ipv4Addr::from(b))
        };
        let port = r.u16().map_err(truncated("address"))?;
        Ok(PeerAddress {
            kind: AddressKind::from_code(flag),
            addr: SocketAddr::new(ip, port),
        })
    }
}

/// `VLU(size) 0a address* 00` where size counts the `0a` and the addresses.
fn write_address_list(out: &mut Vec<u8>, list: &[PeerAddress]) {
    let size = 1 + list.iter().map(PeerAddress::wire_len).sum::<usize>();
    put_vlu(out, size as u64);
    out.push(0x0a);
    for a in list {
        a.write(out);
    }
    out.push(0x00);
}

/// Reads `VLU(size) 0a address*` (not the `00` that follows).
fn read_address_list(r: &mut Reader<'_>) -> Result<Vec<PeerAddress>> {
    // Some writers put an 8-bit size here: a first byte above 0x81 cannot start a VLU
    // this short list would need, so it is read as the size itself (as librtmfp does).
    let size = match r.peek_rest().first() {
        Some(&b) if b > 0x81 => usize::from(r.u8().map_err(truncated("address list"))?),
        _ => r.vlu().map_err(truncated("address list"))? as usize,
    };
    if size == 0 {
        return Err(PeerMessageError::Truncated("address list"));
    }
    let body = r.take(size).map_err(truncated("address list"))?;
    let mut inner = Reader::new(body);
    let marker = inner.u8().map_err(truncated("address list"))?;
    if marker != 0x0a {
        return Err(PeerMessageError::UnexpectedMarker {
            what: "address list",
            expected: 0x0a,
            found: u64::from(marker),
        });
    }
    let mut list = Vec::new();
    while !inner.peek_rest().is_empty() {
        list.push(PeerAddress::read(&mut inner)?);
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------------
// The report flow

/// `01`: a member proves to a peer that it knows the groupspec (docs §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHandshake {
    pub group: GroupId,
    /// HMAC-SHA256(groupspec text, base) — see [`crate::proto::keying::GroupKeyBases`].
    pub key: [u8; 32],
    /// The peer the handshake is addressed to.
    pub receiver: PeerId,
}

/// `0a`: what a member knows of the group, for one neighbour (docs §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// The receiver's address as the sender sees it.
    pub receiver_address: PeerAddress,
    /// The sender's server (kind `Redirection`) and its own addresses.
    pub sender_addresses: Vec<PeerAddress>,
    /// Peers the sender recommends to the receiver.
    pub peers: Vec<ReportedPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedPeer {
    pub peer_id: PeerId,
    /// Seconds since the sender last heard a report about this peer.
    pub seconds_since_report: u64,
    pub addresses: Vec<PeerAddress>,
}

/// A message on a report (`1c`) flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportFlowMessage {
    Handshake(GroupHandshake),
    /// `02` (RTMP "abort", sent alone before `0e`; an optional string follows).
    Abort,
    Report(GroupReport),
    /// `0c`: close our link unless I am one of your best peers.
    AskClose,
    /// `0e`: begin (or `0f`: begin, receive mode NEAREST).
    Begin {
        nearest: bool,
    },
}

impl ReportFlowMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ReportFlowMessage::Handshake(h) => {
                out.push(0x01);
                out.extend_from_slice(&[0x41, 0x00]);
                out.extend_from_slice(h.group.to_hex().as_bytes());
                out.extend_from_slice(&[0x21, 0x01]);
                out.extend_from_slice(&h.key);
                out.extend_from_slice(&[0x23, 0x03, 0x21, 0x0f]);
                out.extend_from_slice(&h.receiver.0);
            }
            ReportFlowMessage::Abort => out.push(0x02),
            ReportFlowMessage::Report(report) => {
                out.push(0x0a);
                let seen = &report.receiver_address;
                out.push((seen.wire_len() + 1) as u8);
                out.push(0x0d);
                seen.write(&mut out);
                write_address_list(&mut out, &report.sender_addresses);
                for p in &report.peers {
                    out.extend_from_slice(&[0x22, 0x21, 0x0f]);
                    out.extend_from_slice(&p.peer_id.0);
                    put_vlu(&mut out, p.seconds_since_report);
                    write_address_list(&mut out, &p.addresses);
                }
            }
            ReportFlowMessage::AskClose => out.push(0x0c),
            ReportFlowMessage::Begin { nearest } => out.push(if *nearest { 0x0f } else { 0x0e }),
        }
        out
    }

    pub fn parse(message: &[u8]) -> Result<Self> {
        let (&kind, rest) = message.split_first().ok_or(PeerMessageError::Empty)?;
        let mut r = Reader::new(rest);
        match kind {
            0x01 => {
                expect(&mut r, &[0x41, 0x00], "group handshake id")?;
                let hex = r.take(64).map_err(truncated("group handshake id"))?;
                let group = parse_hex_id(hex)?;
                expect(&mut r, &[0x21, 0x01], "group handshake key")?;
                let key = take32(&mut r, "group handshake key")?;
                expect(&mut r, &[0x23, 0x03, 0x21, 0x0f], "group handshake peer id")?;
                let receiver = PeerId(take32(&mut r, "group handshake peer id")?);
                Ok(ReportFlowMessage::Handshake(GroupHandshake {
                    group,
                    key,
                    receiver,
                }))
            }
            0x02 => Ok(ReportFlowMessage::Abort),
            0x0a => parse_report(&mut r).map(ReportFlowMessage::Report),
            0x0c => Ok(ReportFlowMessage::AskClose),
            0x0e => Ok(ReportFlowMessage::Begin { nearest: false }),
            0x0f => Ok(ReportFlowMessage::Begin { nearest: true }),
            other => Err(PeerMessageError::UnknownType(other, "report")),
        }
    }
}

fn expect(r: &mut Reader<'_>, bytes: &[u8], what: &'static str) -> Result<()> {
    let got = r.take(bytes.len()).map_err(truncated(what))?;
    if got != bytes {
        let found = got.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        let expected = bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        return Err(PeerMessageError::UnexpectedMarker {
            what,
            expected,
            found,
        });
    }
    Ok(())
}

fn take32(r: &mut Reader<'_>, what: &'static str) -> Result<[u8; 32]> {
    r.take(32)
        .map_err(truncated(what))?
        .try_into()
        .map_err(|_| PeerMessageError::Truncated(what))
}

/// 64 hex characters, either case (peers compare case-insensitively).
fn parse_hex_id(hex: &[u8]) -> Result<GroupId> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut id = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let (hi, lo) = (nibble(pair[0]), nibble(pair[1]));
        match (hi, lo) {
            (Some(h), Some(l)) => id[i] = (h << 4) | l,
            _ => return Err(PeerMessageError::BadGroupIdText),
        }
    }
    Ok(GroupId(id))
}

fn parse_report(r: &mut Reader<'_>) -> Result<GroupReport> {
    // One-byte options `01 xx` may come first; readers skip them.
    let mut marker = r.u8().map_err(truncated("group report"))?;
    while marker == 0x01 {
        r.u8().map_err(truncated("group report"))?;
        marker = r.u8().map_err(truncated("group report"))?;
    }
    // `marker` was the size of `0d address`.
    let size = marker as usize;
    let seen = r.take(size).map_err(truncated("group report address"))?;
    let mut inner = Reader::new(seen);
    let tag = inner.u8().map_err(truncated("group report address"))?;
    if tag != 0x0d {
        return Err(PeerMessageError::UnexpectedMarker {
            what: "group report address",
            expected: 0x0d,
            found: u64::from(tag),
        });
    }
    let receiver_address = PeerAddress::read(&mut inner)?;
    let sender_addresses = read_address_list(r)?;
    let mut peers = Vec::new();
    // Each list ends with `00`; a peer entry follows while enough bytes remain.
    loop {
        let end = r.u8().map_err(truncated("group report"))?;
        if end != 0x00 {
            return Err(PeerMessageError::UnexpectedMarker {
                what: "group report list end",
                expected: 0,
                found: u64::from(end),
            });
        }
        if r.peek_rest().len() <= 4 {
            break;
        }
        expect(r, &[0x22, 0x21, 0x0f], "group report peer id")?;
        let peer_id = PeerId(take32(r, "group report peer id")?);
        let seconds_since_report = r.vlu().map_err(truncated("group report time"))?;
        let addresses = read_address_list(r)?;
        peers.push(ReportedPeer {
            peer_id,
            seconds_since_report,
            addresses,
        });
    }
    Ok(GroupReport {
        receiver_address,
        sender_addresses,
        peers,
    })
}

// ---------------------------------------------------------------------------------------
// The media report flow

/// Default window duration, availability update period and fetch period (ms), as
/// Flash's NetStream multicast properties default.
pub const DEFAULT_WINDOW_MS: u64 = 8_000;
pub const DEFAULT_UPDATE_PERIOD_MS: u64 = 100;
pub const DEFAULT_FETCH_PERIOD_MS: u64 = 2_500;

/// `21`: a stream is available in the group (docs §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSubscription {
    pub stream_name: String,
    /// 32 random bytes the publisher chose: the stream's identity in the group.
    pub stream_key: [u8; 32],
    /// Availability maps go to every neighbour, not one in turn.
    pub send_to_all: bool,
    pub window_ms: u64,
    pub update_period_ms: u64,
    pub fetch_period_ms: u64,
}

/// A message on a media report (`11`) flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaReportMessage {
    Subscription(MediaSubscription),
    /// The stream ended; its last fragment id.
    End {
        last_fragment: u64,
    },
    /// `22`: availability map.
    Map(FragmentsMap),
    /// `23`: push me fragments whose `id mod 8` has its bit set in `mask`.
    Push {
        mask: u8,
    },
    /// `2b`: send me this fragment.
    Pull {
        fragment: u64,
    },
}

/// A subscription is at least this long; shorter `21` messages end a stream.
const SUBSCRIPTION_MIN_BODY: usize = 0x24;

impl MediaReportMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            MediaReportMessage::Subscription(s) => {
                out.push(0x21);
                put_vlu(&mut out, s.stream_name.len() as u64 + 1);
                out.push(0x00);
                out.extend_from_slice(s.stream_name.as_bytes());
                out.extend_from_slice(&[0x21, 0x01]);
                out.extend_from_slice(&s.stream_key);
                out.extend_from_slice(&[0x01, 0x02]);
                if s.send_to_all {
                    out.extend_from_slice(&[0x01, 0x06]);
                }
                let mut option = |kind: u8, value: u64| {
                    out.push((1 + vlu_len(value)) as u8);
                    out.push(kind);
                    put_vlu(&mut out, value);
                };
                option(0x03, s.window_ms);
                option(0x04, 300_000);
                option(0x05, s.update_period_ms);
                option(0x07, s.fetch_period_ms);
            }
            MediaReportMessage::End { last_fragment } => {
                out.push(0x21);
                put_vlu(&mut out, *last_fragment);
            }
            MediaReportMessage::Map(map) => map.encode(&mut out),
            MediaReportMessage::Push { mask } => out.extend_from_slice(&[0x23, *mask]),
            MediaReportMessage::Pull { fragment } => {
                out.push(0x2b);
                put_vlu(&mut out, *fragment);
            }
        }
        out
    }

    pub fn parse(message: &[u8]) -> Result<Self> {
        let (&kind, rest) = message.split_first().ok_or(PeerMessageError::Empty)?;
        let mut r = Reader::new(rest);
        match kind {
            0x21 if rest.len() < SUBSCRIPTION_MIN_BODY => Ok(MediaReportMessage::End {
                last_fragment: r.vlu().map_err(truncated("media end"))?,
            }),
            0x21 => parse_subscription(&mut r).map(MediaReportMessage::Subscription),
            0x22 => FragmentsMap::parse(&Bytes::copy_from_slice(message))
                .map(MediaReportMessage::Map)
                .map_err(PeerMessageError::BadMap),
            0x23 => Ok(MediaReportMessage::Push {
                mask: r.u8().map_err(truncated("push"))?,
            }),
            0x2b => Ok(MediaReportMessage::Pull {
                fragment: r.vlu().map_err(truncated("pull"))?,
            }),
            other => Err(PeerMessageError::UnknownType(other, "media report")),
        }
    }
}

fn parse_subscription(r: &mut Reader<'_>) -> Result<MediaSubscription> {
    let size = r.vlu().map_err(truncated("subscription name"))? as usize;
    if size <= 1 {
        return Err(PeerMessageError::BadStreamName);
    }
    let name = r.take(size).map_err(truncated("subscription name"))?;
    let stream_name = std::str::from_utf8(&name[1..])
        .map_err(|_| PeerMessageError::BadStreamName)?
        .to_owned();
    expect(r, &[0x21, 0x01], "subscription stream key")?;
    let stream_key = take32(r, "subscription stream key")?;
    let mut s = MediaSubscription {
        stream_name,
        stream_key,
        send_to_all: false,
        window_ms: DEFAULT_WINDOW_MS,
        update_period_ms: DEFAULT_UPDATE_PERIOD_MS,
        fetch_period_ms: DEFAULT_FETCH_PERIOD_MS,
    };
    while !r.peek_rest().is_empty() {
        let size = r.u8().map_err(truncated("subscription option"))?;
        if size == 0 {
            continue;
        }
        let body = r
            .take(size as usize)
            .map_err(truncated("subscription option"))?;
        let mut o = Reader::new(body);
        let kind = o.u8().map_err(truncated("subscription option"))?;
        let value = if body.len() > 1 {
            o.vlu().map_err(truncated("subscription option"))?
        } else {
            0
        };
        match kind {
            0x03 => s.window_ms = value,
            0x05 => s.update_period_ms = value,
            0x06 => s.send_to_all = true,
            0x07 => s.fetch_period_ms = value,
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flow_roles_are_gr_and_a_code() {
        assert_eq!(GroupFlowRole::Report.metadata(), b"GR\x1c");
        assert_eq!(GroupFlowRole::MediaReport.metadata(), b"GR\x11");
        assert_eq!(GroupFlowRole::Media.metadata(), b"GR\x12");
        for (role, _) in GroupFlowRole::ALL {
            assert_eq!(GroupFlowRole::from_metadata(&role.metadata()), Some(role));
        }
        assert_eq!(GroupFlowRole::from_metadata(b"GC"), None);
        assert_eq!(GroupFlowRole::from_metadata(b"GR\x99"), None);
    }

    #[test]
    fn a_group_handshake_has_the_hex_id_the_key_and_the_receiver() {
        let h = GroupHandshake {
            group: GroupId([0xab; 32]),
            key: [0x11; 32],
            receiver: PeerId([0x22; 32]),
        };
        let bytes = ReportFlowMessage::Handshake(h.clone()).encode();
        assert_eq!(bytes.len(), 1 + 2 + 64 + 2 + 32 + 4 + 32);
        assert_eq!(&bytes[..3], &[0x01, 0x41, 0x00]);
        assert_eq!(&bytes[3..67], "ab".repeat(32).as_bytes());
        assert_eq!(&bytes[67..69], &[0x21, 0x01]);
        assert_eq!(&bytes[101..105], &[0x23, 0x03, 0x21, 0x0f]);
        assert_eq!(
            ReportFlowMessage::parse(&bytes),
            Ok(ReportFlowMessage::Handshake(h.clone()))
        );
        // Upper-case hex from another implementation reads the same.
        let mut upper = bytes.clone();
        upper[3..67].make_ascii_uppercase();
        assert_eq!(
            ReportFlowMessage::parse(&upper),
            Ok(ReportFlowMessage::Handshake(h))
        );
    }

    #[test]
    fn a_report_lists_addresses_then_peers_each_closed_by_zero() {
        let report = GroupReport {
            receiver_address: PeerAddress::new(AddressKind::Public, v4("10.0.0.2:5000")),
            sender_addresses: vec![
                PeerAddress::new(AddressKind::Redirection, v4("10.0.0.1:1935")),
                PeerAddress::new(AddressKind::Local, v4("192.168.1.3:6000")),
            ],
            peers: vec![
                ReportedPeer {
                    peer_id: PeerId([0x33; 32]),
                    seconds_since_report: 12,
                    addresses: vec![PeerAddress::new(
                        AddressKind::Redirection,
                        v4("10.0.0.1:1935"),
                    )],
                },
                ReportedPeer {
                    peer_id: PeerId([0x44; 32]),
                    seconds_since_report: 0,
                    addresses: vec![PeerAddress::new(
                        AddressKind::Public,
                        "[2001:db8::1]:7000".parse().unwrap(),
                    )],
                },
            ],
        };
        let bytes = ReportFlowMessage::Report(report.clone()).encode();
        // 0a, size 8, 0d, public 10.0.0.2:5000
        assert_eq!(
            &bytes[..10],
            &[0x0a, 0x08, 0x0d, 0x02, 10, 0, 0, 2, 0x13, 0x88]
        );
        // Sender list: size = 1 + 7 + 7, 0a, two addresses, 00.
        assert_eq!(&bytes[10..12], &[15, 0x0a]);
        assert_eq!(bytes[12], 0x03, "the server's address, kind redirection");
        assert_eq!(bytes[26], 0x00);
        assert_eq!(&bytes[27..30], &[0x22, 0x21, 0x0f]);
        assert_eq!(bytes[62], 12, "seconds since the last report");
        assert_eq!(*bytes.last().unwrap(), 0x00);
        assert_eq!(
            ReportFlowMessage::parse(&bytes),
            Ok(ReportFlowMessage::Report(report))
        );
    }

    #[test]
    fn leading_one_byte_options_of_a_report_are_skipped() {
        let report = GroupReport {
            receiver_address: PeerAddress::new(AddressKind::Public, v4("10.0.0.2:5000")),
            sender_addresses: vec![],
            peers: vec![],
        };
        let mut bytes = ReportFlowMessage::Report(report.clone()).encode();
        bytes.splice(1..1, [0x01, 0x07]);
        assert_eq!(
            ReportFlowMessage::parse(&bytes),
            Ok(ReportFlowMessage::Report(report))
        );
    }

    #[test]
    fn begin_abort_and_ask_close_are_one_byte() {
        for m in [
            ReportFlowMessage::Abort,
            ReportFlowMessage::AskClose,
            ReportFlowMessage::Begin { nearest: false },
            ReportFlowMessage::Begin { nearest: true },
        ] {
            let b = m.encode();
            assert_eq!(b.len(), 1);
            assert_eq!(ReportFlowMessage::parse(&b), Ok(m));
        }
        assert_eq!(ReportFlowMessage::Begin { nearest: false }.encode(), [0x0e]);
    }

    #[test]
    fn a_subscription_is_written_as_flash_writes_it() {
        let s = MediaSubscription {
            stream_name: "test".into(),
            stream_key: [0x5a; 32],
            send_to_all: false,
            window_ms: 8000,
            update_period_ms: 100,
            fetch_period_ms: 2500,
        };
        let bytes = MediaReportMessage::Subscription(s.clone()).encode();
        let mut expected = vec![0x21, 0x05, 0x00, b't', b'e', b's', b't', 0x21, 0x01];
        expected.extend_from_slice(&[0x5a; 32]);
        expected.extend_from_slice(&[0x01, 0x02]);
        expected.extend_from_slice(&[0x03, 0x03, 0xbe, 0x40]); // 8000
        expected.extend_from_slice(&[0x04, 0x04, 0x92, 0xa7, 0x60]); // 300000
        expected.extend_from_slice(&[0x02, 0x05, 0x64]); // 100
        expected.extend_from_slice(&[0x03, 0x07, 0x93, 0x44]); // 2500
        assert_eq!(bytes, expected);
        assert_eq!(
            MediaReportMessage::parse(&bytes),
            Ok(MediaReportMessage::Subscription(s.clone()))
        );
        let all = MediaSubscription {
            send_to_all: true,
            ..s
        };
        let bytes = MediaReportMessage::Subscription(all.clone()).encode();
        assert_eq!(
            MediaReportMessage::parse(&bytes),
            Ok(MediaReportMessage::Subscription(all))
        );
    }

    #[test]
    fn a_short_21_ends_the_stream() {
        let m = MediaReportMessage::End {
            last_fragment: 1234,
        };
        let b = m.encode();
        assert_eq!(b, [0x21, 0x89, 0x52]);
        assert_eq!(MediaReportMessage::parse(&b), Ok(m));
    }

    #[test]
    fn push_pull_and_map_round_trip() {
        for m in [
            MediaReportMessage::Push { mask: 0x81 },
            MediaReportMessage::Pull { fragment: 300 },
            MediaReportMessage::Map(FragmentsMap {
                last_id: 300,
                bitmap: Bytes::from_static(&[0xff, 0x07]),
            }),
        ] {
            assert_eq!(MediaReportMessage::parse(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(ReportFlowMessage::parse(&[]), Err(PeerMessageError::Empty));
        assert_eq!(
            ReportFlowMessage::parse(&[0x77]),
            Err(PeerMessageError::UnknownType(0x77, "report"))
        );
        assert_eq!(
            ReportFlowMessage::parse(&[0x01, 0x41, 0x00, b'z']),
            Err(PeerMessageError::Truncated("group handshake id"))
        );
        let mut bad_hex = vec![0x01, 0x41, 0x00];
        bad_hex.extend_from_slice(&[b'g'; 64]);
        bad_hex.extend_from_slice(&[0; 70]);
        assert_eq!(
            ReportFlowMessage::parse(&bad_hex),
            Err(PeerMessageError::BadGroupIdText)
        );
        assert_eq!(
            MediaReportMessage::parse(&[0x23]),
            Err(PeerMessageError::Truncated("push"))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = ReportFlowMessage::parse(&bytes);
            let _ = MediaReportMessage::parse(&bytes);
        }

        #[test]
        fn reports_round_trip(
            peers in proptest::collection::vec((proptest::num::u8::ANY, 0u64..1000, proptest::num::u32::ANY, proptest::num::u16::ANY), 0..8),
            mine in proptest::collection::vec((proptest::num::u32::ANY, proptest::num::u16::ANY), 0..4),
        ) {
            let addr = |ip: u32, port: u16| PeerAddress::new(AddressKind::Local, SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port));
            let report = GroupReport {
                receiver_address: PeerAddress::new(AddressKind::Public, v4("10.0.0.9:9")),
                sender_addresses: mine.iter().map(|&(ip, port)| addr(ip, port)).collect(),
                peers: peers.iter().map(|&(id, t, ip, port)| ReportedPeer {
                    peer_id: PeerId([id; 32]),
                    seconds_since_report: t,
                    addresses: vec![addr(ip, port)],
                }).collect(),
            };
            let m = ReportFlowMessage::Report(report);
            proptest::prop_assert_eq!(ReportFlowMessage::parse(&m.encode()), Ok(m));
        }
    }
}
