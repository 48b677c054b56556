//! End to end on loopback with real tools: ffmpeg publishes over RTMP and plays over
//! RTMP, `rtmfp-edge publish|play` over RTMFP, ffprobe checks what came out.
//! ffmpeg and ffprobe come from Debian (scripts/setup installs them).

#[path = "support/media_tools.rs"]
mod media_tools;
#[path = "support/server.rs"]
mod server;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use media_tools::{of_kind, packets, scratch, source, tool, Packet};
use server::{Server, BIN};

/// Video from the first keyframe on, and the audio, must match the source exactly.
fn assert_same_media(source: &Path, output: &Path) {
    let (src, out) = (packets(source), packets(output));
    let video = |p: &[Packet]| {
        let v = of_kind(p, "video");
        let first_key = v.iter().position(|p| p.key).unwrap_or(v.len());
        v[first_key..].to_vec()
    };
    let (src_video, out_video) = (video(&src), video(&out));
    assert!(!src_video.is_empty());
    assert_eq!(out_video.len(), src_video.len(), "video frame count");
    assert!(out_video == src_video, "video payloads differ");
    let (src_audio, out_audio) = (of_kind(&src, "audio"), of_kind(&out, "audio"));
    assert_eq!(out_audio.len(), src_audio.len(), "audio frame count");
    assert!(out_audio == src_audio, "audio payloads differ");
}

