//! Starting the engine: bind every shard's sockets on the same ports (SO_REUSEPORT),
//! choose io_uring or the plain loop, wire the rings between shards, and start one
//! pinned thread per shard.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant as StdInstant;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use super::batch_cipher::MultiBufferCipher;
use super::config_feed::ConfigFeed;
use super::ring::{ring, Consumer, Producer};
use super::rtmp_sockets::RtmpSockets;
use super::shard::{Io, Links, Shard, ShardMessage, ShardStats, StepHook};
use super::sockopt::{set_multicast_sending, set_pmtudisc_probe};
use super::steering::ReuseportSteering;
use super::uring_udp::UringUdp;
use super::waker::Waker;
use super::xdp::{XdpMode, XdpPath};
use super::xdp_guard::{GuardConfig, XdpGuard};
use crate::proto::endpoint::EndpointConfig;
use crate::server::config::ServerConfig;
use crate::server::directory::Directory;
use crate::server::edge::EdgeServer;

/// Slots in each ring between two shards.
const RING_CAPACITY: usize = 8192;
/// Socket buffers we ask for: a burst of fan-out must not overflow the send queue.
/// The kernel caps the ask at net.core.rmem_max/wmem_max, which `tune` raises to this.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Which I/O to run the shards' UDP sockets on: `[server] io`'s values.
pub use crate::server::config::IoMode as IoChoice;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Shards (threads); 0 = one per core.
    pub shards: usize,
    pub io: IoChoice,
    /// Pin shard i to core i.
    pub pin: bool,
    /// Load the reuseport steering program (with more than one shard); without it, or
    /// when it cannot load, shards hand foreign datagrams to each other.
    pub steering: bool,
    /// The interface for AF_XDP (`--xdp-iface`): required by [`IoChoice::Xdp`], tried
    /// first by [`IoChoice::Auto`].
    pub xdp_interface: Option<String>,
    /// Handshakes a second per source address and burst the XDP program lets through
    /// on the AF_XDP path; (0, 0): no limit.
    pub xdp_handshake_limit: (u32, u32),
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            shards: 0,
            io: IoChoice::Auto,
            pin: true,
            steering: true,
            xdp_interface: None,
            xdp_handshake_limit: (20, 40),
        }
    }
}

/// The AF_XDP path as it was set up.
pub struct XdpSetup {
    /// Our XDP program on the interface: it redirects the RTMFP port to the sockets
    /// (shared with whoever reads its counters, such as the metrics endpoint).
    pub guard: Arc<XdpGuard>,
    pub interface: String,
    pub mode: XdpMode,
    /// Receive queues, each with a socket: queue q belongs to shard q mod shards.
    pub queues: usize,
}

