//! Posts, routed messages and object replication among our members (docs/netgroup.md
//! §9): a post reaches every other member exactly once, and the same message posted again
//! is not a new post; `sendToNearest` reaches the one member nearest the address, and
//! only it; wanted objects come once each from neighbours that have them, from another
//! when one refuses.
//!
//! Sans-IO: our server and members in memory (tests/support/group_world.rs).

#[path = "support/group_world.rs"]
mod group_world;

use std::collections::BTreeMap;
use std::time::Duration;

use group_world::{World, SPEC};
use rtmfp_edge::flash::amf::Value;
use rtmfp_edge::group::member::GroupEvent;
use rtmfp_edge::group::posting::{PostId, Route};
use rtmfp_edge::group::{group_address, GroupSpec};

const MEMBERS: usize = 12;

fn posts(world: &World, member: usize) -> Vec<(PostId, Value)> {
    world.members[member]
        .events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Post { id, message } => Some((*id, message.clone())),
            _ => None,
        })
        .collect()
}

fn received(world: &World, member: usize) -> Vec<Value> {
    world.members[member]
        .events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Received {
                route: Route::Nearest,
                message,
            } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The shorter way round the ring between two addresses, by their first 128 bits.
fn distance(a: &[u8; 32], b: &[u8; 32]) -> u128 {
    let x = u128::from_be_bytes(a[..16].try_into().unwrap());
    let y = u128::from_be_bytes(b[..16].try_into().unwrap());
    let d = x.wrapping_sub(y);
    d.min(d.wrapping_neg())
}

fn group_of(n: usize) -> World {
    let spec = GroupSpec::parse(SPEC).unwrap();
    let mut world = World::new();
    for _ in 0..n {
        world.add_member(&spec);
    }
    world.run_for(Duration::from_secs(12));
    world
}

#[test]
fn a_post_reaches_every_other_member_once() {
    let mut world = group_of(MEMBERS);
    let now = world.now;
    let hello = Value::String("hello".into());
    let id_hello = world.members[0]
        .client
        .post_to_group(now, &hello)
        .unwrap()
        .unwrap();
    let id_42 = world.members[5]
        .client
        .post_to_group(now, &Value::Number(42.0))
        .unwrap()
        .unwrap();
    assert_ne!(id_hello, id_42);
    world.run_for(Duration::from_secs(2));
    for m in 0..MEMBERS {
        let got: BTreeMap<PostId, Value> = posts(&world, m).into_iter().collect();
        let expected: BTreeMap<PostId, Value> = [(id_hello, hello.clone()), (id_42, 42.0.into())]
            .into_iter()
            .filter(|(id, _)| !(m == 0 && *id == id_hello || m == 5 && *id == id_42))
            .collect();
        assert_eq!(got, expected, "member {m}'s posts");
        assert_eq!(
            posts(&world, m).len(),
            expected.len(),
            "member {m}: each once"
        );
    }

    // The same message again is the same post: nobody takes it a second time.
    let now = world.now;
    let again = world.members[3]
        .client
        .post_to_group(now, &hello)
        .unwrap()
        .unwrap();
    assert_eq!(again, id_hello);
    world.run_for(Duration::from_secs(2));
    for m in 0..MEMBERS {
        assert!(posts(&world, m).len() <= 2, "member {m} took a post twice");
    }
}

#[test]
fn send_to_nearest_reaches_the_member_nearest_the_address() {
    let mut world = group_of(MEMBERS);
    let addresses: Vec<[u8; 32]> = (0..MEMBERS)
        .map(|m| group_address(&world.members[m].client.peer_id().unwrap()))
        .collect();
    // One member's own address, and an address between members.
    let targets = [addresses[7], [0x42; 32]];
    for (k, target) in targets.iter().enumerate() {
        let nearest = (0..MEMBERS)
            .min_by_key(|&m| distance(&addresses[m], target))
            .unwrap();
        let sender = if nearest == 2 { 4 } else { 2 };
        let now = world.now;
        let message = Value::String(format!("to nearest #{k}"));
        world.members[sender]
            .client
            .send_to_nearest(now, *target, &message)
            .unwrap()
            .unwrap();
        world.run_for(Duration::from_secs(2));
        for m in 0..MEMBERS {
            let got = received(&world, m)
                .into_iter()
                .filter(|v| *v == message)
                .count();
            let want = usize::from(m == nearest);
            assert_eq!(got, want, "target #{k}: member {m} (nearest is {nearest})");
        }
    }
}

#[test]
fn wanted_objects_are_fetched_once_each_from_neighbours_that_have_them() {
    use rtmfp_edge::group::member::GroupEvent as E;
    let mut world = group_of(10);
    let (a, b, wanter) = (1, 6, 3);
    let now = world.now;
    {
        let (g, endpoint) = world.members[a].client.group_and_endpoint().unwrap();
        g.add_have_objects(endpoint, 0, 9);
    }
    {
        let (g, endpoint) = world.members[b].client.group_and_endpoint().unwrap();
        g.add_have_objects(endpoint, 0, 19);
    }
    world.run_for(Duration::from_millis(500));
    {
        let (g, endpoint) = world.members[wanter].client.group_and_endpoint().unwrap();
        g.add_want_objects(now, endpoint, 0, 19);
    }
    // The holders' applications answer requests as they come; A refuses object 4.
    let mut answered = [0usize; 10];
    for _ in 0..600 {
        world.step();
        for m in [a, b] {
            let requests: Vec<_> = world.members[m].events[answered[m]..]
                .iter()
                .filter_map(|e| match e {
                    E::ObjectRequested(r) => Some(*r),
                    _ => None,
                })
                .collect();
            answered[m] = world.members[m].events.len();
            let (g, endpoint) = world.members[m].client.group_and_endpoint().unwrap();
            for r in requests {
                if m == a && r.index == 4 {
                    g.deny_requested_object(endpoint, r);
                } else {
                    let object = Value::String(format!("{m}:{}", r.index));
                    g.write_requested_object(endpoint, r, &object).unwrap();
                }
            }
        }
    }
    let fetched: Vec<(u64, Value)> = world.members[wanter]
        .events
        .iter()
        .filter_map(|e| match e {
            E::ObjectFetched { index, object } => Some((*index, object.clone())),
            _ => None,
        })
        .collect();
    let mut indexes: Vec<u64> = fetched.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..20).collect::<Vec<_>>(), "every object once");
    for (index, object) in &fetched {
        let Value::String(text) = object else {
            panic!("object {index}: {object:?}")
        };
        let (from, i) = text.split_once(':').unwrap();
        assert_eq!(i, index.to_string());
        if *index >= 10 || *index == 4 {
            assert_eq!(from, b.to_string(), "object {index} only B gives");
        }
    }
    let (g, _) = world.members[wanter].client.group_and_endpoint().unwrap();
    assert!(g.wanted_objects().is_empty());
}

