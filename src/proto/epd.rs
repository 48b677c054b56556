//! Endpoint discriminators and certificates of the Flash profile (RFC 7425 §4.3, §4.4).
//!
//! An endpoint discriminator (EPD) says whom an initiator wants: a server by URI (ancillary
//! data) or a peer by peer ID (the SHA-256 fingerprint of its certificate). A certificate is
//! an option list; its fingerprint covers the options before the first marker.

use sha2::{Digest, Sha256};

use super::dh::DhGroup;
use super::vlu::{options, put_option, put_vlu};
use super::ParseError;

pub mod epd_option {
    pub const REQUIRED_HOSTNAME: u64 = 0x00;
    pub const ANCILLARY_DATA: u64 = 0x0a;
    pub const FINGERPRINT: u64 = 0x0f;
}

pub mod cert_option {
    pub const HOSTNAME: u64 = 0x00;
    pub const ACCEPTS_ANCILLARY_DATA: u64 = 0x0a;
    pub const EXTRA_RANDOMNESS: u64 = 0x0e;
    pub const SUPPORTED_DH_GROUP: u64 = 0x15;
    pub const STATIC_DH_PUBLIC_KEY: u64 = 0x1d;
}

/// A peer ID: SHA-256 of the canonical part of a certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<PeerId> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(PeerId(out))
    }
}

impl std::fmt::Debug for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerId({})", self.to_hex())
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What an EPD asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointDiscriminator {
    pub required_hostname: Option<Vec<u8>>,
    /// For a server: the URI (Flash sends the `rtmfp://host/app` URL, librtmfp the app).
    pub ancillary_data: Option<Vec<u8>>,
    pub fingerprint: Option<PeerId>,
}

