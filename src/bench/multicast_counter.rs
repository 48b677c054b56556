//! What the network delivers to the IP multicast group: one UDP socket in the
//! subscribers' namespace, joined to the group on the veth end (IGMP), stands for every
//! member's receiver: the network copies a multicast datagram to each member, and one
//! copy is what each of them would get.
//!
//! For each datagram it reads the RMC1 header (docs/ipmulticast.md: stream tag,
//! sequence) and, when the fragment starts a media message, the frame's send time. It
//! does not check the tags: members do that (tests/ipmulticast_netns.rs); here the
//! sequence numbers say what was sent and what arrived. Like the packet tap it reads
//! with `recvmmsg` without waiting and naps when nothing came, so no wakeup per datagram
//! is billed to the server's core.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use anyhow::{Context, Result};

use super::publisher::FrameMark;
use super::receiver::Control;
use crate::group::fragments::Piece;
use crate::multicast::datagram::{HEADER_LEN, MAGIC, MAX_DATAGRAM, TAG_LEN};
use crate::proto::vlu::Reader;

const BATCH: usize = 64;
/// Kind byte of a datagram carrying a group-stream fragment.
const KIND_FRAGMENT: u8 = 0x01;

/// What the first bytes of an RMC1 datagram say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmcPeek {
    pub stream_tag: [u8; 8],
    pub sequence: u64,
    /// The frame mark, when the datagram's fragment starts a media message.
    pub mark: Option<FrameMark>,
}

/// Reads an RMC1 datagram's header and, for a fragment that starts a message, the
/// [`FrameMark`] at the front of its payload. `None` if it is not an RMC1 datagram.
pub fn peek(datagram: &[u8]) -> Option<RmcPeek> {
    if datagram.len() < HEADER_LEN + TAG_LEN || datagram[..4] != MAGIC {
        return None;
    }
    let stream_tag: [u8; 8] = datagram[8..16].try_into().ok()?;
    let sequence = u64::from_be_bytes(datagram[16..24].try_into().ok()?);
    let body = &datagram[HEADER_LEN..datagram.len() - TAG_LEN];
    let mark = (datagram[24] == KIND_FRAGMENT)
        .then(|| fragment_mark(body))
        .flatten();
    Some(RmcPeek {
        stream_tag,
        sequence,
        mark,
    })
}

/// The mark after a whole or first fragment's header (docs/netgroup.md §3.8).
fn fragment_mark(fragment: &[u8]) -> Option<FrameMark> {
    let mut r = Reader::new(fragment);
    let marker = r.u8().ok()?;
    r.vlu().ok()?;
    match marker {
        Piece::WHOLE => {}
        Piece::FIRST => {
            r.u8().ok()?;
        }
        _ => return None,
    }
    r.u8().ok()?;
    r.u32().ok()?;
    FrameMark::find(r.rest())
}

/// What the counter measured while `measuring` was set.
#[derive(Debug, Default, Clone)]
pub struct MulticastTally {
    /// RMC1 datagrams received in the window.
    pub datagrams: u64,
    /// Their UDP payload bytes.
    pub bytes: u64,
    pub seconds: f64,
    /// Lowest and highest sequence received in the window.
    pub sequences: Option<(u64, u64)>,
    pub latencies_us: Vec<u32>,
    /// Datagrams the socket dropped in the window (receive buffer full: we were slow).
    pub socket_drops: u64,
    /// Datagrams on the group that were not RMC1 (the ceiling's, outside the window).
    pub foreign: u64,
    /// RMC1 datagrams of more than one stream in the window.
    pub streams: usize,
}

impl MulticastTally {
    /// Of the datagrams the server numbered between the first and the last one seen in
    /// the window, the fraction that arrived.
    pub fn delivered(&self) -> Option<f64> {
        let (low, high) = self.sequences?;
        Some(self.datagrams as f64 / (high - low + 1) as f64)
    }

    fn saw(&mut self, p: &RmcPeek, len: usize, now_us: u64, tags: &mut Vec<[u8; 8]>) {
        self.datagrams += 1;
        self.bytes += len as u64;
        self.sequences = Some(match self.sequences {
            None => (p.sequence, p.sequence),
            Some((low, high)) => (low.min(p.sequence), high.max(p.sequence)),
        });
        if !tags.contains(&p.stream_tag) {
            tags.push(p.stream_tag);
        }
        if let Some(mark) = p.mark {
            let lat = now_us.saturating_sub(mark.sent_us);
            self.latencies_us.push(lat.min(u64::from(u32::MAX)) as u32);
        }
    }
}

