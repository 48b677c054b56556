//! Live streams by name: one publisher, any number of players, and what a late joiner
//! needs to start decoding at once (metadata, codec headers, the frames since the latest
//! keyframe). Protocol-neutral: RTMFP and RTMP sessions are both just subscriber ids.

use std::collections::HashMap;
use std::hash::Hash;

use crate::media::{MediaKind, MediaMessage};

/// Frames kept since the latest keyframe; a GOP larger than this is not cached (late
/// joiners then wait for the next keyframe).
pub const DEFAULT_GOP_CACHE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("stream is already being published")]
    AlreadyPublished,
}

/// What a new player gets: whether the stream is live now, and the messages to send
/// before live ones (metadata, sequence headers, then the current GOP).
#[derive(Debug, Clone, Default)]
pub struct JoinStart {
    pub publishing: bool,
    pub catch_up: Vec<MediaMessage>,
}

#[derive(Debug)]
struct LiveStream<S> {
    publisher: Option<S>,
    players: Vec<S>,
    metadata: Option<MediaMessage>,
    video_header: Option<MediaMessage>,
    audio_header: Option<MediaMessage>,
    gop: Vec<MediaMessage>,
    gop_bytes: usize,
    messages_forwarded: u64,
}

impl<S> Default for LiveStream<S> {
    fn default() -> Self {
        LiveStream {
            publisher: None,
            players: Vec::new(),
            metadata: None,
            video_header: None,
            audio_header: None,
            gop: Vec::new(),
            gop_bytes: 0,
            messages_forwarded: 0,
        }
    }
}

impl<S> LiveStream<S> {
    fn forget_media(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.gop.clear();
        self.gop_bytes = 0;
    }

    fn is_unused(&self) -> bool {
        self.publisher.is_none() && self.players.is_empty()
    }
}

#[derive(Debug)]
pub struct LiveStreams<S> {
    streams: HashMap<String, LiveStream<S>>,
    gop_cache_bytes: usize,
    /// Counts changes to any stream's players, so a list derived from them can tell it
    /// is stale.
    players_version: u64,
}

impl<S: Copy + Eq + Hash> Default for LiveStreams<S> {
    fn default() -> Self {
        Self::new(DEFAULT_GOP_CACHE_BYTES)
    }
}

impl<S: Copy + Eq + Hash> LiveStreams<S> {
    pub fn new(gop_cache_bytes: usize) -> Self {
        LiveStreams {
            streams: HashMap::new(),
            gop_cache_bytes,
            players_version: 0,
        }
    }

    pub fn publish(&mut self, name: &str, publisher: S) -> Result<(), PublishError> {
        let stream = self.streams.entry(name.to_owned()).or_default();
        match stream.publisher {
            Some(p) if p != publisher => Err(PublishError::AlreadyPublished),
            _ => {
                stream.publisher = Some(publisher);
                Ok(())
            }
        }
    }

    /// Ends `publisher`'s publication of `name`. Returns the players to tell
    /// (`NetStream.Play.UnpublishNotify`); they stay subscribed for a republish.
    pub fn unpublish(&mut self, name: &str, publisher: S) -> Vec<S> {
        let Some(stream) = self.streams.get_mut(name) else {
            return Vec::new();
        };
        if stream.publisher != Some(publisher) {
            return Vec::new();
        }
        stream.publisher = None;
        stream.forget_media();
        let players = stream.players.clone();
        if stream.is_unused() {
            self.streams.remove(name);
        }
        players
    }

    pub fn play(&mut self, name: &str, player: S) -> JoinStart {
        let stream = self.streams.entry(name.to_owned()).or_default();
        if !stream.players.contains(&player) {
            stream.players.push(player);
            self.players_version += 1;
        }
        let mut catch_up = Vec::new();
        catch_up.extend(stream.metadata.iter().cloned());
        catch_up.extend(stream.video_header.iter().cloned());
        catch_up.extend(stream.audio_header.iter().cloned());
        catch_up.extend(stream.gop.iter().cloned());
        JoinStart {
            publishing: stream.publisher.is_some(),
            catch_up,
        }
    }

    pub fn stop_playing(&mut self, name: &str, player: S) {
        if let Some(stream) = self.streams.get_mut(name) {
            stream.players.retain(|p| *p != player);
            self.players_version += 1;
            if stream.is_unused() {
                self.streams.remove(name);
            }
        }
    }

    /// Takes a message from the publisher of `name` and returns the players to send it
    /// to, or `None` if `from` is not that publisher.
    pub fn forward(&mut self, name: &str, from: S, message: &MediaMessage) -> Option<&[S]> {
        let limit = self.gop_cache_bytes;
        let stream = self.streams.get_mut(name)?;
        if stream.publisher != Some(from) {
            return None;
        }
        stream.messages_forwarded += 1;
        if message.is_metadata() {
            stream.metadata = Some(message.without_set_data_frame());
        } else if message.is_sequence_header() {
            match message.kind {
                MediaKind::Video => stream.video_header = Some(message.clone()),
                MediaKind::Audio => stream.audio_header = Some(message.clone()),
                MediaKind::Data => {}
            }
        } else if message.is_keyframe() {
            stream.gop.clear();
            stream.gop_bytes = message.payload.len();
            stream.gop.push(message.clone());
        } else if !stream.gop.is_empty() && message.kind != MediaKind::Data {
            stream.gop_bytes += message.payload.len();
            if stream.gop_bytes > limit {
                stream.gop.clear();
                stream.gop_bytes = 0;
            } else {
                stream.gop.push(message.clone());
            }
        }
        Some(&stream.players)
    }

