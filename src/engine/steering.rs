//! Session steering: the kernel hands each datagram to the shard that owns its session.
//!
//! Every shard binds the same UDP port with SO_REUSEPORT. The session ids this server
//! hands out carry the owning shard in their top byte (`new_session_id` in
//! src/proto/endpoint.rs), and RFC 7016 §2.2.2 puts that id, scrambled, in every
//! datagram's first word. A `sk_reuseport` BPF program (bpf/reuseport_steer.bpf.c)
//! recovers the id and selects the owner's socket from a sockarray, so a shard receives
//! only its own sessions' packets plus handshakes. [`owner_shard`] is the same rule in
//! Rust, for the fallback path that hands foreign packets between shards over rings when
//! the program cannot be attached (no clang at build time, no privileges, old kernel).
//!
//! docs/steering.md describes the program, its counters and how to inspect it.

use crate::proto::packet::unscramble_session_id;
use std::os::fd::BorrowedFd;

/// One sockarray slot per value of a session id's top byte.
pub const MAX_SHARDS: usize = 256;

/// The shard that owns the session a datagram belongs to, or `None` when the datagram
/// names no owner: shorter than the 12 bytes RFC 7016 §2.2.2 scrambles over, or a
/// handshake (session id 0), which any shard may answer.
///
/// The BPF program applies the same rule; tests/steering_bpf.rs checks that they agree.
pub fn owner_shard(datagram: &[u8]) -> Option<u8> {
    match unscramble_session_id(datagram)? {
        0 => None,
        id => Some((id >> 24) as u8),
    }
}

/// What the steering program did with the datagrams it saw, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteeringCounters {
    /// Sent to the socket of the shard named by the session id.
    pub steered: u64,
    /// Session id 0: left to the kernel's hash; the shard that answers owns the session.
    pub handshake: u64,
    /// Too short to carry a scrambled session id: left to the kernel's hash.
    pub short: u64,
    /// Named a shard with no socket in the map: left to the kernel's hash, and the
    /// receiving shard hands it on (or drops it) as for any foreign packet.
    pub no_such_shard: u64,
}

/// Why steering is not available; the engine logs it and falls back to the shard rings.
#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    #[error("steering program not built: clang was not found at build time")]
    NotBuilt,
    #[error("steering needs one socket per shard, 1 to {MAX_SHARDS}; got {0}")]
    ShardCount(usize),
    #[error(
        "not permitted to load the steering program ({0}); it needs root, or CAP_BPF and \
         CAP_NET_ADMIN"
    )]
    Permission(String),
    #[error(
        "the embedded steering object is unusable ({0}); rebuild with clang and libbpf-dev \
         installed (scripts/setup)"
    )]
    Object(String),
    #[error(
        "the kernel refused the steering program ({0}); libbpf printed the verifier log \
         above, and sk_reuseport programs need Linux 4.19 or later"
    )]
    KernelRefused(String),
    #[error(
        "could not put shard {shard}'s socket into the steering map ({reason}); every socket \
         must be a UDP socket with SO_REUSEPORT, bound to the group's address and port, and \
         in no other steering map"
    )]
    MapUpdate { shard: usize, reason: String },
    #[error("could not attach the steering program to the reuseport group: {0}")]
    Attach(#[source] std::io::Error),
}

/// The steering program, attached to one reuseport group.
///
/// Attaching is a property of the group, not of this value: the kernel keeps the program
/// (and through it the maps) for as long as the group's sockets are open, so dropping a
/// `ReuseportSteering` only gives up reading its counters. A socket leaves the map when
/// it is closed.
pub struct ReuseportSteering {
    #[cfg(rtmfp_bpf)]
    object: libbpf_rs::Object,
    #[cfg(not(rtmfp_bpf))]
    never: std::convert::Infallible,
    shards: usize,
}

