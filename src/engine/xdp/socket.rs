//! An AF_XDP socket on one queue of one interface, with its UMEM and four rings, on the
//! kernel's ABI (linux/if_xdp.h) through `libc`: no libxdp, whose own XDP dispatcher
//! would fight the guard program we already load with libbpf-rs.
//!
//! - **UMEM**: one anonymous mapping of `frames` chunks of [`FRAME_SIZE`] bytes. The
//!   first `rx_frames` chunks are receive frames (they cycle through the fill ring), the
//!   rest are transmit frames, which the caller hands out in regions ([`UmemRegion`]).
//! - **Rings**: fill and TX are ours to produce, RX and completion the kernel's. Each ring
//!   is a mapping with a producer index, a consumer index, a flags word and the entries;
//!   indices are free-running `u32`s, published with release and read with acquire.
//! - **Binding** tries zero-copy (the driver maps the UMEM) and falls back to copy mode
//!   (veth, drivers without AF_XDP support), always with need-wakeup: a TX kick
//!   (`sendto` with no data) only when the kernel asks for it.
//!
//! Every `unsafe` here is a system call on descriptors and mappings this module owns, or
//! an access to a mapping whose layout the kernel gave (`XDP_MMAP_OFFSETS`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::proto::batch::SlotMemory;

/// Bytes of one UMEM chunk.
pub const FRAME_SIZE: usize = 2048;

/// How the socket is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// The driver DMAs straight to and from the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM (veth, generic XDP).
    Copy,
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::ZeroCopy => "zero-copy",
            XdpMode::Copy => "copy",
        })
    }
}

/// Sizes of a socket's UMEM and rings.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    /// Receive frames (kept in the fill ring); a power of two.
    pub rx_frames: u32,
    /// Transmit frames; a power of two.
    pub tx_frames: u32,
    /// Try zero-copy before copy mode.
    pub zero_copy: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            rx_frames: 4096,
            tx_frames: 4096,
            zero_copy: true,
        }
    }
}

