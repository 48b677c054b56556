//! SIGHUP reloads `serve --config FILE` in the running process: it prints what changed,
//! a player of an app that stays keeps its session and gets its stream, a player of an
//! app that went is told why and closed, a new app takes connects, and a file with an
//! error is refused (naming file:line:column) while the server runs on.

#[path = "support/server.rs"]
mod server;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use server::{Server, BIN};

const BEFORE: &str = r#"
[[app]]
name = "live"

[[app]]
name = "event"
[app.connect]
token = "viewer"
"#;

const AFTER: &str = r#"
[[app]]
name = "live"

[[app]]
name = "extra"
"#;

/// Line 5, column 10 is the bad CIDR.
const BROKEN: &str = r#"
[[app]]
name = "live"
[app.connect]
allow = ["10.0.0.0/33"]
"#;

fn play(url: &str, extra: &[&str], output: &Path) -> Child {
    Command::new(BIN)
        .args(["play", url, "--output"])
        .arg(output)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rtmfp-edge play")
}

fn finished(child: Child, what: &str) -> (Output, String) {
    let out = child.wait_with_output().expect(what);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

#[test]
fn sighup_reloads_the_config_and_keeps_serving_the_sessions_it_still_allows() {
    let dir = std::env::temp_dir().join(format!("rtmfp-edge-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, BEFORE).unwrap();
    let config_arg = config.to_str().unwrap();
    // Two shards: the new config must reach each.
    let mut server = Server::start(&["--rtmp", "off", "--shards", "2", "--config", config_arg]);
    let long = ["--duration", "60", "--timeout", "60"];
    let stays = play(&server.rtmfp_url("live/cam"), &long, &dir.join("stays.flv"));
    let goes = play(
        &server.rtmfp_url("event/cam"),
        &[&long[..], &["--token", "viewer"]].concat(),
        &dir.join("goes.flv"),
    );
    server.wait_count(|l| l.contains("Playing {"), 2, Duration::from_secs(20));

    std::fs::write(&config, AFTER).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for(|l| l.starts_with("config reload"), Duration::from_secs(10));
    assert_eq!(
        line,
        format!("config reloaded from {config_arg}: apps added: extra; apps removed: event")
    );
    for shard in 0..2 {
        server.wait_for(
            |l| l.starts_with(&format!("shard {shard}: reloaded config in effect")),
            Duration::from_secs(5),
        );
    }
    let (out, err) = finished(goes, "the event player");
    assert!(!out.status.success(), "the event player was closed: {err}");
    assert!(
        err.contains(
            "NetConnection.Connect.InvalidApp: no application \"event\" on this server \
             (the server's config changed)"
        ),
        "the event player was told why: {err}"
    );

    // A file with an error is refused; the server keeps what it runs with.
    std::fs::write(&config, BROKEN).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for(
        |l| l.starts_with("config reload rejected"),
        Duration::from_secs(10),
    );
    assert!(
        line.starts_with(&format!("config reload rejected: {config_arg}:5:10: ")),
        "{line}"
    );
    assert!(
        line.ends_with("still running the previous config"),
        "{line}"
    );

    // The app the good reload added takes connects.
    let (out, err) = finished(
        play(
            &server.rtmfp_url("extra/anything"),
            &["--duration", "1"],
            &dir.join("extra.flv"),
        ),
        "the extra player",
    );
    assert!(out.status.success(), "a player of the added app: {err}");

    // The live player, connected before both reloads, is served on the same session.
    let publish = Command::new(BIN)
        .args(["publish", &server.rtmfp_url("live/cam"), "--no-pace"])
        .output()
        .unwrap();
    assert!(
        publish.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let (out, err) = finished(stays, "the live player");
    assert!(out.status.success(), "the live player: {err}");
    let frames: u64 = err
        .split("played cam: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in: {err}"));
    assert!(frames > 100, "the live player got the stream: {err}");

    let (status, _) = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "serve exited with {status}");
    std::fs::remove_dir_all(&dir).ok();
}