impl std::fmt::Debug for ReuseportSteering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReuseportSteering")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl ReuseportSteering {
    /// Loads the program, puts `sockets[i]` in shard `i`'s slot and attaches the program
    /// to the sockets' reuseport group. Every socket must already be bound (with
    /// SO_REUSEPORT) to the same address and port.
    pub fn attach(sockets: &[BorrowedFd<'_>]) -> Result<Self, SteeringError> {
        if sockets.is_empty() || sockets.len() > MAX_SHARDS {
            return Err(SteeringError::ShardCount(sockets.len()));
        }
        Self::attach_built(sockets)
    }

    /// How many shards' sockets are in the map.
    pub fn shards(&self) -> usize {
        self.shards
    }

    #[cfg(not(rtmfp_bpf))]
    fn attach_built(_sockets: &[BorrowedFd<'_>]) -> Result<Self, SteeringError> {
        Err(SteeringError::NotBuilt)
    }

    /// The counters so far, each summed over every CPU.
    #[cfg(not(rtmfp_bpf))]
    pub fn counters(&self) -> SteeringCounters {
        match self.never {}
    }
}

#[cfg(rtmfp_bpf)]
mod built {
    use super::{ReuseportSteering, SteeringCounters, SteeringError};
    use crate::engine::bpf_object::{self, per_cpu_sum, Aligned, LoadError};
    use libbpf_rs::{MapCore, MapFlags, Object};
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

    static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
        env!("OUT_DIR"),
        "/reuseport_steer.bpf.o"
    )));

    // Names in bpf/reuseport_steer.bpf.c, kept under the 16 bytes (with the NUL) the kernel
    // stores for program and map names, so bpftool shows them whole.
    const OBJECT_NAME: &str = "rtmfp_steer";
    const PROGRAM: &str = "rtmfp_steer";
    const SOCKETS_MAP: &str = "shard_sockets";
    const COUNTERS_MAP: &str = "steer_counters";

    /// Counter slots in `steer_counters`; the numbering is the C `enum counter`.
    #[derive(Clone, Copy)]
    enum Counter {
        Steered = 0,
        Handshake = 1,
        Short = 2,
        NoSuchShard = 3,
    }

    /// The socket option that attaches a BPF program to a socket's reuseport group
    /// (asm/socket.h); the libc crate does not export it for Linux targets.
    #[cfg(not(target_arch = "sparc64"))]
    const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
    #[cfg(target_arch = "sparc64")]
    const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 0x0036;

    impl ReuseportSteering {
        pub(super) fn attach_built(sockets: &[BorrowedFd<'_>]) -> Result<Self, SteeringError> {
            let object = bpf_object::load(OBJECT, OBJECT_NAME).map_err(|e| match e {
                LoadError::Open(why) => SteeringError::Object(why),
                LoadError::Load {
                    permission_denied: true,
                    why,
                } if !may_load_bpf() => SteeringError::Permission(why),
                LoadError::Load { why, .. } => SteeringError::KernelRefused(why),
            })?;

            {
                let map = find_map(&object, SOCKETS_MAP)?;
                for (shard, socket) in sockets.iter().enumerate() {
                    let key = u32::try_from(shard).expect("at most MAX_SHARDS sockets");
                    // The sockarray takes an fd (as u32 or u64) but stores the socket
                    // behind it, so the fd may be closed later; closing the socket itself
                    // empties the slot.
                    let fd = u64::try_from(socket.as_raw_fd()).expect("a borrowed fd is >= 0");
                    map.update(&key.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                        .map_err(|e| SteeringError::MapUpdate {
                            shard,
                            reason: format!("{e:#}"),
                        })?;
                }

                let program = object
                    .progs()
                    .find(|p| p.name() == PROGRAM)
                    .ok_or_else(|| SteeringError::Object(format!("no program {PROGRAM}")))?;
                // The group is shared, so attaching through one socket steers them all.
                attach_to_group(sockets[0], program.as_fd()).map_err(SteeringError::Attach)?;
            }

            Ok(Self {
                object,
                shards: sockets.len(),
            })
        }

        /// The counters so far, each summed over every CPU.
        pub fn counters(&self) -> SteeringCounters {
            let read = |counter: Counter| per_cpu_sum(&self.object, COUNTERS_MAP, counter as u32);
            SteeringCounters {
                steered: read(Counter::Steered),
                handshake: read(Counter::Handshake),
                short: read(Counter::Short),
                no_such_shard: read(Counter::NoSuchShard),
            }
        }
    }

    fn find_map<'o>(object: &'o Object, name: &str) -> Result<libbpf_rs::Map<'o>, SteeringError> {
        bpf_object::find_map(object, name)
            .ok_or_else(|| SteeringError::Object(format!("no map {name}")))
    }

    fn attach_to_group(socket: BorrowedFd<'_>, program: BorrowedFd<'_>) -> std::io::Result<()> {
        let program_fd: libc::c_int = program.as_raw_fd();
        // SAFETY: both fds are borrowed, so open for the whole call; the option value is a
        // live c_int on our stack and its exact size is passed, which is what the kernel
        // reads for SO_ATTACH_REUSEPORT_EBPF. The kernel takes its own reference to the
        // program, so closing `program` later does not detach it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_EBPF,
                (&program_fd as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Whether this process holds CAP_SYS_ADMIN, or CAP_BPF with CAP_NET_ADMIN, which a
    /// sk_reuseport program and a sockarray need: tells a permission refusal from a
    /// verifier one, since libbpf-rs reports both as "permission denied". Unknown counts
    /// as yes, so the verifier's answer is not hidden behind a guess about privileges.
    fn may_load_bpf() -> bool {
        const CAP_NET_ADMIN: u32 = 12;
        const CAP_SYS_ADMIN: u32 = 21;
        const CAP_BPF: u32 = 39;
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return true;
        };
        let Some(hex) = status.lines().find_map(|l| l.strip_prefix("CapEff:")) else {
            return true;
        };
        let Ok(caps) = u64::from_str_radix(hex.trim(), 16) else {
            return true;
        };
        let has = |cap: u32| caps & (1 << cap) != 0;
        has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_NET_ADMIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::scramble_session_id;

    fn datagram(session_id: u32, words: [u32; 2], len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len];
        d[4..8].copy_from_slice(&words[0].to_be_bytes());
        d[8..12].copy_from_slice(&words[1].to_be_bytes());
        scramble_session_id(&mut d, session_id);
        d
    }

    #[test]
    fn owner_is_the_top_byte_of_the_unscrambled_id() {
        let d = datagram(0x2a12_3456, [0xdead_beef, 0x0bad_f00d], 40);
        assert_eq!(owner_shard(&d), Some(0x2a));
    }

    #[test]
    fn handshakes_and_short_datagrams_name_no_owner() {
        assert_eq!(owner_shard(&datagram(0, [7, 9], 40)), None);
        let d = datagram(0x0100_0000, [1, 2], 12);
        assert_eq!(owner_shard(&d), Some(1));
        assert_eq!(owner_shard(&d[..11]), None);
        assert_eq!(owner_shard(&[]), None);
    }

    #[test]
    fn attach_refuses_no_sockets_before_touching_the_kernel() {
        assert!(matches!(
            ReuseportSteering::attach(&[]),
            Err(SteeringError::ShardCount(0))
        ));
    }
}
