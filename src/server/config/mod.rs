//! The server's configuration: a TOML file, or the embedded default when there is none.
//!
//! `[server]` holds the listen addresses and engine settings; each `[[app]]` is an
//! application a client names in its connect, with who may connect, who may publish which
//! streams, and how much it takes. See `docs/config.md` for the file format.
//!
//! Everything here is data and pure decisions: the server counts sessions, streams and
//! players, and asks the [`AppConfig`] whether one more is allowed.

mod check;
pub mod cidr;
pub mod error;
pub mod glob;
pub mod multicast_request;
pub mod policy;
mod raw;
mod reload;
pub mod request;
pub mod token;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

pub use cidr::{Cidr, CidrError};
pub use error::{ConfigError, Location, Position};
pub use glob::StreamPattern;
pub use multicast_request::{MulticastRequest, MulticastRequestError};
pub use policy::{AccessRule, Limit, Limits, PublishRule, Refusal, RefusalKind};
pub use reload::Reload;
pub use request::{ConnectRequest, Query, RequestedApp, RequestedStream};
pub use token::SharedToken;

pub use crate::multicast::fec::FecScheme;

use crate::group::{GroupId, GroupSpec};
use crate::proto::cookie::FLASH_COOKIE_LEN;
use crate::proto::endpoint::{DEFAULT_AMPLIFICATION_LIMIT, DEFAULT_MAX_HANDSHAKES_PER_SEC};
use policy::Action;

/// RTMFP (UDP) and RTMP (TCP) both default to port 1935, as Flash clients assume.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1935);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The app of the embedded default.
pub const DEFAULT_APP: &str = "live";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP address for RTMFP.
    pub rtmfp_listen: SocketAddr,
    /// TCP address for RTMP ingest; `None` when `rtmp_listen = "off"`.
    pub rtmp_listen: Option<SocketAddr>,
    /// TCP address of the Prometheus metrics endpoint (docs/metrics.md); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Engine shards; `None`: one per core, counted by the engine.
    pub shards: Option<NonZeroUsize>,
    /// `[server] io`; `None`: auto (and `serve --io` wins over it).
    pub io: Option<IoMode>,
    /// `[server] xdp_interface`: the interface for AF_XDP (`serve --xdp-iface` wins).
    pub xdp_interface: Option<String>,
    /// `[server] xdp_handshake_limit`: the XDP program's handshakes a second per source
    /// and burst, (0, 0) for none; `None`: its default (`serve --xdp-handshake-limit` wins).
    pub xdp_handshake_limit: Option<(u32, u32)>,
    /// Responder cookie length: 64 (every deployed Flash client) or 65 (RFC 7425 peers).
    pub cookie_len: usize,
    /// How long a quiet session waits before it sends a keepalive.
    pub keepalive: Duration,
    /// How long a silent session lives.
    pub idle_timeout: Duration,
    /// How the server's IP multicast datagrams leave it.
    pub multicast: MulticastSending,
    /// RHellos each shard answers per second at most; 0: no cap (docs/hardening.md).
    pub max_handshakes_per_sec: u32,
    /// A handshake answer to an unvalidated address weighs at most this many times the
    /// datagram that asked for it; 0: no bound (docs/hardening.md).
    pub amplification_limit: u32,
    apps: Vec<AppConfig>,
}

/// `[server] io`: which I/O the engine's shards run their UDP on (`serve --io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// AF_XDP when `xdp_interface` is given and it opens, else io_uring when the kernel
    /// allows it, else the plain loop.
    Auto,
    Uring,
    Poll,
    /// AF_XDP on `xdp_interface`, io_uring beside it.
    Xdp,
}

