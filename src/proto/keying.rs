//! Session key agreement of the Flash profile (RFC 7425 §4.6): keying components, the
//! HMAC / session-sequence-number negotiation, and the derivation of the session keys.
//!
//! Two layouts meet in the wild. Deployed Flash/AIR clients and librtmfp send a static
//! group-2 key in their certificate and a fixed-shape initiator component, and accept only
//! a responder component that starts `03 1a 00 00 02 1e 00` followed by the group-2 public
//! key ("Flash-era"). RFC-strict peers (rtmfp-cpp) select among several groups and require
//! HMAC and sequence numbers to be negotiated.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cipher::{PacketProtection, MAX_HMAC_LEN, MIN_HMAC_LEN};
use super::vlu::{options, put_option, put_option_vlu, put_vlu, Reader};
use super::ParseError;

pub mod keying_option {
    pub const DH_PUBLIC_KEY: u64 = 0x0d;
    pub const EXTRA_RANDOMNESS: u64 = 0x0e;
    pub const HMAC_NEGOTIATION: u64 = 0x1a;
    pub const DH_GROUP_SELECT: u64 = 0x1d;
    pub const SSEQ_NEGOTIATION: u64 = 0x1e;
}

/// Negotiation flags (RFC 7425 §4.6.5).
pub mod negotiate {
    /// "I will send always."
    pub const SEND_ALWAYS: u8 = 0x04;
    /// "I will send if you request."
    pub const SEND_ON_REQUEST: u8 = 0x02;
    /// "Please send."
    pub const REQUEST: u8 = 0x01;
}

/// Which wire layout a handshake uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeLayout {
    /// Flash/AIR and librtmfp: group 2 only, fixed component shapes, no HMAC / sequence.
    FlashEra,
    /// RFC 7425 option lists with group choice and HMAC / sequence-number negotiation.
    Rfc7425,
}

impl std::fmt::Display for HandshakeLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeLayout::FlashEra => "flash-era",
            HandshakeLayout::Rfc7425 => "rfc7425",
        })
    }
}

/// What one side says about a protection feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Willingness {
    pub send_always: bool,
    pub send_on_request: bool,
    pub request: bool,
}

impl Willingness {
    pub const NONE: Willingness = Willingness {
        send_always: false,
        send_on_request: false,
        request: false,
    };
    pub const ON_REQUEST: Willingness = Willingness {
        send_always: false,
        send_on_request: true,
        request: false,
    };
    pub const REQUIRE_BOTH_WAYS: Willingness = Willingness {
        send_always: true,
        send_on_request: true,
        request: true,
    };

    pub fn flags(self) -> u8 {
        (if self.send_always {
            negotiate::SEND_ALWAYS
        } else {
            0
        }) | (if self.send_on_request {
            negotiate::SEND_ON_REQUEST
        } else {
            0
        }) | (if self.request { negotiate::REQUEST } else { 0 })
    }

    pub fn from_flags(flags: u8) -> Self {
        Willingness {
            send_always: flags & negotiate::SEND_ALWAYS != 0,
            send_on_request: flags & negotiate::SEND_ON_REQUEST != 0,
            request: flags & negotiate::REQUEST != 0,
        }
    }

    /// Resolves ours against theirs: `(we send, we require to receive)`, or `None` when
    /// we request and they will never send.
    pub fn resolve(self, theirs: Willingness) -> Option<(bool, bool)> {
        if self.request && !(theirs.send_always || theirs.send_on_request) {
            return None;
        }
        let send = self.send_always || (theirs.request && self.send_on_request);
        let receive = self.request || theirs.send_always;
        Some((send, receive))
    }
}

/// Our policy for HMAC and session sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectionPolicy {
    pub hmac: Willingness,
    pub hmac_len: usize,
    pub sequence_numbers: Willingness,
}

