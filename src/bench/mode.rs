//! `bench fanout --mode`: how the stream reaches the N receivers.
//!
//! - `unicast`: N subscribers play the stream; the server seals every datagram for
//!   every subscriber's session.
//! - `ipmulticast`: the server republishes the stream into a NetGroup with native IP
//!   multicast (`serve --group --multicast-form ip`): N members join the group (each
//!   with its session, its group join and the key handout), and the server sends each
//!   fragment once to a multicast address routed out of the veth pair.
//! - `fusion`: the same with `--multicast-form fusion` (members may also relay).

use std::net::{Ipv4Addr, SocketAddrV4};

/// The NetGroup the server republishes into in the multicast modes.
pub const GROUP: &str = "rtmfp-bench";
/// Where the server sends the group's IP multicast datagrams. The port is below the
/// subscribers' ports, so the packet tap never takes a multicast datagram for a
/// subscriber's.
pub const MULTICAST_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 231, 0, 1), 19_935);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mode {
    /// One RTMFP session per subscriber, every datagram sealed for each.
    Unicast,
    /// Native IP multicast: each fragment sent once for every member.
    #[value(name = "ipmulticast")]
    IpMulticast,
    /// IP multicast and P2P relaying together.
    Fusion,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Unicast, Mode::IpMulticast, Mode::Fusion];

    /// The name `--mode` takes and the summary line prints.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Unicast => "unicast",
            Mode::IpMulticast => "ipmulticast",
            Mode::Fusion => "fusion",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The stream goes to the receivers by IP multicast.
    pub fn is_multicast(self) -> bool {
        self != Mode::Unicast
    }

    /// What `serve` needs besides its address and shards; IP multicast leaves through
    /// `interface`.
    pub fn serve_args(self, interface: &str) -> Vec<String> {
        let form = match self {
            Mode::Unicast => return Vec::new(),
            Mode::IpMulticast => "ip",
            Mode::Fusion => "fusion",
        };
        [
            "--group",
            GROUP,
            "--multicast-form",
            form,
            "--multicast-address",
            &MULTICAST_GROUP.to_string(),
            "--multicast-interface",
            interface,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_multicast_modes_add_serve_flags() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        assert_eq!(Mode::parse("ip"), None);
        assert!(Mode::Unicast.serve_args("veth0").is_empty());
        assert_eq!(
            Mode::IpMulticast.serve_args("veth0").join(" "),
            "--group rtmfp-bench --multicast-form ip --multicast-address 239.231.0.1:19935 \
             --multicast-interface veth0"
        );
        assert!(Mode::Fusion
            .serve_args("veth0")
            .join(" ")
            .contains("--multicast-form fusion"));
    }
}