impl IoMode {
    pub fn parse(text: &str) -> Option<IoMode> {
        match text {
            "auto" => Some(IoMode::Auto),
            "uring" => Some(IoMode::Uring),
            "poll" => Some(IoMode::Poll),
            "xdp" => Some(IoMode::Xdp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Uring => "uring",
            IoMode::Poll => "poll",
            IoMode::Xdp => "xdp",
        }
    }
}

/// Reads `RATE/BURST` (handshakes a second per source address, and the burst) or `off`
/// (no limit), as `serve --xdp-handshake-limit` and `[server] xdp_handshake_limit` take it.
pub fn parse_handshake_limit(text: &str) -> Result<(u32, u32), String> {
    if text == "off" {
        return Ok((0, 0));
    }
    let parsed = text
        .split_once('/')
        .and_then(|(r, b)| Some((r.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        Some((rate, burst)) if rate > 0 && burst > 0 => Ok((rate, burst)),
        _ => Err(format!(
            "{text:?}: expected RATE/BURST (such as 20/40), both above 0, or off"
        )),
    }
}

/// `[server] multicast_ttl`, `multicast_interface`, `multicast_loop`: how IP multicast
/// datagrams leave the server (docs/ipmulticast.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastSending {
    /// IPv4 TTL, IPv6 hop limit: how many routers the datagrams may cross. 1 (the
    /// kernel's default) keeps them on the server's own links.
    pub ttl: u32,
    /// The interface they leave by (a name such as `eth0`, or an IPv4 address of it);
    /// `None`: the one the routing table picks for the multicast address.
    pub interface: Option<String>,
    /// Whether receivers on the server's own host get them too.
    pub loop_back: bool,
}

impl Default for MulticastSending {
    fn default() -> Self {
        MulticastSending {
            ttl: 1,
            interface: None,
            loop_back: true,
        }
    }
}

/// One `[[app]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub name: String,
    pub connect: AccessRule,
    pub publish: PublishRule,
    pub limits: Limits,
    pub group: GroupRule,
    /// `[[app.republish]]`: streams the server republishes into NetGroups, first match
    /// first.
    pub republish: Vec<Republish>,
}

/// One `[[app.republish]]`: streams published on the app whose name matches `streams`
/// are republished into `group`, the server being one of its members
/// (docs/netgroup.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republish {
    pub streams: StreamPattern,
    pub group: GroupSpec,
    /// How the stream reaches the members.
    pub form: MulticastForm,
    /// Where IP multicast datagrams go (required for `Ip` and `Fusion`).
    pub address: Option<SocketAddr>,
    /// Repair datagrams after every K fragment datagrams (`Ip` and `Fusion` only).
    pub fec: Option<FecScheme>,
}

/// The three forms of multicast (the mission's): peer to peer only, native IP multicast
/// only, or both (Fusion: IP multicast where it reaches, peers repair and relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MulticastForm {
    #[default]
    P2p,
    Ip,
    Fusion,
}

impl MulticastForm {
    pub fn parse(text: &str) -> Option<MulticastForm> {
        match text.to_ascii_lowercase().as_str() {
            "p2p" => Some(MulticastForm::P2p),
            "ip" | "ipmulticast" => Some(MulticastForm::Ip),
            "fusion" => Some(MulticastForm::Fusion),
            _ => None,
        }
    }

    /// Whether the server sends IP multicast datagrams.
    pub fn uses_ip(self) -> bool {
        matches!(self, MulticastForm::Ip | MulticastForm::Fusion)
    }
}

/// `[app.group]`: which NetGroups members of the app may join, and how big one may grow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRule {
    /// Group ids derived from the allowed groupspecs; `None`: any group.
    pub allow: Option<Vec<GroupId>>,
    /// Members per group, server-wide.
    pub max_members: Option<u32>,
}

impl ServerConfig {
    /// What the server runs with when given no file: app `live`, open to everyone, no limits.
    pub fn embedded_default() -> ServerConfig {
        ServerConfig {
            rtmfp_listen: DEFAULT_LISTEN,
            rtmp_listen: Some(DEFAULT_LISTEN),
            metrics_listen: None,
            shards: None,
            io: None,
            xdp_interface: None,
            xdp_handshake_limit: None,
            cookie_len: FLASH_COOKIE_LEN,
            keepalive: DEFAULT_KEEPALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            multicast: MulticastSending::default(),
            max_handshakes_per_sec: DEFAULT_MAX_HANDSHAKES_PER_SEC,
            amplification_limit: DEFAULT_AMPLIFICATION_LIMIT,
            apps: vec![AppConfig::open(DEFAULT_APP)],
        }
    }

    /// Reads and checks the file at `path`; errors name it as given.
    pub fn load(path: impl AsRef<Path>) -> Result<ServerConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ServerConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; `origin` is the name errors give it (a file name).
    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, ConfigError> {
        check::parse(text, origin)
    }

    pub fn apps(&self) -> &[AppConfig] {
        &self.apps
    }

