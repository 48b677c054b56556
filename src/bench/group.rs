//! `bench group`: one stream republished by the server into a NetGroup, N members
//! playing it from each other, measured: delivery, upload per member and for the server,
//! latency, join time. Two drivers share this module: [`super::group_sim`] (in-process,
//! virtual clock, seeded) and [`super::group_udp`] (real sockets on loopback).
//! See docs/bench.md.
//!
//! Here: the options, the synthetic stream, the join/leave schedule, what each member
//! records, and the summary computed from the records.

use std::time::Duration;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::group::fragments::ReassemblyStats;
use crate::group::stream::StreamCounters;
use crate::group::GroupSpec;
use crate::media::{MediaKind, MediaMessage};
use crate::proto::dh::DhGroup;
use crate::proto::endpoint::EndpointConfig;
use crate::proto::epd::PeerId;
use crate::proto::keying::HandshakeLayout;

pub const FPS: u32 = 25;
pub const GOP: u32 = 25;
/// AAC at 44.1 kHz: 1024 samples a frame, ~43 a second.
const AUDIO_FRAME_US: u64 = 23_220;
const AUDIO_BYTES: usize = 160;
/// The stream name the publisher publishes (the server republishes it into the group).
pub const STREAM: &str = "cam";
/// The group, by name (the spec Flash's `GroupSpecifier("bench")` writes).
pub const GROUP: &str = "bench";
/// After the publisher stops, members run this long for the last frames to arrive.
pub const DRAIN: Duration = Duration::from_secs(3);
/// A member without a decoded keyframe is expected to have one this long after joining.
pub const JOIN_GOAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sim,
    Udp,
}

#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub members: usize,
    /// Seconds of stream after the initial joins.
    pub seconds: f64,
    /// Fraction of the members that leave during the run (as many new ones join).
    pub churn: f64,
    /// Sim: probability that a datagram is lost.
    pub loss: f64,
    pub mode: Mode,
    pub bitrate_kbps: u32,
    pub seed: u64,
    /// Sim: one-way delay of every datagram.
    pub delay_ms: u64,
    /// Udp: threads running the members.
    pub threads: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            members: 50,
            seconds: 20.0,
            churn: 0.0,
            loss: 0.0,
            mode: Mode::Sim,
            bitrate_kbps: 500,
            seed: 1,
            delay_ms: 10,
            threads: 2,
        }
    }
}

impl GroupOptions {
    pub fn check(&self) -> Result<()> {
        if self.members == 0 {
            bail!("--members: expected 1 or more");
        }
        if !(self.seconds.is_finite() && self.seconds >= 2.0) {
            bail!("--seconds: expected 2 or more");
        }
        if !(0.0..=1.0).contains(&self.churn) || !(0.0..1.0).contains(&self.loss) {
            bail!("--churn must be within 0..=1 and --loss within 0..1");
        }
        if self.bitrate_kbps < 50 {
            bail!("--bitrate: expected 50 kbit/s or more");
        }
        if self.mode == Mode::Udp && self.loss > 0.0 {
            bail!("--loss is for --mode sim (loopback loses nothing on purpose)");
        }
        Ok(())
    }

    /// The members join evenly over this ramp, from the stream's start.
    pub fn ramp(&self) -> Duration {
        Duration::from_millis((self.members as u64 * 10).clamp(1_000, 5_000))
    }

    /// When the publisher stops, from the stream's start.
    pub fn stream_end(&self) -> Duration {
        self.ramp() + Duration::from_secs_f64(self.seconds)
    }

    /// A member's endpoint: Flash-era keying and the 1024-bit DH group only, as Flash
    /// Player members use (and as `join` does), so the members' peer ids are the ones
    /// Flash-era peers open sessions to; and no 2048/4096-bit key pairs to make.
    pub fn member_endpoint() -> EndpointConfig {
        EndpointConfig {
            initiator_layouts: vec![HandshakeLayout::Rfc7425],
            groups: vec![DhGroup::Modp1024],
            ..EndpointConfig::default()
        }
    }

