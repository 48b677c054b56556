//! The groupspec string and the group id derived from it (docs/netgroup.md §1).
//!
//! A groupspec is `G:` followed by lowercase hex. The hex decodes to an option list
//! (RFC 7016 §2.1.3 options: `length(VLU) type(VLU) value`), a zero-length end marker, and
//! an optional second option list that Flash uses for authorizations and IP multicast
//! addresses. Only the text before the end marker names the group: its SHA-256 (applied
//! twice for version 2 specs) is the 32-byte group id that members send to the server and
//! to each other.
//!
//! Parsing keeps every option, known or not, in order, and remembers the hex case, so
//! `GroupSpec::parse(s)?.to_string() == s` for every spec it accepts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sha2::{Digest, Sha256};

use crate::proto::epd::PeerId;
use crate::proto::vlu::{put_vlu, vlu_len, MAX_VLU_LEN};

/// Every groupspec starts with these two characters.
pub const PREFIX: &str = "G:";

/// Option `0x7f`: minimum groupspec version. A value of exactly `[0x02]` makes the group id
/// a double SHA-256 (librtmfp: sources/Invoker.cpp).
pub const VERSION_OPTION: u64 = 0x7f;
/// Option `0x0e`: the group name given to Flash's `GroupSpecifier(name)`.
pub const NAME_OPTION: u64 = 0x0e;
/// Option `0x05` (observed, meaning inferred): SHA-256 of the publish password.
pub const PASSWORD_HASH_OPTION: u64 = 0x05;
/// Option `0x0a` after the end marker (observed): an IP multicast address, address bytes
/// then a 2-byte port.
pub const IP_MULTICAST_ADDRESS_OPTION: u64 = 0x0a;
/// Option `0x15` after the end marker (observed, meaning inferred): the clear password
/// whose hash is the `0x05` option.
pub const PASSWORD_AUTHORIZATION_OPTION: u64 = 0x15;

/// The 32-byte group id: SHA-256 of the groupspec text before its end marker, hashed a
/// second time for version 2 specs. Binary in the server join message, 64 lowercase hex
/// characters in the peer group handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub [u8; 32]);

impl GroupId {
    /// Lowercase hex, the form peers exchange in the group handshake.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0, HexCase::Lower)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.to_hex())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A member's position on the group's overlay ring: SHA-256 of `0x21 0x0f ‖ peerId` (the
/// peer id written as an RFC 7016 option of type `0x0f`). MonaServer2 orders members by it
/// to pick which ones hear of a newcomer; librtmfp orders its neighbours by it.
pub fn group_address(peer_id: &PeerId) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0x21, 0x0f]);
    hasher.update(peer_id.0);
    hasher.finalize().into()
}

/// The case of the hex digits after `G:`. Flash writes lowercase; the group id hashes the
/// text as written, so the case is part of the group's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HexCase {
    #[default]
    Lower,
    Upper,
}

/// One option of a groupspec, in its RFC 7016 form `length(VLU) type(VLU) value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpecOption {
    pub kind: u64,
    pub value: Vec<u8>,
}

impl SpecOption {
    pub fn new(kind: u64, value: impl Into<Vec<u8>>) -> Self {
        SpecOption {
            kind,
            value: value.into(),
        }
    }

    /// A capability flag: a type with no value.
    pub fn flag(kind: u64) -> Self {
        SpecOption {
            kind,
            value: Vec::new(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_vlu(out, (vlu_len(self.kind) + self.value.len()) as u64);
        put_vlu(out, self.kind);
        out.extend_from_slice(&self.value);
    }
}

/// Capability flags of Flash's `GroupSpecifier`, each an option with no value.
///
/// The codes are inferred from public Flash-produced groupspecs (docs/netgroup.md §1.2),
/// not confirmed against Flash Player. `routingEnabled` and `objectReplicationEnabled`
/// are absent on purpose: one public spec carries an unexplained flag `0x00` that may be
/// either; use [`GroupSpecifier::other_flags`] to write raw codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `multicastEnabled` (`0x01`, present in every streaming spec seen).
    Multicast,
    /// `postingEnabled` (`0x03`, inferred).
    Posting,
    /// `serverChannelEnabled` (`0x0c`, inferred: replaced by `0x0d` in an IP-multicast-only spec).
    ServerChannel,
    /// `peerToPeerDisabled` (`0x0d`, inferred from the IP-multicast-only spec).
    PeerToPeerDisabled,
    /// `ipMulticastMemberUpdatesEnabled` (`0x1b`, inferred from a P2P + IP multicast spec).
    IpMulticastMemberUpdates,
}

impl Capability {
    pub const ALL: [Capability; 5] = [
        Capability::Multicast,
        Capability::Posting,
        Capability::ServerChannel,
        Capability::PeerToPeerDisabled,
        Capability::IpMulticastMemberUpdates,
    ];