/// Opens one AF_XDP socket per receive queue of `interface` and puts our XDP program in
/// front of them. Queue q goes to shard q mod shards: a datagram that arrives on a queue
/// without a socket would reach the kernel instead, unseen by the fast path. The first
/// socket of each shard sends; the others only receive.
fn open_xdp(
    interface: Option<&str>,
    (handshake_rate, handshake_burst): (u32, u32),
    local: SocketAddr,
    shards: usize,
    multicast_hop_limit: u8,
) -> Result<(XdpSetup, Vec<Vec<XdpPath>>)> {
    let Some(interface) = interface else {
        bail!("no interface given (--xdp-iface IF)");
    };
    let queues = std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .with_context(|| format!("interface {interface}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count()
        .max(1);
    let config = GuardConfig {
        handshake_rate,
        handshake_burst,
        ..GuardConfig::for_ports(vec![local.port()])
    };
    let guard = XdpGuard::attach(interface, &config)
        .with_context(|| format!("attaching the XDP program to {interface}"))?;
    let mut paths: Vec<Vec<XdpPath>> = (0..shards).map(|_| Vec::new()).collect();
    let mut mode = XdpMode::Copy;
    for queue in 0..queues {
        use std::os::fd::AsRawFd;
        let shard = &mut paths[queue % shards];
        let receive_only = !shard.is_empty();
        let opened = XdpPath::open(
            interface,
            queue as u32,
            local,
            multicast_hop_limit,
            receive_only,
        )
        .with_context(|| format!("AF_XDP socket on {interface} queue {queue}"))?;
        guard
            .bind_socket(queue as u32, opened.socket().as_raw_fd())
            .with_context(|| format!("binding queue {queue} in the XDP program"))?;
        mode = opened.mode();
        shard.push(opened);
    }
    let setup = XdpSetup {
        guard: Arc::new(guard),
        interface: interface.to_owned(),
        mode,
        queues,
    };
    Ok((setup, paths))
}

/// A running engine.
pub struct Engine {
    pub rtmfp_addr: SocketAddr,
    pub rtmp_addr: Option<SocketAddr>,
    pub io: Io,
    /// Why io_uring is not used, when it was wanted but is unavailable.
    pub io_fallback_reason: Option<String>,
    pub stats: Vec<Arc<ShardStats>>,
    /// The steering program, when loaded; `steering_unavailable` says why not.
    pub steering: Option<ReuseportSteering>,
    pub steering_unavailable: Option<String>,
    /// The AF_XDP path, when the shards run on it; `xdp_unavailable` says why not when
    /// `--io auto` tried it.
    pub xdp: Option<XdpSetup>,
    pub xdp_unavailable: Option<String>,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    config_feed: ConfigFeed,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
}

/// The number of shards `options` asks for on this machine.
pub fn shard_count(options: &EngineOptions) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = if options.shards == 0 {
        cores
    } else {
        options.shards
    };
    n.clamp(1, 255)
}

impl Engine {
    /// Binds and starts the shards. `hook(i)` makes shard i's step hook (logging,
    /// periodic reports); it runs on that shard's thread.
    pub fn start(
        config: Arc<ServerConfig>,
        endpoint: EndpointConfig,
        options: EngineOptions,
        mut hook: impl FnMut(u8) -> StepHook,
    ) -> Result<Engine> {
        let shards = shard_count(&options);
        let (udp, tcp) = bind_all(config.rtmfp_listen, config.rtmp_listen, shards)?;
        let listen = config.rtmfp_listen;
        if let Some(a) = config
            .republish_multicast_addresses()
            .into_iter()
            .find(|a| a.is_ipv6() != listen.is_ipv6())
        {
            bail!(
                "IP multicast address {a} and RTMFP address {listen} are not the same IP \
                 version: the server sends IP multicast from its RTMFP sockets"
            );
        }
        if !config.republish_multicast_addresses().is_empty() {
            // One shard sends the IP multicast datagrams; every socket gets the same
            // options, so whichever it is sends as configured.
            for socket in &udp {
                set_multicast_sending(socket, config.rtmfp_listen.is_ipv6(), &config.multicast)
                    .context("setting up the IP multicast sender ([server] multicast_*)")?;
            }
        }
        let rtmfp_addr = udp[0].local_addr()?;
        let rtmp_addr = match tcp.first() {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (steering, steering_unavailable) = if shards < 2 {
            (None, None)
        } else if !options.steering {
            (None, Some("turned off".to_owned()))
        } else {
            use std::os::fd::AsFd;
            let fds: Vec<_> = udp.iter().map(|s| s.as_fd()).collect();
            match ReuseportSteering::attach(&fds) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        let wakers: Vec<Arc<Waker>> = (0..shards)
            .map(|_| Waker::new().map(Arc::new))
            .collect::<std::io::Result<_>>()
            .context("creating shard wakers (eventfd)")?;
        let want_xdp = match options.io {
            IoChoice::Xdp => true,
            IoChoice::Auto => options.xdp_interface.is_some(),
            IoChoice::Uring | IoChoice::Poll => false,
        };
        let (mut xdp, mut xdp_unavailable) = (None, None);
        let mut xdp_paths: Vec<Vec<XdpPath>> = (0..shards).map(|_| Vec::new()).collect();
        if want_xdp {
            let interface = options.xdp_interface.as_deref();
            let limit = options.xdp_handshake_limit;
            let hop_limit = u8::try_from(config.multicast.ttl).unwrap_or(u8::MAX);
            match open_xdp(interface, limit, rtmfp_addr, shards, hop_limit) {
                Ok((setup, paths)) => {
                    xdp = Some(setup);
                    xdp_paths = paths;
                }
                Err(e) if options.io == IoChoice::Auto => xdp_unavailable = Some(format!("{e:#}")),
                Err(e) => bail!("AF_XDP is unavailable: {e:#}"),
            }
        }
        let (io, io_fallback_reason) = match options.io {
            _ if xdp.is_some() => (Io::Xdp, None),
            IoChoice::Poll => (Io::Poll, None),
            IoChoice::Uring | IoChoice::Auto | IoChoice::Xdp => {
                use std::os::fd::AsRawFd;
                match UringUdp::new(udp[0].as_raw_fd(), wakers[0].fd(), None) {
                    Ok(_) => (Io::Uring, None),
                    Err(e) if options.io == IoChoice::Auto => (Io::Poll, Some(e.to_string())),
                    Err(e) => bail!("io_uring is unavailable: {e}"),
                }
            }
        };

        // rings[i][j]: from shard i to shard j.
        let mut producers: Vec<Vec<Option<Producer<ShardMessage>>>> = (0..shards)
            .map(|_| (0..shards).map(|_| None).collect())
            .collect();
        let mut consumers: Vec<Vec<(u8, Consumer<ShardMessage>)>> =
            (0..shards).map(|_| Vec::new()).collect();
        for (i, row) in producers.iter_mut().enumerate() {
            for (j, slot) in row.iter_mut().enumerate() {
                if i != j {
                    let (p, c) = ring(RING_CAPACITY);
                    *slot = Some(p);
                    consumers[j].push((i as u8, c));
                }
            }
        }

        let directory = Arc::new(Directory::new());
        // One server identity for all shards: clients see one server, one peer id.
        let mut endpoint = endpoint;
        if endpoint.server_identity.is_none() {
            let (a, b) = (crate::net::os_seed(), crate::net::os_seed());
            let mut identity = [0u8; 64];
            identity[..32].copy_from_slice(&a);
            identity[32..].copy_from_slice(&b);
            endpoint.server_identity = Some(identity);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicBool::new(false));
        let config_feed = ConfigFeed::new(config.clone(), wakers.clone());
        let epoch = StdInstant::now();
        let cores = if options.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        let mut tcp = tcp.into_iter();
        for (index, ((udp, xdp_path), (outbound, inbound))) in udp
            .into_iter()
            .zip(xdp_paths)
            .zip(producers.into_iter().zip(consumers))
            .enumerate()
        {
            let shard_stats = Arc::new(ShardStats::default());
            stats.push(shard_stats.clone());
            let mut server = EdgeServer::sharded(
                config.clone(),
                endpoint.clone(),
                crate::net::os_seed(),
                directory.clone(),
                index as u8,
                shards,
            );
            server
                .endpoint
                .set_batch_cipher(Box::new(MultiBufferCipher::new()));
            let rtmp = RtmpSockets::new(tcp.next()).context("setting up the RTMP listener")?;
            let shard = Shard {
                server,
                udp,
                rtmp,
                inbound,
                links: Links {
                    index: index as u8,
                    outbound,
                    backlog: (0..shards).map(|_| Default::default()).collect(),
                    wakers: wakers.clone(),
                    stats: shard_stats,
                },
                stop: stop.clone(),
                drain: drain.clone(),
                drain_deadline: None,
                config: config_feed.subscribe(),
                epoch,
                xdp: xdp_path,
            };
            let step = hook(index as u8);
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    shard.run(io, step)
                })
                .context("starting a shard thread")?;
            threads.push(thread);
        }
        Ok(Engine {
            rtmfp_addr,
            rtmp_addr,
            io,
            io_fallback_reason,
            stats,
            steering,
            steering_unavailable,
            xdp,
            xdp_unavailable,
            stop,
            drain,
            config_feed,
            wakers,
            threads,
        })
    }

    pub fn shards(&self) -> usize {
        self.wakers.len()
    }

    /// Asks every shard to stop after its current turn.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            w.signal();
        }
    }

    /// Asks every shard to shut down cleanly: no new sessions, every client told
    /// `NetConnection.Connect.AppShutdown`, sessions closed; each shard stops when its
    /// sessions are gone, or after `DRAIN_TIMEOUT`.
    pub fn drain(&self) {
        self.drain.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            w.signal();
        }
    }

    /// Where to hand the shards a reloaded config (SIGHUP): each takes it at its next
    /// turn, as it takes the drain flag.
    pub fn config_feed(&self) -> ConfigFeed {
        self.config_feed.clone()
    }

    /// SIGTERM or SIGINT drains the engine (see [`Engine::drain`]); a second one ends the
    /// process at once (exit status 1). Shards see the flag within their longest sleep
    /// (100 ms).
    pub fn drain_on_signals(&self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for signal in [SIGTERM, SIGINT] {
            // Registered first, so it sees the flag as the earlier signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, 1, self.drain.clone())
                .context("installing a signal handler")?;
            signal_hook::flag::register(signal, self.drain.clone())
                .context("installing a signal handler")?;
        }
        Ok(())
    }

    /// Waits for every shard to end; the first error, if any.
    pub fn join(self) -> Result<()> {
        let mut first = Ok(());
        for (i, t) in self.threads.into_iter().enumerate() {
            let result = match t.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("shard {i} failed"))),
                Err(_) => Err(anyhow::anyhow!("shard {i} panicked")),
            };
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// Binds `shards` UDP sockets (and TCP listeners) on the same address with SO_REUSEPORT;
/// port 0 picks a free port for the first and reuses it for the rest.
fn bind_all(
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    shards: usize,
) -> Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let mut udp_sockets = Vec::new();
    let mut addr = udp;
    for _ in 0..shards {
        let socket = reuseport_socket(addr, Type::DGRAM, Protocol::UDP)
            .with_context(|| format!("binding RTMFP on udp://{addr}"))?;
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let socket: UdpSocket = socket.into();
        {
            use std::os::fd::AsFd;
            // An optimization only: a kernel that refuses it still sends.
            let _ = set_pmtudisc_probe(socket.as_fd(), addr.is_ipv6());
        }
        addr = socket.local_addr()?;
        udp_sockets.push(socket);
    }
    let mut listeners = Vec::new();
    if let Some(mut addr) = tcp {
        for _ in 0..shards {
            let socket = reuseport_socket(addr, Type::STREAM, Protocol::TCP)
                .with_context(|| format!("binding RTMP on tcp://{addr}"))?;
            socket.listen(1024)?;
            let listener: TcpListener = socket.into();
            addr = listener.local_addr()?;
            listeners.push(listener);
        }
    }
    Ok((udp_sockets, listeners))
}

fn reuseport_socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    socket.set_reuse_port(true)?;
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}
