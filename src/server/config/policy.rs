//! The decisions an app's settings drive: who may connect, who may publish what, and how
//! many sessions, streams and players it takes. Pure functions of the request and of the
//! counts the caller keeps.

use std::fmt;
use std::net::IpAddr;

use thiserror::Error;

use super::cidr::Cidr;
use super::glob::StreamPattern;
use super::token::SharedToken;

/// Why a connect or publish is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No `[[app]]` of that name.
    UnknownApp,
    /// A token is required and none, or a wrong one, was given.
    BadToken,
    /// The client's address is in a deny list, or not in a non-empty allow list.
    AddressDenied,
    /// The stream name matches none of `publish.streams`.
    StreamNotAllowed,
    /// The group is not in `[app.group] allow`.
    GroupNotAllowed,
    LimitReached(Limit),
}

impl RefusalKind {
    /// Every kind, in the order counters keep them.
    pub const ALL: [RefusalKind; 11] = [
        RefusalKind::UnknownApp,
        RefusalKind::BadToken,
        RefusalKind::AddressDenied,
        RefusalKind::StreamNotAllowed,
        RefusalKind::GroupNotAllowed,
        RefusalKind::LimitReached(Limit::Sessions),
        RefusalKind::LimitReached(Limit::SessionsPerAddress),
        RefusalKind::LimitReached(Limit::Streams),
        RefusalKind::LimitReached(Limit::PlayersPerStream),
        RefusalKind::LimitReached(Limit::PublishKbps),
        RefusalKind::LimitReached(Limit::GroupMembers),
    ];

    /// Its place in [`Self::ALL`] (checked by a test).
    pub fn index(self) -> usize {
        match self {
            RefusalKind::UnknownApp => 0,
            RefusalKind::BadToken => 1,
            RefusalKind::AddressDenied => 2,
            RefusalKind::StreamNotAllowed => 3,
            RefusalKind::GroupNotAllowed => 4,
            RefusalKind::LimitReached(Limit::Sessions) => 5,
            RefusalKind::LimitReached(Limit::SessionsPerAddress) => 6,
            RefusalKind::LimitReached(Limit::Streams) => 7,
            RefusalKind::LimitReached(Limit::PlayersPerStream) => 8,
            RefusalKind::LimitReached(Limit::PublishKbps) => 9,
            RefusalKind::LimitReached(Limit::GroupMembers) => 10,
        }
    }

    /// The `reason` label of the refusal counters: the limit's config key for a limit.
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::UnknownApp => "unknown_app",
            RefusalKind::BadToken => "bad_token",
            RefusalKind::AddressDenied => "address_denied",
            RefusalKind::StreamNotAllowed => "stream_not_allowed",
            RefusalKind::GroupNotAllowed => "group_not_allowed",
            RefusalKind::LimitReached(Limit::Sessions) => "max_sessions",
            RefusalKind::LimitReached(Limit::SessionsPerAddress) => "max_sessions_per_address",
            RefusalKind::LimitReached(Limit::Streams) => "max_streams",
            RefusalKind::LimitReached(Limit::PlayersPerStream) => "max_players_per_stream",
            RefusalKind::LimitReached(Limit::PublishKbps) => "max_publish_kbps",
            RefusalKind::LimitReached(Limit::GroupMembers) => "max_members",
        }
    }
}

/// Which of `[app.limits]` was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Sessions,
    SessionsPerAddress,
    Streams,
    PlayersPerStream,
    PublishKbps,
    GroupMembers,
}

impl fmt::Display for Limit {
    /// The config key's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Sessions => "max_sessions",
            Limit::SessionsPerAddress => "max_sessions_per_address",
            Limit::Streams => "max_streams",
            Limit::PlayersPerStream => "max_players_per_stream",
            Limit::PublishKbps => "max_publish_kbps",
            Limit::GroupMembers => "max_members",
        })
    }
}

/// A refusal: `kind` for the code (counters, which status to answer with), `reason` for the
/// client, as the description of NetConnection.Connect.Rejected or NetStream.Publish.BadName.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{reason}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }

    /// For a connect to an app the config does not have.
    pub fn unknown_app(name: &str) -> Refusal {
        Refusal::new(RefusalKind::UnknownApp, format!("no application {name:?}"))
    }
}

/// Which action an [`AccessRule`] guards; it words the refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Connect,
    Publish,
}

/// `token`, `allow` and `deny` of `[app.connect]` or `[app.publish]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessRule {
    pub token: Option<SharedToken>,
    /// Empty: every address not denied.
    pub allow: Vec<Cidr>,
    /// Wins over `allow`.
    pub deny: Vec<Cidr>,
}

impl AccessRule {
    /// The address is checked before the token, so a denied address learns nothing about
    /// whether a token is needed.
    pub(crate) fn check(
        &self,
        action: Action,
        client: IpAddr,
        token: Option<&str>,
    ) -> Result<(), Refusal> {
        self.check_presented(action, client, SharedToken::presented(token).as_ref())
    }

    /// [`check`](Self::check) with the token as a digest ([`SharedToken::presented`]).
    pub(crate) fn check_presented(
        &self,
        action: Action,
        client: IpAddr,
        token: Option<&SharedToken>,
    ) -> Result<(), Refusal> {
        let client = client.to_canonical();
        if let Some(rule) = self.deny.iter().find(|r| r.contains(client)) {
            return Err(Refusal::new(
                RefusalKind::AddressDenied,
                format!("address {client} is denied by rule {rule}"),
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.contains(client)) {
            let verb = match action {
                Action::Connect => "connect",
                Action::Publish => "publish",
            };
            return Err(Refusal::new(
                RefusalKind::AddressDenied,
                format!("address {client} is not allowed to {verb}"),
            ));
        }
        if let Some(secret) = &self.token {
            let what = match action {
                Action::Connect => "token",
                Action::Publish => "publish token",
            };
            match token {
                None => {
                    return Err(Refusal::new(
                        RefusalKind::BadToken,
                        format!("{what} required"),
                    ))
                }
                Some(t) if !secret.same_secret(t) => {
                    return Err(Refusal::new(RefusalKind::BadToken, format!("bad {what}")))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// `[app.publish]`: an [`AccessRule`] and the stream names that may be published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishRule {
    pub access: AccessRule,
    /// `None`: any name.
    pub streams: Option<Vec<StreamPattern>>,
}

impl PublishRule {
    pub(crate) fn check_stream(&self, stream: &str) -> Result<(), Refusal> {
        match &self.streams {
            Some(patterns) if !patterns.iter().any(|p| p.matches(stream)) => Err(Refusal::new(
                RefusalKind::StreamNotAllowed,
                format!("stream name {stream:?} may not be published here"),
            )),
            _ => Ok(()),
        }
    }
}

/// `[app.limits]`; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_sessions: Option<u32>,
    /// Sessions from one IP address (any port), server-wide.
    pub max_sessions_per_address: Option<u32>,
    pub max_streams: Option<u32>,
    pub max_players_per_stream: Option<u32>,
    pub max_publish_kbps: Option<u32>,
}

impl Limits {
    /// Refuses one more when `current` already reached `max`.
    pub(crate) fn check_count(
        limit: Limit,
        max: Option<u32>,
        current: usize,
        reason: impl FnOnce(u32) -> String,
    ) -> Result<(), Refusal> {
        match max {
            Some(max) if current >= max as usize => {
                Err(Refusal::new(RefusalKind::LimitReached(limit), reason(max)))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_kind_has_its_own_place_and_name() {
        for (i, kind) in RefusalKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
        let mut names: Vec<&str> = RefusalKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RefusalKind::ALL.len());
    }
}
