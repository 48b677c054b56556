//! A NetConnection/NetStream client over RTMFP, sans-IO: connect to an app, create
//! streams, publish or play them. The `publish`, `play` and `demo` subcommands and the
//! tests drive it; it is also what a Flash-compatible client looks like on the wire.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::amf::Value;
use super::command::{status_code, Command};
use super::flow_sync::{FlowSyncReceiver, FlowSyncSender};
use super::tc::{kind, FlowMetadata, TcMessage};
use crate::media::{MediaKind, MediaMessage};
use crate::proto::endpoint::{EndpointConfig, Event, SessionId, Transmit};
use crate::proto::epd::EndpointDiscriminator;
use crate::proto::flow_send::Priority;
use crate::proto::handshake::HandshakeFailure;
use crate::proto::session::{CloseReason, SessionEvent};
use crate::proto::{Endpoint, Instant};

/// Media a publisher sends is abandoned after this long unacknowledged.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `NetConnection.Connect.Success`.
    Connected,
    /// The handshake failed, or the server refused the connect.
    Failed {
        code: String,
        description: String,
    },
    StreamCreated {
        stream_id: u32,
    },
    /// An `onStatus` for a stream (or the connection, stream 0).
    Status {
        stream_id: u32,
        code: String,
        description: String,
    },
    Media {
        stream_id: u32,
        message: MediaMessage,
    },
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Commands,
    Audio,
    Video,
    Data,
}

pub struct FlashClient {
    pub endpoint: Endpoint,
    session: Option<SessionId>,
    tc_url: String,
    app: String,
    connect_args: Vec<Value>,
    /// Our flows, by stream id and lane.
    flows: HashMap<(u32, Lane), u64>,
    /// The server's flows to us: flow id -> stream id.
    inbound: HashMap<u64, u32>,
    /// The server's NetConnection flow (its first flow for stream 0): our NetStream
    /// flows are in return association with it (RFC 7425; rtmfp-cpp's tcserver takes
    /// flows without it for new clients).
    server_control_flow: Option<u64>,
    next_transaction: f64,
    create_stream_calls: Vec<f64>,
    connect_sent: bool,
    events: VecDeque<ClientEvent>,
    flow_sync: FlowSyncReceiver,
    sync_ids: FlowSyncSender,
    /// Send audio, video and data on one flow, keeping their order (see
    /// [`FlashClient::keep_media_order`]).
    one_media_flow: bool,
}