    pub const fn code(self) -> u64 {
        match self {
            Capability::Multicast => 0x01,
            Capability::Posting => 0x03,
            Capability::ServerChannel => 0x0c,
            Capability::PeerToPeerDisabled => 0x0d,
            Capability::IpMulticastMemberUpdates => 0x1b,
        }
    }

    pub fn from_code(code: u64) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Why a groupspec string was refused. Positions count bytes from the start of the text
/// (so the first hex digit is at 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupSpecError {
    #[error("a groupspec starts with \"G:\"; this one does not")]
    MissingPrefix,
    #[error("a group needs a name or a groupspec (G:...); this one is empty")]
    EmptyName,
    #[error("character {found:?} at position {position} is not a hex digit")]
    InvalidHexDigit { position: usize, found: char },
    #[error("the hex after \"G:\" has {digits} digits; bytes need an even number")]
    OddHexLength { digits: usize },
    #[error(
        "hex digit at position {position} changes case; the group id hashes the text as \
         written, so a spec must be all lowercase (as Flash writes it) or all uppercase"
    )]
    MixedHexCase { position: usize },
    #[error("the option starting at position {position} ends inside its length or type field")]
    TruncatedOptionHeader { position: usize },
    #[error(
        "the option at position {position} declares {declared} bytes but only {available} \
         follow"
    )]
    OptionOverrun {
        position: usize,
        declared: u64,
        available: usize,
    },
    #[error(
        "the variable length integer at position {position} is not in its shortest form \
         (or exceeds 64 bits); it could not be written back identically"
    )]
    NonCanonicalVlu { position: usize },
    #[error("no end marker (00) after the options; the group's identity part is unterminated")]
    MissingEndMarker,
    #[error(
        "a second end marker (00) at position {position}: the authorization part has no \
         terminator of its own"
    )]
    SecondEndMarker { position: usize },
}

/// A parsed groupspec: the identity options (before the end marker), the authorization
/// options (after it), and the hex case, which together reproduce the text exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupSpec {
    identity: Vec<SpecOption>,
    authorizations: Vec<SpecOption>,
    hex_case: HexCase,
}

impl GroupSpec {
    /// A spec from its two option lists, written in lowercase hex as Flash does.
    pub fn from_options(identity: Vec<SpecOption>, authorizations: Vec<SpecOption>) -> Self {
        GroupSpec {
            identity,
            authorizations,
            hex_case: HexCase::Lower,
        }
    }

