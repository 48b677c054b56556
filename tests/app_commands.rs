//! The NetConnection/NetStream command exchanges real clients (Flash Player, ffmpeg, OBS)
//! rely on, driven through the sans-IO `App`: commands in as AMF0 messages, replies out as
//! `Outgoing` messages, decoded and compared exactly (codes, transaction ids, stream ids,
//! order and media bytes).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use rtmfp_edge::flash::amf::{encode_amf0_sequence, Value};
use rtmfp_edge::flash::command::{code, status_code, Command};
use rtmfp_edge::flash::tc::kind;
use rtmfp_edge::media::MediaKind;
use rtmfp_edge::server::app::{App, AppEvent, ConnId, Outgoing, Output};
use rtmfp_edge::server::config::{Limit, RefusalKind, ServerConfig};
use rtmfp_edge::server::directory::Directory;

// ---------------------------------------------------------------------------------------
// Helpers: building the server and the client's commands.

const CLIENT: &str = "203.0.113.10";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn server(toml: &str) -> App {
    let config = ServerConfig::parse(toml, "test.toml").expect("test config parses");
    App::new(Arc::new(config))
}

fn default_server() -> App {
    App::new(Arc::new(ServerConfig::embedded_default()))
}

/// Sends an AMF0 command on `stream` (0 = the NetConnection).
fn call(app: &mut App, conn: ConnId, stream: u32, cmd: Command) {
    app.message(conn, stream, kind::COMMAND_AMF0, 0, cmd.encode().into());
}

/// `connect` with transaction id 1, as every client sends it.
fn connect_cmd(
    app_name: &str,
    tc_url: &str,
    object_encoding: Option<f64>,
    extra: Vec<Value>,
) -> Command {
    let mut props = vec![
        ("app", Value::from(app_name)),
        ("flashVer", "WIN 32,0,0,465".into()),
        ("tcUrl", tc_url.into()),
        ("fpad", false.into()),
        ("capabilities", 239.0.into()),
    ];
    if let Some(e) = object_encoding {
        props.push(("objectEncoding", e.into()));
    }
    Command::new("connect", 1.0, Value::object(props), extra)
}

fn connect_to(app_name: &str) -> Command {
    connect_cmd(
        app_name,
        &format!("rtmfp://edge.example.com/{app_name}"),
        Some(3.0),
        vec![],
    )
}

fn create_stream(tx: f64) -> Command {
    Command::new("createStream", tx, Value::Null, vec![])
}

fn publish_cmd(name: &str) -> Command {
    Command::new(
        "publish",
        0.0,
        Value::Null,
        vec![name.into(), "live".into()],
    )
}

fn play_cmd(name: &str) -> Command {
    Command::new("play", 0.0, Value::Null, vec![name.into(), (-2.0).into()])
}

fn delete_stream(stream: u32) -> Command {
    Command::new(
        "deleteStream",
        0.0,
        Value::Null,
        vec![f64::from(stream).into()],
    )
}

/// Opens a client and connects it to `app_name`, checking it succeeded; the replies are
/// drained.
fn connected(app: &mut App, app_name: &str) -> ConnId {
    connected_from(app, app_name, CLIENT)
}

fn connected_from(app: &mut App, app_name: &str, client: &str) -> ConnId {
    let conn = app.open(ip(client));
    call(app, conn, 0, connect_to(app_name));
    let out = drain(app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _result#1 NetConnection.Connect.Success"],
        "connect to {app_name}"
    );
    while app.poll_event().is_some() {}
    conn
}

/// `createStream` on a connected client; returns the id from its `_result`.
fn new_stream(app: &mut App, conn: ConnId) -> u32 {
    call(app, conn, 0, create_stream(7.0));
    let out = drain(app);
    assert_eq!(out.len(), 1, "one reply to createStream: {out:?}");
    let cmd = command_of(&out[0].1).expect("a command");
    assert_eq!((cmd.name.as_str(), cmd.transaction_id), ("_result", 7.0));
    cmd.argument(0)
        .and_then(Value::as_f64)
        .expect("a stream id") as u32
}

/// A connected client with one stream publishing `name`; returns (conn, stream).
fn publishing(app: &mut App, app_name: &str, name: &str) -> (ConnId, u32) {
    let conn = connected(app, app_name);
    let stream = new_stream(app, conn);
    call(app, conn, stream, publish_cmd(name));
    let out = drain(app);
    assert_eq!(
        lines_of(&out, conn),
        [format!("s{stream} onStatus NetStream.Publish.Start")]
    );
    (conn, stream)
}

/// A connected client with one stream playing `name`; returns (conn, stream). Whatever the
/// play produced is drained.
fn playing(app: &mut App, app_name: &str, name: &str) -> (ConnId, u32) {
    let conn = connected(app, app_name);
    let stream = new_stream(app, conn);
    call(app, conn, stream, play_cmd(name));
    let out = drain(app);
    assert_eq!(
        statuses(&out, conn),
        [code::PLAY_RESET, code::PLAY_START],
        "play {name}"
    );
    (conn, stream)
}

fn send_media(app: &mut App, conn: ConnId, stream: u32, kind: u8, ts: u32, payload: &[u8]) {
    app.message(conn, stream, kind, ts, Bytes::copy_from_slice(payload));
}

/// AMF0 bytes of a sequence of values.
fn amf0(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf0_sequence(values, &mut out).expect("encodable");
    out
}

fn metadata() -> Value {
    Value::ecma_array([
        ("width", Value::from(640.0)),
        ("height", Value::from(360.0)),
        ("videocodecid", Value::from(7.0)),
    ])
}

/// What an encoder sends: `@setDataFrame, onMetaData, {...}`.
fn set_data_frame() -> Vec<u8> {
    amf0(&["@setDataFrame".into(), "onMetaData".into(), metadata()])
}

/// What a player gets: `onMetaData, {...}`.
fn on_metadata() -> Vec<u8> {
    amf0(&["onMetaData".into(), metadata()])
}

// ---------------------------------------------------------------------------------------
// Helpers: reading what the server queued.

fn drain(app: &mut App) -> Vec<(ConnId, Outgoing)> {
    std::iter::from_fn(|| app.poll_outgoing()).collect()
}

fn events(app: &mut App) -> Vec<AppEvent> {
    std::iter::from_fn(|| app.poll_event()).collect()
}

fn command_of(out: &Outgoing) -> Option<Command> {
    match out {
        Outgoing::Message {
            kind: kind::COMMAND_AMF0,
            payload,
            ..
        } => Some(Command::parse(payload).expect("server sends valid AMF0")),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

/// One output as a line: `s1 onStatus NetStream.Play.Start`, `s0 _result#2 1`,
/// `s1 StreamBegin 1`, `s1 video@40 27 01 ...`, `close`.
fn show(out: &Outgoing) -> String {
    match out {
        Outgoing::Message {
            stream_id,
            kind: kind::COMMAND_AMF0,
            ..
        } => {
            let cmd = command_of(out).unwrap();
            let tx = if cmd.transaction_id != 0.0 {
                format!("#{}", cmd.transaction_id)
            } else {
                String::new()
            };
            let what = match status_code(&cmd) {
                Some(c) => c.to_owned(),
                None => cmd
                    .arguments
                    .iter()
                    .map(show_value)
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            format!("s{stream_id} {}{tx} {what}", cmd.name)
        }
        Outgoing::Message {
            stream_id,
            kind: kind::USER_CONTROL,
            timestamp,
            payload,
        } => {
            assert_eq!(*timestamp, 0, "user control at time 0");
            match &payload[..] {
                [0, 0, id @ ..] if id.len() == 4 => {
                    format!(
                        "s{stream_id} StreamBegin {}",
                        u32::from_be_bytes(id.try_into().unwrap())
                    )
                }
                [0, 1, id @ ..] if id.len() == 4 => {
                    format!(
                        "s{stream_id} StreamEOF {}",
                        u32::from_be_bytes(id.try_into().unwrap())
                    )
                }
                other => format!("s{stream_id} user-control {}", hex(other)),
            }
        }
        Outgoing::Message {
            stream_id,
            kind,
            timestamp,
            payload,
        } => format!("s{stream_id} kind{kind}@{timestamp} {}", hex(payload)),
        Outgoing::Media { stream_id, message } => {
            let k = match message.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
                MediaKind::Data => "data",
            };
            format!(
                "s{stream_id} {k}@{} {}",
                message.timestamp,
                hex(&message.payload)
            )
        }
        Outgoing::PeerAddresses(addrs) => format!("peers {addrs:?}"),
        Outgoing::GroupMember { group, peer } => format!("group {group} member {peer}"),
        Outgoing::LeaveGroup { group } => format!("leave group {group}"),
        Outgoing::Close => "close".into(),
    }
}

/// The outputs for `conn`, in order, as lines.
fn lines_of(out: &[(ConnId, Outgoing)], conn: ConnId) -> Vec<String> {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .map(|(_, o)| show(o))
        .collect()
}

/// The status codes sent to `conn`, in order.
fn statuses(out: &[(ConnId, Outgoing)], conn: ConnId) -> Vec<String> {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, o)| command_of(o))
        .filter_map(|cmd| status_code(&cmd).map(str::to_owned))
        .collect()
}

