//! What a shard's server holds and has done, copied into atomics a few times a second so
//! that metrics can read it from another thread without touching the shard's data path.
//! The shard is the only writer; readers see each value whole, not all of them at one
//! instant (a scrape may mix two snapshots, which counters and gauges tolerate).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::session_histograms::{SessionHistograms, SnapshotHistogram, FAN_OUT_BOUNDS_MICROS};
use crate::metrics::status::StatusSlot;
use crate::proto::{DropReason, Instant};
use crate::server::config::RefusalKind;
use crate::server::edge::EdgeServer;

/// How often a shard copies its server's numbers: often enough for a scrape every few
/// seconds, rarely enough that walking the sessions and streams costs nothing.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);
/// How often the session histograms are taken: they visit every session (cold memory on
/// a shard of thousands), so once a second, a fraction of a scrape interval.
pub const HISTOGRAMS_EVERY: Duration = Duration::from_secs(1);

/// A shard's server in numbers; see docs/metrics.md for what each becomes.
#[derive(Debug, Default)]
pub struct ServerSnapshot {
    /// Datagrams the endpoint dropped, by [`DropReason::ALL`]'s order.
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Connects, publishes, plays and group joins refused, by [`RefusalKind::ALL`]'s
    /// order.
    pub refusals: [AtomicU64; RefusalKind::ALL.len()],
    /// Bytes of the datagrams the endpoint handed out to send (not IP multicast).
    pub bytes_sent: AtomicU64,
    /// IHellos answered with a cookie.
    pub cookies_sent: AtomicU64,
    pub sessions_accepted: AtomicU64,
    pub sessions_initiated: AtomicU64,
    pub handshakes_failed: AtomicU64,
    /// Fragments presumed lost and queued again, all sessions so far.
    pub fragments_retransmitted: AtomicU64,
    /// Gauges: sessions open, clients connected to an app, streams published here,
    /// players, group memberships of this shard's clients.
    pub sessions: AtomicU64,
    pub connections: AtomicU64,
    pub streams: AtomicU64,
    pub players: AtomicU64,
    pub group_members: AtomicU64,
    /// IP multicast datagrams this shard's senders let out (data and FEC repair), and
    /// those they dropped because the stream outran the pacing.
    pub multicast_sent: AtomicU64,
    pub multicast_dropped: AtomicU64,
    /// The open sessions (those `sessions` counts) by smoothed RTT and congestion window.
    pub session_histograms: SessionHistograms,
    /// Every fan-out so far by its latency ([`EdgeServer::fan_out_latency`]).
    pub fan_out_latency: FanOutLatency,
    /// Streams and groups for the status page, copied only while it is being read.
    pub status: StatusSlot,
    /// When the shard last copied (its clock, microseconds); 0: never.
    taken_at: AtomicU64,
    /// When it last took the session histograms; 0: never.
    histograms_taken_at: AtomicU64,
}

/// The fan-out latency histogram (cumulative over the shard's life, not a snapshot of now).
#[derive(Debug)]
pub struct FanOutLatency(pub SnapshotHistogram<{ FAN_OUT_BOUNDS_MICROS.len() }>);

impl Default for FanOutLatency {
    fn default() -> Self {
        FanOutLatency(SnapshotHistogram::new(FAN_OUT_BOUNDS_MICROS))
    }
}

impl ServerSnapshot {
    /// Copies `server`'s numbers, unless the last copy is younger than
    /// [`SNAPSHOT_EVERY`]. Called by the shard alone, once per loop turn.
    pub fn take(&self, server: &EdgeServer, now: Instant) {
        let last = Instant::from_micros(self.taken_at.load(Ordering::Relaxed));
        if last != Instant::ZERO && now.saturating_since(last) < SNAPSHOT_EVERY {
            return;
        }
        self.taken_at
            .store(now.as_micros().max(1), Ordering::Relaxed);
        let set = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        let endpoint = &server.endpoint;
        let drops = endpoint.drops();
        for (counter, reason) in self.drops.iter().zip(DropReason::ALL) {
            set(counter, drops.get(&reason).copied().unwrap_or(0));
        }
        let c = endpoint.counters();
        set(&self.bytes_sent, c.bytes_sent);
        set(&self.cookies_sent, c.cookies_sent);
        set(&self.sessions_accepted, c.sessions_accepted);
        set(&self.sessions_initiated, c.sessions_initiated);
        set(&self.handshakes_failed, c.handshakes_failed);
        set(
            &self.fragments_retransmitted,
            endpoint.fragments_retransmitted(),
        );
        set(&self.sessions, endpoint.session_count() as u64);
        let histograms_at = Instant::from_micros(self.histograms_taken_at.load(Ordering::Relaxed));
        if histograms_at == Instant::ZERO || now.saturating_since(histograms_at) >= HISTOGRAMS_EVERY
        {
            self.histograms_taken_at
                .store(now.as_micros().max(1), Ordering::Relaxed);
            self.session_histograms.store(
                endpoint
                    .sessions()
                    .map(|s| (s.srtt(), s.congestion_window())),
            );
        }
        let census = server.app().census();
        set(&self.connections, census.connections as u64);
        set(&self.streams, census.streams as u64);
        set(&self.players, census.players as u64);
        set(&self.group_members, census.group_members as u64);
        let groups = server.groups();
        self.fan_out_latency.0.store(server.fan_out_latency());
        for (counter, kind) in self.refusals.iter().zip(RefusalKind::ALL) {
            set(counter, server.app().refusals(kind));
        }
        set(&self.multicast_sent, groups.multicast_sent());
        set(&self.multicast_dropped, groups.multicast_dropped());
        self.status.offer(server, now.as_micros());
    }

    pub fn get(value: &AtomicU64) -> u64 {
        value.load(Ordering::Relaxed)
    }
}
