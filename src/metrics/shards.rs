//! The engine's metrics: every shard's counters and its server's snapshot, one sample
//! per shard (label `shard`). docs/metrics.md lists them; a test keeps the two in step.

use std::sync::atomic::AtomicU64;

use super::text::{Exposition, HistogramSeries, Kind};
use crate::engine::server_snapshot::ServerSnapshot;
use crate::engine::session_histograms::SnapshotHistogram;
use crate::engine::shard::ShardStats;
use crate::engine::xdp_guard::GuardCounters;
use crate::proto::DropReason;
use crate::server::config::RefusalKind;

/// A metric with one value per shard.
struct PerShard {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&ShardStats) -> &AtomicU64,
}

const fn counter(
    name: &'static str,
    help: &'static str,
    value: fn(&ShardStats) -> &AtomicU64,
) -> PerShard {
    PerShard {
        name,
        kind: Kind::Counter,
        help,
        value,
    }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    value: fn(&ShardStats) -> &AtomicU64,
) -> PerShard {
    PerShard {
        name,
        kind: Kind::Gauge,
        help,
        value,
    }
}

const PER_SHARD: &[PerShard] = &[
    counter(
        "rtmfp_edge_datagrams_received_total",
        "UDP datagrams the shard read from its socket.",
        |s| &s.received,
    ),
    counter(
        "rtmfp_edge_received_bytes_total",
        "Bytes of the UDP datagrams the shard read from its socket.",
        |s| &s.bytes_received,
    ),
    counter(
        "rtmfp_edge_datagrams_handled_total",
        "Datagrams given to the shard's endpoint: its own reads and those taken over.",
        |s| &s.handled,
    ),
    counter(
        "rtmfp_edge_datagrams_handed_off_total",
        "Datagrams the shard read for a session another shard owns, handed to it.",
        |s| &s.handed_off,
    ),
    counter(
        "rtmfp_edge_datagrams_taken_over_total",
        "Datagrams other shards handed to this one.",
        |s| &s.taken_over,
    ),
    counter(
        "rtmfp_edge_datagrams_sent_total",
        "UDP datagrams the shard sent: sessions, handshakes and IP multicast.",
        |s| &s.sent,
    ),
    counter(
        "rtmfp_edge_sent_bytes_total",
        "Bytes of the session and handshake datagrams the shard's endpoint put out (not IP multicast).",
        |s| &s.server.bytes_sent,
    ),
    counter(
        "rtmfp_edge_handshake_cookies_sent_total",
        "Handshakes begun by clients: IHellos answered with a cookie (RHello).",
        |s| &s.server.cookies_sent,
    ),
    counter(
        "rtmfp_edge_handshakes_failed_total",
        "Handshakes the server initiated (as a group member) that failed.",
        |s| &s.server.handshakes_failed,
    ),
    counter(
        "rtmfp_edge_fragments_retransmitted_total",
        "Flow fragments presumed lost (negative acknowledgements or a retransmission timeout) and queued again.",
        |s| &s.server.fragments_retransmitted,
    ),
    gauge(
        "rtmfp_edge_sessions",
        "RTMFP sessions open, including those closing.",
        |s| &s.server.sessions,
    ),
    gauge(
        "rtmfp_edge_connections",
        "Clients connected to an app (RTMFP and RTMP).",
        |s| &s.server.connections,
    ),
    gauge(
        "rtmfp_edge_streams",
        "Live streams published by a client of this shard.",
        |s| &s.server.streams,
    ),
    gauge(
        "rtmfp_edge_players",
        "Players of live streams among this shard's clients.",
        |s| &s.server.players,
    ),
    gauge(
        "rtmfp_edge_group_members",
        "NetGroup memberships of this shard's clients.",
        |s| &s.server.group_members,
    ),
    counter(
        "rtmfp_edge_group_fragments_sent_total",
        "Media fragments the server's own group members sent to group members.",
        |s| &s.group_fragments_sent,
    ),
    counter(
        "rtmfp_edge_multicast_datagrams_sent_total",
        "IP multicast datagrams (fragments and FEC repair) the shard's senders let out.",
        |s| &s.server.multicast_sent,
    ),
    counter(
        "rtmfp_edge_multicast_datagrams_dropped_total",
        "IP multicast datagrams dropped because the stream outran the sender's pacing.",
        |s| &s.server.multicast_dropped,
    ),
    counter(
        "rtmfp_edge_relay_messages_sent_total",
        "Publication messages sent to other shards.",
        |s| &s.relayed_out,
    ),
    counter(
        "rtmfp_edge_relay_messages_received_total",
        "Publication messages received from other shards.",
        |s| &s.relayed_in,
    ),
    counter(
        "rtmfp_edge_frames_skipped_for_lag_total",
        "Media frames lagging RTMFP players did not get (they resume at a keyframe).",
        |s| &s.frames_skipped_for_lag,
    ),
    counter(
        "rtmfp_edge_xdp_frames_received_total",
        "Frames the shard read from its AF_XDP socket's RX ring (--io xdp).",
        |s| &s.xdp.frames_received,
    ),
    counter(
        "rtmfp_edge_xdp_frames_not_ours_total",
        "Of those, frames that were not a UDP datagram for the server's port (dropped).",
        |s| &s.xdp.frames_not_ours,
    ),
    counter(
        "rtmfp_edge_xdp_datagrams_sent_total",
        "Datagrams the shard sent through its AF_XDP socket's TX ring.",
        |s| &s.xdp.sent,
    ),
    counter(
        "rtmfp_edge_xdp_datagrams_sent_by_kernel_total",
        "Datagrams the AF_XDP shard sent through its kernel socket: next hop not known yet.",
        |s| &s.xdp.sent_by_kernel,
    ),
    counter(
        "rtmfp_edge_xdp_datagrams_send_failed_total",
        "Datagrams the AF_XDP shard could send by neither path.",
        |s| &s.xdp.send_failed,
    ),
];