/// A socket in the calling thread's namespace receiving `group`, joined on the
/// interface that has `local` (no multicast route needed), with a receive buffer deep
/// enough for bursts.
pub fn joined_socket(group: SocketAddrV4, local: std::net::Ipv4Addr) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&SocketAddr::from(SocketAddrV4::new(*group.ip(), group.port())).into())
        .with_context(|| format!("binding {group}"))?;
    socket
        .join_multicast_v4(group.ip(), &local)
        .with_context(|| format!("joining {} on {local}", group.ip()))?;
    let socket: UdpSocket = socket.into();
    let size: libc::c_int = 64 << 20;
    // SAFETY: a valid int and its size, for a socket we own (root may exceed rmem_max).
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Ok(socket)
}

/// Datagrams the socket dropped so far (`SO_MEMINFO`, `SK_MEMINFO_DROPS`).
fn socket_drops(fd: i32) -> u64 {
    const SK_MEMINFO_VARS: usize = 9;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for the kernel to write up to `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return 0;
    }
    u64::from(info[SK_MEMINFO_DROPS])
}

/// Counts on `socket` (already joined) until `control.stop`.
pub fn run(socket: UdpSocket, control: &Arc<Control>) -> Result<MulticastTally> {
    let fd = socket.as_raw_fd();
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; MAX_DATAGRAM]).collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut tally = MulticastTally::default();
    let mut tags = Vec::new();
    let mut measuring = false;
    let mut window_start = StdInstant::now();
    let mut drops_at_start = 0;
    while !control.stop.load(Ordering::Relaxed) {
        let want = control.measuring.load(Ordering::Relaxed);
        if want != measuring {
            measuring = want;
            if measuring {
                window_start = StdInstant::now();
                drops_at_start = socket_drops(fd);
            } else {
                tally.seconds = window_start.elapsed().as_secs_f64();
                tally.socket_drops = socket_drops(fd).saturating_sub(drops_at_start);
            }
        }
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_len = 0;
        }
        // SAFETY: every header points at an iovec and buffer owned here that stay alive
        // and unmoved until the call returns; no timeout pointer.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        }
        .max(0) as usize;
        if n == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let now_us = super::monotonic_micros();
        for (m, buf) in msgs.iter().zip(&bufs).take(n) {
            let datagram = &buf[..(m.msg_len as usize).min(buf.len())];
            match peek(datagram) {
                Some(p) if measuring => tally.saw(&p, datagram.len(), now_us, &mut tags),
                Some(_) => {}
                None => tally.foreign += 1,
            }
        }
    }
    tally.streams = tags.len();
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::fragments::GroupFragment;
    use crate::multicast::datagram::{seal, MulticastKey, PayloadKind};

    fn sealed(sequence: u64, fragment: &GroupFragment) -> Vec<u8> {
        let key = MulticastKey {
            id: 1,
            secret: [7; 32],
        };
        let mut header = Vec::new();
        fragment.write_header(&mut header);
        let mut out = Vec::new();
        seal(
            &key,
            [9; 8],
            sequence,
            PayloadKind::Fragment,
            &[&header, &fragment.payload],
            &mut out,
        );
        out
    }

    #[test]
    fn peek_reads_sequence_and_the_mark_of_a_message_start() {
        let mark = FrameMark {
            sent_us: 42_000_000,
            index: 3,
        };
        let mut video = vec![0x27, 1, 0, 0, 0];
        video.extend_from_slice(&mark.encode());
        video.resize(900, 0x5a);
        let first = GroupFragment {
            id: 70_000,
            piece: Piece::First {
                rest: 4,
                media_type: 9,
                time: 1234,
            },
            payload: video.clone().into(),
        };
        let p = peek(&sealed(77, &first)).expect("an RMC1 datagram");
        assert_eq!((p.stream_tag, p.sequence, p.mark), ([9; 8], 77, Some(mark)));
        let whole = GroupFragment {
            piece: Piece::Whole {
                media_type: 9,
                time: 1234,
            },
            ..first.clone()
        };
        assert_eq!(peek(&sealed(78, &whole)).unwrap().mark, Some(mark));
        let middle = GroupFragment {
            piece: Piece::Middle { rest: 2 },
            ..first
        };
        let p = peek(&sealed(79, &middle)).unwrap();
        assert_eq!((p.sequence, p.mark), (79, None), "no mark inside a message");
        assert_eq!(peek(&[0xa5; 1200]), None, "not RMC1");
        assert_eq!(peek(&sealed(80, &middle)[..30]), None, "too short");
    }

    #[test]
    fn delivered_counts_what_arrived_of_the_numbered_range() {
        let mut t = MulticastTally::default();
        let mut tags = Vec::new();
        for seq in [10, 11, 13, 14] {
            let p = RmcPeek {
                stream_tag: [1; 8],
                sequence: seq,
                mark: None,
            };
            t.saw(&p, 1000, 0, &mut tags);
        }
        assert_eq!(t.sequences, Some((10, 14)));
        assert!((t.delivered().unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(MulticastTally::default().delivered(), None);
    }
}
