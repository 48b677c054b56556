//! Our own NetGroup members through our server: each joins, the server names its ring
//! neighbours, they open sessions to each other through its introductions, pass the
//! group handshake (the group key derived from each session's keying) and exchange
//! reports, so every member ends up linked into one overlay.
//!
//! Sans-IO: an `EdgeServer` and `FlashClient`s exchanging datagrams in memory.

#[path = "support/group_world.rs"]
mod group_world;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use group_world::{World, SPEC};
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::GroupSpec;
use rtmfp_edge::proto::epd::PeerId;

#[test]
fn members_pass_the_group_handshake_and_form_one_overlay() {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = World::new();
    for _ in 0..10 {
        world.add_member(&spec);
        world.run_for(Duration::from_millis(200));
    }
    world.run_for(Duration::from_secs(2));

    let mut ids: HashMap<PeerId, usize> = HashMap::new();
    for (i, m) in world.members.iter_mut().enumerate() {
        ids.insert(m.client.peer_id().unwrap(), i);
    }
    let mut links: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (i, m) in world.members.iter().enumerate() {
        let group = m.client.group().expect("joined");
        assert!(
            !m.events.iter().any(|e| matches!(
                e,
                GroupEvent::HandshakeRejected { .. } | GroupEvent::JoinRefused
            )),
            "member {i}: {:?}",
            m.events
        );
        let neighbours: Vec<usize> = group.neighbours().map(|p| ids[&p]).collect();
        assert!(!neighbours.is_empty(), "member {i} has neighbours");
        for j in neighbours {
            links.insert((i.min(j), i.max(j)));
        }
        assert!(
            m.events
                .iter()
                .any(|e| matches!(e, GroupEvent::Report { .. })),
            "member {i} got a report: {:?}",
            m.events
        );
    }
    // Handshakes pass both ways: a link one side counts, the other counts too.
    for &(a, b) in &links {
        let a_id = world.members[a].client.peer_id().unwrap();
        let b_id = world.members[b].client.peer_id().unwrap();
        let a_sees_b = world.members[a]
            .client
            .group()
            .unwrap()
            .neighbours()
            .any(|p| p == b_id);
        let b_sees_a = world.members[b]
            .client
            .group()
            .unwrap()
            .neighbours()
            .any(|p| p == a_id);
        assert!(
            a_sees_b && b_sees_a,
            "link {a}-{b} is verified on both ends"
        );
    }
    // One overlay: every member reachable from member 0 over the links.
    let mut reached = BTreeSet::from([0usize]);
    let mut frontier = vec![0usize];
    while let Some(x) = frontier.pop() {
        for &(a, b) in &links {
            let other = if a == x {
                b
            } else if b == x {
                a
            } else {
                continue;
            };
            if reached.insert(other) {
                frontier.push(other);
            }
        }
    }
    assert_eq!(reached.len(), 10, "links {links:?}");
    // Reports spread knowledge of members beyond the server's notices.
    let heard: Vec<usize> = world
        .members
        .iter()
        .map(|m| m.client.group().unwrap().heard())
        .collect();
    assert!(heard.iter().all(|&h| h >= 3), "heard {heard:?}");
}