/// The XDP program's families (label `interface`, and `verdict` for frames).
const XDP_PROGRAM_FRAMES: &str = "rtmfp_edge_xdp_program_frames_total";
const XDP_PROGRAM_HANDSHAKES: &str = "rtmfp_edge_xdp_program_handshakes_total";

/// The XDP program's families' names, for the docs' test.
pub fn xdp_program_family_names() -> [&'static str; 2] {
    [XDP_PROGRAM_FRAMES, XDP_PROGRAM_HANDSHAKES]
}

/// The XDP program's counters on each interface it is attached to, as metric families
/// to append to [`render`]'s page (empty when it is attached nowhere).
pub fn render_xdp_program(attached: &[(&str, GuardCounters)]) -> String {
    if attached.is_empty() {
        return String::new();
    }
    let mut page = Exposition::new();
    let mut family = page.family(
        XDP_PROGRAM_FRAMES,
        Kind::Counter,
        "Frames our XDP program judged, by verdict: not_ours (not for the RTMFP port: to the kernel), passed (to the kernel), redirected (to AF_XDP), dropped_short, dropped_bad_length, dropped_handshake_rate.",
    );
    for (interface, c) in attached {
        for (verdict, value) in [
            ("not_ours", c.not_ours),
            ("passed", c.passed),
            ("redirected", c.redirected),
            ("dropped_short", c.dropped_short),
            ("dropped_bad_length", c.dropped_bad_length),
            ("dropped_handshake_rate", c.dropped_handshake_rate),
        ] {
            family.sample(&[("interface", interface), ("verdict", verdict)], value);
        }
    }
    let mut family = page.family(
        XDP_PROGRAM_HANDSHAKES,
        Kind::Counter,
        "Handshake datagrams (session id 0) our XDP program let through.",
    );
    for (interface, c) in attached {
        family.sample(&[("interface", interface)], c.handshakes);
    }
    page.into_text()
}

/// Metric families with more labels than `shard`.
const SESSIONS_OPENED: &str = "rtmfp_edge_sessions_opened_total";
const DATAGRAMS_DROPPED: &str = "rtmfp_edge_datagrams_dropped_total";
const REFUSALS: &str = "rtmfp_edge_refusals_total";

/// Histograms of the sessions open at the last snapshot (label `shard`).
const SESSION_RTT: &str = "rtmfp_edge_session_rtt_seconds";
const SESSION_CWND: &str = "rtmfp_edge_session_cwnd_bytes";
/// Histogram of fan-outs by latency, over the shard's life (label `shard`).
const FAN_OUT_LATENCY: &str = "rtmfp_edge_fan_out_seconds";

/// Every metric family's name but the histograms', for the docs' test.
pub fn family_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = PER_SHARD.iter().map(|m| m.name).collect();
    names.extend([SESSIONS_OPENED, DATAGRAMS_DROPPED, REFUSALS]);
    names
}

/// The histogram families' names, for the docs' test: their samples carry the suffixes
/// `_bucket`, `_sum` and `_count`.
pub fn histogram_family_names() -> [&'static str; 3] {
    [SESSION_RTT, SESSION_CWND, FAN_OUT_LATENCY]
}

