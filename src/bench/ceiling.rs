//! The plain-kernel ceiling: how many 1200-byte datagrams one core can send to the same
//! N destinations the server sends to, with the far veth end dropping them (nftables netdev ingress).
//! Two methods, the best is reported: one unconnected socket with `sendmmsg` in batches
//! of 64 (a destination per message), and one connected socket per destination with
//! `sendmmsg` (while the open-file limit allows N more sockets). Both set
//! `IP_PMTUDISC_PROBE` (DF set, no PMTU bookkeeping), worth 5-10% here. For the IP
//! multicast modes, the same two methods with the multicast group as the one destination.

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Datagram size the ceiling sends: a full RTMFP packet on the wire.
pub const DATAGRAM: usize = 1200;
const BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct CeilingRun {
    pub method: &'static str,
    pub pps: f64,
}

/// Runs every method that fits for `per_method` each; returns them all.
pub fn measure(
    from: SocketAddrV4,
    dests: &[SocketAddrV4],
    per_method: Duration,
    fds_left: u64,
) -> Result<Vec<CeilingRun>> {
    let mut runs = vec![CeilingRun {
        method: "sendmmsg-unconnected-b64",
        pps: unconnected(from, dests, per_method)?,
    }];
    if (dests.len() as u64) + 64 < fds_left {
        runs.push(CeilingRun {
            method: "sendmmsg-connected-b64",
            pps: connected(from, dests, per_method)?,
        });
    }
    Ok(runs)
}

/// The ceiling to one IP multicast group: `sendmmsg` of 64 on an unconnected socket,
/// and on one socket connected to the group. Bound to the server's address, so the
/// datagrams leave through the interface that has it, as the server's do.
pub fn measure_multicast(
    from: SocketAddrV4,
    group: SocketAddrV4,
    per_method: Duration,
) -> Result<Vec<CeilingRun>> {
    Ok(vec![
        CeilingRun {
            method: "sendmmsg-multicast-b64",
            pps: unconnected(from, &[group], per_method)?,
        },
        CeilingRun {
            method: "sendmmsg-multicast-connected-b64",
            pps: connected(from, &[group], per_method)?,
        },
    ])
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn pmtu_probe(s: &UdpSocket) {
    let v: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid int option value and its size for a socket we own.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// sendmmsg(2) of `msgs`; returns how many went (0 on error: the ceiling only counts).
fn sendmmsg(fd: i32, msgs: &mut [libc::mmsghdr]) -> usize {
    // SAFETY: every header in `msgs` points at an iovec, payload and (optionally) a
    // sockaddr_in that the caller keeps alive and unmoved until this call returns.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
    n.max(0) as usize
}

fn empty_header() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data; all-zero is a valid (empty) value.
    unsafe { std::mem::zeroed() }
}

/// For a multicast group: out of the interface that has `from`'s address, as the
/// server's (bound to that address, it would anyway; this says so).
fn multicast_from(s: &UdpSocket, from: SocketAddrV4, to: SocketAddrV4) -> Result<()> {
    if to.ip().is_multicast() {
        socket2::SockRef::from(s)
            .set_multicast_if_v4(from.ip())
            .context("IP_MULTICAST_IF for the ceiling")?;
    }
    Ok(())
}

fn unconnected(from: SocketAddrV4, dests: &[SocketAddrV4], run_for: Duration) -> Result<f64> {
    let s = UdpSocket::bind(from).context("binding the ceiling's socket")?;
    pmtu_probe(&s);
    if let Some(&to) = dests.first() {
        multicast_from(&s, from, to)?;
    }
    let payload = vec![0xa5u8; DATAGRAM];
    let mut names: Vec<libc::sockaddr_in> = dests.iter().map(|d| sockaddr(*d)).collect();
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| empty_header()).collect();
    let (mut sent, mut next) = (0u64, 0usize);
    let start = Instant::now();
    while start.elapsed() < run_for {
        for m in msgs.iter_mut() {
            m.msg_hdr.msg_name = &mut names[next] as *mut _ as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            next = (next + 1) % names.len();
        }
        sent += sendmmsg(s.as_raw_fd(), &mut msgs) as u64;
    }
    Ok(sent as f64 / start.elapsed().as_secs_f64())
}

fn connected(from: SocketAddrV4, dests: &[SocketAddrV4], run_for: Duration) -> Result<f64> {
    let mut sockets = Vec::with_capacity(dests.len());
    for d in dests {
        let s = UdpSocket::bind(SocketAddrV4::new(*from.ip(), 0))
            .context("binding a connected ceiling socket")?;
        pmtu_probe(&s);
        multicast_from(&s, from, *d)?;
        s.connect(d)?;
        sockets.push(s);
    }
    let payload = vec![0xa5u8; DATAGRAM];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| empty_header()).collect();
    for m in msgs.iter_mut() {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let (mut sent, mut next) = (0u64, 0usize);
    let start = Instant::now();
    while start.elapsed() < run_for {
        sent += sendmmsg(sockets[next].as_raw_fd(), &mut msgs) as u64;
        next = (next + 1) % sockets.len();
    }
    Ok(sent as f64 / start.elapsed().as_secs_f64())
}
