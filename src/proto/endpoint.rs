//! The endpoint: one UDP socket's worth of RTMFP. It demultiplexes datagrams by session id,
//! runs the responder's stateless handshake and the initiator's handshakes, owns open
//! sessions, and introduces peers to each other (forwarded IHello, redirect).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::address::{AddressOrigin, EncodedAddress};
use super::batch::{BatchCipher, BatchLane, ScalarBatchCipher, TransmitBatch, LOCKSTEP};
use super::chunk::{Chunk, PacketView};
use super::cipher::PacketCipher;
use super::cookie::{CookieCheck, CookieJar};
use super::dh::{DhGroup, DhKeyPair, SUPPORTED_GROUPS};
use super::epd::{cert_option, Certificate, EndpointDiscriminator, PeerId};
use super::handshake::{HandshakeFailure, HandshakeStep, Initiator};
use super::keying::{self, GroupKeyBases, HandshakeLayout, KeyingComponent, ProtectionPolicy};
use super::packet::{scramble_session_id, unscramble_session_id, Mode, PacketHeader, MIN_DATAGRAM};
use super::session::{Session, SessionConfig, SessionEvent, SessionInfo};
use super::time::Instant;
use super::timer_wheel::TimerWheel;
use super::token_bucket::TokenBucket;
use super::vlu::put_option;
use super::DropReason;

/// Signature bytes deployed peers put after keying components (RFC 7425 allows any).
const SIGNATURE: &[u8] = b"X";
/// How long we remember the RIKeying of an established session for retransmitted IIKeying.
const RIKEYING_MEMORY: Duration = Duration::from_secs(95);

/// Which certificate a cookie says we presented in RHello.
const PRESENTED_SERVER: u8 = 0;
const PRESENTED_FLASH_STATIC: u8 = 1;
const PRESENTED_RFC_STATIC: u8 = 2;

/// The timer wheel's tick. Deadlines are rounded up to it, so a timer fires up to one
/// tick late (never early): 1 ms, well under the 4 ms of an RTMFP timestamp tick and
/// the 200 ms delayed ack.
const TIMER_TICK_MICROS: u64 = 1_000;

/// The wheel tick at which a deadline fires: the first one not before it.
fn tick_for(deadline: Instant) -> u64 {
    deadline.as_micros().div_ceil(TIMER_TICK_MICROS)
}

/// Puts session `id` in the ready queue unless it is there, and with `refile` in the
/// list of sessions whose deadline is recomputed.
fn put_in_line(
    id: SessionId,
    s: &mut Session,
    ready: &mut VecDeque<SessionId>,
    touched: &mut Vec<SessionId>,
    refile: bool,
) {
    if !s.marks.ready {
        s.marks.ready = true;
        ready.push_back(id);
    }
    if refile && !s.marks.touched {
        s.marks.touched = true;
        touched.push(id);
    }
}

/// RHellos one endpoint (one shard) answers per second by default: a 180-byte RHello at
/// this rate is 14.4 Mbit/s, a ceiling on what spoofed IHellos can make a shard send.
pub const DEFAULT_MAX_HANDSHAKES_PER_SEC: u32 = 10_000;
/// How many times the bytes of the datagram that asked for it a handshake answer to an
/// unvalidated address may weigh, by default. QUIC's bound is 3, but its clients pad
/// their first datagram to 1200 bytes and RTMFP clients do not: librtmfp's 36-byte IHello
/// draws a 180-byte RHello from every Flash-compatible server (5×), so 5 keeps it working
/// (docs/hardening.md).
pub const DEFAULT_AMPLIFICATION_LIMIT: u32 = 5;
/// Our IHello datagrams are padded to at least this many bytes, so that a server bounding
/// its answer at 3× (QUIC's bound) can answer them with an RHello of up to 240 bytes.
pub const IHELLO_MIN_DATAGRAM: usize = 80;

fn tick_instant(tick: u64) -> Instant {
    Instant::from_micros(tick.saturating_mul(TIMER_TICK_MICROS))
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Accept sessions from initiators that ask for a server (ancillary-data EPDs).
    pub accept_servers_epd: bool,
    /// Forward IHellos for peers with a session here to them, and redirect the initiator.
    pub rendezvous: bool,
    /// The shard that owns sessions this endpoint accepts: the top byte of their ids.
    pub shard: u8,
    /// Cookie length in RHello: 64 works with every deployed client.
    pub cookie_len: usize,
    /// What we offer and require as responder.
    pub responder_policy: ProtectionPolicy,
    /// What we ask for as an RFC-layout initiator.
    pub initiator_policy: ProtectionPolicy,
    /// Layouts an initiator tries, in order.
    pub initiator_layouts: Vec<HandshakeLayout>,
    pub groups: Vec<DhGroup>,
    pub session: SessionConfig,
    /// Randomness for the certificate a server presents and the secret its cookies are
    /// minted with, so every shard of one server presents the same certificate (and so
    /// has the same peer id, which NetGroup members connect to) and accepts the cookies
    /// of the others. `None`: drawn from the endpoint's seed.
    pub server_identity: Option<[u8; 64]>,
    /// RHellos answered per second at most (a token bucket that holds one second's
    /// worth); IHellos past it are dropped as `handshake_rate`. 0: no cap.
    pub max_handshakes_per_sec: u32,
    /// A handshake answer to an address that has not proved it receives at it (no valid
    /// cookie yet) may weigh at most this many times the datagram that asked for it,
    /// UDP payload bytes; heavier answers are not sent (`amplification`). 0: no bound.
    pub amplification_limit: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            accept_servers_epd: false,
            rendezvous: false,
            shard: 0,
            cookie_len: super::cookie::FLASH_COOKIE_LEN,
            responder_policy: ProtectionPolicy::ACCOMMODATING,
            initiator_policy: ProtectionPolicy::STRICT,
            initiator_layouts: vec![HandshakeLayout::Rfc7425, HandshakeLayout::FlashEra],
            groups: SUPPORTED_GROUPS.to_vec(),
            session: SessionConfig::default(),
            server_identity: None,
            max_handshakes_per_sec: DEFAULT_MAX_HANDSHAKES_PER_SEC,
            amplification_limit: DEFAULT_AMPLIFICATION_LIMIT,
        }
    }
}

