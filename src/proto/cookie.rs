//! Stateless responder cookies (RFC 7016 §3.5.1.1.2): the responder keeps nothing until an
//! IIKeying returns a cookie it can verify. A cookie carries its issue time, the address it
//! was issued to and the layout chosen for the client, under an HMAC with a secret only
//! this endpoint knows.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::address::{AddressOrigin, EncodedAddress};
use super::vlu::Reader;

/// RFC 7016 §3.5.1.1.2 suggests cookies live no longer than 95 seconds.
pub const COOKIE_LIFETIME_SECS: u64 = 95;
/// Deployed Flash-era clients accept nothing else.
pub const FLASH_COOKIE_LEN: usize = 64;
/// What rtmfp-cpp issues.
pub const RFC_COOKIE_LEN: usize = 65;

const MAC_LEN: usize = 32;
/// time(4) + flags(1) + address(1 + 16 + 2) + MAC; the rest is random filler.
const FIXED_LEN: usize = 4 + 1 + 19 + MAC_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCheck {
    Valid,
    /// Good cookie, issued to another address: answer with a cookie change.
    OtherAddress,
    Expired,
    Forged,
}

/// Mints and checks cookies.
#[derive(Clone)]
pub struct CookieJar {
    secret: [u8; 32],
}

impl CookieJar {
    pub fn new(secret: [u8; 32]) -> Self {
        CookieJar { secret }
    }

    /// A cookie for `addr`, at `now_secs`, remembering `flags` (opaque to the jar).
    pub fn mint(
        &self,
        now_secs: u64,
        addr: SocketAddr,
        flags: u8,
        len: usize,
        filler: &[u8],
    ) -> Vec<u8> {
        let len = len.max(FIXED_LEN);
        let mut c = Vec::with_capacity(len);
        c.extend_from_slice(&(now_secs as u32).to_be_bytes());
        c.push(flags);
        let mut a = Vec::with_capacity(19);
        EncodedAddress::new(addr, AddressOrigin::Remote).emit(&mut a);
        a.resize(19, 0);
        c.extend_from_slice(&a);
        let fill = len - FIXED_LEN;
        c.extend((0..fill).map(|i| filler.get(i).copied().unwrap_or(0)));
        let mac = self.mac(&c);
        c.extend_from_slice(&mac);
        c
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        m.update(body);
        m.finalize().into_bytes().into()
    }

    /// Checks a returned cookie; on success also returns the flags it was minted with.
    pub fn check(&self, cookie: &[u8], now_secs: u64, from: SocketAddr) -> (CookieCheck, u8) {
        if cookie.len() < FIXED_LEN {
            return (CookieCheck::Forged, 0);
        }
        let (body, mac) = cookie.split_at(cookie.len() - MAC_LEN);
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        m.update(body);
        if m.verify_slice(mac).is_err() {
            return (CookieCheck::Forged, 0);
        }
        let issued = u64::from(u32::from_be_bytes([body[0], body[1], body[2], body[3]]));
        let flags = body[4];
        let age = (now_secs as u32).wrapping_sub(issued as u32);
        if u64::from(age) > COOKIE_LIFETIME_SECS {
            return (CookieCheck::Expired, flags);
        }
        let issued_to = EncodedAddress::parse(&mut Reader::new(&body[5..24])).map(|a| a.addr);
        if issued_to != Ok(from) {
            return (CookieCheck::OtherAddress, flags);
        }
        (CookieCheck::Valid, flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_verify_expire_and_bind_to_address() {
        let jar = CookieJar::new([3; 32]);
        let a: SocketAddr = "192.0.2.1:1935".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let c = jar.mint(1000, a, 7, FLASH_COOKIE_LEN, &[9; 64]);
        assert_eq!(c.len(), 64);
        assert_eq!(jar.check(&c, 1010, a), (CookieCheck::Valid, 7));
        assert_eq!(jar.check(&c, 1010, b).0, CookieCheck::OtherAddress);
        assert_eq!(
            jar.check(&c, 1000 + COOKIE_LIFETIME_SECS + 1, a).0,
            CookieCheck::Expired
        );
        let mut forged = c.clone();
        forged[10] ^= 1;
        assert_eq!(jar.check(&forged, 1010, a).0, CookieCheck::Forged);
        assert_eq!(jar.mint(1000, b, 0, RFC_COOKIE_LEN, &[]).len(), 65);
    }
}