    /// The app a client asked for. Takes the `app` of a connect as sent: `live`, `live/`,
    /// `live/_definst_` and `live?token=abc` all name app `live`.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        let name = RequestedApp::parse(name).name;
        self.apps.iter().find(|app| app.name == name)
    }

    /// The whole connect decision short of the session count: the app must exist, and the
    /// client's address and token pass its `connect` rule.
    pub fn authorize_connect(
        &self,
        request: &ConnectRequest<'_>,
        client: IpAddr,
    ) -> Result<&AppConfig, Refusal> {
        let requested = request.app();
        let app = self
            .app(requested.name)
            .ok_or_else(|| Refusal::unknown_app(requested.name))?;
        app.authorize_connect(client, request.token().as_deref())?;
        Ok(app)
    }
}

impl ServerConfig {
    /// `serve --group`: every app republishes every stream into `group` as well, and
    /// lets members join it where it restricts groups.
    pub fn republish_everything_into(&mut self, group: GroupSpec) {
        self.republish_everything_as(group, MulticastForm::P2p, None);
    }

    /// `serve --group --multicast-form [--multicast-address]`.
    pub fn republish_everything_as(
        &mut self,
        group: GroupSpec,
        form: MulticastForm,
        address: Option<SocketAddr>,
    ) {
        for app in &mut self.apps {
            if let Some(allow) = &mut app.group.allow {
                if !allow.contains(&group.group_id()) {
                    allow.push(group.group_id());
                }
            }
            app.republish.push(Republish {
                streams: StreamPattern::new("*"),
                group: group.clone(),
                form,
                address,
                fec: None,
            });
        }
    }

    /// `serve --multicast-fec K+R`: every rule that sends `group`'s stream by IP
    /// multicast protects it with `fec`.
    pub fn protect_multicast(&mut self, group: &GroupId, fec: FecScheme) {
        let rules = self.apps.iter_mut().flat_map(|a| &mut a.republish);
        for r in rules.filter(|r| r.form.uses_ip() && r.group.group_id() == *group) {
            r.fec = Some(fec);
        }
    }

    /// The FEC scheme of a group's IP multicast, if the rule that sends it there has one.
    pub fn multicast_fec(&self, group: &GroupId) -> Option<FecScheme> {
        self.apps
            .iter()
            .flat_map(|a| &a.republish)
            .filter(|r| r.form.uses_ip() && r.group.group_id() == *group)
            .find(|r| r.address.is_some())
            .and_then(|r| r.fec)
    }

    /// The IP multicast address a group's stream goes to, if some rule sends it there.
    pub fn multicast_address(&self, group: &GroupId) -> Option<SocketAddr> {
        self.multicast_form(group).map(|(address, _)| address)
    }

    /// The address and form (`Ip` or `Fusion`) of a group's IP multicast, if any.
    pub fn multicast_form(&self, group: &GroupId) -> Option<(SocketAddr, MulticastForm)> {
        self.apps
            .iter()
            .flat_map(|a| &a.republish)
            .filter(|r| r.form.uses_ip() && r.group.group_id() == *group)
            .find_map(|r| r.address.map(|a| (a, r.form)))
    }

    /// Every IP multicast address some app's streams go to (each once).
    pub fn republish_multicast_addresses(&self) -> Vec<SocketAddr> {
        let mut addresses: Vec<SocketAddr> = Vec::new();
        for r in self.apps.iter().flat_map(|a| &a.republish) {
            if let Some(a) = r.address.filter(|_| r.form.uses_ip()) {
                if !addresses.contains(&a) {
                    addresses.push(a);
                }
            }
        }
        addresses
    }

    /// Every group some app republishes into (each once).
    pub fn republish_groups(&self) -> Vec<GroupSpec> {
        let mut groups: Vec<GroupSpec> = Vec::new();
        for r in self.apps.iter().flat_map(|a| &a.republish) {
            if !groups.iter().any(|g| g.group_id() == r.group.group_id()) {
                groups.push(r.group.clone());
            }
        }
        groups
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig::embedded_default()
    }
}

impl AppConfig {
    /// An app open to everyone, without limits.
    pub fn open(name: impl Into<String>) -> AppConfig {
        AppConfig {
            name: name.into(),
            connect: AccessRule::default(),
            publish: PublishRule::default(),
            limits: Limits::default(),
            group: GroupRule::default(),
            republish: Vec::new(),
        }
    }

