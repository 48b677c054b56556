//! One shard's UDP socket on io_uring.
//!
//! - Receive: one multishot `recvmsg` draws buffers from a provided buffer ring; each
//!   completion names the buffer it filled, which goes back to the ring as soon as the
//!   datagram has been handled (no allocation, no copy on the way in).
//! - Send: the endpoint seals datagrams straight into the slots of a [`TransmitBatch`]
//!   from a pool (the encryption writes the send buffer); each slot gets its own address,
//!   iovec and msghdr and is queued as a `sendmsg` entry, and one `io_uring_enter`
//!   submits the whole turn's output. A batch returns to the pool when the last of its
//!   completions arrives.
//! - Wakeups: a read on an eventfd (other shards write it after filling our ring), and a
//!   multishot poll on one more descriptor (the shard's TCP readiness set).
//!
//! All `unsafe` of the io_uring path lives here. The invariant behind every `// SAFETY:`
//! comment: memory the kernel may write or read (buffer ring, receive buffers, send slots,
//! msghdrs, the eventfd counter) is heap-allocated once, never moved, and outlives the
//! ring, because `UringUdp` drops the ring first (field order) and the ring's drop waits
//! for nothing: the kernel stops touching registered memory when the ring is torn down.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

use crate::proto::batch::TransmitBatch;

/// Receive buffers: the recvmsg header, the peer address, and the datagram.
const RECV_BUF_SIZE: usize = 2048;
/// Buffers in the provided ring (a power of two, at most 32768).
const RECV_BUFS: u16 = 4096;
const BUF_GROUP: u16 = 0;
/// Datagrams per send batch, and batches per shard: at most 2,048 datagrams in flight.
pub const BATCH_SLOTS: usize = 64;
const SEND_BATCHES: usize = 32;
const RING_ENTRIES: u32 = 4096;

// user_data tags: the top byte says what completed; for sends, bits 16.. are the batch
// and the low 16 bits the slot.
const TAG_RECV: u64 = 1 << 56;
const TAG_SEND: u64 = 2 << 56;
const TAG_WAKE: u64 = 3 << 56;
const TAG_WATCH: u64 = 4 << 56;
const TAG_MASK: u64 = 0xff << 56;

/// What one [`UringUdp::wait`] saw besides datagrams.
#[derive(Debug, Default, Clone, Copy)]
pub struct Readiness {
    /// Another shard woke us (our inbound rings have something).
    pub woken: bool,
    /// The watched descriptor is readable.
    pub watched: bool,
}

/// Counters, for the shard's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct UringCounters {
    pub received: u64,
    pub truncated: u64,
    /// The buffer ring ran dry and receive had to be re-armed (datagrams may have been
    /// dropped by the kernel meanwhile).
    pub out_of_buffers: u64,
    pub sent: u64,
    pub send_errors: u64,
    /// Times output waited because every send batch was in flight.
    pub batches_exhausted: u64,
}

