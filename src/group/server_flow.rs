//! The messages a NetGroup member and the rendezvous server exchange on the member's
//! `GC` flow (docs/netgroup.md §2.1, §2.2).
//!
//! A member opens a flow whose metadata is `GC`, in return association with its
//! NetConnection flow, and sends one join message naming the group. The server answers
//! on a flow of its own (metadata `GC` too) in return association with the member's:
//! nothing for the join itself, then one member notice per peer the member should open a
//! session to. There is no leave message: closing the flow, or the session, leaves.

use std::net::{IpAddr, SocketAddr};

use super::spec::{GroupId, GroupSpec};
use crate::multicast::datagram::MulticastKey;
use crate::proto::epd::PeerId;
use crate::proto::vlu::{put_option, Reader};

/// Flow metadata of the group flows between a member and the server.
pub const GROUP_FLOW_METADATA: &[u8] = b"GC";

/// Message type of a join.
const JOIN: u8 = 0x01;
/// Message type of a member notice.
const MEMBER: u8 = 0x0b;
/// Join option: the group id, 32 bytes.
const GROUP_ID_OPTION: u64 = 0x15;
/// Join option sent by old Flash players instead: the groupspec text itself.
const GROUP_SPEC_OPTION: u64 = 0x10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupMessageError {
    #[error("empty group message")]
    Empty,
    #[error("group message type {0:#04x} is not {1}")]
    UnexpectedType(u8, &'static str),
    #[error("group join truncated or malformed")]
    Malformed,
    #[error("group join option {0:#x} is neither a group id (0x15) nor a groupspec (0x10)")]
    UnknownJoinOption(u64),
    #[error("group id of {0} bytes, not 32")]
    GroupIdLength(usize),
    #[error("group join names an invalid groupspec: {0}")]
    BadSpec(String),
    #[error("member notice of {0} bytes, not 33")]
    NoticeLength(usize),
}

/// The group a join message names. Recent clients send the group id; old Flash players
/// sent the groupspec text, whose id the server derives.
pub fn parse_join(message: &[u8]) -> Result<GroupId, GroupMessageError> {
    let (&kind, rest) = message.split_first().ok_or(GroupMessageError::Empty)?;
    if kind != JOIN {
        return Err(GroupMessageError::UnexpectedType(kind, "a join (0x01)"));
    }
    let mut r = Reader::new(rest);
    let (option, value) = r
        .option()
        .ok()
        .flatten()
        .ok_or(GroupMessageError::Malformed)?;
    match option {
        GROUP_ID_OPTION => {
            let id: [u8; 32] = value
                .try_into()
                .map_err(|_| GroupMessageError::GroupIdLength(value.len()))?;
            Ok(GroupId(id))
        }
        GROUP_SPEC_OPTION => {
            let text = std::str::from_utf8(value)
                .map_err(|_| GroupMessageError::BadSpec("not text".into()))?;
            GroupSpec::parse(text)
                .map(|spec| spec.group_id())
                .map_err(|e| GroupMessageError::BadSpec(e.to_string()))
        }
        other => Err(GroupMessageError::UnknownJoinOption(other)),
    }
}

/// A join naming `group` by id, as current clients send it.
pub fn join_message(group: &GroupId) -> Vec<u8> {
    let mut out = vec![JOIN];
    put_option(&mut out, GROUP_ID_OPTION, &group.0);
    out
}

/// "Open a session to this peer": the server tells a member of a new ring neighbour.
pub fn member_notice(peer: &PeerId) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.push(MEMBER);
    out.extend_from_slice(&peer.0);
    out
}

/// The peer a member notice names.
pub fn parse_member_notice(message: &[u8]) -> Result<PeerId, GroupMessageError> {
    let (&kind, rest) = message.split_first().ok_or(GroupMessageError::Empty)?;
    if kind != MEMBER {
        return Err(GroupMessageError::UnexpectedType(
            kind,
            "a member notice (0x0b)",
        ));
    }
    let id: [u8; 32] = rest
        .try_into()
        .map_err(|_| GroupMessageError::NoticeLength(message.len()))?;
    Ok(PeerId(id))
}