    /// The groups a stream published as `stream` is republished into.
    pub fn republished_into<'a>(
        &'a self,
        stream: &'a str,
    ) -> impl Iterator<Item = &'a GroupSpec> + 'a {
        self.republish
            .iter()
            .filter(move |r| r.streams.matches(stream))
            .map(|r| &r.group)
    }

    /// May `client`, offering `token` (see [`ConnectRequest::token`]), connect?
    pub fn authorize_connect(&self, client: IpAddr, token: Option<&str>) -> Result<(), Refusal> {
        self.connect.check(Action::Connect, client, token)
    }

    /// May `client`, offering `token`, publish `stream` (the name without its `?query`,
    /// see [`RequestedStream`])? Checks the `publish` rule only: the client passed
    /// [`authorize_connect`](Self::authorize_connect) when it connected.
    pub fn authorize_publish(
        &self,
        client: IpAddr,
        token: Option<&str>,
        stream: &str,
    ) -> Result<(), Refusal> {
        self.publish.access.check(Action::Publish, client, token)?;
        self.publish.check_stream(stream)
    }

    /// [`authorize_connect`](Self::authorize_connect) again, for a client that connected
    /// under an earlier config, with the token it presented then (a reload).
    pub fn reauthorize_connect(
        &self,
        client: IpAddr,
        token: Option<&SharedToken>,
    ) -> Result<(), Refusal> {
        self.connect.check_presented(Action::Connect, client, token)
    }

    /// [`authorize_publish`](Self::authorize_publish) again, for a publisher that started
    /// under an earlier config, with the publish token it presented then (a reload).
    pub fn reauthorize_publish(
        &self,
        client: IpAddr,
        token: Option<&SharedToken>,
        stream: &str,
    ) -> Result<(), Refusal> {
        self.publish
            .access
            .check_presented(Action::Publish, client, token)?;
        self.publish.check_stream(stream)
    }

    /// May one more session connect, with `current` sessions on this app already?
    pub fn check_session_limit(&self, current: usize) -> Result<(), Refusal> {
        Limits::check_count(Limit::Sessions, self.limits.max_sessions, current, |max| {
            format!("application {:?} is full ({max} sessions)", self.name)
        })
    }

    /// May one more session connect from `client`, which has `current` sessions on this
    /// app already (any port)?
    pub fn check_address_limit(&self, client: IpAddr, current: usize) -> Result<(), Refusal> {
        Limits::check_count(
            Limit::SessionsPerAddress,
            self.limits.max_sessions_per_address,
            current,
            |max| {
                format!(
                    "address {} has its maximum of {max} sessions in application {:?} \
                     (max_sessions_per_address)",
                    client.to_canonical(),
                    self.name
                )
            },
        )
    }

    /// May one more stream be published, with `current` streams on this app already?
    pub fn check_stream_limit(&self, current: usize) -> Result<(), Refusal> {
        Limits::check_count(Limit::Streams, self.limits.max_streams, current, |max| {
            format!(
                "application {:?} has its maximum of {max} streams",
                self.name
            )
        })
    }

    /// May one more client play a stream that `current` clients already play?
    pub fn check_player_limit(&self, current: usize) -> Result<(), Refusal> {
        Limits::check_count(
            Limit::PlayersPerStream,
            self.limits.max_players_per_stream,
            current,
            |max| format!("stream has its maximum of {max} players"),
        )
    }

    /// May a publisher of this app have its stream republished into `group`
    /// (`fms.multicast.groupspec`)? Only into a group the app lets members join.
    pub fn authorize_group(&self, group: &GroupId) -> Result<(), Refusal> {
        self.authorize_group_join(group, 0)
    }

    /// May a member of this app join `group`, which has `current` members already?
    pub fn authorize_group_join(&self, group: &GroupId, current: usize) -> Result<(), Refusal> {
        if let Some(allowed) = &self.group.allow {
            if !allowed.contains(group) {
                return Err(Refusal {
                    kind: RefusalKind::GroupNotAllowed,
                    reason: format!(
                        "group {} is not one application {:?} allows",
                        group.to_hex(),
                        self.name
                    ),
                });
            }
        }
        Limits::check_count(
            Limit::GroupMembers,
            self.group.max_members,
            current,
            |max| format!("group has its maximum of {max} members"),
        )
    }

    /// Is a publisher measured at `kbps` within `max_publish_kbps`?
    pub fn check_publish_rate(&self, kbps: u32) -> Result<(), Refusal> {
        match self.limits.max_publish_kbps {
            Some(max) if kbps > max => Err(Refusal {
                kind: RefusalKind::LimitReached(Limit::PublishKbps),
                reason: format!("publishing at {kbps} kbps, over the limit of {max} kbps"),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
