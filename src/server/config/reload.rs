//! A running server taking a new config (SIGHUP): which of its settings take effect now,
//! which need a restart, and what changed, for the one line `serve` prints.
//!
//! The applications' rules (`[[app]]`: connect, publish, limits, groups, and which
//! streams go into which group) take effect at once. What the engine set up at start
//! cannot follow without one: the sockets (`rtmfp_listen`, `rtmp_listen`,
//! `metrics_listen`), the shards, the endpoint's handshake and session settings, how IP
//! multicast leaves the server, and the set of groups the server is a member of. For
//! those the running values are kept, and [`Reload::needs_restart`] names them.

use std::fmt;
use std::net::SocketAddr;

use super::{AppConfig, FecScheme, IoMode, MulticastForm, ServerConfig};
use crate::group::GroupId;

/// The outcome of [`ServerConfig::reload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// What the server runs with from now on: the new file's rules, with the settings
    /// that need a restart kept at their running values.
    pub config: ServerConfig,
    /// Apps in the new config only, in its order.
    pub apps_added: Vec<String>,
    /// Apps in the running config only: their clients are closed.
    pub apps_removed: Vec<String>,
    /// Apps in both whose rules differ.
    pub apps_changed: Vec<String>,
    /// Settings that changed in the file but keep their running value until a restart:
    /// `rtmfp_listen 0.0.0.0:1935 -> 0.0.0.0:1936`.
    pub needs_restart: Vec<String>,
}

impl Reload {
    /// Whether the new config changed nothing the server runs with.
    pub fn is_unchanged(&self) -> bool {
        self.apps_added.is_empty()
            && self.apps_removed.is_empty()
            && self.apps_changed.is_empty()
            && self.needs_restart.is_empty()
    }
}

impl fmt::Display for Reload {
    /// `apps added: a, b; removed: c; changed: d; needs a restart (running value
    /// kept): shards 4 -> 8`, or `no changes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unchanged() {
            return f.write_str("no changes");
        }
        let mut parts = Vec::new();
        for (what, names) in [
            ("apps added", &self.apps_added),
            ("apps removed", &self.apps_removed),
            ("apps changed", &self.apps_changed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!(
                "needs a restart (running value kept): {}",
                self.needs_restart.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// One group the server is a member of, and how its stream leaves the server.
type GroupPlan = (
    GroupId,
    Option<(SocketAddr, MulticastForm)>,
    Option<FecScheme>,
);

fn group_plan(config: &ServerConfig) -> Vec<GroupPlan> {
    let mut plan: Vec<GroupPlan> = config
        .republish_groups()
        .iter()
        .map(|spec| {
            let id = spec.group_id();
            (id, config.multicast_form(&id), config.multicast_fec(&id))
        })
        .collect();
    plan.sort_by_key(|(id, _, _)| *id);
    plan
}

fn shown<T: fmt::Display>(value: Option<T>, none: &str) -> String {
    value.map_or_else(|| none.to_owned(), |v| v.to_string())
}

impl ServerConfig {
    /// The running config (`self`) meets `new`, read from the file again: what the server
    /// runs with next, and what changed.
    pub fn reload(&self, new: ServerConfig) -> Reload {
        let mut config = new;
        let mut needs_restart = Vec::new();
        let mut keep = |name: &str, running: String, wanted: String| {
            if running != wanted {
                needs_restart.push(format!("{name} {running} -> {wanted}"));
            }
        };
        keep(
            "rtmfp_listen",
            self.rtmfp_listen.to_string(),
            config.rtmfp_listen.to_string(),
        );
        keep(
            "rtmp_listen",
            shown(self.rtmp_listen, "off"),
            shown(config.rtmp_listen, "off"),
        );
        keep(
            "metrics_listen",
            shown(self.metrics_listen, "off"),
            shown(config.metrics_listen, "off"),
        );
        keep(
            "shards",
            shown(self.shards, "one-per-core"),
            shown(config.shards, "one-per-core"),
        );
        keep(
            "io",
            shown(self.io.map(IoMode::name), "auto"),
            shown(config.io.map(IoMode::name), "auto"),
        );
        keep(
            "xdp_interface",
            shown(self.xdp_interface.as_deref(), "none"),
            shown(config.xdp_interface.as_deref(), "none"),
        );
        keep(
            "xdp_handshake_limit",
            format!("{:?}", self.xdp_handshake_limit),
            format!("{:?}", config.xdp_handshake_limit),
        );
        keep(
            "cookie_len",
            self.cookie_len.to_string(),
            config.cookie_len.to_string(),
        );
        keep(
            "keepalive_secs",
            self.keepalive.as_secs().to_string(),
            config.keepalive.as_secs().to_string(),
        );
        keep(
            "idle_timeout_secs",
            self.idle_timeout.as_secs().to_string(),
            config.idle_timeout.as_secs().to_string(),
        );
        keep(
            "max_handshakes_per_sec",
            self.max_handshakes_per_sec.to_string(),
            config.max_handshakes_per_sec.to_string(),
        );
        keep(
            "amplification_limit",
            self.amplification_limit.to_string(),
            config.amplification_limit.to_string(),
        );
        keep(
            "multicast_ttl",
            self.multicast.ttl.to_string(),
            config.multicast.ttl.to_string(),
        );
        keep(
            "multicast_interface",
            shown(self.multicast.interface.as_deref(), "default"),
            shown(config.multicast.interface.as_deref(), "default"),
        );
        keep(
            "multicast_loop",
            self.multicast.loop_back.to_string(),
            config.multicast.loop_back.to_string(),
        );
        // The server's group members and IP multicast senders are made at start.
        if group_plan(self) != group_plan(&config) {
            needs_restart.push(
                "the groups [[app.republish]] sends to, or how (apps keep their running \
                 republish rules; added apps republish nothing until then)"
                    .to_owned(),
            );
            for app in &mut config.apps {
                app.republish = self
                    .app_named(&app.name)
                    .map(|running| running.republish.clone())
                    .unwrap_or_default();
            }
        }
        config.rtmfp_listen = self.rtmfp_listen;
        config.rtmp_listen = self.rtmp_listen;
        config.metrics_listen = self.metrics_listen;
        config.shards = self.shards;
        config.cookie_len = self.cookie_len;
        config.keepalive = self.keepalive;
        config.idle_timeout = self.idle_timeout;
        config.max_handshakes_per_sec = self.max_handshakes_per_sec;
        config.amplification_limit = self.amplification_limit;
        config.multicast = self.multicast.clone();

        let names = |apps: &[AppConfig], other: &ServerConfig| -> Vec<String> {
            apps.iter()
                .filter(|a| other.app_named(&a.name).is_none())
                .map(|a| a.name.clone())
                .collect()
        };
        let apps_added = names(&config.apps, self);
        let apps_removed = names(&self.apps, &config);
        let apps_changed = config
            .apps
            .iter()
            .filter(|a| self.app_named(&a.name).is_some_and(|running| running != *a))
            .map(|a| a.name.clone())
            .collect();
        Reload {
            config,
            apps_added,
            apps_removed,
            apps_changed,
            needs_restart,
        }
    }

    /// The app called exactly `name` (no instance or query to strip).
    fn app_named(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }
}