/// Ours (docs/ipmulticast.md): the server hands an admitted member the IP multicast
/// address of the group's stream and the key its datagrams are authenticated with, on
/// the flow that carries member notices: `7e`, flags (1 byte; bit 0: Fusion, members
/// relay what IP multicast brings them to their neighbours), key id (4 bytes), key (32
/// bytes), the address as text ("239.1.2.3:30000", "[ff15::1]:30000"), then, when the
/// server knows the address it sends from, a space and that address ("10.0.0.1").
pub const MULTICAST_KEY: u8 = 0x7e;

/// What a `7e` message tells a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastGrant {
    pub address: SocketAddr,
    pub key: MulticastKey,
    /// Fusion: pass what IP multicast brings on to neighbours that ask for it.
    pub relay: bool,
    /// The server's address the datagrams come from, when it knows it: members may join
    /// source-specifically.
    pub source: Option<IpAddr>,
}

pub fn multicast_key_message(
    address: SocketAddr,
    key: &MulticastKey,
    relay: bool,
    source: Option<IpAddr>,
) -> Vec<u8> {
    let mut out = vec![MULTICAST_KEY, u8::from(relay)];
    out.extend_from_slice(&key.id.to_be_bytes());
    out.extend_from_slice(&key.secret);
    out.extend_from_slice(address.to_string().as_bytes());
    if let Some(source) = source {
        out.extend_from_slice(format!(" {source}").as_bytes());
    }
    out
}

/// What a `7e` message grants; `None` if it is not one, or is malformed.
pub fn parse_multicast_key(message: &[u8]) -> Option<MulticastGrant> {
    let (&flags, rest) = message.strip_prefix(&[MULTICAST_KEY])?.split_first()?;
    if rest.len() < 36 {
        return None;
    }
    let id = u32::from_be_bytes(rest[..4].try_into().ok()?);
    let secret: [u8; 32] = rest[4..36].try_into().ok()?;
    let text = std::str::from_utf8(&rest[36..]).ok()?;
    let (address, source) = match text.split_once(' ') {
        Some((address, source)) => (address, Some(source.parse::<IpAddr>().ok()?)),
        None => (text, None),
    };
    let address: SocketAddr = address.parse().ok()?;
    let same_version = source.map_or(true, |s| s.is_ipv4() == address.is_ipv4());
    (address.ip().is_multicast() && same_version).then_some(MulticastGrant {
        address,
        key: MulticastKey { id, secret },
        relay: flags & 1 != 0,
        source,
    })
}

/// Ours: the server tells the members of a group, on the same flow, that the stream it
/// republished into the group was unpublished (`NetStream.MulticastStream.UnpublishNotify`
/// for players): `7f`, then the stream's name as text.
pub const STREAM_UNPUBLISHED: u8 = 0x7f;

/// The unpublish notice for the group's stream `name`.
pub fn unpublished_message(name: &str) -> Vec<u8> {
    let mut out = vec![STREAM_UNPUBLISHED];
    out.extend_from_slice(name.as_bytes());
    out
}

