//! Fusion multicast across network namespaces the test creates and deletes:
//!
//! ```text
//!   A: members where IP multicast reaches      S: serve, ffmpeg        B: members it does not reach
//!   10.77.1.2 as0 <------------ veth ----------> sa0 10.77.1.1
//!                                                sb0 10.77.2.1 <-- veth --> bs0 10.77.2.2
//! ```
//!
//! S routes between A and B and sends the group's IP multicast out of `sa0` only. As it
//! reaches A, an nftables rule drops 10% of it at random (multicast destinations only:
//! unicast between S and A is not touched). `serve --multicast-form fusion`, ffmpeg
//! publishing in real time. Every member writes the publisher's frames from its first
//! keyframe to the end: those in A took most fragments by IP multicast and repaired the
//! rest (FEC 8+2, then peers), those in B took none by IP multicast and got the stream from peers. Needs root.

#[path = "support/media_tools.rs"]
mod media_tools;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/server.rs"]
mod server;

use std::process::Child;
use std::time::Duration;

use media_tools::{assert_tail_of, field, of_kind, packets, publish_in_real_time, scratch, source};
use netns::{End, Netns};
use server::{spawn_member, Server};

const GROUP: &str = "fusion-test";
const MULTICAST: &str = "239.77.1.9:30079";
const SERVER_IP: &str = "10.77.1.1";

/// Namespaces S, A and B as drawn above; deleted on drop.
struct Topology {
    s: Netns,
    a: Netns,
    b: Netns,
}

impl Topology {
    fn new() -> Topology {
        let t = Topology {
            s: Netns::new("fs"),
            a: Netns::new("fa"),
            b: Netns::new("fb"),
        };
        for ns in [&t.s, &t.a, &t.b] {
            ns.lo_up();
        }
        for (other, here, there, net) in [(&t.a, "sa0", "as0", "1"), (&t.b, "sb0", "bs0", "2")] {
            netns::veth(
                End::new(&t.s, here).addr(&format!("10.77.{net}.1/24")),
                End::new(other, there).addr(&format!("10.77.{net}.2/24")),
            );
            other.ip(&["route", "add", "default", "via", &format!("10.77.{net}.1")]);
        }
        t.s.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        // No multicast route in S: `--multicast-interface sa0` sends it towards A only.
        // 10% loss on multicast as it reaches A, nothing else. (This kernel has no
        // netem; an nftables rule drawing a random number per datagram does the same
        // for loss.)
        t.a.nft(
            "table ip fusion_loss {\n\
               chain lossy {\n\
                 type filter hook prerouting priority 0; policy accept;\n\
                 ip daddr 224.0.0.0/4 numgen random mod 100 < 10 counter drop\n\
               }\n\
             }\n",
        );
        t
    }

    /// Multicast datagrams the loss rule dropped on the way to A.
    fn multicast_dropped(&self) -> u64 {
        let out = self.a.exec("nft", &["list", "table", "ip", "fusion_loss"]);
        let text = String::from_utf8_lossy(&out.stdout);
        // "... counter packets N bytes M drop"
        text.split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no drop counter in:\n{text}"))
    }
}

#[test]
fn fusion_reaches_members_beyond_multicast_and_repairs_its_losses() {
    let dir = scratch("fusion");
    let src = source(&dir, 6);
    let t = Topology::new();
    let listen = format!("{SERVER_IP}:0");
    let mut server = Server::start_in(
        Some(t.s.name()),
        &[
            "--listen",
            &listen,
            "--group",
            GROUP,
            "--multicast-form",
            "fusion",
            "--multicast-address",
            MULTICAST,
            "--multicast-interface",
            "sa0",
            "--multicast-ttl",
            "1",
            "--multicast-fec",
            "8+2",
        ],
    );
    let url = server.rtmfp_url("live");
    // (namespace, reached by IP multicast)
    let places: Vec<(&str, bool)> = vec![
        (t.a.name(), true),
        (t.b.name(), false),
        (t.a.name(), true),
        (t.b.name(), false),
        (t.a.name(), true),
        (t.b.name(), false),
    ];
    let outputs: Vec<_> = (0..places.len())
        .map(|i| dir.join(format!("member{i}.flv")))
        .collect();
    let members: Vec<Child> = places
        .iter()
        .zip(&outputs)
        .map(|((ns, _), o)| spawn_member(Some(ns), &url, GROUP, o, 20))
        .collect();
    server.wait_count(
        |l| l.starts_with("GroupJoined {"),
        places.len(),
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(2));
    publish_in_real_time(Some(t.s.name()), &src, &server.rtmp_url("live/cam"));

    let source_packets = packets(&src);
    let (mut fec_in_a, mut peers_in_a) = (0, 0);
    for (i, ((member, output), (_, reached))) in
        members.into_iter().zip(&outputs).zip(&places).enumerate()
    {
        let out = member.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "member {i} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = stdout
            .lines()
            .rfind(|l| l.starts_with("neighbours="))
            .unwrap_or_else(|| panic!("member {i} printed no summary:\n{stdout}"));
        eprintln!(
            "member {i} ({}): {summary}",
            if *reached { "A" } else { "B" }
        );
        assert!(
            stdout.contains("NetStream.MulticastStream.UnpublishNotify cam"),
            "member {i} was told of the unpublish:\n{stdout}"
        );
        let received = field(summary, "fragments_received");
        let by_multicast = field(summary, "from_multicast");
        let from_peers = field(summary, "from_peers");
        assert!(received > 0, "member {i}: {summary}");
        if *reached {
            // The server listens on one address: members join for that source only.
            assert!(
                stdout.contains(&format!(
                    "joined IP multicast {MULTICAST} for source {SERVER_IP}"
                )),
                "member {i} joined source-specifically:\n{stdout}"
            );
            // 10% loss: most come by IP multicast, the rest are rebuilt from its repair
            // datagrams or pulled from peers.
            assert!(
                by_multicast * 10 >= received * 7,
                "member {i} (in A): {summary}"
            );
            let fec = field(summary, "repaired_fec");
            fec_in_a += fec;
            peers_in_a += received - by_multicast - fec;
        } else {
            assert_eq!(by_multicast, 0, "member {i} (in B): {summary}");
            assert!(
                from_peers > 0,
                "member {i} (in B) got fragments from peers: {summary}"
            );
        }
        let got = packets(output);
        let video = of_kind(&got, "video");
        assert!(
            video.first().is_some_and(|p| p.key),
            "member {i} starts at a keyframe"
        );
        assert_tail_of(
            &of_kind(&source_packets, "video"),
            &video,
            &format!("member {i} video ({summary})"),
        );
        assert_tail_of(
            &of_kind(&source_packets, "audio"),
            &of_kind(&got, "audio"),
            &format!("member {i} audio ({summary})"),
        );
    }
    // The loss was real, and what it took the members in A got back another way.
    assert!(
        t.multicast_dropped() > 0,
        "the loss rule dropped no multicast"
    );
    assert!(fec_in_a > 0, "members in A rebuilt nothing from FEC");
    eprintln!("members in A: {fec_in_a} fragments rebuilt by FEC, {peers_in_a} from peers");
}
