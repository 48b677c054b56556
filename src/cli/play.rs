//! `play`: play a live stream over RTMFP and write it as FLV (file or stdout).

use std::io::Write;
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};

use super::stream_client;
use super::url::RtmfpUrl;
use crate::flash::client::ClientEvent;
use crate::flash::command::code;
use crate::flv::{FlvHeader, FlvTag, FlvWriter, TagType};
use crate::media::{MediaKind, MediaMessage};
use crate::proto::epd::PeerId;

/// What a playback received.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlayStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
    /// The stream's publisher left (UnpublishNotify).
    pub ended: bool,
}

/// Rebases timestamps so output starts at 0: codec headers and metadata sent ahead of
/// the first frame get 0, frames count from the first one.
#[derive(Debug, Default)]
struct Rebase {
    first_frame: Option<u32>,
}

impl Rebase {
    fn apply(&mut self, m: &MediaMessage) -> u32 {
        if m.kind == MediaKind::Data || m.is_sequence_header() {
            return self
                .first_frame
                .map_or(0, |b| m.timestamp.saturating_sub(b));
        }
        let base = *self.first_frame.get_or_insert(m.timestamp);
        m.timestamp.wrapping_sub(base)
    }
}

/// Plays `url`'s stream until `duration` passes, the stream ends, or no media comes for
/// `timeout`; every message goes to `on_media` with its rebased timestamp.
pub fn play_stream(
    url: &RtmfpUrl,
    token: Option<String>,
    from_peer: Option<PeerId>,
    duration: Option<Duration>,
    timeout: Duration,
    mut on_media: impl FnMut(&MediaMessage, u32) -> Result<()>,
) -> Result<PlayStats> {
    let stream = url.stream()?.to_owned();
    let mut driver = stream_client::connect(url, token, timeout)?;
    let stream_id = match from_peer {
        None => {
            let id = stream_client::create_stream(&mut driver, timeout)?;
            driver.endpoint.play(id, &stream);
            id
        }
        Some(peer) => {
            let now = driver.now();
            driver.endpoint.play_direct(now, url.server, peer, &stream)
        }
    };
    let mut early = Vec::new();
    stream_client::await_status(&mut driver, stream_id, &[code::PLAY_START], timeout, |e| {
        early.push(e)
    })
    .with_context(|| format!("playing {stream}"))?;
    eprintln!("playing {stream}");
    let started = StdInstant::now();
    let mut stats = PlayStats::default();
    let mut rebase = Rebase::default();
    let last_media = std::cell::Cell::new(StdInstant::now());
    let mut failure: Option<anyhow::Error> = None;
    let mut handle = |e: ClientEvent, stats: &mut PlayStats| -> Result<()> {
        match e {
            ClientEvent::Media { message, .. } => {
                last_media.set(StdInstant::now());
                match message.kind {
                    MediaKind::Video => stats.video_frames += 1,
                    MediaKind::Audio => stats.audio_frames += 1,
                    MediaKind::Data => {}
                }
                stats.bytes += message.payload.len() as u64;
                let ts = rebase.apply(&message);
                on_media(&message, ts)?;
            }
            ClientEvent::Status { code, .. } if code == code::PLAY_UNPUBLISH_NOTIFY => {
                stats.ended = true
            }
            // The server is shutting down: what we got is all there will be.
            ClientEvent::Status {
                code, description, ..
            } if code == code::CONNECT_APP_SHUTDOWN => {
                eprintln!("{code}: {description}");
                stats.ended = true
            }
            // The server no longer allows this client: its reason is the error.
            ClientEvent::Status {
                code, description, ..
            } if stream_client::is_revocation(&code) => bail!("{code}: {description}"),
            // Told of the shutdown first: the close that follows is the expected end.
            ClientEvent::Closed(_) if stats.ended => {}
            ClientEvent::Closed(r) => bail!("the server closed the session ({r:?})"),
            _ => {}
        }
        Ok(())
    };
    for e in early {
        handle(e, &mut stats)?;
    }
    loop {
        let done = duration.is_some_and(|d| started.elapsed() >= d) || stats.ended;
        if done {
            break;
        }
        if last_media.get().elapsed() >= timeout {
            if stats.video_frames + stats.audio_frames == 0 {
                bail!("playing {stream}: no media within {timeout:?} (is it published?)");
            }
            bail!("playing {stream}: media stopped for {timeout:?}");
        }
        driver.run(Duration::from_millis(50), |c, _| {
            while let Some(e) = c.poll_event() {
                if let Err(err) = handle(e, &mut stats) {
                    failure = Some(err);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failure.take() {
            return Err(e);
        }
    }
    if from_peer.is_none() {
        driver.endpoint.delete_stream(stream_id);
    }
    stream_client::close(&mut driver)?;
    Ok(stats)
}

pub fn play(
    url: &str,
    output: &str,
    duration: Option<Duration>,
    token: Option<String>,
    from_peer: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let url = RtmfpUrl::parse(url)?;
    let from_peer = match from_peer {
        Some(hex) => Some(
            PeerId::from_hex(hex)
                .with_context(|| format!("--peer {hex:?}: expected 64 hex digits"))?,
        ),
        None => None,
    };
    let mut sink: Box<dyn Write> = if output == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(output).with_context(|| format!("creating {output}"))?,
        ))
    };
    let mut writer = FlvWriter::new(FlvHeader::new(true, true));
    let mut buf = Vec::new();
    let stats = play_stream(&url, token, from_peer, duration, timeout, |m, ts| {
        let tag_type = match m.kind {
            MediaKind::Audio => TagType::Audio,
            MediaKind::Video => TagType::Video,
            MediaKind::Data => TagType::Script,
        };
        buf.clear();
        writer
            .write_tag(&FlvTag::new(tag_type, ts, m.payload.to_vec()), &mut buf)
            .map_err(|e| anyhow::anyhow!("writing FLV: {e}"))?;
        sink.write_all(&buf).context("writing output")?;
        sink.flush().context("writing output")
    })?;
    eprintln!(
        "played {}: {} video and {} audio frames, {} bytes{}",
        url.stream()?,
        stats.video_frames,
        stats.audio_frames,
        stats.bytes,
        if stats.ended {
            "; the publisher ended the stream"
        } else {
            ""
        }
    );
    Ok(())
}
