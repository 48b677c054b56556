//! A shard's RTMP side: its TCP listener (one per shard on the same port, SO_REUSEPORT,
//! so the kernel spreads connections over shards) and the connections it accepted, all
//! non-blocking under one `mio` poll. The io_uring loop watches that poll's descriptor;
//! the plain loop also registers its UDP socket and waker in it (tokens below).

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

use crate::proto::Instant;
use crate::server::app::ConnId;
use crate::server::edge::EdgeServer;

/// Tokens the plain loop registers beside ours.
pub const UDP: Token = Token(0);
pub const WAKE: Token = Token(1);
/// A shard's AF_XDP socket.
pub const XSK: Token = Token(2);
const LISTENER: Token = Token(3);
const FIRST_CONN: usize = 4;

/// Bytes one [`RtmpSockets::poll`] reads from its connections at most. An RTMP
/// publisher's input turns into fragments and IP multicast datagrams as it is read (a
/// thousand datagrams a megabyte), so a shard that fell behind takes its backlog a slice
/// at a time and sends between slices, rather than hundreds of milliseconds of stream at
/// once; TCP holds the rest at the publisher.
pub const READ_BUDGET: usize = 256 * 1024;

struct RtmpSocket {
    stream: TcpStream,
    conn: ConnId,
}

pub struct RtmpSockets {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    conns: HashMap<Token, RtmpSocket>,
    next_token: usize,
    buf: Vec<u8>,
    /// Connections with input left to read: the budget ran out before they would block,
    /// and edge-triggered readiness will not report them again.
    unread: Vec<Token>,
    /// Bytes one poll reads at most ([`READ_BUDGET`]).
    read_budget: usize,
}

