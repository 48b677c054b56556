//! Every chunk of RFC 7016 §2.3, decoded as a borrowed view of the packet and encoded
//! back byte for byte. Unknown chunk types are handed up as [`Chunk::Unknown`] so the
//! session can skip them (RFC 7016 §2.2.4: "unrecognized chunks are ignored").

use super::address::EncodedAddress;
use super::packet::PacketHeader;
use super::vlu::{put_marker, put_option, put_option_vlu, put_vlu, put_vlu_field, Reader};
use super::ParseError;

pub mod kind {
    pub const PADDING_0: u8 = 0x00;
    pub const PADDING_FF: u8 = 0xff;
    pub const PING: u8 = 0x01;
    pub const SESSION_CLOSE_REQUEST: u8 = 0x0c;
    pub const FORWARDED_IHELLO: u8 = 0x0f;
    pub const USER_DATA: u8 = 0x10;
    pub const NEXT_USER_DATA: u8 = 0x11;
    pub const BUFFER_PROBE: u8 = 0x18;
    pub const IHELLO: u8 = 0x30;
    pub const IIKEYING: u8 = 0x38;
    pub const PING_REPLY: u8 = 0x41;
    pub const SESSION_CLOSE_ACK: u8 = 0x4c;
    pub const ACK_BITMAP: u8 = 0x50;
    pub const ACK_RANGES: u8 = 0x51;
    pub const FLOW_EXCEPTION: u8 = 0x5e;
    pub const RHELLO: u8 = 0x70;
    pub const REDIRECT: u8 = 0x71;
    pub const RIKEYING: u8 = 0x78;
    pub const RHELLO_COOKIE_CHANGE: u8 = 0x79;
}

/// RFC 7016 §2.3.11 user data flags.
pub mod data_flags {
    pub const OPTIONS: u8 = 0x80;
    pub const FRAGMENT_MASK: u8 = 0x30;
    pub const ABANDON: u8 = 0x02;
    pub const FINAL: u8 = 0x01;
}

/// RFC 7016 §2.3.11.1 user data option types.
pub mod data_option {
    pub const USER_METADATA: u64 = 0x00;
    pub const RETURN_FLOW_ASSOCIATION: u64 = 0x0a;
    /// Options below this type must be understood or the flow rejected (§2.3.11.1).
    pub const MANDATORY_CUTOFF: u64 = 0x2000;
}

/// Where a fragment sits in its message (RFC 7016 §2.3.11 "fra").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragmentation {
    Whole = 0x00,
    Begin = 0x10,
    End = 0x20,
    Middle = 0x30,
}

impl Fragmentation {
    pub fn from_flags(flags: u8) -> Self {
        match flags & data_flags::FRAGMENT_MASK {
            0x10 => Fragmentation::Begin,
            0x20 => Fragmentation::End,
            0x30 => Fragmentation::Middle,
            _ => Fragmentation::Whole,
        }
    }

    /// Does a message start with this fragment?
    pub fn starts_message(self) -> bool {
        matches!(self, Fragmentation::Whole | Fragmentation::Begin)
    }

    pub fn ends_message(self) -> bool {
        matches!(self, Fragmentation::Whole | Fragmentation::End)
    }
}

/// The options a flow's first fragment carries (RFC 7016 §2.3.11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOptions<'a> {
    pub metadata: Option<&'a [u8]>,
    pub return_flow: Option<u64>,
    /// An option we do not understand below the mandatory cutoff was present: the
    /// receiver must reject the flow.
    pub unknown_mandatory: bool,
}

impl<'a> DataOptions<'a> {
    fn parse(r: &mut Reader<'a>) -> Result<Self, ParseError> {
        let mut opts = DataOptions::default();
        while let Some((kind, value)) = r.option()? {
            match kind {
                data_option::USER_METADATA => opts.metadata = Some(value),
                data_option::RETURN_FLOW_ASSOCIATION => {
                    opts.return_flow = Some(Reader::new(value).vlu()?);
                }
                k if k < data_option::MANDATORY_CUTOFF => opts.unknown_mandatory = true,
                _ => {}
            }
        }
        Ok(opts)
    }

