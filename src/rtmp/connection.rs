//! One RTMP connection, either end, without I/O: feed it the bytes read from the socket,
//! take the events and the bytes to write.

use std::collections::VecDeque;

use rand::RngCore;

use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits};
use super::handshake::{
    ClientHandshake, ClientHandshakeMode, HandshakeKind, ServerHandshake, ServerHandshakeMode,
};
use super::message::{
    split_aggregate, BandwidthLimit, MessageType, ProtocolControl, RtmpMessage, UserControlEvent,
    CONTROL_CHUNK_STREAM,
};
use super::RtmpError;

/// Chunk streams the connection picks by message type when the caller does not. The values
/// follow common server practice; the peer does not care which ids are used.
pub mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const DATA: u32 = 5;
    pub const VIDEO: u32 = 6;
    pub const OTHER: u32 = 8;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionConfig {
    /// Used when this end is the server.
    pub server_handshake: ServerHandshakeMode,
    /// Used when this end is the client.
    pub client_handshake: ClientHandshakeMode,
    pub limits: ChunkLimits,
}

/// What the connection reports, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake is complete; messages may flow both ways.
    HandshakeDone(HandshakeKind),
    /// A complete message other than protocol control (aggregates arrive already split).
    Message(RtmpMessage),
    /// A user control event from the peer. Ping requests have already been answered.
    UserControl(UserControlEvent),
    /// A protocol control message from the peer, after it has been acted on.
    Control(ProtocolControl),
}

enum Handshake {
    Server(ServerHandshake),
    Client(ClientHandshake),
}

impl Handshake {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RtmpError> {
        match self {
            Handshake::Server(h) => h.feed(input, out),
            Handshake::Client(h) => h.feed(input, out),
        }
    }

    fn done(&self) -> Option<HandshakeKind> {
        match self {
            Handshake::Server(h) if h.is_done() => h.kind(),
            Handshake::Client(h) if h.is_done() => h.kind(),
            _ => None,
        }
    }
}

pub struct RtmpConnection {
    handshake: Handshake,
    handshake_done: bool,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    events: VecDeque<Event>,
    output: Vec<u8>,
    /// Chunks produced before the handshake finished; written right after it.
    pending: Vec<u8>,
    failed: Option<RtmpError>,
    bytes_received: u64,
    /// Peer's Window Acknowledgement Size: acknowledge every this many bytes.
    peer_ack_window: Option<u32>,
    last_ack_at: u64,
    /// The window we last announced with Window Acknowledgement Size, and the limit type
    /// of the last Set Peer Bandwidth we obeyed.
    our_ack_window: Option<u32>,
    peer_bandwidth: Option<(u32, BandwidthLimit)>,
}

impl RtmpConnection {
    pub fn server<R: RngCore + ?Sized>(config: ConnectionConfig, rng: &mut R) -> Self {
        let hs = ServerHandshake::new(config.server_handshake, rng);
        Self::with_handshake(Handshake::Server(hs), config.limits, Vec::new())
    }

    /// A client connection; C0+C1 are already waiting in the output.
    pub fn client<R: RngCore + ?Sized>(config: ConnectionConfig, rng: &mut R) -> Self {
        let mut output = Vec::new();
        let hs = ClientHandshake::new(config.client_handshake, rng, &mut output);
        Self::with_handshake(Handshake::Client(hs), config.limits, output)
    }

    fn with_handshake(handshake: Handshake, limits: ChunkLimits, output: Vec<u8>) -> Self {
        RtmpConnection {
            handshake,
            handshake_done: false,
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            events: VecDeque::new(),
            output,
            pending: Vec::new(),
            failed: None,
            bytes_received: 0,
            peer_ack_window: None,
            last_ack_at: 0,
            our_ack_window: None,
            peer_bandwidth: None,
        }
    }

