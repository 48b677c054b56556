//! `publish`: read an FLV (file, stdin, or the bundled test stream) and publish it over
//! RTMFP, paced by its timestamps.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};

use super::stream_client::{self, ClientDriver};
use super::url::RtmfpUrl;
use crate::flash::client::ClientEvent;
use crate::flash::command::code;
use crate::flv::{FlvReader, FlvTag, TagType};
use crate::media::{MediaKind, MediaMessage};

/// The stream `publish` sends without `--input`, and `demo` always: 8 s of H.264 test
/// pattern and an AAC tone, made with ffmpeg's lavfi sources.
pub const BUNDLED_FLV: &[u8] = include_bytes!("demo.flv");

/// Stop reading ahead while this much is queued and unacknowledged.
const MAX_UNACKNOWLEDGED: u64 = 4 << 20;

/// Tags read on a thread of their own, so a slow pipe never stalls the session.
pub fn read_tags(input: Option<&str>) -> Result<Receiver<Result<FlvTag, String>>> {
    let source: Box<dyn Read + Send> = match input {
        None => Box::new(BUNDLED_FLV),
        Some("-") => Box::new(std::io::stdin()),
        Some(path) => {
            Box::new(std::fs::File::open(path).with_context(|| format!("opening {path}"))?)
        }
    };
    let (tx, rx) = sync_channel(256);
    std::thread::spawn(move || {
        let mut source = source;
        let mut reader = FlvReader::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(format!("reading input: {e}")));
                    return;
                }
            };
            if let Err(e) = reader.feed(&buf[..n]) {
                let _ = tx.send(Err(format!("input is not a valid FLV: {e}")));
                return;
            }
            while let Some(tag) = reader.poll_tag() {
                if tx.send(Ok(tag)).is_err() {
                    return;
                }
            }
        }
        if let Err(e) = reader.finish() {
            let _ = tx.send(Err(format!("input FLV ends badly: {e}")));
        }
    });
    Ok(rx)
}

pub fn media_of(tag: FlvTag) -> MediaMessage {
    let kind = match tag.tag_type {
        TagType::Audio => MediaKind::Audio,
        TagType::Video => MediaKind::Video,
        TagType::Script => MediaKind::Data,
    };
    MediaMessage::new(kind, tag.timestamp, tag.data)
}

/// What a publish sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
    pub media_duration_ms: u32,
}

/// Where a publication goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Through the server, to its players.
    Server,
    /// Straight to peers the server introduces to us (Flash's DIRECT_CONNECTIONS).
    Direct,
}

/// Connects, publishes `stream`, sends every tag, unpublishes and closes. `on_sent` sees
/// each message as it goes out (the demo measures latency with it).
pub fn publish_tags(
    url: &RtmfpUrl,
    token: Option<String>,
    tags: Receiver<Result<FlvTag, String>>,
    pace: bool,
    audience: Audience,
    timeout: Duration,
    mut on_sent: impl FnMut(&MediaMessage),
) -> Result<PublishStats> {
    let stream = url.stream()?.to_owned();
    let mut driver = stream_client::connect(url, token, timeout)?;
    driver.endpoint.keep_media_order(!pace);
    let stream_id = match audience {
        Audience::Server => {
            let id = stream_client::create_stream(&mut driver, timeout)?;
            driver.endpoint.publish(id, &stream);
            stream_client::await_status(&mut driver, id, &[code::PUBLISH_START], timeout, |_| {})
                .with_context(|| format!("publishing {stream}"))?;
            id
        }
        Audience::Direct => {
            let id = 1;
            driver.endpoint.publish_direct(id, &stream);
            let peer = driver
                .endpoint
                .peer_id()
                .context("no session with the server")?;
            eprintln!("publishing {stream} directly to peers; our peer id: {peer}");
            id
        }
    };
    let stats = send_all(&mut driver, stream_id, tags, pace, &mut on_sent)?;
    driver.endpoint.delete_stream(stream_id);
    // Let the last frames and the unpublish reach the server before closing.
    let drain_until = StdInstant::now() + Duration::from_secs(5);
    driver.run(Duration::from_secs(5), |c, _| {
        while c.poll_event().is_some() {}
        c.unacknowledged_bytes() > 0 && StdInstant::now() < drain_until
    })?;
    stream_client::close(&mut driver)?;
    Ok(stats)
}

fn send_all(
    driver: &mut ClientDriver,
    stream_id: u32,
    tags: Receiver<Result<FlvTag, String>>,
    pace: bool,
    on_sent: &mut impl FnMut(&MediaMessage),
) -> Result<PublishStats> {
    let mut stats = PublishStats::default();
    let mut first: Option<(u32, StdInstant)> = None;
    let mut pending: Option<MediaMessage> = None;
    let mut closed = None;
    let mut refused = None;
    loop {
        if pending.is_none() {
            match tags.try_recv() {
                Ok(Ok(tag)) => pending = Some(media_of(tag)),
                Ok(Err(e)) => bail!("{e}"),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Ok(stats),
            }
        }
        let mut wait = Duration::from_millis(5);
        if let Some(m) = &pending {
            let (ts0, t0) = *first.get_or_insert((m.timestamp, StdInstant::now()));
            let due = t0 + Duration::from_millis(u64::from(m.timestamp.wrapping_sub(ts0)));
            let now = StdInstant::now();
            let room = driver.endpoint.unacknowledged_bytes() < MAX_UNACKNOWLEDGED;
            if room && (!pace || now >= due) {
                let now = driver.now();
                if !driver.endpoint.send_media(now, stream_id, m) {
                    bail!("the session ended while publishing");
                }
                match m.kind {
                    MediaKind::Video => stats.video_frames += 1,
                    MediaKind::Audio => stats.audio_frames += 1,
                    MediaKind::Data => {}
                }
                stats.bytes += m.payload.len() as u64;
                stats.media_duration_ms = m.timestamp.wrapping_sub(ts0);
                on_sent(m);
                pending = None;
                wait = Duration::ZERO;
            } else if pace && room {
                wait = due.saturating_duration_since(now).min(wait);
            }
        }
        driver.run(wait, |c, _| {
            while let Some(e) = c.poll_event() {
                match e {
                    ClientEvent::Closed(r) => closed = Some(r),
                    ClientEvent::Status {
                        code, description, ..
                    } if stream_client::is_revocation(&code) => {
                        refused = Some(format!("{code}: {description}"))
                    }
                    _ => {}
                }
            }
            closed.is_none() && refused.is_none()
        })?;
        if let Some(why) = refused {
            bail!("{why}");
        }
        if let Some(r) = closed {
            bail!("the server closed the session while publishing ({r:?})");
        }
    }
}

pub fn publish(
    url: &str,
    input: Option<&str>,
    pace: bool,
    audience: Audience,
    token: Option<String>,
    timeout: Duration,
) -> Result<()> {
    let url = RtmfpUrl::parse(url)?;
    let tags = read_tags(input)?;
    let started = StdInstant::now();
    let stats = publish_tags(&url, token, tags, pace, audience, timeout, |_| {})?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "published {}: {} video and {} audio frames, {} bytes, {:.1} s of media in {:.1} s ({:.0} kbit/s)",
        url.stream()?,
        stats.video_frames,
        stats.audio_frames,
        stats.bytes,
        f64::from(stats.media_duration_ms) / 1000.0,
        secs,
        stats.bytes as f64 * 8.0 / 1000.0 / secs.max(0.001)
    );
    Ok(())
}