    /// Parses a groupspec as Flash and librtmfp write it. Never panics.
    pub fn parse(text: &str) -> Result<GroupSpec, GroupSpecError> {
        let hex = text
            .strip_prefix(PREFIX)
            .ok_or(GroupSpecError::MissingPrefix)?;
        let (bytes, hex_case) = decode_hex(hex, PREFIX.len())?;
        let position = |offset: usize| PREFIX.len() + 2 * offset;

        let mut identity = Vec::new();
        let mut authorizations = Vec::new();
        let mut in_identity = true;
        let mut offset = 0;
        while offset < bytes.len() {
            let start = offset;
            let (length, after_length) = read_vlu(&bytes, offset).map_err(|e| match e {
                VluProblem::Truncated => GroupSpecError::TruncatedOptionHeader {
                    position: position(start),
                },
                VluProblem::NonCanonical => GroupSpecError::NonCanonicalVlu {
                    position: position(start),
                },
            })?;
            offset = after_length;
            if length == 0 {
                if !in_identity {
                    return Err(GroupSpecError::SecondEndMarker {
                        position: position(start),
                    });
                }
                in_identity = false;
                continue;
            }
            let available = bytes.len() - offset;
            let body_len = match usize::try_from(length) {
                Ok(n) if n <= available => n,
                _ => {
                    return Err(GroupSpecError::OptionOverrun {
                        position: position(start),
                        declared: length,
                        available,
                    })
                }
            };
            let body = &bytes[offset..offset + body_len];
            let (kind, after_kind) = read_vlu(body, 0).map_err(|e| match e {
                VluProblem::Truncated => GroupSpecError::TruncatedOptionHeader {
                    position: position(start),
                },
                VluProblem::NonCanonical => GroupSpecError::NonCanonicalVlu {
                    position: position(offset),
                },
            })?;
            let option = SpecOption::new(kind, &body[after_kind..]);
            if in_identity {
                identity.push(option);
            } else {
                authorizations.push(option);
            }
            offset += body_len;
        }
        if in_identity {
            return Err(GroupSpecError::MissingEndMarker);
        }
        Ok(GroupSpec {
            identity,
            authorizations,
            hex_case,
        })
    }

    /// The options before the end marker: the ones that name the group.
    pub fn identity_options(&self) -> &[SpecOption] {
        &self.identity
    }

    /// The options after the end marker (authorizations, IP multicast addresses).
    pub fn authorization_options(&self) -> &[SpecOption] {
        &self.authorizations
    }

    pub fn hex_case(&self) -> HexCase {
        self.hex_case
    }

    /// The decoded bytes: identity options, the `00` end marker, authorization options.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.identity_bytes();
        out.push(0);
        for option in &self.authorizations {
            option.encode(&mut out);
        }
        out
    }

    /// The text the group id is the hash of: `G:` and the hex of the identity options,
    /// without the end marker (librtmfp's `groupTxt`). It also keys the peer group key.
    pub fn identity_text(&self) -> String {
        let mut text = String::from(PREFIX);
        text.push_str(&to_hex(&self.identity_bytes(), self.hex_case));
        text
    }

    /// True when the identity part holds a version option equal to `[0x02]`. Like
    /// librtmfp, the last version option counts if there are several.
    pub fn is_version_2(&self) -> bool {
        self.identity
            .iter()
            .rev()
            .find(|o| o.kind == VERSION_OPTION)
            .is_some_and(|o| o.value == [0x02])
    }

    /// The group id: SHA-256 of [`identity_text`](Self::identity_text), hashed once more
    /// for version 2 specs (librtmfp: sources/Invoker.cpp).
    pub fn group_id(&self) -> GroupId {
        let mut id: [u8; 32] = Sha256::digest(self.identity_text().as_bytes()).into();
        if self.is_version_2() {
            id = Sha256::digest(id).into();
        }
        GroupId(id)
    }

    /// The group name: the first name option. (librtmfp keeps the last one, which for a
    /// spec made unique is the random tag.)
    pub fn name(&self) -> Option<&[u8]> {
        self.identity
            .iter()
            .find(|o| o.kind == NAME_OPTION)
            .map(|o| o.value.as_slice())
    }

    /// Whether the identity part carries the flag of `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.identity
            .iter()
            .any(|o| o.kind == capability.code() && o.value.is_empty())
    }

    /// IP multicast addresses: `0x0a` options of 6 (IPv4) or 18 (IPv6) bytes, from either
    /// part. Options of other sizes are kept but not listed here.
    pub fn ip_multicast_addresses(&self) -> Vec<SocketAddr> {
        self.identity
            .iter()
            .chain(&self.authorizations)
            .filter(|o| o.kind == IP_MULTICAST_ADDRESS_OPTION)
            .filter_map(|o| decode_socket_addr(&o.value))
            .collect()
    }

    fn identity_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for option in &self.identity {
            option.encode(&mut out);
        }
        out
    }
}