    pub fn is_handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// All bytes fed so far, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// The chunk size the peer sends with.
    pub fn peer_chunk_size(&self) -> u32 {
        self.decoder.chunk_size()
    }

    pub fn chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    /// Takes in bytes read from the peer. An error is final: later calls repeat it.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        if let Some(e) = &self.failed {
            return Err(RtmpError::Failed(Box::new(e.clone())));
        }
        let result = self.feed_inner(data);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn feed_inner(&mut self, mut data: &[u8]) -> Result<(), RtmpError> {
        self.bytes_received += data.len() as u64;
        if !self.handshake_done {
            let used = self.handshake.feed(data, &mut self.output)?;
            data = &data[used..];
            let Some(kind) = self.handshake.done() else {
                return Ok(());
            };
            self.handshake_done = true;
            self.events.push_back(Event::HandshakeDone(kind));
            self.output.append(&mut self.pending);
        }
        self.decoder.feed(data)?;
        while let Some(msg) = self.decoder.poll_message() {
            self.handle(msg)?;
        }
        if let Some(window) = self.peer_ack_window {
            if window > 0 && self.bytes_received - self.last_ack_at >= window as u64 {
                self.last_ack_at = self.bytes_received;
                // RTMP spec §5.4.3: the sequence number is the byte count so far, mod 2^32.
                let ack = ProtocolControl::Acknowledgement {
                    sequence: self.bytes_received as u32,
                };
                self.send_control(&ack)?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, msg: RtmpMessage) -> Result<(), RtmpError> {
        if let Some(control) = ProtocolControl::from_message(&msg)? {
            match control {
                ProtocolControl::WindowAckSize(w) => self.peer_ack_window = Some(w),
                ProtocolControl::SetPeerBandwidth { window, limit } => {
                    self.obey_peer_bandwidth(window, limit)?
                }
                // Set Chunk Size and Abort were applied by the decoder; acknowledgements
                // only inform.
                _ => {}
            }
            self.events.push_back(Event::Control(control));
            return Ok(());
        }
        match msg.type_id {
            MessageType::UserControl => {
                let ev = UserControlEvent::decode(&msg.payload)?;
                if let UserControlEvent::PingRequest(t) = ev {
                    self.send_user_control(&UserControlEvent::PingResponse(t))?;
                }
                self.events.push_back(Event::UserControl(ev));
            }
            MessageType::Aggregate => {
                for sub in split_aggregate(&msg)? {
                    self.events.push_back(Event::Message(sub));
                }
            }
            _ => self.events.push_back(Event::Message(msg)),
        }
        Ok(())
    }

    /// RTMP spec §5.4.5: adopt the window per the limit type, and announce it with a
    /// Window Acknowledgement Size if it differs from the last one we sent.
    fn obey_peer_bandwidth(&mut self, window: u32, limit: BandwidthLimit) -> Result<(), RtmpError> {
        let adopted = match (limit, self.peer_bandwidth) {
            (BandwidthLimit::Hard, _) | (_, None) => Some((window, limit)),
            (BandwidthLimit::Soft, Some((current, _))) => {
                Some((window.min(current), BandwidthLimit::Soft))
            }
            (BandwidthLimit::Dynamic, Some((_, BandwidthLimit::Hard))) => {
                Some((window, BandwidthLimit::Hard))
            }
            (BandwidthLimit::Dynamic, Some(_)) => None,
        };
        if let Some((w, l)) = adopted {
            self.peer_bandwidth = Some((w, l));
            if self.our_ack_window != Some(w) {
                self.set_window_ack_size(w)?;
            }
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to write to the peer; empties the buffer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Appends the bytes to write to `buf` instead of handing over a new vector.
    pub fn write_output_into(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.output);
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Queues `msg` on a chunk stream chosen by its type.
    pub fn send_message(&mut self, msg: &RtmpMessage) -> Result<(), RtmpError> {
        let id = match msg.type_id {
            t if t.is_protocol_control() || t == MessageType::UserControl => csid::CONTROL,
            MessageType::CommandAmf0 | MessageType::CommandAmf3 => csid::COMMAND,
            MessageType::Audio => csid::AUDIO,
            MessageType::Video => csid::VIDEO,
            MessageType::DataAmf0 | MessageType::DataAmf3 => csid::DATA,
            _ => csid::OTHER,
        };
        self.send_message_on(id, msg)
    }

    /// Queues `msg` on chunk stream `chunk_stream_id` (2..=65599).
    pub fn send_message_on(
        &mut self,
        chunk_stream_id: u32,
        msg: &RtmpMessage,
    ) -> Result<(), RtmpError> {
        if msg.type_id == MessageType::SetChunkSize {
            // Keep our encoder in step with what the peer will expect.
            let Some(ProtocolControl::SetChunkSize(size)) = ProtocolControl::from_message(msg)?
            else {
                unreachable!("type checked above")
            };
            return self.set_chunk_size_on(chunk_stream_id, size);
        }
        let out = if self.handshake_done {
            &mut self.output
        } else {
            &mut self.pending
        };
        self.encoder.encode(chunk_stream_id, msg, out)
    }

    fn send_control(&mut self, control: &ProtocolControl) -> Result<(), RtmpError> {
        self.send_message_on(CONTROL_CHUNK_STREAM, &control.to_message())
    }

    /// Announces a new outgoing chunk size and switches to it (RTMP spec §5.4.1).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        self.set_chunk_size_on(CONTROL_CHUNK_STREAM, size)
    }

    fn set_chunk_size_on(&mut self, chunk_stream_id: u32, size: u32) -> Result<(), RtmpError> {
        super::message::validate_chunk_size(size)?;
        let msg = ProtocolControl::SetChunkSize(size).to_message();
        let out = if self.handshake_done {
            &mut self.output
        } else {
            &mut self.pending
        };
        self.encoder.encode(chunk_stream_id, &msg, out)?;
        self.encoder.set_chunk_size(size)
    }

    /// Asks the peer to acknowledge every `size` bytes (RTMP spec §5.4.4).
    pub fn set_window_ack_size(&mut self, size: u32) -> Result<(), RtmpError> {
        self.our_ack_window = Some(size);
        self.send_control(&ProtocolControl::WindowAckSize(size))
    }

    /// Limits the peer's output bandwidth (RTMP spec §5.4.5).
    pub fn set_peer_bandwidth(
        &mut self,
        window: u32,
        limit: BandwidthLimit,
    ) -> Result<(), RtmpError> {
        self.send_control(&ProtocolControl::SetPeerBandwidth { window, limit })
    }

    /// Aborts a message partly sent on `chunk_stream_id`. Only meaningful to a caller that
    /// writes output in pieces; our own encoder always writes whole messages.
    pub fn send_abort(&mut self, chunk_stream_id: u32) -> Result<(), RtmpError> {
        self.encoder.reset_chunk_stream(chunk_stream_id);
        self.send_control(&ProtocolControl::Abort { chunk_stream_id })
    }

    pub fn send_user_control(&mut self, event: &UserControlEvent) -> Result<(), RtmpError> {
        self.send_message_on(CONTROL_CHUNK_STREAM, &event.to_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn pair(client_mode: ClientHandshakeMode) -> (RtmpConnection, RtmpConnection) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let config = ConnectionConfig {
            client_handshake: client_mode,
            ..Default::default()
        };
        (
            RtmpConnection::client(config, &mut rng),
            RtmpConnection::server(config, &mut rng),
        )
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(a: &mut RtmpConnection, b: &mut RtmpConnection) {
        loop {
            let ab = a.take_output();
            let ba = b.take_output();
            if ab.is_empty() && ba.is_empty() {
                break;
            }
            b.feed(&ab).unwrap();
            a.feed(&ba).unwrap();
        }
    }

    fn events(c: &mut RtmpConnection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn client_and_server_exchange_messages_after_either_handshake() {
        for mode in [ClientHandshakeMode::Simple, ClientHandshakeMode::Digest] {
            let (mut client, mut server) = pair(mode);
            let cmd = RtmpMessage::new(MessageType::CommandAmf0, 0, 0, vec![2, 0, 1, b'x']);
            // Queued before the handshake; goes out right after it.
            client.send_message(&cmd).unwrap();
            server.set_chunk_size(4096).unwrap();
            pump(&mut client, &mut server);
            let got = events(&mut server);
            assert!(matches!(got[0], Event::HandshakeDone(_)));
            assert_eq!(got[1], Event::Message(cmd));
            let got = events(&mut client);
            assert!(matches!(got[0], Event::HandshakeDone(_)));
            assert_eq!(got[1], Event::Control(ProtocolControl::SetChunkSize(4096)));
            assert_eq!(client.peer_chunk_size(), 4096);
        }
    }

    #[test]
    fn acknowledges_each_window_and_answers_pings() {
        let (mut client, mut server) = pair(ClientHandshakeMode::Simple);
        pump(&mut client, &mut server);
        server.set_window_ack_size(1000).unwrap();
        server
            .send_user_control(&UserControlEvent::PingRequest(42))
            .unwrap();
        pump(&mut client, &mut server);
        for i in 0..3 {
            let video = RtmpMessage::new(MessageType::Video, i * 40, 1, vec![0x17; 600]);
            client.send_message(&video).unwrap();
        }
        pump(&mut client, &mut server);
        let got = events(&mut server);
        assert!(got.contains(&Event::UserControl(UserControlEvent::PingResponse(42))));
        let acks: Vec<_> = events(&mut server)
            .into_iter()
            .chain(got)
            .filter(|e| matches!(e, Event::Control(ProtocolControl::Acknowledgement { .. })))
            .collect();
        assert!(!acks.is_empty());
    }

    #[test]
    fn set_peer_bandwidth_is_answered_with_window_ack_size() {
        let (mut client, mut server) = pair(ClientHandshakeMode::Simple);
        pump(&mut client, &mut server);
        server
            .set_peer_bandwidth(2_500_000, BandwidthLimit::Dynamic)
            .unwrap();
        pump(&mut client, &mut server);
        assert!(events(&mut server)
            .contains(&Event::Control(ProtocolControl::WindowAckSize(2_500_000))));
        // Dynamic after dynamic is ignored; no new announcement.
        server
            .set_peer_bandwidth(1_000_000, BandwidthLimit::Dynamic)
            .unwrap();
        pump(&mut client, &mut server);
        assert!(!events(&mut server)
            .iter()
            .any(|e| matches!(e, Event::Control(ProtocolControl::WindowAckSize(_)))));
    }

    #[test]
    fn aggregates_arrive_split() {
        let (mut client, mut server) = pair(ClientHandshakeMode::Simple);
        let subs = [
            RtmpMessage::new(MessageType::Audio, 0, 0, vec![0xaf, 1]),
            RtmpMessage::new(MessageType::Video, 40, 0, vec![0x27, 1]),
        ];
        client
            .send_message(&super::super::message::build_aggregate(1000, 1, &subs))
            .unwrap();
        pump(&mut client, &mut server);
        let msgs: Vec<_> = events(&mut server)
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some((m.type_id, m.timestamp, m.stream_id)),
                _ => None,
            })
            .collect();
        assert_eq!(
            msgs,
            [(MessageType::Audio, 1000, 1), (MessageType::Video, 1040, 1)]
        );
    }

    #[test]
    fn errors_are_final() {
        let (_, mut server) = pair(ClientHandshakeMode::Simple);
        assert!(server.feed(&[9]).is_err());
        assert!(matches!(server.feed(&[3]), Err(RtmpError::Failed(_))));
    }
}
