//! The `rtmfp-edge` command line: `serve`, `probe`, `demo`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::net::{os_seed, UdpDriver};
use crate::proto::endpoint::{EndpointConfig, Event, SessionId};
use crate::proto::epd::EndpointDiscriminator;
use crate::proto::session::{CloseReason, SessionEvent};
use crate::proto::{DropReason, Endpoint};

#[derive(Parser)]
#[command(name = "rtmfp-edge", version, about = "RTMFP multicast edge server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accept RTMFP sessions (handshakes and keepalive; the Flash profile comes next).
    Serve {
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:1935")]
        listen: SocketAddr,
    },
    /// Open a session with any RTMFP server, print what was negotiated, close it.
    Probe {
        /// rtmfp://HOST[:PORT]/APP
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
    /// Loopback demo: a server and a client in this process over real UDP sockets.
    Demo,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { listen } => serve(listen),
        Command::Probe { url, timeout } => probe(&url, Duration::from_secs(timeout)),
        Command::Demo => demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(listen: SocketAddr) -> Result<()> {
    let endpoint = Endpoint::new(EndpointConfig::server(), os_seed());
    let mut driver =
        UdpDriver::bind(listen, endpoint).with_context(|| format!("binding UDP {listen}"))?;
    println!("rtmfp-edge serving RTMFP on udp://{}", driver.local_addr()?);
    println!("server peer id {}", driver.endpoint.server_peer_id());
    loop {
        driver.run(Duration::from_secs(60), |ep, _, event| {
            log_event(&event);
            if let Event::SessionOpened { session, .. } = event {
                if let Some(s) = ep.session(session) {
                    println!("session {session:08x} {}", describe_info(&s.info));
                }
            }
            true
        })?;
        print_drops(driver.endpoint.drops());
    }
}

fn log_event(event: &Event) {
    match event {
        Event::SessionOpened {
            session,
            peer,
            as_initiator,
        } => {
            println!(
                "session {session:08x} open with {peer} ({})",
                if *as_initiator {
                    "we initiated"
                } else {
                    "accepted"
                }
            )
        }
        Event::Session {
            session,
            event: SessionEvent::Closed(reason),
        } => println!("session {session:08x} closed: {reason:?}"),
        Event::Session {
            session,
            event: SessionEvent::FlowOpened {
                flow_id, metadata, ..
            },
        } => {
            println!(
                "session {session:08x} flow {flow_id} opened ({} bytes of metadata)",
                metadata.len()
            )
        }
        Event::Session {
            session,
            event: SessionEvent::AddressChanged { from, to },
        } => {
            println!("session {session:08x} moved {from} -> {to}")
        }
        Event::Introduced { from, target } => println!("introduced {from} to peer {target}"),
        Event::HandshakeFailed { session, failure } => {
            println!("handshake {session:08x} failed: {failure}")
        }
        _ => {}
    }
}

/// One line: what a session negotiated.
fn describe_info(info: &crate::proto::session::SessionInfo) -> String {
    format!(
        "layout {}, DH group {}, HMAC send {} receive {}, sequence numbers send {} receive {}, far peer id {}",
        info.layout,
        info.dh_group,
        info.tx_hmac.map(|n| format!("{n}")).unwrap_or_else(|| "no".into()),
        info.rx_hmac.map(|n| format!("{n}")).unwrap_or_else(|| "no".into()),
        yes_no(info.tx_sequence_numbers),
        yes_no(info.rx_sequence_numbers),
        info.far_peer_id,
    )
}

fn print_drops(drops: &std::collections::BTreeMap<DropReason, u64>) {
    if !drops.is_empty() {
        let list: Vec<String> = drops
            .iter()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        println!("dropped datagrams: {}", list.join(" "));
    }
}

/// Parses `rtmfp://HOST[:PORT]/APP` into the address to contact.
pub fn parse_rtmfp_url(url: &str) -> Result<SocketAddr> {
    let Some(rest) = url.strip_prefix("rtmfp://") else {
        bail!("expected a URL like rtmfp://HOST[:PORT]/APP, got {url:?}");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        bail!("no host in {url:?}");
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:1935")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {with_port}"))?
        .next()
        .with_context(|| format!("{with_port} resolves to no address"))
}

fn probe(url: &str, timeout: Duration) -> Result<()> {
    let server = parse_rtmfp_url(url)?;
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut driver = UdpDriver::bind(bind, Endpoint::new(EndpointConfig::default(), os_seed()))?;
    let now = driver.now();
    let sid = driver
        .endpoint
        .connect(now, server, EndpointDiscriminator::for_uri(url));
    let outcome = probe_session(&mut driver, sid, timeout)?;
    println!("{outcome}");
    Ok(())
}