    pub fn spec() -> GroupSpec {
        GroupSpec::from_name_or_spec(GROUP).expect("a group name")
    }

    /// Who joins and leaves when, from the stream's start: the first `members` slots
    /// join over the ramp; with churn, `churn × members` of them (drawn with the seed)
    /// leave at times spread over the first 80% of the run, each as a new slot joins.
    pub fn schedule(&self) -> Vec<Slot> {
        let n = self.members;
        let ramp = self.ramp();
        let mut slots: Vec<Slot> = (0..n)
            .map(|i| Slot {
                join_at: ramp.mul_f64(i as f64 / n as f64),
                leave_at: None,
            })
            .collect();
        let churned = ((self.churn * n as f64).round() as usize).min(n);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xc4u64);
        let mut order: Vec<usize> = (0..n).collect();
        for i in 0..churned {
            let j = rng.gen_range(i..n);
            order.swap(i, j);
        }
        let span = Duration::from_secs_f64(self.seconds * 0.8);
        for (k, &leaver) in order[..churned].iter().enumerate() {
            let at = ramp + span.mul_f64((k as f64 + 0.5) / churned as f64);
            slots[leaver].leave_at = Some(at);
            slots.push(Slot {
                join_at: at,
                leave_at: None,
            });
        }
        slots
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub join_at: Duration,
    pub leave_at: Option<Duration>,
}

/// The synthetic H.264/AAC-shaped stream: AVC and AAC sequence headers first, 25 video
/// frames/s with a keyframe every 25 (three times the size of the others), ~43 small AAC
/// frames/s, sized to the bitrate. Every video frame carries its index and send time (µs)
/// right after its 5-byte FLV video header.
pub struct Source {
    key_bytes: usize,
    frame_bytes: usize,
    t0_us: u64,
    headers_sent: bool,
    video: u32,
    audio: u32,
    pub log: StreamLog,
}

/// What the publisher sent.
#[derive(Debug, Clone, Default)]
pub struct StreamLog {
    /// Video frames sent (indexes 0..frames).
    pub frames: u32,
    /// Keyframes: index and send time.
    pub keyframes: Vec<(u32, u64)>,
    /// Media payload bytes sent (the stream).
    pub bytes: u64,
}

impl Source {
    pub fn new(bitrate_kbps: u32, t0_us: u64) -> Self {
        let audio_bps = AUDIO_BYTES as u64 * 8 * 1_000_000 / AUDIO_FRAME_US;
        let video_bps = (u64::from(bitrate_kbps) * 1000).saturating_sub(audio_bps);
        let per_frame = video_bps / 8 / u64::from(FPS);
        let g = u64::from(GOP);
        let frame_bytes = (per_frame * g / (g + 2)).max(64) as usize;
        Source {
            key_bytes: frame_bytes * 3,
            frame_bytes,
            t0_us,
            headers_sent: false,
            video: 0,
            audio: 0,
            log: StreamLog::default(),
        }
    }

    /// When the stream started (its first messages are due then).
    pub fn t0(&self) -> u64 {
        self.t0_us
    }

    /// When the next message is due.
    pub fn next_due(&self) -> u64 {
        self.video_due().min(self.audio_due())
    }

    fn video_due(&self) -> u64 {
        self.t0_us + u64::from(self.video) * 1_000_000 / u64::from(FPS)
    }

    fn audio_due(&self) -> u64 {
        self.t0_us + u64::from(self.audio) * AUDIO_FRAME_US
    }

