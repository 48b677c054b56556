//! ffmpeg and ffprobe for the end-to-end tests: a test stream to publish, and the
//! packets of an FLV (kind, keyframe flag, payload MD5) to compare outputs with it.
//! Both tools come from Debian (scripts/setup installs them); without them these tests
//! fail rather than pass silently.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("-version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "cannot run `{name}`: these tests need ffmpeg and ffprobe; install them with scripts/setup"
    );
    Command::new(name)
}

/// ffmpeg publishes the FLV `src` in real time to the RTMP `url` (inside network
/// namespace `netns`, if given); panics with ffmpeg's errors if it fails.
pub fn publish_in_real_time(netns: Option<&str>, src: &Path, url: &str) {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ffmpeg"]);
            c
        }
        None => tool("ffmpeg"),
    };
    let published = command
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(src)
        .args(["-c", "copy", "-f", "flv", url])
        .output()
        .expect("running ffmpeg");
    assert!(
        published.status.success(),
        "ffmpeg publishing to {url}: {}",
        String::from_utf8_lossy(&published.stderr)
    );
}

pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtmfp-edge-e2e-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A short H.264 + AAC FLV from ffmpeg's test sources, a keyframe every second.
pub fn source(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("source.flv");
    let out = tool("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "flv",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// One demuxed packet: stream type, keyframe flag, MD5 of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: String,
    pub key: bool,
    pub md5: String,
}

pub fn packets(path: &Path) -> Vec<Packet> {
    let out = tool("ffprobe")
        .args(["-v", "error", "-show_packets", "-show_data_hash", "md5"])
        .args([
            "-show_entries",
            "packet=codec_type,flags,data_hash",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 3).then(|| Packet {
                kind: f[0].to_owned(),
                key: f[1].starts_with('K'),
                md5: f[2].to_owned(),
            })
        })
        .collect()
}

pub fn of_kind(p: &[Packet], kind: &str) -> Vec<Packet> {
    p.iter().filter(|p| p.kind == kind).cloned().collect()
}

/// `list` is `source` from some point on, to its end.
pub fn assert_tail_of(source: &[Packet], list: &[Packet], what: &str) {
    assert!(!list.is_empty(), "{what}: nothing");
    let start = source
        .iter()
        .position(|p| p == &list[0])
        .unwrap_or_else(|| panic!("{what}: its first packet is not the publisher's"));
    assert_eq!(
        list.len(),
        source.len() - start,
        "{what}: {} packets from the publisher's #{start} on, of {}",
        list.len(),
        source.len()
    );
    assert!(list == &source[start..], "{what}: payloads differ");
}

/// The number after `key=` in a `key=value` summary line.
pub fn field(summary: &str, key: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {summary:?}"))
}
