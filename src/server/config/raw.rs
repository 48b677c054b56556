//! The file as serde reads it: every value the checks may complain about keeps its span.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub app: Vec<RawApp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub rtmfp_listen: Option<Spanned<String>>,
    pub rtmp_listen: Option<Spanned<String>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub shards: Option<Spanned<i64>>,
    pub io: Option<Spanned<String>>,
    pub xdp_interface: Option<Spanned<String>>,
    pub xdp_handshake_limit: Option<Spanned<String>>,
    pub cookie_len: Option<Spanned<i64>>,
    pub keepalive_secs: Option<Spanned<i64>>,
    pub idle_timeout_secs: Option<Spanned<i64>>,
    pub multicast_ttl: Option<Spanned<i64>>,
    pub multicast_interface: Option<Spanned<String>>,
    pub multicast_loop: Option<Spanned<bool>>,
    pub max_handshakes_per_sec: Option<Spanned<i64>>,
    pub amplification_limit: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub name: Spanned<String>,
    #[serde(default)]
    pub connect: RawConnect,
    #[serde(default)]
    pub publish: RawPublish,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub group: RawGroup,
    #[serde(default)]
    pub republish: Vec<RawRepublish>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepublish {
    pub streams: Option<Spanned<String>>,
    pub group: Spanned<String>,
    pub form: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    /// FEC of the IP multicast datagrams, "K+R".
    pub fec: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    pub token: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublish {
    pub token: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub streams: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_sessions: Option<Spanned<i64>>,
    pub max_sessions_per_address: Option<Spanned<i64>>,
    pub max_streams: Option<Spanned<i64>>,
    pub max_players_per_stream: Option<Spanned<i64>>,
    pub max_publish_kbps: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub max_members: Option<Spanned<i64>>,
}