#[test]
fn send_to_neighbour_reaches_the_next_member_each_way_round_the_ring() {
    let mut world = group_of(MEMBERS);
    let addresses: Vec<u128> = (0..MEMBERS)
        .map(|m| {
            let a = group_address(&world.members[m].client.peer_id().unwrap());
            u128::from_be_bytes(a[..16].try_into().unwrap())
        })
        .collect();
    let sender = 2;
    // In a group this small every member is every other's neighbour (the target is
    // log2(N) + 13), so the next neighbour is the next member on the ring.
    let next = |increasing: bool| {
        (0..MEMBERS)
            .filter(|&m| m != sender)
            .min_by_key(|&m| {
                if increasing {
                    addresses[m].wrapping_sub(addresses[sender])
                } else {
                    addresses[sender].wrapping_sub(addresses[m])
                }
            })
            .unwrap()
    };
    for increasing in [true, false] {
        let message = Value::String(format!("next, increasing={increasing}"));
        let (g, endpoint) = world.members[sender].client.group_and_endpoint().unwrap();
        assert!(g.send_to_neighbour(endpoint, increasing, &message).unwrap());
        world.run_for(Duration::from_secs(1));
        let got: Vec<usize> = (0..MEMBERS)
            .filter(|&m| {
                world.members[m].events.iter().any(|e| {
                    matches!(e, GroupEvent::Received { route: Route::Neighbour, message: v } if *v == message)
                })
            })
            .collect();
        assert_eq!(got, vec![next(increasing)], "increasing={increasing}");
    }
}