    /// Changes whenever a player joins or leaves any stream.
    pub fn players_version(&self) -> u64 {
        self.players_version
    }

    pub fn publisher(&self, name: &str) -> Option<S> {
        self.streams.get(name).and_then(|s| s.publisher)
    }

    pub fn players(&self, name: &str) -> &[S] {
        self.streams.get(name).map_or(&[], |s| &s.players)
    }

    /// Streams whose publisher passes `counts`, and players of all streams.
    pub fn census(&self, counts: impl Fn(&S) -> bool) -> (usize, usize) {
        self.streams.values().fold((0, 0), |(streams, players), s| {
            let published = s.publisher.as_ref().is_some_and(&counts);
            (streams + usize::from(published), players + s.players.len())
        })
    }

    /// Names of streams being published now.
    pub fn published(&self) -> impl Iterator<Item = &str> {
        self.streams
            .iter()
            .filter(|(_, s)| s.publisher.is_some())
            .map(|(n, _)| n.as_str())
    }

    /// Every stream: its name, publisher (if any) and players.
    pub fn streams(&self) -> impl Iterator<Item = (&str, Option<S>, &[S])> {
        self.streams
            .iter()
            .map(|(n, s)| (n.as_str(), s.publisher, s.players.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(ts: u32, p: &'static [u8]) -> MediaMessage {
        MediaMessage::new(MediaKind::Video, ts, p)
    }
    fn audio(ts: u32, p: &'static [u8]) -> MediaMessage {
        MediaMessage::new(MediaKind::Audio, ts, p)
    }

    #[test]
    fn second_publisher_is_refused_and_republish_works_after_unpublish() {
        let mut s = LiveStreams::default();
        s.publish("demo", 1).unwrap();
        assert_eq!(s.publish("demo", 2), Err(PublishError::AlreadyPublished));
        s.play("demo", 10);
        assert_eq!(
            s.unpublish("demo", 2),
            Vec::<i32>::new(),
            "not the publisher"
        );
        assert_eq!(s.unpublish("demo", 1), vec![10]);
        s.publish("demo", 2).unwrap();
        assert_eq!(s.players("demo"), &[10], "players wait for the republish");
    }

    #[test]
    fn late_joiner_gets_headers_then_the_gop_from_the_latest_keyframe() {
        let mut s = LiveStreams::default();
        s.publish("demo", 1).unwrap();
        let meta = MediaMessage::new(
            MediaKind::Data,
            0,
            &b"\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData\x08"[..],
        );
        let stream = [
            meta,
            video(0, b"\x17\x00avcC"),
            audio(0, b"\xaf\x00\x12\x10"),
            video(0, b"\x17\x01first-key"),
            audio(10, b"\xaf\x01a1"),
            video(40, b"\x27\x01p1"),
            video(80, b"\x17\x01second-key"),
            audio(90, b"\xaf\x01a2"),
            video(120, b"\x27\x01p2"),
        ];
        for m in &stream {
            assert!(s.forward("demo", 1, m).is_some());
        }
        assert!(
            s.forward("demo", 2, &stream[5]).is_none(),
            "only the publisher"
        );
        let join = s.play("demo", 7);
        assert!(join.publishing);
        let got: Vec<&[u8]> = join.catch_up.iter().map(|m| &m.payload[..]).collect();
        assert_eq!(
            got,
            vec![
                &b"\x02\x00\x0aonMetaData\x08"[..],
                b"\x17\x00avcC",
                b"\xaf\x00\x12\x10",
                b"\x17\x01second-key",
                b"\xaf\x01a2",
                b"\x27\x01p2",
            ]
        );
        assert_eq!(s.forward("demo", 1, &stream[8]).unwrap(), &[7]);
    }

    #[test]
    fn oversized_gop_is_not_cached() {
        let mut s = LiveStreams::new(10);
        s.publish("x", 1).unwrap();
        s.forward("x", 1, &video(0, b"\x17\x01key"));
        s.forward("x", 1, &video(40, b"\x27\x01big-inter-frame"));
        assert!(s.play("x", 2).catch_up.is_empty());
    }

    #[test]
    fn unpublish_forgets_headers_so_a_new_publisher_starts_clean() {
        let mut s = LiveStreams::default();
        s.publish("x", 1).unwrap();
        s.forward("x", 1, &video(0, b"\x17\x00old-avcC"));
        s.unpublish("x", 1);
        s.publish("x", 2).unwrap();
        assert!(s.play("x", 3).catch_up.is_empty());
        s.stop_playing("x", 3);
        s.unpublish("x", 2);
        assert_eq!(s.published().count(), 0);
    }
}
