//! The Flash profile's packet encryption (RFC 7425 §4.2-§4.4, §4.6.6): AES-128-CBC with a
//! zero IV over `[session seq][checksum] packet padding`, padding with 0xff to a whole
//! block, and optionally an HMAC-SHA256 (truncated) over the ciphertext instead of the
//! checksum, and a session sequence number for replay protection.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::vlu::Reader;
use super::DropReason;

/// RFC 7425 §4.2: the key for startup packets, "Adobe Systems 02" in ASCII.
pub const DEFAULT_SESSION_KEY: [u8; 16] = *b"Adobe Systems 02";

pub const BLOCK: usize = 16;
pub const MIN_HMAC_LEN: usize = 4;
pub const MAX_HMAC_LEN: usize = 32;

/// RFC 1071 ones'-complement sum over big-endian 16-bit words, complemented.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// AES-128-CBC with a zero IV, in place; `buf.len()` must be a multiple of 16.
pub fn cbc_encrypt_in_place(cipher: &Aes128, buf: &mut [u8]) {
    let mut prev = [0u8; BLOCK];
    for block in buf.chunks_exact_mut(BLOCK) {
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        let ga = GenericArray::from_mut_slice(block);
        cipher.encrypt_block(ga);
        prev.copy_from_slice(block);
    }
}

/// AES-128-CBC decryption with a zero IV, in place.
pub fn cbc_decrypt_in_place(cipher: &Aes128, buf: &mut [u8]) {
    let mut prev = [0u8; BLOCK];
    for block in buf.chunks_exact_mut(BLOCK) {
        let mut this = [0u8; BLOCK];
        this.copy_from_slice(block);
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        prev = this;
    }
}

/// Session sequence numbers seen, as a sliding window (RFC 7425 §4.6.6).
#[derive(Debug, Clone, Default)]
struct ReplayWindow {
    /// Highest sequence number accepted so far, plus one (0 = none yet).
    top: u64,
    /// Bit i set: `top - 1 - i` was seen.
    bits: [u64; Self::WORDS],
}

impl ReplayWindow {
    const WORDS: usize = 16;
    const SPAN: u64 = (Self::WORDS * 64) as u64;

    fn check(&self, seq: u64) -> bool {
        if seq >= self.top {
            return true;
        }
        let back = self.top - 1 - seq;
        back < Self::SPAN && self.bits[(back / 64) as usize] & (1 << (back % 64)) == 0
    }

    fn accept(&mut self, seq: u64) {
        if seq >= self.top {
            let shift = seq + 1 - self.top;
            self.shift(shift);
            self.top = seq + 1;
            self.bits[0] |= 1;
        } else {
            let back = self.top - 1 - seq;
            self.bits[(back / 64) as usize] |= 1 << (back % 64);
        }
    }

