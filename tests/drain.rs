//! SIGTERM drains the server: clients are told `NetConnection.Connect.AppShutdown`, their
//! sessions close cleanly, new sessions are refused meanwhile, and `serve` exits with
//! status 0 once its sessions are gone (or after its drain timeout).

#[path = "support/server.rs"]
mod server;

use std::process::{Command, Stdio};
use std::time::Duration;

use server::{Server, BIN};

#[test]
fn sigterm_tells_players_closes_their_sessions_and_exits_cleanly() {
    let mut server = Server::start(&["--rtmp", "off"]);
    // A player waiting for a stream nobody publishes yet.
    let player = Command::new(BIN)
        .args([
            "play",
            &server.rtmfp_url("live/cam"),
            "--output",
            "/dev/null",
        ])
        .args(["--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for(|l| l.contains("Playing {"), Duration::from_secs(15));
    let (status, rest) = server.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "serve exited with {status}; log:\n{}",
        server.log.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("drained")),
        "serve said it drained: {rest:?}"
    );
    let out = player.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NetConnection.Connect.AppShutdown"),
        "the player was told the server is shutting down: {err}"
    );
    assert!(out.status.success(), "the player ended cleanly: {err}");
}

/// While draining, the server answers no IHello for itself (nobody gets a new session)
/// and counts each as `draining`.
#[test]
fn a_draining_endpoint_answers_no_ihello_and_counts_it() {
    use rtmfp_edge::proto::endpoint::EndpointConfig;
    use rtmfp_edge::proto::epd::EndpointDiscriminator;
    use rtmfp_edge::proto::{DropReason, Endpoint, Instant};
    let server_addr = "10.0.0.1:1935".parse().unwrap();
    let client_addr = "10.0.0.2:5000".parse().unwrap();
    let answers = |accepting: bool| {
        let now = Instant::ZERO;
        let mut server = Endpoint::new(EndpointConfig::server(), [1; 32]);
        if !accepting {
            server.stop_accepting();
        }
        let mut client = Endpoint::new(EndpointConfig::default(), [2; 32]);
        client.connect(
            now,
            server_addr,
            EndpointDiscriminator::for_uri("rtmfp://10.0.0.1/live"),
        );
        let ihello = client.poll_transmit(now).expect("an IHello");
        server.handle(now, client_addr, &ihello.payload);
        let answered = server.poll_transmit(now).is_some();
        let counted = server
            .drops()
            .get(&DropReason::Draining)
            .copied()
            .unwrap_or(0);
        (answered, counted)
    };
    assert_eq!(answers(true), (true, 0));
    assert_eq!(answers(false), (false, 1));
}

/// A drain owes nothing to a session its client already closed: it lingers only to answer
/// a retransmitted close, and the drain ends without waiting that out (it used to wait
/// the whole drain timeout, 5 s, after any client had closed its session).
#[test]
fn a_drain_does_not_wait_for_sessions_their_clients_closed() {
    use rtmfp_edge::flash::client::{ClientEvent, FlashClient};
    use rtmfp_edge::proto::endpoint::EndpointConfig;
    use rtmfp_edge::proto::Instant;
    use rtmfp_edge::server::config::ServerConfig;
    use rtmfp_edge::server::edge::EdgeServer;
    use std::sync::Arc;

    let server_addr: std::net::SocketAddr = "10.0.0.1:1935".parse().unwrap();
    let client_addr: std::net::SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let mut now = Instant::ZERO;
    let mut server = EdgeServer::new(
        Arc::new(ServerConfig::embedded_default()),
        EndpointConfig::server(),
        [7; 32],
    );
    let mut client = FlashClient::connect(
        now,
        server_addr,
        "rtmfp://10.0.0.1/live",
        "live",
        vec![],
        EndpointConfig::default(),
        [8; 32],
    );
    // Moves datagrams both ways for `ms` milliseconds of simulated time; true once the
    // client saw its connect accepted.
    let exchange = |server: &mut EdgeServer, client: &mut FlashClient, now: &mut Instant, ms| {
        let mut connected = false;
        for _ in 0..ms {
            while let Some(t) = client.poll_transmit(*now) {
                server.handle_datagram(*now, client_addr, &t.payload);
            }
            while let Some(t) = server.poll_transmit(*now) {
                client.handle_datagram(*now, server_addr, &t.payload);
            }
            if server.poll_timeout().is_some_and(|t| t <= *now) {
                server.handle_timeout(*now);
            }
            if client.poll_timeout().is_some_and(|t| t <= *now) {
                client.handle_timeout(*now);
            }
            while let Some(e) = client.poll_event() {
                connected |= matches!(e, ClientEvent::Connected);
            }
            *now = *now + std::time::Duration::from_millis(1);
        }
        connected
    };
    assert!(
        exchange(&mut server, &mut client, &mut now, 500),
        "the client connected"
    );
    assert_eq!(server.endpoint.session_count(), 1);
    client.close(now);
    exchange(&mut server, &mut client, &mut now, 200);
    assert_eq!(
        server.endpoint.session_count(),
        1,
        "the server still holds the session, lingering after the client's close"
    );
    server.begin_drain(now);
    assert!(
        server.drained(),
        "nothing is owed to a session its client closed: the drain is over"
    );
}