impl EndpointDiscriminator {
    pub fn for_uri(uri: &str) -> Self {
        EndpointDiscriminator {
            ancillary_data: Some(uri.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    pub fn for_peer(peer: PeerId) -> Self {
        EndpointDiscriminator {
            fingerprint: Some(peer),
            ..Default::default()
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut epd = EndpointDiscriminator::default();
        for opt in options(bytes) {
            let (kind, value) = opt?;
            match kind {
                epd_option::REQUIRED_HOSTNAME => epd.required_hostname = Some(value.to_vec()),
                epd_option::ANCILLARY_DATA => epd.ancillary_data = Some(value.to_vec()),
                epd_option::FINGERPRINT => {
                    let fp: [u8; 32] = value.try_into().map_err(|_| ParseError::BadValue)?;
                    epd.fingerprint = Some(PeerId(fp));
                }
                _ => {}
            }
        }
        if epd.required_hostname.is_none()
            && epd.ancillary_data.is_none()
            && epd.fingerprint.is_none()
        {
            return Err(ParseError::BadValue);
        }
        Ok(epd)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(fp) = &self.fingerprint {
            put_option(&mut out, epd_option::FINGERPRINT, &fp.0);
        }
        if let Some(a) = &self.ancillary_data {
            put_option(&mut out, epd_option::ANCILLARY_DATA, a);
        }
        if let Some(h) = &self.required_hostname {
            put_option(&mut out, epd_option::REQUIRED_HOSTNAME, h);
        }
        out
    }
}

/// A decoded certificate (RFC 7425 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    raw: Vec<u8>,
    canonical_len: usize,
    pub hostname: Option<Vec<u8>>,
    pub accepts_ancillary_data: bool,
    /// Groups offered for ephemeral keys (option 0x15), in the order listed.
    pub supported_groups: Vec<u64>,
    /// Static public keys (option 0x1d), in the order listed.
    pub static_keys: Vec<(u64, Vec<u8>)>,
}

impl Certificate {
    pub fn parse(raw: &[u8]) -> Result<Self, ParseError> {
        let mut cert = Certificate {
            raw: raw.to_vec(),
            canonical_len: raw.len(),
            hostname: None,
            accepts_ancillary_data: false,
            supported_groups: Vec::new(),
            static_keys: Vec::new(),
        };
        let mut r = super::vlu::Reader::new(raw);
        while !r.is_empty() {
            let before = r.remaining();
            match r.option()? {
                None => {
                    cert.canonical_len = raw.len() - before;
                    break;
                }
                Some((kind, value)) => match kind {
                    cert_option::HOSTNAME => cert.hostname = Some(value.to_vec()),
                    cert_option::ACCEPTS_ANCILLARY_DATA => cert.accepts_ancillary_data = true,
                    cert_option::SUPPORTED_DH_GROUP => {
                        cert.supported_groups
                            .push(super::vlu::Reader::new(value).vlu()?);
                    }
                    cert_option::STATIC_DH_PUBLIC_KEY => {
                        let mut v = super::vlu::Reader::new(value);
                        let group = v.vlu()?;
                        cert.static_keys.push((group, v.rest().to_vec()));
                    }
                    _ => {}
                },
            }
        }
        // Options after a marker are outside the fingerprint but still well-formed.
        // Skip the marker byte itself; what follows must still be a well-formed list.
        for opt in options(raw.get(cert.canonical_len + 1..).unwrap_or_default()) {
            opt?;
        }
        Ok(cert)
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn peer_id(&self) -> PeerId {
        PeerId(Sha256::digest(&self.raw[..self.canonical_len]).into())
    }

    pub fn static_key(&self, group: u64) -> Option<&[u8]> {
        self.static_keys
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, k)| k.as_slice())
    }

    /// Groups this peer can do, static or ephemeral.
    pub fn offers_group(&self, group: u64) -> bool {
        self.supported_groups.contains(&group) || self.static_key(group).is_some()
    }

    /// RFC 7425 §4.4.1: does this certificate's owner match `epd`?
    pub fn is_selected_by(&self, epd: &EndpointDiscriminator) -> bool {
        if let Some(fp) = &epd.fingerprint {
            return *fp == self.peer_id();
        }
        if let Some(h) = &epd.required_hostname {
            if self.hostname.as_ref() != Some(h) {
                return false;
            }
        }
        if epd.ancillary_data.is_some() && !self.accepts_ancillary_data {
            return false;
        }
        true
    }

    /// The 77-byte server certificate deployed Flash-era clients read blindly: accepts
    /// ancillary data, 64 bytes of extra randomness, and three supported groups.
    pub fn server(randomness: &[u8; 64], groups: &[DhGroup]) -> Self {
        let mut raw = Vec::with_capacity(77);
        put_option(&mut raw, cert_option::ACCEPTS_ANCILLARY_DATA, &[]);
        put_option(&mut raw, cert_option::EXTRA_RANDOMNESS, randomness);
        for g in groups {
            let mut v = Vec::new();
            put_vlu(&mut v, g.id());
            put_option(&mut raw, cert_option::SUPPORTED_DH_GROUP, &v);
        }
        Certificate::parse(&raw).unwrap_or_else(|_| unreachable!("we encode valid option lists"))
    }

    /// A certificate with static public keys, one option per group. The Flash-era layout is
    /// exactly one group-2 key and nothing else (deployed servers read the first option as
    /// the key and the next bytes as the keying component).
    pub fn with_static_keys(keys: &[(DhGroup, &[u8])], randomness: Option<&[u8]>) -> Self {
        let mut raw = Vec::new();
        for (g, k) in keys {
            let mut v = Vec::with_capacity(k.len() + 2);
            put_vlu(&mut v, g.id());
            v.extend_from_slice(k);
            put_option(&mut raw, cert_option::STATIC_DH_PUBLIC_KEY, &v);
        }
        if let Some(r) = randomness {
            put_option(&mut raw, cert_option::EXTRA_RANDOMNESS, r);
        }
        Certificate::parse(&raw).unwrap_or_else(|_| unreachable!("we encode valid option lists"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificate_is_77_bytes() {
        let c = Certificate::server(
            &[7; 64],
            &[DhGroup::Modp4096, DhGroup::Modp2048, DhGroup::Modp1024],
        );
        assert_eq!(c.raw().len(), 77);
        assert!(c.accepts_ancillary_data);
        assert_eq!(c.supported_groups, vec![16, 14, 2]);
    }

    #[test]
    fn epd_round_trips() {
        let epd = EndpointDiscriminator::for_uri("rtmfp://127.0.0.1/live");
        assert_eq!(EndpointDiscriminator::parse(&epd.encode()).unwrap(), epd);
        let p = EndpointDiscriminator::for_peer(PeerId([9; 32]));
        assert_eq!(EndpointDiscriminator::parse(&p.encode()).unwrap(), p);
        assert!(EndpointDiscriminator::parse(&[]).is_err());
    }

    #[test]
    fn fingerprint_ignores_options_after_marker() {
        let mut a = Vec::new();
        put_option(&mut a, cert_option::ACCEPTS_ANCILLARY_DATA, &[]);
        let mut b = a.clone();
        b.push(0);
        put_option(&mut b, 0x33, b"signature");
        assert_eq!(
            Certificate::parse(&a).unwrap().peer_id(),
            Certificate::parse(&b).unwrap().peer_id()
        );
    }
}