/// One of the session histograms as a family, a series per shard; `per_unit` stored
/// units make one exposed unit.
fn shard_histogram<S: AsRef<ShardStats>, const BOUNDS: usize>(
    page: &mut Exposition,
    shards: &[S],
    name: &'static str,
    help: &str,
    which: fn(&ServerSnapshot) -> &SnapshotHistogram<BOUNDS>,
    per_unit: u64,
) {
    let mut family = page.family(name, Kind::Histogram, help);
    for (shard, stats) in shards.iter().enumerate() {
        let histogram = which(&stats.as_ref().server);
        let tally = histogram.load();
        family.histogram(
            &[("shard", &shard.to_string())],
            HistogramSeries {
                bounds: histogram.bounds(),
                counts: &tally.counts(),
                sum: tally.sum,
                per_unit,
            },
        );
    }
}

/// A counter family with a sample per shard and reason: `reasons[i]` labels `counters`'
/// i-th value.
fn counters_by_reason<S: AsRef<ShardStats>>(
    page: &mut Exposition,
    shards: &[S],
    name: &'static str,
    help: &str,
    reasons: &[&str],
    counters: fn(&ServerSnapshot) -> &[AtomicU64],
) {
    let mut family = page.family(name, Kind::Counter, help);
    for (shard, stats) in shards.iter().enumerate() {
        let shard = shard.to_string();
        for (reason, value) in reasons.iter().zip(counters(&stats.as_ref().server)) {
            family.sample(
                &[("shard", &shard), ("reason", reason)],
                ServerSnapshot::get(value),
            );
        }
    }
}

