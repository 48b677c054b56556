//! Socket addresses as RTMFP encodes them in FIHello, Redirect and mobility data
//! (RFC 7016 §2.3.5, §2.3.6): a flags byte (bit 7: IPv6, bits 0-1: origin), the address,
//! and a 16-bit port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::vlu::Reader;
use super::ParseError;

/// Where the sender learned an address (RFC 7016 §2.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressOrigin {
    Unknown = 0,
    /// One of the peer's own interface addresses.
    Local = 1,
    /// The address the packet was seen to come from.
    Remote = 2,
    /// A relay or redirect target.
    Relay = 3,
}

impl AddressOrigin {
    fn from_bits(bits: u8) -> Self {
        match bits & 0x03 {
            1 => AddressOrigin::Local,
            2 => AddressOrigin::Remote,
            3 => AddressOrigin::Relay,
            _ => AddressOrigin::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedAddress {
    pub addr: SocketAddr,
    pub origin: AddressOrigin,
}

impl EncodedAddress {
    pub fn new(addr: SocketAddr, origin: AddressOrigin) -> Self {
        EncodedAddress { addr, origin }
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let flags = r.u8()?;
        let ip = if flags & 0x80 != 0 {
            let b = r.take(16)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            let b = r.take(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        let port = r.u16()?;
        Ok(EncodedAddress {
            addr: SocketAddr::new(ip, port),
            origin: AddressOrigin::from_bits(flags),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        let origin = self.origin as u8;
        match self.addr.ip() {
            IpAddr::V4(v4) => {
                out.push(origin);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(0x80 | origin);
                out.extend_from_slice(&v6.octets());
            }
        }
        out.extend_from_slice(&self.addr.port().to_be_bytes());
    }
}
