//! From the file as read to a [`ServerConfig`]: every value checked, and a bad one reported
//! at its own line and column.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Position, Source};
use super::raw::{RawApp, RawConfig, RawGroup, RawLimits, RawRepublish, RawServer};
use super::{
    parse_handshake_limit, AccessRule, AppConfig, Cidr, GroupRule, IoMode, Limits, MulticastForm,
    MulticastSending, PublishRule, Republish, ServerConfig, SharedToken, StreamPattern,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEPALIVE, DEFAULT_LISTEN,
};
use crate::group::GroupSpec;
use crate::multicast::fec::FecScheme;
use crate::proto::cookie::{FLASH_COOKIE_LEN, RFC_COOKIE_LEN};
use crate::proto::endpoint::{DEFAULT_AMPLIFICATION_LIMIT, DEFAULT_MAX_HANDSHAKES_PER_SEC};

const MAX_APP_NAME: usize = 64;
/// A sanity bound that catches typos, far above any machine's core count.
const MAX_SHARDS: i64 = 4096;
/// Past this an answer may weigh more than a full-size datagram for the smallest IHello.
const MAX_AMPLIFICATION_LIMIT: i64 = 100;

pub(super) fn parse(text: &str, origin: &str) -> Result<ServerConfig, ConfigError> {
    let source = Source { text, origin };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let misplaced = ["connect", "publish", "limits", "group", "republish"]
            .into_iter()
            .find(|t| {
                e.message()
                    .starts_with(&format!("unknown field `{t}`, expected `server`"))
            });
        match misplaced {
            // The TOML trap: `[connect]` after `[[app]]` is a new top-level table.
            Some(table) => source.error_at(
                e.span().unwrap_or(0..0),
                format!(
                    "[{table}] is not a top-level table; inside an [[app]] write [app.{table}]"
                ),
            ),
            None => source.toml_error(e),
        }
    })?;
    Checker { source }.config(raw)
}

struct Checker<'a> {
    source: Source<'a>,
}

