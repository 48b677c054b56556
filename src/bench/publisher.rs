//! The synthetic live stream: 25 video frames/s with a keyframe every 2 s, AVC and AAC
//! sequence headers first, ~43 AAC frames/s of audio, sized so the whole matches the
//! requested bitrate. Every frame carries a [`FrameMark`] (the send time on the shared
//! monotonic clock and a frame index) right after its codec header, so a subscriber that
//! decrypts only a packet's first blocks can still read it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use super::monotonic_micros;
use crate::cli::stream_client;
use crate::cli::url::RtmfpUrl;
use crate::flash::client::ClientEvent;
use crate::flash::command::code;
use crate::media::{MediaKind, MediaMessage};

pub const VIDEO_FPS: u32 = 25;
/// Seconds between keyframes.
const KEYFRAME_SECONDS: u32 = 2;
/// AAC at 44.1 kHz: 1024 samples a frame.
const AUDIO_FRAME: Duration = Duration::from_micros(23_220);
const AUDIO_BYTES: usize = 180;

/// What every synthetic frame carries after its codec header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMark {
    pub sent_us: u64,
    pub index: u32,
}

impl FrameMark {
    pub const MAGIC: [u8; 4] = *b"RBF1";
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&Self::MAGIC);
        out[4..12].copy_from_slice(&self.sent_us.to_be_bytes());
        out[12..].copy_from_slice(&self.index.to_be_bytes());
        out
    }

    /// Finds a mark within the first bytes of a message (after the 5-byte message
    /// header and a 2- or 5-byte codec header).
    pub fn find(data: &[u8]) -> Option<FrameMark> {
        let window = &data[..data.len().min(24)];
        let at = window.windows(4).position(|w| w == Self::MAGIC)?;
        let m = data.get(at..at + Self::LEN)?;
        Some(FrameMark {
            sent_us: u64::from_be_bytes(m[4..12].try_into().ok()?),
            index: u32::from_be_bytes(m[12..16].try_into().ok()?),
        })
    }
}

/// The video frames of the synthetic stream: how many a second, and their sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamShape {
    pub fps: u32,
    pub key_bytes: usize,
    pub regular_bytes: usize,
}

impl StreamShape {
    /// 25 frames/s, frames sized for `bitrate_bps` (audio included).
    pub fn new(bitrate_bps: u64) -> Self {
        Self::with_fps(bitrate_bps, VIDEO_FPS)
    }

    /// Frames sized for `bitrate_bps` with no keyframe over `max_message` bytes: above
    /// 25 frames/s when it must (a group stream carries messages of at most 256
    /// fragments, so a multicast stream of hundreds of Mbit/s needs more, smaller frames).
    pub fn limited(bitrate_bps: u64, max_message: usize) -> Self {
        let mut shape = Self::new(bitrate_bps);
        while shape.key_bytes > max_message && shape.fps < 100_000 {
            let fps = (shape.fps as f64 * shape.key_bytes as f64 / max_message as f64).ceil();
            shape = Self::with_fps(bitrate_bps, (fps as u32).max(shape.fps + 1));
        }
        shape
    }

    fn with_fps(bitrate_bps: u64, fps: u32) -> Self {
        let audio_bps = (AUDIO_BYTES as u64) * 8 * 1_000_000 / AUDIO_FRAME.as_micros() as u64;
        let video_bytes = bitrate_bps.saturating_sub(audio_bps) / 8 / u64::from(fps);
        // One keyframe three times the size of the others, every `keyframe_every` frames.
        let k = u64::from(KEYFRAME_SECONDS * fps);
        let regular = (video_bytes * k / (k + 2)).max(64) as usize;
        StreamShape {
            fps,
            key_bytes: regular * 3,
            regular_bytes: regular,
        }
    }

    /// Frames from one keyframe to the next.
    pub fn keyframe_every(&self) -> u32 {
        KEYFRAME_SECONDS * self.fps
    }

