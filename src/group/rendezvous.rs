//! The server's side of a NetGroup: who is in which group, and whom to tell when someone
//! joins.
//!
//! Members sit on a ring ordered by their group address (SHA-256 of `21 0f` ‖ peer id,
//! [`group_address`]). A newcomer is announced to the members just before and just after
//! it on that ring, [`NOTIFY_EACH_SIDE`] on each side, and those members open sessions to
//! it (through the server's introductions). Every member thus learns of its nearest ring
//! neighbours as they arrive, which keeps the overlay connected however the members come
//! and go: a member is never told only of "the newest", and the ring closes over the
//! gap a leaving member leaves. This is what Flash clients expect of a rendezvous server
//! (docs/netgroup.md §2.2); they find further neighbours themselves through peer reports.
//!
//! Sans-IO and generic over the handle `M` the caller uses to reach a member (a
//! connection id): the caller sends the notices.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::spec::{group_address, GroupId};
use crate::proto::epd::PeerId;

/// Members told of a newcomer on each side of it on the ring.
pub const NOTIFY_EACH_SIDE: usize = 3;

/// One group's members by group address.
#[derive(Debug)]
struct Group<M> {
    members: BTreeMap<[u8; 32], Member<M>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member<M> {
    peer_id: PeerId,
    handle: M,
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined<M> {
    /// Members to tell about the newcomer, nearest first (ring order, alternating sides).
    pub notify: Vec<M>,
    /// Members in the group now, the newcomer included.
    pub members: usize,
}

/// What a leave did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left<M> {
    /// The leaver's two ring neighbours, now adjacent: one is told of the other.
    pub bridge: Option<Bridge<M>>,
}

/// Tell member `tell` of peer `about` (whose handle is `about_handle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge<M> {
    pub tell: M,
    pub about: PeerId,
    pub about_handle: M,
}

/// Every group on the server and its members.
#[derive(Debug)]
pub struct Rendezvous<M> {
    groups: HashMap<GroupId, Group<M>>,
}

impl<M> Default for Rendezvous<M> {
    fn default() -> Self {
        Self {
            groups: HashMap::new(),
        }
    }
}

impl<M: Copy + Eq> Rendezvous<M> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `peer_id`, reached through `handle`, to `group` and says whom to notify. A
    /// peer already in the group is re-announced from its new handle (a client that
    /// reconnected) but not counted twice.
    pub fn join(&mut self, group: GroupId, peer_id: PeerId, handle: M) -> Joined<M> {
        let address = group_address(&peer_id);
        let g = self.groups.entry(group).or_insert_with(|| Group {
            members: BTreeMap::new(),
        });
        g.members.insert(address, Member { peer_id, handle });
        let notify = ring_neighbours(&g.members, &address)
            .into_iter()
            .map(|m| m.handle)
            .collect();
        Joined {
            notify,
            members: g.members.len(),
        }
    }

    /// Removes `peer_id` from `group` if `handle` is still how it is reached (a stale
    /// leave from a replaced connection is ignored: `None`). Empty groups are forgotten.
    ///
    /// The members on either side of the leaver become ring neighbours; the one after it
    /// is told of the one before (`Left::bridge`), so the ring, and with it the overlay,
    /// stays closed under churn.
    pub fn leave(&mut self, group: &GroupId, peer_id: &PeerId, handle: M) -> Option<Left<M>> {
        let g = self.groups.get_mut(group)?;
        let address = group_address(peer_id);
        match g.members.get(&address) {
            Some(m) if m.handle == handle => {}
            _ => return None,
        }
        g.members.remove(&address);
        let bridge = if g.members.len() >= 2 {
            let after = clockwise(&g.members, &address).next();
            let before = counter_clockwise(&g.members, &address).next();
            match (after, before) {
                (Some(a), Some(b)) if a.handle != b.handle => Some(Bridge {
                    tell: a.handle,
                    about: b.peer_id,
                    about_handle: b.handle,
                }),
                _ => None,
            }
        } else {
            None
        };
        if g.members.is_empty() {
            self.groups.remove(group);
        }
        Some(Left { bridge })
    }

    /// Members of `group`.
    pub fn members(&self, group: &GroupId) -> usize {
        self.groups.get(group).map_or(0, |g| g.members.len())
    }

    /// Is `peer_id` in `group`?
    pub fn contains(&self, group: &GroupId, peer_id: &PeerId) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.members.contains_key(&group_address(peer_id)))
    }

    /// Groups with at least one member.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// The members after `address` on the ring, nearest first, wrapping round; the member