    fn shift(&mut self, by: u64) {
        if by >= Self::SPAN {
            self.bits = [0; Self::WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..Self::WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map(|s| self.bits[s]).unwrap_or(0);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map(|s| self.bits[s])
                .unwrap_or(0);
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

/// What each direction of a session negotiated for HMAC and session sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketProtection {
    /// `Some(len)`: append an HMAC of `len` bytes instead of the checksum.
    pub hmac_len: Option<usize>,
    /// Prefix every packet with a session sequence number.
    pub sequence_numbers: bool,
}

/// Per-session packet cipher: encrypts what we send and decrypts what we receive.
#[derive(Clone)]
pub struct PacketCipher {
    /// The raw encryption key, for batch ciphers that expand it their own way.
    encrypt_key: [u8; 16],
    encrypt: Aes128,
    decrypt: Aes128,
    tx: PacketProtection,
    rx: PacketProtection,
    tx_hmac: Option<Hmac<Sha256>>,
    rx_hmac: Option<Hmac<Sha256>>,
    tx_sequence: u64,
    replay: ReplayWindow,
}

impl std::fmt::Debug for PacketCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCipher")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}

impl PacketCipher {
    /// The cipher for startup packets: default key, checksum, no sequence numbers.
    pub fn startup() -> Self {
        Self::new(&DEFAULT_SESSION_KEY, &DEFAULT_SESSION_KEY)
    }

    pub fn new(encrypt_key: &[u8; 16], decrypt_key: &[u8; 16]) -> Self {
        PacketCipher {
            encrypt_key: *encrypt_key,
            encrypt: Aes128::new(GenericArray::from_slice(encrypt_key)),
            decrypt: Aes128::new(GenericArray::from_slice(decrypt_key)),
            tx: PacketProtection::default(),
            rx: PacketProtection::default(),
            tx_hmac: None,
            rx_hmac: None,
            tx_sequence: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// Turns on the negotiated HMAC / sequence numbers (RFC 7425 §4.6.5).
    pub fn with_protection(
        mut self,
        tx: PacketProtection,
        tx_hmac_key: &[u8],
        rx: PacketProtection,
        rx_hmac_key: &[u8],
    ) -> Self {
        self.tx = tx;
        self.rx = rx;
        self.tx_hmac = tx.hmac_len.map(|_| new_hmac(tx_hmac_key));
        self.rx_hmac = rx.hmac_len.map(|_| new_hmac(rx_hmac_key));
        self
    }

    pub fn tx_protection(&self) -> PacketProtection {
        self.tx
    }

    pub fn rx_protection(&self) -> PacketProtection {
        self.rx
    }

    /// Decrypts leading whole blocks of a received packet's ciphertext in place, verifying
    /// nothing: enough to read the header and first chunk. Only for a load generator's
    /// receiver (`bench fanout`), which cannot afford to open every datagram.
    pub fn decrypt_prefix_unverified(&self, blocks: &mut [u8]) {
        let whole = blocks.len() / BLOCK * BLOCK;
        cbc_decrypt_in_place(&self.decrypt, &mut blocks[..whole]);
    }

    /// Bytes this cipher adds around a packet of `len` bytes, at most.
    pub fn overhead(&self) -> usize {
        10 + 2 + BLOCK + self.tx.hmac_len.unwrap_or(0)
    }

    /// Appends the encrypted form of `packet` (header and chunks) to `out`.
    pub fn seal(&mut self, packet: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + packet.len() + self.overhead(), 0);
        let body = self.seal_plaintext(packet, &mut out[start..]);
        cbc_encrypt_in_place(&self.encrypt, &mut out[start..start + body]);
        let len = self.seal_tag(&mut out[start..], body);
        out.truncate(start + len);
    }

    /// First step of sealing, for batches: writes the plaintext to encrypt (sequence
    /// number, checksum, packet, padding) at the start of `out` and returns its length,
    /// a whole number of blocks. `out` must hold `packet.len() + self.overhead()` bytes.
    /// Then encrypt those bytes in place with [`Self::encrypt_key`] (AES-128-CBC, zero
    /// IV) and finish with [`Self::seal_tag`].
    pub fn seal_plaintext(&mut self, packet: &[u8], out: &mut [u8]) -> usize {
        let mut at = 0;
        if self.tx.sequence_numbers {
            // RFC 7016 §2.1.2 VLU, written straight into the slot.
            let value = self.tx_sequence;
            self.tx_sequence += 1;
            let len = super::vlu::vlu_len(value);
            for (i, byte) in out[..len].iter_mut().enumerate() {
                let group = ((value >> (7 * (len - 1 - i))) & 0x7f) as u8;
                *byte = if i + 1 < len { group | 0x80 } else { group };
            }
            at = len;
        }
        let checksum_at = at;
        if self.tx.hmac_len.is_none() {
            at += 2;
        }
        let body_at = at;
        out[at..at + packet.len()].copy_from_slice(packet);
        at += packet.len();
        let padded = at.div_ceil(BLOCK) * BLOCK;
        out[at..padded].fill(0xff);
        if self.tx.hmac_len.is_none() {
            let sum = internet_checksum(&out[body_at..padded]);
            out[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        padded
    }

    /// Last step of sealing: appends the HMAC (when negotiated) over the `body` bytes of
    /// ciphertext at the start of `out`; returns the sealed length.
    pub fn seal_tag(&self, out: &mut [u8], body: usize) -> usize {
        match (self.tx.hmac_len, &self.tx_hmac) {
            (Some(len), Some(mac)) => {
                let mut mac = mac.clone();
                mac.update(&out[..body]);
                let tag = mac.finalize().into_bytes();
                out[body..body + len].copy_from_slice(&tag[..len]);
                body + len
            }
            _ => body,
        }
    }

    /// The key [`Self::seal_plaintext`]'s output is encrypted under.
    pub fn encrypt_key(&self) -> &[u8; 16] {
        &self.encrypt_key
    }

    /// The same key, expanded for [`cbc_encrypt_in_place`].
    pub fn encrypt_cipher(&self) -> &Aes128 {
        &self.encrypt
    }

    /// Decrypts `ciphertext` (the datagram after its session id) into `out` and returns
    /// the range of `out` holding the packet (header and chunks, padding included).
    pub fn open(
        &mut self,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<std::ops::Range<usize>, DropReason> {
        let hmac_len = self.rx.hmac_len.unwrap_or(0);
        if ciphertext.len() < hmac_len + BLOCK {
            return Err(DropReason::BadLength);
        }
        let (body, tag) = ciphertext.split_at(ciphertext.len() - hmac_len);
        if body.len() % BLOCK != 0 {
            return Err(DropReason::BadLength);
        }
        if let Some(mac) = &self.rx_hmac {
            let mut mac = mac.clone();
            mac.update(body);
            mac.verify_truncated_left(tag)
                .map_err(|_| DropReason::BadAuthentication)?;
        }
        out.clear();
        out.extend_from_slice(body);
        cbc_decrypt_in_place(&self.decrypt, out);
        let mut r = Reader::new(out);
        let sequence = if self.rx.sequence_numbers {
            let seq = r.vlu().map_err(|_| DropReason::Malformed)?;
            // u64::MAX cannot be tracked (the window keeps highest + 1) and no honest
            // sender gets there.
            if seq == u64::MAX || !self.replay.check(seq) {
                return Err(DropReason::Replayed);
            }
            Some(seq)
        } else {
            None
        };
        if self.rx.hmac_len.is_none() {
            let sum = r.u16().map_err(|_| DropReason::BadAuthentication)?;
            if internet_checksum(r.peek_rest()) != sum {
                return Err(DropReason::BadAuthentication);
            }
        }
        if let Some(seq) = sequence {
            self.replay.accept(seq);
        }
        let begin = out.len() - r.remaining();
        if begin >= out.len() {
            return Err(DropReason::Malformed);
        }
        Ok(begin..out.len())
    }
}

fn new_hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example words 0001 f203 f4f5 f6f7 sum to ddf2 before complement.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn startup_cipher_round_trips() {
        let mut a = PacketCipher::startup();
        let mut b = PacketCipher::startup();
        let mut sealed = Vec::new();
        a.seal(b"\x0b\x00\x01hello", &mut sealed);
        assert_eq!(sealed.len() % 16, 0);
        let mut out = Vec::new();
        let r = b.open(&sealed, &mut out).unwrap();
        assert!(out[r].starts_with(b"\x0b\x00\x01hello"));
    }

    #[test]
    fn corrupted_ciphertext_fails_checksum() {
        let mut a = PacketCipher::startup();
        let mut sealed = Vec::new();
        a.seal(&[0x0b; 40], &mut sealed);
        sealed[20] ^= 1;
        assert_eq!(
            PacketCipher::startup().open(&sealed, &mut Vec::new()),
            Err(DropReason::BadAuthentication)
        );
    }

    #[test]
    fn hmac_and_sequence_numbers_reject_tamper_and_replay() {
        let both = PacketProtection {
            hmac_len: Some(16),
            sequence_numbers: true,
        };
        let k1 = [1u8; 16];
        let k2 = [2u8; 16];
        let mut a = PacketCipher::new(&k1, &k2).with_protection(both, b"mac-a", both, b"mac-b");
        let mut b = PacketCipher::new(&k2, &k1).with_protection(both, b"mac-b", both, b"mac-a");
        let mut p1 = Vec::new();
        a.seal(b"\x01first", &mut p1);
        let mut p2 = Vec::new();
        a.seal(b"\x01second", &mut p2);
        let mut out = Vec::new();
        assert!(b.open(&p2, &mut out).is_ok());
        assert!(
            b.open(&p1, &mut out).is_ok(),
            "reordered but new packet is accepted"
        );
        assert_eq!(b.open(&p1, &mut out), Err(DropReason::Replayed));
        let mut bad = p2.clone();
        bad[3] ^= 0x40;
        assert_eq!(b.open(&bad, &mut out), Err(DropReason::BadAuthentication));
    }

    #[test]
    fn replay_window_slides() {
        let mut w = ReplayWindow::default();
        for s in [0u64, 5, 3, 1000, 2000] {
            assert!(w.check(s));
            w.accept(s);
            assert!(!w.check(s));
        }
        assert!(!w.check(5), "older than the window is refused");
        assert!(w.check(1999));
    }
}
