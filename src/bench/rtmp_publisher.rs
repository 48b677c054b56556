//! The synthetic stream published over RTMP (`--ingest rtmp`), as ffmpeg or OBS would:
//! TCP, the RTMP handshake, `connect`, `createStream`, `publish`, then the frames of the
//! [`FrameSchedule`]. Over TCP on the local host the publisher costs little per byte,
//! so a stream of hundreds of Mbit/s is limited by the server, not by the publisher
//! (an RTMFP publisher seals and paces every 1200-byte packet, as the server does).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};

use super::publisher::{sequence_headers, FrameSchedule, PublisherStats, StreamShape};
use crate::flash::amf::{Object, Value};
use crate::flash::command::{code, status_code, Command};
use crate::media::{MediaKind, MediaMessage};
use crate::rtmp::message::{MessageType, RtmpMessage};
use crate::rtmp::{ConnectionConfig, Event, RtmpConnection};

/// Chunk size we send with: a whole regular frame in a few chunks.
const CHUNK_SIZE: u32 = 64 * 1024;

struct RtmpPublisher {
    socket: TcpStream,
    conn: RtmpConnection,
    buf: Vec<u8>,
}

impl RtmpPublisher {
    fn flush(&mut self) -> Result<()> {
        let out = self.conn.take_output();
        self.socket.write_all(&out).context("writing to the server")
    }

    /// Reads what the server sent (waiting up to the socket's timeout) into the
    /// connection; false if nothing came.
    fn read(&mut self) -> Result<bool> {
        match self.socket.read(&mut self.buf) {
            Ok(0) => bail!("the server closed the RTMP connection"),
            Ok(n) => {
                self.conn
                    .feed(&self.buf[..n])
                    .context("reading the server's RTMP")?;
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e).context("reading from the server"),
        }
    }

    fn command(&mut self, stream_id: u32, cmd: &Command) -> Result<()> {
        let msg = RtmpMessage::new(MessageType::CommandAmf0, 0, stream_id, cmd.encode());
        self.conn.send_message(&msg)?;
        self.flush()
    }

    /// Waits for the command `pick` accepts; fails on `_error` or after `timeout`.
    fn await_command<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Command) -> Option<T>,
    ) -> Result<T> {
        let deadline = StdInstant::now() + timeout;
        while StdInstant::now() < deadline {
            while let Some(event) = self.conn.poll_event() {
                let Event::Message(m) = event else { continue };
                if m.type_id != MessageType::CommandAmf0 {
                    continue;
                }
                let Ok(cmd) = Command::parse(&m.payload) else {
                    continue;
                };
                if cmd.name == "_error" {
                    bail!("the server refused: {:?}", status_code(&cmd));
                }
                if let Some(t) = pick(&cmd) {
                    return Ok(t);
                }
            }
            self.flush()?;
            self.read()?;
        }
        bail!("no answer from the server within {timeout:?}")
    }

    fn send_media(&mut self, stream_id: u32, m: &MediaMessage) -> Result<()> {
        let kind = match m.kind {
            MediaKind::Audio => MessageType::Audio,
            MediaKind::Video => MessageType::Video,
            MediaKind::Data => MessageType::DataAmf0,
        };
        let msg = RtmpMessage::new(kind, m.timestamp, stream_id, m.payload.to_vec());
        self.conn.send_message(&msg)?;
        self.flush()
    }
}

/// Publishes `stream` to app `app` of the RTMP server at `server` and sends the
/// synthetic stream until `stop`.
pub fn publish(
    server: SocketAddr,
    app: &str,
    stream: &str,
    shape: StreamShape,
    stop: &AtomicBool,
    stats: &Arc<PublisherStats>,
) -> Result<()> {
    let timeout = Duration::from_secs(10);
    let socket = TcpStream::connect_timeout(&server, timeout)
        .with_context(|| format!("connecting to rtmp://{server}"))?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut rng = rand::rngs::OsRng;
    let mut p = RtmpPublisher {
        socket,
        conn: RtmpConnection::client(ConnectionConfig::default(), &mut rng),
        buf: vec![0u8; 64 * 1024],
    };
    p.flush()?;
    let deadline = StdInstant::now() + timeout;
    while !p.conn.is_handshake_done() {
        if StdInstant::now() > deadline {
            bail!("RTMP handshake: no answer within {timeout:?}");
        }
        p.read()?;
        p.flush()?;
    }
    p.conn.set_chunk_size(CHUNK_SIZE)?;
    let tc_url = format!("rtmp://{server}/{app}");
    let object = Object::anonymous([
        ("app", Value::from(app)),
        ("type", "nonprivate".into()),
        ("flashVer", "FMLE/3.0 (rtmfp-edge bench)".into()),
        ("tcUrl", tc_url.as_str().into()),
    ]);
    p.command(0, &Command::new("connect", 1.0, object.into(), vec![]))?;
    p.await_command(timeout, |c| {
        (c.name == "_result" && c.transaction_id == 1.0).then_some(())
    })
    .context("RTMP connect")?;
    p.command(0, &Command::new("createStream", 2.0, Value::Null, vec![]))?;
    let stream_id = p
        .await_command(timeout, |c| {
            (c.name == "_result" && c.transaction_id == 2.0)
                .then(|| c.argument(0).and_then(Value::as_f64))
                .flatten()
        })
        .context("RTMP createStream")? as u32;
    let publish = Command::new(
        "publish",
        3.0,
        Value::Null,
        vec![stream.into(), "live".into()],
    );
    p.command(stream_id, &publish)?;
    p.await_command(timeout, |c| {
        (c.name == "onStatus" && status_code(c) == Some(code::PUBLISH_START)).then_some(())
    })
    .with_context(|| format!("publishing {stream}"))?;
    for m in &sequence_headers() {
        p.send_media(stream_id, m)?;
    }
    stats.publishing.store(true, Ordering::Relaxed);
    p.socket.set_nonblocking(true)?;
    while !stats.go.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        while p.read()? {}
        std::thread::sleep(Duration::from_millis(20));
        super::check_interrupt()?;
    }
    // Writes block (TCP pushes back when the server falls behind); reads do not.
    let mut schedule = FrameSchedule::start(shape);
    while !stop.load(Ordering::Relaxed) && !super::interrupted() {
        for m in &schedule.due(StdInstant::now()) {
            p.socket.set_nonblocking(false)?;
            p.send_media(stream_id, m)?;
            p.socket.set_nonblocking(true)?;
            stats.count(m);
        }
        while p.read()? {}
        while p.conn.poll_event().is_some() {}
        let wait = schedule
            .next_due()
            .saturating_duration_since(StdInstant::now())
            .min(Duration::from_millis(5));
        std::thread::sleep(wait);
    }
    Ok(())
}
