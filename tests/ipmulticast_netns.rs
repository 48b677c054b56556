//! Native IP multicast end to end, with real processes in a network namespace the test
//! creates and deletes (loopback with multicast on and a 224.0.0.0/4 route): `serve`,
//! ffmpeg publishing over RTMP in real time, five `join` members. The stream goes out by
//! IP multicast because ffmpeg's stream name asks for it (`fms.multicast.*`, as for AMS's
//! multicast service), or because of `serve --group --multicast-form ip`. Each member takes the whole stream from IP multicast (the server pushes
//! nothing to them), and its FLV holds the publisher's frames unchanged from its first
//! keyframe to the end. With `--multicast-fec 8+2` and every 10th multicast datagram
//! dropped on the way in (nftables), each member rebuilds what was lost from the repair
//! datagrams. Needs root (CI runs as root).

#[path = "support/media_tools.rs"]
mod media_tools;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/server.rs"]
mod server;

use std::process::Child;
use std::time::Duration;

use media_tools::{
    assert_tail_of, field, of_kind, packets, publish_in_real_time, scratch, source, Packet,
};
use netns::Netns;
use server::{spawn_member, Server};

const MEMBERS: usize = 5;
const GROUP: &str = "ipmc-test";

/// A namespace (deleted on drop) with `lo` up, multicast on it, and a route for
/// 224.0.0.0/4 through it.
fn multicast_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.lo_up();
    ns.ip(&["link", "set", "lo", "multicast", "on"]);
    ns.ip(&["route", "add", "224.0.0.0/4", "dev", "lo"]);
    ns
}

/// What one member printed last, and its FLV.
struct MemberRun {
    summary: String,
    output: std::path::PathBuf,
}

/// How the stream comes to go out by IP multicast.
enum Policy<'a> {
    /// `serve --group --multicast-form ip --multicast-address` and these flags.
    Serve(&'a [&'a str]),
    /// A plain `serve`; ffmpeg names group, form and address in the stream name, the way
    /// encoders set up for AMS's multicast service do.
    StreamName,
}

/// `serve` and five members in a namespace, ffmpeg publishing 6 s; `drop_every`: the
/// namespace drops every nth multicast datagram on the way in.
fn run(name: &str, policy: Policy<'_>, drop_every: Option<u32>) -> (Vec<MemberRun>, Vec<Packet>) {
    // Real-time runs, one at a time even under a test harness that runs tests in threads.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch(name);
    let src = source(&dir, 6);
    let ns = multicast_netns(name);
    if let Some(n) = drop_every {
        let rules = format!(
            "add table inet mcloss; \
             add chain inet mcloss input {{ type filter hook input priority 0; }}; \
             add rule inet mcloss input ip daddr 239.77.0.1 udp dport 30077 \
             numgen inc mod {n} 0 drop"
        );
        ns.nft(&rules);
    }
    let mut args = vec![];
    let mut stream = "live/cam".to_owned();
    match policy {
        Policy::Serve(extra) => {
            args.extend([
                "--group",
                GROUP,
                "--multicast-form",
                "ip",
                "--multicast-address",
                "239.77.0.1:30077",
            ]);
            args.extend_from_slice(extra);
        }
        Policy::StreamName => stream.push_str(&format!(
            "?fms.multicast.type=2&fms.multicast.groupspec={GROUP}\
                 &fms.multicast.address=239.77.0.1:30077"
        )),
    }
    let mut server = Server::start_in(Some(ns.name()), &args);
    let url = server.rtmfp_url("live");
    let outputs: Vec<_> = (0..MEMBERS)
        .map(|i| dir.join(format!("member{i}.flv")))
        .collect();
    let members: Vec<Child> = outputs
        .iter()
        .map(|o| spawn_member(Some(ns.name()), &url, GROUP, o, 18))
        .collect();
    server.wait_count(
        |l| l.starts_with("GroupJoined {"),
        MEMBERS,
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(2));
    publish_in_real_time(Some(ns.name()), &src, &server.rtmp_url(&stream));

    let mut runs = Vec::new();
    for (i, (member, output)) in members.into_iter().zip(&outputs).enumerate() {
        let out = member.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "member {i} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("the group's stream is also on IP multicast 239.77.0.1:30077"),
            "member {i} was told the address:\n{stdout}"
        );
        let summary = stdout
            .lines()
            .rfind(|l| l.starts_with("neighbours="))
            .unwrap_or_else(|| panic!("member {i} printed no summary:\n{stdout}"));
        eprintln!("member {i}: {summary}");
        runs.push(MemberRun {
            summary: summary.to_string(),
            output: output.clone(),
        });
    }
    (runs, packets(&src))
}

/// The member's FLV holds the publisher's packets from its first keyframe to the end.
fn check_output(i: usize, run: &MemberRun, source_packets: &[Packet]) {
    let got = packets(&run.output);
    let video = of_kind(&got, "video");
    assert!(
        video.first().is_some_and(|p| p.key),
        "member {i} starts at a keyframe"
    );
    assert_tail_of(
        &of_kind(source_packets, "video"),
        &video,
        &format!("member {i} video"),
    );
    assert_tail_of(
        &of_kind(source_packets, "audio"),
        &of_kind(&got, "audio"),
        &format!("member {i} audio"),
    );
}

#[test]
fn five_members_take_the_stream_from_ip_multicast_an_encoder_asked_for() {
    let (runs, source_packets) = run("ipmc", Policy::StreamName, None);
    let mut datagrams = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let summary = &run.summary;
        let received = field(summary, "fragments_received");
        let by_multicast = field(summary, "from_multicast");
        assert!(received > 0, "member {i}: {summary}");
        assert_eq!(
            by_multicast, received,
            "member {i}: all by IP multicast: {summary}"
        );
        datagrams.push(field(summary, "multicast_datagrams"));
        check_output(i, run, &source_packets);
    }
    // One send reached them all: every member took the same datagrams.
    assert!(
        datagrams.iter().all(|&d| d == datagrams[0] && d > 0),
        "{datagrams:?}"
    );
}

#[test]
fn members_rebuild_lost_multicast_datagrams_by_fec() {
    // Every 10th datagram is lost (before the members' sockets, so all lose the same
    // ones): at most one of every block's 8+2.
    let (runs, source_packets) = run(
        "ipmc-fec",
        Policy::Serve(&["--multicast-fec", "8+2"]),
        Some(10),
    );
    for (i, run) in runs.iter().enumerate() {
        let summary = &run.summary;
        let received = field(summary, "fragments_received");
        let repaired = field(summary, "repaired_fec");
        assert!(received > 0, "member {i}: {summary}");
        assert!(repaired * 20 >= received, "member {i}: {summary}");
        assert_eq!(
            field(summary, "from_multicast") + repaired,
            received,
            "member {i}: all by IP multicast, whole or rebuilt: {summary}"
        );
        check_output(i, run, &source_packets);
    }
}
