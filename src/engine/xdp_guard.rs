//! The XDP guard: our XDP program (bpf/xdp_guard.bpf.c) on the interface the server
//! receives on, dropping what cannot be RTMFP and rate-limiting handshakes per source
//! address before the kernel's UDP stack spends anything on them. Other traffic on the
//! interface (other ports, TCP, ARP, fragments, IPv6 extension headers) goes to the
//! kernel untouched. docs/xdp.md describes the rules and the counters.
//!
//! Datagrams that pass go to the kernel stack, where the engine's UDP sockets take them
//! (io_uring or the plain loop); the program already redirects to an AF_XDP socket on
//! the receiving queue when one is in its `guard_xsks` map, for the AF_XDP receive path
//! (not built yet: issue 8).
//!
//! The program stays attached while the [`XdpGuard`] lives: it is attached through a BPF
//! link, which the kernel detaches when the link's last fd closes, including when the
//! process dies.

/// What the guard does on our ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// The UDP ports the server listens on (at most [`MAX_PORTS`]).
    pub ports: Vec<u16>,
    /// Handshakes (session id 0) a second per source address; 0: no limit.
    pub handshake_rate: u32,
    /// How many handshakes a source may send at once after a quiet spell.
    pub handshake_burst: u32,
}

impl GuardConfig {
    /// Reads `RATE/BURST` (handshakes a second per source address, and the burst) or
    /// `off` (no limit), as `serve --xdp-handshake-limit` takes it.
    pub fn parse_handshake_limit(text: &str) -> Result<(u32, u32), String> {
        crate::server::config::parse_handshake_limit(text)
    }
}

/// The ports the program's map holds.
pub const MAX_PORTS: usize = 16;

impl GuardConfig {
    /// For a server on `ports`: 20 handshakes a second per source with a burst of 40.
    /// A client needs 2 (IHello, IIKeying) per session, plus retransmissions; a host
    /// behind a NAT opening sessions for many users needs more, hence the burst.
    pub fn for_ports(ports: Vec<u16>) -> Self {
        GuardConfig {
            ports,
            handshake_rate: 20,
            handshake_burst: 40,
        }
    }
}

/// What the guard did with the frames it saw, each summed over every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardCounters {
    /// UDP to other ports (the kernel's; frames that are not UDP are not counted).
    pub not_ours: u64,
    /// Ours, redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Ours, passed to the kernel stack (no AF_XDP socket on the queue).
    pub passed: u64,
    /// Of those redirected or passed, handshakes (session id 0).
    pub handshakes: u64,
    /// Dropped: under 20 bytes of UDP payload.
    pub dropped_short: u64,
    /// Dropped: a handshake whose length is not 4 + a multiple of 16.
    pub dropped_bad_length: u64,
    /// Dropped: a handshake over its source's rate.
    pub dropped_handshake_rate: u64,
}

impl GuardCounters {
    pub fn dropped(&self) -> u64 {
        self.dropped_short + self.dropped_bad_length + self.dropped_handshake_rate
    }
}

/// Why the guard is not attached.
#[derive(Debug, thiserror::Error)]
pub enum XdpGuardError {
    #[error("XDP guard not built: clang was not found at build time")]
    NotBuilt,
    #[error("the XDP guard needs 1 to {MAX_PORTS} ports; got {0}")]
    PortCount(usize),
    #[error("{0}")]
    NoSuchInterface(String),
    #[error(
        "not permitted to load the XDP guard ({0}); it needs root, or CAP_BPF, \
         CAP_NET_ADMIN and CAP_PERFMON"
    )]
    Permission(String),
    #[error(
        "the embedded XDP object is unusable ({0}); rebuild with clang and libbpf-dev \
         installed (scripts/setup)"
    )]
    Object(String),
    #[error("the kernel refused the XDP guard ({0}); libbpf printed the verifier log above")]
    KernelRefused(String),
    #[error("could not configure the XDP guard's maps: {0}")]
    MapUpdate(String),
    #[error(
        "could not attach the XDP guard to {interface} ({reason}); is another XDP program \
         attached there (`ip link show {interface}`)?"
    )]
    Attach { interface: String, reason: String },
}

/// The guard, attached to one interface until dropped.
pub struct XdpGuard {
    #[cfg(rtmfp_bpf)]
    object: libbpf_rs::Object,
    #[cfg(rtmfp_bpf)]
    _link: libbpf_rs::Link,
    #[cfg(not(rtmfp_bpf))]
    never: std::convert::Infallible,
    interface: String,
}

