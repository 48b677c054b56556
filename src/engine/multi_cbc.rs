//! Multi-buffer AES-128-CBC: the fan-out encrypts one media packet once per receiving
//! session (RFC 7425 §4.2: AES-128-CBC, zero IV, a key per session direction).
//!
//! CBC is serial within a packet, so a single stream waits out the full latency of every
//! AES round. Packets of different sessions are independent, so we encrypt several of
//! them in lock-step: 8 lanes of AES-NI, or 16 lanes of VAES in eight 256-bit registers,
//! enough independent chains to keep the AES units busy every cycle.
//!
//! Lanes are fed to a fixed set of slots; a slot whose packet is done takes the next
//! packet at once, so unequal lengths only cost lock-step time at the very end, when no
//! packet is waiting and the last partial packets finish one by one.

use std::sync::OnceLock;

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;

const BLOCK: usize = 16;
const ROUNDS: usize = 10;
/// The widest kernel's slot count.
const MAX_SLOTS: usize = 16;

/// One AES-128 key, expanded once per session and reused for every packet.
#[derive(Clone)]
pub struct ExpandedKey {
    /// FIPS-197 §5.2 round keys, as the vector kernels load them.
    round_keys: [[u8; BLOCK]; ROUNDS + 1],
    /// The same key for the scalar path and for finishing stragglers.
    cipher: Aes128,
}

impl ExpandedKey {
    pub fn new(key: &[u8; 16]) -> Self {
        ExpandedKey {
            round_keys: expand_key(key),
            cipher: Aes128::new(GenericArray::from_slice(key)),
        }
    }
}

impl std::fmt::Debug for ExpandedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExpandedKey(..)")
    }
}

/// One packet to encrypt in place with `key`, IV zero. `buf.len()` must be a multiple
/// of 16 (the Flash profile pads to whole blocks before encrypting).
#[derive(Debug)]
pub struct CbcLane<'a> {
    pub key: &'a ExpandedKey,
    pub buf: &'a mut [u8],
}

/// An implementation of [`encrypt_lanes`]; which ones a CPU can run is decided at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One lane at a time through the `aes` crate (which uses AES-NI when it can).
    Scalar,
    /// 8 lanes in lock-step, one 128-bit register each (AES-NI).
    AesNi8,
    /// 16 lanes in lock-step, two per 256-bit register (VAES + AVX2).
    Vaes16,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Scalar, Backend::AesNi8, Backend::Vaes16];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::AesNi8 => "aesni-x8",
            Backend::Vaes16 => "vaes256-x16",
        }
    }

    /// Whether this CPU has the instructions the backend needs.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::AesNi8 => x86::AesNi8::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes16 => x86::Vaes16::new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::AesNi8 | Backend::Vaes16 => false,
        }
    }

    /// The widest backend this CPU runs; detected once.
    pub fn detect() -> Backend {
        static CHOSEN: OnceLock<Backend> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            [Backend::Vaes16, Backend::AesNi8]
                .into_iter()
                .find(|b| b.is_available())
                .unwrap_or(Backend::Scalar)
        })
    }
}

/// The name of the backend [`encrypt_lanes`] uses on this CPU.
pub fn backend() -> &'static str {
    Backend::detect().name()
}

