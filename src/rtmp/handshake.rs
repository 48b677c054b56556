//! The RTMP handshake (RTMP spec §5.2): C0/C1/C2 from the client, S0/S1/S2 from the
//! server, as byte-fed state machines.
//!
//! Two dialects are in use. The *simple* one of the spec: S1 is random with a zero version
//! field and S2 echoes C1 (librtmp/OBS clients, and ffmpeg accepts it). The *digest* one of
//! Flash Player and FMS: the client's C1 carries a non-zero version and an HMAC-SHA256
//! digest at an offset derived from the block itself; a server answers with its own digest
//! in S1 and an S2 signed with a key derived from the client's digest. Players that see a
//! non-zero S1 version (ffmpeg when playing, Flash Player) verify both.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::RtmpError;

/// C0/S0: plain RTMP. 6 would ask for RTMPE, which we do not speak.
pub const RTMP_VERSION: u8 = 3;
/// C1, C2, S1 and S2 are all this long.
pub const HANDSHAKE_BLOCK: usize = 1536;
const DIGEST_LEN: usize = 32;

const PLAYER_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
const SERVER_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";
/// The 32 bytes both parties append to their text to form the long keys.
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];
/// Version we put in a digest S1 (any non-zero value tells the client to verify).
const SERVER_VERSION: [u8; 4] = [5, 0, 3, 1];
/// Version we put in a digest C1 (Flash Player style, non-zero).
const CLIENT_VERSION: [u8; 4] = [10, 0, 32, 18];

fn long_key(text: &[u8]) -> Vec<u8> {
    let mut k = text.to_vec();
    k.extend_from_slice(&KEY_TAIL);
    k
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Where in a 1536-byte block the digest sits; both are in use by real clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestScheme {
    /// Offset from the four bytes at 8..12, digest within bytes 12..772.
    Offset8,
    /// Offset from the four bytes at 772..776, digest within bytes 776..1536.
    Offset772,
}

impl DigestScheme {
    fn offset(self, block: &[u8]) -> usize {
        let (base, start) = match self {
            DigestScheme::Offset8 => (8, 12),
            DigestScheme::Offset772 => (772, 776),
        };
        let sum: usize = block[base..base + 4].iter().map(|&b| b as usize).sum();
        sum % 728 + start
    }
}

/// Digest over the whole block except the 32 digest bytes themselves.
fn block_digest(block: &[u8], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac(key, &[&block[..offset], &block[offset + DIGEST_LEN..]])
}

/// Finds the scheme under which `block` carries a valid digest for `key`, and the digest.
fn find_digest(block: &[u8], key: &[u8]) -> Option<(DigestScheme, [u8; DIGEST_LEN])> {
    [DigestScheme::Offset8, DigestScheme::Offset772]
        .into_iter()
        .find_map(|scheme| {
            let off = scheme.offset(block);
            let want = block_digest(block, off, key);
            (block[off..off + DIGEST_LEN] == want).then_some((scheme, want))
        })
}

fn imprint_digest(block: &mut [u8], scheme: DigestScheme, key: &[u8]) -> [u8; DIGEST_LEN] {
    let off = scheme.offset(block);
    let d = block_digest(block, off, key);
    block[off..off + DIGEST_LEN].copy_from_slice(&d);
    d
}

/// Fills `block` with a signature-bearing C2/S2: random bytes then, in the last 32 bytes,
/// HMAC(HMAC(long_key, peer_digest), block[..1504]).
fn sign_reply(block: &mut [u8], long_key: &[u8], peer_digest: &[u8]) {
    let key = hmac(long_key, &[peer_digest]);
    let body = HANDSHAKE_BLOCK - DIGEST_LEN;
    let sig = hmac(&key, &[&block[..body]]);
    block[body..].copy_from_slice(&sig);
}

fn reply_signature_ok(block: &[u8], long_key: &[u8], our_digest: &[u8]) -> bool {
    let key = hmac(long_key, &[our_digest]);
    let body = HANDSHAKE_BLOCK - DIGEST_LEN;
    hmac(&key, &[&block[..body]])[..] == block[body..]
}

/// Which dialect a server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerHandshakeMode {
    /// Digest answer when C1 carries a valid digest, simple answer otherwise.
    #[default]
    Auto,
    /// Always the simple answer (zero S1 version, S2 echoes C1).
    Simple,
}