impl ProtectionPolicy {
    /// Offer both on request, require neither: what lets every deployed client in.
    pub const ACCOMMODATING: ProtectionPolicy = ProtectionPolicy {
        hmac: Willingness::ON_REQUEST,
        hmac_len: 16,
        sequence_numbers: Willingness::ON_REQUEST,
    };
    /// Send and require both (what rtmfp-cpp clients do by default).
    pub const STRICT: ProtectionPolicy = ProtectionPolicy {
        hmac: Willingness::REQUIRE_BOTH_WAYS,
        hmac_len: 16,
        sequence_numbers: Willingness::REQUIRE_BOTH_WAYS,
    };
}

/// A decoded keying component (either side's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyingComponent {
    /// Initiator with a static key: the group whose certificate key to use.
    pub group_select: Option<u64>,
    /// An ephemeral public key: `(group, key)`.
    pub dh_public_key: Option<(u64, Vec<u8>)>,
    /// HMAC negotiation: flags and the HMAC length this side will send.
    pub hmac: Option<(Willingness, u64)>,
    pub sequence_numbers: Option<Willingness>,
    pub has_extra_randomness: bool,
}

impl KeyingComponent {
    pub fn parse(raw: &[u8]) -> Result<Self, ParseError> {
        let mut c = KeyingComponent::default();
        for opt in options(raw) {
            let (kind, value) = opt?;
            let mut v = Reader::new(value);
            match kind {
                keying_option::DH_GROUP_SELECT => c.group_select = Some(v.vlu()?),
                keying_option::DH_PUBLIC_KEY => {
                    let group = v.vlu()?;
                    c.dh_public_key = Some((group, v.rest().to_vec()));
                }
                keying_option::HMAC_NEGOTIATION => {
                    let flags = Willingness::from_flags(v.u8()?);
                    let len = if v.is_empty() { 0 } else { v.vlu()? };
                    c.hmac = Some((flags, len));
                }
                keying_option::SSEQ_NEGOTIATION => {
                    c.sequence_numbers = Some(Willingness::from_flags(v.u8()?))
                }
                keying_option::EXTRA_RANDOMNESS => c.has_extra_randomness = true,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Does this initiator component look like a Flash-era one: static group-2 key
    /// selection and no request for HMAC or sequence numbers?
    pub fn is_flash_era_initiator(&self) -> bool {
        let requests_hmac = self
            .hmac
            .map(|(w, _)| w.request || w.send_always)
            .unwrap_or(false);
        let requests_sseq = self
            .sequence_numbers
            .map(|w| w.request || w.send_always)
            .unwrap_or(false);
        self.group_select == Some(2)
            && self.dh_public_key.is_none()
            && !requests_hmac
            && !requests_sseq
    }
}

/// Builds an initiator component for a static-key initiator.
pub fn initiator_component(
    group: u64,
    randomness: &[u8; 64],
    policy: &ProtectionPolicy,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    put_option_vlu(&mut out, keying_option::DH_GROUP_SELECT, group);
    put_option(&mut out, keying_option::EXTRA_RANDOMNESS, randomness);
    let mut hmac = vec![policy.hmac.flags()];
    put_vlu(&mut hmac, policy.hmac_len as u64);
    put_option(&mut out, keying_option::HMAC_NEGOTIATION, &hmac);
    put_option(
        &mut out,
        keying_option::SSEQ_NEGOTIATION,
        &[policy.sequence_numbers.flags()],
    );
    out
}

/// The Flash-era initiator component: exactly what Flash Player and librtmfp send.
pub fn flash_era_initiator_component(randomness: &[u8; 64]) -> Vec<u8> {
    let policy = ProtectionPolicy {
        hmac: Willingness::ON_REQUEST,
        hmac_len: 10,
        sequence_numbers: Willingness::ON_REQUEST,
    };
    initiator_component(2, randomness, &policy)
}

/// Builds a responder component carrying an ephemeral public key.
pub fn responder_component(
    layout: HandshakeLayout,
    policy: &ProtectionPolicy,
    group: u64,
    public_key: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(public_key.len() + 16);
    match layout {
        HandshakeLayout::FlashEra => {
            // 03 1a 00 00 02 1e 00: "I will not send, I do not request", HMAC length 0.
            put_option(&mut out, keying_option::HMAC_NEGOTIATION, &[0, 0]);
            put_option(&mut out, keying_option::SSEQ_NEGOTIATION, &[0]);
        }
        HandshakeLayout::Rfc7425 => {
            let mut hmac = vec![policy.hmac.flags()];
            put_vlu(&mut hmac, policy.hmac_len as u64);
            put_option(&mut out, keying_option::HMAC_NEGOTIATION, &hmac);
            put_option(
                &mut out,
                keying_option::SSEQ_NEGOTIATION,
                &[policy.sequence_numbers.flags()],
            );
        }
    }
    let mut key = Vec::with_capacity(public_key.len() + 2);
    put_vlu(&mut key, group);
    key.extend_from_slice(public_key);
    put_option(&mut out, keying_option::DH_PUBLIC_KEY, &key);
    out
}

/// Why negotiation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiationError {
    HmacRefused,
    HmacLength,
    SequenceNumbersRefused,
}

/// Resolves our policy against what the far side's component says: protection for what
/// we send and for what we receive.
pub fn negotiate(
    ours: &ProtectionPolicy,
    theirs: &KeyingComponent,
) -> Result<(PacketProtection, PacketProtection), NegotiationError> {
    let (their_hmac, their_hmac_len) = theirs.hmac.unwrap_or((Willingness::NONE, 0));
    let (send_hmac, recv_hmac) = ours
        .hmac
        .resolve(their_hmac)
        .ok_or(NegotiationError::HmacRefused)?;
    if recv_hmac && !(MIN_HMAC_LEN as u64..=MAX_HMAC_LEN as u64).contains(&their_hmac_len) {
        return Err(NegotiationError::HmacLength);
    }
    let their_sseq = theirs.sequence_numbers.unwrap_or(Willingness::NONE);
    let (send_sseq, recv_sseq) = ours
        .sequence_numbers
        .resolve(their_sseq)
        .ok_or(NegotiationError::SequenceNumbersRefused)?;
    let tx = PacketProtection {
        hmac_len: send_hmac.then_some(ours.hmac_len),
        sequence_numbers: send_sseq,
    };
    let rx = PacketProtection {
        hmac_len: recv_hmac.then_some(their_hmac_len as usize),
        sequence_numbers: recv_sseq,
    };
    Ok((tx, rx))
}

/// Keys derived for one side of a session (RFC 7425 §4.6.5).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub encrypt: [u8; 16],
    pub decrypt: [u8; 16],
    pub tx_hmac_key: [u8; 32],
    pub rx_hmac_key: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// `near` is our keying component, `far` theirs, `secret` the DH shared secret.
/// Our encryption key is HMAC(secret, HMAC(far, near)); theirs HMAC(secret, HMAC(near, far)).
pub fn derive_session_keys(secret: &[u8], near: &[u8], far: &[u8]) -> SessionKeys {
    let encrypt_full = hmac_sha256(secret, &hmac_sha256(far, near));
    let decrypt_full = hmac_sha256(secret, &hmac_sha256(near, far));
    let mut encrypt = [0u8; 16];
    encrypt.copy_from_slice(&encrypt_full[..16]);
    let mut decrypt = [0u8; 16];
    decrypt.copy_from_slice(&decrypt_full[..16]);
    SessionKeys {
        encrypt,
        decrypt,
        tx_hmac_key: hmac_sha256(secret, &encrypt_full),
        rx_hmac_key: hmac_sha256(secret, &decrypt_full),
    }
}

/// What a session contributes to the NetGroup group keys two peers exchange
/// (docs/netgroup.md §3.3): HMAC-SHA256 keyed by the DH shared secret over the receiver's
/// keying component. The key a member sends for a group is HMAC-SHA256 keyed by the
/// groupspec text over `for_far`; the one it expects, the same over `from_far`. The
/// secret itself is not kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GroupKeyBases {
    /// Over the far end's component: for the key we send.
    pub for_far: [u8; 32],
    /// Over our component: for the key we expect from the far end.
    pub from_far: [u8; 32],
}

impl std::fmt::Debug for GroupKeyBases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKeyBases(..)")
    }
}