/// at `address` excluded.
fn clockwise<'a, M>(
    members: &'a BTreeMap<[u8; 32], Member<M>>,
    address: &[u8; 32],
) -> impl Iterator<Item = &'a Member<M>> {
    let after = (Bound::Excluded(*address), Bound::Unbounded);
    members
        .range(after)
        .chain(members.range(..*address))
        .map(|(_, m)| m)
}

/// The members before `address` on the ring, nearest first, wrapping round; the member
/// at `address` excluded.
fn counter_clockwise<'a, M>(
    members: &'a BTreeMap<[u8; 32], Member<M>>,
    address: &[u8; 32],
) -> impl Iterator<Item = &'a Member<M>> {
    let after = (Bound::Excluded(*address), Bound::Unbounded);
    members
        .range(..*address)
        .rev()
        .chain(members.range(after).rev())
        .map(|(_, m)| m)
}

/// Up to [`NOTIFY_EACH_SIDE`] members on each side of `address` on the ring (wrapping
/// round), each at most once, nearest first; the member at `address` excluded.
fn ring_neighbours<'a, M>(
    members: &'a BTreeMap<[u8; 32], Member<M>>,
    address: &[u8; 32],
) -> Vec<&'a Member<M>> {
    let after: Vec<_> = clockwise(members, address).take(NOTIFY_EACH_SIDE).collect();
    let before: Vec<_> = counter_clockwise(members, address)
        .take(NOTIFY_EACH_SIDE)
        .collect();
    let mut chosen: Vec<&Member<M>> = Vec::with_capacity(2 * NOTIFY_EACH_SIDE);
    for i in 0..NOTIFY_EACH_SIDE {
        for m in [after.get(i), before.get(i)].into_iter().flatten() {
            // In a small group the two directions meet: each member once.
            if !chosen.iter().any(|c| std::ptr::eq(*c, *m)) {
                chosen.push(m);
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u32) -> PeerId {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        PeerId(id)
    }

    fn group(n: u8) -> GroupId {
        GroupId([n; 32])
    }

    #[test]
    fn the_first_member_is_told_to_nobody_and_small_groups_tell_everyone() {
        let mut r = Rendezvous::new();
        assert_eq!(r.join(group(1), peer(0), 0u32).notify, Vec::<u32>::new());
        for n in 1..=6u32 {
            let joined = r.join(group(1), peer(n), n);
            let mut told = joined.notify.clone();
            told.sort();
            assert_eq!(
                told,
                (0..n).collect::<Vec<_>>(),
                "with {n} others, all told"
            );
            assert_eq!(joined.members, n as usize + 1);
        }
    }

    #[test]
    fn a_newcomer_is_told_to_its_three_ring_neighbours_on_each_side() {
        let mut r = Rendezvous::new();
        let peers: Vec<PeerId> = (0..40).map(peer).collect();
        for (i, p) in peers.iter().enumerate() {
            r.join(group(1), *p, i);
        }
        let newcomer = peer(1000);
        let joined = r.join(group(1), newcomer, 1000);
        assert_eq!(joined.notify.len(), 6);
        // The expected neighbours, computed independently: sort every address.
        let mut ring: Vec<([u8; 32], usize)> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (group_address(p), i))
            .collect();
        ring.push((group_address(&newcomer), 1000));
        ring.sort();
        let at = ring.iter().position(|e| e.1 == 1000).unwrap();
        let n = ring.len();
        let mut expected: Vec<usize> = (1..=3)
            .flat_map(|d| [ring[(at + d) % n].1, ring[(at + n - d) % n].1])
            .collect();
        let mut told = joined.notify.clone();
        told.sort();
        expected.sort();
        assert_eq!(told, expected);
    }

    #[test]
    fn members_leave_and_empty_groups_are_forgotten() {
        let mut r = Rendezvous::new();
        r.join(group(1), peer(1), 1u32);
        r.join(group(1), peer(2), 2);
        r.join(group(2), peer(1), 1);
        assert!(
            r.leave(&group(1), &peer(1), 99).is_none(),
            "a stale handle leaves nothing"
        );
        assert!(r.leave(&group(1), &peer(1), 1).is_some());
        assert!(!r.contains(&group(1), &peer(1)));
        assert!(r.contains(&group(2), &peer(1)), "other groups unaffected");
        assert_eq!(
            r.join(group(1), peer(3), 3).notify,
            vec![2],
            "the leaver is not told"
        );
        assert!(r.leave(&group(1), &peer(2), 2).is_some());
        assert!(r.leave(&group(1), &peer(3), 3).is_some());
        assert_eq!(r.groups(), 1);
    }

    #[test]
    fn a_rejoin_is_announced_again_but_counted_once() {
        let mut r = Rendezvous::new();
        r.join(group(1), peer(1), 1u32);
        r.join(group(1), peer(2), 2);
        let again = r.join(group(1), peer(2), 22);
        assert_eq!(again.members, 2);
        assert_eq!(again.notify, vec![1]);
        assert!(
            r.leave(&group(1), &peer(2), 2).is_none(),
            "the old handle no longer owns it"
        );
        assert!(r.leave(&group(1), &peer(2), 22).is_some());
    }

    #[test]
    fn a_leaver_s_ring_neighbours_are_bridged() {
        let mut r = Rendezvous::new();
        for n in 0..20u32 {
            r.join(group(1), peer(n), n);
        }
        let mut ring: Vec<([u8; 32], u32)> =
            (0..20u32).map(|n| (group_address(&peer(n)), n)).collect();
        ring.sort();
        let (_, leaver) = ring[5];
        let left = r.leave(&group(1), &peer(leaver), leaver).unwrap();
        assert_eq!(
            left.bridge,
            Some(Bridge {
                tell: ring[6].1,
                about: peer(ring[4].1),
                about_handle: ring[4].1,
            })
        );
    }

    proptest::proptest! {
        /// Whatever the order of joins and leaves, the "told about" links among the
        /// members still present (joins' notices and leaves' bridges) connect them all:
        /// the overlay the server seeds never splits.
        #[test]
        fn notices_keep_the_overlay_connected(
            ops in proptest::collection::vec((0u32..60, proptest::bool::weighted(0.65)), 1..400)
        ) {
            let mut r = Rendezvous::new();
            let mut present = std::collections::BTreeSet::new();
            let mut links: std::collections::BTreeSet<(u32, u32)> = Default::default();
            let link = |links: &mut std::collections::BTreeSet<(u32, u32)>, a: u32, b: u32| {
                links.insert((a.min(b), a.max(b)));
            };
            for (n, join) in ops {
                if join && !present.contains(&n) {
                    for m in r.join(group(7), peer(n), n).notify {
                        link(&mut links, n, m);
                    }
                    present.insert(n);
                } else if !join && present.remove(&n) {
                    let left = r.leave(&group(7), &peer(n), n).unwrap();
                    links.retain(|&(a, b)| a != n && b != n);
                    if let Some(bridge) = left.bridge {
                        let about = u32::from_be_bytes(bridge.about.0[..4].try_into().unwrap());
                        proptest::prop_assert_eq!(about, bridge.about_handle);
                        link(&mut links, bridge.tell, about);
                    }
                }
                proptest::prop_assert_eq!(r.members(&group(7)), present.len());
                // Flood from any member over the links: all present members reached.
                if let Some(&start) = present.iter().next() {
                    let mut reached = std::collections::BTreeSet::from([start]);
                    let mut frontier = vec![start];
                    while let Some(x) = frontier.pop() {
                        for &(a, b) in &links {
                            let other = if a == x { b } else if b == x { a } else { continue };
                            if reached.insert(other) {
                                frontier.push(other);
                            }
                        }
                    }
                    proptest::prop_assert_eq!(&reached, &present);
                }
            }
        }
    }
}