impl EndpointConfig {
    pub fn server() -> Self {
        EndpointConfig {
            accept_servers_epd: true,
            rendezvous: true,
            ..Default::default()
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// Session ids name sessions in events and API calls.
pub type SessionId = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SessionOpened {
        session: SessionId,
        peer: SocketAddr,
        as_initiator: bool,
    },
    HandshakeFailed {
        session: SessionId,
        failure: HandshakeFailure,
    },
    Session {
        session: SessionId,
        event: SessionEvent,
    },
    /// An IHello for a peer we introduced (forwarded to it, redirect sent back).
    Introduced { from: SocketAddr, target: PeerId },
}

/// What an endpoint has done since it started, for metrics (docs/metrics.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Bytes of the datagrams handed out to be sent (handshakes and sessions).
    pub bytes_sent: u64,
    /// IHellos answered with a cookie (RHello): handshakes begun by others.
    pub cookies_sent: u64,
    /// Sessions opened as the responder (a client's handshake completed).
    pub sessions_accepted: u64,
    /// Sessions opened as the initiator (the server reaching a peer, as a group member).
    pub sessions_initiated: u64,
    /// Handshakes we initiated that failed.
    pub handshakes_failed: u64,
    /// Fragments presumed lost and queued again, in sessions that have ended (live
    /// sessions count their own: [`Endpoint::fragments_retransmitted`]).
    retransmitted_by_ended: u64,
}

struct StaticKeys {
    keys: Vec<DhKeyPair>,
    flash_cert: Certificate,
    rfc_cert: Certificate,
}

pub struct Endpoint {
    config: EndpointConfig,
    /// False once the server drains: IHellos for us get no answer.
    accepting: bool,
    rng: ChaCha20Rng,
    cookies: CookieJar,
    server_cert: Certificate,
    static_keys: Option<StaticKeys>,
    /// Keyed by ids we chose at random: a fast hash is safe.
    sessions: rustc_hash::FxHashMap<SessionId, Session>,
    initiators: HashMap<SessionId, Initiator>,
    /// Cookie -> (session, RIKeying datagram, forget at).
    answered: HashMap<Vec<u8>, (SessionId, Transmit, Instant)>,
    /// `answered`'s cookies in the order they expire (all live the same time).
    answered_expiry: VecDeque<(Instant, Vec<u8>)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    drops: BTreeMap<DropReason, u64>,
    counters: EndpointCounters,
    scratch: Vec<u8>,
    time_critical: TimeCriticalSenders,
    /// Addresses a client reported for itself (Flash `setPeerInfo`), given out with the
    /// observed one when introducing others to it.
    reported_addresses: HashMap<SessionId, Vec<SocketAddr>>,
    /// Sessions that may have something to send, served round robin by `poll_transmit`
    /// (one datagram a turn, so a session with a deep queue cannot starve the others).
    /// A session is here at most once (`marks.ready`); an id whose session is gone is
    /// skipped when it comes up.
    ready: VecDeque<SessionId>,
    /// Each session's and initiator's next deadline, in wheel ticks.
    timers: TimerWheel<SessionId>,
    /// Sessions and initiators whose deadline may have changed since it went into
    /// `timers`; recomputed before timers are asked or run. A session is here at most
    /// once (`marks.touched`); an initiator may repeat.
    touched: Vec<SessionId>,
    /// Scratch for the ids `timers` hands out, kept to spare an allocation.
    fired: Vec<SessionId>,
    /// Encrypts `poll_transmit_batch`'s packets, several sessions at a time.
    batch_cipher: Box<dyn BatchCipher + Send>,
    /// Plaintext packet under assembly for `poll_transmit_batch`, reused.
    batch_packet: Vec<u8>,
    /// RHellos left to answer this second (`max_handshakes_per_sec`).
    rhellos: TokenBucket,
    /// While a session-id-0 datagram is handled: the bytes its sender, not validated yet,
    /// may still be sent in answer (`amplification_limit` times its length). `None`:
    /// no bound applies.
    unvalidated_budget: Option<usize>,
}

/// Who last sent us time-critical data (RFC 7016 §3.5.2.3): every other session's
/// packets carry TCR for 800 ms after it, so their senders leave room.
#[derive(Debug, Default)]
struct TimeCriticalSenders {
    latest: Option<(SessionId, Instant)>,
    /// The latest TC from a session other than `latest`'s.
    before_latest: Option<Instant>,
}

impl TimeCriticalSenders {
    fn received(&mut self, session: SessionId, at: Instant) {
        match self.latest {
            Some((s, t)) if s != session => self.before_latest = Some(t),
            _ => {}
        }
        self.latest = Some((session, at));
    }

    fn report_to(&self, session: SessionId, now: Instant) -> bool {
        let other = match self.latest {
            Some((s, _)) if s == session => self.before_latest,
            Some((_, t)) => Some(t),
            None => None,
        };
        other.is_some_and(|t| now.saturating_since(t) < super::session::TIME_CRITICAL_WINDOW)
    }
}

impl Endpoint {
    /// `seed` feeds every random choice (keys, cookies, tags, ids): pass entropy in
    /// production, a constant in tests.
    pub fn new(config: EndpointConfig, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        if let Some(identity) = &config.server_identity {
            // Every shard mints and checks the same cookies: a client's IIKeying may
            // reach another shard than its IHello did.
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(b"rtmfp-edge cookie secret");
            h.update(identity);
            secret = h.finalize().into();
        }
        let mut randomness = [0u8; 64];
        rng.fill_bytes(&mut randomness);
        let server_cert = Certificate::server(
            &config.server_identity.unwrap_or(randomness),
            &config.groups,
        );
        Endpoint {
            accepting: true,
            rng,
            cookies: CookieJar::new(secret),
            server_cert,
            static_keys: None,
            sessions: rustc_hash::FxHashMap::default(),
            initiators: HashMap::new(),
            answered: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            drops: BTreeMap::new(),
            counters: EndpointCounters::default(),
            scratch: Vec::with_capacity(4096),
            time_critical: TimeCriticalSenders::default(),
            reported_addresses: HashMap::new(),
            ready: VecDeque::new(),
            timers: TimerWheel::new(0),
            touched: Vec::new(),
            fired: Vec::new(),
            batch_cipher: Box::new(ScalarBatchCipher),
            batch_packet: Vec::with_capacity(2048),
            answered_expiry: VecDeque::new(),
            rhellos: TokenBucket::new(config.max_handshakes_per_sec),
            unvalidated_budget: None,
            config,
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The peer ID a server presents (fingerprint of the RHello certificate).
    pub fn server_peer_id(&self) -> PeerId {
        self.server_cert.peer_id()
    }

    /// Our peer IDs as an initiator: (Flash-era certificate, RFC certificate).
    pub fn client_peer_ids(&mut self) -> (PeerId, PeerId) {
        let k = self.static_keys();
        (k.flash_cert.peer_id(), k.rfc_cert.peer_id())
    }

    /// Answers no more IHellos for us (counted as `draining`): the server is shutting
    /// down. Sessions already open, and handshakes past the IHello, go on.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Entries kept per peer: open sessions, handshakes we initiated, and RIKeyings
    /// remembered for retransmitted IIKeyings. A responder adds to it only once an
    /// IIKeying returns a valid cookie, so IHellos alone, however many, leave it as is.
    pub fn per_peer_state_len(&self) -> usize {
        self.sessions.len()
            + self.initiators.len()
            + self.answered.len()
            + self.answered_expiry.len()
            + self.reported_addresses.len()
    }

    pub fn drops(&self) -> &BTreeMap<DropReason, u64> {
        &self.drops
    }

    pub fn counters(&self) -> EndpointCounters {
        self.counters
    }

    /// Sessions open (including those closing or lingering after a close).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every session open (closing ones included), in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> + '_ {
        self.sessions.values()
    }

    /// Fragments presumed lost and queued to be sent again, by every session so far.
    pub fn fragments_retransmitted(&self) -> u64 {
        let live: u64 = self
            .sessions
            .values()
            .map(Session::fragments_requeued)
            .sum();
        self.counters.retransmitted_by_ended + live
    }

    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// The caller may queue messages through the session, so it is put in line to send.
    /// Its deadlines may change too, so they are recomputed before timers are next asked.
    pub fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        let s = self.sessions.get_mut(&id)?;
        put_in_line(id, s, &mut self.ready, &mut self.touched, true);
        Some(s)
    }