/// The UMEM mapping; unmapped when the socket and every region lent out are gone.
#[derive(Debug)]
struct Umem {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; who writes which part is governed by the frame
// ownership rules of `XskSocket` (a frame is either ours or the kernel's).
unsafe impl Send for Umem {}
// SAFETY: as above; shared references only read the base address and length.
unsafe impl Sync for Umem {}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing refers to the
        // mapping any more (the socket, which the kernel pinned it for, is closed first:
        // regions and the socket both hold this `Arc`).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Part of the transmit frames, lent to a [`TransmitBatch`](crate::proto::batch::TransmitBatch)
/// so the endpoint seals datagrams straight into the frames the kernel sends.
#[derive(Debug)]
pub struct UmemRegion {
    umem: Arc<Umem>,
    /// Offset of the region in the UMEM (also the frame address of its first byte).
    offset: usize,
    len: usize,
}

impl UmemRegion {
    /// The UMEM address of the region's first byte.
    pub fn offset(&self) -> u64 {
        self.offset as u64
    }
}

impl SlotMemory for UmemRegion {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the region lies inside the mapping (checked in `XskSocket::tx_region`),
        // which lives as long as `self.umem`. Regions never overlap each other or the
        // receive frames; the kernel reads a region's frames only between their TX
        // submission and completion, while the engine holds its batch aside.
        unsafe { std::slice::from_raw_parts(self.umem.base.add(self.offset), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only reference we hand out.
        unsafe { std::slice::from_raw_parts_mut(self.umem.base.add(self.offset), self.len) }
    }
}

/// One of the four rings: a shared mapping of (producer, consumer, flags, entries).
struct Ring<T> {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
    size: u32,
    /// Our copy of the index we advance.
    ours: u32,
    /// The last value of the index the kernel advances.
    theirs: u32,
}

impl<T: Copy> Ring<T> {
    /// Maps ring `pgoff` of socket `fd` at the kernel's `offsets`.
    fn map(
        fd: RawFd,
        offsets: &libc::xdp_ring_offset,
        size: u32,
        pgoff: libc::off_t,
    ) -> io::Result<Self> {
        let map_len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the ring the kernel set up for this socket;
        // the length is the kernel's documented layout (desc offset + entries).
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |offset: u64| map.cast::<u8>().wrapping_add(offset as usize);
        Ok(Ring {
            map,
            map_len,
            producer: at(offsets.producer).cast(),
            consumer: at(offsets.consumer).cast(),
            flags: at(offsets.flags).cast(),
            entries: at(offsets.desc).cast(),
            mask: size - 1,
            size,
            ours: 0,
            theirs: 0,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, 4-byte aligned by the kernel's layout.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        let flags = unsafe { &*self.flags };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- as producer (fill, TX) ---

    /// Entries we may write now.
    fn free(&mut self) -> u32 {
        self.theirs = self.consumer().load(Ordering::Acquire);
        self.size - self.ours.wrapping_sub(self.theirs)
    }

    /// Writes the `i`th entry past those published; `i < free()`.
    fn write(&mut self, i: u32, value: T) {
        let slot = (self.ours.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `slot <= mask < size` entries live in the mapping; the caller only
        // writes entries `free()` said the kernel is not reading.
        unsafe { self.entries.add(slot).write(value) };
    }

    /// Publishes `n` written entries.
    fn publish(&mut self, n: u32) {
        self.ours = self.ours.wrapping_add(n);
        self.producer().store(self.ours, Ordering::Release);
    }

    // --- as consumer (RX, completion) ---

    /// Entries the kernel has produced that we have not consumed.
    fn available(&mut self) -> u32 {
        self.theirs = self.producer().load(Ordering::Acquire);
        self.theirs.wrapping_sub(self.ours)
    }

    /// The `i`th unconsumed entry; `i < available()`.
    fn read(&self, i: u32) -> T {
        let slot = (self.ours.wrapping_add(i) & self.mask) as usize;
        // SAFETY: in bounds as in `write`; the kernel published it (acquire above).
        unsafe { self.entries.add(slot).read() }
    }

    /// Gives `n` consumed entries back to the kernel.
    fn release(&mut self, n: u32) {
        self.ours = self.ours.wrapping_add(n);
        self.consumer().store(self.ours, Ordering::Release);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `map` made.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// Counters the kernel keeps for the socket (`XDP_STATISTICS`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid: u64,
    pub tx_invalid: u64,
    pub rx_ring_full: u64,
    pub fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket bound to one queue, with its UMEM.
pub struct XskSocket {
    // Field order is drop order: the rings are unmapped, then the socket closed (which
    // releases the kernel's pin on the UMEM), then our `Arc` of the UMEM dropped.
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fd: OwnedFd,
    umem: Arc<Umem>,
    config: XskConfig,
    mode: XdpMode,
    /// Transmit frames not yet lent out as regions: the next one's index.
    next_tx_frame: u32,
}

// SAFETY: the raw pointers are into mappings the socket owns; one thread uses a socket
// at a time (a shard), and moving it to that thread is all `Send` allows.
unsafe impl Send for XskSocket {}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt<T: Default>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

impl XskSocket {
    /// Opens a socket on queue `queue` of interface `ifindex`: zero-copy if asked and the
    /// driver can, copy mode otherwise.
    pub fn open(ifindex: u32, queue: u32, config: XskConfig) -> io::Result<Self> {
        let power_of_two = |n: u32| n.is_power_of_two() && n >= 64;
        if !power_of_two(config.rx_frames) || !power_of_two(config.tx_frames) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "AF_XDP frame counts must be powers of two, at least 64",
            ));
        }
        let modes: &[XdpMode] = if config.zero_copy {
            &[XdpMode::ZeroCopy, XdpMode::Copy]
        } else {
            &[XdpMode::Copy]
        };
        let mut last = None;
        for &mode in modes {
            match Self::open_in(ifindex, queue, config, mode) {
                Ok(socket) => return Ok(socket),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no AF_XDP mode to try")))
    }

    fn open_in(ifindex: u32, queue: u32, config: XskConfig, mode: XdpMode) -> io::Result<Self> {
        // SAFETY: plain socket creation; the descriptor is owned below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just created and nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let frames = (config.rx_frames + config.tx_frames) as usize;
        let len = frames * FRAME_SIZE;
        // SAFETY: a fresh private anonymous mapping; owned by `Umem` from here.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let umem = Arc::new(Umem {
            base: base.cast(),
            len,
        });
        let registration = libc::xdp_umem_reg {
            addr: base as u64,
            len: len as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &registration)?;
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &config.rx_frames)?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &config.tx_frames)?;
        setsockopt(raw, libc::XDP_RX_RING, &config.rx_frames)?;
        setsockopt(raw, libc::XDP_TX_RING, &config.tx_frames)?;
        let offsets: libc::xdp_mmap_offsets = getsockopt_offsets(raw)?;
        let fill = Ring::map(
            raw,
            &offsets.fr,
            config.rx_frames,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        )?;
        let completion = Ring::map(
            raw,
            &offsets.cr,
            config.tx_frames,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        )?;
        let rx = Ring::map(raw, &offsets.rx, config.rx_frames, libc::XDP_PGOFF_RX_RING)?;
        let tx = Ring::map(raw, &offsets.tx, config.tx_frames, libc::XDP_PGOFF_TX_RING)?;
        let mut socket = XskSocket {
            fill,
            completion,
            rx,
            tx,
            fd,
            umem,
            config,
            mode,
            next_tx_frame: 0,
        };
        // Every receive frame starts in the fill ring.
        let n = socket.fill.free().min(config.rx_frames);
        for i in 0..n {
            socket.fill.write(i, u64::from(i) * FRAME_SIZE as u64);
        }
        socket.fill.publish(n);
        let bind_flags = libc::XDP_USE_NEED_WAKEUP
            | match mode {
                XdpMode::ZeroCopy => libc::XDP_ZEROCOPY,
                XdpMode::Copy => libc::XDP_COPY,
            };
        let address = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `address` is a live sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&address as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn config(&self) -> XskConfig {
        self.config
    }

    /// Lends the next `frames` transmit frames as one region; None when too few are left.
    pub fn tx_region(&mut self, frames: u32) -> Option<UmemRegion> {
        if self.next_tx_frame + frames > self.config.tx_frames {
            return None;
        }
        let first = self.config.rx_frames + self.next_tx_frame;
        self.next_tx_frame += frames;
        let offset = first as usize * FRAME_SIZE;
        let len = frames as usize * FRAME_SIZE;
        debug_assert!(offset + len <= self.umem.len);
        Some(UmemRegion {
            umem: self.umem.clone(),
            offset,
            len,
        })
    }

    /// Hands every received frame to `each` (its bytes, from the Ethernet header on),
    /// then gives the frames back to the fill ring. Returns how many.
    pub fn receive(&mut self, mut each: impl FnMut(&[u8])) -> u32 {
        let n = self.rx.available();
        if n == 0 {
            return 0;
        }
        for i in 0..n {
            let desc = self.rx.read(i);
            let start = desc.addr as usize;
            let end = start.saturating_add(desc.len as usize);
            let rx_end = self.config.rx_frames as usize * FRAME_SIZE;
            if end <= rx_end {
                // SAFETY: the kernel filled this receive frame (inside the mapping, checked
                // above) and will not touch it until we put it back in the fill ring below.
                let frame =
                    unsafe { std::slice::from_raw_parts(self.umem.base.add(start), end - start) };
                each(frame);
            }
        }
        // Every frame we read goes straight back: the fill ring has room for all of them,
        // since a frame is in exactly one of (fill, kernel, RX ring).
        let room = self.fill.free();
        let back = n.min(room);
        for i in 0..back {
            let addr = self.rx.read(i).addr;
            self.fill.write(i, addr - addr % FRAME_SIZE as u64);
        }
        self.fill.publish(back);
        self.rx.release(n);
        if self.fill.needs_wakeup() {
            self.wake_receive();
        }
        n
    }

    /// Room in the TX ring.
    pub fn tx_free(&mut self) -> u32 {
        self.tx.free()
    }

    /// Queues frames `(UMEM address, length)` for sending, as many as the TX ring takes;
    /// returns how many it took. Call [`Self::kick`] after.
    pub fn transmit(&mut self, frames: impl IntoIterator<Item = (u64, u32)>) -> u32 {
        let room = self.tx.free();
        let mut n = 0;
        for (addr, len) in frames {
            if n == room {
                break;
            }
            self.tx.write(
                n,
                libc::xdp_desc {
                    addr,
                    len,
                    options: 0,
                },
            );
            n += 1;
        }
        self.tx.publish(n);
        n
    }

    /// Tells the kernel to send what the TX ring holds. In zero-copy mode only when the
    /// driver asked (the ring's need-wakeup flag); in copy mode always: there the kernel
    /// sends only inside this call (never setting the flag), a bounded number per call,
    /// so we call until the ring is empty or the device is busy.
    pub fn kick(&mut self) {
        for _ in 0..64 {
            let asked = self.mode == XdpMode::Copy || self.tx.needs_wakeup();
            if !asked || self.tx_pending() == 0 {
                return;
            }
            // SAFETY: a zero-length send on our socket: the kernel's TX trigger.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    // More to do, or the device queue is full: try again (later).
                    Some(libc::EAGAIN) => continue,
                    Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::ENETDOWN) => return,
                    _ => return,
                }
            }
        }
    }

