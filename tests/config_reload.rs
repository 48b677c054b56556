//! A running server taking a new config (SIGHUP), at the application and config level:
//! what the new config still allows goes on untouched, what it no longer allows is ended
//! with the status a refusal carries, newcomers are judged by the new rules, and the
//! settings that need a restart keep their running values.

#[path = "support/group_world.rs"]
mod group_world;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtmfp_edge::flash::amf::Value;
use rtmfp_edge::flash::command::{code, status_code, Command};
use rtmfp_edge::flash::tc::kind;
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::proto::epd::PeerId;
use rtmfp_edge::server::app::{App, AppEvent, ConnId, Outgoing, ReloadOutcome, GROUP_REJECTED};
use rtmfp_edge::server::config::ServerConfig;

const CLIENT: &str = "203.0.113.10";

/// Apps `live` (open) and `event` (a connect token, a publish token for `cam-*`).
const RUNNING: &str = r#"
[[app]]
name = "live"

[[app]]
name = "event"
[app.connect]
token = "viewer"
[app.publish]
token = "studio"
streams = ["cam-*"]
"#;

fn config(toml: &str) -> Arc<ServerConfig> {
    Arc::new(ServerConfig::parse(toml, "test.toml").expect("test config parses"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn call(app: &mut App, conn: ConnId, stream: u32, cmd: Command) {
    app.message(conn, stream, kind::COMMAND_AMF0, 0, cmd.encode().into());
}

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

/// `(stream, code, description)` of every status and `_result`/`_error` sent to `conn`.
fn statuses(out: &[(ConnId, Outgoing)], conn: ConnId) -> Vec<(u32, String, String)> {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, o)| {
            let stream = match o {
                Outgoing::Message { stream_id, .. } => *stream_id,
                _ => return None,
            };
            let cmd = command_of(o)?;
            let code = status_code(&cmd)?.to_owned();
            let description = cmd
                .arguments
                .first()
                .and_then(|i| i.get("description"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Some((stream, code, description))
        })
        .collect()
}

fn closes(out: &[(ConnId, Outgoing)], conn: ConnId) -> bool {
    out.iter()
        .any(|(c, o)| *c == conn && matches!(o, Outgoing::Close))
}

/// Opens a client and sends `connect` to `app_name` with `token` as its first argument;
/// the replies are returned.
fn connect(
    app: &mut App,
    app_name: &str,
    token: Option<&str>,
) -> (ConnId, Vec<(ConnId, Outgoing)>) {
    let conn = app.open(ip(CLIENT));
    let props = Value::object([
        ("app", Value::from(app_name)),
        (
            "tcUrl",
            format!("rtmfp://edge.example.com/{app_name}").into(),
        ),
        ("objectEncoding", 3.0.into()),
    ]);
    let extra = token.into_iter().map(Value::from).collect();
    call(app, conn, 0, Command::new("connect", 1.0, props, extra));
    let out = drain(app);
    events(app);
    (conn, out)
}

fn connected(app: &mut App, app_name: &str, token: Option<&str>) -> ConnId {
    let (conn, out) = connect(app, app_name, token);
    assert_eq!(
        statuses(&out, conn)[0].1,
        code::CONNECT_SUCCESS,
        "connect to {app_name}: {out:?}"
    );
    conn
}

fn new_stream(app: &mut App, conn: ConnId) -> u32 {
    call(
        app,
        conn,
        0,
        Command::new("createStream", 2.0, Value::Null, vec![]),
    );
    let out = drain(app);
    let cmd = command_of(&out[0].1).expect("createStream's _result");
    cmd.argument(0)
        .and_then(Value::as_f64)
        .expect("a stream id") as u32
}

fn publishing(app: &mut App, app_name: &str, token: Option<&str>, name: &str) -> (ConnId, u32) {
    let conn = connected(app, app_name, token);
    let stream = new_stream(app, conn);
    let args = vec![name.into(), "live".into()];
    call(
        app,
        conn,
        stream,
        Command::new("publish", 0.0, Value::Null, args),
    );
    let out = drain(app);
    events(app);
    assert_eq!(
        statuses(&out, conn)[0].1,
        code::PUBLISH_START,
        "publish {name}: {out:?}"
    );
    (conn, stream)
}

fn playing(app: &mut App, app_name: &str, token: Option<&str>, name: &str) -> (ConnId, u32) {
    let conn = connected(app, app_name, token);
    let stream = new_stream(app, conn);
    let args = vec![name.into(), (-2.0).into()];
    call(
        app,
        conn,
        stream,
        Command::new("play", 0.0, Value::Null, args),
    );
    let out = drain(app);
    events(app);
    assert!(
        statuses(&out, conn)
            .iter()
            .any(|(_, c, _)| c == code::PLAY_START),
        "play {name}: {out:?}"
    );
    (conn, stream)
}

/// The media payloads `conn` got on `stream`.
fn media_to(out: &[(ConnId, Outgoing)], conn: ConnId, stream: u32) -> Vec<Bytes> {
    out.iter()
        .filter_map(|(c, o)| match o {
            Outgoing::Media { stream_id, message } if *c == conn && *stream_id == stream => {
                Some(message.payload.clone())
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The application

#[test]
fn a_session_of_an_app_the_new_config_removes_is_told_why_and_closed() {
    let mut app = App::new(config(RUNNING));
    let viewer = connected(&mut app, "event", Some("viewer"));
    let (publisher, _) = publishing(&mut app, "event", Some("viewer"), "cam-1?token=studio");
    assert_eq!(app.sessions_in("event"), 2);

    let outcome = app.reload(config("[[app]]\nname = \"live\"\n"));

    assert_eq!(
        outcome,
        ReloadOutcome {
            connections: 2,
            ..ReloadOutcome::default()
        }
    );
    let out = drain(&mut app);
    for conn in [viewer, publisher] {
        let told = statuses(&out, conn);
        assert_eq!(told.len(), 1, "one status, on the NetConnection: {told:?}");
        let (on, status, why) = &told[0];
        assert_eq!((*on, status.as_str()), (0, code::CONNECT_INVALID_APP));
        assert_eq!(
            why, "no application \"event\" on this server (the server's config changed)",
            "the refusal's own words, and why now"
        );
        assert!(closes(&out, conn), "then the session closes: {out:?}");
    }
    assert_eq!(app.sessions_in("event"), 0, "they no longer count");
    assert!(events(&mut app).iter().any(|e| matches!(
        e,
        AppEvent::Revoked { conn, code: code::CONNECT_INVALID_APP, .. } if *conn == publisher
    )));
    // Its publication ended with it.
    assert_eq!(app.census().streams, 0);
}

#[test]
fn a_player_of_an_app_that_stays_keeps_receiving_media() {
    let mut app = App::new(config(RUNNING));
    let (publisher, ps) = publishing(&mut app, "live", None, "demo");
    let (player, pl) = playing(&mut app, "live", None, "demo");
    let key = Bytes::from_static(b"\x17\x01\x00\x00\x00key");
    app.message(publisher, ps, kind::VIDEO, 0, key.clone());
    assert_eq!(media_to(&drain(&mut app), player, pl), [key]);

    // `event` goes; `live` stays, with a rule that still lets our client in.
    let outcome = app.reload(config(
        r#"
[[app]]
name = "live"
[app.connect]
deny = ["192.0.2.0/24"]
"#,
    ));

    assert_eq!(outcome, ReloadOutcome::default(), "nothing to end");
    assert_eq!(
        drain(&mut app),
        Vec::<(ConnId, Outgoing)>::new(),
        "nothing said to anyone: the player and publisher are untouched"
    );
    let inter = Bytes::from_static(b"\x27\x01\x00\x00\x00inter");
    app.message(publisher, ps, kind::VIDEO, 40, inter.clone());
    assert_eq!(
        media_to(&drain(&mut app), player, pl),
        [inter],
        "media still flows from the publisher to the player"
    );
}

#[test]
fn a_new_connect_to_an_added_app_is_accepted() {
    let mut app = App::new(config(RUNNING));
    let (before, out) = connect(&mut app, "extra", None);
    assert_eq!(statuses(&out, before)[0].1, code::CONNECT_INVALID_APP);

    app.reload(config(&format!("{RUNNING}\n[[app]]\nname = \"extra\"\n")));

    let (after, out) = connect(&mut app, "extra", None);
    assert_eq!(statuses(&out, after)[0].1, code::CONNECT_SUCCESS);
    assert!(!closes(&out, after));
}

#[test]
fn new_connects_are_judged_by_the_new_rules_and_old_sessions_by_their_token() {
    let mut app = App::new(config(RUNNING));
    let old_token = connected(&mut app, "event", Some("viewer"));
    let new_token = connected(&mut app, "live", None);
    let open = connected(&mut app, "live", None);

    // `event` now wants another token; `live` is unchanged.
    let rotated = RUNNING.replace("token = \"viewer\"", "token = \"viewer-2\"");
    let outcome = app.reload(config(&rotated));

    assert_eq!(outcome.connections, 1);
    let out = drain(&mut app);
    assert_eq!(
        statuses(&out, old_token),
        [(
            0,
            code::CONNECT_REJECTED.to_owned(),
            "bad token (the server's config changed)".to_owned()
        )]
    );
    assert!(closes(&out, old_token));
    for untouched in [new_token, open] {
        assert!(statuses(&out, untouched).is_empty() && !closes(&out, untouched));
    }
    let (c, out) = connect(&mut app, "event", Some("viewer"));
    assert_eq!(
        statuses(&out, c)[0].1,
        code::CONNECT_REJECTED,
        "the old token"
    );
    connected(&mut app, "event", Some("viewer-2"));
}

#[test]
fn a_publisher_the_new_publish_rule_refuses_stops_and_its_players_are_told() {
    let mut app = App::new(config(RUNNING));
    let (publisher, ps) = publishing(&mut app, "event", Some("viewer"), "cam-1?token=studio");
    let (player, pl) = playing(&mut app, "event", Some("viewer"), "cam-1");

    let narrower = RUNNING.replace("streams = [\"cam-*\"]", "streams = [\"main\"]");
    let outcome = app.reload(config(&narrower));

    assert_eq!(
        outcome,
        ReloadOutcome {
            publications: 1,
            ..ReloadOutcome::default()
        }
    );
    let out = drain(&mut app);
    let told: Vec<String> = statuses(&out, publisher)
        .into_iter()
        .map(|(s, c, d)| format!("s{s} {c} {d}"))
        .collect();
    assert_eq!(
        told,
        [
            format!(
                "s{ps} {} cam-1 is now unpublished.",
                code::UNPUBLISH_SUCCESS
            ),
            format!(
                "s{ps} {} stream name \"cam-1\" may not be published here (the server's \
                 config changed)",
                code::PUBLISH_DENIED
            ),
        ]
    );
    assert!(!closes(&out, publisher), "its connection is still allowed");
    assert!(statuses(&out, player)
        .iter()
        .any(|(s, c, _)| *s == pl && c == code::PLAY_UNPUBLISH_NOTIFY));
    // Its media no longer reaches anyone.
    app.message(
        publisher,
        ps,
        kind::VIDEO,
        0,
        Bytes::from_static(b"\x17\x01"),
    );
    assert_eq!(media_to(&drain(&mut app), player, pl), Vec::<Bytes>::new());
}

#[test]
fn a_group_member_of_a_group_the_app_no_longer_allows_leaves_it_with_the_reason() {
    let kept = GroupSpec::from_name_or_spec("kept").unwrap().group_id();
    let dropped = GroupSpec::from_name_or_spec("dropped").unwrap().group_id();
    let mut app = App::new(config(
        "[[app]]\nname = \"live\"\n[app.group]\nallow = [\"kept\", \"dropped\"]\n",
    ));
    let member = connected(&mut app, "live", None);
    app.join_group(member, PeerId([1; 32]), kept).unwrap();
    app.join_group(member, PeerId([1; 32]), dropped).unwrap();
    drain(&mut app);
    events(&mut app);

    let outcome = app.reload(config(
        "[[app]]\nname = \"live\"\n[app.group]\nallow = [\"kept\"]\n",
    ));

    assert_eq!(outcome.memberships, 1);
    let out = drain(&mut app);
    let told = statuses(&out, member);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].1, GROUP_REJECTED);
    assert!(
        told[0].2.contains("is not one application \"live\" allows"),
        "{told:?}"
    );
    assert!(out.contains(&(member, Outgoing::LeaveGroup { group: dropped })));
    assert!(!out.contains(&(member, Outgoing::LeaveGroup { group: kept })));
    assert!(!closes(&out, member), "the session itself is still allowed");
    assert_eq!(app.census().group_members, 1, "still in the kept group");
}

/// Through the server and a real member over RTMFP (in memory): the member's group flow
/// is rejected, which our member takes as its join refused.
#[test]
fn a_member_of_a_group_no_longer_allowed_has_its_group_flow_rejected() {
    let spec = GroupSpec::parse(group_world::SPEC).unwrap();
    let mut world = group_world::World::new();
    let member = world.add_member(&spec);
    world.run_for(Duration::from_millis(500));
    assert!(!world.members[member]
        .events
        .contains(&GroupEvent::JoinRefused));

    let now = world.now;
    world.server.reload_config(
        now,
        config("[[app]]\nname = \"live\"\n[app.group]\nallow = [\"another\"]\n"),
    );
    world.run_for(Duration::from_millis(500));

    assert!(
        world.members[member]
            .events
            .contains(&GroupEvent::JoinRefused),
        "{:?}",
        world.members[member].events
    );
    assert_eq!(world.server.app().census().group_members, 0);
    assert_eq!(
        world.server.app().census().connections,
        1,
        "still connected"
    );
}

// ---------------------------------------------------------------------------------------
// The config

#[test]
fn settings_that_need_a_restart_keep_their_running_values_and_are_named() {
    let running = ServerConfig::parse(
        "[server]\nrtmfp_listen = \"0.0.0.0:1935\"\nshards = 2\n[[app]]\nname = \"live\"\n",
        "config.toml",
    )
    .unwrap();
    let new = ServerConfig::parse(
        "[server]\nrtmfp_listen = \"0.0.0.0:1936\"\nshards = 4\ncookie_len = 65\n\
         [[app]]\nname = \"live\"\n[[app]]\nname = \"extra\"\n",
        "config.toml",
    )
    .unwrap();

    let reload = running.reload(new);

    assert_eq!(reload.config.rtmfp_listen, running.rtmfp_listen);
    assert_eq!(reload.config.shards, running.shards);
    assert_eq!(reload.config.cookie_len, running.cookie_len);
    assert!(
        reload.config.app("extra").is_some(),
        "the apps are the new ones"
    );
    assert_eq!(
        reload.to_string(),
        "apps added: extra; needs a restart (running value kept): rtmfp_listen \
         0.0.0.0:1935 -> 0.0.0.0:1936, shards 2 -> 4, cookie_len 64 -> 65"
    );
}

#[test]
fn a_reload_reports_apps_added_removed_and_changed_or_no_changes() {
    let running = ServerConfig::parse(RUNNING, "config.toml").unwrap();
    let same = running.reload(ServerConfig::parse(RUNNING, "config.toml").unwrap());
    assert!(same.is_unchanged());
    assert_eq!(same.to_string(), "no changes");

    let new = ServerConfig::parse(
        "[[app]]\nname = \"live\"\n[app.limits]\nmax_sessions = 10\n[[app]]\nname = \"b\"\n",
        "config.toml",
    )
    .unwrap();
    let reload = running.reload(new);
    assert_eq!(reload.apps_added, ["b"]);
    assert_eq!(reload.apps_removed, ["event"]);
    assert_eq!(reload.apps_changed, ["live"]);
    assert_eq!(
        reload.to_string(),
        "apps added: b; apps removed: event; apps changed: live"
    );
}

#[test]
fn new_republish_groups_need_a_restart_and_apps_keep_their_running_rules() {
    let running = ServerConfig::parse(
        "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"a\"\n",
        "config.toml",
    )
    .unwrap();
    let new = ServerConfig::parse(
        "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"b\"\n\
         [[app]]\nname = \"other\"\n[[app.republish]]\ngroup = \"b\"\n",
        "config.toml",
    )
    .unwrap();

    let reload = running.reload(new);

    let group = |name| GroupSpec::from_name_or_spec(name).unwrap().group_id();
    assert_eq!(
        reload.config.republish_groups()[0].group_id(),
        group("a"),
        "the server stays a member of the groups it joined at start"
    );
    assert_eq!(reload.config.republish_groups().len(), 1);
    assert!(reload.config.app("other").unwrap().republish.is_empty());
    assert!(reload.to_string().contains("needs a restart"), "{reload}");
    // Republish rules that keep the same groups take effect at once.
    let patterns = ServerConfig::parse(
        "[[app]]\nname = \"live\"\n[[app.republish]]\nstreams = \"cam-*\"\ngroup = \"a\"\n",
        "config.toml",
    )
    .unwrap();
    let reload = running.reload(patterns);
    assert_eq!(reload.needs_restart, Vec::<String>::new());
    assert_eq!(
        reload.config.app("live").unwrap().republish[0]
            .streams
            .as_str(),
        "cam-*"
    );
}