impl std::fmt::Debug for XdpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpGuard")
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl XdpGuard {
    /// Loads the program, writes `config` into its maps and attaches it to `interface`
    /// (native XDP where the driver has it, generic otherwise: the kernel chooses).
    pub fn attach(interface: &str, config: &GuardConfig) -> Result<Self, XdpGuardError> {
        if config.ports.is_empty() || config.ports.len() > MAX_PORTS {
            return Err(XdpGuardError::PortCount(config.ports.len()));
        }
        let index = super::sockopt::interface_index(interface)
            .map_err(|e| XdpGuardError::NoSuchInterface(e.to_string()))?;
        Self::attach_built(interface, index, config)
    }

    /// The interface it is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    #[cfg(not(rtmfp_bpf))]
    fn attach_built(_: &str, _: u32, _: &GuardConfig) -> Result<Self, XdpGuardError> {
        Err(XdpGuardError::NotBuilt)
    }

    #[cfg(not(rtmfp_bpf))]
    pub fn counters(&self) -> GuardCounters {
        match self.never {}
    }

    #[cfg(not(rtmfp_bpf))]
    pub fn bind_socket(&self, _: u32, _: std::os::fd::RawFd) -> Result<(), XdpGuardError> {
        match self.never {}
    }
}

#[cfg(rtmfp_bpf)]
mod built {
    use super::{GuardConfig, GuardCounters, XdpGuard, XdpGuardError};
    use crate::engine::bpf_object::{self, per_cpu_sum, Aligned, LoadError};
    use libbpf_rs::{MapCore, MapFlags, Object};

    static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
        env!("OUT_DIR"),
        "/xdp_guard.bpf.o"
    )));

    // Names in bpf/xdp_guard.bpf.c (the kernel keeps 15 bytes of a program's name).
    const OBJECT_NAME: &str = "rtmfp_guard";
    const PROGRAM: &str = "rtmfp_xdp_guard";
    const CONFIG_MAP: &str = "guard_config";
    const PORTS_MAP: &str = "guard_ports";
    const COUNTERS_MAP: &str = "guard_counters";
    const XSKS_MAP: &str = "guard_xsks";

    /// Counter slots in `guard_counters`; the numbering is the C `enum counter`.
    #[derive(Clone, Copy)]
    enum Counter {
        NotOurs = 0,
        Redirected = 1,
        Passed = 2,
        Handshakes = 3,
        DropShort = 4,
        DropBadLength = 5,
        DropHandshakeRate = 6,
    }

    impl XdpGuard {
        pub(super) fn attach_built(
            interface: &str,
            index: u32,
            config: &GuardConfig,
        ) -> Result<Self, XdpGuardError> {
            let object = bpf_object::load(OBJECT, OBJECT_NAME).map_err(|e| match e {
                LoadError::Open(why) => XdpGuardError::Object(why),
                LoadError::Load {
                    permission_denied: true,
                    why,
                } => XdpGuardError::Permission(why),
                LoadError::Load { why, .. } => XdpGuardError::KernelRefused(why),
            })?;

            let update = |map: &str, key: &[u8], value: &[u8]| {
                find_map(&object, map)?
                    .update(key, value, MapFlags::ANY)
                    .map_err(|e| XdpGuardError::MapUpdate(format!("{map}: {e:#}")))
            };
            // struct guard_config { __u32 rate; __u32 burst; }, native byte order.
            let mut value = [0u8; 8];
            value[..4].copy_from_slice(&config.handshake_rate.to_ne_bytes());
            value[4..].copy_from_slice(&config.handshake_burst.to_ne_bytes());
            update(CONFIG_MAP, &0u32.to_ne_bytes(), &value)?;
            for port in &config.ports {
                update(PORTS_MAP, &port.to_ne_bytes(), &[1])?;
            }

            let ifindex = i32::try_from(index).map_err(|_| XdpGuardError::Attach {
                interface: interface.to_owned(),
                reason: format!("interface index {index} out of range"),
            })?;
            let link = object
                .progs_mut()
                .find(|p| p.name() == PROGRAM)
                .ok_or_else(|| XdpGuardError::Object(format!("no program {PROGRAM}")))?
                .attach_xdp(ifindex)
                .map_err(|e| XdpGuardError::Attach {
                    interface: interface.to_owned(),
                    reason: format!("{e:#}"),
                })?;
            Ok(XdpGuard {
                object,
                _link: link,
                interface: interface.to_owned(),
            })
        }

        /// Sends what passes on receive queue `queue` to the AF_XDP socket `fd` (an entry
        /// in the program's XSKMAP) instead of the kernel stack.
        pub fn bind_socket(&self, queue: u32, fd: std::os::fd::RawFd) -> Result<(), XdpGuardError> {
            find_map(&self.object, XSKS_MAP)?
                .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| XdpGuardError::MapUpdate(format!("{XSKS_MAP}: {e:#}")))
        }

        /// The counters so far, each summed over every CPU.
        pub fn counters(&self) -> GuardCounters {
            let read = |counter: Counter| per_cpu_sum(&self.object, COUNTERS_MAP, counter as u32);
            GuardCounters {
                not_ours: read(Counter::NotOurs),
                redirected: read(Counter::Redirected),
                passed: read(Counter::Passed),
                handshakes: read(Counter::Handshakes),
                dropped_short: read(Counter::DropShort),
                dropped_bad_length: read(Counter::DropBadLength),
                dropped_handshake_rate: read(Counter::DropHandshakeRate),
            }
        }
    }

    fn find_map<'o>(object: &'o Object, name: &str) -> Result<libbpf_rs::Map<'o>, XdpGuardError> {
        bpf_object::find_map(object, name)
            .ok_or_else(|| XdpGuardError::Object(format!("no map {name}")))
    }
}
