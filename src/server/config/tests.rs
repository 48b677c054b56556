//! Decisions of a parsed config: every refusal kind, and the embedded default.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn one_app(body: &str) -> AppConfig {
    let text = format!("[[app]]\nname = \"live\"\n{body}");
    let config = ServerConfig::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    config.app("live").unwrap().clone()
}

#[test]
fn embedded_default_is_one_open_app_without_limits() {
    let config = ServerConfig::embedded_default();
    assert_eq!(config.apps().len(), 1);
    let app = config.app("live").unwrap();
    assert_eq!(app.limits, Limits::default());
    assert_eq!(app.authorize_connect(ip("198.51.100.1"), None), Ok(()));
    assert_eq!(
        app.authorize_publish(ip("2001:db8::1"), None, "anything"),
        Ok(())
    );
    assert_eq!(app.check_session_limit(usize::MAX - 1), Ok(()));
    assert_eq!(config.rtmfp_listen, "0.0.0.0:1935".parse().unwrap());
    assert_eq!(config.rtmp_listen, Some("0.0.0.0:1935".parse().unwrap()));
    assert_eq!(config.cookie_len, 64);
    assert_eq!(config.shards, None);
    assert_eq!(config.keepalive, Duration::from_secs(15));
    assert_eq!(config.idle_timeout, Duration::from_secs(120));
}

#[test]
fn minimal_file_equals_embedded_default() {
    let parsed = ServerConfig::parse("[[app]]\nname = \"live\"\n", "min.toml").unwrap();
    assert_eq!(parsed, ServerConfig::embedded_default());
}

#[test]
fn app_lookup_ignores_slash_instance_and_query() {
    let config = ServerConfig::embedded_default();
    for raw in ["live", "live/", "live?token=abc", "live/_definst_"] {
        assert_eq!(
            config.app(raw).map(|a| a.name.as_str()),
            Some("live"),
            "{raw}"
        );
    }
    assert!(config.app("Live").is_none());
    assert!(config.app("vod").is_none());
}

#[test]
fn unknown_app_is_refused_by_name() {
    let config = ServerConfig::embedded_default();
    let request = ConnectRequest {
        app: Some("vod?token=x"),
        ..ConnectRequest::default()
    };
    let refusal = config
        .authorize_connect(&request, ip("10.0.0.1"))
        .unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::UnknownApp);
    assert_eq!(refusal.reason, "no application \"vod\"");
}

#[test]
fn connect_token_is_required_and_checked() {
    let app = one_app("[app.connect]\ntoken = \"s3cret\"\n");
    let client = ip("192.0.2.10");
    let missing = app.authorize_connect(client, None).unwrap_err();
    assert_eq!(missing.kind, RefusalKind::BadToken);
    assert_eq!(missing.reason, "token required");
    let empty = app.authorize_connect(client, Some("")).unwrap_err();
    assert_eq!(empty.reason, "token required");
    let wrong = app.authorize_connect(client, Some("guess")).unwrap_err();
    assert_eq!(wrong.kind, RefusalKind::BadToken);
    assert_eq!(wrong.reason, "bad token");
    assert_eq!(app.authorize_connect(client, Some("s3cret")), Ok(()));
}

#[test]
fn server_connect_takes_the_token_from_the_tc_url() {
    let text = "[[app]]\nname = \"live\"\nconnect.token = \"s3cret\"\n";
    let config = ServerConfig::parse(text, "t.toml").unwrap();
    let ok = ConnectRequest {
        app: Some("live/"),
        tc_url: Some("rtmfp://edge:1935/live/?token=s3cret"),
        first_extra_arg: None,
    };
    assert_eq!(
        config.authorize_connect(&ok, ip("192.0.2.1")).unwrap().name,
        "live"
    );
    let by_arg = ConnectRequest {
        app: Some("live"),
        tc_url: None,
        first_extra_arg: Some("s3cret"),
    };
    assert!(config.authorize_connect(&by_arg, ip("192.0.2.1")).is_ok());
    let bad = ConnectRequest {
        first_extra_arg: Some("nope"),
        ..ok
    };
    let refusal = config.authorize_connect(&bad, ip("192.0.2.1")).unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::BadToken);
}

#[test]
fn deny_wins_over_allow_and_names_the_rule() {
    let app = one_app(
        "[app.connect]\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ndeny = [\"10.66.0.0/16\"]\n",
    );
    assert_eq!(app.authorize_connect(ip("10.1.2.3"), None), Ok(()));
    assert_eq!(app.authorize_connect(ip("2001:db8::5"), None), Ok(()));
    let denied = app.authorize_connect(ip("10.66.1.2"), None).unwrap_err();
    assert_eq!(denied.kind, RefusalKind::AddressDenied);
    assert_eq!(
        denied.reason,
        "address 10.66.1.2 is denied by rule 10.66.0.0/16"
    );
    let outside = app.authorize_connect(ip("192.0.2.1"), None).unwrap_err();
    assert_eq!(outside.kind, RefusalKind::AddressDenied);
    assert_eq!(
        outside.reason,
        "address 192.0.2.1 is not allowed to connect"
    );
}

#[test]
fn empty_allow_admits_everyone_not_denied() {
    let app = one_app("[app.connect]\ndeny = [\"10.0.0.0/8\", \"203.0.113.9\"]\n");
    assert_eq!(app.authorize_connect(ip("192.0.2.1"), None), Ok(()));
    assert_eq!(app.authorize_connect(ip("2001:db8::1"), None), Ok(()));
    let single = app.authorize_connect(ip("203.0.113.9"), None).unwrap_err();
    assert_eq!(
        single.reason,
        "address 203.0.113.9 is denied by rule 203.0.113.9"
    );
}