    /// When frame `index` is due, after the first.
    fn due(&self, index: u32) -> Duration {
        Duration::from_micros(u64::from(index) * 1_000_000 / u64::from(self.fps))
    }
}

fn video_frame(index: u32, key: bool, size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size.max(32));
    v.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
    v.extend_from_slice(
        &FrameMark {
            sent_us: monotonic_micros(),
            index,
        }
        .encode(),
    );
    v.resize(size.max(v.len()), 0x5a);
    v.into()
}

fn audio_frame(index: u32) -> Bytes {
    let mut v = Vec::with_capacity(AUDIO_BYTES);
    v.extend_from_slice(&[0xaf, 0x01]);
    v.extend_from_slice(
        &FrameMark {
            sent_us: monotonic_micros(),
            index,
        }
        .encode(),
    );
    v.resize(AUDIO_BYTES, 0x21);
    v.into()
}

/// How the publisher sends the stream to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ingest {
    /// Over RTMFP, with our client (as Flash publishes).
    Rtmfp,
    /// Over RTMP on TCP (as ffmpeg and OBS publish): cheap per byte for the publisher.
    Rtmp,
}

/// Counters the orchestrator reads while the publisher runs.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub publishing: AtomicBool,
    /// Set once every subscriber plays: until then the publisher holds its media, so
    /// joining is not slowed by fanning the stream out to those already in.
    pub go: AtomicBool,
}

impl PublisherStats {
    /// A media message went out.
    pub fn count(&self, m: &MediaMessage) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(m.payload.len() as u64, Ordering::Relaxed);
    }
}

/// The stream's codec headers (AVC and AAC sequence headers), sent before any frame.
pub fn sequence_headers() -> [MediaMessage; 2] {
    [
        MediaMessage::new(
            MediaKind::Video,
            0,
            Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, 0]),
        ),
        MediaMessage::new(
            MediaKind::Audio,
            0,
            Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10]),
        ),
    ]
}

/// The frames of the stream as they fall due on the clock, from `start`.
#[derive(Debug)]
pub struct FrameSchedule {
    shape: StreamShape,
    t0: StdInstant,
    video: u32,
    audio: u32,
}

impl FrameSchedule {
    pub fn start(shape: StreamShape) -> Self {
        FrameSchedule {
            shape,
            t0: StdInstant::now(),
            video: 0,
            audio: 0,
        }
    }

    /// The frames due at `now`: at most one video and one audio frame (a late
    /// publisher catches up over the next calls).
    pub fn due(&mut self, now: StdInstant) -> Vec<MediaMessage> {
        let (t0, shape) = (self.t0, self.shape);
        let video_due = t0 + shape.due(self.video);
        let audio_due = t0 + AUDIO_FRAME * self.audio;
        let mut due = Vec::new();
        if now >= video_due {
            let key = self.video % shape.keyframe_every() == 0;
            let ts = (video_due - t0).as_millis() as u32;
            let size = if key {
                shape.key_bytes
            } else {
                shape.regular_bytes
            };
            let payload = video_frame(self.video, key, size);
            due.push(MediaMessage::new(MediaKind::Video, ts, payload));
            self.video += 1;
        }
        if now >= audio_due {
            let ts = (audio_due - t0).as_millis() as u32;
            due.push(MediaMessage::new(
                MediaKind::Audio,
                ts,
                audio_frame(self.audio),
            ));
            self.audio += 1;
        }
        due
    }

    /// When the next frame falls due.
    pub fn next_due(&self) -> StdInstant {
        (self.t0 + self.shape.due(self.video)).min(self.t0 + AUDIO_FRAME * self.audio)
    }
}

