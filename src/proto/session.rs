//! An open session (RFC 7016 §3.5): flows, acknowledgements, retransmission, RTT, congestion
//! control, keepalive, idle timeout, orderly close and address mobility. The endpoint owns
//! the handshake; a `Session` exists once keys are agreed.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::chunk::{Chunk, DataOptions, Fragmentation, UserData};
use super::cipher::PacketCipher;
use super::congestion::{CongestionController, TcpCompatible, TimeCriticality};
use super::epd::PeerId;
use super::flow_recv::{Delivery, RecvFlow};
use super::flow_send::{FlowTable, Priority, SendFlow};
use super::keying::HandshakeLayout;
use super::packet::{Mode, PacketHeader, FLAG_TIME_CRITICAL, MAX_SESSION_PACKET};
use super::time::Instant;
use super::vlu::{put_vlu, Reader};

/// Largest user data fragment: a packet minus header, chunk header and the VLUs.
pub const MAX_FRAGMENT: usize = MAX_SESSION_PACKET - 5 - 3 - 1 - 30 - 32;
const DELAYED_ACK: Duration = Duration::from_millis(200);
const MIN_ERTO: Duration = Duration::from_millis(250);
const INITIAL_ERTO: Duration = Duration::from_secs(3);
const MAX_ERTO: Duration = Duration::from_secs(10);
const NAKS_FOR_LOSS: u32 = 3;
const NEARCLOSE_RETRANSMIT: Duration = Duration::from_secs(5);
const NEARCLOSE_PERIOD: Duration = Duration::from_secs(90);
const FARCLOSE_LINGER: Duration = Duration::from_secs(19);
const RECV_FLOW_CAPACITY: u64 = 1 << 20;
const MOBILITY_MARK: u8 = b'M';

/// Exception code we send when rejecting a flow we cannot take.
pub const FLOW_REJECTED: u64 = 0;

/// Tunables for sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    pub keepalive: Duration,
    pub idle_timeout: Duration,
    /// Give up on a session whose data has gone unacknowledged this long.
    pub retransmit_limit: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            keepalive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            retransmit_limit: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Open,
    /// We asked to close; waiting for the acknowledgement.
    NearClose {
        since: Instant,
        next_request: Instant,
    },
    /// The far side closed; we acknowledged and linger to answer retransmissions.
    FarCloseLinger {
        until: Instant,
    },
    Closed,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Orderly close we asked for, acknowledged.
    LocalClose,
    /// The peer asked to close.
    PeerClosed,
    /// Nothing heard for the idle timeout.
    IdleTimeout,
    /// Data or keepalives went unacknowledged for the retransmit limit.
    RetransmitLimit,
    /// Closed without telling the peer.
    Aborted,
}

/// What a session tells its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    FlowOpened {
        flow_id: u64,
        metadata: Vec<u8>,
        return_flow: Option<u64>,
    },
    Message {
        flow_id: u64,
        data: Vec<u8>,
    },
    FlowFinished {
        flow_id: u64,
    },
    /// The receiver rejected one of our sending flows.
    FlowRejected {
        flow_id: u64,
        code: u64,
    },
    AddressChanged {
        from: SocketAddr,
        to: SocketAddr,
    },
    /// A server forwarded an initiator's IHello to us (RFC 7016 §2.3.3): the endpoint
    /// answers it toward `reply_address`.
    ForwardedIHello {
        epd: Vec<u8>,
        reply_address: SocketAddr,
        tag: Vec<u8>,
    },
    Closed(CloseReason),
}

/// What was negotiated, for tools and logs.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub layout: HandshakeLayout,
    pub dh_group: u64,
    pub far_peer_id: PeerId,
    pub tx_hmac: Option<usize>,
    pub rx_hmac: Option<usize>,
    pub tx_sequence_numbers: bool,
    pub rx_sequence_numbers: bool,
    /// For NetGroup group keys between peers (docs/netgroup.md §3.3).
    pub group_key_bases: super::keying::GroupKeyBases,
}

pub struct Session {
    pub near_id: u32,
    pub far_id: u32,
    pub role: Mode,
    pub peer: SocketAddr,
    pub info: SessionInfo,
    pub state: SessionState,
    config: SessionConfig,
    cipher: PacketCipher,
    send_flows: FlowTable,
    /// The earliest message deadline pending on any sending flow: kept exact (lowered as
    /// messages are queued, recomputed after acknowledgements and timeouts), so a timer
    /// or a lag check reads one field instead of visiting every flow.
    earliest_deadline: Option<Instant>,
    recv_flows: BTreeMap<u64, RecvFlow>,
    next_flow_id: u64,
    cc: Box<dyn CongestionController>,
    in_flight: usize,
    next_tsn: u64,
    // RTT (RFC 7016 §3.5.2.2)
    srtt: Option<Duration>,
    rttvar: Duration,
    erto: Duration,
    /// Responder: when the RIKeying went out, until the session's first packet.
    rtt_probe: Option<Instant>,
    /// Round-trip samples taken (the handshake's and timestamp echoes).
    rtt_samples: u64,
    last_ts_sent: Option<u16>,
    last_echo_sent: Option<u16>,
    ts_received: Option<(u16, Instant)>,
    last_echo_seen: Option<u16>,
    // timers
    last_receive: Instant,
    last_send: Instant,
    rto_deadline: Option<Instant>,
    rto_backoff: u32,
    ack_deadline: Option<Instant>,
    data_packets_unacked: u32,
    keepalive_outstanding: Option<Instant>,
    unacked_since: Option<Instant>,
    // control chunks waiting for a packet
    control: VecDeque<Vec<u8>>,
    pending_mobility: Option<(SocketAddr, u64)>,
    mobility_sent: Option<u64>,
    mobility_nonce: u64,
    events: VecDeque<SessionEvent>,
    /// Ciphertext-to-plaintext scratch buffer, reused.
    scratch: Vec<u8>,
    /// Plaintext packet under assembly, reused.
    tx_packet: Vec<u8>,
    /// Fragments presumed lost (by NAKs or a retransmission timeout) and queued again.
    fragments_requeued: u64,
    // time-critical traffic (RFC 7016 §3.5.2.3)
    tc_sent_at: Option<Instant>,
    tc_received_at: Option<Instant>,
    tcr_received_at: Option<Instant>,
    /// Set by the endpoint: someone else sends us time-critical data, so tell this peer.
    report_time_critical_reverse: bool,
    /// Where the round robin among equal-priority flows starts next time.
    round_robin_after: u64,
    /// Scratch for the order flows are served in, kept to spare an allocation a packet.
    flow_order: Vec<(Priority, bool, u64)>,
    /// The endpoint's bookkeeping for this session; the session never reads it.
    pub(super) marks: EndpointMarks,
}