/// The info object (first argument) of the command output carrying `code`.
fn info_with(out: &[(ConnId, Outgoing)], conn: ConnId, code: &str) -> Value {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, o)| command_of(o))
        .filter(|cmd| status_code(cmd) == Some(code))
        .find_map(|cmd| cmd.arguments.into_iter().next())
        .unwrap_or_else(|| panic!("no {code} for conn {conn} in {out:?}"))
}

fn description(info: &Value) -> &str {
    info.get("description")
        .and_then(Value::as_str)
        .expect("a description")
}

fn level(info: &Value) -> &str {
    info.get("level").and_then(Value::as_str).expect("a level")
}

// ---------------------------------------------------------------------------------------
// connect

#[test]
fn connect_to_open_app_gets_connect_success_with_object_encoding() {
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    call(&mut app, conn, 0, connect_to("live"));
    let out = drain(&mut app);
    assert_eq!(out.len(), 1, "{out:?}");
    let (to, reply) = &out[0];
    assert_eq!(*to, conn);
    let Outgoing::Message {
        stream_id, kind: k, ..
    } = reply
    else {
        panic!("not a message: {reply:?}");
    };
    assert_eq!((*stream_id, *k), (0, kind::COMMAND_AMF0));
    let cmd = command_of(reply).unwrap();
    assert_eq!(cmd.name, "_result");
    assert_eq!(cmd.transaction_id, 1.0);
    assert!(
        cmd.command_object
            .get("fmsVer")
            .and_then(Value::as_str)
            .is_some(),
        "properties carry fmsVer: {:?}",
        cmd.command_object
    );
    let info = cmd.argument(0).expect("info object");
    assert_eq!(
        info.get("code").and_then(Value::as_str),
        Some(code::CONNECT_SUCCESS)
    );
    assert_eq!(level(info), "status");
    assert_eq!(
        info.get("objectEncoding").and_then(Value::as_f64),
        Some(3.0)
    );
    assert_eq!(
        events(&mut app),
        [AppEvent::Connected {
            conn,
            app: "live".into()
        }]
    );
    assert_eq!(app.sessions_in("live"), 1);
}

#[test]
fn connect_without_object_encoding_reports_amf0() {
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    call(
        &mut app,
        conn,
        0,
        connect_cmd("live", "rtmp://h/live", None, vec![]),
    );
    let out = drain(&mut app);
    let info = info_with(&out, conn, code::CONNECT_SUCCESS);
    assert_eq!(
        info.get("objectEncoding").and_then(Value::as_f64),
        Some(0.0)
    );
}

#[test]
fn connect_with_instance_and_trailing_slash_names_the_app() {
    let mut app = default_server();
    for raw in ["live/", "live/_definst_", "/live/_definst_/"] {
        let conn = app.open(ip(CLIENT));
        call(
            &mut app,
            conn,
            0,
            connect_cmd(raw, "rtmfp://h/live", Some(0.0), vec![]),
        );
        let out = drain(&mut app);
        assert_eq!(statuses(&out, conn), [code::CONNECT_SUCCESS], "{raw}");
        assert_eq!(
            events(&mut app),
            [AppEvent::Connected {
                conn,
                app: "live".into()
            }],
            "{raw}"
        );
    }
}

#[test]
fn connect_with_only_a_tc_url_takes_the_app_from_it() {
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    call(
        &mut app,
        conn,
        0,
        connect_cmd("", "rtmfp://edge.example.com:1935/live", Some(3.0), vec![]),
    );
    assert_eq!(statuses(&drain(&mut app), conn), [code::CONNECT_SUCCESS]);
}

#[test]
fn connect_to_unknown_app_gets_invalid_app_error_then_close() {
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    call(&mut app, conn, 0, connect_to("nope"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _error#1 NetConnection.Connect.InvalidApp", "close"]
    );
    let info = info_with(&out, conn, code::CONNECT_INVALID_APP);
    assert_eq!(level(&info), "error");
    assert!(
        description(&info).contains("\"nope\""),
        "names the app: {info:?}"
    );
    let ev = events(&mut app);
    assert!(
        matches!(&ev[..], [AppEvent::Refused { conn: c, code: code::CONNECT_INVALID_APP, .. }] if *c == conn),
        "{ev:?}"
    );
    assert_eq!(app.sessions_in("nope"), 0);
}

const TOKEN_APP: &str = r#"
[[app]]
name = "event"
[app.connect]
token = "viewer-secret"
"#;

#[test]
fn connect_without_required_token_is_rejected_with_token_required() {
    let mut app = server(TOKEN_APP);
    let conn = app.open(ip(CLIENT));
    call(&mut app, conn, 0, connect_to("event"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _error#1 NetConnection.Connect.Rejected", "close"]
    );
    let info = info_with(&out, conn, code::CONNECT_REJECTED);
    assert_eq!(level(&info), "error");
    assert_eq!(description(&info), "token required");
    assert_eq!(app.sessions_in("event"), 0);
}

#[test]
fn connect_with_wrong_token_is_rejected_with_bad_token() {
    let mut app = server(TOKEN_APP);
    let conn = app.open(ip(CLIENT));
    call(
        &mut app,
        conn,
        0,
        connect_cmd(
            "event",
            "rtmfp://h/event",
            Some(3.0),
            vec!["viewer-guess".into()],
        ),
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _error#1 NetConnection.Connect.Rejected", "close"]
    );
    assert_eq!(
        description(&info_with(&out, conn, code::CONNECT_REJECTED)),
        "bad token"
    );
    let ev = events(&mut app);
    assert!(
        matches!(&ev[..], [AppEvent::Refused { code: code::CONNECT_REJECTED, reason, .. }] if reason == "bad token"),
        "{ev:?}"
    );
}

#[test]
fn connect_token_as_first_extra_argument_is_accepted() {
    let mut app = server(TOKEN_APP);
    let conn = app.open(ip(CLIENT));
    call(
        &mut app,
        conn,
        0,
        connect_cmd(
            "event",
            "rtmfp://h/event",
            Some(3.0),
            vec!["viewer-secret".into()],
        ),
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _result#1 NetConnection.Connect.Success"]
    );
    assert_eq!(app.sessions_in("event"), 1);
}

#[test]
fn connect_token_in_tc_url_query_is_accepted() {
    let mut app = server(TOKEN_APP);
    let conn = app.open(ip(CLIENT));
    call(
        &mut app,
        conn,
        0,
        connect_cmd(
            "event",
            "rtmfp://edge.example.com:1935/event?token=viewer-secret",
            Some(3.0),
            vec![],
        ),
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _result#1 NetConnection.Connect.Success"]
    );
}

#[test]
fn connect_token_in_app_name_query_is_accepted() {
    let mut app = server(TOKEN_APP);
    let conn = app.open(ip(CLIENT));
    call(
        &mut app,
        conn,
        0,
        connect_cmd(
            "event?token=viewer-secret",
            "rtmp://h/event?token=viewer-secret",
            Some(0.0),
            vec![],
        ),
    );
    let out = drain(&mut app);
    assert_eq!(statuses(&out, conn), [code::CONNECT_SUCCESS]);
    assert_eq!(
        events(&mut app),
        [AppEvent::Connected {
            conn,
            app: "event".into()
        }]
    );
}

#[test]
fn connect_from_denied_address_is_rejected_naming_the_rule() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.connect]
deny = ["192.0.2.0/24"]
"#,
    );
    // Plain IPv4, and the same client as an IPv4-mapped IPv6 address on a dual-stack socket.
    for client in ["192.0.2.5", "::ffff:192.0.2.5"] {
        let conn = app.open(ip(client));
        call(&mut app, conn, 0, connect_to("live"));
        let out = drain(&mut app);
        assert_eq!(
            lines_of(&out, conn),
            ["s0 _error#1 NetConnection.Connect.Rejected", "close"],
            "{client}"
        );
        assert_eq!(
            description(&info_with(&out, conn, code::CONNECT_REJECTED)),
            "address 192.0.2.5 is denied by rule 192.0.2.0/24"
        );
    }
    // Others are let in.
    connected_from(&mut app, "live", "198.51.100.1");
}

