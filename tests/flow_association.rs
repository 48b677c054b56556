//! RTMFP flow association in the Flash profile, as rtmfp-cpp (the RFC 7425 author's
//! implementation) requires it: a client's NetStream flows are in return association with
//! the server's NetConnection flow, and every server flow toward a client (NetConnection
//! and NetStream alike) is in return association with the client's NetConnection flow.
//! rtmfp-cpp's client ignores server flows associated anywhere else, and its server takes
//! an unassociated flow for a new client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtmfp_edge::flash::amf::Value;
use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
use rtmfp_edge::flash::command::Command;
use rtmfp_edge::flash::tc::{kind, FlowMetadata, TcMessage};
use rtmfp_edge::proto::endpoint::{EndpointConfig, Event, SessionId};
use rtmfp_edge::proto::epd::EndpointDiscriminator;
use rtmfp_edge::proto::session::SessionEvent;
use rtmfp_edge::proto::{Endpoint, Instant};
use rtmfp_edge::server::config::ServerConfig;
use rtmfp_edge::server::edge::EdgeServer;

const SERVER: &str = "127.0.0.1:1935";
const CLIENT: &str = "127.0.0.1:50000";
const TC_URL: &str = "rtmfp://127.0.0.1/live";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn command_message(cmd: &Command) -> Vec<u8> {
    TcMessage {
        kind: kind::COMMAND_AMF0,
        timestamp: 0,
        payload: &cmd.encode(),
    }
    .to_vec()
}

/// A command a flow carried, if it is one.
fn command_in(data: &[u8]) -> Option<Command> {
    let m = TcMessage::parse(data).ok()?;
    if m.kind != kind::COMMAND_AMF0 {
        return None;
    }
    Command::parse(m.payload).ok()
}

/// A flow one side saw opening: its stream id and the flow it answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opened {
    stream_id: u32,
    return_flow: Option<u64>,
}

/// A bare RTMFP client speaking just enough of the Flash profile: connect, createStream,
/// play. Records the server's flows as they open.
struct BareClient {
    endpoint: Endpoint,
    session: SessionId,
    nc_flow: Option<u64>,
    server_flows: HashMap<u64, Opened>,
    results: Vec<Command>,
}

