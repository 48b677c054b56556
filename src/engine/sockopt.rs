//! Socket options std and socket2 do not offer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Sends with the DF bit and ignores path-MTU state (`IP_PMTUDISC_PROBE`): RTMFP keeps
/// its datagrams under the path MTU itself, and the kernel skips its per-send path-MTU
/// bookkeeping (5-10% more datagrams per second measured on this project's test VM).
pub fn set_pmtudisc_probe(socket: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    let (level, name, value) = if ipv6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    // SAFETY: `value` is a valid c_int for the duration of the call and its size is
    // passed; the descriptor is borrowed, so it is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How IP multicast datagrams leave `socket` (`[server] multicast_*`): TTL or hop limit,
/// outgoing interface (by name, or an IPv4 address of it), and whether this host's own
/// receivers get them. An unknown interface is an error that names it.
pub fn set_multicast_sending(
    socket: &std::net::UdpSocket,
    ipv6: bool,
    sending: &crate::server::config::MulticastSending,
) -> io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    let named = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    if ipv6 {
        sock.set_multicast_hops_v6(sending.ttl)
            .map_err(|e| named("IPV6_MULTICAST_HOPS", e))?;
        sock.set_multicast_loop_v6(sending.loop_back)
            .map_err(|e| named("IPV6_MULTICAST_LOOP", e))?;
    } else {
        sock.set_multicast_ttl_v4(sending.ttl)
            .map_err(|e| named("IP_MULTICAST_TTL", e))?;
        sock.set_multicast_loop_v4(sending.loop_back)
            .map_err(|e| named("IP_MULTICAST_LOOP", e))?;
    }
    let Some(interface) = &sending.interface else {
        return Ok(());
    };
    match (interface.parse::<std::net::Ipv4Addr>(), ipv6) {
        (Ok(address), false) => sock
            .set_multicast_if_v4(&address)
            .map_err(|e| named(&format!("multicast interface {address}"), e)),
        (Ok(address), true) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "multicast interface {address}: an IPv4 address, but the server sends IPv6; \
                 give the interface's name"
            ),
        )),
        (Err(_), _) => {
            let index = interface_index(interface)?;
            if ipv6 {
                sock.set_multicast_if_v6(index)
                    .map_err(|e| named(&format!("multicast interface {interface}"), e))
            } else {
                set_multicast_ifindex_v4(socket.as_fd(), index)
                    .map_err(|e| named(&format!("multicast interface {interface}"), e))
            }
        }
    }
}

/// The index of the network interface called `name`.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c_name = std::ffi::CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface {name:?}: a NUL in the name"),
        )
    })?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface called {name:?} (see `ip link`)"),
        ))
    } else {
        Ok(index)
    }
}

/// `IP_MULTICAST_IF` by interface index (`struct ip_mreqn`): socket2 only takes an address.
fn set_multicast_ifindex_v4(socket: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    let request = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as libc::c_int,
    };
    // SAFETY: `request` is a valid ip_mreqn for the duration of the call and its size is
    // passed; the descriptor is borrowed, so it is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&request as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Joins IP multicast `group` on the interface with index `interface` (0: the one the
/// routing table picks), from any source, or only from `source` (a source-specific join,
/// IGMPv3 / MLDv2): `MCAST_JOIN_GROUP` or `MCAST_JOIN_SOURCE_GROUP`, which take an
/// interface index for IPv4 and IPv6 alike.
pub fn join_multicast(
    socket: &std::net::UdpSocket,
    group: std::net::IpAddr,
    interface: u32,
    source: Option<std::net::IpAddr>,
) -> io::Result<()> {
    if source.is_some_and(|s| s.is_ipv4() != group.is_ipv4()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the multicast source and group are not the same IP version",
        ));
    }
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    let fd = socket.as_fd().as_raw_fd();
    let rc = match source {
        None => {
            let request = libc::group_req {
                gr_interface: interface,
                gr_group: storage_of(group),
            };
            // SAFETY: `request` is a valid, fully initialised group_req for the duration
            // of the call and its size is passed; the socket is borrowed, so open.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    libc::MCAST_JOIN_GROUP,
                    (&request as *const libc::group_req).cast(),
                    std::mem::size_of::<libc::group_req>() as libc::socklen_t,
                )
            }
        }
        Some(source) => {
            let request = libc::group_source_req {
                gsr_interface: interface,
                gsr_group: storage_of(group),
                gsr_source: storage_of(source),
            };
            // SAFETY: `request` is a valid, fully initialised group_source_req for the
            // duration of the call and its size is passed; the socket is borrowed, so open.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    libc::MCAST_JOIN_SOURCE_GROUP,
                    (&request as *const libc::group_source_req).cast(),
                    std::mem::size_of::<libc::group_source_req>() as libc::socklen_t,
                )
            }
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `address` (port 0) as the `sockaddr_storage` the multicast join requests carry.
fn storage_of(address: std::net::IpAddr) -> libc::sockaddr_storage {
    // SAFETY: an all-zero sockaddr_storage is a valid value (plain integers and arrays).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match address {
        std::net::IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
        }
        std::net::IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
        }
    }
    storage
}