/// The stream an unpublish notice names; `None` if it is not one.
pub fn parse_unpublished(message: &[u8]) -> Option<String> {
    let name = message.strip_prefix(&[STREAM_UNPUBLISHED])?;
    std::str::from_utf8(name).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unpublish_notice_names_its_stream_and_nothing_else_reads_as_one() {
        let m = unpublished_message("cam");
        assert_eq!(m[0], 0x7f);
        assert_eq!(parse_unpublished(&m).as_deref(), Some("cam"));
        assert_eq!(parse_unpublished(&member_notice(&PeerId([1; 32]))), None);
        assert_eq!(parse_unpublished(&[0x7f, 0xff]), None);
    }

    use super::*;

    #[test]
    fn a_join_is_type_1_then_a_33_byte_option_0x15() {
        let id = GroupId([0xab; 32]);
        let m = join_message(&id);
        assert_eq!(&m[..3], &[0x01, 0x21, 0x15]);
        assert_eq!(&m[3..], &[0xab; 32]);
        assert_eq!(parse_join(&m), Ok(id));
    }

    #[test]
    fn an_old_flash_join_names_the_groupspec_and_the_server_derives_the_id() {
        let text = "G:0101010c050e74657374011b00";
        let spec = GroupSpec::parse(text).unwrap();
        let mut m = vec![0x01];
        put_option(&mut m, 0x10, text.as_bytes());
        assert_eq!(parse_join(&m), Ok(spec.group_id()));
    }

    #[test]
    fn malformed_joins_are_refused_with_the_reason() {
        assert_eq!(parse_join(&[]), Err(GroupMessageError::Empty));
        assert_eq!(
            parse_join(&[0x0b]),
            Err(GroupMessageError::UnexpectedType(0x0b, "a join (0x01)"))
        );
        assert_eq!(
            parse_join(&[0x01, 0x21, 0x15, 1, 2]),
            Err(GroupMessageError::Malformed)
        );
        assert_eq!(
            parse_join(&[0x01, 0x03, 0x15, 1, 2]),
            Err(GroupMessageError::GroupIdLength(2))
        );
        assert_eq!(
            parse_join(&[0x01, 0x02, 0x33, 1]),
            Err(GroupMessageError::UnknownJoinOption(0x33))
        );
        let mut bad_spec = vec![0x01];
        put_option(&mut bad_spec, 0x10, b"G:zz");
        assert!(matches!(
            parse_join(&bad_spec),
            Err(GroupMessageError::BadSpec(_))
        ));
    }

    #[test]
    fn member_notices_round_trip() {
        let peer = PeerId([7; 32]);
        let m = member_notice(&peer);
        assert_eq!(m.len(), 33);
        assert_eq!(m[0], 0x0b);
        assert_eq!(parse_member_notice(&m), Ok(peer));
        assert_eq!(
            parse_member_notice(&m[..20]),
            Err(GroupMessageError::NoticeLength(20))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = parse_join(&bytes);
            let _ = parse_member_notice(&bytes);
        }
    }

    #[test]
    fn a_multicast_key_message_round_trips_and_bad_ones_are_refused() {
        let key = MulticastKey {
            id: 3,
            secret: [5; 32],
        };
        let addr: SocketAddr = "239.1.2.3:30000".parse().unwrap();
        let source: IpAddr = "10.0.0.1".parse().unwrap();
        let m = multicast_key_message(addr, &key, true, Some(source));
        let grant = MulticastGrant {
            address: addr,
            key: key.clone(),
            relay: true,
            source: Some(source),
        };
        assert_eq!(parse_multicast_key(&m), Some(grant));
        let v6: SocketAddr = "[ff15::1]:30000".parse().unwrap();
        let back = parse_multicast_key(&multicast_key_message(v6, &key, false, None)).unwrap();
        assert_eq!((back.address, back.relay, back.source), (v6, false, None));
        // A source of the other IP version, or not an address, is malformed.
        let mut wrong = multicast_key_message(addr, &key, true, None);
        wrong.extend_from_slice(b" ::1");
        assert_eq!(parse_multicast_key(&wrong), None);
        let mut junk = multicast_key_message(addr, &key, true, None);
        junk.extend_from_slice(b" nonsense");
        assert_eq!(parse_multicast_key(&junk), None);
        assert_eq!(parse_multicast_key(&m[..30]), None);
        let unicast: SocketAddr = "10.0.0.1:30000".parse().unwrap();
        assert_eq!(
            parse_multicast_key(&multicast_key_message(unicast, &key, false, None)),
            None
        );
        assert_eq!(parse_multicast_key(&member_notice(&PeerId([1; 32]))), None);
    }
}
