//! Native IP multicast (docs/ipmulticast.md): the datagram a server sends once to a
//! multicast address for all members of a group, and what a receiver checks before it
//! takes one. Fusion and the sender and receiver plumbing build on this.

pub mod datagram;
pub mod sender;