    fn emit(&self, out: &mut Vec<u8>) {
        if let Some(m) = self.metadata {
            put_option(out, data_option::USER_METADATA, m);
        }
        if let Some(f) = self.return_flow {
            put_option_vlu(out, data_option::RETURN_FLOW_ASSOCIATION, f);
        }
        put_marker(out);
    }

    pub fn is_empty(&self) -> bool {
        self.metadata.is_none() && self.return_flow.is_none()
    }
}

/// One fragment of user data (RFC 7016 §2.3.11, §2.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserData<'a> {
    pub fragmentation: Fragmentation,
    pub abandon: bool,
    pub final_fragment: bool,
    /// Present when the options flag is set.
    pub options: Option<DataOptions<'a>>,
    pub data: &'a [u8],
}

impl<'a> UserData<'a> {
    fn flags(&self) -> u8 {
        let mut f = self.fragmentation as u8;
        if self.options.is_some() {
            f |= data_flags::OPTIONS;
        }
        if self.abandon {
            f |= data_flags::ABANDON;
        }
        if self.final_fragment {
            f |= data_flags::FINAL;
        }
        f
    }

    fn parse_after_ids(flags: u8, r: &mut Reader<'a>) -> Result<Self, ParseError> {
        let options = if flags & data_flags::OPTIONS != 0 {
            Some(DataOptions::parse(r)?)
        } else {
            None
        };
        Ok(UserData {
            fragmentation: Fragmentation::from_flags(flags),
            abandon: flags & data_flags::ABANDON != 0,
            final_fragment: flags & data_flags::FINAL != 0,
            options,
            data: r.rest(),
        })
    }

    fn emit_after_ids(&self, out: &mut Vec<u8>) {
        if let Some(o) = &self.options {
            o.emit(out);
        }
        out.extend_from_slice(self.data);
    }
}