#[test]
fn connect_from_address_outside_allow_list_is_rejected() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.connect]
allow = ["10.0.0.0/8"]
"#,
    );
    let conn = app.open(ip("192.0.2.1"));
    call(&mut app, conn, 0, connect_to("live"));
    let out = drain(&mut app);
    assert_eq!(statuses(&out, conn), [code::CONNECT_REJECTED]);
    assert_eq!(
        description(&info_with(&out, conn, code::CONNECT_REJECTED)),
        "address 192.0.2.1 is not allowed to connect"
    );
    connected_from(&mut app, "live", "10.1.2.3");
}

#[test]
fn connect_beyond_max_sessions_is_rejected_until_a_session_closes() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.limits]
max_sessions = 2
"#,
    );
    let first = connected(&mut app, "live");
    // A refused client does not hold a session.
    let refused = app.open(ip(CLIENT));
    call(&mut app, refused, 0, connect_to("nope"));
    drain(&mut app);
    let _second = connected(&mut app, "live");
    assert_eq!(app.sessions_in("live"), 2);

    let third = app.open(ip(CLIENT));
    call(&mut app, third, 0, connect_to("live"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, third),
        ["s0 _error#1 NetConnection.Connect.Rejected", "close"]
    );
    assert_eq!(
        description(&info_with(&out, third, code::CONNECT_REJECTED)),
        "application \"live\" is full (2 sessions)"
    );

    app.close(first);
    assert_eq!(app.sessions_in("live"), 1);
    connected(&mut app, "live");
}

#[test]
fn connect_beyond_max_sessions_per_address_is_rejected_naming_the_limit() {
    let per_address = RefusalKind::LimitReached(Limit::SessionsPerAddress);
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.limits]
max_sessions_per_address = 2
"#,
    );
    let first = connected_from(&mut app, "live", "192.0.2.9");
    connected_from(&mut app, "live", "192.0.2.9");
    let third = app.open(ip("192.0.2.9"));
    call(&mut app, third, 0, connect_to("live"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, third),
        ["s0 _error#1 NetConnection.Connect.Rejected", "close"]
    );
    assert_eq!(
        description(&info_with(&out, third, code::CONNECT_REJECTED)),
        "address 192.0.2.9 has its maximum of 2 sessions in application \"live\" \
         (max_sessions_per_address)"
    );
    assert_eq!(app.refusals(per_address), 1);
    // Another address is let in; the first one again once one of its sessions closes.
    connected_from(&mut app, "live", "192.0.2.10");
    app.close(first);
    connected_from(&mut app, "live", "192.0.2.9");
    assert_eq!(app.refusals(per_address), 1);
    let others: u64 = RefusalKind::ALL
        .iter()
        .filter(|&&k| k != per_address)
        .map(|&k| app.refusals(k))
        .sum();
    assert_eq!(others, 0, "only the per-address refusal is counted");
}

#[test]
fn commands_before_connect_are_ignored() {
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    call(&mut app, conn, 0, create_stream(2.0));
    call(&mut app, conn, 1, publish_cmd("demo"));
    call(&mut app, conn, 1, play_cmd("demo"));
    call(
        &mut app,
        conn,
        0,
        Command::new("releaseStream", 3.0, Value::Null, vec!["demo".into()]),
    );
    call(
        &mut app,
        conn,
        0,
        Command::new("noSuchMethod", 4.0, Value::Null, vec![]),
    );
    send_media(&mut app, conn, 1, kind::VIDEO, 0, b"\x17\x01key");
    assert_eq!(drain(&mut app), []);
    assert_eq!(events(&mut app), []);
    // A connect on a NetStream is not a connect either.
    call(&mut app, conn, 1, connect_to("live"));
    assert_eq!(drain(&mut app), []);

    // The connection still connects normally, and its first stream is 1.
    call(&mut app, conn, 0, connect_to("live"));
    assert_eq!(statuses(&drain(&mut app), conn), [code::CONNECT_SUCCESS]);
    assert_eq!(new_stream(&mut app, conn), 1);
}

#[test]
fn commands_sent_as_amf3_messages_are_understood() {
    // Flash Player with objectEncoding 3 sends commands as message type 17: a 0 format
    // byte, then AMF0 values.
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    let mut payload = vec![0u8];
    payload.extend(connect_to("live").encode());
    app.message(conn, 0, kind::COMMAND_AMF3, 0, payload.into());
    let mut payload = vec![0u8];
    payload.extend(create_stream(2.0).encode());
    app.message(conn, 0, kind::COMMAND_AMF3, 0, payload.into());
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [
            "s0 _result#1 NetConnection.Connect.Success",
            "s0 _result#2 1"
        ]
    );
}

// ---------------------------------------------------------------------------------------
// NetConnection calls

#[test]
fn create_stream_returns_increasing_ids_with_the_callers_transaction_id() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    for tx in [2.0, 3.0, 4.0] {
        call(&mut app, conn, 0, create_stream(tx));
    }
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _result#2 1", "s0 _result#3 2", "s0 _result#4 3"]
    );
    let first = command_of(&out[0].1).unwrap();
    assert_eq!(first.command_object, Value::Null);
    assert_eq!(first.arguments, [Value::Number(1.0)]);

    // Ids are per connection, and deleting a stream does not hand its id out again.
    let other = connected(&mut app, "live");
    assert_eq!(new_stream(&mut app, other), 1);
    call(&mut app, conn, 0, delete_stream(3));
    call(&mut app, conn, 0, create_stream(5.0));
    assert_eq!(lines_of(&drain(&mut app), conn), ["s0 _result#5 4"]);
}

#[test]
fn create_stream_with_transaction_id_zero_still_gets_its_result() {
    // librtmfp calls createStream with transaction id 0 (and no command object) and waits
    // for the `_result` with the id before it publishes or plays.
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    let mut bytes = Vec::new();
    encode_amf0_sequence(&[Value::from("createStream"), 0.0.into()], &mut bytes).unwrap();
    app.message(conn, 0, kind::COMMAND_AMF0, 0, bytes.into());
    let out = drain(&mut app);
    assert_eq!(lines_of(&out, conn), ["s0 _result 1"]);
}

#[test]
fn unknown_method_with_a_transaction_id_gets_call_failed() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    call(
        &mut app,
        conn,
        0,
        Command::new("getServerTime", 5.0, Value::Null, vec![]),
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s0 _error#5 NetConnection.Call.Failed"]
    );
    let info = info_with(&out, conn, code::CALL_FAILED);
    assert_eq!(level(&info), "error");
    assert!(
        description(&info).contains("getServerTime"),
        "names the method: {info:?}"
    );

    // On a NetStream the error comes back on that stream.
    let stream = new_stream(&mut app, conn);
    call(
        &mut app,
        conn,
        stream,
        Command::new("seek", 6.0, Value::Null, vec![0.0.into()]),
    );
    assert_eq!(
        lines_of(&drain(&mut app), conn),
        [format!("s{stream} _error#6 NetConnection.Call.Failed")]
    );
}

#[test]
fn unknown_method_without_a_transaction_id_gets_no_reply() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    call(
        &mut app,
        conn,
        0,
        Command::new("onBWDone", 0.0, Value::Null, vec![]),
    );
    assert_eq!(drain(&mut app), []);
}

#[test]
fn release_stream_and_fc_publish_get_results_as_ffmpeg_waits_for_them() {
    // ffmpeg's publish sequence: releaseStream(2), FCPublish(3), createStream(4), then
    // publish on the new stream; it waits for each result.
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    call(
        &mut app,
        conn,
        0,
        Command::new("releaseStream", 2.0, Value::Null, vec!["demo".into()]),
    );
    call(
        &mut app,
        conn,
        0,
        Command::new("FCPublish", 3.0, Value::Null, vec!["demo".into()]),
    );
    call(&mut app, conn, 0, create_stream(4.0));
    call(
        &mut app,
        conn,
        1,
        Command::new(
            "publish",
            5.0,
            Value::Null,
            vec!["demo".into(), "live".into()],
        ),
    );
    call(
        &mut app,
        conn,
        0,
        Command::new("FCUnpublish", 6.0, Value::Null, vec!["demo".into()]),
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [
            "s0 _result#2 null",
            "s0 _result#3 null",
            "s0 _result#4 1",
            "s1 onStatus NetStream.Publish.Start",
            "s0 _result#6 null",
        ]
    );
}