    /// Lets `queue` look at a session and maybe queue a message on it (true if it did),
    /// one lookup per call: this runs per player per media message in a fan-out. The
    /// message's deadline must be no earlier than any the session already holds (live
    /// media: its arrival + a fixed time). A session `queue` queued on is put in line to
    /// send; its timer is refiled only if it had no pending deadline before, since such
    /// a message cannot bring an existing one forward, which spares the timer wheel a
    /// visit per player per message. None if there is no such session.
    pub fn queue_media_on(
        &mut self,
        id: SessionId,
        queue: impl FnOnce(&mut Session) -> bool,
    ) -> Option<bool> {
        let s = self.sessions.get_mut(&id)?;
        let had_deadline = s.earliest_pending_deadline().is_some();
        let queued = queue(s);
        if queued {
            put_in_line(id, s, &mut self.ready, &mut self.touched, !had_deadline);
        }
        Some(queued)
    }

    /// Notes that a session's or initiator's deadline may have changed.
    fn touch(&mut self, id: SessionId) {
        match self.sessions.get_mut(&id) {
            Some(s) if s.marks.touched => {}
            Some(s) => {
                s.marks.touched = true;
                self.touched.push(id);
            }
            None => self.touched.push(id),
        }
    }

    /// What `id`'s deadline is now, whoever it belongs to.
    fn current_deadline(&self, id: SessionId) -> Option<Instant> {
        match self.initiators.get(&id) {
            Some(init) => Some(init.next_send),
            None => self.sessions.get(&id).and_then(|s| s.poll_timeout()),
        }
    }

    /// Brings `timers` up to date for everything touched; forgets sessions that closed
    /// (handing out their last events).
    /// Files the deadlines of sessions handed out by `session_mut` since the last call
    /// (a fan-out touches every player's session): afterwards `poll_timeout` is cheap
    /// again. Callers that queue data on many sessions call this once after.
    pub fn refresh_timers(&mut self, now: Instant) {
        self.flush_touched(now);
    }

    fn flush_touched(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        for &id in &touched {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.marks.touched = false;
                self.collect_session_events(now, id);
            }
            match self.current_deadline(id) {
                Some(deadline) => self.timers.insert(id, tick_for(deadline)),
                None => {
                    self.timers.remove(&id);
                }
            }
        }
        touched.clear();
        // Keep the allocation unless something touched meanwhile (events can open sessions).
        if self.touched.is_empty() {
            self.touched = touched;
        }
    }

    fn forget_session(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.remove(&id) {
            self.counters.retransmitted_by_ended += s.fragments_requeued();
        }
        self.reported_addresses.remove(&id);
        self.timers.remove(&id);
    }