/// The page `/metrics` serves: every family, a sample per shard (by index).
pub fn render<S: AsRef<ShardStats>>(shards: &[S]) -> String {
    let mut page = Exposition::new();
    let labels: Vec<String> = (0..shards.len()).map(|i| i.to_string()).collect();
    for metric in PER_SHARD {
        let mut family = page.family(metric.name, metric.kind, metric.help);
        for (shard, stats) in labels.iter().zip(shards) {
            let value = ServerSnapshot::get((metric.value)(stats.as_ref()));
            family.sample(&[("shard", shard)], value);
        }
    }
    let mut family = page.family(
        SESSIONS_OPENED,
        Kind::Counter,
        "RTMFP sessions opened, as the responder (a client's handshake) or the initiator (the server reaching a peer).",
    );
    for (shard, stats) in labels.iter().zip(shards) {
        let server = &stats.as_ref().server;
        for (role, value) in [
            ("responder", &server.sessions_accepted),
            ("initiator", &server.sessions_initiated),
        ] {
            family.sample(
                &[("shard", shard), ("role", role)],
                ServerSnapshot::get(value),
            );
        }
    }
    let drop_reasons = DropReason::ALL.map(DropReason::name);
    counters_by_reason(
        &mut page,
        shards,
        DATAGRAMS_DROPPED,
        "Datagrams the endpoint dropped, by reason.",
        &drop_reasons,
        |s| &s.drops,
    );
    let refusal_reasons = RefusalKind::ALL.map(RefusalKind::name);
    counters_by_reason(
        &mut page,
        shards,
        REFUSALS,
        "Connects, publishes, plays and group joins the server refused, by reason (the config key of a limit).",
        &refusal_reasons,
        |s| &s.refusals,
    );
    shard_histogram(
        &mut page,
        shards,
        SESSION_RTT,
        "Open sessions by smoothed round-trip time, those with a sample: a snapshot of the sessions now (a gauge histogram), not observations over time.",
        |s| &s.session_histograms.rtt_nanos,
        1_000_000_000,
    );
    shard_histogram(
        &mut page,
        shards,
        SESSION_CWND,
        "Open sessions by congestion window: a snapshot of the sessions now (a gauge histogram), not observations over time.",
        |s| &s.session_histograms.cwnd_bytes,
        1,
    );
    shard_histogram(
        &mut page,
        shards,
        FAN_OUT_LATENCY,
        "Media messages fanned out to this shard's players, by the time from the message reaching the fan-out (with any wait behind earlier ones) to the last player's copy queued to send (its datagram leaves in the same turn).",
        |s| &s.fan_out_latency.0,
        1_000_000,
    );
    page.into_text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn every_shard_gets_a_sample_of_every_family_typed_and_helped() {
        let shards = [
            Arc::new(ShardStats::default()),
            Arc::new(ShardStats::default()),
        ];
        shards[1].received.store(7, Ordering::Relaxed);
        shards[1].server.drops[0].store(2, Ordering::Relaxed);
        let per_address =
            RefusalKind::LimitReached(crate::server::config::Limit::SessionsPerAddress);
        shards[0].server.refusals[per_address.index()].store(3, Ordering::Relaxed);
        let text = render(&shards);
        assert!(text.contains(
            "rtmfp_edge_refusals_total{shard=\"0\",reason=\"max_sessions_per_address\"} 3\n"
        ));
        assert!(text.contains("rtmfp_edge_refusals_total{shard=\"1\",reason=\"unknown_app\"} 0\n"));
        assert!(text.contains("rtmfp_edge_datagrams_received_total{shard=\"1\"} 7\n"));
        assert!(text.contains("rtmfp_edge_datagrams_received_total{shard=\"0\"} 0\n"));
        assert!(text.contains(&format!(
            "rtmfp_edge_datagrams_dropped_total{{shard=\"1\",reason=\"{}\"}} 2\n",
            DropReason::ALL[0].name()
        )));
        for name in family_names() {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
            assert!(text.contains(&format!("{name}{{shard=\"1\"")), "{name}");
        }
        for name in histogram_family_names() {
            assert_eq!(
                text.matches(&format!("# TYPE {name} histogram\n")).count(),
                1
            );
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1);
            for shard in ["0", "1"] {
                let inf = format!("{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} 0\n");
                assert!(text.contains(&inf), "{name}");
                assert!(text.contains(&format!("{name}_sum{{shard=\"{shard}\"}} 0\n")));
                assert!(text.contains(&format!("{name}_count{{shard=\"{shard}\"}} 0\n")));
            }
        }
    }

    #[test]
    fn session_histograms_render_as_the_snapshot_left_them() {
        use std::time::Duration;
        let shards = [Arc::new(ShardStats::default())];
        let ms = |n| Some(Duration::from_millis(n));
        shards[0].server.session_histograms.store([
            (ms(1), 3000),
            (Some(Duration::from_micros(15_500)), 9000),
            (ms(6000), 5 << 20),
            (None, 2000),
        ]);
        let text = render(&shards);
        let rtt = |le: &str, n: u64| {
            format!("rtmfp_edge_session_rtt_seconds_bucket{{shard=\"0\",le=\"{le}\"}} {n}\n")
        };
        let expected_rtt = [
            rtt("0.001", 1),
            rtt("0.002", 1),
            rtt("0.005", 1),
            rtt("0.01", 1),
            rtt("0.02", 2),
            rtt("0.05", 2),
            rtt("0.1", 2),
            rtt("0.2", 2),
            rtt("0.5", 2),
            rtt("1", 2),
            rtt("2", 2),
            rtt("5", 2),
            rtt("+Inf", 3),
        ]
        .concat()
            + "rtmfp_edge_session_rtt_seconds_sum{shard=\"0\"} 6.0165\n\
               rtmfp_edge_session_rtt_seconds_count{shard=\"0\"} 3\n";
        assert!(text.contains(&expected_rtt), "{text}");
        let cwnd = |le: u64, n: u64| {
            format!("rtmfp_edge_session_cwnd_bytes_bucket{{shard=\"0\",le=\"{le}\"}} {n}\n")
        };
        let mut expected_cwnd = [(2048, 1), (4096, 2), (8192, 2), (16384, 3)]
            .map(|(le, n)| cwnd(le, n))
            .concat();
        for shift in 15..=22 {
            expected_cwnd += &cwnd(1 << shift, 3);
        }
        expected_cwnd += "rtmfp_edge_session_cwnd_bytes_bucket{shard=\"0\",le=\"+Inf\"} 4\n\
                          rtmfp_edge_session_cwnd_bytes_sum{shard=\"0\"} 5256880\n\
                          rtmfp_edge_session_cwnd_bytes_count{shard=\"0\"} 4\n";
        assert!(text.contains(&expected_cwnd), "{text}");
    }

    #[test]
    fn the_xdp_program_counters_render_per_interface_and_verdict() {
        assert_eq!(render_xdp_program(&[]), "");
        let counters = GuardCounters {
            redirected: 5,
            dropped_handshake_rate: 49_792,
            handshakes: 9,
            ..GuardCounters::default()
        };
        let text = render_xdp_program(&[("eth0", counters)]);
        assert!(text.contains(
            "rtmfp_edge_xdp_program_frames_total{interface=\"eth0\",verdict=\"dropped_handshake_rate\"} 49792\n"
        ));
        assert!(text.contains(
            "rtmfp_edge_xdp_program_frames_total{interface=\"eth0\",verdict=\"redirected\"} 5\n"
        ));
        assert!(text.contains("rtmfp_edge_xdp_program_handshakes_total{interface=\"eth0\"} 9\n"));
    }

    #[test]
    fn docs_list_every_metric() {
        let docs = include_str!("../../docs/metrics.md");
        let names = family_names()
            .into_iter()
            .chain(histogram_family_names())
            .chain(xdp_program_family_names());
        for name in names {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/metrics.md lacks {name}"
            );
        }
    }
}
