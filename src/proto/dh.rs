//! Diffie-Hellman over the MODP groups RFC 7425 §4.6.1 lets peers use: group 2 (1024-bit,
//! RFC 2409 §6.2), group 14 (2048-bit, RFC 3526 §3) and group 16 (4096-bit, RFC 3526 §5).

use num_bigint::BigUint;
use num_traits::One;
use rand::RngCore;

/// The groups we implement, best first (the order we prefer when offering).
pub const SUPPORTED_GROUPS: [DhGroup; 3] =
    [DhGroup::Modp4096, DhGroup::Modp2048, DhGroup::Modp1024];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DhGroup {
    /// Group 2.
    Modp1024,
    /// Group 14.
    Modp2048,
    /// Group 16.
    Modp4096,
}

const MODP_1024: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
];

const MODP_2048: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
];

const MODP_4096: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
];

impl DhGroup {
    /// The IKE group number used on the wire.
    pub fn id(self) -> u64 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp4096 => 16,
        }
    }

    pub fn from_id(id: u64) -> Option<Self> {
        match id {
            2 => Some(DhGroup::Modp1024),
            14 => Some(DhGroup::Modp2048),
            16 => Some(DhGroup::Modp4096),
            _ => None,
        }
    }

    /// Length in bytes of the modulus (and of the public keys we send).
    pub fn key_len(self) -> usize {
        match self {
            DhGroup::Modp1024 => 128,
            DhGroup::Modp2048 => 256,
            DhGroup::Modp4096 => 512,
        }
    }

    /// Private exponent size: twice the group's symmetric strength (RFC 3526 §8).
    fn exponent_bits(self) -> usize {
        match self {
            DhGroup::Modp1024 => 224,
            DhGroup::Modp2048 => 320,
            DhGroup::Modp4096 => 480,
        }
    }

    pub fn modulus(self) -> BigUint {
        let words = match self {
            DhGroup::Modp1024 => MODP_1024,
            DhGroup::Modp2048 => MODP_2048,
            DhGroup::Modp4096 => MODP_4096,
        };
        let hex: String = words.concat();
        BigUint::parse_bytes(hex.as_bytes(), 16)
            .unwrap_or_else(|| unreachable!("constant prime parses"))
    }
}

/// One side's key pair in one group.
#[derive(Clone)]
pub struct DhKeyPair {
    group: DhGroup,
    private: BigUint,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKeyPair")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DhKeyPair {
    pub fn generate(group: DhGroup, rng: &mut dyn RngCore) -> Self {
        let bits = group.exponent_bits();
        let mut bytes = vec![0u8; bits / 8];
        rng.fill_bytes(&mut bytes);
        bytes[0] |= 0x80; // full-size exponent
        let private = BigUint::from_bytes_be(&bytes);
        let p = group.modulus();
        let public = BigUint::from(2u32).modpow(&private, &p);
        DhKeyPair {
            group,
            private,
            public: pad_to(&public.to_bytes_be(), group.key_len()),
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public key, big-endian, padded to the modulus length.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret with `peer_public`, big-endian without leading zero bytes (as
    /// deployed peers feed it to HMAC), or `None` if the peer's key fails RFC 7425 §4.6.2.
    pub fn shared_secret(&self, peer_public: &[u8]) -> Option<Vec<u8>> {
        let p = self.group.modulus();
        let y = BigUint::from_bytes_be(peer_public);
        if !public_key_is_acceptable(&y, &p) {
            return None;
        }
        Some(y.modpow(&self.private, &p).to_bytes_be())
    }
}

/// RFC 7425 §4.6.2: 2^24 <= y <= p - 2^24, and the value is not degenerate.
fn public_key_is_acceptable(y: &BigUint, p: &BigUint) -> bool {
    let limit = BigUint::one() << 24u32;
    if *y < limit || *y > p - &limit {
        return false;
    }
    let ones = y.count_ones();
    let bits = y.bits();
    ones >= 16 && bits - ones >= 16
}

fn pad_to(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn both_sides_agree_in_every_group() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for group in SUPPORTED_GROUPS {
            let a = DhKeyPair::generate(group, &mut rng);
            let b = DhKeyPair::generate(group, &mut rng);
            assert_eq!(a.public_key().len(), group.key_len());
            let s1 = a.shared_secret(b.public_key()).unwrap();
            let s2 = b.shared_secret(a.public_key()).unwrap();
            assert_eq!(s1, s2);
        }
    }

    #[test]
    fn degenerate_public_keys_are_refused() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let a = DhKeyPair::generate(DhGroup::Modp1024, &mut rng);
        assert!(a.shared_secret(&[1]).is_none());
        assert!(a.shared_secret(&[0xff; 128]).is_none());
    }

    #[test]
    fn moduli_have_the_advertised_size() {
        for g in SUPPORTED_GROUPS {
            assert_eq!(g.modulus().bits() as usize, g.key_len() * 8);
        }
    }
}