#[test]
fn set_peer_info_reports_the_addresses_that_parse_and_can_be_reached() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    call(
        &mut app,
        conn,
        0,
        Command::new(
            "setPeerInfo",
            0.0,
            Value::Null,
            vec![
                "192.168.1.20:50000".into(),
                "not an address".into(),
                "[2001:db8::1]:50001".into(),
                // What librtmfp sends: the addresses it bound, which nobody can reach.
                "0.0.0.0:48080".into(),
                "[::]:44560".into(),
            ],
        ),
    );
    let out = drain(&mut app);
    assert_eq!(
        out,
        [(
            conn,
            Outgoing::PeerAddresses(vec![
                "192.168.1.20:50000".parse().unwrap(),
                "[2001:db8::1]:50001".parse().unwrap(),
            ])
        )]
    );
}

// ---------------------------------------------------------------------------------------
// publish

#[test]
fn publish_gets_publish_start_on_its_stream() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    let stream = new_stream(&mut app, conn);
    assert_eq!(stream, 1);
    call(&mut app, conn, stream, publish_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        ["s1 onStatus NetStream.Publish.Start"]
    );
    let info = info_with(&out, conn, code::PUBLISH_START);
    assert_eq!(level(&info), "status");
    assert!(description(&info).contains("demo"), "{info:?}");
    assert_eq!(
        events(&mut app),
        [AppEvent::Publishing {
            conn,
            stream: "demo".into()
        }]
    );
}

#[test]
fn publish_on_a_stream_that_was_not_created_is_ignored() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    call(&mut app, conn, 4, publish_cmd("demo"));
    assert_eq!(drain(&mut app), []);
    // The name is still free.
    publishing(&mut app, "live", "demo");
}

#[test]
fn publish_without_a_name_gets_bad_name() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    let stream = new_stream(&mut app, conn);
    call(&mut app, conn, stream, publish_cmd(""));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [format!("s{stream} onStatus NetStream.Publish.BadName")]
    );
    assert_eq!(
        level(&info_with(&out, conn, code::PUBLISH_BAD_NAME)),
        "error"
    );
}

#[test]
fn second_publisher_of_a_name_gets_bad_name() {
    let mut app = default_server();
    let (first, _) = publishing(&mut app, "live", "demo");
    let second = connected(&mut app, "live");
    let stream = new_stream(&mut app, second);
    call(&mut app, second, stream, publish_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, second),
        [format!("s{stream} onStatus NetStream.Publish.BadName")]
    );
    assert_eq!(lines_of(&out, first), Vec::<String>::new());
    let info = info_with(&out, second, code::PUBLISH_BAD_NAME);
    assert_eq!(level(&info), "error");
    assert_eq!(description(&info), "demo is already being published");

    // The second publisher's media goes nowhere; the first one's still reaches players.
    let (player, ps) = playing(&mut app, "live", "demo");
    send_media(
        &mut app,
        second,
        stream,
        kind::VIDEO,
        0,
        b"\x17\x01intruder",
    );
    send_media(&mut app, first, 1, kind::VIDEO, 0, b"\x17\x01owner");
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{ps} video@0 {}", hex(b"\x17\x01owner"))]
    );
}

#[test]
fn the_same_connection_can_publish_a_name_again_on_its_stream() {
    // A client that repeats publish on its own stream is not a second publisher.
    let mut app = default_server();
    let (conn, stream) = publishing(&mut app, "live", "demo");
    call(&mut app, conn, stream, publish_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [
            "s1 onStatus NetStream.Unpublish.Success",
            "s1 onStatus NetStream.Publish.Start"
        ]
    );
}

const STUDIO: &str = r#"
[[app]]
name = "event"
[app.publish]
token = "studio-secret"
allow = ["10.20.0.0/16"]
streams = ["main", "cam-*"]
"#;

#[test]
fn publish_without_publish_token_is_denied() {
    let mut app = server(STUDIO);
    let conn = connected_from(&mut app, "event", "10.20.1.1");
    let stream = new_stream(&mut app, conn);
    call(&mut app, conn, stream, publish_cmd("main"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [format!("s{stream} onStatus NetStream.Publish.Denied")]
    );
    let info = info_with(&out, conn, code::PUBLISH_DENIED);
    assert_eq!(level(&info), "error");
    assert_eq!(description(&info), "publish token required");
    assert_eq!(
        events(&mut app),
        [AppEvent::Refused {
            conn,
            code: code::PUBLISH_DENIED,
            reason: "publish token required".into(),
        }],
        "logged once, with the reason"
    );
}

#[test]
fn every_refusal_is_counted_by_its_reason() {
    let mut app = server(
        r#"
[[app]]
name = "event"
[app.publish]
token = "studio-secret"
streams = ["main", "cam-*"]
[app.limits]
max_players_per_stream = 1
"#,
    );
    let stranger = app.open(ip(CLIENT));
    call(&mut app, stranger, 0, connect_to("nope"));
    let conn = connected(&mut app, "event");
    let stream = new_stream(&mut app, conn);
    call(&mut app, conn, stream, publish_cmd("main"));
    call(
        &mut app,
        conn,
        stream,
        publish_cmd("other?token=studio-secret"),
    );
    call(
        &mut app,
        conn,
        stream,
        publish_cmd("main?token=studio-secret"),
    );
    playing(&mut app, "event", "main");
    let late = connected(&mut app, "event");
    let late_stream = new_stream(&mut app, late);
    call(&mut app, late, late_stream, play_cmd("main"));
    drain(&mut app);
    let counted: Vec<(&str, u64)> = RefusalKind::ALL
        .iter()
        .map(|&k| (k.name(), app.refusals(k)))
        .filter(|&(_, n)| n > 0)
        .collect();
    assert_eq!(
        counted,
        [
            ("unknown_app", 1),
            ("bad_token", 1),
            ("stream_not_allowed", 1),
            ("max_players_per_stream", 1)
        ]
    );
}

#[test]
fn publish_with_wrong_publish_token_is_denied() {
    let mut app = server(STUDIO);
    let conn = connected_from(&mut app, "event", "10.20.1.1");
    let stream = new_stream(&mut app, conn);
    call(&mut app, conn, stream, publish_cmd("main?token=guess"));
    let out = drain(&mut app);
    assert_eq!(statuses(&out, conn), [code::PUBLISH_DENIED]);
    assert_eq!(
        description(&info_with(&out, conn, code::PUBLISH_DENIED)),
        "bad publish token"
    );
}

#[test]
fn publish_with_token_in_stream_name_query_publishes_the_bare_name() {
    let mut app = server(STUDIO);
    let conn = connected_from(&mut app, "event", "10.20.1.1");
    let stream = new_stream(&mut app, conn);
    call(
        &mut app,
        conn,
        stream,
        publish_cmd("cam-2?token=studio-secret"),
    );
    let out = drain(&mut app);
    assert_eq!(statuses(&out, conn), [code::PUBLISH_START]);
    assert_eq!(
        events(&mut app),
        [AppEvent::Publishing {
            conn,
            stream: "cam-2".into()
        }]
    );
    // Players name the stream without the token.
    let viewer = connected(&mut app, "event");
    let vs = new_stream(&mut app, viewer);
    call(&mut app, viewer, vs, play_cmd("cam-2"));
    drain(&mut app);
    send_media(&mut app, conn, stream, kind::AUDIO, 5, b"\xaf\x01aac");
    assert_eq!(
        lines_of(&drain(&mut app), viewer),
        [format!("s{vs} audio@5 {}", hex(b"\xaf\x01aac"))]
    );
}

#[test]
fn publish_of_a_name_outside_the_stream_patterns_is_denied() {
    let mut app = server(STUDIO);
    let conn = connected_from(&mut app, "event", "10.20.1.1");
    let stream = new_stream(&mut app, conn);
    call(
        &mut app,
        conn,
        stream,
        publish_cmd("backstage?token=studio-secret"),
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [format!("s{stream} onStatus NetStream.Publish.Denied")]
    );
    assert_eq!(
        description(&info_with(&out, conn, code::PUBLISH_DENIED)),
        "stream name \"backstage\" may not be published here"
    );
}

#[test]
fn publish_from_outside_the_publish_allow_list_is_denied_even_with_the_token() {
    let mut app = server(STUDIO);
    let conn = connected_from(&mut app, "event", "192.0.2.1");
    let stream = new_stream(&mut app, conn);
    call(
        &mut app,
        conn,
        stream,
        publish_cmd("main?token=studio-secret"),
    );
    let out = drain(&mut app);
    assert_eq!(statuses(&out, conn), [code::PUBLISH_DENIED]);
    assert_eq!(
        description(&info_with(&out, conn, code::PUBLISH_DENIED)),
        "address 192.0.2.1 is not allowed to publish"
    );
}

#[test]
fn the_same_stream_name_in_two_apps_does_not_collide() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[[app]]
name = "studio"
"#,
    );
    let (pub_live, sl) = publishing(&mut app, "live", "demo");
    // Not BadName: a different app.
    let (pub_studio, ss) = publishing(&mut app, "studio", "demo");
    let (play_live, pl) = playing(&mut app, "live", "demo");
    let (play_studio, ps) = playing(&mut app, "studio", "demo");

    send_media(&mut app, pub_live, sl, kind::VIDEO, 0, b"\x17\x01from-live");
    send_media(
        &mut app,
        pub_studio,
        ss,
        kind::VIDEO,
        0,
        b"\x17\x01from-studio",
    );
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, play_live),
        [format!("s{pl} video@0 {}", hex(b"\x17\x01from-live"))]
    );
    assert_eq!(
        lines_of(&out, play_studio),
        [format!("s{ps} video@0 {}", hex(b"\x17\x01from-studio"))]
    );

    // Ending one does not end the other.
    app.close(pub_live);
    let out = drain(&mut app);
    assert_eq!(statuses(&out, play_live), [code::PLAY_UNPUBLISH_NOTIFY]);
    assert_eq!(lines_of(&out, play_studio), Vec::<String>::new());
}