    /// The messages due by `now_us`, stamped with `now_us` as their send time.
    pub fn due(&mut self, now_us: u64) -> Vec<MediaMessage> {
        let mut out = Vec::new();
        if !self.headers_sent {
            self.headers_sent = true;
            out.push(MediaMessage::new(
                MediaKind::Video,
                0,
                vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0],
            ));
            out.push(MediaMessage::new(
                MediaKind::Audio,
                0,
                vec![0xaf, 0x00, 0x12, 0x10],
            ));
        }
        while self.video_due().min(self.audio_due()) <= now_us {
            if self.video_due() <= self.audio_due() {
                let i = self.video;
                let key = i % GOP == 0;
                let ts = ((self.video_due() - self.t0_us) / 1000) as u32;
                let mut p = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
                p.extend_from_slice(&i.to_be_bytes());
                p.extend_from_slice(&now_us.to_be_bytes());
                p.resize(
                    if key {
                        self.key_bytes
                    } else {
                        self.frame_bytes
                    },
                    0x5a,
                );
                if key {
                    self.log.keyframes.push((i, now_us));
                }
                self.video += 1;
                self.log.frames = self.video;
                out.push(MediaMessage::new(MediaKind::Video, ts, p));
            } else {
                let ts = ((self.audio_due() - self.t0_us) / 1000) as u32;
                let mut p = vec![0xaf, 0x01];
                p.extend_from_slice(&self.audio.to_be_bytes());
                p.resize(AUDIO_BYTES, 0x21);
                self.audio += 1;
                out.push(MediaMessage::new(MediaKind::Audio, ts, p));
            }
        }
        self.log.bytes += out.iter().map(|m| m.payload.len() as u64).sum::<u64>();
        out
    }
}

/// A video frame's index and send time (µs), if it is one of ours.
pub fn frame_mark(m: &MediaMessage) -> Option<(u32, u64)> {
    if m.kind != MediaKind::Video || m.payload.len() < 17 || m.is_sequence_header() {
        return None;
    }
    let p = &m.payload;
    Some((
        u32::from_be_bytes(p[5..9].try_into().ok()?),
        u64::from_be_bytes(p[9..17].try_into().ok()?),
    ))
}

/// What one member (one schedule slot) saw and did. Times in µs on the run's clock.
#[derive(Debug, Clone, Default)]
pub struct MemberRecord {
    pub joined_us: u64,
    pub left_us: Option<u64>,
    /// The first decoded frame (a keyframe): index and when it came out.
    pub first_key: Option<(u32, u64)>,
    /// Video frame indexes output, in order.
    pub frames: Vec<u32>,
    /// Send-to-output latency of each of those frames, µs.
    pub latencies_us: Vec<u32>,
    /// Its group stream's counters when it left or the run ended.
    pub counters: StreamCounters,
    /// Of its new fragments, those the server sent.
    pub from_server: u64,
    /// The server's fragments published when it joined, and when it left or the run
    /// ended: the stream over its lifetime.
    pub published_at_join: u64,
    pub published_at_end: u64,
    /// UDP payload bytes it sent to peers (not the server), and got from the server.
    pub wire_up: u64,
    pub wire_from_server: u64,
    /// What its player side reported (missing ids, gaps, late fragments) when it left or
    /// the run ended.
    pub reassembly: ReassemblyStats,
    /// Fragments and bytes its store held then.
    pub held: (usize, usize),
    /// Its peer id and its neighbours then (sim only).
    pub peer_id: Option<PeerId>,
    pub neighbours: Vec<PeerId>,
}

