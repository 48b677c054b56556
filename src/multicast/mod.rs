//! Native IP multicast (docs/ipmulticast.md): the datagram a server sends once to a
//! multicast address for all members of a group and what a receiver checks before it
//! takes one (`datagram`), the repair datagrams that let a receiver rebuild lost
//! fragments (`fec`), the server's sender (`sender`: sealing, FEC blocks, pacing) and a
//! member's intake (`receiver`).

pub mod datagram;
pub mod fec;
pub mod pacer;
pub mod receiver;
pub mod sender;