impl RtmpSockets {
    pub fn new(listener: Option<std::net::TcpListener>) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let listener = match listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        Ok(RtmpSockets {
            poll,
            events: Events::with_capacity(256),
            listener,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            buf: vec![0u8; 65536],
            unread: Vec::new(),
            read_budget: READ_BUDGET,
        })
    }

    /// The poll's descriptor, readable when any of its sources is ready.
    pub fn poll_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Waits up to `timeout` for readiness (not at all while connections have input
    /// left), handles RTMP sockets, and reports the other tokens (the plain loop's UDP
    /// socket and waker) to `other`. Reads at most [`READ_BUDGET`] bytes, none unless
    /// `take_input`: what is left waits for a later call ([`RtmpSockets::has_unread`]).
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        server: &mut EdgeServer,
        now: impl Fn() -> Instant,
        take_input: bool,
        mut other: impl FnMut(Token, &mut EdgeServer),
    ) -> std::io::Result<()> {
        let timeout = if take_input && !self.unread.is_empty() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(Token, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                )
            })
            .collect();
        for (token, readable) in ready {
            match token {
                UDP | WAKE | XSK => other(token, server),
                LISTENER => self.accept(server)?,
                token if readable && !self.unread.contains(&token) => self.unread.push(token),
                _ => {}
            }
        }
        if take_input {
            self.read_unread(server, &now);
        }
        Ok(())
    }

    /// Some connection has input not read yet.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    /// Reads the connections with input, oldest first, until the budget is spent.
    fn read_unread(&mut self, server: &mut EdgeServer, now: &impl Fn() -> Instant) {
        let mut budget = self.read_budget;
        while budget > 0 {
            let Some(&token) = self.unread.first() else {
                return;
            };
            if !self.read(token, server, now, &mut budget) {
                return;
            }
            self.unread.retain(|t| *t != token);
        }
    }

    fn accept(&mut self, server: &mut EdgeServer) -> std::io::Result<()> {
        let Some(listener) = &self.listener else {
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
                    let conn = server.rtmp_accept(peer);
                    self.conns.insert(token, RtmpSocket { stream, conn });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // One failed accept (the client already gave up) must not stop the server.
                Err(_) => return Ok(()),
            }
        }
    }

    /// Reads `token`'s connection until it would block (true: done with it, or it
    /// closed) or `budget` bytes are spent (false: it may have more).
    fn read(
        &mut self,
        token: Token,
        server: &mut EdgeServer,
        now: &impl Fn() -> Instant,
        budget: &mut usize,
    ) -> bool {
        let Some(socket) = self.conns.get_mut(&token) else {
            return true;
        };
        let conn = socket.conn;
        loop {
            if *budget == 0 {
                return false;
            }
            let room = self.buf.len().min(*budget);
            match socket.stream.read(&mut self.buf[..room]) {
                Ok(0) => {
                    self.close(token, server, None);
                    return true;
                }
                Ok(n) => {
                    *budget -= n;
                    if server.rtmp_input(now(), conn, &self.buf[..n]).is_err() {
                        // The server recorded why; the socket just goes.
                        self.forget(token);
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(token, server, Some(e.to_string()));
                    return true;
                }
            }
        }
    }

    fn close(&mut self, token: Token, server: &mut EdgeServer, error: Option<String>) {
        if let Some(socket) = self.conns.get(&token) {
            server.rtmp_closed(socket.conn, error);
        }
        self.forget(token);
    }

    fn forget(&mut self, token: Token) {
        self.unread.retain(|t| *t != token);
        if let Some(mut socket) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut socket.stream);
        }
    }

    /// Writes what the server has for each connection; drops connections it forgot.
    pub fn flush(&mut self, server: &mut EdgeServer) {
        if self.conns.is_empty() {
            return;
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.write(token, server);
        }
        // Connections the server forgot (an RTMP protocol error) lose their socket too.
        let gone: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, s)| !server.rtmp_connections().any(|c| c == s.conn))
            .map(|(t, _)| *t)
            .collect();
        for token in gone {
            self.forget(token);
        }
    }

    fn write(&mut self, token: Token, server: &mut EdgeServer) {
        let Some(socket) = self.conns.get_mut(&token) else {
            return;
        };
        let conn = socket.conn;
        loop {
            let out = server.rtmp_output(conn);
            if out.is_empty() {
                break;
            }
            match socket.stream.write(out) {
                Ok(n) => server.rtmp_written(conn, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(token, server, Some(e.to_string()));
                    return;
                }
            }
        }
        if server.rtmp_should_close(conn) {
            self.close(token, server, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::endpoint::EndpointConfig;
    use crate::rtmp::message::{MessageType, RtmpMessage};
    use crate::rtmp::{ConnectionConfig, RtmpConnection};
    use crate::server::config::ServerConfig;
    use std::sync::Arc;

    fn now() -> Instant {
        Instant::ZERO
    }

    #[test]
    fn a_backlog_is_read_a_budget_at_a_time_and_not_while_input_is_held() {
        const BUDGET: usize = 8 * 1024;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut rtmp = RtmpSockets::new(Some(listener)).unwrap();
        rtmp.read_budget = BUDGET;
        let mut server = EdgeServer::new(
            Arc::new(ServerConfig::embedded_default()),
            EndpointConfig::server(),
            [3; 32],
        );
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut conn = RtmpConnection::client(ConnectionConfig::default(), &mut rand::rngs::OsRng);
        let poll = |rtmp: &mut RtmpSockets, server: &mut EdgeServer, take_input| {
            rtmp.poll(
                Some(Duration::from_millis(20)),
                server,
                now,
                take_input,
                |_, _| {},
            )
            .unwrap()
        };
        // The handshake, both ways.
        let mut buf = vec![0u8; 65536];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !conn.is_handshake_done() {
            assert!(std::time::Instant::now() < deadline, "handshake");
            client.write_all(&conn.take_output()).unwrap();
            poll(&mut rtmp, &mut server, true);
            rtmp.flush(&mut server);
            if let Ok(n) = client.read(&mut buf) {
                conn.feed(&buf[..n]).unwrap();
            }
        }
        client.write_all(&conn.take_output()).unwrap();
        while rtmp.has_unread() {
            poll(&mut rtmp, &mut server, true);
        }
        // Six budgets of media, all in the socket at once (well within its buffers).
        for i in 0..6u32 {
            let m = RtmpMessage::new(MessageType::Video, i * 40, 1, vec![0x27; BUDGET]);
            conn.send_message(&m).unwrap();
        }
        client.write_all(&conn.take_output()).unwrap();
        std::thread::sleep(Duration::from_millis(50));

        // Held: the readiness is noted, nothing is read, however often it polls.
        for _ in 0..3 {
            poll(&mut rtmp, &mut server, false);
            assert!(rtmp.has_unread(), "the connection's input waits");
        }
        // Taken: a budget per poll.
        poll(&mut rtmp, &mut server, true);
        assert!(rtmp.has_unread(), "one budget read, more left");
        let mut polls = 1;
        while rtmp.has_unread() {
            poll(&mut rtmp, &mut server, true);
            polls += 1;
            assert!(polls < 100, "the input never drained");
        }
        assert!(polls >= 6, "{polls} polls for six budgets of input");
        assert_eq!(
            server.rtmp_connections().count(),
            1,
            "the connection stands"
        );
    }
}
