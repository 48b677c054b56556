//! The simple UDP driver: one blocking socket that feeds an [`Endpoint`] and drains it.
//! The thread-per-core io_uring engine replaces it for `serve` in a later step; the client
//! tools and the loopback demo keep using it.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use crate::proto::{Endpoint, Event, Instant};

pub struct UdpDriver {
    pub socket: UdpSocket,
    pub endpoint: Endpoint,
    epoch: StdInstant,
    buf: Vec<u8>,
}

impl UdpDriver {
    pub fn bind(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<Self> {
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

    /// Runs the endpoint for at most `max_wait`, handing each event to `on_event`, which
    /// returns false to stop.
    pub fn run(
        &mut self,
        max_wait: Duration,
        mut on_event: impl FnMut(&mut Endpoint, Instant, Event) -> bool,
    ) -> std::io::Result<bool> {
        let deadline = StdInstant::now() + max_wait;
        loop {
            self.flush()?;
            let now = self.now();
            while let Some(event) = self.endpoint.poll_event() {
                if !on_event(&mut self.endpoint, now, event) {
                    self.flush()?;
                    return Ok(false);
                }
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
                    self.endpoint.handle(now, from, &self.buf[..n]);
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

/// Entropy for an endpoint's seed, from the OS.
pub fn os_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}