#[test]
fn publish_beyond_max_streams_is_denied() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.limits]
max_streams = 1
"#,
    );
    publishing(&mut app, "live", "one");
    let conn = connected(&mut app, "live");
    let stream = new_stream(&mut app, conn);
    call(&mut app, conn, stream, publish_cmd("two"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [format!("s{stream} onStatus NetStream.Publish.Denied")]
    );
    assert_eq!(
        description(&info_with(&out, conn, code::PUBLISH_DENIED)),
        "application \"live\" has its maximum of 1 streams"
    );
}

// ---------------------------------------------------------------------------------------
// play

#[test]
fn play_sends_stream_begin_then_play_reset_then_play_start() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    let _unused = new_stream(&mut app, conn);
    let stream = new_stream(&mut app, conn);
    assert_eq!(stream, 2);
    call(&mut app, conn, stream, play_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [
            "s2 StreamBegin 2",
            "s2 onStatus NetStream.Play.Reset",
            "s2 onStatus NetStream.Play.Start",
        ]
    );
    // The user control message exactly: type 4, event 0 (StreamBegin), stream id BE32.
    assert_eq!(
        out[0].1,
        Outgoing::Message {
            stream_id: 2,
            kind: 4,
            timestamp: 0,
            payload: Bytes::from_static(&[0, 0, 0, 0, 0, 2]),
        }
    );
    let start = info_with(&out, conn, code::PLAY_START);
    assert_eq!(level(&start), "status");
    assert!(description(&start).contains("demo"), "{start:?}");
    assert_eq!(
        events(&mut app),
        [AppEvent::Playing {
            conn,
            stream: "demo".into()
        }]
    );
}

#[test]
fn play_without_a_name_gets_stream_not_found() {
    let mut app = default_server();
    let conn = connected(&mut app, "live");
    let stream = new_stream(&mut app, conn);
    call(&mut app, conn, stream, play_cmd(""));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, conn),
        [format!("s{stream} onStatus NetStream.Play.StreamNotFound")]
    );
}

#[test]
fn publisher_media_reaches_the_player_with_the_same_bytes() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");

    app.message(publisher, s, kind::DATA_AMF0, 0, set_data_frame().into());
    let key = Bytes::from_static(b"\x17\x01\x00\x00\x00keyframe");
    app.message(publisher, s, kind::VIDEO, 33, key.clone());
    send_media(&mut app, publisher, s, kind::AUDIO, 40, b"\xaf\x01\x21\x10");
    send_media(
        &mut app,
        publisher,
        s,
        kind::VIDEO,
        66,
        b"\x27\x01\x00\x00\x00inter",
    );

    let out = drain(&mut app);
    assert_eq!(lines_of(&out, publisher), Vec::<String>::new());
    assert_eq!(
        lines_of(&out, player),
        [
            format!("s{p} data@0 {}", hex(&on_metadata())),
            format!("s{p} video@33 {}", hex(&key)),
            format!("s{p} audio@40 {}", hex(b"\xaf\x01\x21\x10")),
            format!("s{p} video@66 {}", hex(b"\x27\x01\x00\x00\x00inter")),
        ]
    );
    // Fanned out by reference: the player's payload is the publisher's buffer.
    let Outgoing::Media { message, .. } = &out[1].1 else {
        panic!("{:?}", out[1]);
    };
    assert_eq!(message.payload.as_ptr(), key.as_ptr());
}

#[test]
fn metadata_sent_as_plain_on_metadata_is_relayed_unchanged() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    app.message(publisher, s, kind::DATA_AMF0, 10, on_metadata().into());
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} data@10 {}", hex(&on_metadata()))]
    );
}

#[test]
fn every_player_of_a_stream_gets_the_media() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let players: Vec<_> = (0..3).map(|_| playing(&mut app, "live", "demo")).collect();
    let (_other, _) = playing(&mut app, "live", "other");
    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01k");
    let out = drain(&mut app);
    assert_eq!(out.len(), 3, "{out:?}");
    for (conn, stream) in players {
        assert_eq!(
            lines_of(&out, conn),
            [format!("s{stream} video@0 17 01 6b")]
        );
    }
}

#[test]
fn late_joiner_gets_metadata_headers_and_the_gop_from_the_latest_keyframe_first() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    app.message(publisher, s, kind::DATA_AMF0, 0, set_data_frame().into());
    let sent: [(u8, u32, &[u8]); 8] = [
        (kind::VIDEO, 0, b"\x17\x00\x00\x00\x00avcC"),
        (kind::AUDIO, 0, b"\xaf\x00\x12\x10"),
        (kind::VIDEO, 0, b"\x17\x01\x00\x00\x00first-key"),
        (kind::AUDIO, 10, b"\xaf\x01a1"),
        (kind::VIDEO, 40, b"\x27\x01\x00\x00\x00p1"),
        (kind::VIDEO, 80, b"\x17\x01\x00\x00\x00second-key"),
        (kind::AUDIO, 90, b"\xaf\x01a2"),
        (kind::VIDEO, 120, b"\x27\x01\x00\x00\x00p2"),
    ];
    for (k, ts, payload) in sent {
        send_media(&mut app, publisher, s, k, ts, payload);
    }
    assert_eq!(drain(&mut app), [], "nobody is playing yet");

    let player = connected(&mut app, "live");
    let p = new_stream(&mut app, player);
    call(&mut app, player, p, play_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, player),
        [
            format!("s{p} StreamBegin {p}"),
            format!("s{p} onStatus NetStream.Play.Reset"),
            format!("s{p} onStatus NetStream.Play.Start"),
            format!("s{p} data@0 {}", hex(&on_metadata())),
            format!("s{p} video@0 {}", hex(b"\x17\x00\x00\x00\x00avcC")),
            format!("s{p} audio@0 {}", hex(b"\xaf\x00\x12\x10")),
            format!("s{p} video@80 {}", hex(b"\x17\x01\x00\x00\x00second-key")),
            format!("s{p} audio@90 {}", hex(b"\xaf\x01a2")),
            format!("s{p} video@120 {}", hex(b"\x27\x01\x00\x00\x00p2")),
        ]
    );

    // Then live media follows.
    send_media(
        &mut app,
        publisher,
        s,
        kind::VIDEO,
        160,
        b"\x27\x01\x00\x00\x00p3",
    );
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} video@160 {}", hex(b"\x27\x01\x00\x00\x00p3"))]
    );
}

#[test]
fn receive_video_false_stops_video_but_not_audio() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    call(
        &mut app,
        player,
        p,
        Command::new("receiveVideo", 0.0, Value::Null, vec![false.into()]),
    );
    assert_eq!(drain(&mut app), [], "receiveVideo has no reply");
    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01key");
    send_media(&mut app, publisher, s, kind::AUDIO, 5, b"\xaf\x01aac");
    app.message(publisher, s, kind::DATA_AMF0, 6, set_data_frame().into());
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [
            format!("s{p} audio@5 {}", hex(b"\xaf\x01aac")),
            format!("s{p} data@6 {}", hex(&on_metadata())),
        ]
    );

    call(
        &mut app,
        player,
        p,
        Command::new("receiveVideo", 0.0, Value::Null, vec![true.into()]),
    );
    send_media(&mut app, publisher, s, kind::VIDEO, 40, b"\x17\x01key2");
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} video@40 {}", hex(b"\x17\x01key2"))]
    );
}