    /// Puts a session in the ready queue unless it is there already.
    fn mark_ready(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if !s.marks.ready {
                s.marks.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Sessions still open or closing: not closed by the far end nor finished.
    pub fn unfinished_session_count(&self) -> usize {
        self.sessions.values().filter(|s| !s.is_finished()).count()
    }

    pub fn session_ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// Records the addresses a client says it can be reached at (its LAN addresses,
    /// say), so peers introduced to it try them too (RFC 7016 §3.5.1.5).
    /// Whether a live session here belongs to `peer` (so an IHello for it can be
    /// answered with an introduction).
    pub fn has_peer(&self, peer: &PeerId) -> bool {
        self.sessions
            .values()
            .any(|s| s.info.far_peer_id == *peer && !s.is_closed())
    }

    pub fn set_reported_addresses(&mut self, session: SessionId, addresses: Vec<SocketAddr>) {
        if self.sessions.contains_key(&session) {
            self.reported_addresses.insert(session, addresses);
        }
    }

    /// Where an unfinished handshake we started stands.
    pub fn handshake_step(&self, id: SessionId) -> Option<HandshakeStep> {
        self.initiators.get(&id).map(|i| i.step)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn drop(&mut self, reason: DropReason) {
        *self.drops.entry(reason).or_insert(0) += 1;
    }

    fn static_keys(&mut self) -> &StaticKeys {
        if self.static_keys.is_none() {
            // A server's shards share one identity: the static keys (and so the peer id
            // it has as a NetGroup member) too.
            let mut shared = self.config.server_identity.map(|identity| {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(b"rtmfp-edge static keys");
                h.update(identity);
                ChaCha20Rng::from_seed(h.finalize().into())
            });
            let rng = shared.as_mut().unwrap_or(&mut self.rng);
            let keys: Vec<DhKeyPair> = self
                .config
                .groups
                .iter()
                .map(|&g| DhKeyPair::generate(g, &mut *rng))
                .collect();
            let group2 = keys.iter().find(|k| k.group() == DhGroup::Modp1024);
            let flash_cert = match group2 {
                Some(k) => Certificate::with_static_keys(&[(k.group(), k.public_key())], None),
                None => Certificate::with_static_keys(&[], None),
            };
            let mut randomness = [0u8; 64];
            rng.fill_bytes(&mut randomness);
            let all: Vec<(DhGroup, &[u8])> =
                keys.iter().map(|k| (k.group(), k.public_key())).collect();
            let rfc_cert = Certificate::with_static_keys(&all, Some(&randomness));
            self.static_keys = Some(StaticKeys {
                keys,
                flash_cert,
                rfc_cert,
            });
        }
        self.static_keys
            .as_ref()
            .unwrap_or_else(|| unreachable!("just set"))
    }

    fn new_session_id(&mut self) -> SessionId {
        loop {
            let id = (u32::from(self.config.shard) << 24) | (self.rng.gen::<u32>() & 0x00ff_ffff);
            if id != 0 && !self.sessions.contains_key(&id) && !self.initiators.contains_key(&id) {
                return id;
            }
        }
    }

    /// A startup-key datagram carrying `chunk`, padded with 0xff bytes after it (RFC 7016
    /// §2.2.4: the receiver stops at the first 0xff chunk type) to at least `min_len`.
    fn startup_transmit(
        now: Instant,
        to: SocketAddr,
        session_id: u32,
        chunk: &Chunk<'_>,
        min_len: usize,
    ) -> Transmit {
        let mut packet = Vec::with_capacity(256);
        let mut header = PacketHeader::new(Mode::Startup);
        header.timestamp = Some(now.timestamp_ticks());
        header.emit(&mut packet);
        chunk.emit(&mut packet);
        // Scrambled session id (4) and checksum (2) come on top of the packet: the
        // startup key negotiates neither sequence numbers nor an HMAC.
        let bare = 4 + 2 + packet.len();
        if bare < min_len {
            packet.resize(packet.len() + (min_len - bare), 0xff);
        }
        let mut payload = vec![0u8; 4];
        PacketCipher::startup().seal(&packet, &mut payload);
        scramble_session_id(&mut payload, session_id);
        Transmit {
            destination: to,
            payload,
        }
    }

    fn send_startup(
        &mut self,
        now: Instant,
        to: SocketAddr,
        session_id: u32,
        chunk: &Chunk<'_>,
    ) -> Transmit {
        let t = Self::startup_transmit(now, to, session_id, chunk, 0);
        self.transmits.push_back(t.clone());
        t
    }

    /// Queues an answer to the sender of the session-id-0 datagram being handled, if it
    /// fits what that sender may still be sent (`amplification_limit`); counts
    /// `amplification` and sends nothing if not.
    fn answer_unvalidated(&mut self, t: Transmit) -> bool {
        if let Some(budget) = &mut self.unvalidated_budget {
            if t.payload.len() > *budget {
                self.drop(DropReason::Amplification);
                return false;
            }
            *budget -= t.payload.len();
        }
        self.transmits.push_back(t);
        true
    }

    // ---------------- initiator API ----------------

    /// Starts a session to `to`, asking for `epd`. Returns the id the session will have.
    pub fn connect(
        &mut self,
        now: Instant,
        to: SocketAddr,
        epd: EndpointDiscriminator,
    ) -> SessionId {
        self.static_keys();
        let near_id = self.new_session_id();
        let mut tag = [0u8; 16];
        self.rng.fill_bytes(&mut tag);
        let init = Initiator::new(
            now,
            near_id,
            epd,
            tag,
            to,
            self.config.initiator_layouts.clone(),
        );
        self.initiators.insert(near_id, init);
        self.drive_initiator(now, near_id);
        near_id
    }

    /// Sends (or resends) whatever the initiator's step calls for.
    fn drive_initiator(&mut self, now: Instant, id: SessionId) {
        self.touch(id);
        let Some(mut init) = self.initiators.remove(&id) else {
            return;
        };
        if now < init.next_send {
            self.initiators.insert(id, init);
            return;
        }
        if init.exhausted() {
            let failure = HandshakeFailure::NoAnswer(init.step);
            if init.step == HandshakeStep::Keying && init.fall_back(now) {
                self.initiators.insert(id, init);
                return self.drive_initiator(now, id);
            }
            self.counters.handshakes_failed += 1;
            self.events.push_back(Event::HandshakeFailed {
                session: id,
                failure,
            });
            return;
        }
        match init.step {
            HandshakeStep::Hello => {
                let epd = init.epd.encode();
                for &to in &init.candidates.clone() {
                    self.send_ihello(now, to, &epd, &init.tag);
                }
            }
            HandshakeStep::Keying => {
                if let Some(to) = init.responder {
                    let mut packet = Vec::with_capacity(init.iikeying.len() + 8);
                    let mut header = PacketHeader::new(Mode::Startup);
                    header.timestamp = Some(now.timestamp_ticks());
                    header.emit(&mut packet);
                    packet.extend_from_slice(&init.iikeying);
                    let mut payload = vec![0u8; 4];
                    PacketCipher::startup().seal(&packet, &mut payload);
                    scramble_session_id(&mut payload, 0);
                    self.transmits.push_back(Transmit {
                        destination: to,
                        payload,
                    });
                }
            }
        }
        init.schedule_next(now);
        self.initiators.insert(id, init);
    }

    /// An IHello padded to [`IHELLO_MIN_DATAGRAM`], so that responders that bound their
    /// answer to three times what they got (QUIC's bound) still answer it.
    fn send_ihello(&mut self, now: Instant, to: SocketAddr, epd: &[u8], tag: &[u8]) {
        let t =
            Self::startup_transmit(now, to, 0, &Chunk::IHello { epd, tag }, IHELLO_MIN_DATAGRAM);
        self.transmits.push_back(t);
    }

    fn initiator_by_tag(&self, tag: &[u8]) -> Option<SessionId> {
        self.initiators
            .iter()
            .find(|(_, i)| i.tag == tag)
            .map(|(&id, _)| id)
    }

    fn on_rhello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tag: &[u8],
        cookie: &[u8],
        cert_bytes: &[u8],
    ) {
        let Some(id) = self.initiator_by_tag(tag) else {
            return self.drop(DropReason::UnexpectedHandshake);
        };
        let Some(mut init) = self.initiators.remove(&id) else {
            return;
        };
        if init.step != HandshakeStep::Hello {
            self.initiators.insert(id, init);
            return;
        }
        let cert = match Certificate::parse(cert_bytes) {
            Ok(c) if c.is_selected_by(&init.epd) => c,
            Ok(_) | Err(_) => {
                // RFC 7016 §3.5.1.2: an RHello from the wrong responder is ignored.
                self.initiators.insert(id, init);
                return self.drop(DropReason::UnexpectedHandshake);
            }
        };
        let mut randomness = [0u8; 64];
        self.rng.fill_bytes(&mut randomness);
        let policy = self.config.initiator_policy;
        let groups = self.config.groups.clone();
        let keys = self.static_keys();
        let (group, our_cert, component) = match init.layout() {
            HandshakeLayout::FlashEra => (
                2,
                keys.flash_cert.raw().to_vec(),
                keying::flash_era_initiator_component(&randomness),
            ),
            HandshakeLayout::Rfc7425 => {
                let Some(g) = groups
                    .iter()
                    .map(|g| g.id())
                    .find(|&g| cert.offers_group(g))
                else {
                    self.counters.handshakes_failed += 1;
                    self.events.push_back(Event::HandshakeFailed {
                        session: id,
                        failure: HandshakeFailure::KeyAgreement(
                            "no common Diffie-Hellman group".into(),
                        ),
                    });
                    return;
                };
                (
                    g,
                    keys.rfc_cert.raw().to_vec(),
                    keying::initiator_component(g, &randomness, &policy),
                )
            }
        };
        let mut iikeying = Vec::new();
        Chunk::IIKeying {
            initiator_session_id: id,
            cookie,
            certificate: &our_cert,
            keying_component: &component,
            signature: SIGNATURE,
        }
        .emit(&mut iikeying);
        init.responder = Some(from);
        init.cookie = cookie.to_vec();
        init.responder_cert = Some(cert);
        init.group = group;
        init.our_component = component;
        init.our_cert = our_cert;
        init.iikeying = iikeying;
        init.step = HandshakeStep::Keying;
        init.attempts = 0;
        init.next_send = now;
        self.initiators.insert(id, init);
        self.drive_initiator(now, id);
    }

    fn on_redirect(&mut self, now: Instant, tag: &[u8], addresses: &[EncodedAddress]) {
        let Some(id) = self.initiator_by_tag(tag) else {
            return self.drop(DropReason::UnexpectedHandshake);
        };
        let Some(init) = self.initiators.get_mut(&id) else {
            return;
        };
        if init.step != HandshakeStep::Hello {
            return;
        }
        let mut new = Vec::new();
        for a in addresses {
            if !init.candidates.contains(&a.addr) && !a.addr.ip().is_unspecified() {
                init.candidates.push(a.addr);
                new.push(a.addr);
            }
        }
        let epd = init.epd.encode();
        let tag = init.tag;
        for to in new {
            self.send_ihello(now, to, &epd, &tag);
        }
    }

    fn on_cookie_change(&mut self, now: Instant, old: &[u8], new: &[u8]) {
        let Some(id) = self
            .initiators
            .iter()
            .find(|(_, i)| i.cookie == old)
            .map(|(&id, _)| id)
        else {
            return self.drop(DropReason::UnexpectedHandshake);
        };
        let Some(init) = self.initiators.get_mut(&id) else {
            return;
        };
        let mut iikeying = Vec::new();
        Chunk::IIKeying {
            initiator_session_id: id,
            cookie: new,
            certificate: &init.our_cert,
            keying_component: &init.our_component,
            signature: SIGNATURE,
        }
        .emit(&mut iikeying);
        init.cookie = new.to_vec();
        init.iikeying = iikeying;
        init.next_send = now;
        self.drive_initiator(now, id);
    }

    fn on_rikeying(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: SessionId,
        responder_id: u32,
        component: &[u8],
    ) {
        let Some(mut init) = self.initiators.remove(&id) else {
            return;
        };
        if init.step != HandshakeStep::Keying {
            self.initiators.insert(id, init);
            return self.drop(DropReason::UnexpectedHandshake);
        }
        let layout = init.layout();
        let policy = match layout {
            HandshakeLayout::FlashEra => ProtectionPolicy::ACCOMMODATING,
            HandshakeLayout::Rfc7425 => self.config.initiator_policy,
        };
        self.touch(id);
        let result = self.agree_as_initiator(&init, component, &policy);
        match result {
            Ok((cipher, info)) => {
                let mut session = Session::new(
                    now,
                    id,
                    responder_id,
                    Mode::Initiator,
                    from,
                    cipher,
                    SessionInfo { layout, ..info },
                    self.config.session,
                );
                if let Some(sent) = init.sent_once_at {
                    session.seed_rtt(now.saturating_since(sent));
                }
                self.sessions.insert(id, session);
                self.mark_ready(id);
                self.counters.sessions_initiated += 1;
                self.events.push_back(Event::SessionOpened {
                    session: id,
                    peer: from,
                    as_initiator: true,
                });
            }
            Err(failure) => {
                self.drop(DropReason::KeyingFailed);
                // A responder that answered in a layout we cannot use: try the next one
                // (MonaServer2 offers groups 2, 5 and 14 but keys only group 2 properly).
                if init.fall_back(now) {
                    self.initiators.insert(id, init);
                    self.drive_initiator(now, id);
                } else {
                    self.counters.handshakes_failed += 1;
                    self.events.push_back(Event::HandshakeFailed {
                        session: id,
                        failure,
                    });
                }
            }
        }
    }

    fn agree_as_initiator(
        &mut self,
        init: &Initiator,
        component: &[u8],
        policy: &ProtectionPolicy,
    ) -> Result<(PacketCipher, SessionInfo), HandshakeFailure> {
        let theirs = KeyingComponent::parse(component).map_err(|e| {
            HandshakeFailure::KeyAgreement(format!("malformed responder component: {e}"))
        })?;
        let (tx, rx) = keying::negotiate(policy, &theirs)
            .map_err(|e| HandshakeFailure::Negotiation(format!("{e:?}")))?;
        let cert = init
            .responder_cert
            .as_ref()
            .ok_or_else(|| HandshakeFailure::KeyAgreement("no certificate".into()))?;
        let their_public: Vec<u8> = match &theirs.dh_public_key {
            Some((g, key)) if *g == init.group => key.clone(),
            Some((g, _)) => {
                return Err(HandshakeFailure::KeyAgreement(format!(
                    "responder keyed group {g}, we selected group {}",
                    init.group
                )))
            }
            None => cert
                .static_key(init.group)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| {
                    HandshakeFailure::KeyAgreement("responder sent no public key".into())
                })?,
        };
        let keys = self.static_keys();
        let pair = keys
            .keys
            .iter()
            .find(|k| k.group().id() == init.group)
            .ok_or_else(|| HandshakeFailure::KeyAgreement("group not supported".into()))?;
        let secret = pair.shared_secret(&their_public).ok_or_else(|| {
            HandshakeFailure::KeyAgreement("responder public key fails RFC 7425 §4.6.2".into())
        })?;
        let k = keying::derive_session_keys(&secret, &init.our_component, component);
        let cipher = PacketCipher::new(&k.encrypt, &k.decrypt).with_protection(
            tx,
            &k.tx_hmac_key,
            rx,
            &k.rx_hmac_key,
        );
        let info = SessionInfo {
            layout: init.layout(),
            dh_group: init.group,
            far_peer_id: cert.peer_id(),
            tx_hmac: tx.hmac_len,
            rx_hmac: rx.hmac_len,
            tx_sequence_numbers: tx.sequence_numbers,
            rx_sequence_numbers: rx.sequence_numbers,
            group_key_bases: GroupKeyBases::derive(&secret, &init.our_component, component),
        };
        Ok((cipher, info))
    }

    // ---------------- responder ----------------

    /// Which certificate (if any) we present to `epd`.
    fn certificate_for(&mut self, epd: &EndpointDiscriminator) -> Option<(u8, Certificate)> {
        if let Some(fp) = &epd.fingerprint {
            if *fp == self.server_cert.peer_id() {
                return Some((PRESENTED_SERVER, self.server_cert.clone()));
            }
            if let Some(keys) = &self.static_keys {
                if *fp == keys.flash_cert.peer_id() {
                    return Some((PRESENTED_FLASH_STATIC, keys.flash_cert.clone()));
                }
                if *fp == keys.rfc_cert.peer_id() {
                    return Some((PRESENTED_RFC_STATIC, keys.rfc_cert.clone()));
                }
            }
            return None;
        }
        if self.config.accept_servers_epd && self.server_cert.is_selected_by(epd) {
            return Some((PRESENTED_SERVER, self.server_cert.clone()));
        }
        None
    }

    fn on_ihello(&mut self, now: Instant, reply_to: SocketAddr, epd_bytes: &[u8], tag: &[u8]) {
        let Ok(epd) = EndpointDiscriminator::parse(epd_bytes) else {
            return self.drop(DropReason::Malformed);
        };
        if let Some((presented, cert)) = self.certificate_for(&epd) {
            if !self.accepting {
                return self.drop(DropReason::Draining);
            }
            // Checked before any work: past the cap an IHello costs a lookup, no HMAC.
            if !self.rhellos.ready(now) {
                return self.drop(DropReason::HandshakeRate);
            }
            let mut filler = [0u8; 64];
            self.rng.fill_bytes(&mut filler);
            let cookie = self.cookies.mint(
                now.as_micros() / 1_000_000,
                reply_to,
                presented,
                self.config.cookie_len,
                &filler,
            );
            let rhello = Self::startup_transmit(
                now,
                reply_to,
                0,
                &Chunk::RHello {
                    tag,
                    cookie: &cookie,
                    certificate: cert.raw(),
                },
                0,
            );
            if self.answer_unvalidated(rhello) {
                self.rhellos.take(now);
                self.counters.cookies_sent += 1;
            }
            return;
        }
        if let (true, Some(target)) = (self.config.rendezvous, epd.fingerprint) {
            self.introduce(now, reply_to, target, epd_bytes, tag);
        } else {
            self.drop(DropReason::UnexpectedHandshake);
        }
    }

    /// RFC 7016 §3.5.1.5-6: forward the IHello to the target's session and tell the
    /// initiator where the target can be reached.
    fn introduce(
        &mut self,
        now: Instant,
        initiator: SocketAddr,
        target: PeerId,
        epd: &[u8],
        tag: &[u8],
    ) {
        let Some((&sid, _)) = self
            .sessions
            .iter()
            .find(|(_, s)| s.info.far_peer_id == target && !s.is_closed())
        else {
            // Unknown peer: say so with an empty redirect only if asked again? Stay silent.
            return self.drop(DropReason::UnexpectedHandshake);
        };
        let target_addr = self.sessions.get(&sid).map(|s| s.peer);
        let Some(target_addr) = target_addr else {
            return;
        };
        let mut fihello = Vec::new();
        Chunk::ForwardedIHello {
            epd,
            reply_address: EncodedAddress::new(initiator, AddressOrigin::Remote),
            tag,
        }
        .emit(&mut fihello);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.queue_control(fihello);
        }
        self.mark_ready(sid);
        let mut addresses = vec![EncodedAddress::new(target_addr, AddressOrigin::Remote)];
        for &a in self.reported_addresses.get(&sid).into_iter().flatten() {
            if a != target_addr {
                addresses.push(EncodedAddress::new(a, AddressOrigin::Local));
            }
        }
        let redirect =
            Self::startup_transmit(now, initiator, 0, &Chunk::Redirect { tag, addresses }, 0);
        self.answer_unvalidated(redirect);
        self.events.push_back(Event::Introduced {
            from: initiator,
            target,
        });
    }