impl FlashClient {
    /// Starts the RTMFP handshake toward `server` for `tc_url` (rtmfp://host/app); the
    /// `connect` command follows when the session opens. `connect_args` go after the
    /// command object (a token, for servers that want one).
    pub fn connect(
        now: Instant,
        server: SocketAddr,
        tc_url: &str,
        app: &str,
        connect_args: Vec<Value>,
        config: EndpointConfig,
        seed: [u8; 32],
    ) -> Self {
        let mut endpoint = Endpoint::new(config, seed);
        let session = endpoint.connect(now, server, EndpointDiscriminator::for_uri(tc_url));
        FlashClient {
            endpoint,
            session: Some(session),
            tc_url: tc_url.to_owned(),
            app: app.to_owned(),
            connect_args,
            flows: HashMap::new(),
            inbound: HashMap::new(),
            server_control_flow: None,
            next_transaction: 2.0,
            create_stream_calls: Vec::new(),
            connect_sent: false,
            events: VecDeque::new(),
            flow_sync: FlowSyncReceiver::default(),
            sync_ids: FlowSyncSender::default(),
            one_media_flow: false,
        }
    }

    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.endpoint.handle(now, from, datagram);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.endpoint.poll_transmit(now)
    }

    /// Asks for a NetStream; `StreamCreated` reports its id.
    pub fn create_stream(&mut self) {
        let tx = self.transaction();
        self.create_stream_calls.push(tx);
        self.call(0, &Command::new("createStream", tx, Value::Null, vec![]));
    }

    pub fn publish(&mut self, stream_id: u32, name: &str) {
        let cmd = Command::new(
            "publish",
            0.0,
            Value::Null,
            vec![name.into(), "live".into()],
        );
        self.call(stream_id, &cmd);
    }

    pub fn play(&mut self, stream_id: u32, name: &str) {
        let cmd = Command::new(
            "play",
            0.0,
            Value::Null,
            vec![name.into(), (-1000.0).into()],
        );
        self.call(stream_id, &cmd);
    }

    /// Ends a publication or playback on `stream_id` and deletes the stream. The media
    /// flows are synced with the command flow first (RFC 7425 §5.2), so `closeStream`
    /// cannot overtake the last frames.
    pub fn delete_stream(&mut self, stream_id: u32) {
        let media: Vec<(Lane, u64)> = self
            .flows
            .iter()
            .filter(|((sid, lane), _)| *sid == stream_id && *lane != Lane::Commands)
            .map(|((_, lane), f)| (*lane, *f))
            .collect();
        if !media.is_empty() {
            // The barrier spans the media flows, the stream's command flow (closeStream)
            // and the connection's (deleteStream).
            let sync = self.sync_ids.next(media.len() as u32 + 2);
            if let Some(s) = self.session.and_then(|s| self.endpoint.session_mut(s)) {
                for &(lane, f) in &media {
                    s.send(f, &sync, None);
                    s.close_flow(f);
                    self.flows.remove(&(stream_id, lane));
                }
            }
            self.send_on(stream_id, Lane::Commands, &sync, None);
            self.send_on(0, Lane::Commands, &sync, None);
        }
        self.call(
            stream_id,
            &Command::new("closeStream", 0.0, Value::Null, vec![]),
        );
        let cmd = Command::new(
            "deleteStream",
            0.0,
            Value::Null,
            vec![f64::from(stream_id).into()],
        );
        self.call(0, &cmd);
    }

    /// By default audio, video and data go on flows of their own, so a lost video
    /// fragment never holds up audio. A publisher sending faster than real time (a file
    /// upload) should keep them in one flow instead: separate flows at different
    /// priorities would deliver all the audio before the video.
    pub fn keep_media_order(&mut self, one_flow: bool) {
        self.one_media_flow = one_flow;
    }

    /// Sends one media message of a stream we publish. Returns false if the session is
    /// gone.
    pub fn send_media(&mut self, now: Instant, stream_id: u32, message: &MediaMessage) -> bool {
        let (lane, kind, deadline) = match message.kind {
            MediaKind::Audio => (Lane::Audio, kind::AUDIO, Some(now + PUBLISH_DEADLINE)),
            MediaKind::Video => (Lane::Video, kind::VIDEO, Some(now + PUBLISH_DEADLINE)),
            MediaKind::Data => (Lane::Data, kind::DATA_AMF0, None),
        };
        let lane = if self.one_media_flow {
            Lane::Video
        } else {
            lane
        };
        let bytes = TcMessage {
            kind,
            timestamp: message.timestamp,
            payload: &message.payload,
        }
        .to_vec();
        self.send_on(stream_id, lane, &bytes, deadline)
    }

    /// Bytes queued but not yet acknowledged by the server: a publisher reading a file
    /// faster than real time waits while this is large.
    pub fn unacknowledged_bytes(&self) -> u64 {
        self.session
            .and_then(|s| self.endpoint.session(s))
            .map_or(0, |s| s.unacknowledged_bytes())
    }

    pub fn close(&mut self, now: Instant) {
        if let Some(s) = self.session.and_then(|s| self.endpoint.session_mut(s)) {
            s.close(now);
        }
    }

    fn transaction(&mut self) -> f64 {
        let tx = self.next_transaction;
        self.next_transaction += 1.0;
        tx
    }

    fn call(&mut self, stream_id: u32, cmd: &Command) {
        let payload = cmd.encode();
        let bytes = TcMessage {
            kind: kind::COMMAND_AMF0,
            timestamp: 0,
            payload: &payload,
        }
        .to_vec();
        self.send_on(stream_id, Lane::Commands, &bytes, None);
    }

    fn send_on(
        &mut self,
        stream_id: u32,
        lane: Lane,
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> bool {
        let Some(s) = self.session.and_then(|s| self.endpoint.session_mut(s)) else {
            return false;
        };
        let return_flow = match stream_id {
            0 => None,
            _ => self.server_control_flow,
        };
        let flow = *self.flows.entry((stream_id, lane)).or_insert_with(|| {
            let f = s.open_flow(FlowMetadata::net_stream(stream_id).encode(), return_flow);
            s.set_priority(
                f,
                match lane {
                    Lane::Commands => Priority::HIGHEST,
                    Lane::Audio => Priority::IMMEDIATE,
                    Lane::Video => Priority::TIME_CRITICAL,
                    Lane::Data => Priority::ROUTINE,
                },
            );
            f
        });
        s.send(flow, bytes, deadline)
    }

    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::SessionOpened { session, .. }
                    if Some(session) == self.session && !self.connect_sent =>
                {
                    self.connect_sent = true;
                    self.send_connect();
                }
                Event::HandshakeFailed { session, failure } if Some(session) == self.session => {
                    self.session = None;
                    self.events.push_back(ClientEvent::Failed {
                        code: handshake_code(&failure).into(),
                        description: failure.to_string(),
                    });
                }
                Event::Session { session, event } if Some(session) == self.session => {
                    self.on_session_event(now, event)
                }
                _ => {}
            }
        }
    }

    fn send_connect(&mut self) {
        let object = Value::object([
            ("app", Value::from(self.app.as_str())),
            ("flashVer", "rtmfp-edge/0.1".into()),
            ("tcUrl", self.tc_url.as_str().into()),
            ("fpad", false.into()),
            ("capabilities", 235.0.into()),
            ("audioCodecs", 3575.0.into()),
            ("videoCodecs", 252.0.into()),
            ("videoFunction", 1.0.into()),
            ("objectEncoding", 0.0.into()),
        ]);
        let cmd = Command::new(
            "connect",
            1.0,
            object,
            std::mem::take(&mut self.connect_args),
        );
        self.call(0, &cmd);
    }

    fn on_session_event(&mut self, _now: Instant, event: SessionEvent) {
        match event {
            SessionEvent::FlowOpened {
                flow_id, metadata, ..
            } => {
                if let Ok(m) = FlowMetadata::parse(&metadata) {
                    self.inbound.insert(flow_id, m.stream_id);
                    if m.stream_id == 0 && self.server_control_flow.is_none() {
                        self.server_control_flow = Some(flow_id);
                    }
                }
            }
            SessionEvent::Message { flow_id, data } => {
                let mut ready = Vec::new();
                self.flow_sync.receive(flow_id, data, &mut ready);
                self.deliver(ready);
            }
            SessionEvent::FlowFinished { flow_id } => {
                self.inbound.remove(&flow_id);
            }
            SessionEvent::Closed(reason) => {
                self.session = None;
                self.events.push_back(ClientEvent::Closed(reason));
            }
            _ => {}
        }
    }

    fn deliver(&mut self, ready: Vec<(u64, Vec<u8>)>) {
        for (flow_id, data) in ready {
            let Some(&stream_id) = self.inbound.get(&flow_id) else {
                continue;
            };
            let Ok(m) = TcMessage::parse(&data) else {
                continue;
            };
            let (kind, timestamp) = (m.kind, m.timestamp);
            let payload = Bytes::from(data).slice(5..);
            self.on_message(stream_id, kind, timestamp, payload);
        }
    }

    fn on_message(&mut self, stream_id: u32, kind: u8, timestamp: u32, payload: Bytes) {
        let media = |k| ClientEvent::Media {
            stream_id,
            message: MediaMessage::new(k, timestamp, payload.clone()),
        };
        match kind {
            kind::AUDIO => self.events.push_back(media(MediaKind::Audio)),
            kind::VIDEO => self.events.push_back(media(MediaKind::Video)),
            kind::DATA_AMF0 => self.events.push_back(media(MediaKind::Data)),
            kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => {
                let body = if kind == kind::COMMAND_AMF3 {
                    payload.slice(1.min(payload.len())..)
                } else {
                    payload.clone()
                };
                if let Ok(cmd) = Command::parse(&body) {
                    self.on_command(stream_id, cmd);
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) {
        let code = status_code(&cmd).unwrap_or_default().to_owned();
        let description = cmd
            .arguments
            .iter()
            .find_map(|v| v.get("description").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == 1.0 => self.events.push_back(ClientEvent::Connected),
            "_error" if cmd.transaction_id == 1.0 => self
                .events
                .push_back(ClientEvent::Failed { code, description }),
            "_result" if self.create_stream_calls.contains(&cmd.transaction_id) => {
                self.create_stream_calls
                    .retain(|t| *t != cmd.transaction_id);
                if let Some(id) = cmd.argument(0).and_then(Value::as_f64) {
                    self.events.push_back(ClientEvent::StreamCreated {
                        stream_id: id as u32,
                    });
                }
            }
            "onStatus" => self.events.push_back(ClientEvent::Status {
                stream_id,
                code,
                description,
            }),
            _ => {}
        }
    }
}

fn handshake_code(failure: &HandshakeFailure) -> &'static str {
    match failure {
        HandshakeFailure::NoAnswer(_) => "RTMFP.Handshake.NoAnswer",
        _ => "RTMFP.Handshake.Failed",
    }
}