/// The players each media message goes to, read from the app's one fan-out entry per
/// message (an app that queued a copy per player would fail here).
fn fan_out_targets(app: &mut App) -> Vec<Vec<ConnId>> {
    let mut lists = Vec::new();
    while let Some(output) = app.poll_output() {
        match output {
            Output::FanOut(f) => lists.push(f.players.iter().map(|p| p.conn).collect()),
            Output::To(conn, Outgoing::Media { .. }) => {
                panic!("media queued for {conn} alone, not in a fan-out")
            }
            Output::To(..) => {}
        }
    }
    lists
}

#[test]
fn a_fan_out_follows_players_joining_leaving_and_turning_video_off() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (a, a_stream) = playing(&mut app, "live", "demo");
    let (b, _) = playing(&mut app, "live", "demo");
    let video = |app: &mut App, ts| send_media(app, publisher, s, kind::VIDEO, ts, b"\x27\x01v");
    let audio = |app: &mut App, ts| send_media(app, publisher, s, kind::AUDIO, ts, b"\xaf\x01a");
    video(&mut app, 0);
    audio(&mut app, 1);
    assert_eq!(fan_out_targets(&mut app), [vec![a, b], vec![a, b]]);

    call(
        &mut app,
        a,
        a_stream,
        Command::new("receiveVideo", 0.0, Value::Null, vec![false.into()]),
    );
    video(&mut app, 40);
    audio(&mut app, 41);
    assert_eq!(fan_out_targets(&mut app), [vec![b], vec![a, b]]);

    let (c, _) = playing(&mut app, "live", "demo");
    video(&mut app, 80);
    assert_eq!(fan_out_targets(&mut app), [vec![b, c]]);

    app.close(b);
    drain(&mut app);
    video(&mut app, 120);
    audio(&mut app, 121);
    assert_eq!(fan_out_targets(&mut app), [vec![c], vec![a, c]]);
}

#[test]
fn receive_audio_false_stops_audio_but_not_video() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    call(
        &mut app,
        player,
        p,
        Command::new("receiveAudio", 0.0, Value::Null, vec![false.into()]),
    );
    send_media(&mut app, publisher, s, kind::AUDIO, 5, b"\xaf\x01aac");
    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01key");
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} video@0 {}", hex(b"\x17\x01key"))]
    );
}

#[test]
fn player_waiting_on_an_unpublished_name_gets_publish_notify_then_media() {
    let mut app = default_server();
    let (player, p) = playing(&mut app, "live", "later");
    let publisher = connected(&mut app, "live");
    let s = new_stream(&mut app, publisher);
    call(&mut app, publisher, s, publish_cmd("later"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, publisher),
        [format!("s{s} onStatus NetStream.Publish.Start")]
    );
    assert_eq!(
        lines_of(&out, player),
        [
            format!("s{p} StreamBegin {p}"),
            format!("s{p} onStatus NetStream.Play.PublishNotify")
        ]
    );
    assert_eq!(
        level(&info_with(&out, player, code::PLAY_PUBLISH_NOTIFY)),
        "status"
    );

    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01key");
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} video@0 {}", hex(b"\x17\x01key"))]
    );
}

/// The publisher of "demo" and one player; the publisher ends in `end`; checks what the
/// publisher and the player get, and that the name can be published again.
fn unpublish_case(end: impl FnOnce(&mut App, ConnId, u32), publisher_sees: &[&str]) {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    send_media(
        &mut app,
        publisher,
        s,
        kind::VIDEO,
        0,
        b"\x17\x00\x00\x00\x00avcC",
    );
    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01old-key");
    let (player, p) = playing(&mut app, "live", "demo");
    end(&mut app, publisher, s);
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, player),
        [
            format!("s{p} StreamEOF {p}"),
            format!("s{p} onStatus NetStream.Play.UnpublishNotify"),
        ]
    );
    let eof = out
        .iter()
        .find(|(c, o)| *c == player && matches!(o, Outgoing::Message { kind: 4, .. }))
        .unwrap();
    assert_eq!(
        eof.1,
        Outgoing::Message {
            stream_id: p,
            kind: 4,
            timestamp: 0,
            payload: Bytes::copy_from_slice(&[0, 1, 0, 0, 0, p as u8]),
        }
    );
    assert_eq!(lines_of(&out, publisher), publisher_sees);
    assert!(events(&mut app).contains(&AppEvent::Unpublished {
        conn: publisher,
        stream: "demo".into()
    }));

    // Old media from the gone publisher goes nowhere.
    send_media(&mut app, publisher, s, kind::VIDEO, 40, b"\x27\x01late");
    assert_eq!(drain(&mut app), []);

    // The name is free again; the waiting player is told and gets the new media.
    let (again, s2) = publishing(&mut app, "live", "demo");
    send_media(&mut app, again, s2, kind::VIDEO, 200, b"\x17\x01new-key");
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} video@200 {}", hex(b"\x17\x01new-key"))]
    );
    // A late joiner gets nothing of the old publisher's headers.
    let late = connected(&mut app, "live");
    let l = new_stream(&mut app, late);
    call(&mut app, late, l, play_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, late)[3..],
        [format!("s{l} video@200 {}", hex(b"\x17\x01new-key"))]
    );
}

#[test]
fn publisher_delete_stream_sends_stream_eof_and_unpublish_notify_to_players() {
    unpublish_case(
        |app, publisher, s| call(app, publisher, 0, delete_stream(s)),
        &["s1 onStatus NetStream.Unpublish.Success"],
    );
}

#[test]
fn publisher_close_stream_sends_stream_eof_and_unpublish_notify_to_players() {
    unpublish_case(
        |app, publisher, s| {
            call(
                app,
                publisher,
                s,
                Command::new("closeStream", 0.0, Value::Null, vec![]),
            )
        },
        &["s1 onStatus NetStream.Unpublish.Success"],
    );
}

#[test]
fn publisher_connection_close_sends_stream_eof_and_unpublish_notify_to_players() {
    unpublish_case(|app, publisher, _| app.close(publisher), &[]);
}

#[test]
fn republish_tells_waiting_players_with_publish_notify() {
    let mut app = default_server();
    let (publisher, _) = publishing(&mut app, "live", "demo");
    let (player, _) = playing(&mut app, "live", "demo");
    app.close(publisher);
    drain(&mut app);
    let again = connected(&mut app, "live");
    let s = new_stream(&mut app, again);
    call(&mut app, again, s, publish_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(statuses(&out, again), [code::PUBLISH_START]);
    assert_eq!(statuses(&out, player), [code::PLAY_PUBLISH_NOTIFY]);
}

#[test]
fn republish_after_stream_eof_sends_stream_begin_before_publish_notify() {
    let mut app = default_server();
    let (publisher, _) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    app.close(publisher);
    drain(&mut app);
    let again = connected(&mut app, "live");
    let s = new_stream(&mut app, again);
    call(&mut app, again, s, publish_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, player),
        [
            format!("s{p} StreamBegin {p}"),
            format!("s{p} onStatus NetStream.Play.PublishNotify"),
        ]
    );
}

#[test]
fn netstream_send_data_from_the_publisher_reaches_players() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    let cue = amf0(&[
        "onCuePoint".into(),
        Value::object([("name", Value::from("chapter-2")), ("time", 12.5.into())]),
    ]);
    app.message(publisher, s, kind::DATA_AMF0, 500, cue.clone().into());
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} data@500 {}", hex(&cue))]
    );
}

#[test]
fn player_beyond_max_players_per_stream_gets_play_failed() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.limits]
max_players_per_stream = 2
"#,
    );
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (first, _) = playing(&mut app, "live", "demo");
    let (_second, _) = playing(&mut app, "live", "demo");

    let extra = connected(&mut app, "live");
    let x = new_stream(&mut app, extra);
    call(&mut app, extra, x, play_cmd("demo"));
    let out = drain(&mut app);
    assert_eq!(
        lines_of(&out, extra),
        [format!("s{x} onStatus NetStream.Play.Failed")]
    );
    let info = info_with(&out, extra, code::PLAY_FAILED);
    assert_eq!(level(&info), "error");
    assert_eq!(description(&info), "stream has its maximum of 2 players");
    assert_eq!(
        events(&mut app),
        [AppEvent::Refused {
            conn: extra,
            code: code::PLAY_FAILED,
            reason: "stream has its maximum of 2 players".into(),
        }],
        "logged once, with the reason"
    );

    // The refused player gets no media; the limit is per stream.
    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01key");
    assert_eq!(lines_of(&drain(&mut app), extra), Vec::<String>::new());
    call(&mut app, extra, x, play_cmd("other"));
    assert_eq!(
        statuses(&drain(&mut app), extra),
        [code::PLAY_RESET, code::PLAY_START]
    );

    // A player leaving frees its place.
    app.close(first);
    let y = new_stream(&mut app, extra);
    call(&mut app, extra, y, play_cmd("demo"));
    assert_eq!(
        statuses(&drain(&mut app), extra),
        [code::PLAY_RESET, code::PLAY_START]
    );
}