impl Checker<'_> {
    fn at<T>(&self, value: &Spanned<T>, problem: impl Into<String>) -> ConfigError {
        self.source.error_at(value.span(), problem)
    }

    fn config(&self, raw: RawConfig) -> Result<ServerConfig, ConfigError> {
        let mut config = self.server(raw.server)?;
        if raw.app.is_empty() {
            return Err(self.source.error(
                "no [[app]] table: clients could connect to nothing; add one, such as \
                 [[app]] with name = \"live\"",
            ));
        }
        let mut apps: Vec<(AppConfig, Position)> = Vec::with_capacity(raw.app.len());
        for raw_app in raw.app {
            let name = &raw_app.name;
            if let Some((_, first)) = apps.iter().find(|(a, _)| a.name == *name.get_ref()) {
                return Err(self.at(
                    name,
                    format!(
                        "app {:?}: name: already used by the app at line {}; names must be \
                         unique",
                        name.get_ref(),
                        first.line
                    ),
                ));
            }
            let position = Position::of(self.source.text, name.span().start);
            apps.push((self.app(raw_app)?, position));
        }
        config.apps = apps.into_iter().map(|(app, _)| app).collect();
        Ok(config)
    }

    fn server(&self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let rtmfp_listen = match &raw.rtmfp_listen {
            Some(text) => self
                .listen(text, "server.rtmfp_listen", false)?
                .unwrap_or(DEFAULT_LISTEN),
            None => DEFAULT_LISTEN,
        };
        let rtmp_listen = match &raw.rtmp_listen {
            Some(text) => self.listen(text, "server.rtmp_listen", true)?,
            None => Some(DEFAULT_LISTEN),
        };
        let metrics_listen = match &raw.metrics_listen {
            Some(text) => self.listen(text, "server.metrics_listen", true)?,
            None => None,
        };
        let shards = match &raw.shards {
            Some(n) if (1..=MAX_SHARDS).contains(n.get_ref()) => {
                NonZeroUsize::new(*n.get_ref() as usize)
            }
            Some(n) => {
                return Err(self.at(
                    n,
                    format!(
                        "server.shards: {} is out of range; give 1 to {MAX_SHARDS}, or leave \
                         it out for one shard per core",
                        n.get_ref()
                    ),
                ))
            }
            None => None,
        };
        let io = match &raw.io {
            Some(text) => Some(IoMode::parse(text.get_ref()).ok_or_else(|| {
                self.at(
                    text,
                    format!(
                        "server.io: {:?} is not an I/O mode; give auto, uring, poll or xdp",
                        text.get_ref()
                    ),
                )
            })?),
            None => None,
        };
        let xdp_interface = match &raw.xdp_interface {
            Some(name) if name.get_ref().trim().is_empty() || name.get_ref().contains('/') => {
                return Err(self.at(
                    name,
                    format!(
                        "server.xdp_interface: {:?} is not an interface name (such as eth0)",
                        name.get_ref()
                    ),
                ))
            }
            Some(name) => Some(name.get_ref().clone()),
            None => None,
        };
        let xdp_handshake_limit = match &raw.xdp_handshake_limit {
            Some(text) => Some(
                parse_handshake_limit(text.get_ref())
                    .map_err(|e| self.at(text, format!("server.xdp_handshake_limit: {e}")))?,
            ),
            None => None,
        };
        let cookie_len = match &raw.cookie_len {
            Some(n) if [FLASH_COOKIE_LEN, RFC_COOKIE_LEN].contains(&(*n.get_ref() as usize)) => {
                *n.get_ref() as usize
            }
            Some(n) => {
                return Err(self.at(
                    n,
                    format!(
                        "server.cookie_len: {} is not a cookie length; give 64 (every \
                         deployed Flash client takes it) or 65 (strict RFC 7425 peers)",
                        n.get_ref()
                    ),
                ))
            }
            None => FLASH_COOKIE_LEN,
        };
        let keepalive = self
            .seconds(&raw.keepalive_secs, "server.keepalive_secs")?
            .unwrap_or(DEFAULT_KEEPALIVE);
        let idle_timeout = self
            .seconds(&raw.idle_timeout_secs, "server.idle_timeout_secs")?
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        if idle_timeout <= keepalive {
            let default =
                |given: &Option<Spanned<i64>>| if given.is_some() { "" } else { "default " };
            let problem = format!(
                "server.idle_timeout_secs ({}{}) must be longer than server.keepalive_secs \
                 ({}{}), or sessions time out before their keepalive is sent",
                default(&raw.idle_timeout_secs),
                idle_timeout.as_secs(),
                default(&raw.keepalive_secs),
                keepalive.as_secs()
            );
            return Err(match (&raw.idle_timeout_secs, &raw.keepalive_secs) {
                (Some(idle), _) => self.at(idle, problem),
                (None, Some(keepalive)) => self.at(keepalive, problem),
                (None, None) => self.source.error(problem),
            });
        }
        let mut multicast = MulticastSending::default();
        if let Some(ttl) = &raw.multicast_ttl {
            multicast.ttl = u32::try_from(*ttl.get_ref())
                .ok()
                .filter(|t| (1..=255).contains(t))
                .ok_or_else(|| {
                    self.at(
                        ttl,
                        format!(
                            "server.multicast_ttl: {} is out of range; give 1 (the server's \
                             links only) to 255",
                            ttl.get_ref()
                        ),
                    )
                })?;
        }
        if let Some(interface) = &raw.multicast_interface {
            let name = interface.get_ref().trim();
            if name.is_empty() {
                return Err(self.at(
                    interface,
                    "server.multicast_interface: empty; give an interface name (eth0) or \
                     one of its IPv4 addresses, or leave it out for the routing table's \
                     choice",
                ));
            }
            multicast.interface = Some(name.to_owned());
        }
        if let Some(l) = &raw.multicast_loop {
            multicast.loop_back = *l.get_ref();
        }
        let max_handshakes_per_sec = match &raw.max_handshakes_per_sec {
            Some(n) => u32::try_from(*n.get_ref()).map_err(|_| {
                self.at(
                    n,
                    format!(
                        "server.max_handshakes_per_sec: {} is out of range; give the RHellos                          each shard may answer per second (0 for no cap, default                          {DEFAULT_MAX_HANDSHAKES_PER_SEC})",
                        n.get_ref()
                    ),
                )
            })?,
            None => DEFAULT_MAX_HANDSHAKES_PER_SEC,
        };
        let amplification_limit = match &raw.amplification_limit {
            Some(n) if (0..=MAX_AMPLIFICATION_LIMIT).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                return Err(self.at(
                    n,
                    format!(
                        "server.amplification_limit: {} is out of range; give 0 (no bound)                          or 1 to {MAX_AMPLIFICATION_LIMIT}: how many times the bytes of an                          IHello its answer may weigh (3 is QUIC's bound,                          {DEFAULT_AMPLIFICATION_LIMIT} the default, which librtmfp needs)",
                        n.get_ref()
                    ),
                ))
            }
            None => DEFAULT_AMPLIFICATION_LIMIT,
        };
        Ok(ServerConfig {
            rtmfp_listen,
            rtmp_listen,
            metrics_listen,
            shards,
            io,
            xdp_interface,
            xdp_handshake_limit,
            cookie_len,
            keepalive,
            idle_timeout,
            multicast,
            max_handshakes_per_sec,
            amplification_limit,
            apps: Vec::new(),
        })
    }

    /// An `IP:port`, or with `may_be_off`, `"off"` for `None`.
    fn listen(
        &self,
        text: &Spanned<String>,
        key: &str,
        may_be_off: bool,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let value = text.get_ref().trim();
        if may_be_off && value == "off" {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| {
            let off = if may_be_off { ", or \"off\"" } else { "" };
            self.at(
                text,
                format!(
                    "{key}: {value:?} is not an address; expected IP:port, such as \
                     \"0.0.0.0:1935\" or \"[::]:1935\"{off}"
                ),
            )
        })
    }

    fn seconds(
        &self,
        value: &Option<Spanned<i64>>,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        match value {
            Some(n) if *n.get_ref() >= 1 => Ok(Some(Duration::from_secs(*n.get_ref() as u64))),
            Some(n) => Err(self.at(n, format!("{key}: {} seconds; give 1 or more", n.get_ref()))),
            None => Ok(None),
        }
    }

    fn app(&self, raw: RawApp) -> Result<AppConfig, ConfigError> {
        let name = raw.name.get_ref().clone();
        if let Some(problem) = app_name_problem(&name) {
            return Err(self.at(&raw.name, format!("app {name:?}: name: {problem}")));
        }
        let ctx = |key: &str| format!("app {name:?}: {key}");
        let connect = self.access(
            &ctx("connect"),
            raw.connect.token,
            raw.connect.allow,
            raw.connect.deny,
        )?;
        let access = self.access(
            &ctx("publish"),
            raw.publish.token,
            raw.publish.allow,
            raw.publish.deny,
        )?;
        let streams = match raw.publish.streams {
            Some(list) => Some(self.streams(&ctx("publish.streams"), list)?),
            None => None,
        };
        let group = self.group(&ctx("group"), raw.group)?;
        let republish = raw
            .republish
            .into_iter()
            .map(|r| self.republish(&ctx("republish"), &group, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AppConfig {
            limits: self.limits(&ctx("limits"), raw.limits)?,
            group,
            republish,
            name,
            connect,
            publish: PublishRule { access, streams },
        })
    }

    fn access(
        &self,
        ctx: &str,
        token: Option<Spanned<String>>,
        allow: Vec<Spanned<String>>,
        deny: Vec<Spanned<String>>,
    ) -> Result<AccessRule, ConfigError> {
        let token = match token {
            Some(t) if t.get_ref().is_empty() => {
                return Err(self.at(
                    &t,
                    format!("{ctx}.token: empty; leave the key out for no token"),
                ))
            }
            Some(t) => Some(SharedToken::new(t.get_ref())),
            None => None,
        };
        Ok(AccessRule {
            token,
            allow: self.cidrs(&format!("{ctx}.allow"), &allow)?,
            deny: self.cidrs(&format!("{ctx}.deny"), &deny)?,
        })
    }

    fn cidrs(&self, ctx: &str, list: &[Spanned<String>]) -> Result<Vec<Cidr>, ConfigError> {
        list.iter()
            .map(|text| {
                text.get_ref().parse::<Cidr>().map_err(|e| {
                    self.at(
                        text,
                        format!("{ctx}: {:?} is not a CIDR ({e})", text.get_ref()),
                    )
                })
            })
            .collect()
    }

    fn streams(
        &self,
        ctx: &str,
        list: Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<StreamPattern>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.at(
                &list,
                format!("{ctx}: an empty list refuses every stream; leave the key out to allow any name"),
            ));
        }
        list.into_inner()
            .into_iter()
            .map(|pattern| {
                if pattern.get_ref().is_empty() {
                    Err(self.at(&pattern, format!("{ctx}: empty pattern")))
                } else {
                    Ok(StreamPattern::new(pattern.into_inner()))
                }
            })
            .collect()
    }

    fn group(&self, ctx: &str, raw: RawGroup) -> Result<GroupRule, ConfigError> {
        let allow = match raw.allow {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(self.at(
                    &list,
                    format!(
                        "{ctx}.allow: an empty list refuses every group; leave the key out \
                         to allow any group"
                    ),
                ))
            }
            Some(list) => Some(
                list.into_inner()
                    .into_iter()
                    .map(|text| {
                        GroupSpec::from_name_or_spec(text.get_ref())
                            .map(|spec| spec.group_id())
                            .map_err(|e| {
                                self.at(
                                    &text,
                                    format!(
                                        "{ctx}.allow: {:?} is neither a group name nor a \
                                         groupspec ({e})",
                                        text.get_ref()
                                    ),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(GroupRule {
            allow,
            max_members: self.limit(ctx, "max_members", &raw.max_members)?,
        })
    }

    /// One `[[app.republish]]`: its group must be one the app lets members join.
    fn republish(
        &self,
        ctx: &str,
        rule: &GroupRule,
        raw: RawRepublish,
    ) -> Result<Republish, ConfigError> {
        let group = GroupSpec::from_name_or_spec(raw.group.get_ref()).map_err(|e| {
            self.at(
                &raw.group,
                format!(
                    "{ctx}.group: {:?} is neither a group name nor a groupspec ({e})",
                    raw.group.get_ref()
                ),
            )
        })?;
        if let Some(allow) = &rule.allow {
            if !allow.contains(&group.group_id()) {
                return Err(self.at(
                    &raw.group,
                    format!(
                        "{ctx}.group: {:?} is not in this app's group.allow, so its \
                         members could not join it",
                        raw.group.get_ref()
                    ),
                ));
            }
        }
        let streams = match raw.streams {
            Some(p) if p.get_ref().is_empty() => {
                return Err(self.at(&p, format!("{ctx}.streams: empty pattern")))
            }
            Some(p) => StreamPattern::new(p.into_inner()),
            None => StreamPattern::new("*"),
        };
        let form = match &raw.form {
            None => MulticastForm::P2p,
            Some(f) => MulticastForm::parse(f.get_ref()).ok_or_else(|| {
                self.at(
                    f,
                    format!("{ctx}.form: {:?} is not p2p, ip or fusion", f.get_ref()),
                )
            })?,
        };
        let address = match &raw.address {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
                    self.at(
                        a,
                        format!("{ctx}.address: {:?} is not ADDR:PORT", a.get_ref()),
                    )
                })?;
                if !addr.ip().is_multicast() || addr.port() == 0 {
                    return Err(self.at(
                        a,
                        format!(
                            "{ctx}.address: {addr} is not a multicast address and port \
                             (224.0.0.0/4 or ff00::/8)"
                        ),
                    ));
                }
                Some(addr)
            }
        };
        let fec = match &raw.fec {
            None => None,
            Some(f) if !form.uses_ip() => {
                return Err(self.at(
                    f,
                    format!(
                        "{ctx}.fec: form {form:?} sends no IP multicast to protect; \
                         use form \"ip\" or \"fusion\", or leave fec out"
                    ),
                ))
            }
            Some(f) => Some(
                FecScheme::parse(f.get_ref()).map_err(|e| self.at(f, format!("{ctx}.fec: {e}")))?,
            ),
        };
        if form.uses_ip() && address.is_none() {
            let at = raw.form.as_ref().unwrap_or(&raw.group);
            return Err(self.at(
                at,
                format!("{ctx}: form {form:?} sends IP multicast: it needs an address"),
            ));
        }
        Ok(Republish {
            streams,
            group,
            form,
            address,
            fec,
        })
    }

    fn limits(&self, ctx: &str, raw: RawLimits) -> Result<Limits, ConfigError> {
        Ok(Limits {
            max_sessions: self.limit(ctx, "max_sessions", &raw.max_sessions)?,
            max_sessions_per_address: self.limit(
                ctx,
                "max_sessions_per_address",
                &raw.max_sessions_per_address,
            )?,
            max_streams: self.limit(ctx, "max_streams", &raw.max_streams)?,
            max_players_per_stream: self.limit(
                ctx,
                "max_players_per_stream",
                &raw.max_players_per_stream,
            )?,
            max_publish_kbps: self.limit(ctx, "max_publish_kbps", &raw.max_publish_kbps)?,
        })
    }

    fn limit(
        &self,
        ctx: &str,
        key: &str,
        value: &Option<Spanned<i64>>,
    ) -> Result<Option<u32>, ConfigError> {
        let Some(n) = value else { return Ok(None) };
        match u32::try_from(*n.get_ref()) {
            Ok(0) => Err(self.at(
                n,
                format!("{ctx}.{key}: 0 would refuse everything; leave the key out for no limit"),
            )),
            Ok(max) => Ok(Some(max)),
            Err(_) => Err(self.at(
                n,
                format!(
                    "{ctx}.{key}: {} is out of range; give 1 to {}",
                    n.get_ref(),
                    u32::MAX
                ),
            )),
        }
    }
}

/// Why `name` cannot be an app name, if it cannot.
fn app_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty".to_string());
    }
    if name.chars().count() > MAX_APP_NAME {
        return Some(format!("longer than {MAX_APP_NAME} characters"));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|c| format!("{c:?} is not allowed; use letters, digits, '_', '.' and '-'"))
}
