//! Flash NetGroup (RTMFP peer-to-peer multicast) support.
//!
//! NetGroup is Flash's own layer above RFC 7016 flows; no RFC describes it. The facts this
//! module builds on, with their sources, are in `docs/netgroup.md`.
//!
//! `spec` is the groupspec string (`G:` + hex option list) and the group id derived from it.
//! `rendezvous` and `server_flow` are the server's side: the ring of members and the
//! join and notice messages. `peer_messages` and `member` are a member's side: the
//! group flows between peers, the handshake and reports. `fragments` is the P2P media
//! stream: numbered fragments, their store and availability maps, and reassembly for
//! the member's player. `posting` is the rest of NetGroup's traffic: posts flooded to
//! every member once, and messages routed towards a group address; `replication` is
//! object replication (members fetch numbered objects from neighbours that have them).

pub mod fragments;
pub mod member;
pub mod peer_messages;
pub mod posting;
pub mod rendezvous;
pub mod replication;
pub mod server_flow;
pub mod spec;
pub mod stream;

pub use spec::{
    group_address, Capability, GroupId, GroupSpec, GroupSpecError, GroupSpecifier, HexCase,
    SpecOption,
};