    fn on_iikeying(
        &mut self,
        now: Instant,
        from: SocketAddr,
        initiator_id: u32,
        cookie: &[u8],
        cert_bytes: &[u8],
        component: &[u8],
    ) {
        if let Some((near_id, t, until)) = self.answered.get(cookie) {
            if now < *until {
                // A retransmitted IIKeying: the RIKeying was lost (RFC 7016 §3.5.1.3).
                // Its cookie is not checked against `from` here, so `from` is unvalidated.
                let t = Transmit {
                    destination: from,
                    payload: t.payload.clone(),
                };
                if let Some(session) = self.sessions.get_mut(near_id) {
                    session.forget_first_rtt();
                }
                self.answer_unvalidated(t);
                return;
            }
        }
        let (check, presented) = self
            .cookies
            .check(cookie, now.as_micros() / 1_000_000, from);
        match check {
            CookieCheck::Valid => {}
            CookieCheck::OtherAddress => {
                let mut filler = [0u8; 64];
                self.rng.fill_bytes(&mut filler);
                let new = self.cookies.mint(
                    now.as_micros() / 1_000_000,
                    from,
                    presented,
                    cookie.len(),
                    &filler,
                );
                let change = Self::startup_transmit(
                    now,
                    from,
                    initiator_id,
                    &Chunk::RHelloCookieChange {
                        old_cookie: cookie,
                        new_cookie: &new,
                    },
                    0,
                );
                self.answer_unvalidated(change);
                return;
            }
            CookieCheck::Expired | CookieCheck::Forged => return self.drop(DropReason::BadCookie),
        }
        let (Ok(cert), Ok(theirs)) = (
            Certificate::parse(cert_bytes),
            KeyingComponent::parse(component),
        ) else {
            return self.drop(DropReason::Malformed);
        };
        let flash_cert_shape = cert.static_keys.len() == 1
            && cert.static_keys[0].0 == 2
            && cert.supported_groups.is_empty();
        let layout = if theirs.is_flash_era_initiator() && flash_cert_shape {
            HandshakeLayout::FlashEra
        } else {
            HandshakeLayout::Rfc7425
        };
        let policy = match layout {
            HandshakeLayout::FlashEra => ProtectionPolicy {
                hmac: keying::Willingness::NONE,
                sequence_numbers: keying::Willingness::NONE,
                ..self.config.responder_policy
            },
            HandshakeLayout::Rfc7425 => self.config.responder_policy,
        };
        let Ok((tx, rx)) = keying::negotiate(&policy, &theirs) else {
            return self.drop(DropReason::KeyingFailed);
        };
        let (group, their_public) = match (&theirs.group_select, &theirs.dh_public_key) {
            (Some(g), _) => match cert.static_key(*g) {
                Some(k) => (*g, k.to_vec()),
                None => return self.drop(DropReason::KeyingFailed),
            },
            (None, Some((g, k))) => (*g, k.clone()),
            (None, None) => return self.drop(DropReason::KeyingFailed),
        };
        let Some(dh_group) = DhGroup::from_id(group).filter(|g| self.config.groups.contains(g))
        else {
            return self.drop(DropReason::KeyingFailed);
        };
        let mut randomness = [0u8; 64];
        self.rng.fill_bytes(&mut randomness);
        let (secret, our_component) = if presented == PRESENTED_SERVER {
            let pair = DhKeyPair::generate(dh_group, &mut self.rng);
            let comp = keying::responder_component(layout, &policy, group, pair.public_key());
            (pair.shared_secret(&their_public), comp)
        } else {
            let keys = self.static_keys();
            let pair = keys.keys.iter().find(|k| k.group() == dh_group).cloned();
            let Some(pair) = pair else {
                return self.drop(DropReason::KeyingFailed);
            };
            let mut comp = Vec::new();
            let mut hmac = vec![if layout == HandshakeLayout::FlashEra {
                0
            } else {
                policy.hmac.flags()
            }];
            super::vlu::put_vlu(
                &mut hmac,
                if layout == HandshakeLayout::FlashEra {
                    0
                } else {
                    policy.hmac_len as u64
                },
            );
            put_option(&mut comp, keying::keying_option::HMAC_NEGOTIATION, &hmac);
            let sseq = if layout == HandshakeLayout::FlashEra {
                0
            } else {
                policy.sequence_numbers.flags()
            };
            put_option(&mut comp, keying::keying_option::SSEQ_NEGOTIATION, &[sseq]);
            put_option(&mut comp, cert_option::EXTRA_RANDOMNESS, &randomness);
            (pair.shared_secret(&their_public), comp)
        };
        let Some(secret) = secret else {
            return self.drop(DropReason::KeyingFailed);
        };
        let k = keying::derive_session_keys(&secret, &our_component, component);
        let cipher = PacketCipher::new(&k.encrypt, &k.decrypt).with_protection(
            tx,
            &k.tx_hmac_key,
            rx,
            &k.rx_hmac_key,
        );
        let near_id = self.new_session_id();
        let info = SessionInfo {
            layout,
            dh_group: group,
            far_peer_id: cert.peer_id(),
            tx_hmac: tx.hmac_len,
            rx_hmac: rx.hmac_len,
            tx_sequence_numbers: tx.sequence_numbers,
            rx_sequence_numbers: rx.sequence_numbers,
            group_key_bases: GroupKeyBases::derive(&secret, &our_component, component),
        };
        let mut session = Session::new(
            now,
            near_id,
            initiator_id,
            Mode::Responder,
            from,
            cipher,
            info,
            self.config.session,
        );
        session.measure_first_rtt_from(now);
        self.sessions.insert(near_id, session);
        self.mark_ready(near_id);
        self.touch(near_id);
        let t = self.send_startup(
            now,
            from,
            initiator_id,
            &Chunk::RIKeying {
                responder_session_id: near_id,
                keying_component: &our_component,
                signature: SIGNATURE,
            },
        );
        self.answered
            .insert(cookie.to_vec(), (near_id, t, now + RIKEYING_MEMORY));
        self.answered_expiry
            .push_back((now + RIKEYING_MEMORY, cookie.to_vec()));
        self.counters.sessions_accepted += 1;
        self.events.push_back(Event::SessionOpened {
            session: near_id,
            peer: from,
            as_initiator: false,
        });
    }