impl GroupSpec {
    /// A groupspec (`G:...`) as given, or a group name: the spec Flash's
    /// `GroupSpecifier(name)` writes with `multicastEnabled` and `serverChannelEnabled`
    /// set and `minGroupspecVersion = 2`, so a server and its members can name a group
    /// by a word.
    pub fn from_name_or_spec(text: &str) -> Result<GroupSpec, GroupSpecError> {
        if text.starts_with("G:") || text.starts_with("g:") {
            return GroupSpec::parse(text);
        }
        if text.is_empty() {
            return Err(GroupSpecError::EmptyName);
        }
        let mut specifier = GroupSpecifier::new(text);
        specifier.min_groupspec_version = 2;
        specifier.multicast = true;
        specifier.server_channel = true;
        Ok(specifier.without_authorizations())
    }
}

impl fmt::Display for GroupSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(&to_hex(&self.to_bytes(), self.hex_case))
    }
}

impl std::str::FromStr for GroupSpec {
    type Err = GroupSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupSpec::parse(s)
    }
}

/// The settings of Flash's `GroupSpecifier`, turned into a groupspec in the option order
/// Flash uses (docs/netgroup.md §1.2). Sans-IO: the `makeUnique` tag is given, not drawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSpecifier {
    pub name: String,
    /// `minGroupspecVersion`; 2 or more writes the version option (and 2 changes the group id).
    pub min_groupspec_version: u8,
    pub multicast: bool,
    pub posting: bool,
    pub server_channel: bool,
    pub peer_to_peer_disabled: bool,
    pub ip_multicast_member_updates: bool,
    /// `setPublishPassword`: its SHA-256 names the group, the clear text is an authorization.
    pub publish_password: Option<String>,
    /// The 32 random bytes `makeUnique()` adds, as a second name option.
    pub unique_tag: Option<[u8; 32]>,
    /// `addIPMulticastAddress`, written after the end marker (does not change the group id).
    pub ip_multicast_addresses: Vec<SocketAddr>,
    /// Raw capability codes whose property is not confirmed (e.g. `0x00`), written after
    /// the multicast flag, where Flash put the one such code seen.
    pub other_flags: Vec<u64>,
}

impl GroupSpecifier {
    pub fn new(name: impl Into<String>) -> Self {
        GroupSpecifier {
            name: name.into(),
            ..GroupSpecifier::default()
        }
    }

    /// Like `groupspecWithoutAuthorizations()`: no clear passwords after the end marker.
    pub fn without_authorizations(&self) -> GroupSpec {
        GroupSpec::from_options(self.identity_options(), self.trailing_options(false))
    }

    /// Like `groupspecWithAuthorizations()`: the clear publish password is included.
    pub fn with_authorizations(&self) -> GroupSpec {
        GroupSpec::from_options(self.identity_options(), self.trailing_options(true))
    }

    fn identity_options(&self) -> Vec<SpecOption> {
        let mut options = Vec::new();
        if self.min_groupspec_version >= 2 {
            options.push(SpecOption::new(
                VERSION_OPTION,
                [self.min_groupspec_version],
            ));
        }
        if self.multicast {
            options.push(SpecOption::flag(Capability::Multicast.code()));
        }
        options.extend(self.other_flags.iter().map(|&code| SpecOption::flag(code)));
        if self.posting {
            options.push(SpecOption::flag(Capability::Posting.code()));
        }
        if let Some(password) = &self.publish_password {
            options.push(SpecOption::new(
                PASSWORD_HASH_OPTION,
                Sha256::digest(password.as_bytes()).to_vec(),
            ));
        }
        if self.server_channel {
            options.push(SpecOption::flag(Capability::ServerChannel.code()));
        }
        if self.peer_to_peer_disabled {
            options.push(SpecOption::flag(Capability::PeerToPeerDisabled.code()));
        }
        options.push(SpecOption::new(NAME_OPTION, self.name.as_bytes()));
        if let Some(tag) = self.unique_tag {
            options.push(SpecOption::new(NAME_OPTION, tag));
        }
        if self.ip_multicast_member_updates {
            options.push(SpecOption::flag(
                Capability::IpMulticastMemberUpdates.code(),
            ));
        }
        options
    }