impl BareClient {
    fn pump(&mut self) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::SessionOpened { .. } => {
                    let s = self.endpoint.session_mut(self.session).unwrap();
                    let f = s.open_flow(FlowMetadata::net_connection().encode(), None);
                    let object =
                        Value::object([("app", Value::from("live")), ("tcUrl", TC_URL.into())]);
                    s.send(
                        f,
                        &command_message(&Command::new("connect", 1.0, object, vec![])),
                        None,
                    );
                    self.nc_flow = Some(f);
                }
                Event::Session { event, .. } => match event {
                    SessionEvent::FlowOpened {
                        flow_id,
                        metadata,
                        return_flow,
                    } => {
                        let stream_id = FlowMetadata::parse(&metadata).unwrap().stream_id;
                        self.server_flows.insert(
                            flow_id,
                            Opened {
                                stream_id,
                                return_flow,
                            },
                        );
                    }
                    SessionEvent::Message { data, .. } => {
                        if let Some(c) = command_in(&data).filter(|c| c.name == "_result") {
                            self.results.push(c);
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// Runs `a` and `b` against each other on a virtual clock until `done` or a deadline.
fn exchange(now: &mut Instant, steps: usize, mut step: impl FnMut(Instant) -> bool) {
    for _ in 0..steps {
        if step(*now) {
            return;
        }
        *now = *now + Duration::from_millis(5);
    }
    panic!("the exchange did not finish");
}

#[test]
fn server_flows_answer_to_the_clients_net_connection_flow() {
    let mut server = EdgeServer::new(
        Arc::new(ServerConfig::embedded_default()),
        EndpointConfig::server(),
        [7; 32],
    );
    let mut endpoint = Endpoint::new(EndpointConfig::default(), [9; 32]);
    let session = endpoint.connect(
        Instant::ZERO,
        addr(SERVER),
        EndpointDiscriminator::for_uri(TC_URL),
    );
    let mut client = BareClient {
        endpoint,
        session,
        nc_flow: None,
        server_flows: HashMap::new(),
        results: Vec::new(),
    };
    let mut now = Instant::ZERO;
    let mut stream_flow = None;
    exchange(&mut now, 2000, |now| {
        while let Some(t) = client.endpoint.poll_transmit(now) {
            server.handle_datagram(now, addr(CLIENT), &t.payload);
        }
        while let Some(t) = server.poll_transmit(now) {
            client.endpoint.handle(now, addr(SERVER), &t.payload);
        }
        client.endpoint.handle_timeout(now);
        server.handle_timeout(now);
        client.pump();
        // connect answered: ask for a stream; stream 1 given: play on it.
        if client.results.len() == 1 && stream_flow.is_none() {
            let s = client.endpoint.session_mut(session).unwrap();
            s.send(
                client.nc_flow.unwrap(),
                &command_message(&Command::new("createStream", 2.0, Value::Null, vec![])),
                None,
            );
            stream_flow = Some(0);
        }
        if client.results.len() == 2 && stream_flow == Some(0) {
            assert_eq!(client.results[1].arguments, [Value::Number(1.0)]);
            let server_nc = client
                .server_flows
                .iter()
                .find(|(_, o)| o.stream_id == 0)
                .map(|(f, _)| *f);
            let s = client.endpoint.session_mut(session).unwrap();
            let f = s.open_flow(FlowMetadata::net_stream(1).encode(), server_nc);
            let play = Command::new("play", 0.0, Value::Null, vec!["x".into()]);
            s.send(f, &command_message(&play), None);
            stream_flow = Some(f);
        }
        client.server_flows.values().any(|o| o.stream_id == 1)
    });
    let nc = client.nc_flow;
    let mut opened: Vec<Opened> = client.server_flows.values().copied().collect();
    opened.sort_by_key(|o| o.stream_id);
    assert_eq!(
        opened,
        [
            Opened {
                stream_id: 0,
                return_flow: nc
            },
            Opened {
                stream_id: 1,
                return_flow: nc
            }
        ],
        "every server flow answers to the client's NetConnection flow {nc:?}, not to its \
         stream flow {stream_flow:?}"
    );
}

#[test]
fn client_stream_flows_answer_to_the_servers_net_connection_flow() {
    // A bare server: answers connect and createStream, records the client's flows.
    let mut server = Endpoint::new(EndpointConfig::server(), [3; 32]);
    let mut client = FlashClient::connect(
        Instant::ZERO,
        addr(SERVER),
        TC_URL,
        "live",
        vec![],
        EndpointConfig::default(),
        [4; 32],
    );
    let mut client_flows: HashMap<u64, Opened> = HashMap::new();
    let mut server_nc: Option<u64> = None;
    let mut published = false;
    let mut now = Instant::ZERO;
    exchange(&mut now, 2000, |now| {
        while let Some(t) = client.poll_transmit(now) {
            server.handle(now, addr(CLIENT), &t.payload);
        }
        while let Some(t) = server.poll_transmit(now) {
            client.handle_datagram(now, addr(SERVER), &t.payload);
        }
        client.handle_timeout(now);
        server.handle_timeout(now);
        while let Some(event) = server.poll_event() {
            let Event::Session { session, event } = event else {
                continue;
            };
            let s = server.session_mut(session).unwrap();
            match event {
                SessionEvent::FlowOpened {
                    flow_id,
                    metadata,
                    return_flow,
                } => {
                    let stream_id = FlowMetadata::parse(&metadata).unwrap().stream_id;
                    client_flows.insert(
                        flow_id,
                        Opened {
                            stream_id,
                            return_flow,
                        },
                    );
                    if stream_id == 0 && server_nc.is_none() {
                        server_nc = Some(
                            s.open_flow(FlowMetadata::net_connection().encode(), Some(flow_id)),
                        );
                    }
                }
                SessionEvent::Message { data, .. } => {
                    let Some(cmd) = command_in(&data) else {
                        continue;
                    };
                    let value = match cmd.name.as_str() {
                        "connect" => {
                            Value::object([("code", Value::from("NetConnection.Connect.Success"))])
                        }
                        "createStream" => Value::Number(1.0),
                        _ => continue,
                    };
                    let result =
                        Command::new("_result", cmd.transaction_id, Value::Null, vec![value]);
                    s.send(server_nc.unwrap(), &command_message(&result), None);
                }
                _ => {}
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Connected => client.create_stream(),
                ClientEvent::StreamCreated { stream_id } => {
                    client.publish(stream_id, "x");
                    published = true;
                }
                _ => {}
            }
        }
        published && client_flows.values().any(|o| o.stream_id == 1)
    });
    let mut opened: Vec<Opened> = client_flows.values().copied().collect();
    opened.sort_by_key(|o| o.stream_id);
    assert_eq!(
        opened,
        [
            Opened {
                stream_id: 0,
                return_flow: None
            },
            Opened {
                stream_id: 1,
                return_flow: server_nc
            }
        ]
    );
}