/// Which dialect a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientHandshakeMode {
    /// librtmp style: zero version, random C1, C2 echoes S1.
    #[default]
    Simple,
    /// Flash Player style: digest in C1, and S1/S2 verified if the server answers in kind.
    Digest,
}

/// How the handshake went, once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    Simple,
    Digest(DigestScheme),
}

/// Copies from `input` into `buf` until `buf` holds `want` bytes; returns bytes taken.
fn fill(buf: &mut Vec<u8>, want: usize, input: &[u8]) -> usize {
    let take = want.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..take]);
    take
}

fn check_version(v: u8) -> Result<(), RtmpError> {
    if v == RTMP_VERSION {
        Ok(())
    } else {
        Err(RtmpError::HandshakeVersion(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
}

/// Server side: reads C0+C1, answers S0+S1+S2 at once, then reads C2.
pub struct ServerHandshake {
    mode: ServerHandshakeMode,
    state: ServerState,
    buf: Vec<u8>,
    s1: Box<[u8; HANDSHAKE_BLOCK]>,
    s2_random: Box<[u8; HANDSHAKE_BLOCK]>,
    kind: Option<HandshakeKind>,
    s1_digest: Option<[u8; DIGEST_LEN]>,
    c2_signed: bool,
}

impl ServerHandshake {
    pub fn new<R: RngCore + ?Sized>(mode: ServerHandshakeMode, rng: &mut R) -> Self {
        let mut s1 = Box::new([0u8; HANDSHAKE_BLOCK]);
        let mut s2_random = Box::new([0u8; HANDSHAKE_BLOCK]);
        // Time field 0, version field set when we know the dialect.
        rng.fill_bytes(&mut s1[8..]);
        rng.fill_bytes(&mut s2_random[..]);
        ServerHandshake {
            mode,
            state: ServerState::AwaitC0C1,
            buf: Vec::with_capacity(1 + HANDSHAKE_BLOCK),
            s1,
            s2_random,
            kind: None,
            s1_digest: None,
            c2_signed: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// The dialect chosen, known once C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Whether C2 carried a valid signature over our S1 digest (digest clients that verify
    /// the server do this; clients that merely echo S1 do not).
    pub fn c2_signed(&self) -> bool {
        self.c2_signed
    }

    /// Consumes handshake bytes from `input`, appending S0+S1+S2 to `out` when C1 is
    /// complete. Returns how many bytes were consumed; bytes after C2 belong to the chunk
    /// stream and are left alone.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RtmpError> {
        let mut used = 0;
        if self.state == ServerState::AwaitC0C1 {
            used += fill(&mut self.buf, 1 + HANDSHAKE_BLOCK, input);
            if let Some(&v) = self.buf.first() {
                check_version(v)?;
            }
            if self.buf.len() < 1 + HANDSHAKE_BLOCK {
                return Ok(used);
            }
            let c1 = self.buf[1..].to_vec();
            self.answer(&c1, out);
            self.buf.clear();
            self.state = ServerState::AwaitC2;
        }
        if self.state == ServerState::AwaitC2 {
            used += fill(&mut self.buf, HANDSHAKE_BLOCK, &input[used..]);
            if self.buf.len() < HANDSHAKE_BLOCK {
                return Ok(used);
            }
            // C2 should echo S1 or be signed over our digest; neither is worth refusing a
            // client for, so we only record which it was.
            if let Some(d) = self.s1_digest {
                self.c2_signed = reply_signature_ok(&self.buf, &long_key(PLAYER_TEXT), &d);
            }
            self.buf = Vec::new();
            self.state = ServerState::Done;
        }
        Ok(used)
    }

    fn answer(&mut self, c1: &[u8], out: &mut Vec<u8>) {
        let client_digest = if self.mode == ServerHandshakeMode::Auto && c1[4..8] != [0; 4] {
            find_digest(c1, PLAYER_TEXT)
        } else {
            None
        };
        out.push(RTMP_VERSION);
        match client_digest {
            Some((scheme, c1_digest)) => {
                self.s1[4..8].copy_from_slice(&SERVER_VERSION);
                let d = imprint_digest(&mut self.s1[..], scheme, SERVER_TEXT);
                self.s1_digest = Some(d);
                out.extend_from_slice(&self.s1[..]);
                let mut s2 = self.s2_random.clone();
                sign_reply(&mut s2[..], &long_key(SERVER_TEXT), &c1_digest);
                out.extend_from_slice(&s2[..]);
                self.kind = Some(HandshakeKind::Digest(scheme));
            }
            None => {
                out.extend_from_slice(&self.s1[..]);
                out.extend_from_slice(c1);
                self.kind = Some(HandshakeKind::Simple);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitS0S1S2,
    Done,
}

/// Client side: C0+C1 are written at construction; reads S0+S1+S2 and answers C2.
pub struct ClientHandshake {
    state: ClientState,
    buf: Vec<u8>,
    c1: Box<[u8; HANDSHAKE_BLOCK]>,
    c1_digest: Option<[u8; DIGEST_LEN]>,
    c2_random: Box<[u8; HANDSHAKE_BLOCK]>,
    kind: Option<HandshakeKind>,
}

impl ClientHandshake {
    pub fn new<R: RngCore + ?Sized>(
        mode: ClientHandshakeMode,
        rng: &mut R,
        out: &mut Vec<u8>,
    ) -> Self {
        let mut c1 = Box::new([0u8; HANDSHAKE_BLOCK]);
        let mut c2_random = Box::new([0u8; HANDSHAKE_BLOCK]);
        rng.fill_bytes(&mut c1[8..]);
        rng.fill_bytes(&mut c2_random[..]);
        let c1_digest = match mode {
            ClientHandshakeMode::Simple => None,
            ClientHandshakeMode::Digest => {
                c1[4..8].copy_from_slice(&CLIENT_VERSION);
                Some(imprint_digest(
                    &mut c1[..],
                    DigestScheme::Offset8,
                    PLAYER_TEXT,
                ))
            }
        };
        out.push(RTMP_VERSION);
        out.extend_from_slice(&c1[..]);
        ClientHandshake {
            state: ClientState::AwaitS0S1S2,
            buf: Vec::with_capacity(1 + 2 * HANDSHAKE_BLOCK),
            c1,
            c1_digest,
            c2_random,
            kind: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Consumes S0+S1+S2 and appends C2 to `out`. Returns bytes consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RtmpError> {
        if self.state == ClientState::Done {
            return Ok(0);
        }
        let used = fill(&mut self.buf, 1 + 2 * HANDSHAKE_BLOCK, input);
        if let Some(&v) = self.buf.first() {
            check_version(v)?;
        }
        if self.buf.len() < 1 + 2 * HANDSHAKE_BLOCK {
            return Ok(used);
        }
        let s1 = &self.buf[1..1 + HANDSHAKE_BLOCK];
        let s2 = &self.buf[1 + HANDSHAKE_BLOCK..];
        match self.c1_digest {
            // A zero S1 version means a simple server, even if we offered the digest.
            Some(c1_digest) if s1[4..8] != [0; 4] => {
                let (scheme, s1_digest) =
                    find_digest(s1, SERVER_TEXT).ok_or(RtmpError::HandshakeDigest("S1"))?;
                if !reply_signature_ok(s2, &long_key(SERVER_TEXT), &c1_digest) {
                    return Err(RtmpError::HandshakeDigest("S2"));
                }
                let mut c2 = self.c2_random.clone();
                sign_reply(&mut c2[..], &long_key(PLAYER_TEXT), &s1_digest);
                out.extend_from_slice(&c2[..]);
                self.kind = Some(HandshakeKind::Digest(scheme));
            }
            _ => {
                if s2 != &self.c1[..] {
                    return Err(RtmpError::HandshakeEcho);
                }
                out.extend_from_slice(s1);
                self.kind = Some(HandshakeKind::Simple);
            }
        }
        self.buf = Vec::new();
        self.state = ClientState::Done;
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Runs a client against a server, cutting every transfer into `step`-byte pieces.
    fn run(
        client_mode: ClientHandshakeMode,
        server_mode: ServerHandshakeMode,
        step: usize,
    ) -> (ClientHandshake, ServerHandshake) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut to_server = Vec::new();
        let mut client = ClientHandshake::new(client_mode, &mut rng, &mut to_server);
        let mut server = ServerHandshake::new(server_mode, &mut rng);
        let mut to_client = Vec::new();
        for piece in to_server.chunks(step) {
            assert_eq!(server.feed(piece, &mut to_client).unwrap(), piece.len());
        }
        let mut c2 = Vec::new();
        for piece in to_client.chunks(step) {
            assert_eq!(client.feed(piece, &mut c2).unwrap(), piece.len());
        }
        for piece in c2.chunks(step) {
            assert_eq!(server.feed(piece, &mut Vec::new()).unwrap(), piece.len());
        }
        assert!(client.is_done() && server.is_done());
        (client, server)
    }

    #[test]
    fn simple_client_gets_simple_answer_with_c1_echoed() {
        for step in [1, 7, 1537, 5000] {
            let (c, s) = run(ClientHandshakeMode::Simple, ServerHandshakeMode::Auto, step);
            assert_eq!(c.kind(), Some(HandshakeKind::Simple));
            assert_eq!(s.kind(), Some(HandshakeKind::Simple));
        }
    }

    #[test]
    fn digest_client_verifies_digest_server_and_signs_c2() {
        let (c, s) = run(ClientHandshakeMode::Digest, ServerHandshakeMode::Auto, 100);
        assert_eq!(c.kind(), Some(HandshakeKind::Digest(DigestScheme::Offset8)));
        assert_eq!(s.kind(), Some(HandshakeKind::Digest(DigestScheme::Offset8)));
        assert!(s.c2_signed());
    }

    #[test]
    fn digest_client_accepts_a_simple_server() {
        let (c, s) = run(
            ClientHandshakeMode::Digest,
            ServerHandshakeMode::Simple,
            600,
        );
        assert_eq!(c.kind(), Some(HandshakeKind::Simple));
        assert_eq!(s.kind(), Some(HandshakeKind::Simple));
    }

    #[test]
    fn server_finds_a_digest_at_the_second_offset() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c1 = [0u8; HANDSHAKE_BLOCK];
        rng.fill_bytes(&mut c1[8..]);
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        imprint_digest(&mut c1, DigestScheme::Offset772, PLAYER_TEXT);
        let mut server = ServerHandshake::new(ServerHandshakeMode::Auto, &mut rng);
        let mut out = Vec::new();
        server.feed(&[3], &mut out).unwrap();
        server.feed(&c1, &mut out).unwrap();
        assert_eq!(
            server.kind(),
            Some(HandshakeKind::Digest(DigestScheme::Offset772))
        );
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_BLOCK);
        assert_eq!(out[0], 3);
        // S2 is signed with a key derived from C1's digest.
        let off = DigestScheme::Offset772.offset(&c1);
        assert!(reply_signature_ok(
            &out[1 + HANDSHAKE_BLOCK..],
            &long_key(SERVER_TEXT),
            &c1[off..off + DIGEST_LEN]
        ));
    }

    #[test]
    fn non_zero_version_without_valid_digest_gets_simple_answer() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut c1 = [0x55u8; HANDSHAKE_BLOCK];
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let mut server = ServerHandshake::new(ServerHandshakeMode::Auto, &mut rng);
        let mut out = Vec::new();
        server.feed(&[3], &mut out).unwrap();
        server.feed(&c1, &mut out).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&out[1 + HANDSHAKE_BLOCK..], &c1[..]);
        assert_eq!(&out[5..9], &[0; 4]);
    }

    #[test]
    fn wrong_version_byte_is_refused_at_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut server = ServerHandshake::new(ServerHandshakeMode::Auto, &mut rng);
        assert!(matches!(
            server.feed(&[6], &mut Vec::new()),
            Err(RtmpError::HandshakeVersion(6))
        ));
        let mut server = ServerHandshake::new(ServerHandshakeMode::Auto, &mut rng);
        // An HTTP request is not an RTMP handshake.
        assert!(server.feed(b"GET / HTTP/1.1", &mut Vec::new()).is_err());
    }

    #[test]
    fn bytes_after_c2_are_left_for_the_chunk_stream() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut server = ServerHandshake::new(ServerHandshakeMode::Auto, &mut rng);
        let mut input = vec![3u8];
        input.extend_from_slice(&[0u8; HANDSHAKE_BLOCK]);
        input.extend_from_slice(&[0u8; HANDSHAKE_BLOCK]);
        input.extend_from_slice(&[0x03, 0xaa]);
        let used = server.feed(&input, &mut Vec::new()).unwrap();
        assert_eq!(used, 1 + 2 * HANDSHAKE_BLOCK);
        assert!(server.is_done());
    }
}