    // ---------------- datagram entry ----------------

    /// Processes one received datagram.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if datagram.len() < MIN_DATAGRAM {
            return self.drop(DropReason::BadLength);
        }
        let Some(sid) = unscramble_session_id(datagram) else {
            return self.drop(DropReason::BadLength);
        };
        if sid != 0 {
            if let Some(session) = self.sessions.get_mut(&sid) {
                let result = session.handle_datagram(now, from, &datagram[4..]);
                if session.time_critical_received_at() == Some(now) {
                    self.time_critical.received(sid, now);
                }
                // Acks, replies and window updates it needs to send, or room to send more.
                self.mark_ready(sid);
                self.touch(sid);
                self.collect_session_events(now, sid);
                if let Err(reason) = result {
                    self.drop(reason);
                }
                return self.flush_touched(now);
            }
            if !self.initiators.contains_key(&sid) {
                return self.drop(DropReason::UnknownSession);
            }
        }
        // Whoever sent a session-id-0 datagram has proved nothing about its address yet.
        self.unvalidated_budget = match (sid, self.config.amplification_limit) {
            (0, limit) if limit > 0 => Some(datagram.len().saturating_mul(limit as usize)),
            _ => None,
        };
        self.handle_startup(now, from, sid, &datagram[4..]);
        self.unvalidated_budget = None;
        self.flush_touched(now);
    }

    fn handle_startup(&mut self, now: Instant, from: SocketAddr, sid: u32, ciphertext: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        match PacketCipher::startup().open(ciphertext, &mut scratch) {
            Ok(range) => self.handle_startup_packet(now, from, sid, &scratch[range]),
            Err(reason) => self.drop(reason),
        }
        self.scratch = scratch;
    }

    fn handle_startup_packet(&mut self, now: Instant, from: SocketAddr, sid: u32, packet: &[u8]) {
        let Ok(view) = PacketView::parse(packet) else {
            return self.drop(DropReason::Malformed);
        };
        if view.header.mode != Mode::Startup {
            return self.drop(DropReason::WrongMode);
        }
        for chunk in view.chunks() {
            let Ok(chunk) = chunk else {
                return self.drop(DropReason::Malformed);
            };
            match chunk {
                Chunk::IHello { epd, tag } if sid == 0 => self.on_ihello(now, from, epd, tag),
                Chunk::RHello {
                    tag,
                    cookie,
                    certificate,
                } if sid == 0 => self.on_rhello(now, from, tag, cookie, certificate),
                Chunk::Redirect { tag, addresses } if sid == 0 => {
                    self.on_redirect(now, tag, &addresses)
                }
                Chunk::IIKeying {
                    initiator_session_id,
                    cookie,
                    certificate,
                    keying_component,
                    ..
                } if sid == 0 => self.on_iikeying(
                    now,
                    from,
                    initiator_session_id,
                    cookie,
                    certificate,
                    keying_component,
                ),
                Chunk::RIKeying {
                    responder_session_id,
                    keying_component,
                    ..
                } if sid != 0 => {
                    self.on_rikeying(now, from, sid, responder_session_id, keying_component)
                }
                Chunk::RHelloCookieChange {
                    old_cookie,
                    new_cookie,
                } => self.on_cookie_change(now, old_cookie, new_cookie),
                Chunk::Padding(_) | Chunk::Unknown { .. } => {}
                _ => self.drop(DropReason::UnexpectedHandshake),
            }
        }
    }

    fn collect_session_events(&mut self, now: Instant, sid: SessionId) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let mut forwarded = Vec::new();
        while let Some(event) = session.poll_event() {
            forwarded.push(event);
        }
        for event in forwarded {
            if let SessionEvent::ForwardedIHello {
                epd,
                reply_address,
                tag,
            } = &event
            {
                // We are the target of an introduction: answer as if the IHello came
                // straight from the initiator, so both sides punch holes toward each other.
                self.on_ihello(now, *reply_address, epd, tag);
                continue;
            }
            self.events.push_back(Event::Session {
                session: sid,
                event,
            });
        }
        if self.sessions.get(&sid).is_some_and(|s| s.is_closed()) {
            self.forget_session(sid);
        }
    }

    // ---------------- timers and output ----------------

    /// The earliest deadline of any session or handshake, rounded up to the timer tick.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Usually empty: the mutating calls bring `timers` up to date before they return,
        // except for sessions handed out by `session_mut` and a drain cut short.
        let touched = self
            .touched
            .iter()
            .filter_map(|&id| self.current_deadline(id))
            .map(tick_for)
            .min();
        let wheel = self.timers.next_deadline();
        let tick = match (wheel, touched) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tick.map(tick_instant)
    }

    /// Runs the timers due at `now`: only sessions and handshakes whose deadline has come
    /// are visited.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush_touched(now);
        let mut fired = std::mem::take(&mut self.fired);
        self.timers
            .expire(now.as_micros() / TIMER_TICK_MICROS, &mut fired);
        for &id in &fired {
            if self.initiators.contains_key(&id) {
                self.drive_initiator(now, id);
            } else if let Some(s) = self.sessions.get_mut(&id) {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
                // A due ack, ping, close request or retransmission.
                self.mark_ready(id);
            }
            // Out of the wheel now: recomputing puts it back if it still has a deadline.
            self.touch(id);
        }
        fired.clear();
        self.fired = fired;
        while let Some((until, _)) = self.answered_expiry.front() {
            if *until > now {
                break;
            }
            if let Some((until, cookie)) = self.answered_expiry.pop_front() {
                if self
                    .answered
                    .get(&cookie)
                    .is_some_and(|(_, _, u)| *u <= until)
                {
                    self.answered.remove(&cookie);
                }
            }
        }
        self.flush_touched(now);
    }

    /// Installs the cipher `poll_transmit_batch` encrypts with (the engine's multi-buffer
    /// AES, say); it must produce what [`ScalarBatchCipher`] does, byte for byte.
    pub fn set_batch_cipher(&mut self, cipher: Box<dyn BatchCipher + Send>) {
        self.batch_cipher = cipher;
    }

    /// Fills `batch`'s free slots with datagrams to send, in the order `poll_transmit`
    /// would return them; returns how many it added. Session packets are encrypted
    /// [`LOCKSTEP`] sessions at a time through the batch cipher, in their slots.
    pub fn poll_transmit_batch(&mut self, now: Instant, batch: &mut TransmitBatch) -> usize {
        let before = batch.len();
        while !batch.is_full() {
            let Some(t) = self.transmits.pop_front() else {
                break;
            };
            if !batch.push(t.destination, &t.payload) {
                self.transmits.push_front(t);
                break;
            }
            self.counters.bytes_sent += t.payload.len() as u64;
        }
        let mut packet = std::mem::take(&mut self.batch_packet);
        // (session, destination, plaintext length) of each slot in this round.
        let mut round: Vec<(SessionId, SocketAddr, usize)> = Vec::with_capacity(LOCKSTEP);
        let mut drained = false;
        while !batch.is_full() && !drained {
            let first = batch.len();
            round.clear();
            while round.len() < LOCKSTEP && first + round.len() < batch.capacity() {
                let Some(id) = self.ready.pop_front() else {
                    drained = true;
                    break;
                };
                let Some(s) = self.sessions.get_mut(&id) else {
                    continue;
                };
                if !s.marks.ready {
                    continue;
                }
                s.set_report_time_critical_reverse(self.time_critical.report_to(id, now));
                let dest = s.poll_plaintext(now, &mut packet);
                if let Some(dest) = dest {
                    let body = s.seal_plaintext(&packet, batch.slot_mut(first + round.len()));
                    round.push((id, dest, body));
                    self.ready.push_back(id);
                } else {
                    s.marks.ready = false;
                }
                self.touch(id);
            }
            if round.is_empty() {
                break;
            }
            let sessions = &self.sessions;
            let mut lanes: Vec<BatchLane<'_>> = batch
                .slots_mut(first, round.len())
                .zip(&round)
                .filter_map(|(slot, &(id, _, body))| {
                    let (key, cipher) = sessions.get(&id)?.seal_key();
                    Some(BatchLane {
                        key,
                        cipher,
                        buf: &mut slot[4..4 + body],
                    })
                })
                .collect();
            debug_assert_eq!(lanes.len(), round.len(), "sessions stay while sealing");
            self.batch_cipher.encrypt_lanes(&mut lanes);
            drop(lanes);
            for (k, &(id, dest, body)) in round.iter().enumerate() {
                let Some(s) = self.sessions.get(&id) else {
                    continue;
                };
                let len = s.seal_finish(batch.slot_mut(first + k), body);
                batch.commit(dest, len);
                self.counters.bytes_sent += len as u64;
            }
        }
        self.batch_packet = packet;
        if drained {
            self.flush_touched(now);
        }
        batch.len() - before
    }

    /// The next datagram to send, if any.
    ///
    /// Handshake datagrams go first; then sessions from the ready queue take turns, one
    /// datagram each. A session with nothing sendable leaves the queue and comes back
    /// when a datagram for it arrives, a timer of its own fires, or `session_mut` hands
    /// it out.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            self.counters.bytes_sent += t.payload.len() as u64;
            return Some(t);
        }
        let mut payload = Vec::with_capacity(1280);
        while let Some(id) = self.ready.pop_front() {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if !s.marks.ready {
                continue;
            }
            s.set_report_time_critical_reverse(self.time_critical.report_to(id, now));
            let sent = s.poll_transmit(now, &mut payload);
            // Sending moves its timers (retransmission, keepalive, delayed ack).
            self.touch(id);
            match sent {
                Some(destination) => {
                    // Back of the line: it may have more, after everyone else's turn.
                    self.ready.push_back(id);
                    self.counters.bytes_sent += payload.len() as u64;
                    return Some(Transmit {
                        destination,
                        payload,
                    });
                }
                None => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.marks.ready = false;
                    }
                }
            }
        }
        self.flush_touched(now);
        None
    }
}