/// Encrypts every lane in place (AES-128-CBC, IV zero), as many at a time as the CPU allows.
///
/// Panics if a lane's length is not a multiple of 16.
pub fn encrypt_lanes(lanes: &mut [CbcLane<'_>]) {
    encrypt_lanes_with(Backend::detect(), lanes);
}

/// [`encrypt_lanes`] through one particular backend, for tests and benchmarks.
///
/// Panics if the CPU cannot run `backend` or a lane's length is not a multiple of 16.
pub fn encrypt_lanes_with(backend: Backend, lanes: &mut [CbcLane<'_>]) {
    for lane in lanes.iter() {
        assert!(
            lane.buf.len() % BLOCK == 0,
            "CBC lane of {} bytes: expected a multiple of {BLOCK}; pad the packet first",
            lane.buf.len()
        );
    }
    match backend {
        Backend::Scalar => {
            for lane in lanes.iter_mut() {
                cbc_continue(&lane.key.cipher, [0; BLOCK], lane.buf);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::AesNi8 => match x86::AesNi8::new() {
            Some(mut kernel) => drive(&mut kernel, lanes),
            None => panic!(
                "backend {} needs AES-NI, which this CPU lacks",
                backend.name()
            ),
        },
        #[cfg(target_arch = "x86_64")]
        Backend::Vaes16 => match x86::Vaes16::new() {
            Some(mut kernel) => drive(&mut kernel, lanes),
            None => panic!(
                "backend {} needs VAES and AVX2, which this CPU lacks",
                backend.name()
            ),
        },
        #[cfg(not(target_arch = "x86_64"))]
        Backend::AesNi8 | Backend::Vaes16 => {
            panic!("backend {} needs an x86_64 CPU", backend.name())
        }
    }
}

/// CBC from chaining value `iv` over whole blocks of `buf`, one block at a time.
fn cbc_continue(cipher: &Aes128, iv: [u8; BLOCK], buf: &mut [u8]) {
    let mut chain = iv;
    for block in buf.chunks_exact_mut(BLOCK) {
        for (b, c) in block.iter_mut().zip(chain.iter()) {
            *b ^= c;
        }
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
        chain.copy_from_slice(block);
    }
}

/// A lock-step encryptor with `SLOTS` independent CBC chains.
///
/// Constructing one proves the CPU runs it (constructors return `None` otherwise).
trait Kernel {
    const SLOTS: usize;

    /// Slot `slot` starts a new packet under `key`: zero chaining value.
    fn start_lane(&mut self, slot: usize, key: &ExpandedKey);

    /// Encrypts `blocks` blocks in every slot, advancing each `ptrs[slot]` past them.
    ///
    /// # Safety
    /// `ptrs.len() == Self::SLOTS`, and each `ptrs[slot]` is valid for reads and writes of
    /// `blocks * 16` bytes that no other slot's range overlaps and nothing else accesses
    /// during the call.
    unsafe fn run(&mut self, ptrs: &mut [*mut u8], blocks: usize);
}

/// Feeds lanes through `kernel`'s slots; a slot that finishes takes the next lane at once.
fn drive<K: Kernel>(kernel: &mut K, lanes: &mut [CbcLane<'_>]) {
    let slots = K::SLOTS;
    debug_assert!(slots <= MAX_SLOTS);
    let mut ptrs = [std::ptr::null_mut::<u8>(); MAX_SLOTS];
    let mut owner = [usize::MAX; MAX_SLOTS];
    let mut left = [0usize; MAX_SLOTS];
    let mut next = 0;
    loop {
        let mut all_busy = true;
        for slot in 0..slots {
            if left[slot] > 0 {
                continue;
            }
            while next < lanes.len() && lanes[next].buf.is_empty() {
                next += 1;
            }
            if let Some(lane) = lanes.get_mut(next) {
                kernel.start_lane(slot, lane.key);
                ptrs[slot] = lane.buf.as_mut_ptr();
                left[slot] = lane.buf.len() / BLOCK;
                owner[slot] = next;
                next += 1;
            } else {
                all_busy = false;
            }
        }
        if !all_busy {
            break;
        }
        let steps = left[..slots].iter().copied().min().unwrap_or(0);
        // SAFETY: every slot's pointer came from `as_mut_ptr` of a distinct lane's `&mut`
        // buffer and has been advanced by exactly the blocks run so far, so `left[slot]`
        // >= `steps` whole blocks of that buffer lie ahead of it; the buffers are borrowed
        // through `lanes` for this whole function and not touched elsewhere while the
        // kernel runs; `ptrs[..slots]` has `K::SLOTS` entries.
        unsafe { kernel.run(&mut ptrs[..slots], steps) };
        for l in &mut left[..slots] {
            *l -= steps;
        }
    }
    // No lane is waiting: finish the partial ones serially, chaining from their last
    // ciphertext block.
    for slot in 0..slots {
        if left[slot] == 0 {
            continue;
        }
        let lane = &mut lanes[owner[slot]];
        let done = lane.buf.len() - left[slot] * BLOCK;
        let mut iv = [0; BLOCK];
        if done > 0 {
            iv.copy_from_slice(&lane.buf[done - BLOCK..done]);
        }
        cbc_continue(&lane.key.cipher, iv, &mut lane.buf[done..]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::asm;
    use core::arch::x86_64::*;

    use super::{ExpandedKey, Kernel, BLOCK, ROUNDS};

    /// Eight AES-NI chains, one per 128-bit register.
    pub(super) struct AesNi8 {
        keys: [[[u8; BLOCK]; ROUNDS + 1]; 8],
        chain: [[u8; BLOCK]; 8],
    }

    impl AesNi8 {
        pub(super) fn new() -> Option<Self> {
            is_x86_feature_detected!("aes").then_some(AesNi8 {
                keys: [[[0; BLOCK]; ROUNDS + 1]; 8],
                chain: [[0; BLOCK]; 8],
            })
        }
    }

    impl Kernel for AesNi8 {
        const SLOTS: usize = 8;

        fn start_lane(&mut self, slot: usize, key: &ExpandedKey) {
            self.keys[slot] = key.round_keys;
            self.chain[slot] = [0; BLOCK];
        }

        unsafe fn run(&mut self, ptrs: &mut [*mut u8], blocks: usize) {
            let ptrs: &mut [*mut u8; 8] = ptrs.try_into().expect("8 slots");
            // SAFETY: an `AesNi8` exists only where AES-NI was detected (`new`); the
            // pointer contract is our caller's (`Kernel::run`).
            unsafe { aesni8_run(&self.keys, &mut self.chain, ptrs, blocks) }
        }
    }

    /// # Safety
    /// The CPU supports AES-NI; each `ptrs[i]` is valid for reads and writes of
    /// `blocks * 16` bytes, and the eight ranges do not overlap.
    #[target_feature(enable = "aes,sse2")]
    unsafe fn aesni8_run(
        keys: &[[[u8; BLOCK]; ROUNDS + 1]; 8],
        chain: &mut [[u8; BLOCK]; 8],
        ptrs: &mut [*mut u8; 8],
        blocks: usize,
    ) {
        // Loads and stores are unaligned 16-byte accesses: `[u8; 16]` arrays here, and
        // block `b` of each slot's range (b < blocks) in the loop.
        let mut st = [_mm_setzero_si128(); 8];
        for s in 0..8 {
            st[s] = _mm_loadu_si128(chain[s].as_ptr().cast());
        }
        for b in 0..blocks {
            let at = b * BLOCK;
            for s in 0..8 {
                let plain = _mm_loadu_si128(ptrs[s].add(at).cast());
                let k0 = _mm_loadu_si128(keys[s][0].as_ptr().cast());
                st[s] = _mm_xor_si128(_mm_xor_si128(st[s], plain), k0);
            }
            for r in 1..ROUNDS {
                for (st, ks) in st.iter_mut().zip(keys) {
                    *st = _mm_aesenc_si128(*st, _mm_loadu_si128(ks[r].as_ptr().cast()));
                }
            }
            for s in 0..8 {
                let last = _mm_loadu_si128(keys[s][ROUNDS].as_ptr().cast());
                st[s] = _mm_aesenclast_si128(st[s], last);
                _mm_storeu_si128(ptrs[s].add(at).cast(), st[s]);
            }
        }
        for s in 0..8 {
            _mm_storeu_si128(chain[s].as_mut_ptr().cast(), st[s]);
            ptrs[s] = ptrs[s].add(blocks * BLOCK);
        }
    }

    /// Sixteen chains, two per 256-bit register: slot `2g` in the low half of register
    /// `g`, slot `2g + 1` in the high half.
    pub(super) struct Vaes16 {
        keys: [[[u8; 2 * BLOCK]; ROUNDS + 1]; 8],
        chain: [[u8; 2 * BLOCK]; 8],
    }

    impl Vaes16 {
        pub(super) fn new() -> Option<Self> {
            let ok = is_x86_feature_detected!("vaes") && is_x86_feature_detected!("avx2");
            ok.then_some(Vaes16 {
                keys: [[[0; 2 * BLOCK]; ROUNDS + 1]; 8],
                chain: [[0; 2 * BLOCK]; 8],
            })
        }
    }

    impl Kernel for Vaes16 {
        const SLOTS: usize = 16;

        fn start_lane(&mut self, slot: usize, key: &ExpandedKey) {
            let (g, half) = (slot / 2, (slot % 2) * BLOCK);
            for (pair, rk) in self.keys[g].iter_mut().zip(key.round_keys.iter()) {
                pair[half..half + BLOCK].copy_from_slice(rk);
            }
            self.chain[g][half..half + BLOCK].fill(0);
        }

        unsafe fn run(&mut self, ptrs: &mut [*mut u8], blocks: usize) {
            let ptrs: &mut [*mut u8; 16] = ptrs.try_into().expect("16 slots");
            // SAFETY: a `Vaes16` exists only where VAES and AVX2 were detected (`new`);
            // the pointer contract is our caller's (`Kernel::run`).
            unsafe { vaes16_run(&self.keys, &mut self.chain, ptrs, blocks) }
        }
    }

    /// `state = AESENC(state, key)` on both 128-bit halves. The VAES intrinsics need a
    /// newer compiler than our MSRV, so the one instruction is written out.
    macro_rules! vaesenc256 {
        ($state:expr, $key:expr, $insn:literal) => {
            asm!(
                concat!($insn, " {s}, {s}, {k}"),
                s = inout(ymm_reg) $state,
                k = in(ymm_reg) $key,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
    }

    /// # Safety
    /// The CPU supports VAES and AVX2; each `ptrs[i]` is valid for reads and writes of
    /// `blocks * 16` bytes, and the sixteen ranges do not overlap.
    #[target_feature(enable = "avx2,aes")]
    unsafe fn vaes16_run(
        keys: &[[[u8; 2 * BLOCK]; ROUNDS + 1]; 8],
        chain: &mut [[u8; 2 * BLOCK]; 8],
        ptrs: &mut [*mut u8; 16],
        blocks: usize,
    ) {
        // Key and chain accesses are unaligned 32-byte loads of `[u8; 32]` arrays; data
        // accesses are block `b` (b < blocks) of each slot's range. `vaesenc` on ymm
        // registers is VEX-encoded and needs only VAES (checked by the caller) and AVX.
        let mut st = [_mm256_setzero_si256(); 8];
        for g in 0..8 {
            st[g] = _mm256_loadu_si256(chain[g].as_ptr().cast());
        }
        for b in 0..blocks {
            let at = b * BLOCK;
            for g in 0..8 {
                let plain =
                    _mm256_loadu2_m128i(ptrs[2 * g + 1].add(at).cast(), ptrs[2 * g].add(at).cast());
                let k0 = _mm256_loadu_si256(keys[g][0].as_ptr().cast());
                st[g] = _mm256_xor_si256(_mm256_xor_si256(st[g], plain), k0);
            }
            for r in 1..ROUNDS {
                for (st, ks) in st.iter_mut().zip(keys) {
                    let k = _mm256_loadu_si256(ks[r].as_ptr().cast());
                    vaesenc256!(*st, k, "vaesenc");
                }
            }
            for g in 0..8 {
                let k = _mm256_loadu_si256(keys[g][ROUNDS].as_ptr().cast());
                vaesenc256!(st[g], k, "vaesenclast");
                _mm256_storeu2_m128i(
                    ptrs[2 * g + 1].add(at).cast(),
                    ptrs[2 * g].add(at).cast(),
                    st[g],
                );
            }
        }
        for g in 0..8 {
            _mm256_storeu_si256(chain[g].as_mut_ptr().cast(), st[g]);
        }
        for p in ptrs.iter_mut() {
            *p = p.add(blocks * BLOCK);
        }
    }
}

/// FIPS-197 §5.1.1 S-box: the multiplicative inverse in GF(2^8), then the affine map.
const SBOX: [u8; 256] = build_sbox();

const fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        // Reduce by the AES polynomial x^8 + x^4 + x^3 + x + 1.
        a = (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 };
        b >>= 1;
    }
    p
}

const fn build_sbox() -> [u8; 256] {
    let mut sbox = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        // x^254 is x's inverse (x^255 = 1), and 0 maps to 0.
        let mut inv = 1u8;
        let mut i = 0;
        while i < 254 {
            inv = gf_mul(inv, x as u8);
            i += 1;
        }
        if x == 0 {
            inv = 0;
        }
        sbox[x] = inv
            ^ inv.rotate_left(1)
            ^ inv.rotate_left(2)
            ^ inv.rotate_left(3)
            ^ inv.rotate_left(4)
            ^ 0x63;
        x += 1;
    }
    sbox
}

/// FIPS-197 §5.2 key expansion for AES-128: 44 words, 11 round keys.
fn expand_key(key: &[u8; 16]) -> [[u8; BLOCK]; ROUNDS + 1] {
    const RCON: [u8; ROUNDS] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36];
    let mut w = [[0u8; 4]; 4 * (ROUNDS + 1)];
    for (i, word) in key.chunks_exact(4).enumerate() {
        w[i].copy_from_slice(word);
    }
    for i in 4..w.len() {
        let mut t = w[i - 1];
        if i % 4 == 0 {
            t = [
                SBOX[t[1] as usize] ^ RCON[i / 4 - 1],
                SBOX[t[2] as usize],
                SBOX[t[3] as usize],
                SBOX[t[0] as usize],
            ];
        }
        for j in 0..4 {
            w[i][j] = w[i - 4][j] ^ t[j];
        }
    }
    let mut round_keys = [[0u8; BLOCK]; ROUNDS + 1];
    for (r, rk) in round_keys.iter_mut().enumerate() {
        for (j, word) in w[4 * r..4 * r + 4].iter().enumerate() {
            rk[4 * j..4 * j + 4].copy_from_slice(word);
        }
    }
    round_keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cipher::cbc_encrypt_in_place;
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn available() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_available())
            .collect()
    }

    /// Encrypts `bufs` (key i for buffer i) through `backend`, in place.
    fn run(backend: Backend, keys: &[ExpandedKey], bufs: &mut [Vec<u8>]) {
        let mut lanes: Vec<CbcLane<'_>> = keys
            .iter()
            .zip(bufs.iter_mut())
            .map(|(key, buf)| CbcLane { key, buf })
            .collect();
        encrypt_lanes_with(backend, &mut lanes);
    }

    /// Random keys and plaintexts; `blocks(i)` gives lane i's length in blocks.
    fn random_case(
        rng: &mut ChaCha8Rng,
        lanes: usize,
        mut blocks: impl FnMut(&mut ChaCha8Rng, usize) -> usize,
    ) -> (Vec<[u8; 16]>, Vec<Vec<u8>>) {
        let keys = (0..lanes).map(|_| rng.gen()).collect();
        let bufs = (0..lanes)
            .map(|i| {
                let mut buf = vec![0; blocks(rng, i) * BLOCK];
                rng.fill_bytes(&mut buf);
                buf
            })
            .collect();
        (keys, bufs)
    }

    fn assert_every_backend_matches_reference(raw_keys: &[[u8; 16]], plain: &[Vec<u8>]) {
        let mut want = plain.to_vec();
        for (key, buf) in raw_keys.iter().zip(want.iter_mut()) {
            cbc_encrypt_in_place(&Aes128::new(GenericArray::from_slice(key)), buf);
        }
        let keys: Vec<ExpandedKey> = raw_keys.iter().map(ExpandedKey::new).collect();
        for backend in available() {
            let mut got = plain.to_vec();
            run(backend, &keys, &mut got);
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                assert_eq!(
                    g,
                    w,
                    "{}: lane {i} of {} ({} bytes)",
                    backend.name(),
                    plain.len(),
                    w.len()
                );
            }
        }
    }

    #[test]
    fn key_expansion_matches_fips197_appendix_a1() {
        let key: [u8; 16] = hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap();
        let rk = expand_key(&key);
        assert_eq!(rk[0].to_vec(), key.to_vec());
        assert_eq!(rk[1].to_vec(), hex("a0fafe1788542cb123a339392a6c7605"));
        assert_eq!(rk[10].to_vec(), hex("d014f9a8c9ee2589e13f0cc8b6630ca6"));
    }

    #[test]
    fn sbox_matches_fips197_entries() {
        assert_eq!(
            (SBOX[0x00], SBOX[0x01], SBOX[0x53], SBOX[0xff]),
            (0x63, 0x7c, 0xed, 0x16)
        );
    }

    /// SP 800-38A F.2.1 uses IV 000102..0f; with our zero IV, folding the IV into the first
    /// plaintext block gives the same ciphertext.
    #[test]
    fn every_backend_matches_sp800_38a_cbc_vector() {
        let key = ExpandedKey::new(&hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap());
        let mut plain = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52ef",
            "f69f2445df4f9b17ad2b417be66c3710"
        ));
        for (i, b) in plain[..16].iter_mut().enumerate() {
            *b ^= i as u8;
        }
        let want = hex(concat!(
            "7649abac8119b246cee98e9b12e9197d",
            "5086cb9b507219ee95db113a917678b2",
            "73bed6b8e3c1743b7116e69e22229516",
            "3ff1caa1681fac09120eca307586e1a7"
        ));
        for backend in available() {
            // Enough copies to fill every slot of the widest kernel, and a straggler.
            let keys = vec![key.clone(); MAX_SLOTS + 1];
            let mut bufs = vec![plain.clone(); MAX_SLOTS + 1];
            run(backend, &keys, &mut bufs);
            for buf in &bufs {
                assert_eq!(buf, &want, "{}", backend.name());
            }
        }
    }

    #[test]
    fn random_unequal_lanes_match_single_stream_cbc() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x7425);
        for _ in 0..200 {
            let lanes = rng.gen_range(1..=40);
            let (keys, plain) = random_case(&mut rng, lanes, |rng, _| rng.gen_range(0..=75));
            assert_every_backend_matches_reference(&keys, &plain);
        }
    }

    #[test]
    fn equal_length_fanout_matches_single_stream_cbc() {
        let mut rng = ChaCha8Rng::seed_from_u64(64);
        for lanes in [1, 7, 8, 9, 15, 16, 17, 64] {
            let (keys, plain) = random_case(&mut rng, lanes, |_, _| 75);
            assert_every_backend_matches_reference(&keys, &plain);
        }
    }

    #[test]
    fn one_long_lane_among_short_ones_finishes_as_a_straggler() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (keys, plain) = random_case(&mut rng, 20, |_, i| if i == 5 { 75 } else { 1 });
        assert_every_backend_matches_reference(&keys, &plain);
    }

    #[test]
    fn empty_lanes_are_left_alone() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (keys, plain) = random_case(&mut rng, 33, |_, i| if i % 3 == 0 { 0 } else { 2 });
        assert_every_backend_matches_reference(&keys, &plain);
        for backend in available() {
            encrypt_lanes_with(backend, &mut []);
        }
    }

    #[test]
    fn lanes_sharing_one_key_match_single_stream_cbc() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut keys, plain) = random_case(&mut rng, 24, |rng, _| rng.gen_range(1..=10));
        let shared = keys[0];
        keys.fill(shared);
        assert_every_backend_matches_reference(&keys, &plain);
    }

    #[test]
    fn widest_available_backend_is_chosen() {
        let chosen = Backend::detect();
        assert!(chosen.is_available());
        assert_eq!(backend(), chosen.name());
        // `ALL` runs from narrowest to widest, and the widest the CPU runs is chosen.
        assert_eq!(Some(&chosen), available().last());
    }

    #[test]
    #[should_panic(expected = "multiple of 16")]
    fn partial_block_is_refused() {
        let key = ExpandedKey::new(&[0; 16]);
        let mut buf = [0u8; 20];
        encrypt_lanes(&mut [CbcLane {
            key: &key,
            buf: &mut buf,
        }]);
    }
}