/// A received-range pair in an Ack Ranges chunk (RFC 7016 §2.3.14): after the previous
/// acknowledged sequence number, `holes_minus_one + 1` missing then `received_minus_one + 1`
/// received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRange {
    pub holes_minus_one: u64,
    pub received_minus_one: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// §2.3.1 / §2.2.4: chunk type 0x00 (a sized padding chunk).
    Padding(usize),
    /// §2.3.2 Initiator Hello.
    IHello { epd: &'a [u8], tag: &'a [u8] },
    /// §2.3.3 Forwarded Initiator Hello.
    ForwardedIHello {
        epd: &'a [u8],
        reply_address: EncodedAddress,
        tag: &'a [u8],
    },
    /// §2.3.4 Responder Hello.
    RHello {
        tag: &'a [u8],
        cookie: &'a [u8],
        certificate: &'a [u8],
    },
    /// §2.3.5 Responder Redirect.
    Redirect {
        tag: &'a [u8],
        addresses: Vec<EncodedAddress>,
    },
    /// §2.3.6 RHello Cookie Change.
    RHelloCookieChange {
        old_cookie: &'a [u8],
        new_cookie: &'a [u8],
    },
    /// §2.3.7 Initiator Initial Keying.
    IIKeying {
        initiator_session_id: u32,
        cookie: &'a [u8],
        certificate: &'a [u8],
        keying_component: &'a [u8],
        signature: &'a [u8],
    },
    /// §2.3.8 Responder Initial Keying.
    RIKeying {
        responder_session_id: u32,
        keying_component: &'a [u8],
        signature: &'a [u8],
    },
    /// §2.3.9 Ping.
    Ping { message: &'a [u8] },
    /// §2.3.10 Ping Reply.
    PingReply { message: &'a [u8] },
    /// §2.3.11 User Data.
    UserData {
        flow_id: u64,
        sequence: u64,
        fsn_offset: u64,
        fragment: UserData<'a>,
    },
    /// §2.3.12 Next User Data: same flow, sequence + 1, same forward sequence number.
    NextUserData { fragment: UserData<'a> },
    /// §2.3.13 Data Acknowledgement Bitmap.
    AckBitmap {
        flow_id: u64,
        buffer_blocks: u64,
        cumulative_ack: u64,
        bitmap: &'a [u8],
    },
    /// §2.3.14 Data Acknowledgement Ranges.
    AckRanges {
        flow_id: u64,
        buffer_blocks: u64,
        cumulative_ack: u64,
        ranges: Vec<AckRange>,
    },
    /// §2.3.15 Buffer Probe.
    BufferProbe { flow_id: u64 },
    /// §2.3.16 Flow Exception Report.
    FlowException { flow_id: u64, code: u64 },
    /// §2.3.17 Session Close Request.
    SessionCloseRequest,
    /// §2.3.18 Session Close Acknowledgement.
    SessionCloseAck,
    /// Anything else: skipped by the session, kept here so tools can show it.
    Unknown { kind: u8, body: &'a [u8] },
}

impl<'a> Chunk<'a> {
    pub fn kind(&self) -> u8 {
        use kind::*;
        match self {
            Chunk::Padding(_) => PADDING_0,
            Chunk::IHello { .. } => IHELLO,
            Chunk::ForwardedIHello { .. } => FORWARDED_IHELLO,
            Chunk::RHello { .. } => RHELLO,
            Chunk::Redirect { .. } => REDIRECT,
            Chunk::RHelloCookieChange { .. } => RHELLO_COOKIE_CHANGE,
            Chunk::IIKeying { .. } => IIKEYING,
            Chunk::RIKeying { .. } => RIKEYING,
            Chunk::Ping { .. } => PING,
            Chunk::PingReply { .. } => PING_REPLY,
            Chunk::UserData { .. } => USER_DATA,
            Chunk::NextUserData { .. } => NEXT_USER_DATA,
            Chunk::AckBitmap { .. } => ACK_BITMAP,
            Chunk::AckRanges { .. } => ACK_RANGES,
            Chunk::BufferProbe { .. } => BUFFER_PROBE,
            Chunk::FlowException { .. } => FLOW_EXCEPTION,
            Chunk::SessionCloseRequest => SESSION_CLOSE_REQUEST,
            Chunk::SessionCloseAck => SESSION_CLOSE_ACK,
            Chunk::Unknown { kind, .. } => *kind,
        }
    }

    /// Decodes one chunk body of type `kind`.
    pub fn parse(kind: u8, body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body);
        let chunk = match kind {
            kind::PADDING_0 => Chunk::Padding(body.len()),
            kind::IHELLO => {
                let epd = r.vlu_field()?;
                Chunk::IHello { epd, tag: r.rest() }
            }
            kind::FORWARDED_IHELLO => {
                let epd = r.vlu_field()?;
                let reply_address = EncodedAddress::parse(&mut r)?;
                Chunk::ForwardedIHello {
                    epd,
                    reply_address,
                    tag: r.rest(),
                }
            }
            kind::RHELLO => {
                let tag = r.vlu_field()?;
                let cookie = r.vlu_field()?;
                Chunk::RHello {
                    tag,
                    cookie,
                    certificate: r.rest(),
                }
            }
            kind::REDIRECT => {
                let tag = r.vlu_field()?;
                let mut addresses = Vec::new();
                while !r.is_empty() {
                    addresses.push(EncodedAddress::parse(&mut r)?);
                }
                Chunk::Redirect { tag, addresses }
            }
            kind::RHELLO_COOKIE_CHANGE => {
                let old_cookie = r.vlu_field()?;
                Chunk::RHelloCookieChange {
                    old_cookie,
                    new_cookie: r.rest(),
                }
            }
            kind::IIKEYING => {
                let initiator_session_id = r.u32()?;
                let cookie = r.vlu_field()?;
                let certificate = r.vlu_field()?;
                let keying_component = r.vlu_field()?;
                Chunk::IIKeying {
                    initiator_session_id,
                    cookie,
                    certificate,
                    keying_component,
                    signature: r.rest(),
                }
            }
            kind::RIKEYING => {
                let responder_session_id = r.u32()?;
                let keying_component = r.vlu_field()?;
                Chunk::RIKeying {
                    responder_session_id,
                    keying_component,
                    signature: r.rest(),
                }
            }
            kind::PING => Chunk::Ping { message: body },
            kind::PING_REPLY => Chunk::PingReply { message: body },
            kind::USER_DATA => {
                let flags = r.u8()?;
                let flow_id = r.vlu()?;
                let sequence = r.vlu()?;
                let fsn_offset = r.vlu()?;
                if fsn_offset > sequence {
                    return Err(ParseError::BadValue);
                }
                let fragment = UserData::parse_after_ids(flags, &mut r)?;
                Chunk::UserData {
                    flow_id,
                    sequence,
                    fsn_offset,
                    fragment,
                }
            }
            kind::NEXT_USER_DATA => {
                let flags = r.u8()?;
                Chunk::NextUserData {
                    fragment: UserData::parse_after_ids(flags, &mut r)?,
                }
            }
            kind::ACK_BITMAP => {
                let flow_id = r.vlu()?;
                let buffer_blocks = r.vlu()?;
                let cumulative_ack = r.vlu()?;
                Chunk::AckBitmap {
                    flow_id,
                    buffer_blocks,
                    cumulative_ack,
                    bitmap: r.rest(),
                }
            }
            kind::ACK_RANGES => {
                let flow_id = r.vlu()?;
                let buffer_blocks = r.vlu()?;
                let cumulative_ack = r.vlu()?;
                let mut ranges = Vec::new();
                while !r.is_empty() {
                    // RFC 7016 §2.3.14: a truncated final range is allowed and ignored.
                    let Ok(holes_minus_one) = r.vlu() else { break };
                    let Ok(received_minus_one) = r.vlu() else {
                        break;
                    };
                    ranges.push(AckRange {
                        holes_minus_one,
                        received_minus_one,
                    });
                }
                Chunk::AckRanges {
                    flow_id,
                    buffer_blocks,
                    cumulative_ack,
                    ranges,
                }
            }
            kind::BUFFER_PROBE => Chunk::BufferProbe { flow_id: r.vlu()? },
            kind::FLOW_EXCEPTION => {
                let flow_id = r.vlu()?;
                let code = r.vlu()?;
                Chunk::FlowException { flow_id, code }
            }
            kind::SESSION_CLOSE_REQUEST => Chunk::SessionCloseRequest,
            kind::SESSION_CLOSE_ACK => Chunk::SessionCloseAck,
            other => Chunk::Unknown { kind: other, body },
        };
        Ok(chunk)
    }

    /// Appends the chunk body (without the type and length).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Chunk::Padding(n) => out.resize(out.len() + n, 0),
            Chunk::IHello { epd, tag } => {
                put_vlu_field(out, epd);
                out.extend_from_slice(tag);
            }
            Chunk::ForwardedIHello {
                epd,
                reply_address,
                tag,
            } => {
                put_vlu_field(out, epd);
                reply_address.emit(out);
                out.extend_from_slice(tag);
            }
            Chunk::RHello {
                tag,
                cookie,
                certificate,
            } => {
                put_vlu_field(out, tag);
                put_vlu_field(out, cookie);
                out.extend_from_slice(certificate);
            }
            Chunk::Redirect { tag, addresses } => {
                put_vlu_field(out, tag);
                for a in addresses {
                    a.emit(out);
                }
            }
            Chunk::RHelloCookieChange {
                old_cookie,
                new_cookie,
            } => {
                put_vlu_field(out, old_cookie);
                out.extend_from_slice(new_cookie);
            }
            Chunk::IIKeying {
                initiator_session_id,
                cookie,
                certificate,
                keying_component,
                signature,
            } => {
                out.extend_from_slice(&initiator_session_id.to_be_bytes());
                put_vlu_field(out, cookie);
                put_vlu_field(out, certificate);
                put_vlu_field(out, keying_component);
                out.extend_from_slice(signature);
            }
            Chunk::RIKeying {
                responder_session_id,
                keying_component,
                signature,
            } => {
                out.extend_from_slice(&responder_session_id.to_be_bytes());
                put_vlu_field(out, keying_component);
                out.extend_from_slice(signature);
            }
            Chunk::Ping { message } | Chunk::PingReply { message } => {
                out.extend_from_slice(message)
            }
            Chunk::UserData {
                flow_id,
                sequence,
                fsn_offset,
                fragment,
            } => {
                out.push(fragment.flags());
                put_vlu(out, *flow_id);
                put_vlu(out, *sequence);
                put_vlu(out, *fsn_offset);
                fragment.emit_after_ids(out);
            }
            Chunk::NextUserData { fragment } => {
                out.push(fragment.flags());
                fragment.emit_after_ids(out);
            }
            Chunk::AckBitmap {
                flow_id,
                buffer_blocks,
                cumulative_ack,
                bitmap,
            } => {
                put_vlu(out, *flow_id);
                put_vlu(out, *buffer_blocks);
                put_vlu(out, *cumulative_ack);
                out.extend_from_slice(bitmap);
            }
            Chunk::AckRanges {
                flow_id,
                buffer_blocks,
                cumulative_ack,
                ranges,
            } => {
                put_vlu(out, *flow_id);
                put_vlu(out, *buffer_blocks);
                put_vlu(out, *cumulative_ack);
                for r in ranges {
                    put_vlu(out, r.holes_minus_one);
                    put_vlu(out, r.received_minus_one);
                }
            }
            Chunk::BufferProbe { flow_id } => put_vlu(out, *flow_id),
            Chunk::FlowException { flow_id, code } => {
                put_vlu(out, *flow_id);
                put_vlu(out, *code);
            }
            Chunk::SessionCloseRequest | Chunk::SessionCloseAck => {}
            Chunk::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }

    /// Appends type, 16-bit length and body. Returns false (and appends nothing) if the
    /// body is longer than a chunk can say.
    pub fn emit(&self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        out.push(self.kind());
        out.extend_from_slice(&[0, 0]);
        self.emit_body(out);
        let len = out.len() - start - 3;
        match u16::try_from(len) {
            Ok(len) => {
                out[start + 1..start + 3].copy_from_slice(&len.to_be_bytes());
                true
            }
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    }

    /// Appends the chunk only if `out` then stays within `limit` bytes; returns whether
    /// it did. Packet assembly uses this instead of measuring first and encoding twice.
    pub fn emit_within(&self, out: &mut Vec<u8>, limit: usize) -> bool {
        let start = out.len();
        if !self.emit(out) {
            return false;
        }
        if out.len() > limit {
            out.truncate(start);
            return false;
        }
        true
    }

    /// Bytes `emit` appends.
    pub fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit_body(&mut v);
        3 + v.len()
    }
}

/// Iterates the chunks of a decrypted packet after its header. Padding (type 0xff, or a
/// trailing run shorter than a chunk header) ends the packet (RFC 7016 §2.2.4).
pub struct ChunkIter<'a> {
    rest: &'a [u8],
}

impl<'a> ChunkIter<'a> {
    pub fn new(chunks: &'a [u8]) -> Self {
        ChunkIter { rest: chunks }
    }
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = Result<Chunk<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 3 || self.rest[0] == kind::PADDING_FF {
            return None;
        }
        let kind = self.rest[0];
        let len = usize::from(u16::from_be_bytes([self.rest[1], self.rest[2]]));
        if self.rest.len() - 3 < len {
            self.rest = &[];
            return Some(Err(ParseError::Truncated));
        }
        let body = &self.rest[3..3 + len];
        self.rest = &self.rest[3 + len..];
        Some(Chunk::parse(kind, body))
    }
}

/// A decrypted packet: header and chunks.
pub struct PacketView<'a> {
    pub header: PacketHeader,
    pub chunks: &'a [u8],
}

impl<'a> PacketView<'a> {
    pub fn parse(packet: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(packet);
        let header = PacketHeader::parse(&mut r)?;
        Ok(PacketView {
            header,
            chunks: r.rest(),
        })
    }

    pub fn chunks(&self) -> ChunkIter<'a> {
        ChunkIter::new(self.chunks)
    }
}
