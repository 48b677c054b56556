//! The cheap receiver that replaces N playing clients. One thread reads every datagram
//! the server sends into the namespace from an AF_PACKET tap on the veth end
//! (`recvmmsg`, 64 a call, only the first 160 bytes of most copied), while an nftables netdev-ingress
//! filter drops the same datagrams before IP: no per-subscriber socket, wakeup or copy,
//! which leaves the VM's two cores to the server. Why not epoll over N UDP sockets: at
//! 10,000 subscribers that is a syscall or more per datagram.
//!
//! For every datagram it counts bytes and decrypts the first blocks only (the packet
//! header and first chunk: flow id, sequence number, and a frame's send time when the
//! chunk starts a message); one in 16 is copied whole and opened and verified with the
//! session's cipher, to learn how many fragments a datagram carries. Every subscriber
//! sends cumulative acks (RFC 7016 Ack Ranges chunks, sealed with its session's keys) for
//! the highest sequence number seen on each flow, every 16 datagrams or 150 ms, and
//! answers pings, so the server's congestion window stays open.

use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Result};

use super::publisher::FrameMark;
use super::subscribers::Handoff;
use crate::proto::chunk::{data_flags, kind, Chunk, Fragmentation, PacketView};
use crate::proto::cipher::{PacketCipher, BLOCK};
use crate::proto::packet::{scramble_session_id, Mode, PacketHeader};
use crate::proto::vlu::Reader;

const BATCH: usize = 64;
const PEEK: usize = 160;
const FULL: usize = 1536;
const SAMPLE_EVERY: usize = 16;
/// Blocks of ciphertext decrypted per datagram: header, first chunk header, frame mark.
const PEEK_BLOCKS: usize = 4;
const ACK_EVERY: u32 = 4;
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Receive window we advertise, in 1024-byte blocks.
const BUFFER_BLOCKS: u64 = 4096;

/// Builds one sealed datagram acknowledging, cumulatively, `acks` = (flow id, highest
/// sequence number) with Ack Ranges chunks (RFC 7016 §2.3.14), as the initiator.
pub fn build_ack(
    cipher: &mut PacketCipher,
    far_id: u32,
    timestamp: u16,
    acks: &[(u64, u64)],
    pong: Option<&[u8]>,
) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    let mut header = PacketHeader::new(Mode::Initiator);
    header.timestamp = Some(timestamp);
    header.emit(&mut packet);
    if let Some(message) = pong {
        Chunk::PingReply { message }.emit(&mut packet);
    }
    for &(flow_id, seq) in acks {
        Chunk::AckRanges {
            flow_id,
            buffer_blocks: BUFFER_BLOCKS,
            cumulative_ack: seq,
            ranges: vec![],
        }
        .emit(&mut packet);
    }
    let mut out = vec![0u8; 4];
    cipher.seal(&packet, &mut out);
    scramble_session_id(&mut out, far_id);
    out
}

/// What the first decrypted blocks of a datagram say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    /// First chunk is user data: (flow id, sequence number).
    pub data: Option<(u64, u64)>,
    pub mark: Option<FrameMark>,
    /// First chunk is something else (ping, close): open the packet whole.
    pub control: bool,
}