    /// Addresses, then the clear password; no public spec shows both, so this order is a guess.
    fn trailing_options(&self, with_authorizations: bool) -> Vec<SpecOption> {
        let mut options: Vec<SpecOption> = self
            .ip_multicast_addresses
            .iter()
            .map(|address| {
                SpecOption::new(IP_MULTICAST_ADDRESS_OPTION, encode_socket_addr(address))
            })
            .collect();
        if with_authorizations {
            if let Some(password) = &self.publish_password {
                options.push(SpecOption::new(
                    PASSWORD_AUTHORIZATION_OPTION,
                    password.as_bytes(),
                ));
            }
        }
        options
    }
}

enum VluProblem {
    Truncated,
    NonCanonical,
}

/// Reads a VLU at `offset`, refusing forms that would not be written back identically.
fn read_vlu(bytes: &[u8], offset: usize) -> Result<(u64, usize), VluProblem> {
    let mut value: u64 = 0;
    for i in 0..MAX_VLU_LEN {
        let &byte = bytes.get(offset + i).ok_or(VluProblem::Truncated)?;
        // A leading 0x80 is a zero group: a longer form of a shorter number.
        if i == 0 && byte == 0x80 {
            return Err(VluProblem::NonCanonical);
        }
        if value >> 57 != 0 {
            return Err(VluProblem::NonCanonical);
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Ok((value, offset + i + 1));
        }
    }
    Err(VluProblem::NonCanonical)
}

/// Decodes the hex after the prefix; `base` is the text position of its first digit.
fn decode_hex(hex: &str, base: usize) -> Result<(Vec<u8>, HexCase), GroupSpecError> {
    let mut case: Option<HexCase> = None;
    let mut nibbles = Vec::with_capacity(hex.len());
    for (index, c) in hex.char_indices() {
        let position = base + index;
        let nibble = c
            .to_digit(16)
            .ok_or(GroupSpecError::InvalidHexDigit { position, found: c })?;
        let letter_case = if c.is_ascii_lowercase() {
            Some(HexCase::Lower)
        } else if c.is_ascii_uppercase() {
            Some(HexCase::Upper)
        } else {
            None
        };
        if let Some(this) = letter_case {
            match case {
                Some(seen) if seen != this => {
                    return Err(GroupSpecError::MixedHexCase { position })
                }
                _ => case = Some(this),
            }
        }
        nibbles.push(nibble as u8);
    }
    if nibbles.len() % 2 != 0 {
        return Err(GroupSpecError::OddHexLength {
            digits: nibbles.len(),
        });
    }
    let bytes = nibbles
        .chunks_exact(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect();
    Ok((bytes, case.unwrap_or_default()))
}

fn to_hex(bytes: &[u8], case: HexCase) -> String {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let digits = match case {
        HexCase::Lower => LOWER,
        HexCase::Upper => UPPER,
    };
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0x0f)]));
    }
    out
}

fn encode_socket_addr(address: &SocketAddr) -> Vec<u8> {
    let mut out = match address.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&address.port().to_be_bytes());
    out
}

