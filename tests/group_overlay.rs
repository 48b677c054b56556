//! The overlay our members keep, as Flash members do (docs/netgroup.md §5): each keeps a
//! bounded set of neighbours (the nearest on the ring of group addresses, then peers at
//! half, a quarter, ... of the ring), estimates the group's size from the spacing of
//! the peers around it, replaces neighbours that leave, and the overlay stays connected.
//!
//! Sans-IO: our server and members in memory (tests/support/group_world.rs).

#[path = "support/group_world.rs"]
mod group_world;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use group_world::{World, SPEC};
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::proto::epd::PeerId;

const MEMBERS: usize = 40;

/// Each present member's neighbours (peers whose group handshake passed).
fn links(world: &mut World, present: &[usize]) -> BTreeMap<PeerId, BTreeSet<PeerId>> {
    present
        .iter()
        .map(|&i| {
            let c = &mut world.members[i].client;
            let me = c.peer_id().unwrap();
            let n = c.group().unwrap().neighbours().collect();
            (me, n)
        })
        .collect()
}

/// Whether the links (taken both ways) reach every present member from the first.
fn connected(links: &BTreeMap<PeerId, BTreeSet<PeerId>>) -> bool {
    let Some(first) = links.keys().next() else {
        return true;
    };
    let mut seen = BTreeSet::from([*first]);
    let mut todo = vec![*first];
    while let Some(p) = todo.pop() {
        let out = links.get(&p).into_iter().flatten().copied();
        let inward = links
            .iter()
            .filter(|(_, n)| n.contains(&p))
            .map(|(q, _)| *q);
        for q in out.chain(inward).collect::<Vec<_>>() {
            if links.contains_key(&q) && seen.insert(q) {
                todo.push(q);
            }
        }
    }
    seen.len() == links.len()
}

#[test]
fn members_keep_a_bounded_connected_overlay_and_replace_neighbours_that_leave() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = World::new();
    let mut present: Vec<usize> = (0..MEMBERS).map(|_| world.add_member(&spec)).collect();
    // Two overlay periods: reports spread what members know, best lists are acted on.
    world.run_for(Duration::from_secs(25));

    let before = links(&mut world, &present);
    assert!(connected(&before), "the overlay is connected");
    for &i in &present {
        let g = world.members[i].client.group().unwrap();
        let n = g.neighbours().count();
        let target = g.target_neighbours();
        let estimate = g.estimated_members();
        assert!(
            (MEMBERS as u64 / 4..=MEMBERS as u64 * 4).contains(&estimate),
            "member {i} estimates {estimate} members of {MEMBERS}"
        );
        // Others may connect to us on top of the ones we chose.
        assert!(
            (6..=2 * target).contains(&n),
            "member {i}: {n} neighbours, target {target}"
        );
    }
    let max = before.values().map(BTreeSet::len).max().unwrap();
    assert!(
        max < MEMBERS - 1,
        "not everyone is everyone's neighbour ({max})"
    );

    // A quarter of the members leave.
    let now = world.now;
    let leaving: Vec<usize> = present.iter().copied().step_by(4).collect();
    let left_ids: BTreeSet<PeerId> = leaving
        .iter()
        .map(|&i| world.members[i].client.peer_id().unwrap())
        .collect();
    for &i in &leaving {
        world.members[i].client.close(now);
    }
    present.retain(|i| !leaving.contains(i));
    world.run_for(Duration::from_secs(25));
    let after = links(&mut world, &present);
    assert!(connected(&after), "the overlay is still connected");
    for (p, n) in &after {
        assert!(
            n.is_disjoint(&left_ids),
            "{p} still lists a member that left"
        );
        assert!(n.len() >= 6, "{p} replaced its neighbours: has {}", n.len());
    }
}
