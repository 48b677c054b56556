//! P2P multicast end to end, with real processes on loopback: `serve --group`, ffmpeg
//! publishing over RTMP in real time, and eight `join` processes playing the stream
//! from the group. Every member's FLV holds the publisher's frames, unaltered and
//! without a gap, from its first keyframe to the end; and the members got more of the
//! stream from each other than from the server.
//!
//! ffmpeg and ffprobe come from Debian (scripts/setup installs them).

#[path = "support/media_tools.rs"]
mod media_tools;
#[path = "support/server.rs"]
mod server;

use std::process::Child;
use std::time::Duration;

use media_tools::{assert_tail_of, field, of_kind, packets, publish_in_real_time, scratch, source};
use server::{spawn_member, Server};

const MEMBERS: usize = 8;
const GROUP: &str = "e2e-loopback";

#[test]
fn ffmpeg_publishes_and_eight_members_play_it_from_each_other() {
    let dir = scratch("group");
    let src = source(&dir, 8);
    let mut server = Server::start(&["--group", GROUP]);
    server.wait_for(
        |l| l.contains("republished into group"),
        Duration::from_secs(5),
    );
    let url = server.rtmfp_url("live");
    let outputs: Vec<_> = (0..MEMBERS)
        .map(|i| dir.join(format!("member{i}.flv")))
        .collect();
    let members: Vec<Child> = outputs
        .iter()
        .map(|o| spawn_member(None, &url, GROUP, o, 30))
        .collect();
    server.wait_count(
        |l| l.starts_with("GroupJoined {"),
        MEMBERS,
        Duration::from_secs(15),
    );
    // Time for the members to open their sessions to each other and to the server.
    std::thread::sleep(Duration::from_secs(2));
    publish_in_real_time(None, &src, &server.rtmp_url("live/cam"));

    let source_packets = packets(&src);
    let source_video = of_kind(&source_packets, "video");
    let source_audio = of_kind(&source_packets, "audio");
    let (mut from_server, mut from_peers) = (0, 0);
    for (i, (member, output)) in members.into_iter().zip(&outputs).enumerate() {
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
        from_server += field(summary, "from_server");
        from_peers += field(summary, "from_peers");

        let got = packets(output);
        let video = of_kind(&got, "video");
        assert!(
            video.first().is_some_and(|p| p.key),
            "member {i} starts at a keyframe"
        );
        assert_tail_of(&source_video, &video, &format!("member {i} video"));
        assert_tail_of(
            &source_audio,
            &of_kind(&got, "audio"),
            &format!("member {i} audio"),
        );
        // Members joined before the publisher started: they play from its start.
        assert!(
            video.len() + 25 >= source_video.len(),
            "member {i} has {} of {} frames",
            video.len(),
            source_video.len()
        );
    }
    eprintln!("members got {from_server} fragments from the server, {from_peers} from peers");
    assert!(
        from_peers > from_server,
        "fragments from peers {from_peers}, from the server {from_server}"
    );
}
