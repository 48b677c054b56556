//! Native IP multicast end to end, with real processes in a network namespace the test
//! creates and deletes (loopback with multicast on and a 224.0.0.0/4 route): `serve
//! --group --multicast-form ip`, ffmpeg publishing over RTMP in real time, five `join`
//! members. Each member takes the whole stream from IP multicast (the server pushes
//! nothing to them), and its FLV holds the publisher's frames unchanged from its first
//! keyframe to the end. Needs root (CI runs as root).

#[path = "support/media_tools.rs"]
mod media_tools;
#[path = "support/server.rs"]
mod server;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use media_tools::{assert_tail_of, field, of_kind, packets, scratch, source};
use server::{Server, BIN};

const MEMBERS: usize = 5;
const GROUP: &str = "ipmc-test";

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("rtmfp-mc-{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {} (this test needs root and network namespaces)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.0, "link", "set", "lo", "multicast", "on"]);
        ip(&["-n", &ns.0, "route", "add", "224.0.0.0/4", "dev", "lo"]);
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn spawn_member(ns: &Netns, url: &str, output: &Path) -> Child {
    ns.command(BIN)
        .args(["join", url, "--group", GROUP, "--play", "cam", "--output"])
        .arg(output)
        .args(["--duration", "18"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn five_members_take_the_stream_from_ip_multicast() {
    let dir = scratch("ipmc");
    let src = source(&dir, 6);
    let ns = Netns::new();
    let mut server = Server::start_in(
        Some(&ns.0),
        &[
            "--group",
            GROUP,
            "--multicast-form",
            "ip",
            "--multicast-address",
            "239.77.0.1:30077",
        ],
    );
    let url = server.rtmfp_url("live");
    let outputs: Vec<_> = (0..MEMBERS)
        .map(|i| dir.join(format!("member{i}.flv")))
        .collect();
    let members: Vec<Child> = outputs.iter().map(|o| spawn_member(&ns, &url, o)).collect();
    server.wait_count(
        |l| l.starts_with("GroupJoined {"),
        MEMBERS,
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(2));
    let published = ns
        .command("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(&src)
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url("live/cam"))
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );

    let source_packets = packets(&src);
    let mut datagrams = Vec::new();
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
        let received = field(summary, "fragments_received");
        let by_multicast = field(summary, "from_multicast");
        assert!(received > 0, "member {i}: {summary}");
        assert_eq!(
            by_multicast, received,
            "member {i}: all by IP multicast: {summary}"
        );
        datagrams.push(field(summary, "multicast_datagrams"));

        let got = packets(output);
        let video = of_kind(&got, "video");
        assert!(
            video.first().is_some_and(|p| p.key),
            "member {i} starts at a keyframe"
        );
        assert_tail_of(
            &of_kind(&source_packets, "video"),
            &video,
            &format!("member {i} video"),
        );
        assert_tail_of(
            &of_kind(&source_packets, "audio"),
            &of_kind(&got, "audio"),
            &format!("member {i} audio"),
        );
    }
    // One send reached them all: every member took the same datagrams.
    assert!(
        datagrams.iter().all(|&d| d == datagrams[0] && d > 0),
        "{datagrams:?}"
    );
}