/// Where the owning endpoint has this session queued.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EndpointMarks {
    /// In the endpoint's ready queue: may have something to send.
    pub(super) ready: bool,
    /// In the endpoint's list of sessions whose deadline must be recomputed.
    pub(super) touched: bool,
}

/// How long a TC or TCR flag counts (RFC 7016 §3.5.2.3).
pub const TIME_CRITICAL_WINDOW: Duration = Duration::from_millis(800);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("near_id", &self.near_id)
            .field("far_id", &self.far_id)
            .field("peer", &self.peer)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        near_id: u32,
        far_id: u32,
        role: Mode,
        peer: SocketAddr,
        cipher: PacketCipher,
        info: SessionInfo,
        config: SessionConfig,
    ) -> Self {
        Session {
            near_id,
            far_id,
            role,
            peer,
            info,
            state: SessionState::Open,
            config,
            cipher,
            send_flows: FlowTable::default(),
            earliest_deadline: None,
            recv_flows: BTreeMap::new(),
            next_flow_id: 1,
            cc: Box::new(TcpCompatible::new(MAX_FRAGMENT)),
            in_flight: 0,
            next_tsn: 1,
            srtt: None,
            rttvar: Duration::ZERO,
            erto: INITIAL_ERTO,
            rtt_probe: None,
            rtt_samples: 0,
            last_ts_sent: None,
            last_echo_sent: None,
            ts_received: None,
            last_echo_seen: None,
            last_receive: now,
            last_send: now,
            rto_deadline: None,
            rto_backoff: 0,
            ack_deadline: None,
            data_packets_unacked: 0,
            keepalive_outstanding: None,
            unacked_since: None,
            control: VecDeque::new(),
            pending_mobility: None,
            mobility_sent: None,
            mobility_nonce: u64::from(near_id) << 16,
            events: VecDeque::new(),
            scratch: Vec::with_capacity(2048),
            tx_packet: Vec::with_capacity(MAX_SESSION_PACKET),
            fragments_requeued: 0,
            tc_sent_at: None,
            tc_received_at: None,
            tcr_received_at: None,
            report_time_critical_reverse: false,
            round_robin_after: 0,
            flow_order: Vec::new(),
            marks: EndpointMarks::default(),
        }
    }

    /// Flows at a higher priority send first; time-critical ones set the TC flag.
    pub fn set_priority(&mut self, flow_id: u64, priority: Priority) {
        if let Some(f) = self.send_flows.get_mut(&flow_id) {
            f.priority = priority;
        }
    }

    /// When the far end last sent us time-critical data (a packet with TC).
    pub fn time_critical_received_at(&self) -> Option<Instant> {
        self.tc_received_at
    }

    /// Whether the far end reported, within the last 800 ms, that someone else sends it
    /// time-critical data.
    pub fn yields_to_time_critical(&self, now: Instant) -> bool {
        within_window(self.tcr_received_at, now)
    }

    /// The endpoint sets this before asking for packets: another session receives
    /// time-critical data, so our packets carry TCR.
    pub fn set_report_time_critical_reverse(&mut self, report: bool) {
        self.report_time_critical_reverse = report;
    }

    fn time_criticality(&self, now: Instant) -> TimeCriticality {
        if within_window(self.tc_sent_at, now) {
            TimeCriticality::SendingTimeCritical
        } else if within_window(self.tcr_received_at, now) {
            TimeCriticality::YieldingToTimeCritical
        } else {
            TimeCriticality::Ordinary
        }
    }

    pub fn set_congestion_controller(&mut self, cc: Box<dyn CongestionController>) {
        self.cc = cc;
    }

    /// The session's packet cipher: `bench fanout` clones it to hand a session over to
    /// its lightweight receiver, which seals acks and peeks at packets itself.
    pub fn packet_cipher(&self) -> &PacketCipher {
        &self.cipher
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Round-trip samples taken so far (the handshake's, then timestamp echoes).
    pub fn rtt_samples(&self) -> u64 {
        self.rtt_samples
    }

    pub fn congestion_window(&self) -> usize {
        self.cc.window()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        self.state == SessionState::Closed
    }

    /// Closed by the far end, or closed: nothing is owed to the peer any more (a
    /// lingering session only answers retransmitted close requests).
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            SessionState::Closed | SessionState::FarCloseLinger { .. }
        )
    }

    // ---- application API ----

    /// Opens a sending flow; `return_flow` associates it with one of the peer's flows.
    pub fn open_flow(&mut self, metadata: Vec<u8>, return_flow: Option<u64>) -> u64 {
        let id = self.next_flow_id;
        self.next_flow_id += 1;
        self.send_flows
            .insert(id, SendFlow::new(id, metadata, return_flow));
        id
    }

    /// Queues a message. With a `deadline`, fragments still unacknowledged then are
    /// abandoned instead of retransmitted (partial reliability for stale media).
    pub fn send(&mut self, flow_id: u64, message: &[u8], deadline: Option<Instant>) -> bool {
        self.send_parts(flow_id, &[message], deadline)
    }

    /// Sends the concatenation of `parts` as one message (a message header in front of
    /// a payload shared with other sessions, say) without joining them first.
    pub fn send_parts(&mut self, flow_id: u64, parts: &[&[u8]], deadline: Option<Instant>) -> bool {
        match self.send_flows.get_mut(&flow_id) {
            Some(f) if f.exception.is_none() => {
                f.queue_message_parts(parts, MAX_FRAGMENT, deadline);
                self.note_deadline(deadline);
                true
            }
            _ => false,
        }
    }

    /// Sends `message`, a buffer shared with other sessions (a framed media message
    /// fanned out to many players): its fragments are slices of it, so queuing it for
    /// one more session copies nothing; the bytes are read once more only when a
    /// packet is built and encrypted.
    pub fn send_shared(
        &mut self,
        flow_id: u64,
        message: &bytes::Bytes,
        deadline: Option<Instant>,
    ) -> bool {
        match self.send_flows.get_mut(&flow_id) {
            Some(f) if f.exception.is_none() => {
                f.queue_shared_message(message, MAX_FRAGMENT, deadline);
                self.note_deadline(deadline);
                true
            }
            _ => false,
        }
    }

    /// The deadline of the oldest message not yet wholly acknowledged or abandoned, on
    /// any flow: how far behind the peer is on everything we send with a deadline.
    pub fn earliest_pending_deadline(&self) -> Option<Instant> {
        self.earliest_deadline
    }

    fn note_deadline(&mut self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.earliest_deadline = Some(self.earliest_deadline.map_or(d, |e| e.min(d)));
        }
    }

    /// Recomputes [`Self::earliest_pending_deadline`] after acknowledgements, abandons or
    /// rejections moved the flows' oldest deadlines.
    fn refresh_earliest_deadline(&mut self) {
        self.earliest_deadline = self
            .send_flows
            .values()
            .filter_map(|f| f.next_deadline())
            .min();
    }

    /// How long the peer has acknowledged nothing while data (or a ping) waited for it:
    /// zero while it keeps up, growing while its path is dark.
    pub fn unanswered_for(&self, now: Instant) -> Duration {
        self.unacked_since
            .map_or(Duration::ZERO, |since| now.saturating_since(since))
    }

    pub fn close_flow(&mut self, flow_id: u64) {
        if let Some(f) = self.send_flows.get_mut(&flow_id) {
            f.close();
        }
    }

    /// Chooses how a receiving flow delivers messages.
    pub fn set_delivery(&mut self, flow_id: u64, delivery: Delivery) {
        if let Some(f) = self.recv_flows.get_mut(&flow_id) {
            f.delivery = delivery;
        }
    }

    /// Rejects a receiving flow (RFC 7016 §3.6.3.7): the sender gets a flow exception.
    pub fn reject_flow(&mut self, flow_id: u64, code: u64) {
        if let Some(f) = self.recv_flows.get_mut(&flow_id) {
            f.rejected = Some(code);
            f.ack_due = true;
            let mut c = Vec::new();
            Chunk::FlowException { flow_id, code }.emit(&mut c);
            self.control.push_back(c);
        }
    }

    /// Bytes queued or in flight across our sending flows.
    pub fn unacknowledged_bytes(&self) -> u64 {
        self.send_flows
            .values()
            .map(|f| f.unacknowledged_bytes())
            .sum()
    }

    /// Starts an orderly close (RFC 7016 §3.5.5.1).
    pub fn close(&mut self, now: Instant) {
        if self.state == SessionState::Open {
            self.state = SessionState::NearClose {
                since: now,
                next_request: now,
            };
        }
    }

    /// Ends the session without a word to the peer.
    pub fn abort(&mut self) {
        if self.state != SessionState::Closed {
            self.state = SessionState::Closed;
            self.events
                .push_back(SessionEvent::Closed(CloseReason::Aborted));
        }
    }

    /// Queues an encoded chunk to go out in the next packet.
    pub fn queue_control(&mut self, chunk: Vec<u8>) {
        self.control.push_back(chunk);
    }

    // ---- receive ----

    /// Decrypts and processes a datagram's ciphertext (after the session id). Returns
    /// `Err` with the drop reason when the packet is not for us or malformed.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ciphertext: &[u8],
    ) -> Result<(), super::DropReason> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self
            .cipher
            .open(ciphertext, &mut scratch)
            .and_then(|range| {
                let packet = &scratch[range];
                self.handle_packet(now, from, packet)
            });
        self.scratch = scratch;
        if result.is_ok() {
            self.refresh_earliest_deadline();
        }
        result
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
    ) -> Result<(), super::DropReason> {
        use super::DropReason;
        let view = super::chunk::PacketView::parse(packet).map_err(|_| DropReason::Malformed)?;
        let header = view.header;
        // RFC 7016 §2.2.4: we accept packets in the far end's mode only.
        let far_mode = if self.role == Mode::Initiator {
            Mode::Responder
        } else {
            Mode::Initiator
        };
        if header.mode != far_mode {
            return Err(DropReason::WrongMode);
        }
        if self.state == SessionState::Closed {
            return Err(DropReason::UnknownSession);
        }
        self.last_receive = now;
        if let Some(sent) = self.rtt_probe.take() {
            self.seed_rtt(now.saturating_since(sent));
        }
        if header.time_critical {
            self.tc_received_at = Some(now);
        }
        if header.time_critical_reverse {
            self.tcr_received_at = Some(now);
        }
        if let Some(ts) = header.timestamp {
            if self.ts_received.map(|(t, _)| t) != Some(ts) {
                self.ts_received = Some((ts, now));
            }
        }
        if let Some(echo) = header.timestamp_echo {
            self.on_timestamp_echo(now, echo);
        }
        let mut data_seen = false;
        let mut acks_seen = false;
        let mut last_data: Option<(u64, u64, u64)> = None; // flow, seq, fsn
        for chunk in view.chunks() {
            let Ok(chunk) = chunk else { break };
            match chunk {
                Chunk::UserData {
                    flow_id,
                    sequence,
                    fsn_offset,
                    fragment,
                } => {
                    data_seen = true;
                    let fsn = sequence - fsn_offset;
                    self.on_user_data(flow_id, sequence, fsn, &fragment);
                    last_data = Some((flow_id, sequence, fsn));
                }
                Chunk::NextUserData { fragment } => {
                    // RFC 7016 §2.3.12: continues the previous user data chunk.
                    if let Some((flow_id, seq, fsn)) = last_data {
                        data_seen = true;
                        self.on_user_data(flow_id, seq + 1, fsn, &fragment);
                        last_data = Some((flow_id, seq + 1, fsn));
                    }
                }
                Chunk::AckRanges {
                    flow_id,
                    buffer_blocks,
                    cumulative_ack,
                    ranges,
                } => {
                    acks_seen = true;
                    let mut pairs = vec![(1, cumulative_ack)];
                    let mut cursor = cumulative_ack;
                    for r in ranges {
                        let from = cursor.saturating_add(r.holes_minus_one).saturating_add(2);
                        let to = from.saturating_add(r.received_minus_one);
                        pairs.push((from, to));
                        cursor = to;
                    }
                    self.on_ack(now, flow_id, buffer_blocks, &pairs);
                }
                Chunk::AckBitmap {
                    flow_id,
                    buffer_blocks,
                    cumulative_ack,
                    bitmap,
                } => {
                    acks_seen = true;
                    let mut pairs = vec![(1, cumulative_ack)];
                    for (i, byte) in bitmap.iter().enumerate() {
                        for bit in 0..8 {
                            if byte & (1 << bit) != 0 {
                                // RFC 7016 §2.3.13: bit 0 of byte 0 is cumulativeAck + 2.
                                let seq = cumulative_ack + 2 + (i as u64) * 8 + bit;
                                pairs.push((seq, seq));
                            }
                        }
                    }
                    self.on_ack(now, flow_id, buffer_blocks, &pairs);
                }
                Chunk::BufferProbe { flow_id } => {
                    if let Some(f) = self.recv_flows.get_mut(&flow_id) {
                        f.ack_due = true;
                        self.ack_deadline = Some(now);
                    }
                }
                Chunk::FlowException { flow_id, code } => {
                    if let Some(f) = self.send_flows.get_mut(&flow_id) {
                        if f.exception.is_none() {
                            let freed = f.reject(code);
                            self.in_flight = self.in_flight.saturating_sub(freed);
                            self.events
                                .push_back(SessionEvent::FlowRejected { flow_id, code });
                        }
                    }
                }
                Chunk::Ping { message } => {
                    let mut c = Vec::new();
                    Chunk::PingReply { message }.emit(&mut c);
                    self.control.push_back(c);
                }
                Chunk::PingReply { message } => {
                    self.keepalive_outstanding = None;
                    if self.in_flight == 0 {
                        self.unacked_since = None;
                    }
                    self.on_ping_reply(from, message);
                }
                Chunk::SessionCloseRequest => {
                    let mut c = Vec::new();
                    Chunk::SessionCloseAck.emit(&mut c);
                    self.control.push_back(c);
                    if self.state == SessionState::Open {
                        self.state = SessionState::FarCloseLinger {
                            until: now + FARCLOSE_LINGER,
                        };
                        self.events
                            .push_back(SessionEvent::Closed(CloseReason::PeerClosed));
                    }
                }
                Chunk::SessionCloseAck => match self.state {
                    SessionState::NearClose { .. } => {
                        self.state = SessionState::Closed;
                        self.events
                            .push_back(SessionEvent::Closed(CloseReason::LocalClose));
                    }
                    SessionState::Open => {
                        // RFC 7016 §3.5.5.2: an unexpected ack closes the session.
                        self.state = SessionState::Closed;
                        self.events
                            .push_back(SessionEvent::Closed(CloseReason::PeerClosed));
                    }
                    _ => {}
                },
                Chunk::ForwardedIHello {
                    epd,
                    reply_address,
                    tag,
                } => {
                    self.events.push_back(SessionEvent::ForwardedIHello {
                        epd: epd.to_vec(),
                        reply_address: reply_address.addr,
                        tag: tag.to_vec(),
                    });
                }
                // Startup chunks and unknown types are ignored in an open session.
                _ => {}
            }
        }
        if data_seen {
            self.data_packets_unacked += 1;
            // Ack at once every second data packet, or when something is out of order.
            let out_of_order = self.recv_flows.values().any(|f| f.ack_due && f.has_gap());
            if self.data_packets_unacked >= 2 || out_of_order {
                self.ack_deadline = Some(now);
            } else if self.ack_deadline.is_none() {
                self.ack_deadline = Some(now + DELAYED_ACK);
            }
        }
        if acks_seen {
            self.detect_losses(now);
        }
        if from != self.peer && self.state == SessionState::Open {
            self.start_mobility_check(from);
        }
        Ok(())
    }

    fn on_timestamp_echo(&mut self, now: Instant, echo: u16) {
        if self.last_echo_seen == Some(echo) {
            return;
        }
        self.last_echo_seen = Some(echo);
        let ticks = now.timestamp_ticks().wrapping_sub(echo);
        if ticks >= 32768 {
            return;
        }
        self.on_rtt_sample(Duration::from_millis(u64::from(ticks) * 4));
    }

    /// The session's first round-trip sample from its handshake, before any timestamp
    /// echo: the initiator's IIKeying to RIKeying, the responder's RIKeying to the first
    /// packet of the session. Without it a first data packet lost waits the initial
    /// 3 s ERTO; with it, about three round trips (RFC 6298 takes its first sample
    /// from the SYN the same way). Ignored once the session has a sample, or if longer
    /// than the initial ERTO.
    pub fn seed_rtt(&mut self, rtt: Duration) {
        if self.srtt.is_none() && rtt < INITIAL_ERTO {
            self.on_rtt_sample(rtt);
        }
    }

    /// Responder: the RIKeying went out at `sent`; the first packet of the session seeds
    /// the round-trip estimate (see [`Session::seed_rtt`]).
    pub fn measure_first_rtt_from(&mut self, sent: Instant) {
        self.rtt_probe = Some(sent);
    }

    /// Responder: the RIKeying went out again, so the first packet may answer either.
    pub fn forget_first_rtt(&mut self) {
        self.rtt_probe = None;
    }

    fn on_rtt_sample(&mut self, rtt: Duration) {
        self.rtt_samples += 1;
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = if srtt > rtt { srtt - rtt } else { rtt - srtt };
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.erto = (srtt + self.rttvar * 4 + DELAYED_ACK).max(MIN_ERTO);
    }

    fn on_user_data(&mut self, flow_id: u64, sequence: u64, fsn: u64, fragment: &UserData<'_>) {
        if !self.recv_flows.contains_key(&flow_id) {
            let Some(options) = fragment.options else {
                // RFC 7016 §3.6.3.1: a new flow's first fragment must carry its metadata;
                // without it, reject the flow.
                let mut c = Vec::new();
                Chunk::FlowException {
                    flow_id,
                    code: FLOW_REJECTED,
                }
                .emit(&mut c);
                self.control.push_back(c);
                return;
            };
            let mut flow = RecvFlow::new(
                flow_id,
                options.metadata.unwrap_or_default().to_vec(),
                options.return_flow,
                RECV_FLOW_CAPACITY,
            );
            if options.unknown_mandatory {
                flow.rejected = Some(FLOW_REJECTED);
                let mut c = Vec::new();
                Chunk::FlowException {
                    flow_id,
                    code: FLOW_REJECTED,
                }
                .emit(&mut c);
                self.control.push_back(c);
            } else {
                self.events.push_back(SessionEvent::FlowOpened {
                    flow_id,
                    metadata: flow.metadata.clone(),
                    return_flow: flow.return_flow,
                });
            }
            self.recv_flows.insert(flow_id, flow);
        }
        let Some(flow) = self.recv_flows.get_mut(&flow_id) else {
            return;
        };
        if flow.rejected.is_some() {
            flow.ack_due = true;
            return;
        }
        let was_finished = flow.is_finished();
        flow.on_fragment(
            sequence,
            fsn,
            fragment.fragmentation,
            fragment.abandon,
            fragment.final_fragment,
            fragment.data,
        );
        for data in flow.take_messages() {
            if !(data.is_empty() && flow.is_finished()) {
                self.events
                    .push_back(SessionEvent::Message { flow_id, data });
            }
        }
        if !was_finished && flow.is_finished() {
            self.events
                .push_back(SessionEvent::FlowFinished { flow_id });
        }
    }

    fn on_ack(&mut self, now: Instant, flow_id: u64, buffer_blocks: u64, ranges: &[(u64, u64)]) {
        let Some(flow) = self.send_flows.get_mut(&flow_id) else {
            return;
        };
        flow.peer_window = buffer_blocks.saturating_mul(1024);
        flow.options_acknowledged = true;
        let mut acked = 0;
        let mut max_tsn = 0;
        for &(from, to) in ranges {
            if from <= to {
                let (b, t) = flow.acknowledge(from, to);
                acked += b;
                max_tsn = max_tsn.max(t);
            }
        }
        // NAK counting (RFC 7016 §3.6.2.4): fragments sent before an acknowledged one and
        // still outstanding each get a strike.
        flow.count_naks(max_tsn);
        self.in_flight = self.in_flight.saturating_sub(acked);
        self.keepalive_outstanding = None;
        // Something we sent arrived (abandoned fragments carry no bytes, but their
        // acknowledgement shows the path works just the same).
        if max_tsn > 0 {
            self.rto_backoff = 0;
            self.unacked_since = None;
        }
        if acked > 0 {
            let criticality = self.time_criticality(now);
            self.cc.on_ack(now, acked, self.srtt, criticality);
        }
        self.rto_deadline = if self.in_flight > 0 {
            Some(now + self.erto)
        } else {
            None
        };
    }

    fn detect_losses(&mut self, now: Instant) {
        let mut lost_any = false;
        for flow in self.send_flows.values_mut() {
            let (count, bytes) = flow.take_lost(NAKS_FOR_LOSS);
            self.fragments_requeued += count as u64;
            self.in_flight = self.in_flight.saturating_sub(bytes);
            lost_any |= count > 0;
        }
        if lost_any {
            self.cc.on_loss(now, self.srtt);
        }
    }

    fn start_mobility_check(&mut self, from: SocketAddr) {
        // RFC 7016 §3.5.4.2: probe the new address before moving the session there.
        if self.pending_mobility.map(|(a, _)| a) == Some(from) {
            // Still unconfirmed: probe again (the last probe or its reply may be lost).
            self.mobility_sent = None;
            return;
        }
        self.mobility_nonce += 1;
        self.pending_mobility = Some((from, self.mobility_nonce));
    }

    fn on_ping_reply(&mut self, from: SocketAddr, message: &[u8]) {
        let Some((addr, nonce)) = self.pending_mobility else {
            return;
        };
        let mut r = Reader::new(message);
        if r.u8() != Ok(MOBILITY_MARK) || r.vlu() != Ok(nonce) || from != addr {
            return;
        }
        let old = self.peer;
        self.peer = addr;
        self.pending_mobility = None;
        // A new path: forget what we knew of the old one's round trip.
        self.srtt = None;
        self.erto = INITIAL_ERTO;
        self.events.push_back(SessionEvent::AddressChanged {
            from: old,
            to: addr,
        });
    }

    // ---- timers ----

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |x| x.min(d)));
            }
        };
        match self.state {
            SessionState::Closed => return None,
            SessionState::NearClose {
                since,
                next_request,
            } => {
                consider(Some(next_request));
                consider(Some(since + NEARCLOSE_PERIOD));
            }
            SessionState::FarCloseLinger { until } => consider(Some(until)),
            SessionState::Open => {
                consider(self.rto_deadline);
                consider(self.ack_deadline);
                consider(Some(self.last_receive + self.config.idle_timeout));
                if self.keepalive_outstanding.is_none() {
                    consider(Some(
                        self.last_receive.max(self.last_send) + self.config.keepalive,
                    ));
                } else {
                    consider(self.keepalive_outstanding.map(|t| t + self.erto));
                }
                consider(self.earliest_deadline);
            }
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            SessionState::Closed => {}
            SessionState::FarCloseLinger { until } => {
                if now >= until {
                    self.state = SessionState::Closed;
                }
            }
            SessionState::NearClose {
                since,
                next_request,
            } => {
                if now >= since + NEARCLOSE_PERIOD {
                    self.state = SessionState::Closed;
                    self.events
                        .push_back(SessionEvent::Closed(CloseReason::LocalClose));
                } else if now >= next_request {
                    let mut c = Vec::new();
                    Chunk::SessionCloseRequest.emit(&mut c);
                    self.control.push_back(c);
                    self.state = SessionState::NearClose {
                        since,
                        next_request: now + NEARCLOSE_RETRANSMIT,
                    };
                }
            }
            SessionState::Open => {
                if now >= self.last_receive + self.config.idle_timeout {
                    self.state = SessionState::Closed;
                    self.events
                        .push_back(SessionEvent::Closed(CloseReason::IdleTimeout));
                    return;
                }
                if self
                    .unacked_since
                    .is_some_and(|t| now >= t + self.config.retransmit_limit)
                {
                    self.state = SessionState::Closed;
                    self.events
                        .push_back(SessionEvent::Closed(CloseReason::RetransmitLimit));
                    return;
                }
                let mut freed = 0;
                for f in self.send_flows.values_mut() {
                    freed += f.abandon_stale(now);
                }
                self.in_flight = self.in_flight.saturating_sub(freed);
                self.refresh_earliest_deadline();
                if self.rto_deadline.is_some_and(|d| now >= d) {
                    self.on_retransmit_timeout(now);
                }
                if let Some(sent) = self.keepalive_outstanding {
                    if now >= sent + self.erto {
                        self.erto = (self.erto * 3 / 2).min(MAX_ERTO);
                        self.queue_ping(now);
                    }
                } else if now >= self.last_receive.max(self.last_send) + self.config.keepalive {
                    self.queue_ping(now);
                }
            }
        }
    }

    /// Sends a ping now (its reply refreshes the RTT estimate).
    pub fn ping(&mut self, now: Instant) {
        self.queue_ping(now);
    }

    fn queue_ping(&mut self, now: Instant) {
        let mut c = Vec::new();
        Chunk::Ping { message: &[] }.emit(&mut c);
        self.control.push_back(c);
        self.keepalive_outstanding = Some(now);
        self.unacked_since.get_or_insert(now);
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        // RFC 7016 §3.5.2.2: everything in flight is presumed lost; back off the timer.
        for flow in self.send_flows.values_mut() {
            self.fragments_requeued += flow.requeue_all_in_flight().1 as u64;
        }
        self.in_flight = 0;
        self.cc.on_timeout(now);
        self.rto_backoff += 1;
        self.erto = (self.erto * 3 / 2).min(MAX_ERTO);
        self.rto_deadline = None;
        self.unacked_since.get_or_insert(now);
    }

    /// Fragments this session presumed lost (by NAKs or a retransmission timeout) and
    /// queued to be sent again.
    pub fn fragments_requeued(&self) -> u64 {
        self.fragments_requeued
    }

    // ---- transmit ----

    /// Builds the next packet to send, if any, appending `[scrambled id][ciphertext]` to
    /// `out`, and returns the destination.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        let mut packet = std::mem::take(&mut self.tx_packet);
        let dest = self.poll_plaintext(now, &mut packet);
        if dest.is_some() {
            self.seal(&packet, out);
        }
        self.tx_packet = packet;
        dest
    }

    /// Builds the next packet to send, if any, into `packet` (cleared first) without
    /// sealing it, and returns the destination. Seal it with `seal_plaintext`, encrypt,
    /// then `seal_finish`, before building another.
    pub(super) fn poll_plaintext(
        &mut self,
        now: Instant,
        packet: &mut Vec<u8>,
    ) -> Option<SocketAddr> {
        packet.clear();
        if self.state == SessionState::Closed {
            return None;
        }
        self.assemble(now, packet)
    }

    /// Lays out the datagram for `packet` in `slot` up to the ciphertext: a placeholder
    /// for the session id, then the plaintext to encrypt. Returns the plaintext's length.
    pub(super) fn seal_plaintext(&mut self, packet: &[u8], slot: &mut [u8]) -> usize {
        self.cipher.seal_plaintext(packet, &mut slot[4..])
    }

    /// The key `seal_plaintext`'s output is encrypted under: raw and expanded.
    pub(super) fn seal_key(&self) -> (&[u8; 16], &aes::Aes128) {
        (self.cipher.encrypt_key(), self.cipher.encrypt_cipher())
    }

    /// After encryption: appends the HMAC and scrambles the session id; returns the
    /// datagram's length.
    pub(super) fn seal_finish(&self, slot: &mut [u8], body: usize) -> usize {
        let len = 4 + self.cipher.seal_tag(&mut slot[4..], body);
        super::packet::scramble_session_id(&mut slot[..len], self.far_id);
        len
    }

    /// Fills `packet` with header and chunks; returns where it goes.
    fn assemble(&mut self, now: Instant, packet: &mut Vec<u8>) -> Option<SocketAddr> {
        let header = self.next_header(now);
        header.emit(packet);
        let header_len = packet.len();
        let budget = MAX_SESSION_PACKET - self.cipher.overhead();
        // Mobility probe goes to the candidate address in a packet of its own.
        if let Some((addr, nonce)) = self.pending_mobility {
            if !self.mobility_probe_sent(nonce) {
                let mut msg = vec![MOBILITY_MARK];
                put_vlu(&mut msg, nonce);
                Chunk::Ping { message: &msg }.emit(packet);
                self.mobility_sent = Some(nonce);
                self.note_header_sent(&header);
                return Some(addr);
            }
        }
        while let Some(c) = self.control.front() {
            if packet.len() + c.len() > budget {
                break;
            }
            if let Some(c) = self.control.pop_front() {
                packet.extend_from_slice(&c);
            }
        }
        if self.ack_deadline.is_some_and(|d| now >= d) {
            self.write_acks(packet, budget);
        }
        if self.state == SessionState::Open && self.write_data(now, packet, budget) {
            // The flags byte leads the plaintext packet.
            packet[0] |= FLAG_TIME_CRITICAL;
            self.tc_sent_at = Some(now);
        }
        if packet.len() == header_len {
            return None;
        }
        self.note_header_sent(&header);
        self.last_send = now;
        Some(self.peer)
    }

    fn mobility_probe_sent(&self, nonce: u64) -> bool {
        self.mobility_sent == Some(nonce)
    }

    fn seal(&mut self, packet: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        self.cipher.seal(packet, out);
        super::packet::scramble_session_id(&mut out[start..], self.far_id);
    }

    /// The header for the packet being assembled. Pure: a header built for an attempt
    /// that ends up with nothing to send must not use up the current timestamp.
    fn next_header(&self, now: Instant) -> PacketHeader {
        let mut h = PacketHeader::new(self.role);
        h.time_critical_reverse = self.report_time_critical_reverse;
        let ts = now.timestamp_ticks();
        // Flash-era peers expect a timestamp in every packet; RFC peers only when new.
        if self.info.layout == HandshakeLayout::FlashEra || self.last_ts_sent != Some(ts) {
            h.timestamp = Some(ts);
        }
        if let Some((ts_rx, at)) = self.ts_received {
            let elapsed = now.saturating_since(at);
            // RFC 7016 §3.5.2.2: echo only while the elapsed time fits (128 s).
            let echo = ts_rx.wrapping_add((elapsed.as_millis() / 4) as u16);
            // RFC 7016 §3.5.2.2: echo only while the elapsed time fits (128 s), and only
            // a value not echoed already (Flash-era peers get it in every packet).
            let repeat =
                self.last_echo_sent == Some(echo) && self.info.layout != HandshakeLayout::FlashEra;
            if elapsed < Duration::from_secs(128) && !repeat {
                h.timestamp_echo = Some(echo);
            }
        }
        h
    }

    /// Records what a packet that is really going out carried.
    fn note_header_sent(&mut self, header: &PacketHeader) {
        if let Some(ts) = header.timestamp {
            self.last_ts_sent = Some(ts);
        }
        if let Some(echo) = header.timestamp_echo {
            self.last_echo_sent = Some(echo);
        }
    }

    fn write_acks(&mut self, packet: &mut Vec<u8>, budget: usize) {
        let mut all_written = true;
        for flow in self.recv_flows.values_mut() {
            if !flow.ack_due {
                continue;
            }
            let ranges = flow.ack_ranges(16);
            let chunk = Chunk::AckRanges {
                flow_id: flow.id,
                buffer_blocks: flow.buffer_blocks(),
                cumulative_ack: flow.cumulative_ack(),
                ranges,
            };
            if !chunk.emit_within(packet, budget) {
                all_written = false;
                break;
            }
            flow.ack_due = false;
        }
        if all_written {
            self.ack_deadline = None;
            self.data_packets_unacked = 0;
        }
    }

    /// Writes user data, highest-priority flows first and round robin among equals.
    /// Returns whether any of it was time-critical.
    fn write_data(&mut self, now: Instant, packet: &mut Vec<u8>, budget: usize) -> bool {
        let window = self.cc.window();
        let mut wrote_any = false;
        let mut wrote_time_critical = false;
        let after = self.round_robin_after;
        // Reused across packets: this runs for every packet sent.
        let mut flow_ids = std::mem::take(&mut self.flow_order);
        flow_ids.clear();
        flow_ids.extend(
            self.send_flows
                .iter()
                .filter(|(_, f)| !f.queue.is_empty())
                .map(|(&id, f)| (f.priority, id > after, id)),
        );
        // Highest priority first; within a priority, flows after the cursor first.
        flow_ids.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        for &(priority, _, flow_id) in &flow_ids {
            let Some(flow) = self.send_flows.get_mut(&flow_id) else {
                continue;
            };
            let mut prev_seq: Option<u64> = None;
            while let Some(&seq) = flow.queue.front() {
                let Some(frag) = flow.outstanding.get(&seq) else {
                    flow.queue.pop_front();
                    continue;
                };
                let wire = frag.wire_len();
                let window_ok =
                    self.in_flight + wire <= window || (self.in_flight == 0 && !wrote_any);
                // RFC 7016 §3.6.2.5: new data only while the receiver advertises room.
                let receiver_ok = frag.sent_once
                    || wire == 0
                    || flow.in_flight_bytes() + wire as u64 <= flow.peer_window;
                if !window_ok || !receiver_ok {
                    if !receiver_ok && flow.peer_window == 0 {
                        // RFC 7016 §3.6.2.5: probe a closed window.
                        let c = Chunk::BufferProbe { flow_id };
                        if self.rto_deadline.is_none() && c.emit_within(packet, budget) {
                            self.rto_deadline = Some(now + self.erto);
                        }
                    }
                    break;
                }
                let fsn = flow.forward_sequence().min(seq.saturating_sub(1));
                let options = (!flow.options_acknowledged).then_some(DataOptions {
                    metadata: Some(&flow.metadata),
                    return_flow: flow.return_flow,
                    unknown_mandatory: false,
                });
                let fragment = UserData {
                    fragmentation: if frag.abandoned {
                        Fragmentation::Whole
                    } else {
                        frag.fragmentation
                    },
                    abandon: frag.abandoned,
                    final_fragment: frag.final_fragment,
                    options,
                    data: if frag.abandoned { &[] } else { &frag.data },
                };
                let chunk = if prev_seq == Some(seq.wrapping_sub(1)) && options.is_none() {
                    Chunk::NextUserData { fragment }
                } else {
                    Chunk::UserData {
                        flow_id,
                        sequence: seq,
                        fsn_offset: seq - fsn,
                        fragment,
                    }
                };
                if !chunk.emit_within(packet, budget) {
                    break;
                }
                wrote_any = true;
                wrote_time_critical |= priority.is_time_critical() && !frag.abandoned;
                self.round_robin_after = flow_id;
                prev_seq = Some(seq);
                flow.queue.pop_front();
                let tsn = self.next_tsn;
                self.next_tsn += 1;
                self.in_flight += flow.mark_sent(seq, tsn);
                self.unacked_since.get_or_insert(now);
            }
        }
        if wrote_any && self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.erto);
        }
        // Flows that completed (all acked after close, or rejected) are forgotten.
        self.send_flows.retain(|_, f| {
            !(f.is_complete() || (f.exception.is_some() && f.outstanding.is_empty()))
        });
        self.flow_order = flow_ids;
        wrote_time_critical
    }
}

fn within_window(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|t| now.saturating_since(t) < TIME_CRITICAL_WINDOW)
}