#[test]
fn ipv4_mapped_client_meets_ipv4_rules_and_is_reported_as_ipv4() {
    let app = one_app("[app.connect]\ndeny = [\"10.0.0.0/8\"]\n");
    let refusal = app
        .authorize_connect(ip("::ffff:10.1.2.3"), None)
        .unwrap_err();
    assert_eq!(
        refusal.reason,
        "address 10.1.2.3 is denied by rule 10.0.0.0/8"
    );
    let allow_only = one_app("[app.connect]\nallow = [\"192.0.2.0/24\"]\n");
    assert_eq!(
        allow_only.authorize_connect(ip("::ffff:192.0.2.7"), None),
        Ok(())
    );
}

#[test]
fn address_is_checked_before_the_token() {
    let app = one_app("[app.connect]\ntoken = \"t\"\ndeny = [\"10.0.0.0/8\"]\n");
    let refusal = app
        .authorize_connect(ip("10.0.0.1"), Some("t"))
        .unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::AddressDenied);
}

#[test]
fn publisher_needs_its_own_token_and_address() {
    let app = one_app(
        "[app.connect]\ntoken = \"viewer\"\n[app.publish]\ntoken = \"studio\"\nallow = [\"192.0.2.0/24\"]\n",
    );
    let studio = ip("192.0.2.5");
    assert_eq!(app.authorize_connect(studio, Some("viewer")), Ok(()));
    let with_viewer_token = app
        .authorize_publish(studio, Some("viewer"), "cam1")
        .unwrap_err();
    assert_eq!(with_viewer_token.kind, RefusalKind::BadToken);
    assert_eq!(with_viewer_token.reason, "bad publish token");
    let none = app.authorize_publish(studio, None, "cam1").unwrap_err();
    assert_eq!(none.reason, "publish token required");
    assert_eq!(
        app.authorize_publish(studio, Some("studio"), "cam1"),
        Ok(())
    );
    let elsewhere = app.authorize_publish(ip("198.51.100.1"), Some("studio"), "cam1");
    let elsewhere = elsewhere.unwrap_err();
    assert_eq!(elsewhere.kind, RefusalKind::AddressDenied);
    assert_eq!(
        elsewhere.reason,
        "address 198.51.100.1 is not allowed to publish"
    );
}

#[test]
fn publish_stream_names_must_match_a_pattern() {
    let app = one_app("[app.publish]\nstreams = [\"cam-*\", \"event-??\"]\n");
    let client = ip("192.0.2.1");
    assert_eq!(app.authorize_publish(client, None, "cam-front"), Ok(()));
    assert_eq!(app.authorize_publish(client, None, "event-07"), Ok(()));
    let refusal = app.authorize_publish(client, None, "event-7").unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::StreamNotAllowed);
    assert_eq!(
        refusal.reason,
        "stream name \"event-7\" may not be published here"
    );
}

#[test]
fn session_limit_refuses_the_one_past_the_maximum() {
    let app = one_app("[app.limits]\nmax_sessions = 2\n");
    assert_eq!(app.check_session_limit(0), Ok(()));
    assert_eq!(app.check_session_limit(1), Ok(()));
    let full = app.check_session_limit(2).unwrap_err();
    assert_eq!(full.kind, RefusalKind::LimitReached(Limit::Sessions));
    assert_eq!(full.reason, "application \"live\" is full (2 sessions)");
    assert!(app.check_session_limit(3).is_err());
}

#[test]
fn stream_player_and_rate_limits_refuse_with_their_kind() {
    let app = one_app(
        "[app.limits]\nmax_streams = 1\nmax_players_per_stream = 3\nmax_publish_kbps = 2500\n",
    );
    assert_eq!(app.check_stream_limit(0), Ok(()));
    let streams = app.check_stream_limit(1).unwrap_err();
    assert_eq!(streams.kind, RefusalKind::LimitReached(Limit::Streams));
    assert_eq!(
        streams.reason,
        "application \"live\" has its maximum of 1 streams"
    );
    assert_eq!(app.check_player_limit(2), Ok(()));
    let players = app.check_player_limit(3).unwrap_err();
    assert_eq!(
        players.kind,
        RefusalKind::LimitReached(Limit::PlayersPerStream)
    );
    assert_eq!(players.reason, "stream has its maximum of 3 players");
    assert_eq!(app.check_publish_rate(2500), Ok(()));
    let rate = app.check_publish_rate(2501).unwrap_err();
    assert_eq!(rate.kind, RefusalKind::LimitReached(Limit::PublishKbps));
    assert_eq!(
        rate.reason,
        "publishing at 2501 kbps, over the limit of 2500 kbps"
    );
    assert_eq!(rate.to_string(), rate.reason);
}

#[test]
fn absent_limits_never_refuse() {
    let app = AppConfig::open("live");
    assert_eq!(app.check_stream_limit(1_000_000), Ok(()));
    assert_eq!(app.check_player_limit(1_000_000), Ok(()));
    assert_eq!(app.check_publish_rate(u32::MAX), Ok(()));
}

#[test]
fn limit_names_are_the_config_keys() {
    assert_eq!(Limit::Sessions.to_string(), "max_sessions");
    assert_eq!(Limit::PublishKbps.to_string(), "max_publish_kbps");
}