impl GroupKeyBases {
    /// `near` is our keying component, `far` theirs, `secret` the DH shared secret.
    pub fn derive(secret: &[u8], near: &[u8], far: &[u8]) -> Self {
        GroupKeyBases {
            for_far: hmac_sha256(secret, far),
            from_far: hmac_sha256(secret, near),
        }
    }

    /// The group key for the group whose groupspec text (up to its end marker) is
    /// `group_text`, from a base.
    pub fn group_key(group_text: &[u8], base: &[u8; 32]) -> [u8; 32] {
        hmac_sha256(group_text, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ends_agree_on_each_others_group_keys() {
        let secret = [7u8; 128];
        let (a, b) = (b"initiator component".as_slice(), b"responder".as_slice());
        let at_a = GroupKeyBases::derive(&secret, a, b);
        let at_b = GroupKeyBases::derive(&secret, b, a);
        assert_eq!(
            at_a.for_far, at_b.from_far,
            "what A sends is what B expects"
        );
        assert_eq!(at_b.for_far, at_a.from_far);
        assert_ne!(at_a.for_far, at_a.from_far);
        let text = b"G:0101010c050e74657374011b";
        assert_eq!(
            GroupKeyBases::group_key(text, &at_a.for_far),
            GroupKeyBases::group_key(text, &at_b.from_far)
        );
    }

    #[test]
    fn flash_era_components_have_the_deployed_bytes() {
        let init = flash_era_initiator_component(&[0xaa; 64]);
        assert_eq!(&init[..5], &[0x02, 0x1d, 0x02, 0x41, 0x0e]);
        assert_eq!(&init[69..], &[0x03, 0x1a, 0x02, 0x0a, 0x02, 0x1e, 0x02]);
        assert!(KeyingComponent::parse(&init)
            .unwrap()
            .is_flash_era_initiator());
        let resp = responder_component(
            HandshakeLayout::FlashEra,
            &ProtectionPolicy::ACCOMMODATING,
            2,
            &[0x55; 128],
        );
        assert_eq!(
            &resp[..11],
            &[0x03, 0x1a, 0x00, 0x00, 0x02, 0x1e, 0x00, 0x81, 0x02, 0x0d, 0x02]
        );
        assert_eq!(resp.len(), 11 + 128);
    }

    #[test]
    fn keys_mirror_between_sides() {
        let a = derive_session_keys(b"secret", b"initiator", b"responder");
        let b = derive_session_keys(b"secret", b"responder", b"initiator");
        assert_eq!(a.encrypt, b.decrypt);
        assert_eq!(a.tx_hmac_key, b.rx_hmac_key);
        assert_ne!(a.encrypt, a.decrypt);
    }

    #[test]
    fn negotiation_follows_requests() {
        let strict = KeyingComponent::parse(&initiator_component(
            14,
            &[1; 64],
            &ProtectionPolicy::STRICT,
        ))
        .unwrap();
        let (tx, rx) = negotiate(&ProtectionPolicy::ACCOMMODATING, &strict).unwrap();
        assert_eq!(tx.hmac_len, Some(16));
        assert!(tx.sequence_numbers);
        assert_eq!(rx.hmac_len, Some(16));
        assert!(rx.sequence_numbers);
        let flash = KeyingComponent::parse(&flash_era_initiator_component(&[1; 64])).unwrap();
        let (tx, rx) = negotiate(&ProtectionPolicy::ACCOMMODATING, &flash).unwrap();
        assert_eq!(tx, PacketProtection::default());
        assert_eq!(rx, PacketProtection::default());
        // A strict initiator refuses a responder that will never send HMAC.
        let refusing = KeyingComponent::parse(&responder_component(
            HandshakeLayout::FlashEra,
            &ProtectionPolicy::ACCOMMODATING,
            2,
            &[1; 128],
        ))
        .unwrap();
        assert_eq!(
            negotiate(&ProtectionPolicy::STRICT, &refusing),
            Err(NegotiationError::HmacRefused)
        );
    }
}