fn spawn_player(url: &str, output: &Path) -> Child {
    Command::new(BIN)
        .args(["play", url, "--output"])
        .arg(output)
        .args(["--timeout", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the server logs that `n` players are playing `stream`.
fn wait_players(server: &mut Server, stream: &str, n: usize) {
    let tail = format!("stream: \"{stream}\" }}");
    server.wait_count(
        |l| l.starts_with("Playing {") && l.ends_with(&tail),
        n,
        Duration::from_secs(15),
    );
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ffmpeg_publish(input: &Path, url: &str) -> Output {
    tool("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(input)
        .args(["-c", "copy", "-f", "flv", url])
        .output()
        .unwrap()
}

#[test]
fn ffmpeg_publishes_over_rtmp_and_two_rtmfp_players_get_every_frame() {
    let dir = scratch("rtmp-in");
    let src = source(&dir, 4);
    let mut server = Server::start(&[]);
    let url = server.rtmfp_url("live/cam");
    let (out1, out2) = (dir.join("p1.flv"), dir.join("p2.flv"));
    let p1 = spawn_player(&url, &out1);
    let p2 = spawn_player(&url, &out2);
    wait_players(&mut server, "cam", 2);
    let published = ffmpeg_publish(&src, &server.rtmp_url("live/cam"));
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    finish(p1, "player 1");
    finish(p2, "player 2");
    assert_same_media(&src, &out1);
    assert_same_media(&src, &out2);
}

/// The shard that owns each RTMFP session the server logged (the top byte of its id).
fn session_shards(server: &Server) -> Vec<u8> {
    server
        .log
        .iter()
        .filter_map(|l| l.strip_prefix("rtmfp session "))
        .filter(|l| l.contains(" from "))
        .filter_map(|l| u8::from_str_radix(l.get(..2)?, 16).ok())
        .collect()
}

fn publisher_reaches_players_on_every_shard(io: &str) {
    let dir = scratch(&format!("shards-{io}"));
    let src = source(&dir, 4);
    let mut server = Server::start(&["--shards", "2", "--io", io]);
    let url = server.rtmfp_url("live/spread");
    // Players until both shards have some (the kernel spreads them by address and port).
    let mut players = Vec::new();
    while players.len() < 16 {
        let out = dir.join(format!("p{}.flv", players.len()));
        players.push((spawn_player(&url, &out), out));
        wait_players(&mut server, "spread", players.len());
        let shards = session_shards(&server);
        if shards.contains(&0) && shards.contains(&1) {
            break;
        }
    }
    let shards = session_shards(&server);
    assert!(
        shards.contains(&0) && shards.contains(&1),
        "16 players all on one shard: {shards:?}"
    );
    let published = ffmpeg_publish(&src, &server.rtmp_url("live/spread"));
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    for (i, (p, out)) in players.into_iter().enumerate() {
        finish(p, &format!("player {i}"));
        assert_same_media(&src, &out);
    }
}

#[test]
fn a_publisher_on_one_shard_reaches_players_on_every_shard_on_io_uring() {
    publisher_reaches_players_on_every_shard("uring");
}

#[test]
fn a_publisher_on_one_shard_reaches_players_on_every_shard_on_the_plain_loop() {
    publisher_reaches_players_on_every_shard("poll");
}

#[test]
fn rtmfp_publisher_reaches_an_ffmpeg_rtmp_player_with_every_frame() {
    let dir = scratch("rtmfp-in");
    let src = source(&dir, 4);
    let mut server = Server::start(&[]);
    let out = dir.join("rtmp-out.flv");
    let player = tool("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            &server.rtmp_url("live/cam"),
        ])
        .args(["-c", "copy", "-f", "flv"])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_players(&mut server, "cam", 1);
    let published = Command::new(BIN)
        .args([
            "publish",
            &server.rtmfp_url("live/cam"),
            "--no-pace",
            "--input",
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    finish(player, "ffmpeg player");
    assert_same_media(&src, &out);
}

#[test]
fn player_joining_mid_stream_starts_at_a_keyframe_and_decodes() {
    let dir = scratch("mid");
    let src = source(&dir, 5);
    let mut server = Server::start(&[]);
    let publisher = Command::new(BIN)
        .args(["publish", &server.rtmfp_url("live/late"), "--input"])
        .arg(&src)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for(
        |l| l.contains("Publishing {") && l.contains("\"late\""),
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(1700));
    let out = dir.join("late.flv");
    let player = spawn_player(&server.rtmfp_url("live/late"), &out);
    finish(publisher, "publisher");
    finish(player, "player");
    let got = packets(&out);
    let video = of_kind(&got, "video");
    assert!(
        video.first().is_some_and(|p| p.key),
        "first video frame is a keyframe"
    );
    let src_video = of_kind(&packets(&src), "video");
    assert!(video.len() < src_video.len(), "joined mid-stream");
    assert!(video.len() >= 25, "got at least a second of video");
    // Every frame it got is the source's, in order, from a keyframe on.
    let start = src_video
        .iter()
        .position(|p| *p == video[0])
        .expect("frame from the source");
    assert!(src_video[start..].starts_with(&video));
    let decode = tool("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "decodes cleanly: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
}

fn refusal(output: Output) -> String {
    assert!(!output.status.success(), "expected a refusal");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refusals_carry_the_status_codes_clients_expect() {
    let dir = scratch("refuse");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[[app]]\nname = \"live\"\n\n[app.connect]\ntoken = \"s3cret\"\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let play = |url: &str, token: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args([
            "play",
            url,
            "--output",
            "/dev/null",
            "--timeout",
            "5",
            "--duration",
            "1",
        ]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c.output().unwrap()
    };
    let err = refusal(play(&server.rtmfp_url("live/x"), None));
    assert!(
        err.contains("NetConnection.Connect.Rejected") && err.contains("token"),
        "{err}"
    );
    let err = refusal(play(&server.rtmfp_url("live/x"), Some("wrong")));
    assert!(err.contains("NetConnection.Connect.Rejected"), "{err}");
    let err = refusal(play(&server.rtmfp_url("nosuchapp/x"), Some("s3cret")));
    assert!(err.contains("NetConnection.Connect.InvalidApp"), "{err}");

    // A second publisher of a live name is refused with BadName.
    let first = Command::new(BIN)
        .args([
            "publish",
            &server.rtmfp_url("live/dup"),
            "--token",
            "s3cret",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = server;
    server.wait_for(
        |l| l.contains("Publishing {") && l.contains("\"dup\""),
        Duration::from_secs(10),
    );
    let second = Command::new(BIN)
        .args([
            "publish",
            &server.rtmfp_url("live/dup"),
            "--token",
            "s3cret",
            "--timeout",
            "5",
        ])
        .output()
        .unwrap();
    let err = refusal(second);
    assert!(err.contains("NetStream.Publish.BadName"), "{err}");
    finish(first, "first publisher");
}

#[test]
fn player_plays_a_peer_published_stream_directly_after_the_servers_introduction() {
    let dir = scratch("direct");
    let src = source(&dir, 4);
    let mut server = Server::start(&["--rtmp", "off"]);
    let url = server.rtmfp_url("live/p2p");
    let mut publisher = Command::new(BIN)
        .args(["publish", &url, "--direct", "--input"])
        .arg(&src)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The publisher prints its peer ID once its session with the server is up.
    let mut stderr = std::io::BufReader::new(publisher.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let peer = line.rsplit("peer id: ").next().unwrap().trim().to_owned();
    assert_eq!(peer.len(), 64, "{line}");
    let out = dir.join("direct.flv");
    let player = Command::new(BIN)
        .args(["play", &url, "--peer", &peer, "--output"])
        .arg(&out)
        .args(["--timeout", "10"])
        .output()
        .unwrap();
    assert!(
        player.status.success(),
        "{}",
        String::from_utf8_lossy(&player.stderr)
    );
    assert!(publisher.wait().unwrap().success());
    server.wait_for(
        |l| l.starts_with("introduced ") && l.ends_with(&peer),
        Duration::from_secs(5),
    );
    assert!(
        !server
            .log
            .iter()
            .any(|l| l.starts_with("Publishing {") || l.starts_with("Playing {")),
        "the media went peer to peer, not through the server:\n{}",
        server.log.join("\n")
    );
    let got = packets(&out);
    let video = of_kind(&got, "video");
    assert!(video.first().is_some_and(|p| p.key), "starts at a keyframe");
    assert!(video.len() >= 50, "got {} video frames", video.len());
    let src_video = of_kind(&packets(&src), "video");
    let start = src_video
        .iter()
        .position(|p| *p == video[0])
        .expect("frame from the source");
    assert!(
        src_video[start..].starts_with(&video),
        "frames are the source's, in order"
    );
}
