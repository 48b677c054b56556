//! A simple driver for the sans-IO cores: one blocking UDP socket ([`UdpDriver`]), for
//! the client tools. The server runs on the engine (src/engine).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use crate::flash::client::FlashClient;
use crate::proto::{Endpoint, Instant, Transmit};
use crate::server::edge::EdgeServer;

/// A sans-IO datagram machine a driver can run: datagrams and time in, datagrams out.
pub trait DatagramMachine {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
}

macro_rules! datagram_machine {
    ($t:ty, $handle:ident) => {
        impl DatagramMachine for $t {
            fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
                <$t>::$handle(self, now, from, datagram)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
                <$t>::poll_transmit(self, now)
            }
        }
    };
}

datagram_machine!(Endpoint, handle);
datagram_machine!(FlashClient, handle_datagram);
datagram_machine!(EdgeServer, handle_datagram);

pub struct UdpDriver<M> {
    pub socket: UdpSocket,
    pub endpoint: M,
    epoch: StdInstant,
    buf: Vec<u8>,
}

impl<M: DatagramMachine> UdpDriver<M> {
    pub fn bind(addr: SocketAddr, endpoint: M) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        Ok(UdpDriver {
            socket,
            endpoint,
            epoch: StdInstant::now(),
            buf: vec![0u8; 65536],
        })
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let now = self.now();
        while let Some(t) = self.endpoint.poll_transmit(now) {
            if let Err(e) = self.socket.send_to(&t.payload, t.destination) {
                // An unreachable peer must not stop the server.
                if e.kind() != ErrorKind::ConnectionRefused {
                    eprintln!("send to {} failed: {e}", t.destination);
                }
            }
        }
        Ok(())
    }

    /// Runs the machine for at most `max_wait`, calling `step` after every datagram or
    /// timer (it polls the machine's events); `step` returns false to stop. Returns
    /// false if `step` stopped it.
    pub fn run(
        &mut self,
        max_wait: Duration,
        mut step: impl FnMut(&mut M, Instant) -> bool,
    ) -> std::io::Result<bool> {
        let deadline = StdInstant::now() + max_wait;
        loop {
            self.flush()?;
            let now = self.now();
            if !step(&mut self.endpoint, now) {
                self.flush()?;
                return Ok(false);
            }
            self.flush()?;
            let remaining = deadline.saturating_duration_since(StdInstant::now());
            if remaining.is_zero() {
                return Ok(true);
            }
            let timer = self
                .endpoint
                .poll_timeout()
                .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())))
                .unwrap_or(remaining);
            let wait = timer.min(remaining).max(Duration::from_millis(1));
            self.socket.set_read_timeout(Some(wait))?;
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let now = self.now();
                    self.endpoint.handle_datagram(now, from, &self.buf[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            let now = self.now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
        }
    }
}

impl<M: DatagramMachine> UdpDriver<M> {
    /// Like [`UdpDriver::run`], also taking datagrams from `side` (an IP multicast
    /// socket, say), which `on_side` hands to the machine; `step` runs after each.
    pub fn run_with_side(
        &mut self,
        side: &UdpSocket,
        max_wait: Duration,
        mut on_side: impl FnMut(&mut M, Instant, &[u8]),
        mut step: impl FnMut(&mut M, Instant) -> bool,
    ) -> std::io::Result<bool> {
        use mio::unix::SourceFd;
        use mio::{Events, Interest, Poll, Token};
        use std::os::fd::AsRawFd;
        let deadline = StdInstant::now() + max_wait;
        self.socket.set_nonblocking(true)?;
        side.set_nonblocking(true)?;
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(4);
        let (main_fd, side_fd) = (self.socket.as_raw_fd(), side.as_raw_fd());
        poll.registry()
            .register(&mut SourceFd(&main_fd), Token(0), Interest::READABLE)?;
        poll.registry()
            .register(&mut SourceFd(&side_fd), Token(1), Interest::READABLE)?;
        let result = loop {
            self.flush()?;
            let now = self.now();
            if !step(&mut self.endpoint, now) {
                self.flush()?;
                break Ok(false);
            }
            self.flush()?;
            let remaining = deadline.saturating_duration_since(StdInstant::now());
            if remaining.is_zero() {
                break Ok(true);
            }
            let timer = self
                .endpoint
                .poll_timeout()
                .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())))
                .unwrap_or(remaining);
            let wait = timer.min(remaining).max(Duration::from_millis(1));
            match poll.poll(&mut events, Some(wait)) {
                Err(e) if e.kind() != ErrorKind::Interrupted => break Err(e),
                _ => {}
            }
            loop {
                match self.socket.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        let now = self.now();
                        self.endpoint.handle_datagram(now, from, &self.buf[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    Err(_) => break,
                }
            }
            while let Ok((n, _)) = side.recv_from(&mut self.buf) {
                let now = self.now();
                on_side(&mut self.endpoint, now, &self.buf[..n]);
            }
            let now = self.now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
        };
        self.socket.set_nonblocking(false)?;
        result
    }
}

/// Where and from whom `join` takes a group's IP multicast.
#[derive(Debug, Clone, Default)]
pub struct MulticastJoin {
    /// The interface to join on, by name; `None`: the one the routing table picks.
    pub interface: Option<String>,
    /// Take datagrams from this sender only (a source-specific join); `None`: any.
    pub source: Option<std::net::IpAddr>,
    /// Take them from any sender even if the server names the one it sends from.
    pub any_source: bool,
}

/// A socket that receives the datagrams sent to IP multicast `group`: bound to the
/// group's address and port (so nothing sent to another address or port reaches it),
/// joined as `join` says (IGMP / MLD).
pub fn multicast_receiver(group: SocketAddr, join: &MulticastJoin) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if group.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&group.into())?;
    let socket: UdpSocket = socket.into();
    let interface = match &join.interface {
        Some(name) => crate::engine::sockopt::interface_index(name)?,
        None => 0,
    };
    crate::engine::sockopt::join_multicast(&socket, group.ip(), interface, join.source)?;
    Ok(socket)
}

/// Entropy for an endpoint's seed, from the OS.
pub fn os_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}