/// Reads the packet header and first chunk from decrypted leading blocks.
pub fn peek(plain: &[u8], sequence_numbers: bool, checksum: bool) -> Option<Peek> {
    let mut r = Reader::new(plain);
    if sequence_numbers {
        r.vlu().ok()?;
    }
    if checksum {
        r.u16().ok()?;
    }
    PacketHeader::parse(&mut r).ok()?;
    let chunk_kind = r.u8().ok()?;
    r.u16().ok()?;
    if chunk_kind != kind::USER_DATA {
        let padding = chunk_kind == kind::PADDING_0 || chunk_kind == kind::PADDING_FF;
        return Some(Peek {
            data: None,
            mark: None,
            control: !padding,
        });
    }
    let flags = r.u8().ok()?;
    let flow = r.vlu().ok()?;
    let seq = r.vlu().ok()?;
    r.vlu().ok()?;
    let starts = Fragmentation::from_flags(flags).starts_message();
    let mark = (starts && flags & data_flags::OPTIONS == 0)
        .then(|| FrameMark::find(r.rest()))
        .flatten();
    Some(Peek {
        data: Some((flow, seq)),
        mark,
        control: false,
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct FlowTrack {
    id: u64,
    highest: u64,
    acked: u64,
    at_start: u64,
    at_end: u64,
}

struct Subscriber {
    socket: UdpSocket,
    server: std::net::SocketAddr,
    far_id: u32,
    cipher: PacketCipher,
    sequence_numbers: bool,
    checksum: bool,
    flows: Vec<FlowTrack>,
    unacked: u32,
    unacked_since: Option<StdInstant>,
    datagrams: u64,
    closed: bool,
}

impl Subscriber {
    fn saw(&mut self, flow: u64, seq: u64) {
        match self.flows.iter_mut().find(|f| f.id == flow) {
            Some(f) => f.highest = f.highest.max(seq),
            None => self.flows.push(FlowTrack {
                id: flow,
                highest: seq,
                ..Default::default()
            }),
        }
    }

    fn send_ack(&mut self, epoch: StdInstant, pong: Option<&[u8]>) {
        let acks: Vec<(u64, u64)> = self
            .flows
            .iter()
            .filter(|f| f.highest > f.acked)
            .map(|f| (f.id, f.highest))
            .collect();
        if acks.is_empty() && pong.is_none() {
            return;
        }
        let ticks = (epoch.elapsed().as_millis() / 4) as u16;
        let d = build_ack(&mut self.cipher, self.far_id, ticks, &acks, pong);
        let _ = self.socket.send_to(&d, self.server);
        for f in self.flows.iter_mut() {
            f.acked = f.highest;
        }
        self.unacked = 0;
        self.unacked_since = None;
    }
}

/// What the receiver measured while `measuring` was set.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub datagrams: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Latency of every message start seen first in a datagram, microseconds.
    pub latencies_us: Vec<u32>,
    pub sampled_datagrams: u64,
    pub sampled_fragments: u64,
    /// Fragments the server numbered on every flow during the window, all subscribers.
    pub fragments_numbered: u64,
    pub tap_drops: u64,
    pub undecodable: u64,
    pub subscribers: usize,
    pub closed: usize,
}

impl Tally {
    /// Fraction of the fragments the server numbered for the subscribers that reached
    /// them: datagrams × fragments per datagram (from the whole-opened sample) over the
    /// sum of each flow's sequence number advance in the window.
    pub fn delivered(&self) -> Option<f64> {
        if self.fragments_numbered == 0 || self.sampled_datagrams == 0 {
            return None;
        }
        let per = self.sampled_fragments as f64 / self.sampled_datagrams as f64;
        Some((self.datagrams as f64 * per / self.fragments_numbered as f64).min(1.0))
    }
}

/// Shared switches between the orchestrator and the receiver thread.
#[derive(Debug, Default)]
pub struct Control {
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
}

/// An AF_PACKET datagram socket on interface `ifname` of the calling thread's namespace.
fn packet_socket(ifname: &str) -> Result<OwnedFd> {
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}: {}", std::io::Error::last_os_error());
    }
    // ETH_P_ALL: only "all protocols" taps run before the ingress hook that drops the
    // datagrams; a tap for ETH_P_IP would see nothing.
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned at once below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is valid; we fill the fields bind reads.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!(
            "binding the packet tap to {ifname}: {}",
            std::io::Error::last_os_error()
        );
    }
    set_int(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        256 << 20,
    );
    // Our own acks leave through the same interface: not ours to count.
    const PACKET_IGNORE_OUTGOING: i32 = 23;
    set_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    // SAFETY: a valid timeval and its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// Makes the tap skip IPv4 datagrams to multicast groups (224.0.0.0/4), in the kernel:
/// in the IP multicast modes those go to the socket joined to the group, and the tap
/// only serves the members' sessions. A classic BPF program over the frame from its
/// network header (an `AF_PACKET` datagram socket sees no link header).
fn skip_multicast(fd: i32) -> Result<()> {
    // Opcodes of linux/filter.h.
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        op(LD_B_ABS, 0, 0, 16),    // first byte of the IPv4 destination
        op(AND_K, 0, 0, 0xf0),     // its top four bits
        op(JEQ_K, 0, 1, 0xe0),     // 1110: a multicast group
        op(RET_K, 0, 0, 0),        // skip
        op(RET_K, 0, 0, u32::MAX), // keep, whole
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which lives until the call returns (the
    // kernel copies the program).
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!(
            "attaching the tap's filter: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn set_int(fd: i32, level: i32, name: i32, value: i32) {
    // SAFETY: a valid int and its size, for a socket the caller owns.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const _ as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Packets the tap dropped since the last call (PACKET_STATISTICS resets on read).
fn tap_drops(fd: i32) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` and `len` are valid for writing the stats struct.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        );
    }
    u64::from(st.tp_drops)
}

/// recvmmsg(2) into `msgs` without waiting; returns how many were queued. The caller
/// naps when nothing was: a reader blocked on the socket would make the kernel wake it
/// for every datagram, and with veth that wakeup is paid on the server's core (in a VM
/// an inter-processor interrupt is a VM exit), which would bill the server for the
/// load generator.
fn recvmmsg(fd: i32, msgs: &mut [libc::mmsghdr]) -> usize {
    // SAFETY: every header points at an iovec and buffer owned by the caller that stay
    // alive and unmoved until this call returns; no timeout pointer.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    n.max(0) as usize
}

/// Runs the receiver on this thread (already in the namespace) until `control.stop`.
/// `ifname` is the namespace's veth end; subscriber `slot` has port `base_port + slot`.
/// With `skip_multicast` the tap does not see datagrams sent to multicast groups.
pub fn run(
    ifname: &str,
    base_port: u16,
    handoffs: Receiver<Handoff>,
    control: &Arc<Control>,
    skip_multicast_groups: bool,
) -> Result<Tally> {
    let tap = packet_socket(ifname)?;
    let fd = tap.as_raw_fd();
    if skip_multicast_groups {
        skip_multicast(fd)?;
    }
    let mut subs: Vec<Option<Subscriber>> = Vec::new();
    let mut bufs: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| vec![0u8; if i % SAMPLE_EVERY == 0 { FULL } else { PEEK }])
        .collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let epoch = StdInstant::now();
    let mut tally = Tally::default();
    let mut measuring = false;
    let mut window_start = StdInstant::now();
    let mut plain = Vec::with_capacity(FULL);
    let mut last_sweep = StdInstant::now();
    while !control.stop.load(Ordering::Relaxed) {
        while let Ok(h) = handoffs.try_recv() {
            if subs.len() <= h.slot {
                subs.resize_with(h.slot + 1, || None);
            }
            let rx = h.cipher.rx_protection();
            subs[h.slot] = Some(Subscriber {
                socket: h.socket,
                server: h.server,
                far_id: h.far_id,
                sequence_numbers: rx.sequence_numbers,
                checksum: rx.hmac_len.is_none(),
                cipher: h.cipher,
                flows: Vec::new(),
                unacked: 0,
                unacked_since: None,
                datagrams: 0,
                closed: false,
            });
        }
        let want = control.measuring.load(Ordering::Relaxed);
        if want != measuring {
            measuring = want;
            for s in subs.iter_mut().flatten() {
                for f in s.flows.iter_mut() {
                    if measuring {
                        f.at_start = f.highest;
                    } else {
                        f.at_end = f.highest;
                    }
                }
            }
            if measuring {
                window_start = StdInstant::now();
                tap_drops(fd);
            } else {
                tally.seconds = window_start.elapsed().as_secs_f64();
                tally.tap_drops = tap_drops(fd);
            }
        }
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_len = 0;
        }
        let n = recvmmsg(fd, &mut msgs);
        if n == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let now = StdInstant::now();
        let now_us = super::monotonic_micros();
        for i in 0..n {
            let wire_len = msgs[i].msg_len as usize;
            let got = &bufs[i][..wire_len.min(bufs[i].len())];
            // IPv4 from the server, UDP, to one of our ports.
            if got.len() < 28 || got[0] >> 4 != 4 || got[9] != 17 {
                continue;
            }
            let ihl = usize::from(got[0] & 0x0f) * 4;
            if got.len() < ihl + 8 {
                continue;
            }
            let udp = &got[ihl..];
            let port = u16::from_be_bytes([udp[2], udp[3]]);
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).saturating_sub(8);
            let Some(slot) = port.checked_sub(base_port).map(usize::from) else {
                continue;
            };
            let Some(Some(sub)) = subs.get_mut(slot) else {
                continue;
            };
            let payload = &udp[8..];
            if payload.len() < 4 + BLOCK {
                continue;
            }
            let ciphertext = &payload[4..];
            sub.datagrams += 1;
            if measuring {
                tally.datagrams += 1;
                tally.bytes += udp_len as u64;
            }
            let whole = payload.len() == udp_len;
            let mut pk = [0u8; PEEK_BLOCKS * BLOCK];
            let take = ciphertext.len().min(pk.len()) / BLOCK * BLOCK;
            pk[..take].copy_from_slice(&ciphertext[..take]);
            sub.cipher.decrypt_prefix_unverified(&mut pk[..take]);
            let Some(p) = peek(&pk[..take], sub.sequence_numbers, sub.checksum) else {
                tally.undecodable += u64::from(measuring);
                continue;
            };
            if let Some((flow, seq)) = p.data {
                sub.saw(flow, seq);
            }
            if let (Some(mark), true) = (p.mark, measuring) {
                let lat = now_us.saturating_sub(mark.sent_us);
                tally.latencies_us.push(lat.min(u64::from(u32::MAX)) as u32);
            }
            let mut pong = None;
            if whole && (p.control || i % SAMPLE_EVERY == 0) {
                // Open it whole: count its fragments, answer a ping, notice a close.
                if let Ok(range) = sub.cipher.open(ciphertext, &mut plain) {
                    if let Ok(view) = PacketView::parse(&plain[range]) {
                        let (mut frags, mut last) = (0u64, None);
                        for c in view.chunks().flatten() {
                            match c {
                                Chunk::UserData {
                                    flow_id, sequence, ..
                                } => {
                                    frags += 1;
                                    last = Some((flow_id, sequence));
                                }
                                Chunk::NextUserData { .. } => {
                                    frags += 1;
                                    last = last.map(|(f, s)| (f, s + 1));
                                }
                                Chunk::Ping { message } => pong = Some(message.to_vec()),
                                Chunk::SessionCloseRequest => sub.closed = true,
                                _ => {}
                            }
                            if let Some((f, s)) = last {
                                sub.saw(f, s);
                            }
                        }
                        if measuring && p.data.is_some() && i % SAMPLE_EVERY == 0 {
                            tally.sampled_datagrams += 1;
                            tally.sampled_fragments += frags;
                        }
                    }
                }
            }
            sub.unacked += 1;
            sub.unacked_since.get_or_insert(now);
            if pong.is_some() || sub.unacked >= ACK_EVERY {
                sub.send_ack(epoch, pong.as_deref());
            }
        }
        if now.duration_since(last_sweep) >= Duration::from_millis(10) {
            last_sweep = now;
            for s in subs.iter_mut().flatten() {
                if s.unacked_since
                    .is_some_and(|t| now.duration_since(t) >= ACK_DELAY)
                {
                    s.send_ack(epoch, None);
                }
            }
        }
    }
    for s in subs.iter().flatten() {
        tally.subscribers += 1;
        tally.closed += usize::from(s.closed);
        for f in &s.flows {
            tally.fragments_numbered += f.at_end.saturating_sub(f.at_start);
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::unscramble_session_id;

    fn pair() -> (PacketCipher, PacketCipher) {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        (PacketCipher::new(&a, &b), PacketCipher::new(&b, &a))
    }

    #[test]
    fn ack_round_trips_through_the_chunk_decoder() {
        let (mut ours, mut server) = pair();
        let d = build_ack(
            &mut ours,
            0xdead_beef,
            77,
            &[(2, 40), (3, 1_000_000)],
            Some(b"hi"),
        );
        assert_eq!(unscramble_session_id(&d), Some(0xdead_beef));
        let mut plain = Vec::new();
        let range = server
            .open(&d[4..], &mut plain)
            .expect("opens under the far keys");
        let view = PacketView::parse(&plain[range]).unwrap();
        assert_eq!(view.header.mode, Mode::Initiator);
        assert_eq!(view.header.timestamp, Some(77));
        let chunks: Vec<Chunk> = view.chunks().map(Result::unwrap).collect();
        assert_eq!(chunks[0], Chunk::PingReply { message: b"hi" });
        for (c, (flow, seq)) in chunks[1..].iter().zip([(2, 40), (3, 1_000_000)]) {
            assert_eq!(
                *c,
                Chunk::AckRanges {
                    flow_id: flow,
                    buffer_blocks: BUFFER_BLOCKS,
                    cumulative_ack: seq,
                    ranges: vec![]
                }
            );
        }
        assert_eq!(chunks.len(), 3);
    }

    #[test]
    fn peek_reads_flow_sequence_and_mark_from_the_first_blocks() {
        // A server packet: responder header, one user data chunk starting a message.
        let mark = FrameMark {
            sent_us: 123_456_789,
            index: 9,
        };
        let mut msg = vec![9, 0, 0, 0, 40, 0x27, 1, 0, 0, 0];
        msg.extend_from_slice(&mark.encode());
        msg.resize(1000, 0x5a);
        let mut packet = Vec::new();
        let mut h = PacketHeader::new(Mode::Responder);
        h.timestamp = Some(5);
        h.emit(&mut packet);
        Chunk::UserData {
            flow_id: 4,
            sequence: 300,
            fsn_offset: 2,
            fragment: crate::proto::chunk::UserData {
                fragmentation: Fragmentation::Begin,
                abandon: false,
                final_fragment: false,
                options: None,
                data: &msg,
            },
        }
        .emit(&mut packet);
        let (mut server, ours) = pair();
        let mut sealed = Vec::new();
        server.seal(&packet, &mut sealed);
        let mut pk = [0u8; PEEK_BLOCKS * BLOCK];
        let n = pk.len();
        pk.copy_from_slice(&sealed[..n]);
        ours.decrypt_prefix_unverified(&mut pk);
        let p = peek(&pk, false, true).expect("header and chunk header fit");
        assert_eq!(p.data, Some((4, 300)));
        assert_eq!(p.mark, Some(mark));
        assert!(!p.control);
    }

    #[test]
    fn delivered_scales_datagrams_by_sampled_fragments() {
        let t = Tally {
            datagrams: 900,
            sampled_datagrams: 10,
            sampled_fragments: 11,
            fragments_numbered: 1100,
            ..Default::default()
        };
        assert!((t.delivered().unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(Tally::default().delivered(), None);
    }
}
