//! Address rules: a CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
//!
//! Clients reaching a dual-stack socket over IPv4 show up as IPv4-mapped IPv6 addresses
//! (`::ffff:10.1.2.3`); both the client address and the rule are brought to their IPv4 form
//! first, so an IPv4 rule covers them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// Why a string is not a CIDR block; the message fits after "is not a CIDR (...)".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CidrError {
    #[error("empty")]
    Empty,
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    #[error("prefix {0:?} is not a number")]
    BadPrefix(String),
    #[error("prefix longer than {max}")]
    PrefixTooLong { max: u8 },
    #[error("host bits set; the network is {network}")]
    HostBitsSet { network: Cidr },
}

/// A block of addresses: the network address with its host bits clear, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block `addr/prefix`; refuses a prefix longer than the address and host bits set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::PrefixTooLong { max });
        }
        let network = mask(addr, prefix);
        let block = Cidr { network, prefix }.canonical();
        if network != addr {
            return Err(CidrError::HostBitsSet { network: block });
        }
        Ok(block)
    }

    /// The block holding only `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            network: addr,
            prefix: max_prefix(addr),
        }
        .canonical()
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this block; an IPv4-mapped IPv6 address counts as its IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & v4_mask(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & v6_mask(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// `::ffff:a.b.c.d/(96+n)` is the IPv4 block `a.b.c.d/n`: one form, so it matches the
    /// canonical (IPv4) form of mapped client addresses.
    fn canonical(self) -> Cidr {
        match self.network {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    network: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| CidrError::BadAddress(addr_text.to_string()))?;
        let Some(prefix_text) = prefix_text else {
            return Ok(Cidr::host(addr));
        };
        // Digits only: u8::from_str would take "+8", and a bigger number is "too long", not
        // "not a number".
        if prefix_text.is_empty() || !prefix_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix(prefix_text.to_string()));
        }
        let prefix = prefix_text
            .parse::<u8>()
            .unwrap_or(u8::MAX)
            .min(max_prefix(addr) + 1);
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    /// A single address prints bare, a block with its prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.network) {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(prefix))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_block_contains_its_addresses_only() {
        let rule = cidr("10.0.0.0/8");
        assert!(rule.contains(ip("10.0.0.0")));
        assert!(rule.contains(ip("10.255.255.255")));
        assert!(!rule.contains(ip("11.0.0.0")));
        assert!(!rule.contains(ip("9.255.255.255")));
        let narrow = cidr("192.168.1.128/25");
        assert!(narrow.contains(ip("192.168.1.200")));
        assert!(!narrow.contains(ip("192.168.1.127")));
    }

    #[test]
    fn single_address_is_a_full_length_block() {
        let rule = cidr("203.0.113.7");
        assert_eq!(rule.prefix(), 32);
        assert!(rule.contains(ip("203.0.113.7")));
        assert!(!rule.contains(ip("203.0.113.8")));
        assert_eq!(rule.to_string(), "203.0.113.7");
        assert_eq!(cidr("203.0.113.7/32"), rule);
        assert_eq!(cidr("2001:db8::1").prefix(), 128);
    }

    #[test]
    fn zero_prefix_matches_every_address_of_its_family() {
        assert!(cidr("0.0.0.0/0").contains(ip("255.1.2.3")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(!cidr("::/0").contains(ip("1.2.3.4")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_block_contains_its_addresses_only() {
        let rule = cidr("2001:db8::/32");
        assert!(rule.contains(ip("2001:db8:1234::1")));
        assert!(!rule.contains(ip("2001:db9::1")));
        let odd = cidr("fd00:0:0:8000::/49");
        assert!(odd.contains(ip("fd00:0:0:ffff::1")));
        assert!(!odd.contains(ip("fd00:0:0:7fff::1")));
    }

    #[test]
    fn ipv4_mapped_client_matches_ipv4_rule() {
        let rule = cidr("10.0.0.0/8");
        assert!(rule.contains(ip("::ffff:10.1.2.3")));
        assert!(!rule.contains(ip("::ffff:11.1.2.3")));
        assert!(cidr("10.1.2.3").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn ipv4_mapped_rule_is_stored_as_ipv4() {
        let rule = cidr("::ffff:10.0.0.0/104");
        assert_eq!(rule, cidr("10.0.0.0/8"));
        assert!(rule.contains(ip("10.9.9.9")));
        assert!(rule.contains(ip("::ffff:10.9.9.9")));
        assert_eq!(rule.to_string(), "10.0.0.0/8");
        // The whole mapped range is every IPv4 address.
        assert_eq!(cidr("::ffff:0:0/96"), cidr("0.0.0.0/0"));
    }

    #[test]
    fn malformed_blocks_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Cidr>().unwrap_err().to_string();
        assert_eq!(err("10.0.0.0/33"), "prefix longer than 32");
        assert_eq!(err("2001:db8::/129"), "prefix longer than 128");
        assert_eq!(err("10.0.0.0/999"), "prefix longer than 32");
        assert_eq!(err("10.0.0.0/"), "prefix \"\" is not a number");
        assert_eq!(err("10.0.0.0/+8"), "prefix \"+8\" is not a number");
        assert_eq!(err("10.0.0/8"), "\"10.0.0\" is not an IPv4 or IPv6 address");
        assert_eq!(
            err("example.com"),
            "\"example.com\" is not an IPv4 or IPv6 address"
        );
        assert_eq!(err(""), "empty");
        assert_eq!(
            err("10.1.2.3/8"),
            "host bits set; the network is 10.0.0.0/8"
        );
        assert_eq!(
            err("2001:db8::1/32"),
            "host bits set; the network is 2001:db8::/32"
        );
    }
}
