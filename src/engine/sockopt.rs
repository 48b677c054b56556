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
