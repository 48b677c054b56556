//! The N subscribers' handshakes, with the real client: each worker thread enters the
//! namespace, and for one subscriber after another binds its UDP port, runs the RTMFP
//! handshake (Flash-era layout: 1024-bit DH, the cheapest the server accepts), connects,
//! creates a stream and plays it. At `NetStream.Play.Start` the session (socket, far
//! session id, packet cipher) is handed to the [`super::receiver`] and the client is
//! dropped without closing.
//!
//! In the IP multicast modes each is a group member instead: after `connect` it joins
//! the NetGroup and waits for the server's key handout (`7e`: the group's multicast
//! address and key), which makes it a member the server admitted; then its session is
//! handed over the same way. It plays nothing from its peers: what the network delivers
//! to the multicast group is counted once, by [`super::multicast_counter`].

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::netns::{Topology, SUBSCRIBER_ADDR};
use crate::cli::stream_client;
use crate::cli::url::RtmfpUrl;
use crate::flash::client::{ClientEvent, FlashClient};
use crate::flash::command::code;
use crate::group::member::GroupEvent;
use crate::group::GroupSpec;
use crate::net::{os_seed, UdpDriver};
use crate::proto::cipher::PacketCipher;
use crate::proto::endpoint::EndpointConfig;
use crate::proto::keying::HandshakeLayout;
use crate::proto::Instant;

/// What each subscriber does once connected.
#[derive(Debug, Clone)]
pub enum Role {
    /// Plays the stream from the server.
    Play,
    /// Joins `spec`'s group and waits for its IP multicast key, which must name
    /// `address`.
    Member {
        spec: GroupSpec,
        address: SocketAddr,
    },
}

/// A playing session, handed from the client to the receiver.
pub struct Handoff {
    pub slot: usize,
    pub socket: UdpSocket,
    pub server: SocketAddr,
    /// The server's session id: what our packets carry (scrambled) in front.
    pub far_id: u32,
    pub cipher: PacketCipher,
}

#[derive(Debug, Default)]
pub struct JoinProgress {
    pub playing: AtomicUsize,
    pub failed: AtomicUsize,
}

/// Subscriber `slot` uses UDP port `base_port + slot` in the namespace.
pub fn subscriber_addr(base_port: u16, slot: usize) -> SocketAddrV4 {
    SocketAddrV4::new(SUBSCRIBER_ADDR, base_port + slot as u16)
}

/// Joins subscribers `0..n` with `workers` threads; every one that plays (or, as a
/// member, got the group's key) is sent on `handoff`. Returns when all have played or
/// failed; fails if more than 1% failed.
#[allow(clippy::too_many_arguments)]
pub fn join_all(
    topo: &Topology,
    url: &RtmfpUrl,
    role: &Role,
    n: usize,
    base_port: u16,
    workers: usize,
    handoff: Sender<Handoff>,
    progress: &Arc<JoinProgress>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let first_error = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            let (next, handoff, first_error) = (&next, handoff.clone(), &first_error);
            s.spawn(move || {
                if let Err(e) = topo.enter_on_this_thread() {
                    *first_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
                    return;
                }
                loop {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    if slot >= n || super::interrupted() {
                        return;
                    }
                    // One retry: a handshake packet can be lost while the server is busy.
                    let joined = join_one(url, role, base_port, slot)
                        .or_else(|_| join_one(url, role, base_port, slot));
                    match joined {
                        Ok(h) => {
                            progress.playing.fetch_add(1, Ordering::Relaxed);
                            if handoff.send(h).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            progress.failed.fetch_add(1, Ordering::Relaxed);
                            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert_with(|| format!("subscriber {slot}: {e:#}"));
                        }
                    }
                }
            });
        }
    });
    super::check_interrupt()?;
    let failed = progress.failed.load(Ordering::Relaxed);
    if failed * 100 > n {
        let why = first_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_default();
        bail!("{failed} of {n} subscribers could not join; first: {why}");
    }
    Ok(())
}

fn join_one(url: &RtmfpUrl, role: &Role, base_port: u16, slot: usize) -> Result<Handoff> {
    let timeout = Duration::from_secs(10);
    let config = EndpointConfig {
        initiator_layouts: vec![HandshakeLayout::FlashEra],
        ..EndpointConfig::default()
    };
    let client = FlashClient::connect(
        Instant::ZERO,
        url.server,
        &url.tc_url,
        &url.app,
        vec![],
        config,
        os_seed(),
    );
    let addr = subscriber_addr(base_port, slot);
    let mut driver = UdpDriver::bind(addr.into(), client)
        .with_context(|| format!("binding udp://{addr} in the namespace"))?;
    let mut outcome = None;
    driver.run(timeout, |c, _| {
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::Connected => outcome = Some(Ok(())),
                ClientEvent::Failed { code, description } => {
                    outcome = Some(Err(format!("{code}: {description}")))
                }
                ClientEvent::Closed(r) => outcome = Some(Err(format!("closed ({r:?})"))),
                _ => {}
            }
        }
        outcome.is_none()
    })?;
    match outcome {
        Some(Ok(())) => {}
        Some(Err(why)) => bail!("connect refused: {why}"),
        None => bail!("connect: no answer within {timeout:?}"),
    }
    match role {
        Role::Play => {
            let stream_id = stream_client::create_stream(&mut driver, timeout)?;
            driver.endpoint.play(stream_id, url.stream()?);
            stream_client::await_status(
                &mut driver,
                stream_id,
                &[code::PLAY_START],
                timeout,
                |_| {},
            )?;
        }
        Role::Member { spec, address } => {
            let told = join_group(&mut driver, spec, timeout)?;
            if told != *address {
                bail!("the server named {told} as the group's multicast address, not {address}");
            }
        }
    }
    let session = driver
        .endpoint
        .session()
        .and_then(|id| driver.endpoint.endpoint.session(id))
        .context("the session vanished after Play.Start")?;
    let (far_id, cipher) = (session.far_id, session.packet_cipher().clone());
    let server = session.peer;
    let socket = driver.socket;
    socket.set_nonblocking(true)?;
    Ok(Handoff {
        slot,
        socket,
        server,
        far_id,
        cipher,
    })
}

/// Joins `spec` and waits for the server's IP multicast key handout; returns the
/// address it named.
fn join_group(
    driver: &mut UdpDriver<FlashClient>,
    spec: &GroupSpec,
    timeout: Duration,
) -> Result<SocketAddr> {
    if !driver.endpoint.join_group(spec) {
        bail!("join: the connection is not up");
    }
    let mut outcome = None;
    driver.run(timeout, |c, _| {
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::Group(GroupEvent::MulticastAddress(a)) => outcome = Some(Ok(a)),
                ClientEvent::Group(GroupEvent::JoinRefused) => {
                    outcome = Some(Err("the server refused the join".to_owned()))
                }
                ClientEvent::Closed(r) => outcome = Some(Err(format!("closed ({r:?})"))),
                _ => {}
            }
        }
        outcome.is_none()
    })?;
    match outcome {
        Some(Ok(address)) => Ok(address),
        Some(Err(why)) => bail!("join: {why}"),
        None => bail!("join: no multicast key from the server within {timeout:?}"),
    }
}