/// Opens, measures and closes one session; the text `probe` prints.
fn probe_session(driver: &mut UdpDriver, sid: SessionId, timeout: Duration) -> Result<String> {
    let mut failure = None;
    let mut opened = false;
    driver.run(timeout, |_, _, event| match event {
        Event::SessionOpened { session, .. } if session == sid => {
            opened = true;
            false
        }
        Event::HandshakeFailed {
            session,
            failure: f,
        } if session == sid => {
            failure = Some(f);
            false
        }
        _ => true,
    })?;
    if let Some(f) = failure {
        bail!("handshake failed: {f}");
    }
    if !opened {
        match driver.endpoint.handshake_step(sid) {
            Some(step) => bail!("handshake timed out after {timeout:?} at {step}"),
            None => bail!("handshake timed out after {timeout:?}"),
        }
    }
    // Measure a round trip with a ping before closing.
    let now = driver.now();
    if let Some(s) = driver.endpoint.session_mut(sid) {
        s.ping(now);
    }
    driver.run(Duration::from_millis(1500), |ep, _, _| {
        ep.session(sid).is_some_and(|s| s.srtt().is_none())
    })?;
    let s = driver.endpoint.session(sid).context("session vanished")?;
    let info = s.info.clone();
    let rtt = s
        .srtt()
        .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "unknown".into());
    let peer = s.peer;
    let now = driver.now();
    if let Some(s) = driver.endpoint.session_mut(sid) {
        s.close(now);
    }
    let mut closed = false;
    driver.run(Duration::from_secs(5), |_, _, event| {
        if let Event::Session {
            session,
            event: SessionEvent::Closed(r),
        } = event
        {
            if session == sid {
                closed = r == CloseReason::LocalClose;
                return false;
            }
        }
        true
    })?;
    Ok(format!(
        "connected to {peer}\nlayout: {}\nDH group: {}\nHMAC: send {}, receive {}\nsession sequence numbers: send {}, receive {}\nRTT: {rtt}\nserver peer id: {}\nclose: {}",
        info.layout,
        info.dh_group,
        info.tx_hmac.map(|n| format!("{n} bytes")).unwrap_or_else(|| "no".into()),
        info.rx_hmac.map(|n| format!("{n} bytes")).unwrap_or_else(|| "no".into()),
        yes_no(info.tx_sequence_numbers),
        yes_no(info.rx_sequence_numbers),
        info.far_peer_id,
        if closed { "acknowledged" } else { "not acknowledged" },
    ))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn demo() -> Result<()> {
    let server_ep = Endpoint::new(EndpointConfig::server(), os_seed());
    let mut server = UdpDriver::bind("127.0.0.1:0".parse()?, server_ep)?;
    let addr = server.local_addr()?;
    println!("demo server on udp://{addr}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_server = stop.clone();
    let handle = std::thread::spawn(move || -> Result<u64> {
        let mut echoed = 0u64;
        while !stop_server.load(std::sync::atomic::Ordering::Relaxed) {
            server.run(Duration::from_millis(100), |ep, now, event| {
                // Echo every message back on a flow associated with the client's flow.
                if let Event::Session {
                    session,
                    event: SessionEvent::Message { flow_id, data },
                } = event
                {
                    if let Some(s) = ep.session_mut(session) {
                        let reply = s.open_flow(b"demo-echo".to_vec(), Some(flow_id));
                        s.send(reply, &data, None);
                        s.close_flow(reply);
                        let _ = now;
                        echoed += data.len() as u64;
                    }
                }
                true
            })?;
        }
        Ok(echoed)
    });
    let mut client = UdpDriver::bind(
        "127.0.0.1:0".parse()?,
        Endpoint::new(EndpointConfig::default(), os_seed()),
    )?;
    let now = client.now();
    let url = format!("rtmfp://{addr}/live");
    let sid = client
        .endpoint
        .connect(now, addr, EndpointDiscriminator::for_uri(&url));
    let mut opened = false;
    client.run(Duration::from_secs(10), |_, _, e| {
        if matches!(e, Event::SessionOpened { session, .. } if session == sid) {
            opened = true;
            return false;
        }
        true
    })?;
    if !opened {
        bail!("demo client could not open a session with the demo server");
    }
    let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    if let Some(s) = client.endpoint.session_mut(sid) {
        let flow = s.open_flow(b"demo".to_vec(), None);
        s.send(flow, &message, None);
    }
    let mut echoed = Vec::new();
    client.run(Duration::from_secs(10), |_, _, e| {
        if let Event::Session {
            event: SessionEvent::Message { data, .. },
            ..
        } = e
        {
            echoed = data;
            return false;
        }
        true
    })?;
    let outcome = probe_session_summary(&client, sid);
    let now = client.now();
    if let Some(s) = client.endpoint.session_mut(sid) {
        s.close(now);
    }
    client.run(Duration::from_secs(3), |_, _, e| {
        !matches!(
            e,
            Event::Session {
                event: SessionEvent::Closed(_),
                ..
            }
        )
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = handle.join();
    println!("{outcome}");
    if echoed != message {
        bail!(
            "echo mismatch: sent {} bytes, got {} back",
            message.len(),
            echoed.len()
        );
    }
    println!(
        "sent {} bytes over RTMFP and got them back byte-exact; session closed",
        message.len()
    );
    Ok(())
}

fn probe_session_summary(client: &UdpDriver, sid: SessionId) -> String {
    match client.endpoint.session(sid) {
        Some(s) => format!(
            "session open: layout {}, DH group {}, HMAC {:?}, sequence numbers {}, RTT {:?}",
            s.info.layout,
            s.info.dh_group,
            s.info.tx_hmac,
            s.info.tx_sequence_numbers,
            s.srtt()
        ),
        None => "session gone".into(),
    }
}