/// Connects, publishes `stream` and sends the synthetic stream until `stop`.
pub fn publish(
    url: &RtmfpUrl,
    shape: StreamShape,
    stop: &AtomicBool,
    stats: &Arc<PublisherStats>,
) -> Result<()> {
    let timeout = Duration::from_secs(10);
    let stream = url.stream()?.to_owned();
    let mut driver = stream_client::connect(url, None, timeout).context("publisher connect")?;
    let id = stream_client::create_stream(&mut driver, timeout)?;
    driver.endpoint.publish(id, &stream);
    stream_client::await_status(&mut driver, id, &[code::PUBLISH_START], timeout, |_| {})
        .with_context(|| format!("publishing {stream}"))?;
    for m in &sequence_headers() {
        let now = driver.now();
        driver.endpoint.send_media(now, id, m);
    }
    stats.publishing.store(true, Ordering::Relaxed);
    while !stats.go.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        run_while_open(&mut driver, Duration::from_millis(20))?;
        super::check_interrupt()?;
    }
    let mut schedule = FrameSchedule::start(shape);
    while !stop.load(Ordering::Relaxed) && !super::interrupted() {
        for m in &schedule.due(StdInstant::now()) {
            let now = driver.now();
            if !driver.endpoint.send_media(now, id, m) {
                bail!("the publisher's session ended");
            }
            stats.count(m);
        }
        let wait = schedule
            .next_due()
            .saturating_duration_since(StdInstant::now())
            .min(Duration::from_millis(5));
        run_while_open(&mut driver, wait)?;
    }
    let _ = stream_client::close(&mut driver);
    Ok(())
}

/// Runs the publisher's session for up to `wait`; an error if the server closed it.
fn run_while_open(driver: &mut stream_client::ClientDriver, wait: Duration) -> Result<()> {
    let mut closed = None;
    driver.run(wait, |c, _| {
        while let Some(e) = c.poll_event() {
            if let ClientEvent::Closed(r) = e {
                closed = Some(r);
            }
        }
        closed.is_none()
    })?;
    match closed {
        Some(r) => bail!("the server closed the publisher's session ({r:?})"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_mark_is_found_after_either_codec_header() {
        let m = FrameMark {
            sent_us: 0x0102_0304_0506_0708,
            index: 77,
        };
        let mut video = vec![9, 0, 0, 0, 0, 0x27, 1, 0, 0, 0];
        video.extend_from_slice(&m.encode());
        video.extend_from_slice(&[0; 100]);
        assert_eq!(FrameMark::find(&video), Some(m));
        let mut audio = vec![8, 0, 0, 0, 0, 0xaf, 1];
        audio.extend_from_slice(&m.encode());
        assert_eq!(FrameMark::find(&audio), Some(m));
        assert_eq!(FrameMark::find(&audio[..20]), None, "truncated mark");
        assert_eq!(FrameMark::find(&[0u8; 64]), None);
    }

    #[test]
    fn frame_sizes_add_up_to_the_bitrate() {
        for (bps, max) in [(4_000_000u64, usize::MAX), (800_000_000, 240_000)] {
            let shape = StreamShape::limited(bps, max);
            let k = u64::from(shape.keyframe_every());
            let video_bytes_per_gop = shape.key_bytes as u64 + (k - 1) * shape.regular_bytes as u64;
            let per_second = video_bytes_per_gop * 8 * u64::from(shape.fps) / k
                + AUDIO_BYTES as u64 * 8 * 1_000_000 / AUDIO_FRAME.as_micros() as u64;
            let err = per_second.abs_diff(bps) as f64 / bps as f64;
            assert!(err < 0.01, "{shape:?}: {per_second} vs {bps}");
            assert!(shape.key_bytes <= max, "{shape:?}");
        }
    }

    #[test]
    fn frame_rate_rises_only_when_keyframes_would_not_fit() {
        assert_eq!(
            StreamShape::limited(4_000_000, 240_000),
            StreamShape::new(4_000_000)
        );
        assert_eq!(StreamShape::new(4_000_000).fps, VIDEO_FPS);
        let fast = StreamShape::limited(800_000_000, 240_000);
        assert!(
            fast.fps > VIDEO_FPS && fast.key_bytes <= 240_000,
            "{fast:?}"
        );
        assert!(
            fast.key_bytes > 200_000,
            "no more frames than needed: {fast:?}"
        );
    }
}
