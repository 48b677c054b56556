//! The server's readiness loop: one UDP socket for RTMFP and a TCP listener for RTMP,
//! all non-blocking under one `mio` poll, feeding an [`EdgeServer`]. This is the plain
//! socket loop the io_uring engine will fall back to.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use crate::proto::Instant;
use crate::server::app::ConnId;
use crate::server::edge::EdgeServer;

const UDP: Token = Token(0);
const TCP_LISTENER: Token = Token(1);
const FIRST_RTMP: usize = 2;
/// Longest sleep without a timer, so `step` runs now and then.
const MAX_SLEEP: Duration = Duration::from_millis(100);

struct RtmpSocket {
    stream: TcpStream,
    conn: ConnId,
}

pub struct EdgeLoop {
    pub server: EdgeServer,
    poll: Poll,
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    rtmp: HashMap<Token, RtmpSocket>,
    next_token: usize,
    epoch: StdInstant,
    buf: Vec<u8>,
}

impl EdgeLoop {
    /// Binds RTMFP on `udp` and, if given, RTMP on `tcp`.
    pub fn bind(
        server: EdgeServer,
        udp: SocketAddr,
        tcp: Option<SocketAddr>,
    ) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let mut udp = UdpSocket::bind(udp)?;
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let tcp = match tcp {
            Some(addr) => {
                let mut listener = TcpListener::bind(addr)?;
                poll.registry()
                    .register(&mut listener, TCP_LISTENER, Interest::READABLE)?;
                Some(listener)
            }
            None => None,
        };
        Ok(EdgeLoop {
            server,
            poll,
            udp,
            tcp,
            rtmp: HashMap::new(),
            next_token: FIRST_RTMP,
            epoch: StdInstant::now(),
            buf: vec![0u8; 65536],
        })
    }

    pub fn rtmfp_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Runs until `step` returns false; `step` runs after every batch of readiness events
    /// and timers, and polls the server's events.
    pub fn run(
        &mut self,
        mut step: impl FnMut(&mut EdgeServer, Instant) -> bool,
    ) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            self.flush()?;
            let now = self.now();
            if !step(&mut self.server, now) {
                self.flush()?;
                return Ok(());
            }
            self.flush()?;
            let wait = self
                .server
                .poll_timeout()
                .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    UDP => self.receive_datagrams()?,
                    TCP_LISTENER => self.accept()?,
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read_rtmp(token);
                        }
                    }
                }
            }
            let now = self.now();
            if self.server.poll_timeout().is_some_and(|t| t <= now) {
                self.server.handle_timeout(now);
            }
        }
    }

    fn receive_datagrams(&mut self) -> std::io::Result<()> {
        loop {
            match self.udp.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let now = self.now();
                    self.server.handle_datagram(now, from, &self.buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // ICMP port unreachable from some earlier send: not our socket's fault.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn accept(&mut self) -> std::io::Result<()> {
        let Some(listener) = &self.tcp else {
            return Ok(());
        };
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let conn = self.server.rtmp_accept(peer);
                    self.rtmp.insert(token, RtmpSocket { stream, conn });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // One failed accept (the client already gave up) must not stop the server.
                Err(_) => return Ok(()),
            }
        }
    }

    fn read_rtmp(&mut self, token: Token) {
        let Some(socket) = self.rtmp.get_mut(&token) else {
            return;
        };
        let conn = socket.conn;
        loop {
            match socket.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.drop_rtmp(token, None);
                    return;
                }
                Ok(n) => {
                    let now = Instant::from_micros(self.epoch.elapsed().as_micros() as u64);
                    if self.server.rtmp_input(now, conn, &self.buf[..n]).is_err() {
                        // The server recorded why; the socket just goes.
                        self.drop_socket(token);
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.drop_rtmp(token, Some(e.to_string()));
                    return;
                }
            }
        }
    }

    fn drop_rtmp(&mut self, token: Token, error: Option<String>) {
        if let Some(socket) = self.rtmp.get(&token) {
            self.server.rtmp_closed(socket.conn, error);
        }
        self.drop_socket(token);
    }

    fn drop_socket(&mut self, token: Token) {
        if let Some(mut socket) = self.rtmp.remove(&token) {
            let _ = self.poll.registry().deregister(&mut socket.stream);
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let now = self.now();
        while let Some(t) = self.server.poll_transmit(now) {
            match self.udp.send_to(&t.payload, t.destination) {
                Ok(_) => {}
                // A full socket buffer drops the datagram: RTMFP retransmits.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => eprintln!("send to {} failed: {e}", t.destination),
            }
        }
        let tokens: Vec<Token> = self.rtmp.keys().copied().collect();
        for token in tokens {
            self.write_rtmp(token);
        }
        // Connections the server forgot (an RTMP protocol error) lose their socket too.
        let gone: Vec<Token> = self
            .rtmp
            .iter()
            .filter(|(_, s)| !self.server.rtmp_connections().any(|c| c == s.conn))
            .map(|(t, _)| *t)
            .collect();
        for token in gone {
            self.drop_socket(token);
        }
        Ok(())
    }

    fn write_rtmp(&mut self, token: Token) {
        let Some(socket) = self.rtmp.get_mut(&token) else {
            return;
        };
        let conn = socket.conn;
        loop {
            let out = self.server.rtmp_output(conn);
            if out.is_empty() {
                break;
            }
            match socket.stream.write(out) {
                Ok(n) => self.server.rtmp_written(conn, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.drop_rtmp(token, Some(e.to_string()));
                    return;
                }
            }
        }
        if self.server.rtmp_should_close(conn) {
            self.drop_rtmp(token, None);
        }
    }
}