/// The provided buffer ring: `RECV_BUFS` entries (page-aligned, shared with the kernel)
/// and the buffers they point into.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    buffers: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    fn new() -> io::Result<Self> {
        let layout = Layout::from_size_align(size_of::<BufRingEntry>() * RECV_BUFS as usize, 4096)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: the layout has a non-zero size; the memory is freed in Drop with the
        // same layout.
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            layout,
            buffers: vec![0u8; RECV_BUF_SIZE * RECV_BUFS as usize].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..RECV_BUFS {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Puts buffer `bid` back at the tail (visible to the kernel after `publish`).
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (RECV_BUFS - 1));
        let addr = self.buffers.as_ptr() as u64 + u64::from(bid) * RECV_BUF_SIZE as u64;
        // SAFETY: `index < RECV_BUFS`, inside the allocation; the kernel only reads
        // entries between its head and our published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(RECV_BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the page-aligned base of the initialized ring; the tail
        // field overlays the first entry's reserved field, written by us alone and read
        // by the kernel, so it is accessed atomically with release ordering (the entries
        // written before are visible to the kernel before the new tail).
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`; empty (so unparsable) for an id we never
    /// provided.
    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * RECV_BUF_SIZE;
        self.buffers
            .get(start..start + len.min(RECV_BUF_SIZE))
            .unwrap_or(&[])
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.entries.cast(), self.layout) }
    }
}

/// What `sendmsg` reads for one slot besides the datagram, at a fixed address.
struct SlotHeader {
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
}

/// A batch of datagrams and their headers; `in_flight` sends not yet completed.
struct SendBatch {
    datagrams: TransmitBatch,
    headers: Box<[SlotHeader]>,
    in_flight: usize,
}

pub struct UringUdp {
    // Field order matters: the ring is dropped before the memory it points into.
    ring: IoUring,
    bufs: BufRing,
    batches: Box<[SendBatch]>,
    free_batches: Vec<u32>,
    /// The batch being filled (by `send` or `fill`), not yet queued.
    filling: Option<u32>,
    socket: RawFd,
    recv_msg: Box<libc::msghdr>,
    recv_armed: bool,
    wake_fd: RawFd,
    wake_counter: Box<u64>,
    wake_armed: bool,
    watch_fd: Option<RawFd>,
    watch_armed: bool,
    queued: usize,
    completions: Vec<(u64, i32, u32)>,
    /// Submission entries of the batch being queued, allocation kept.
    entries: Vec<squeue::Entry>,
    pub counters: UringCounters,
}

impl UringUdp {
    /// Sets up a ring for `socket` (non-blocking UDP), waking on `wake_fd` (an eventfd)
    /// and watching `watch_fd`; the caller owns the descriptors and keeps them open while
    /// this lives. Fails when the kernel lacks what we use (io_uring
    /// itself, multishot recvmsg, provided buffer rings) or forbids it (seccomp): the
    /// caller then runs the plain socket loop.
    pub fn new(socket: RawFd, wake_fd: RawFd, watch_fd: Option<RawFd>) -> io::Result<Self> {
        let ring: IoUring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for op in [
            opcode::RecvMsg::CODE,
            opcode::SendMsg::CODE,
            opcode::PollAdd::CODE,
        ] {
            if !probe.is_supported(op) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {op} not supported by this kernel"),
                ));
            }
        }
        let bufs = BufRing::new()?;
        // SAFETY: the ring memory is page-aligned, holds RECV_BUFS initialized entries,
        // and lives in `self.bufs` until after the ring is dropped (field order).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                RECV_BUFS,
                BUF_GROUP,
                0,
            )?;
        }
        // SAFETY: all-zero is a valid msghdr; only the name and control lengths matter
        // for multishot recvmsg.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        recv_msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        let batches: Vec<SendBatch> = (0..SEND_BATCHES)
            .map(|_| SendBatch {
                datagrams: TransmitBatch::new(BATCH_SLOTS),
                headers: (0..BATCH_SLOTS)
                    // SAFETY: all-zero is valid for these plain C structs.
                    .map(|_| unsafe { zeroed::<SlotHeader>() })
                    .collect(),
                in_flight: 0,
            })
            .collect();
        let mut udp = UringUdp {
            ring,
            bufs,
            batches: batches.into_boxed_slice(),
            free_batches: (0..SEND_BATCHES as u32).rev().collect(),
            filling: None,
            socket,
            recv_msg,
            recv_armed: false,
            wake_fd,
            wake_counter: Box::new(0),
            wake_armed: false,
            watch_fd,
            watch_armed: false,
            queued: 0,
            completions: Vec::with_capacity(RING_ENTRIES as usize),
            entries: Vec::with_capacity(BATCH_SLOTS),
            counters: UringCounters::default(),
        };
        udp.arm();
        udp.ring.submit()?;
        Ok(udp)
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry we build points at memory owned by `self` that stays
            // valid until its completion (see the module comment).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.queued += 1;
                return;
            }
            // The submission queue is full: hand it to the kernel and retry.
            if self.ring.submit().is_err() {
                return;
            }
            self.queued = 0;
        }
    }

    fn arm(&mut self) {
        if !self.recv_armed {
            let entry = opcode::RecvMsgMulti::new(
                Fd(self.socket),
                &*self.recv_msg as *const libc::msghdr,
                BUF_GROUP,
            )
            .build()
            .user_data(TAG_RECV);
            self.push(entry);
            self.recv_armed = true;
        }
        if !self.wake_armed {
            let entry = opcode::Read::new(
                Fd(self.wake_fd),
                (&mut *self.wake_counter as *mut u64).cast(),
                8,
            )
            .build()
            .user_data(TAG_WAKE);
            self.push(entry);
            self.wake_armed = true;
        }
        if let (Some(fd), false) = (self.watch_fd, self.watch_armed) {
            let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(TAG_WATCH);
            self.push(entry);
            self.watch_armed = true;
        }
    }

    /// The batch being filled, taking a free one if needed; `None` when every batch is
    /// in flight (output waits for completions).
    fn filling_batch(&mut self) -> Option<u32> {
        if let Some(b) = self.filling {
            if !self.batches[b as usize].datagrams.is_full() {
                return Some(b);
            }
            self.queue_filling();
        }
        let Some(b) = self.free_batches.pop() else {
            self.counters.batches_exhausted += 1;
            return None;
        };
        self.batches[b as usize].datagrams.clear();
        self.filling = Some(b);
        Some(b)
    }

    /// Lets `fill` put datagrams into the current batch (the endpoint seals straight
    /// into its slots) and queues them once the batch is full. Returns how many were
    /// added; 0 when nothing was sendable or no batch was free.
    pub fn fill(&mut self, fill: impl FnOnce(&mut TransmitBatch) -> usize) -> usize {
        let Some(b) = self.filling_batch() else {
            return 0;
        };
        let n = fill(&mut self.batches[b as usize].datagrams);
        if self.batches[b as usize].datagrams.is_full() {
            self.queue_filling();
        }
        n
    }

    /// Copies `payload` into the current batch; false if no batch was free.
    pub fn send(&mut self, to: SocketAddr, payload: &[u8]) -> bool {
        self.fill(|batch| usize::from(batch.push(to, payload))) == 1
    }

    /// Queues a `sendmsg` for every datagram of the batch being filled.
    fn queue_filling(&mut self) {
        let Some(b) = self.filling.take() else {
            return;
        };
        let batch = &mut self.batches[b as usize];
        let n = batch.datagrams.len();
        if n == 0 {
            self.free_batches.push(b);
            return;
        }
        batch.in_flight = n;
        let base = batch.datagrams.arena_ptr();
        let (stride, headroom) = (batch.datagrams.stride(), batch.datagrams.headroom());
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        for (i, header) in batch.headers.iter_mut().enumerate().take(n) {
            let Some((to, datagram)) = batch.datagrams.get(i) else {
                break;
            };
            let addr_len = write_sockaddr(to, &mut header.addr);
            header.iov = libc::iovec {
                // The slot lives in the batch's arena, which never moves; the kernel only
                // reads it.
                iov_base: base.wrapping_add(i * stride + headroom).cast_mut().cast(),
                iov_len: datagram.len(),
            };
            header.msg.msg_name = (&mut header.addr as *mut libc::sockaddr_storage).cast();
            header.msg.msg_namelen = addr_len;
            header.msg.msg_iov = &mut header.iov;
            header.msg.msg_iovlen = 1;
            entries.push(
                opcode::SendMsg::new(Fd(self.socket), &header.msg)
                    .build()
                    .user_data(TAG_SEND | (u64::from(b) << 16) | i as u64),
            );
        }
        for e in entries.drain(..) {
            self.push(e);
        }
        self.entries = entries;
    }

    /// Batches not in flight.
    pub fn free_batches(&self) -> usize {
        self.free_batches.len() + usize::from(self.filling.is_some())
    }

    /// Submits what is queued without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        self.queue_filling();
        if self.queued > 0 {
            self.ring.submit()?;
            self.queued = 0;
        }
        Ok(())
    }

    /// Submits what is queued, waits up to `timeout` (None: until something happens)
    /// for completions if there are none yet, and handles them: each datagram goes to
    /// `on_datagram` and its buffer back to the ring.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut on_datagram: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<Readiness> {
        self.queue_filling();
        self.arm();
        let ready = !self.ring.completion().is_empty();
        let result = if ready || timeout == Some(Duration::ZERO) {
            self.ring.submit()
        } else if let Some(t) = timeout {
            let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit_and_wait(1)
        };
        self.queued = 0;
        match result {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        let mut readiness = Readiness::default();
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut recycled = false;
        for &(user_data, result, flags) in &completions {
            match user_data & TAG_MASK {
                TAG_RECV => {
                    if !cqueue::more(flags) {
                        self.recv_armed = false;
                    }
                    if result == -libc::ENOBUFS {
                        self.counters.out_of_buffers += 1;
                        continue;
                    }
                    let Some(bid) = cqueue::buffer_select(flags) else {
                        continue;
                    };
                    if result >= 0 {
                        let buffer = self.bufs.buffer(bid, result as usize);
                        match RecvMsgOut::parse(buffer, &self.recv_msg) {
                            Ok(msg)
                                if msg.is_payload_truncated() || msg.is_name_data_truncated() =>
                            {
                                self.counters.truncated += 1;
                            }
                            Ok(msg) => {
                                if let Some(from) = read_sockaddr(msg.name_data()) {
                                    self.counters.received += 1;
                                    on_datagram(from, msg.payload_data());
                                }
                            }
                            Err(()) => self.counters.truncated += 1,
                        }
                    }
                    self.bufs.push(bid);
                    recycled = true;
                }
                TAG_SEND => {
                    let b = ((user_data & !TAG_MASK) >> 16) as u32;
                    if let Some(batch) = self.batches.get_mut(b as usize) {
                        batch.in_flight = batch.in_flight.saturating_sub(1);
                        if batch.in_flight == 0 {
                            self.free_batches.push(b);
                        }
                    }
                    if result < 0 {
                        self.counters.send_errors += 1;
                    } else {
                        self.counters.sent += 1;
                    }
                }
                TAG_WAKE => {
                    self.wake_armed = false;
                    readiness.woken = true;
                }
                TAG_WATCH => {
                    if !cqueue::more(flags) {
                        self.watch_armed = false;
                    }
                    readiness.watched = true;
                }
                _ => {}
            }
        }
        self.completions = completions;
        if recycled {
            self.bufs.publish();
        }
        self.arm();
        Ok(readiness)
    }
}

/// Writes `addr` as a C socket address; returns its length.
pub fn write_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a C socket address the kernel wrote into a receive buffer (any alignment).
pub fn read_sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    if bytes.len() < 2 {
        return None;
    }
    let family = i32::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
    if family == libc::AF_INET && bytes.len() >= size_of::<libc::sockaddr_in>() {
        // SAFETY: length checked; read_unaligned copes with the buffer's alignment.
        let sin: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let ip = sin.sin_addr.s_addr.to_ne_bytes();
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip.into(),
            u16::from_be(sin.sin_port),
        )))
    } else if family == libc::AF_INET6 && bytes.len() >= size_of::<libc::sockaddr_in6>() {
        // SAFETY: as above.
        let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        Some(SocketAddr::V6(SocketAddrV6::new(
            sin6.sin6_addr.s6_addr.into(),
            u16::from_be(sin6.sin6_port),
            sin6.sin6_flowinfo,
            sin6.sin6_scope_id,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::waker::Waker;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn socket_addresses_round_trip_through_c_layout() {
        for addr in ["192.0.2.7:1935", "[2001:db8::1]:443", "[fe80::1%3]:9"] {
            let addr: SocketAddr = addr.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
            let len = write_sockaddr(addr, &mut storage) as usize;
            // SAFETY: `storage` is plain bytes of at least `len`.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&storage as *const libc::sockaddr_storage).cast::<u8>(),
                    len,
                )
            };
            assert_eq!(read_sockaddr(bytes), Some(addr));
        }
        assert_eq!(read_sockaddr(&[0xff, 0xff, 0, 0]), None);
    }

    #[test]
    fn datagrams_go_out_in_a_batch_and_come_back_through_provided_buffers() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let waker = Waker::new().unwrap();
        let mut udp =
            UringUdp::new(server.as_raw_fd(), waker.fd(), None).expect("io_uring available");
        // Out: 100 datagrams queued, one submit.
        for i in 0..100u32 {
            assert!(udp.send(peer.local_addr().unwrap(), &i.to_be_bytes()));
        }
        udp.submit().unwrap();
        let mut buf = [0u8; 64];
        for i in 0..100u32 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&i.to_be_bytes()[..], server.local_addr().unwrap())
            );
        }
        // In: more datagrams than receive buffers, so buffers must be recycled.
        let total = usize::from(RECV_BUFS) * 2 + 17;
        let mut got = Vec::new();
        let mut sent = 0usize;
        while got.len() < total {
            while sent < total && sent < got.len() + 512 {
                peer.send_to(&(sent as u32).to_be_bytes(), server.local_addr().unwrap())
                    .unwrap();
                sent += 1;
            }
            udp.wait(Some(Duration::from_millis(200)), |from, data| {
                assert_eq!(from, peer.local_addr().unwrap());
                got.push(u32::from_be_bytes(data.try_into().unwrap()));
            })
            .unwrap();
        }
        assert_eq!(got, (0..total as u32).collect::<Vec<_>>());
        assert_eq!(udp.counters.received, total as u64);
        assert_eq!(
            udp.free_batches(),
            SEND_BATCHES,
            "every send batch came back"
        );
    }

    #[test]
    fn another_thread_wakes_a_waiting_ring() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let waker = std::sync::Arc::new(Waker::new().unwrap());
        let mut udp =
            UringUdp::new(server.as_raw_fd(), waker.fd(), None).expect("io_uring available");
        waker.prepare_sleep();
        let other = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.wake();
        });
        let mut woken = false;
        for _ in 0..50 {
            if udp
                .wait(Some(Duration::from_secs(1)), |_, _| {})
                .unwrap()
                .woken
            {
                woken = true;
                break;
            }
        }
        t.join().unwrap();
        assert!(woken);
    }
}
