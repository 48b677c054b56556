//! The RTMP connection and the FLV codec against the real ffmpeg: ffmpeg publishes to a
//! tiny server driven by `RtmpConnection` (both handshake dialects), plays back from it
//! (which makes ffmpeg verify our digest S1/S2), and reads FLV we write through a pipe.
//!
//! ffmpeg and ffprobe must be installed (scripts/setup does it); without them these tests
//! fail rather than pass silently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use rtmfp_edge::flv::{FlvHeader, FlvReader, FlvTag, FlvWriter, TagType, VideoTagHeader};
use rtmfp_edge::rtmp::{
    BandwidthLimit, ConnectionConfig, Event, HandshakeKind, MessageType, RtmpConnection,
    RtmpMessage, ServerHandshakeMode, UserControlEvent,
};

const TOOL_TIMEOUT: Duration = Duration::from_secs(90);

/// A minimal AMF0 codec, enough to read command names and answer them. Test-only: the real
/// one lives in src/flash.
mod amf0 {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Number(f64),
        Bool(bool),
        String(String),
        Object(Vec<(String, Value)>),
        Null,
        Undefined,
    }

    pub fn encode(values: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            put(v, &mut out);
        }
        out
    }

    fn put_str(s: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn put(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Number(n) => {
                out.push(0x00);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::Bool(b) => out.extend_from_slice(&[0x01, *b as u8]),
            Value::String(s) => {
                out.push(0x02);
                put_str(s, out);
            }
            Value::Object(props) => {
                out.push(0x03);
                for (k, v) in props {
                    put_str(k, out);
                    put(v, out);
                }
                out.extend_from_slice(&[0, 0, 0x09]);
            }
            Value::Null => out.push(0x05),
            Value::Undefined => out.push(0x06),
        }
    }

    /// Reads one value; returns it and the bytes consumed.
    pub fn read(b: &[u8]) -> Option<(Value, usize)> {
        let marker = *b.first()?;
        let body = &b[1..];
        match marker {
            0x00 => Some((
                Value::Number(f64::from_be_bytes(body.get(..8)?.try_into().ok()?)),
                9,
            )),
            0x01 => Some((Value::Bool(*body.first()? != 0), 2)),
            0x02 => {
                let (s, n) = read_str(body)?;
                Some((Value::String(s), 1 + n))
            }
            // Object, or ECMA array (a 4-byte count, then the same layout).
            0x03 | 0x08 => {
                let mut at = if marker == 0x08 { 4 } else { 0 };
                let mut props = Vec::new();
                loop {
                    if body.get(at..at + 3)? == [0, 0, 9] {
                        return Some((Value::Object(props), 1 + at + 3));
                    }
                    let (k, n) = read_str(&body[at..])?;
                    at += n;
                    let (v, n) = read(&body[at..])?;
                    at += n;
                    props.push((k, v));
                }
            }
            0x05 => Some((Value::Null, 1)),
            0x06 => Some((Value::Undefined, 1)),
            _ => None,
        }
    }

    fn read_str(b: &[u8]) -> Option<(String, usize)> {
        let len = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
        let s = String::from_utf8(b.get(2..2 + len)?.to_vec()).ok()?;
        Some((s, 2 + len))
    }

    pub fn read_all(mut b: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some((v, n)) = read(b) {
            out.push(v);
            b = &b[n..];
        }
        out
    }

    pub fn object(props: &[(&str, Value)]) -> Value {
        Value::Object(
            props
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    pub fn string(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

use amf0::Value;

/// Runs a tool to completion with a deadline; fails the test with a clear message if the
/// tool is missing.
fn run_tool(name: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut child = Command::new(name)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{name}` ({e}): these tests need ffmpeg and ffprobe; install them with scripts/setup (apt-get install ffmpeg)")
        });
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("piped");
        // A reader that stops early closes the pipe; that is its business, not an error here.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "`{name} {}` did not finish within {TOOL_TIMEOUT:?}",
                args.join(" ")
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    if let Some(f) = feeder {
        f.join().expect("stdin feeder");
    }
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn require_tools() {
    for tool in ["ffmpeg", "ffprobe"] {
        let out = run_tool(tool, &["-hide_banner", "-version"], None);
        assert!(out.status.success(), "`{tool} -version` failed");
    }
}

fn has_encoder(name: &str) -> bool {
    let out = run_tool("ffmpeg", &["-hide_banner", "-encoders"], None);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// Video and audio encoder arguments: H.264 + AAC, which Debian's ffmpeg has; the test
/// insists on them since the assertions are about AVC and AAC sequence headers.
fn codec_args() -> Vec<&'static str> {
    assert!(
        has_encoder("libx264") && has_encoder("aac"),
        "this ffmpeg lacks libx264 or aac; install Debian's ffmpeg (scripts/setup)"
    );
    vec![
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
    ]
}

/// What the test server saw on one connection.
#[derive(Debug, Default)]
struct Session {
    handshake: Option<HandshakeKind>,
    commands: Vec<String>,
    /// Audio, video and data messages, in arrival order.
    media: Vec<RtmpMessage>,
    stream_name: Option<String>,
}

fn command(txn: f64, name: &str, args: &[Value], stream_id: u32) -> RtmpMessage {
    let mut values = vec![amf0::string(name), Value::Number(txn)];
    values.extend_from_slice(args);
    RtmpMessage::new(
        MessageType::CommandAmf0,
        0,
        stream_id,
        amf0::encode(&values),
    )
}

fn status(code: &str) -> Value {
    amf0::object(&[
        ("level", amf0::string("status")),
        ("code", amf0::string(code)),
        ("description", amf0::string(code)),
    ])
}

/// Accepts one connection and answers ffmpeg's commands just enough to publish, or to
/// play `to_play` back. Returns when the peer hangs up (publish) or after sending (play).
fn serve_one(
    listener: TcpListener,
    mode: ServerHandshakeMode,
    to_play: Vec<RtmpMessage>,
) -> Session {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let mut sock: TcpStream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "ffmpeg never connected");
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(TOOL_TIMEOUT)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let config = ConnectionConfig {
        server_handshake: mode,
        ..Default::default()
    };
    let mut conn = RtmpConnection::server(config, &mut rng);
    let mut session = Session::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done_playing = false;
    while !done_playing {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        };
        conn.feed(&buf[..n]).expect("ffmpeg's bytes are valid RTMP");
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::HandshakeDone(kind) => session.handshake = Some(kind),
                Event::Message(m) if m.type_id == MessageType::CommandAmf0 => {
                    let values = amf0::read_all(&m.payload);
                    let (Some(Value::String(name)), Some(Value::Number(txn))) =
                        (values.first(), values.get(1))
                    else {
                        panic!("command without name and transaction id: {values:?}");
                    };
                    session.commands.push(name.clone());
                    match name.as_str() {
                        "connect" => {
                            conn.set_window_ack_size(2_500_000).unwrap();
                            conn.set_peer_bandwidth(2_500_000, BandwidthLimit::Dynamic)
                                .unwrap();
                            conn.set_chunk_size(4096).unwrap();
                            let props = amf0::object(&[
                                ("fmsVer", amf0::string("FMS/3,5,7,7009")),
                                ("capabilities", Value::Number(31.0)),
                            ]);
                            let mut info = status("NetConnection.Connect.Success");
                            if let Value::Object(p) = &mut info {
                                p.push(("objectEncoding".into(), Value::Number(0.0)));
                            }
                            conn.send_message(&command(*txn, "_result", &[props, info], 0))
                                .unwrap();
                        }
                        "releaseStream" | "FCPublish" => conn
                            .send_message(&command(
                                *txn,
                                "_result",
                                &[Value::Null, Value::Undefined],
                                0,
                            ))
                            .unwrap(),
                        "createStream" => conn
                            .send_message(&command(
                                *txn,
                                "_result",
                                &[Value::Null, Value::Number(1.0)],
                                0,
                            ))
                            .unwrap(),
                        "publish" => {
                            if let Some(Value::String(s)) = values.get(3) {
                                session.stream_name = Some(s.clone());
                            }
                            conn.send_user_control(&UserControlEvent::StreamBegin(1))
                                .unwrap();
                            let st = status("NetStream.Publish.Start");
                            conn.send_message(&command(0.0, "onStatus", &[Value::Null, st], 1))
                                .unwrap();
                        }
                        "play" => {
                            if let Some(Value::String(s)) = values.get(3) {
                                session.stream_name = Some(s.clone());
                            }
                            conn.send_user_control(&UserControlEvent::StreamBegin(1))
                                .unwrap();
                            let st = status("NetStream.Play.Start");
                            conn.send_message(&command(0.0, "onStatus", &[Value::Null, st], 1))
                                .unwrap();
                            for m in &to_play {
                                let mut m = m.clone();
                                m.stream_id = 1;
                                conn.send_message(&m).unwrap();
                            }
                            conn.send_user_control(&UserControlEvent::StreamEof(1))
                                .unwrap();
                            done_playing = true;
                        }
                        _ => {}
                    }
                }
                Event::Message(m)
                    if matches!(
                        m.type_id,
                        MessageType::Audio | MessageType::Video | MessageType::DataAmf0
                    ) =>
                {
                    session.media.push(m)
                }
                _ => {}
            }
        }
        let out = conn.take_output();
        if !out.is_empty() && sock.write_all(&out).is_err() {
            break;
        }
    }
    if done_playing {
        // Let ffmpeg drain what we sent before the socket closes.
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        while matches!(sock.read(&mut buf), Ok(n) if n > 0) {}
    }
    session
}

/// Has ffmpeg publish `seconds` of test pattern and tone to our server.
fn publish(mode: ServerHandshakeMode, seconds: &str) -> (Session, Output) {
    require_tools();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || serve_one(listener, mode, Vec::new()));
    let url = format!("rtmp://127.0.0.1:{port}/live/test");
    let mut args = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        seconds,
    ];
    args.extend(codec_args());
    args.extend(["-f", "flv", &url]);
    let out = run_tool("ffmpeg", &args, None);
    let session = server.join().expect("server thread");
    assert!(
        out.status.success(),
        "ffmpeg publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (session, out)
}

fn video_headers(media: &[RtmpMessage]) -> Vec<(u32, VideoTagHeader)> {
    media
        .iter()
        .filter(|m| m.type_id == MessageType::Video)
        .map(|m| {
            (
                m.timestamp,
                VideoTagHeader::parse(&m.payload).expect("video header"),
            )
        })
        .collect()
}

/// FLV tags for what was received; the `@setDataFrame` wrapper of the metadata is removed
/// so that it reads as a file's onMetaData.
fn to_tags(media: &[RtmpMessage]) -> Vec<FlvTag> {
    media
        .iter()
        .map(|m| match m.type_id {
            MessageType::Audio => FlvTag::new(TagType::Audio, m.timestamp, m.payload.clone()),
            MessageType::Video => FlvTag::new(TagType::Video, m.timestamp, m.payload.clone()),
            _ => {
                let body = match amf0::read(&m.payload) {
                    Some((Value::String(s), n)) if s == "@setDataFrame" => m.payload[n..].to_vec(),
                    _ => m.payload.clone(),
                };
                FlvTag::new(TagType::Script, m.timestamp, body)
            }
        })
        .collect()
}

fn write_flv(tags: &[FlvTag]) -> Vec<u8> {
    let mut w = FlvWriter::new(FlvHeader::new(true, true));
    let mut out = Vec::new();
    for t in tags {
        w.write_tag(t, &mut out).unwrap();
    }
    out
}

/// `ffprobe` on an FLV file or, with `path` = "pipe:0", on `stdin`; returns
/// (codec_type, codec_name, frames read) per stream.
fn probe(path: &str, stdin: Option<Vec<u8>>) -> Vec<(String, String, u64)> {
    let out = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
            "-f",
            "flv",
            "-i",
            path,
        ],
        stdin,
    );
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut streams: Vec<(String, String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            assert!(f.len() >= 3, "unexpected ffprobe line {l:?}");
            (
                f[1].to_string(),
                f[0].to_string(),
                f[2].parse().unwrap_or(0),
            )
        })
        .collect();
    streams.sort();
    streams
}

#[test]
fn ffmpeg_publishes_h264_and_aac_and_we_record_it_to_flv() {
    let (session, _) = publish(ServerHandshakeMode::Auto, "3");
    // ffmpeg's C1 carries a digest; finding it means our digest check matches ffmpeg's.
    assert!(
        matches!(session.handshake, Some(HandshakeKind::Digest(_))),
        "handshake: {:?}",
        session.handshake
    );
    for c in [
        "connect",
        "releaseStream",
        "FCPublish",
        "createStream",
        "publish",
    ] {
        assert!(
            session.commands.iter().any(|s| s == c),
            "no {c} in {:?}",
            session.commands
        );
    }
    assert_eq!(session.stream_name.as_deref(), Some("test"));

    let media = &session.media;
    let videos = video_headers(media);
    assert!(
        videos.iter().any(|(_, h)| h.is_avc_sequence_header()),
        "no AVC sequence header"
    );
    assert!(
        media
            .iter()
            .filter(|m| m.type_id == MessageType::Audio)
            .any(|m| rtmfp_edge::flv::AudioTagHeader::parse(&m.payload)
                .is_ok_and(|h| h.is_aac_sequence_header())),
        "no AAC sequence header"
    );
    let keyframes = videos.iter().filter(|(_, h)| h.is_keyframe()).count();
    assert!(keyframes >= 1, "no keyframe");
    assert!(
        videos.windows(2).all(|w| w[0].0 <= w[1].0),
        "video timestamps go backwards"
    );
    let first = media.iter().map(|m| m.timestamp).min().unwrap();
    let last = videos.iter().map(|(t, _)| *t).max().unwrap();
    let duration = last - first;
    assert!(
        (2_500..=3_500).contains(&duration),
        "video spans {duration} ms; expected about 3 s"
    );
    let frames = videos
        .iter()
        .filter(|(_, h)| h.packet_type == Some(1))
        .count();
    assert!(
        (70..=80).contains(&frames),
        "{frames} video frames for 3 s at 25 fps"
    );

    let path: PathBuf = [env!("CARGO_TARGET_TMPDIR"), "rtmp_ffmpeg_ingest.flv"]
        .iter()
        .collect();
    std::fs::write(&path, write_flv(&to_tags(media))).unwrap();
    let streams = probe(path.to_str().unwrap(), None);
    assert_eq!(streams.len(), 2, "streams: {streams:?}");
    assert_eq!(
        (streams[0].0.as_str(), streams[0].1.as_str()),
        ("audio", "aac")
    );
    assert_eq!(
        (streams[1].0.as_str(), streams[1].1.as_str()),
        ("video", "h264")
    );
    assert_eq!(
        streams[1].2, frames as u64,
        "ffprobe decodes every frame we recorded"
    );
}

#[test]
fn ffmpeg_accepts_the_simple_handshake_zero_version_s1_and_echoed_c1() {
    let (session, _) = publish(ServerHandshakeMode::Simple, "1");
    assert_eq!(session.handshake, Some(HandshakeKind::Simple));
    assert!(video_headers(&session.media)
        .iter()
        .any(|(_, h)| h.is_keyframe()));
}

#[test]
fn ffmpeg_plays_from_us_and_verifies_our_digest_handshake() {
    // Material to play: one second of what ffmpeg itself would publish, via an FLV pipe.
    require_tools();
    let mut args = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "1",
    ];
    args.extend(codec_args());
    args.extend(["-f", "flv", "pipe:1"]);
    let out = run_tool("ffmpeg", &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = FlvReader::new();
    reader.feed(&out.stdout).unwrap();
    reader.finish().unwrap();
    let to_play: Vec<RtmpMessage> = std::iter::from_fn(|| reader.poll_tag())
        .filter(|t| t.tag_type != TagType::Script)
        .map(|t| {
            let type_id = match t.tag_type {
                TagType::Audio => MessageType::Audio,
                _ => MessageType::Video,
            };
            RtmpMessage::new(type_id, t.timestamp, 1, t.data)
        })
        .collect();
    let sent_frames = to_play
        .iter()
        .filter(|m| m.type_id == MessageType::Video)
        .filter(|m| VideoTagHeader::parse(&m.payload).is_ok_and(|h| h.packet_type == Some(1)))
        .count();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || serve_one(listener, ServerHandshakeMode::Auto, to_play));
    let url = format!("rtmp://127.0.0.1:{port}/live/test");
    // When playing, ffmpeg checks a non-zero-version S1's digest and S2's signature and
    // gives up on a mismatch, so getting frames proves our digest answer right.
    let out = run_tool(
        "ffmpeg",
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            &url,
            "-c",
            "copy",
            "-f",
            "flv",
            "pipe:1",
        ],
        None,
    );
    let session = server.join().expect("server thread");
    assert!(
        matches!(session.handshake, Some(HandshakeKind::Digest(_))),
        "handshake: {:?}; ffmpeg said: {}",
        session.handshake,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        session.commands.iter().any(|c| c == "play"),
        "{:?}",
        session.commands
    );
    let mut reader = FlvReader::new();
    reader.feed(&out.stdout).unwrap();
    let got_frames = std::iter::from_fn(|| reader.poll_tag())
        .filter(|t| t.tag_type == TagType::Video)
        .filter(|t| t.video_header().is_some_and(|h| h.packet_type == Some(1)))
        .count();
    assert!(
        got_frames + 2 >= sent_frames && got_frames > 0,
        "ffmpeg played {got_frames} of {sent_frames} frames; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ffmpeg_reads_flv_we_write_through_a_pipe() {
    require_tools();
    let mut args = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "2",
    ];
    args.extend(codec_args());
    args.extend(["-f", "flv", "pipe:1"]);
    let out = run_tool("ffmpeg", &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Read ffmpeg's FLV in awkward pieces.
    let mut reader = FlvReader::new();
    for piece in out.stdout.chunks(777) {
        reader.feed(piece).unwrap();
    }
    reader.finish().unwrap();
    let header = *reader.header().expect("header read");
    assert!(header.has_audio && header.has_video);
    let tags: Vec<FlvTag> = std::iter::from_fn(|| reader.poll_tag()).collect();
    assert!(tags.iter().any(|t| t.is_avc_sequence_header()));
    assert!(tags.iter().any(|t| t.is_aac_sequence_header()));
    assert!(tags.iter().filter(|t| t.is_keyframe()).count() >= 2);
    let frames = tags
        .iter()
        .filter(|t| t.video_header().is_some_and(|h| h.packet_type == Some(1)))
        .count();

    // Write it back with our writer and have ffprobe decode it from a pipe.
    let ours = write_flv(&tags);
    assert_eq!(ours, out.stdout, "our writer reproduces ffmpeg's bytes");
    let streams = probe("pipe:0", Some(ours));
    assert_eq!(streams.len(), 2, "streams: {streams:?}");
    assert_eq!(
        (streams[0].0.as_str(), streams[0].1.as_str()),
        ("audio", "aac")
    );
    assert_eq!(
        (streams[1].0.as_str(), streams[1].1.as_str(), streams[1].2),
        ("video", "h264", frames as u64)
    );
}