fn decode_socket_addr(value: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = match value.len() {
        6 => {
            let octets: [u8; 4] = value[..4].try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(octets)), &value[4..])
        }
        18 => {
            let octets: [u8; 16] = value[..16].try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(octets)), &value[16..])
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// librtmfp's README example (a version 2 spec).
    const LIBRTMFP_README: &str = "G:027f0201010103010c050e74657374011b00";
    /// librtmfp's TestClient/runViewers.sh default: the README spec plus flag 0x00.
    const LIBRTMFP_RUN_VIEWERS: &str = "G:027f02010101000103010c050e74657374011b00";
    /// OSMF's multicast unit test ("fusionstream1": P2P + IP multicast), publish password
    /// "password", made unique, one IP multicast address after the end marker.
    const OSMF_FUSION: &str = "G:010121055e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8010c170e6f72672e6f736d662e6e65742e6d756c746963617374210e61b67506b6a5f02187ca24fe590388778040fa3a9c23589c58baadd097c12657011b00070ae00000fe814b";
    /// A public Flash sample for IP multicast only (peer-to-peer disabled).
    const FLASH_IP_MULTICAST_ONLY: &str = "G:0101210513d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c010d160e666d732e6d756c7469636173742e6578616d706c6500070aef0102037530";
    /// A public Flash sample with publish password "realeyes", with authorizations.
    const FLASH_WITH_AUTHORIZATION: &str = "G:01012105f8cd3b377cf93646b30b07f29cf917d68d63c26ac60af46f0563829280d48fc5010c160e666d732e6d756c7469636173742e6578616d706c650009157265616c65796573";

    fn hex32(s: &str) -> [u8; 32] {
        let (bytes, _) = decode_hex(s, 0).unwrap();
        bytes.try_into().unwrap()
    }

    // Group ids observed from librtmfp: MonaTiny (MonaServer2) listening on
    // 127.0.0.1:19391, then librtmfp's TestClient run as
    // `TestClient --url=rtmfp://127.0.0.1:19391/live/test --netGroup=<spec> --log=8`
    // for each spec; its debug log line "Invoker.cpp[617] Encrypted Group Id : <hex>"
    // gave the values below.
    #[test]
    fn group_id_of_a_version_2_spec_is_a_double_sha256_as_librtmfp_computes_it() {
        let spec = GroupSpec::parse(LIBRTMFP_README).unwrap();
        assert!(spec.is_version_2());
        assert_eq!(
            spec.group_id().to_hex(),
            "763f90e4b524a0e026052bb5696bd143246f26c6eb0b9fa31b0d1ed39a092620"
        );
    }

    #[test]
    fn group_id_of_a_version_1_spec_is_a_single_sha256_as_librtmfp_computes_it() {
        let spec = GroupSpec::parse("G:0101010c050e74657374011b00").unwrap();
        assert!(!spec.is_version_2());
        assert_eq!(
            spec.group_id().to_hex(),
            "4f1a5af4b233f423d86828c14ea283543124c16b783f310dd4f237246e7db18e"
        );
    }

    #[test]
    fn group_id_ignores_everything_after_the_end_marker_as_librtmfp_does() {
        let spec = GroupSpec::parse(OSMF_FUSION).unwrap();
        assert_eq!(
            spec.group_id().to_hex(),
            "daab97d343c073793be3b1e408ea9bb25db559b53b4ce1728c6dede50e541de9"
        );
        let without_address = GroupSpec::from_options(spec.identity_options().to_vec(), Vec::new());
        assert_eq!(without_address.group_id(), spec.group_id());
    }

    #[test]
    fn group_id_hashes_the_text_so_hex_case_changes_it() {
        let lower = GroupSpec::parse("G:0101010c050e74657374011b00").unwrap();
        let upper = GroupSpec::parse("G:0101010C050E74657374011B00").unwrap();
        assert_eq!(upper.hex_case(), HexCase::Upper);
        assert_eq!(upper.identity_options(), lower.identity_options());
        assert_ne!(upper.group_id(), lower.group_id());
        assert_eq!(upper.to_string(), "G:0101010C050E74657374011B00");
    }

    #[test]
    fn identity_text_is_the_spec_without_its_end_marker_and_tail() {
        let spec = GroupSpec::parse(FLASH_IP_MULTICAST_ONLY).unwrap();
        let text = spec.identity_text();
        assert!(FLASH_IP_MULTICAST_ONLY.starts_with(&text));
        assert_eq!(&FLASH_IP_MULTICAST_ONLY[text.len()..], "00070aef0102037530");
    }

    #[test]
    fn public_specs_round_trip_byte_exactly() {
        for text in [
            LIBRTMFP_README,
            LIBRTMFP_RUN_VIEWERS,
            OSMF_FUSION,
            FLASH_IP_MULTICAST_ONLY,
            FLASH_WITH_AUTHORIZATION,
        ] {
            let spec = GroupSpec::parse(text).unwrap();
            assert_eq!(spec.to_string(), text);
            assert_eq!(text.parse::<GroupSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn parse_reads_name_flags_and_ip_multicast_addresses() {
        let spec = GroupSpec::parse(FLASH_IP_MULTICAST_ONLY).unwrap();
        assert_eq!(spec.name(), Some(&b"fms.multicast.example"[..]));
        assert!(spec.has(Capability::Multicast));
        assert!(spec.has(Capability::PeerToPeerDisabled));
        assert!(!spec.has(Capability::ServerChannel));
        assert_eq!(
            spec.ip_multicast_addresses(),
            vec!["239.1.2.3:30000".parse::<SocketAddr>().unwrap()]
        );

        let fusion = GroupSpec::parse(OSMF_FUSION).unwrap();
        assert_eq!(fusion.name(), Some(&b"org.osmf.net.multicast"[..]));
        assert!(fusion.has(Capability::IpMulticastMemberUpdates));
        assert_eq!(
            fusion.ip_multicast_addresses(),
            vec!["224.0.0.254:33099".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn unknown_options_are_kept_in_order() {
        let text = "G:010101420501aabbccdd00037799aa";
        let spec = GroupSpec::parse(text).unwrap();
        assert_eq!(
            spec.identity_options(),
            &[
                SpecOption::flag(0x01),
                SpecOption::flag(0x42),
                SpecOption::new(0x01, [0xaa, 0xbb, 0xcc, 0xdd])
            ][..]
        );
        assert_eq!(
            spec.authorization_options(),
            &[SpecOption::new(0x77, [0x99, 0xaa])][..]
        );
        assert_eq!(spec.to_string(), text);
    }

    #[test]
    fn builder_reproduces_librtmfp_examples() {
        let mut specifier = GroupSpecifier::new("test");
        specifier.min_groupspec_version = 2;
        specifier.multicast = true;
        specifier.posting = true;
        specifier.server_channel = true;
        specifier.ip_multicast_member_updates = true;
        assert_eq!(
            specifier.without_authorizations().to_string(),
            LIBRTMFP_README
        );

        specifier.other_flags = vec![0x00];
        assert_eq!(
            specifier.without_authorizations().to_string(),
            LIBRTMFP_RUN_VIEWERS
        );
    }

    #[test]
    fn builder_reproduces_flash_fusion_spec_with_password_unique_tag_and_address() {
        let mut specifier = GroupSpecifier::new("org.osmf.net.multicast");
        specifier.multicast = true;
        specifier.server_channel = true;
        specifier.ip_multicast_member_updates = true;
        specifier.publish_password = Some("password".into());
        specifier.unique_tag = Some(hex32(
            "61b67506b6a5f02187ca24fe590388778040fa3a9c23589c58baadd097c12657",
        ));
        specifier.ip_multicast_addresses = vec!["224.0.0.254:33099".parse().unwrap()];
        assert_eq!(specifier.without_authorizations().to_string(), OSMF_FUSION);
    }

    #[test]
    fn builder_reproduces_flash_spec_with_authorizations() {
        let mut specifier = GroupSpecifier::new("fms.multicast.example");
        specifier.multicast = true;
        specifier.server_channel = true;
        specifier.publish_password = Some("realeyes".into());
        let with = specifier.with_authorizations();
        assert_eq!(with.to_string(), FLASH_WITH_AUTHORIZATION);
        let without = specifier.without_authorizations();
        assert!(without.authorization_options().is_empty());
        assert_eq!(with.group_id(), without.group_id());
    }

    #[test]
    fn group_address_matches_the_capture() {
        // Peer ids and addresses from netgroup_mona-first40.pcap (docs/netgroup.md §6).
        let b = PeerId(hex32(
            "ecbd46b72331f35071dd2fece4460dcf2485aeaffdd8634f1b66ffe94a08f964",
        ));
        assert_eq!(
            group_address(&b),
            hex32("5ffd98a4ac522db6a4dec0b3cca19f6e51a1c39e732f331a04f86973c2717448")
        );
    }

    #[test]
    fn malformed_specs_say_which_part_is_wrong() {
        use GroupSpecError::*;
        let cases: &[(&str, GroupSpecError)] = &[
            ("", MissingPrefix),
            ("g:0100", MissingPrefix),
            ("0100", MissingPrefix),
            ("G:", MissingEndMarker),
            ("G:0101", MissingEndMarker),
            (
                "G:01x100",
                InvalidHexDigit {
                    position: 4,
                    found: 'x',
                },
            ),
            (
                "G:01é00",
                InvalidHexDigit {
                    position: 4,
                    found: 'é',
                },
            ),
            ("G:01010", OddHexLength { digits: 5 }),
            ("G:010A0b00", MixedHexCase { position: 7 }),
            (
                "G:0501aa00",
                OptionOverrun {
                    position: 2,
                    declared: 5,
                    available: 3,
                },
            ),
            ("G:ff", TruncatedOptionHeader { position: 2 }),
            ("G:8001010100", NonCanonicalVlu { position: 2 }),
            ("G:02808100", NonCanonicalVlu { position: 4 }),
            ("G:0101000101000100", SecondEndMarker { position: 12 }),
        ];
        for (text, expected) in cases {
            assert_eq!(GroupSpec::parse(text).as_ref(), Err(expected), "{text:?}");
            assert!(!expected.to_string().is_empty());
        }
    }

    fn option_strategy() -> impl Strategy<Value = SpecOption> {
        (0u64..300, proptest::collection::vec(any::<u8>(), 0..140))
            .prop_map(|(kind, value)| SpecOption::new(kind, value))
    }

    fn specifier_strategy() -> impl Strategy<Value = GroupSpecifier> {
        (
            (".{0,40}", 0u8..4, any::<[bool; 5]>()),
            (
                proptest::option::of("[a-z]{1,12}"),
                proptest::option::of(any::<[u8; 32]>()),
            ),
            proptest::collection::vec(any::<([u8; 4], u16)>(), 0..3),
            // Raw flags other than the typed capabilities, so the typed fields stay the only source.
            proptest::collection::vec(
                proptest::sample::select(vec![0x00u64, 0x02, 0x04, 0x10, 0x7e]),
                0..2,
            ),
        )
            .prop_map(
                |((name, version, flags), (password, unique_tag), addresses, other_flags)| {
                    GroupSpecifier {
                        name,
                        min_groupspec_version: version,
                        multicast: flags[0],
                        posting: flags[1],
                        server_channel: flags[2],
                        peer_to_peer_disabled: flags[3],
                        ip_multicast_member_updates: flags[4],
                        publish_password: password,
                        unique_tag,
                        ip_multicast_addresses: addresses
                            .into_iter()
                            .map(|(ip, port)| SocketAddr::from((ip, port)))
                            .collect(),
                        other_flags,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn produced_specs_parse_back_to_themselves(specifier in specifier_strategy()) {
            for spec in [specifier.with_authorizations(), specifier.without_authorizations()] {
                let text = spec.to_string();
                let parsed = GroupSpec::parse(&text).unwrap();
                prop_assert_eq!(&parsed, &spec);
                prop_assert_eq!(parsed.to_string(), text);
                prop_assert_eq!(parsed.group_id(), spec.group_id());
                prop_assert_eq!(parsed.has(Capability::Multicast), specifier.multicast);
                prop_assert_eq!(parsed.ip_multicast_addresses(), specifier.ip_multicast_addresses.clone());
            }
        }

        #[test]
        fn any_option_lists_round_trip_in_either_case(
            identity in proptest::collection::vec(option_strategy(), 0..6),
            authorizations in proptest::collection::vec(option_strategy(), 0..4),
            upper in any::<bool>(),
        ) {
            let mut spec = GroupSpec::from_options(identity, authorizations);
            if upper {
                spec.hex_case = HexCase::Upper;
            }
            let text = spec.to_string();
            let parsed = GroupSpec::parse(&text).unwrap();
            // A spec of digits only parses as lowercase; its text is the same either way.
            prop_assert_eq!(parsed.to_string(), text);
            prop_assert_eq!(parsed.identity_options(), spec.identity_options());
            prop_assert_eq!(parsed.authorization_options(), spec.authorization_options());
        }

        #[test]
        fn parse_never_panics(text in "G:[0-9a-fA-Fx]{0,64}|.{0,40}") {
            let _ = GroupSpec::parse(&text);
        }
    }
}