#[test]
fn a_closed_player_gets_no_more_media() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (gone, _) = playing(&mut app, "live", "demo");
    let (stays, p) = playing(&mut app, "live", "demo");
    app.close(gone);
    send_media(&mut app, publisher, s, kind::AUDIO, 0, b"\xaf\x01x");
    let out = drain(&mut app);
    assert_eq!(lines_of(&out, gone), Vec::<String>::new());
    assert_eq!(lines_of(&out, stays), [format!("s{p} audio@0 af 01 78")]);
}

#[test]
fn a_player_that_deletes_its_stream_gets_no_more_media() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    call(&mut app, player, 0, delete_stream(p));
    assert_eq!(drain(&mut app), []);
    send_media(&mut app, publisher, s, kind::AUDIO, 0, b"\xaf\x01x");
    assert_eq!(drain(&mut app), []);
}

#[test]
fn media_from_a_client_that_is_not_publishing_is_dropped() {
    let mut app = default_server();
    let (_publisher, _) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    // The player sends media on its own playing stream: it is not the publisher.
    send_media(&mut app, player, p, kind::VIDEO, 0, b"\x17\x01spoof");
    assert_eq!(drain(&mut app), []);
}

// ---------------------------------------------------------------------------------------
// malformed input

#[test]
fn truncated_amf_command_is_dropped_without_output() {
    let mut app = default_server();
    let conn = app.open(ip(CLIENT));
    let full = connect_to("live").encode();
    // Cut inside the string "connect", inside the transaction id, and at every point inside
    // the command object (no end marker).
    let object_start = 3 + 7 + 9;
    let mut cuts = vec![1, 2, 5, 10 + 3];
    cuts.extend(object_start + 1..full.len());
    for cut in cuts {
        app.message(
            conn,
            0,
            kind::COMMAND_AMF0,
            0,
            Bytes::copy_from_slice(&full[..cut]),
        );
        assert_eq!(drain(&mut app), [], "cut at {cut} of {}", full.len());
    }
    // Other junk: empty messages of every command kind, a number where the name should be,
    // an unknown AMF0 marker.
    for (k, payload) in [
        (kind::COMMAND_AMF0, &b""[..]),
        (kind::COMMAND_AMF3, b""),
        (kind::COMMAND_AMF3, b"\x00"),
        (kind::DATA_AMF0, b"\x02\x00\x0d@setData"),
        (kind::COMMAND_AMF0, b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"),
        (kind::COMMAND_AMF0, b"\xff\xff\xff"),
        (kind::COMMAND_AMF0, b"\x02\xff\xff"),
        (kind::COMMAND_AMF0, b"\x03\x00"),
    ] {
        app.message(conn, 0, k, 0, Bytes::copy_from_slice(payload));
        assert_eq!(drain(&mut app), [], "kind {k} payload {}", hex(payload));
    }
    assert_eq!(events(&mut app), []);

    // The connection is unharmed: the whole command still works.
    app.message(conn, 0, kind::COMMAND_AMF0, 0, full.into());
    assert_eq!(
        lines_of(&drain(&mut app), conn),
        ["s0 _result#1 NetConnection.Connect.Success"]
    );
}

#[test]
fn truncated_commands_on_a_connected_client_are_dropped() {
    let mut app = default_server();
    let (publisher, s) = publishing(&mut app, "live", "demo");
    let (player, p) = playing(&mut app, "live", "demo");
    for cmd in [
        create_stream(3.0),
        delete_stream(s),
        publish_cmd("other"),
        Command::new("receiveVideo", 0.0, Value::Null, vec![false.into()]),
    ] {
        let bytes = cmd.encode();
        for cut in 1..bytes.len() {
            // A cut exactly between two values is a shorter valid command; skip those.
            if Command::parse(&bytes[..cut]).is_ok() {
                continue;
            }
            app.message(
                publisher,
                s,
                kind::COMMAND_AMF0,
                0,
                Bytes::copy_from_slice(&bytes[..cut]),
            );
            app.message(
                player,
                p,
                kind::COMMAND_AMF0,
                0,
                Bytes::copy_from_slice(&bytes[..cut]),
            );
            assert_eq!(drain(&mut app), [], "{} cut at {cut}", cmd.name);
        }
    }
    // Still publishing, still playing, video still wanted.
    send_media(&mut app, publisher, s, kind::VIDEO, 0, b"\x17\x01k");
    assert_eq!(
        lines_of(&drain(&mut app), player),
        [format!("s{p} video@0 17 01 6b")]
    );
}

#[test]
fn replaying_the_same_name_on_the_same_stream_is_not_refused_by_the_player_limit() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.limits]
max_players_per_stream = 1
"#,
    );
    let (player, p) = playing(&mut app, "live", "demo");
    // Players re-issue play on the same NetStream (after UnpublishNotify, or to restart).
    call(&mut app, player, p, play_cmd("demo"));
    assert_eq!(
        statuses(&drain(&mut app), player),
        [code::PLAY_RESET, code::PLAY_START]
    );
}

#[test]
fn publisher_above_max_publish_kbps_is_denied_and_its_players_told() {
    let mut app = server(
        r#"
[[app]]
name = "live"
[app.limits]
max_publish_kbps = 100
"#,
    );
    let (publisher, s) = publishing(&mut app, "live", "fat");
    let (player, _) = playing(&mut app, "live", "fat");
    // 25 frames a second of 1000 bytes: 200 kbit/s of media time, twice the limit.
    for frame in 0..=50u32 {
        send_media(
            &mut app,
            publisher,
            s,
            kind::VIDEO,
            frame * 40,
            &[0x27; 1000],
        );
    }
    let out = drain(&mut app);
    let denied = statuses(&out, publisher);
    assert!(
        denied.contains(&code::PUBLISH_DENIED.to_string()),
        "{denied:?}"
    );
    assert!(statuses(&out, player).contains(&code::PLAY_UNPUBLISH_NOTIFY.to_string()));
    // Below the limit (50 kbit/s) the same publisher would have stayed.
    let (slim, t) = publishing(&mut app, "live", "slim");
    for frame in 0..=50u32 {
        send_media(&mut app, slim, t, kind::VIDEO, frame * 40, &[0x27; 250]);
    }
    assert!(!statuses(&drain(&mut app), slim).contains(&code::PUBLISH_DENIED.to_string()));
}

// ---------------------------------------------------------------------------------------
// Several shards: one application per shard, sharing a directory, publications relayed.

/// Two shards' applications; relays are carried by `carry` as the engine's rings would.
fn two_shards(toml: &str) -> (App, App) {
    let config = Arc::new(ServerConfig::parse(toml, "test.toml").expect("test config parses"));
    let directory = Arc::new(Directory::new());
    (
        App::sharded(config.clone(), directory.clone(), 0, true),
        App::sharded(config, directory, 1, true),
    )
}

/// Moves what `from` (shard `from_shard`) relays into `to`; returns how many.
fn carry(from: &mut App, from_shard: u8, to: &mut App) -> usize {
    let mut n = 0;
    while let Some(r) = from.poll_relay() {
        to.relayed(from_shard, r);
        n += 1;
    }
    n
}

const OPEN_APP: &str = "[[app]]\nname = \"live\"\n";