    /// TX entries the kernel has not consumed yet.
    fn tx_pending(&mut self) -> u32 {
        self.tx.size - self.tx.free()
    }

    /// Hands the UMEM address of every frame the kernel finished sending to `each`;
    /// returns how many.
    pub fn completed(&mut self, mut each: impl FnMut(u64)) -> u32 {
        let n = self.completion.available();
        for i in 0..n {
            each(self.completion.read(i));
        }
        self.completion.release(n);
        n
    }

    fn wake_receive(&self) {
        // SAFETY: a zero-length non-blocking receive on our socket: the kernel's RX
        // trigger in need-wakeup mode.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        let s: XdpStatistics = getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS)?;
        Ok(XskStats {
            rx_dropped: s.0.rx_dropped,
            rx_invalid: s.0.rx_invalid_descs,
            tx_invalid: s.0.tx_invalid_descs,
            rx_ring_full: s.0.rx_ring_full,
            fill_ring_empty: s.0.rx_fill_ring_empty_descs,
            tx_ring_empty: s.0.tx_ring_empty_descs,
        })
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

struct XdpStatistics(libc::xdp_statistics);

impl Default for XdpStatistics {
    fn default() -> Self {
        XdpStatistics(libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        })
    }
}

fn getsockopt_offsets(fd: RawFd) -> io::Result<libc::xdp_mmap_offsets> {
    let zero = libc::xdp_ring_offset {
        producer: 0,
        consumer: 0,
        desc: 0,
        flags: 0,
    };
    let mut offsets = libc::xdp_mmap_offsets {
        rx: zero,
        tx: zero,
        fr: zero,
        cr: zero,
    };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `offsets`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut offsets as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        return Err(io::Error::other(
            "kernel without AF_XDP ring flags (older than 5.4)",
        ));
    }
    Ok(offsets)
}
