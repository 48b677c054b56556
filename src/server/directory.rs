//! What the applications of all shards must agree on: which shard publishes each stream,
//! how many clients each app has and how many players each stream has, so that a limit
//! in the config holds for the whole server and a stream name has one publisher.
//!
//! The directory is touched on connect, publish, play and close (the control plane),
//! never per media message: media crosses shards over the engine's lock-free rings. A
//! mutex is the simplest correct choice for a handful of operations per client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use crate::group::rendezvous::{Joined, Left, Rendezvous};
use crate::group::GroupId;
use crate::proto::epd::PeerId;

/// How the directory reaches a group member: its connection id (which carries its shard).
pub type MemberHandle = u64;

#[derive(Debug, Default)]
pub struct Directory {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Stream key (`app/name`) -> the shard its publisher is on.
    publishers: HashMap<String, u8>,
    /// App name -> connected clients.
    sessions: HashMap<String, usize>,
    /// (App name, client IP) -> connected clients: entries only for connected sessions,
    /// so nobody grows it without passing the handshake and the connect rule.
    sessions_by_address: HashMap<(String, IpAddr), usize>,
    /// Stream key -> players.
    players: HashMap<String, usize>,
    /// NetGroup members of every shard.
    groups: Rendezvous<MemberHandle>,
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A shard that panicked while holding the lock left counts, not broken invariants.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `shard` as the publisher of `key`; false if another shard publishes it.
    pub fn claim_publish(&self, key: &str, shard: u8) -> bool {
        let mut s = self.state();
        match s.publishers.get(key) {
            Some(&owner) => owner == shard,
            None => {
                s.publishers.insert(key.to_owned(), shard);
                true
            }
        }
    }

    pub fn release_publish(&self, key: &str, shard: u8) {
        let mut s = self.state();
        if s.publishers.get(key) == Some(&shard) {
            s.publishers.remove(key);
        }
    }

    /// Streams published under `prefix`, not counting `except`.
    pub fn published_under(&self, prefix: &str, except: &str) -> usize {
        self.state()
            .publishers
            .keys()
            .filter(|k| k.starts_with(prefix) && k.as_str() != except)
            .count()
    }

    /// Counts one more client in `app`, from `client`, if `check(clients of the app,
    /// clients of the app from that address)` allows it.
    pub fn admit_session<E>(
        &self,
        app: &str,
        client: IpAddr,
        check: impl FnOnce(usize, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut s = self.state();
        let key = (app.to_owned(), client.to_canonical());
        let current = s.sessions.get(app).copied().unwrap_or(0);
        let from_client = s.sessions_by_address.get(&key).copied().unwrap_or(0);
        check(current, from_client)?;
        *s.sessions.entry(app.to_owned()).or_default() += 1;
        *s.sessions_by_address.entry(key).or_default() += 1;
        Ok(())
    }

    pub fn leave_session(&self, app: &str, client: IpAddr) {
        let mut s = self.state();
        decrement(&mut s.sessions, app);
        decrement(
            &mut s.sessions_by_address,
            &(app.to_owned(), client.to_canonical()),
        );
    }

    /// Counts one more player of `key` if `check(current count)` allows it.
    pub fn admit_player<E>(
        &self,
        key: &str,
        check: impl FnOnce(usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut s = self.state();
        let current = s.players.get(key).copied().unwrap_or(0);
        check(current)?;
        *s.players.entry(key.to_owned()).or_default() += 1;
        Ok(())
    }

    pub fn leave_player(&self, key: &str) {
        decrement(&mut self.state().players, key);
    }

    /// Adds a member to `group` if `admit` allows it with the members there now; says
    /// whom to tell about it.
    pub fn join_group<E>(
        &self,
        group: GroupId,
        peer: PeerId,
        member: MemberHandle,
        admit: impl FnOnce(usize) -> Result<(), E>,
    ) -> Result<Joined<MemberHandle>, E> {
        let mut s = self.state();
        let already = s.groups.contains(&group, &peer);
        if !already {
            admit(s.groups.members(&group))?;
        }
        Ok(s.groups.join(group, peer, member))
    }

    /// Removes a member; says which remaining member to tell of which peer.
    pub fn leave_group(
        &self,
        group: &GroupId,
        peer: &PeerId,
        member: MemberHandle,
    ) -> Option<Left<MemberHandle>> {
        self.state().groups.leave(group, peer, member)
    }

    /// Members of `group`, all shards.
    pub fn group_members(&self, group: &GroupId) -> usize {
        self.state().groups.members(group)
    }
}

fn decrement<K, Q>(counts: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_publisher_per_stream_across_shards() {
        let d = Directory::new();
        assert!(d.claim_publish("live/a", 0));
        assert!(d.claim_publish("live/a", 0), "the owner may claim again");
        assert!(!d.claim_publish("live/a", 1));
        d.release_publish("live/a", 1);
        assert!(!d.claim_publish("live/a", 1), "only the owner releases");
        d.release_publish("live/a", 0);
        assert!(d.claim_publish("live/a", 1));
        assert_eq!(d.published_under("live/", "live/b"), 1);
        assert_eq!(d.published_under("live/", "live/a"), 0);
    }

    #[test]
    fn limits_are_checked_against_the_global_count() {
        let d = Directory::new();
        let at_most_two = |n: usize| if n < 2 { Ok(()) } else { Err(n) };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let app_limit = |n: usize, _: usize| at_most_two(n);
        assert_eq!(d.admit_session("live", ip, app_limit), Ok(()));
        assert_eq!(d.admit_session("live", ip, app_limit), Ok(()));
        assert_eq!(d.admit_session("live", ip, app_limit), Err(2));
        d.leave_session("live", ip);
        assert_eq!(d.admit_session("live", ip, app_limit), Ok(()));
        assert_eq!(d.admit_player("live/a", at_most_two), Ok(()));
        d.leave_player("live/a");
        d.leave_player("live/a");
        assert_eq!(
            d.admit_player("live/a", |n| if n == 0 { Ok(()) } else { Err(n) }),
            Ok(())
        );
    }

    #[test]
    fn sessions_are_counted_per_address_across_ports_and_ip_forms() {
        let d = Directory::new();
        let one_each = |_: usize, n: usize| if n < 1 { Ok(()) } else { Err(n) };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(d.admit_session("live", a, one_each), Ok(()));
        assert_eq!(d.admit_session("live", mapped, one_each), Err(1));
        assert_eq!(d.admit_session("live", b, one_each), Ok(()));
        assert_eq!(d.admit_session("other", a, one_each), Ok(()), "per app");
        d.leave_session("live", mapped);
        assert_eq!(d.admit_session("live", a, one_each), Ok(()));
    }
}