#[test]
fn a_publisher_on_one_shard_reaches_players_on_another_by_reference() {
    let (mut a, mut b) = two_shards(OPEN_APP);
    let (player, pstream) = playing(&mut b, "live", "cam");
    let (publisher, stream) = publishing(&mut a, "live", "cam");
    assert_eq!(carry(&mut a, 0, &mut b), 1, "the publication is announced");
    assert_eq!(
        statuses(&drain(&mut b), player),
        [code::PLAY_PUBLISH_NOTIFY],
        "the player on the other shard learns of the publisher"
    );
    let frame = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0xAA, 0xBB]);
    a.message(publisher, stream, kind::VIDEO, 40, frame.clone());
    carry(&mut a, 0, &mut b);
    let out = drain(&mut b);
    let media: Vec<_> = out
        .iter()
        .filter_map(|(c, o)| match o {
            Outgoing::Media { stream_id, message } if *c == player => Some((*stream_id, message)),
            _ => None,
        })
        .collect();
    assert_eq!(media.len(), 1, "{out:?}");
    assert_eq!(media[0].0, pstream);
    assert_eq!(media[0].1.payload, frame);
    assert_eq!(
        media[0].1.payload.as_ptr(),
        frame.as_ptr(),
        "the payload crossed shards as a reference, not a copy"
    );

    // A late joiner on the other shard starts from the mirrored keyframe.
    let (late, _) = {
        let conn = connected(&mut b, "live");
        let s = new_stream(&mut b, conn);
        call(&mut b, conn, s, play_cmd("cam"));
        (conn, s)
    };
    let out = drain(&mut b);
    assert!(
        out.iter().any(|(c, o)| *c == late
            && matches!(o, Outgoing::Media { message, .. } if message.payload == frame)),
        "late joiner gets the cached keyframe: {out:?}"
    );

    // The end of the publication reaches the other shard's players.
    call(&mut a, publisher, 0, delete_stream(stream));
    drain(&mut a);
    carry(&mut a, 0, &mut b);
    let out = drain(&mut b);
    assert!(
        statuses(&out, player)
            .iter()
            .any(|s| s == code::PLAY_UNPUBLISH_NOTIFY),
        "{out:?}"
    );
}

#[test]
fn a_stream_name_has_one_publisher_across_shards() {
    let (mut a, mut b) = two_shards(OPEN_APP);
    let (publisher, stream) = publishing(&mut a, "live", "cam");
    carry(&mut a, 0, &mut b);
    let conn = connected(&mut b, "live");
    let s = new_stream(&mut b, conn);
    call(&mut b, conn, s, publish_cmd("cam"));
    assert_eq!(
        statuses(&drain(&mut b), conn),
        [code::PUBLISH_BAD_NAME],
        "the name is taken on the other shard"
    );
    // Once the first publisher leaves, the second shard may publish, even before the
    // end of the first publication has been relayed to it.
    a.close(publisher);
    let _ = stream;
    call(&mut b, conn, s, publish_cmd("cam"));
    assert_eq!(statuses(&drain(&mut b), conn), [code::PUBLISH_START]);
    carry(&mut a, 0, &mut b);
    let frame = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 1]);
    let (player, _) = playing(&mut b, "live", "cam");
    b.message(conn, s, kind::VIDEO, 0, frame.clone());
    assert!(
        drain(&mut b)
            .iter()
            .any(|(c, o)| *c == player && matches!(o, Outgoing::Media { .. })),
        "the late end of the old publication did not end the new one"
    );
}

#[test]
fn limits_hold_for_the_whole_server_not_per_shard() {
    let (mut a, mut b) = two_shards(
        "[[app]]\nname = \"live\"\n[app.limits]\nmax_sessions = 2\nmax_players_per_stream = 1\n",
    );
    let first = connected(&mut a, "live");
    let second = connected(&mut b, "live");
    let third = b.open(ip(CLIENT));
    call(&mut b, third, 0, connect_to("live"));
    let out = drain(&mut b);
    assert_eq!(
        lines_of(&out, third)[0],
        "s0 _error#1 NetConnection.Connect.Rejected",
        "two sessions on two shards fill the app"
    );
    let s = new_stream(&mut a, first);
    call(&mut a, first, s, play_cmd("cam"));
    drain(&mut a);
    b.close(third);
    a.close(first);
    let s2 = new_stream(&mut b, second);
    call(&mut b, second, s2, play_cmd("cam"));
    assert_eq!(
        statuses(&drain(&mut b), second),
        [code::PLAY_RESET, code::PLAY_START],
        "a closed connection's player left the count"
    );
    let late = connected(&mut a, "live");
    let s = new_stream(&mut a, late);
    call(&mut a, late, s, play_cmd("cam"));
    assert_eq!(
        statuses(&drain(&mut a), late),
        [code::PLAY_FAILED],
        "the stream's one player is on the other shard"
    );
}

#[test]
fn group_members_on_different_shards_are_told_of_each_other() {
    use rtmfp_edge::group::GroupId;
    use rtmfp_edge::proto::epd::PeerId;
    let (mut a, mut b) = two_shards(OPEN_APP);
    let group = GroupId([5; 32]);
    let first = connected(&mut a, "live");
    a.join_group(first, PeerId([1; 32]), group).unwrap();
    drain(&mut a);
    let second = connected(&mut b, "live");
    b.join_group(second, PeerId([2; 32]), group).unwrap();
    assert!(
        drain(&mut b).is_empty(),
        "the first member is not on this shard: nothing for shard 1's clients"
    );
    assert_eq!(
        carry(&mut b, 1, &mut a),
        1,
        "the notice crosses to its shard"
    );
    assert_eq!(
        drain(&mut a),
        vec![(
            first,
            Outgoing::GroupMember {
                group,
                peer: PeerId([2; 32])
            }
        )]
    );
    // The member count is server-wide.
    let events: Vec<AppEvent> = events(&mut b);
    assert!(
        events.contains(&AppEvent::GroupJoined {
            conn: second,
            group,
            members: 2
        }),
        "{events:?}"
    );
    // When the first leaves by closing, the group is left to the second alone; a third
    // on shard 0 is announced to the second, across shards again.
    a.close(first);
    carry(&mut a, 0, &mut b);
    drain(&mut b);
    let third = connected(&mut a, "live");
    a.join_group(third, PeerId([3; 32]), group).unwrap();
    carry(&mut a, 0, &mut b);
    assert_eq!(
        drain(&mut b),
        vec![(
            second,
            Outgoing::GroupMember {
                group,
                peer: PeerId([3; 32])
            }
        )]
    );
}

const MULTICAST_APP: &str = r#"
[[app]]
name = "multicast"
[app.group]
allow = ["event"]
"#;

/// A publish naming its multicast form the way AMS's multicast service takes it
/// (`fms.multicast.*` in the stream name) republishes into that group, in that form.
#[test]
fn publish_with_ams_multicast_parameters_republishes_into_the_group_it_names() {
    use rtmfp_edge::group::GroupSpec;
    use rtmfp_edge::server::app::GroupFeed;
    use rtmfp_edge::server::config::MulticastForm;
    let mut app = server(MULTICAST_APP);
    let conn = connected_from(&mut app, "multicast", "10.20.1.1");
    let stream = new_stream(&mut app, conn);
    call(
        &mut app,
        conn,
        stream,
        publish_cmd(
            "livestream?fms.multicast.type=1&fms.multicast.groupspec=event\
             &fms.multicast.address=239.7.7.7%3A30000",
        ),
    );
    let out = drain(&mut app);
    assert_eq!(statuses(&out, conn), [code::PUBLISH_START]);
    let group = GroupSpec::from_name_or_spec("event").unwrap();
    match app.poll_group_feed() {
        Some(GroupFeed::Start {
            group: g,
            name,
            request: Some(r),
            ..
        }) => {
            assert_eq!(g, group.group_id());
            assert_eq!(name, "livestream");
            assert_eq!(r.form, MulticastForm::Fusion);
            assert_eq!(r.address, Some("239.7.7.7:30000".parse().unwrap()));
        }
        other => panic!("expected the group feed to start: {other:?}"),
    }
}

#[test]
fn publish_with_bad_or_unallowed_multicast_parameters_is_denied_naming_why() {
    let cases = [
        (
            "s?fms.multicast.type=2&fms.multicast.groupspec=event",
            "fms.multicast.type=2 sends IP multicast: it needs fms.multicast.address=ADDR:PORT",
        ),
        (
            "s?fms.multicast.type=9&fms.multicast.groupspec=event",
            "fms.multicast.type=\"9\" is not 1 (Fusion), 2 (IP multicast) or 3 (P2P)",
        ),
        (
            "s?fms.multicast.type=3&fms.multicast.groupspec=backstage",
            "is not one application",
        ),
    ];
    for (name, why) in cases {
        let mut app = server(MULTICAST_APP);
        let conn = connected_from(&mut app, "multicast", "10.20.1.1");
        let stream = new_stream(&mut app, conn);
        call(&mut app, conn, stream, publish_cmd(name));
        let out = drain(&mut app);
        assert_eq!(statuses(&out, conn), [code::PUBLISH_DENIED], "{name}");
        let info = info_with(&out, conn, code::PUBLISH_DENIED);
        let text = description(&info);
        assert!(text.contains(why), "{name}: {text}");
        assert!(app.poll_group_feed().is_none(), "{name}");
    }
}