impl MemberRecord {
    pub fn on_media(&mut self, m: &MediaMessage, now_us: u64) {
        if let Some((index, sent)) = frame_mark(m) {
            if self.first_key.is_none() && m.is_keyframe() {
                self.first_key = Some((index, now_us));
            }
            self.frames.push(index);
            self.latencies_us
                .push(now_us.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct GroupRun {
    pub members: usize,
    pub records: Vec<MemberRecord>,
    pub stream: StreamLog,
    /// The server's group member: fragments it cut from the stream and sent to members.
    pub server_published: u64,
    pub server_sent: u64,
    /// Seconds the run took on the wall clock.
    pub wall_seconds: f64,
}

/// The numbers the summary line reports.
#[derive(Debug, Clone, Default)]
pub struct GroupSummary {
    pub members: usize,
    pub delivered: f64,
    pub missing: u64,
    pub server_upload_ratio: f64,
    pub member_upload_ratio_max: f64,
    pub p99_ms: f64,
    pub p50_ms: f64,
    pub join_to_first_keyframe_p99_ms: f64,
    pub join_to_first_keyframe_p50_ms: f64,
    /// Members whose first keyframe came more than [`JOIN_GOAL`] after they joined.
    pub joins_over_goal: usize,
    pub never_started: usize,
    pub duplicates: f64,
    pub pulls: f64,
    pub from_server: f64,
    pub server_wire_ratio: f64,
    pub member_wire_ratio_max: f64,
    pub frames: u32,
    pub joined: usize,
    pub left: usize,
    pub wall_seconds: f64,
}

fn percentile_ms(mut v: Vec<u32>, q: f64) -> f64 {
    v.sort_unstable();
    super::percentile(&v, q).map_or(0.0, |us| f64::from(us) / 1000.0)
}

impl GroupRun {
    pub fn summary(&self) -> GroupSummary {
        let last = self.stream.frames;
        let (mut expected, mut got) = (0u64, 0u64);
        let mut never_started = 0;
        let mut latencies = Vec::new();
        let mut joins = Vec::new();
        let (mut received, mut dups, mut pulls, mut from_server) = (0u64, 0u64, 0u64, 0u64);
        let (mut member_max, mut wire_max) = (0f64, 0f64);
        let mut wire_from_server = 0u64;
        let per_fragment = self.stream.bytes as f64 / self.server_published.max(1) as f64;
        for r in &self.records {
            latencies.extend_from_slice(&r.latencies_us);
            wire_from_server += r.wire_from_server;
            received += r.counters.fragments_received;
            dups += r.counters.duplicates;
            pulls += r.counters.pulls_sent;
            from_server += r.from_server;
            if let Some((_, at)) = r.first_key {
                joins.push(at.saturating_sub(r.joined_us).min(u64::from(u32::MAX)) as u32);
            }
            // Upload ratios over the member's lifetime, for members that saw at least a
            // quarter of the stream (a short life makes a ratio of small numbers).
            let lifetime = r.published_at_end.saturating_sub(r.published_at_join);
            if lifetime * 4 >= self.server_published && lifetime > 0 {
                member_max = member_max.max(r.counters.fragments_sent as f64 / lifetime as f64);
                wire_max = wire_max.max(r.wire_up as f64 / (lifetime as f64 * per_fragment));
            }
            if r.left_us.is_some() {
                continue;
            }
            let start = match r.first_key {
                Some((i, _)) => Some(i),
                None => {
                    let goal = r.joined_us + JOIN_GOAL.as_micros() as u64;
                    let first = self.stream.keyframes.iter().find(|(_, at)| *at >= goal);
                    if first.is_some() {
                        never_started += 1;
                    }
                    first.map(|(i, _)| *i)
                }
            };
            let Some(start) = start else { continue };
            expected += u64::from(last.saturating_sub(start));
            let mut seen: Vec<u32> = r
                .frames
                .iter()
                .copied()
                .filter(|&i| i >= start && i < last)
                .collect();
            seen.sort_unstable();
            seen.dedup();
            got += seen.len() as u64;
        }
        GroupSummary {
            members: self.members,
            delivered: if expected == 0 {
                0.0
            } else {
                got as f64 / expected as f64
            },
            missing: expected - got,
            server_upload_ratio: self.server_sent as f64 / self.server_published.max(1) as f64,
            member_upload_ratio_max: member_max,
            p50_ms: percentile_ms(latencies.clone(), 0.50),
            p99_ms: percentile_ms(latencies, 0.99),
            join_to_first_keyframe_p50_ms: percentile_ms(joins.clone(), 0.50),
            joins_over_goal: joins
                .iter()
                .filter(|&&j| u64::from(j) > JOIN_GOAL.as_micros() as u64)
                .count(),
            join_to_first_keyframe_p99_ms: percentile_ms(joins, 0.99),
            never_started,
            duplicates: dups as f64 / received.max(1) as f64,
            pulls: pulls as f64 / received.max(1) as f64,
            from_server: from_server as f64 / received.max(1) as f64,
            server_wire_ratio: wire_from_server as f64 / self.stream.bytes.max(1) as f64,
            member_wire_ratio_max: wire_max,
            frames: last,
            joined: self.records.len(),
            left: self.records.iter().filter(|r| r.left_us.is_some()).count(),
            wall_seconds: self.wall_seconds,
        }
    }
}

impl GroupSummary {
    /// The key=value line: the six headline keys first, extras after.
    pub fn line(&self) -> String {
        format!(
            "members={} delivered={:.4} missing={} server_upload_ratio={:.2} \
             member_upload_ratio_max={:.2} p99_ms={:.1} p50_ms={:.1} \
             join_to_first_keyframe_p99_ms={:.0} join_to_first_keyframe_p50_ms={:.0} \
             joins_over_2s={} never_started={} duplicates={:.3} pulls={:.3} \
             from_server={:.3} server_wire_ratio={:.2} member_wire_ratio_max={:.2} frames={} \
             joined={} left={} wall_s={:.1}",
            self.members,
            self.delivered,
            self.missing,
            self.server_upload_ratio,
            self.member_upload_ratio_max,
            self.p99_ms,
            self.p50_ms,
            self.join_to_first_keyframe_p99_ms,
            self.join_to_first_keyframe_p50_ms,
            self.joins_over_goal,
            self.never_started,
            self.duplicates,
            self.pulls,
            self.from_server,
            self.server_wire_ratio,
            self.member_wire_ratio_max,
            self.frames,
            self.joined,
            self.left,
            self.wall_seconds,
        )
    }
}

/// Runs the bench in the chosen mode.
pub fn run(opts: &GroupOptions) -> Result<GroupRun> {
    opts.check()?;
    let started = std::time::Instant::now();
    let mut run = match opts.mode {
        Mode::Sim => super::group_sim::run(opts)?,
        Mode::Udp => super::group_udp::run(opts)?,
    };
    run.wall_seconds = started.elapsed().as_secs_f64();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_has_its_bitrate_and_marks() {
        let mut s = Source::new(500, 1_000);
        let mut msgs = Vec::new();
        let mut now = 1_000;
        while now < 1_000 + 10_000_000 {
            msgs.extend(s.due(now));
            now = s.next_due();
        }
        let kbps = s.log.bytes * 8 / 10 / 1000;
        assert!((480..=520).contains(&kbps), "{kbps} kbit/s");
        assert_eq!(s.log.frames, 250);
        assert_eq!(s.log.keyframes.len(), 10);
        let marks: Vec<(u32, u64)> = msgs.iter().filter_map(frame_mark).collect();
        assert_eq!(marks.len(), 250);
        assert_eq!(marks[26], (26, 1_000 + 26 * 40_000));
        assert!(msgs[0].is_sequence_header() && msgs[1].is_sequence_header());
    }

    #[test]
    fn churn_replaces_members_within_the_run() {
        let opts = GroupOptions {
            members: 100,
            churn: 0.3,
            ..GroupOptions::default()
        };
        let slots = opts.schedule();
        assert_eq!(slots.len(), 130);
        assert_eq!(slots.iter().filter(|s| s.leave_at.is_some()).count(), 30);
        assert!(slots
            .iter()
            .filter_map(|s| s.leave_at)
            .all(|t| t > opts.ramp() && t < opts.stream_end()));
    }
}
