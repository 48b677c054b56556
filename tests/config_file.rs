//! Config files as users write them: the documented example parses, and each kind of
//! mistake is reported at its own line and column.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::server::config::{ConfigError, Limit, RefusalKind, ServerConfig};

fn docs(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(file)
}

/// Parses `text` as `config.toml` and returns the error's line, column and full message.
fn error_of(text: &str) -> (usize, usize, String) {
    let err = ServerConfig::parse(text, "config.toml").expect_err("config should be refused");
    let message = err.to_string();
    match (err.line(), err.column()) {
        (Some(line), Some(column)) => (line, column, message),
        _ => panic!("error without a position: {message}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn example_config_parses_and_means_what_its_comments_say() {
    let config = ServerConfig::load(docs("example-config.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.shards.map(|n| n.get()), Some(4));
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert_eq!(config.multicast.ttl, 8);
    assert_eq!(config.multicast.interface.as_deref(), Some("eth0"));
    assert!(config.multicast.loop_back);
    assert_eq!(config.apps().len(), 2);
    let live = config.app("live").unwrap();
    assert!(live.authorize_connect(ip("192.0.2.1"), None).is_ok());
    let event = config.app("event/").unwrap();
    assert_eq!(
        event
            .authorize_connect(ip("203.0.113.1"), None)
            .unwrap_err()
            .kind,
        RefusalKind::BadToken
    );
    assert!(event
        .authorize_connect(ip("203.0.113.1"), Some("viewer-secret"))
        .is_ok());
    assert_eq!(
        event
            .authorize_connect(ip("198.51.100.7"), Some("viewer-secret"))
            .unwrap_err()
            .kind,
        RefusalKind::AddressDenied
    );
    let studio = ip("10.20.1.1");
    assert!(event
        .authorize_publish(studio, Some("studio-secret"), "cam-2")
        .is_ok());
    assert_eq!(
        event
            .authorize_publish(studio, Some("studio-secret"), "other")
            .unwrap_err()
            .kind,
        RefusalKind::StreamNotAllowed
    );
    assert_eq!(
        event
            .authorize_publish(ip("10.20.99.1"), Some("studio-secret"), "main")
            .unwrap_err()
            .kind,
        RefusalKind::AddressDenied
    );
    assert_eq!(event.limits.max_publish_kbps, Some(6000));
    let allowed = GroupSpec::parse("G:0101010c050e74657374011b00")
        .unwrap()
        .group_id();
    assert!(event.authorize_group_join(&allowed, 9999).is_ok());
    assert_eq!(
        event
            .authorize_group_join(&allowed, 10000)
            .unwrap_err()
            .kind,
        RefusalKind::LimitReached(Limit::GroupMembers)
    );
    let other = GroupSpec::parse("G:027f0201010103010c050e74657374011b00")
        .unwrap()
        .group_id();
    assert_eq!(
        event.authorize_group_join(&other, 0).unwrap_err().kind,
        RefusalKind::GroupNotAllowed
    );
    assert!(live.authorize_group_join(&other, 1_000_000).is_ok());
    let republished: Vec<_> = event
        .republished_into("cam-2")
        .map(|g| g.group_id())
        .collect();
    assert_eq!(republished, vec![allowed]);
    assert_eq!(live.republished_into("cam-2").count(), 0);
    assert_eq!(config.republish_groups().len(), 1);
}

#[test]
fn a_republish_group_must_be_one_members_may_join() {
    let text =
        "[[app]]\nname = \"live\"\n[app.group]\nallow = [\"G:0101010c050e74657374011b00\"]\n\
                [[app.republish]]\nstreams = \"cam*\"\ngroup = \"other\"\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (7, 9));
    assert!(
        message
            .contains(r#"app "live": republish.group: "other" is not in this app's group.allow"#),
        "{message}"
    );
    let text = "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"G:01zz\"\n";
    let (line, _, message) = error_of(text);
    assert_eq!(line, 4);
    assert!(
        message.contains("is neither a group name nor a groupspec"),
        "{message}"
    );
}

#[test]
fn serve_group_republishes_every_app_into_the_group_and_lets_members_join_it() {
    let mut config = ServerConfig::load(docs("example-config.toml")).unwrap();
    let spec = GroupSpec::from_name_or_spec("lobby").unwrap();
    let event = config.app("event").unwrap();
    assert_eq!(
        event
            .authorize_group_join(&spec.group_id(), 0)
            .unwrap_err()
            .kind,
        RefusalKind::GroupNotAllowed
    );
    config.republish_everything_into(spec.clone());
    for app in config.apps() {
        assert!(
            app.authorize_group_join(&spec.group_id(), 0).is_ok(),
            "{}",
            app.name
        );
        assert!(
            app.republished_into("any").any(|g| *g == spec),
            "{}",
            app.name
        );
    }
    assert_eq!(config.republish_groups().len(), 2);
}

#[test]
fn a_republish_rule_names_its_multicast_form_and_address() {
    let text = "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"g\"\nform = \"fusion\"\naddress = \"239.1.2.3:30000\"\n";
    let config = ServerConfig::parse(text, "config.toml").unwrap_or_else(|e| panic!("{e}"));
    let group = GroupSpec::from_name_or_spec("g").unwrap().group_id();
    assert_eq!(
        config.multicast_address(&group),
        Some("239.1.2.3:30000".parse().unwrap())
    );
    let errors = [
        ("form = \"carrier-pigeon\"\n", 5, "is not p2p, ip or fusion"),
        ("form = \"ip\"\n", 5, "needs an address"),
        (
            "form = \"ip\"\naddress = \"10.0.0.1:30000\"\n",
            6,
            "is not a multicast address",
        ),
        (
            "form = \"ip\"\naddress = \"239.1.2.3\"\n",
            6,
            "is not ADDR:PORT",
        ),
    ];
    for (lines, line, why) in errors {
        let text = format!("[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"g\"\n{lines}");
        let (at, _, message) = error_of(&text);
        assert_eq!(at, line, "{message}");
        assert!(message.contains(why), "{message}");
    }
}

#[test]
fn a_republish_rule_may_protect_its_ip_multicast_with_fec() {
    let text = "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"g\"\nform = \"ip\"\naddress = \"239.1.2.3:30000\"\nfec = \"8+2\"\n";
    let config = ServerConfig::parse(text, "config.toml").unwrap_or_else(|e| panic!("{e}"));
    let group = GroupSpec::from_name_or_spec("g").unwrap().group_id();
    let fec = config.multicast_fec(&group).expect("fec");
    assert_eq!((fec.fragments(), fec.repairs()), (8, 2));
    let without = text.replace("fec = \"8+2\"\n", "");
    let config = ServerConfig::parse(&without, "config.toml").unwrap();
    assert_eq!(config.multicast_fec(&group), None, "off unless asked");
    let errors = [
        ("fec = \"8\"", "is not K+R"),
        ("fec = \"0+2\"", "K is 0"),
        ("fec = \"8+0\"", "R is 0"),
        ("fec = \"200+100\"", "K+R is 300; a block holds at most 255"),
    ];
    for (line, why) in errors {
        let text = text.replace("fec = \"8+2\"", line);
        let (at, _, message) = error_of(&text);
        assert_eq!(at, 7, "{message}");
        assert!(message.contains("republish.fec"), "{message}");
        assert!(message.contains(why), "{message}");
    }
    // Peer to peer only: there is no IP multicast to protect.
    let p2p = "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"g\"\nfec = \"8+2\"\n";
    let (at, _, message) = error_of(p2p);
    assert_eq!(at, 5, "{message}");
    assert!(message.contains("sends no IP multicast"), "{message}");
}

#[test]
fn a_republish_group_may_be_named_by_a_word() {
    let text = "[[app]]\nname = \"live\"\n[[app.republish]]\ngroup = \"event\"\n";
    let config = ServerConfig::parse(text, "config.toml").unwrap_or_else(|e| panic!("{e}"));
    let spec = GroupSpec::from_name_or_spec("event").unwrap();
    // What Flash's GroupSpecifier("event") writes with multicast and the server channel
    // on and minGroupspecVersion 2: 7f:02, 01, 0c, 0e:"event", end marker.
    assert_eq!(spec.to_string(), "G:027f020101010c060e6576656e7400");
    let live = config.app("live").unwrap();
    let into: Vec<_> = live.republished_into("anything").cloned().collect();
    assert_eq!(into, vec![spec]);
}

#[test]
fn a_bad_groupspec_names_its_line_and_why() {
    let text = "[[app]]\nname = \"live\"\n[app.group]\nallow = [\n  \"G:0101010c050e74657374011b00\",\n  \"G:01zz\",\n]\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (6, 3));
    assert!(
        message.starts_with(
            r#"config.toml:6:3: app "live": group.allow: "G:01zz" is neither a group name nor a groupspec ("#
        ),
        "{message}"
    );
}

#[test]
fn user_doc_shows_the_example_file_verbatim() {
    let doc = std::fs::read_to_string(docs("config.md")).unwrap();
    let example = std::fs::read_to_string(docs("example-config.toml")).unwrap();
    assert!(
        doc.contains(&format!("```toml\n{example}```")),
        "docs/config.md must include docs/example-config.toml as its complete example"
    );
}

#[test]
fn bad_cidr_names_file_line_column_app_and_key() {
    let text = r#"# edge config
[server]
rtmfp_listen = "0.0.0.0:1935"

[[app]]
name = "live"

[app.connect]
token = "abc"
allow = [
        "10.0.0.0/8",
        "10.0.0.0/33",
]
"#;
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (12, 9));
    assert_eq!(
        message,
        r#"config.toml:12:9: app "live": connect.allow: "10.0.0.0/33" is not a CIDR (prefix longer than 32)"#
    );
}

#[test]
fn cidr_with_host_bits_suggests_the_network() {
    let text = "[[app]]\nname = \"tv\"\n[app.publish]\ndeny = [\"2001:db8::1/32\"]\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (4, 9));
    assert!(
        message.ends_with(
            "app \"tv\": publish.deny: \"2001:db8::1/32\" is not a CIDR (host bits set; the \
             network is 2001:db8::/32)"
        ),
        "{message}"
    );
}

#[test]
fn unknown_key_is_an_error_at_the_key() {
    let text = "[[app]]\nname = \"live\"\n[app.limits]\nmax_session = 10\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (4, 1));
    assert!(
        message.starts_with("config.toml:4:1: unknown field `max_session`"),
        "{message}"
    );
    assert!(message.contains("`max_sessions`"), "{message}");

    let top = "[[app]]\nname = \"live\"\n\n[connect]\ntoken = \"t\"\n";
    let (line, _, message) = error_of(top);
    assert_eq!(line, 4, "{message}");
    assert!(
        message
            .ends_with("[connect] is not a top-level table; inside an [[app]] write [app.connect]"),
        "{message}"
    );
}

#[test]
fn duplicate_app_name_points_at_the_second_and_names_the_first() {
    let text = r#"[[app]]
name = "live"

[[app]]
name = "vod"

[[app]]
name = "live"
"#;
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (8, 8));
    assert_eq!(
        message,
        "config.toml:8:8: app \"live\": name: already used by the app at line 2; names must be \
         unique"
    );
}

#[test]
fn multicast_sending_options_are_checked_at_their_line() {
    let ok = "[server]\nmulticast_ttl = 32\nmulticast_loop = false\n[[app]]\nname = \"x\"\n";
    let config = ServerConfig::parse(ok, "c.toml").unwrap();
    assert_eq!(config.multicast.ttl, 32);
    assert!(!config.multicast.loop_back);
    assert_eq!(config.multicast.interface, None);
    let defaults = ServerConfig::parse("[[app]]\nname = \"x\"\n", "c.toml").unwrap();
    assert_eq!(defaults.multicast.ttl, 1);
    assert!(defaults.multicast.loop_back);
    for (lines, line, why) in [
        (
            "multicast_ttl = 0\n",
            3,
            "server.multicast_ttl: 0 is out of range",
        ),
        (
            "multicast_ttl = 256\n",
            3,
            "server.multicast_ttl: 256 is out of range",
        ),
        (
            "multicast_interface = \" \"\n",
            3,
            "server.multicast_interface: empty",
        ),
        ("multicast_loop = \"yes\"\n", 3, "expected a boolean"),
    ] {
        let text = format!("[server]\nshards = 1\n{lines}[[app]]\nname = \"x\"\n");
        let (at, _, message) = error_of(&text);
        assert_eq!(at, line, "{message}");
        assert!(message.contains(why), "{message}");
    }
}

#[test]
fn handshake_limits_have_defaults_zero_turns_them_off_and_errors_name_their_line() {
    let defaults = ServerConfig::parse("[[app]]\nname = \"x\"\n", "c.toml").unwrap();
    assert_eq!(defaults.max_handshakes_per_sec, 10_000);
    assert_eq!(defaults.amplification_limit, 5);
    let off =
        "[server]\nmax_handshakes_per_sec = 0\namplification_limit = 0\n[[app]]\nname = \"x\"\n";
    let off = ServerConfig::parse(off, "c.toml").unwrap();
    assert_eq!(
        (off.max_handshakes_per_sec, off.amplification_limit),
        (0, 0)
    );
    let quic = "[server]\namplification_limit = 3\n[[app]]\nname = \"x\"\n";
    assert_eq!(
        ServerConfig::parse(quic, "c.toml")
            .unwrap()
            .amplification_limit,
        3
    );
    for (line, why) in [
        (
            "max_handshakes_per_sec = -1\n",
            "server.max_handshakes_per_sec: -1 is out of range",
        ),
        (
            "amplification_limit = 101\n",
            "server.amplification_limit: 101 is out of range",
        ),
    ] {
        let text = format!("[server]\nshards = 1\n{line}[[app]]\nname = \"x\"\n");
        let (at, column, message) = error_of(&text);
        assert_eq!(at, 3, "{message}");
        assert!(column > 1, "{message}");
        assert!(message.contains(why), "{message}");
    }
    let text = "[[app]]\nname = \"x\"\n[app.limits]\nmax_sessions_per_address = 0\n";
    let (at, _, message) = error_of(text);
    assert_eq!(at, 4, "{message}");
    assert!(message.contains("max_sessions_per_address"), "{message}");
    let ok = "[[app]]\nname = \"x\"\n[app.limits]\nmax_sessions_per_address = 4\n";
    let config = ServerConfig::parse(ok, "c.toml").unwrap();
    assert_eq!(config.apps()[0].limits.max_sessions_per_address, Some(4));
}

#[test]
fn cookie_len_must_be_64_or_65() {
    let text = "[server]\nkeepalive_secs = 10\n\n\ncookie_len = 66\n[[app]]\nname = \"live\"\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (5, 14));
    assert!(
        message.contains("server.cookie_len: 66 is not a cookie length"),
        "{message}"
    );
    let ok = "[server]\ncookie_len = 65\n[[app]]\nname = \"live\"\n";
    assert_eq!(ServerConfig::parse(ok, "c.toml").unwrap().cookie_len, 65);
    let (line, _, message) = error_of("[server]\ncookie_len = \"64\"\n[[app]]\nname = \"x\"\n");
    assert_eq!(line, 2, "{message}");
}

#[test]
fn listen_addresses_take_ip_port_and_rtmp_takes_off() {
    let off =
        "[server]\nrtmp_listen = \"off\"\nrtmfp_listen = \"[::]:1935\"\n[[app]]\nname = \"live\"\n";
    let config = ServerConfig::parse(off, "c.toml").unwrap();
    assert_eq!(config.rtmp_listen, None);
    assert_eq!(config.rtmfp_listen, "[::]:1935".parse().unwrap());

    let (line, column, message) =
        error_of("[server]\nrtmfp_listen = \"off\"\n[[app]]\nname = \"live\"\n");
    assert_eq!((line, column), (2, 16));
    assert!(
        message.contains("server.rtmfp_listen: \"off\" is not an address"),
        "{message}"
    );
    let (line, _, message) =
        error_of("[server]\n\nrtmp_listen = \"localhost:1935\"\n[[app]]\nname = \"live\"\n");
    assert_eq!(line, 3);
    assert!(message.contains("or \"off\""), "{message}");
}

#[test]
fn metrics_listen_is_off_by_default_and_takes_ip_port_or_off() {
    let none = ServerConfig::parse("[[app]]\nname = \"live\"\n", "c.toml").unwrap();
    assert_eq!(none.metrics_listen, None);
    let on = "[server]\nmetrics_listen = \"[::1]:9100\"\n[[app]]\nname = \"live\"\n";
    let config = ServerConfig::parse(on, "c.toml").unwrap();
    assert_eq!(config.metrics_listen, Some("[::1]:9100".parse().unwrap()));
    let off = "[server]\nmetrics_listen = \"off\"\n[[app]]\nname = \"live\"\n";
    assert_eq!(
        ServerConfig::parse(off, "c.toml").unwrap().metrics_listen,
        None
    );

    let (line, column, message) =
        error_of("[server]\nshards = 2\nmetrics_listen = \":9100\"\n[[app]]\nname = \"live\"\n");
    assert_eq!((line, column), (3, 18));
    assert!(
        message.contains("server.metrics_listen: \":9100\" is not an address"),
        "{message}"
    );
    let (line, _, message) = error_of("[server]\nmetrics_listen = 9100\n[[app]]\nname = \"x\"\n");
    assert_eq!(line, 2, "{message}");
}

#[test]
fn toml_syntax_error_keeps_its_position() {
    let text = "[[app]]\nname = \"live\"\n[app.connect]\ntoken = \"unterminated\n";
    let (line, _, message) = error_of(text);
    assert_eq!(line, 4, "{message}");
    assert!(message.starts_with("config.toml:4:"), "{message}");
    assert!(!message.contains('\n'), "one line, no snippet: {message}");
}

#[test]
fn app_without_name_is_an_error_in_its_table() {
    let text = "[[app]]\nname = \"live\"\n\n[[app]]\n[app.connect]\ntoken = \"x\"\n";
    let (line, _, message) = error_of(text);
    assert!(message.contains("missing field `name`"), "{message}");
    assert!((4..=6).contains(&line), "{message}");
}

#[test]
fn app_name_characters_and_length_are_checked() {
    let (line, column, message) = error_of("[[app]]\nname = \"live stream\"\n");
    assert_eq!((line, column), (2, 8));
    assert!(message.contains("' ' is not allowed"), "{message}");
    let (_, _, message) = error_of("[[app]]\nname = \"\"\n");
    assert!(message.ends_with("app \"\": name: empty"), "{message}");
    let long = format!("[[app]]\nname = \"{}\"\n", "a".repeat(65));
    assert!(error_of(&long).2.contains("longer than 64 characters"));
    let max = format!("[[app]]\nname = \"{}\"\n", "a.B_9-".repeat(10) + "abcd");
    assert!(ServerConfig::parse(&max, "c.toml").is_ok());
}

#[test]
fn empty_streams_list_and_empty_token_are_errors() {
    let text = "[[app]]\nname = \"live\"\n[app.publish]\nstreams = []\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (4, 11));
    assert!(message.contains("publish.streams: an empty list refuses every stream"));
    let text = "[[app]]\nname = \"live\"\n[app.connect]\ntoken = \"\"\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (4, 9));
    assert!(message.contains("connect.token: empty"), "{message}");
}

#[test]
fn limits_must_be_positive() {
    let text = "[[app]]\nname = \"live\"\n[app.limits]\nmax_streams = 3\nmax_sessions = 0\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (5, 16));
    assert!(message.contains("limits.max_sessions: 0 would refuse everything"));
    let text = "[[app]]\nname = \"live\"\nlimits.max_publish_kbps = -5\n";
    let (line, _, message) = error_of(text);
    assert_eq!(line, 3);
    assert!(message.contains("-5 is out of range"), "{message}");
}

#[test]
fn idle_timeout_must_outlast_keepalive() {
    let text = "[server]\nkeepalive_secs = 30\nidle_timeout_secs = 20\n[[app]]\nname = \"live\"\n";
    let (line, column, message) = error_of(text);
    assert_eq!((line, column), (3, 21));
    assert!(message.contains("must be longer than server.keepalive_secs (30)"));
    let (line, _, _) = error_of("[server]\nkeepalive_secs = 0\n[[app]]\nname = \"live\"\n");
    assert_eq!(line, 2);
    // The default idle timeout (120 s) against a long keepalive: points at the keepalive.
    let (line, _, message) = error_of("[server]\nkeepalive_secs = 300\n[[app]]\nname = \"live\"\n");
    assert_eq!(line, 2);
    assert!(
        message.contains("(default 120) must be longer"),
        "{message}"
    );
}

#[test]
fn shards_are_a_positive_count() {
    let (line, _, message) = error_of("[server]\nshards = 0\n[[app]]\nname = \"live\"\n");
    assert_eq!(line, 2);
    assert!(
        message.contains("server.shards: 0 is out of range"),
        "{message}"
    );
}

#[test]
fn file_without_apps_is_refused_as_a_whole() {
    let err = ServerConfig::parse("[server]\nshards = 2\n", "config.toml").unwrap_err();
    assert_eq!(err.line(), None);
    assert!(
        err.to_string().starts_with("config.toml: no [[app]] table"),
        "{err}"
    );
}

#[test]
fn load_names_the_file_in_every_error() {
    let missing = docs("no-such-config.toml");
    let err = ServerConfig::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("rtmfp-edge-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        "[[app]]\nname = \"live\"\n[app.connect]\nallow = [\"10.0.0.0/8\", \"bogus\"]\n",
    )
    .unwrap();
    let err = ServerConfig::load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4:24: app \"live\": connect.allow: \"bogus\" is not a CIDR (\"bogus\" is not an \
             IPv4 or IPv6 address)",
            path.display()
        )
    );
}

#[test]
fn check_config_says_ok_with_a_summary_or_names_the_line_and_fails() {
    let bin = env!("CARGO_BIN_EXE_rtmfp-edge");
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .arg(docs("example-config.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("example-config.toml: ok"), "{text}");
    assert!(text.contains("app \"event\""), "{text}");
    assert!(text.contains("(p2p)"), "{text}");
    let bad = std::env::temp_dir().join(format!("check-config-{}.toml", std::process::id()));
    std::fs::write(&bad, "[server]\nshards = 0\n[[app]]\nname = \"x\"\n").unwrap();
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(":2:10: server.shards: 0 is out of range"),
        "{err}"
    );
}

#[test]
fn the_io_path_and_its_xdp_settings_are_server_keys_checked_at_their_line() {
    use rtmfp_edge::server::config::IoMode;
    let ok = "[server]\nio = \"xdp\"\nxdp_interface = \"eth1\"\nxdp_handshake_limit = \"50/100\"\n\
              [[app]]\nname = \"x\"\n";
    let config = ServerConfig::parse(ok, "c.toml").unwrap();
    assert_eq!(config.io, Some(IoMode::Xdp));
    assert_eq!(config.xdp_interface.as_deref(), Some("eth1"));
    assert_eq!(config.xdp_handshake_limit, Some((50, 100)));
    let off = "[server]\nxdp_handshake_limit = \"off\"\n[[app]]\nname = \"x\"\n";
    let config = ServerConfig::parse(off, "c.toml").unwrap();
    assert_eq!(config.xdp_handshake_limit, Some((0, 0)));
    let defaults = ServerConfig::parse("[[app]]\nname = \"x\"\n", "c.toml").unwrap();
    assert_eq!(
        (
            defaults.io,
            defaults.xdp_interface,
            defaults.xdp_handshake_limit
        ),
        (None, None, None)
    );
    for (lines, why) in [
        ("io = \"dpdk\"\n", "server.io: \"dpdk\" is not an I/O mode"),
        (
            "xdp_interface = \"\"\n",
            "server.xdp_interface: \"\" is not an interface",
        ),
        (
            "xdp_handshake_limit = \"20\"\n",
            "server.xdp_handshake_limit: \"20\": expected RATE/BURST",
        ),
        ("xdp_handshake_limit = \"0/40\"\n", "both above 0"),
    ] {
        let text = format!("[server]\nshards = 1\n{lines}[[app]]\nname = \"x\"\n");
        let (at, _, message) = error_of(&text);
        assert_eq!(at, 3, "{message}");
        assert!(message.contains(why), "{message}");
    }
}
