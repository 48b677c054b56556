//! The AF_XDP fast path of a shard: RTMFP datagrams come in through an AF_XDP socket
//! (our XDP guard program redirects the server's UDP port to it and passes everything
//! else to the kernel) and go out through its TX ring, with Ethernet/IP/UDP headers we
//! write ourselves in front of the datagrams the endpoint seals straight into UMEM frames.
//!
//! The next hop's MAC address for a peer is the source MAC of the last frame that peer's
//! datagrams arrived in (the peer itself on a LAN, the router otherwise: the route back
//! is the same one in the usual symmetric case), else the kernel's neighbour table
//! (`/proc/net/arp`). A datagram for a peer with neither goes out through the kernel's
//! UDP socket, which resolves the neighbour for the next time.

pub mod frame;
pub mod socket;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::proto::batch::TransmitBatch;
use frame::{Link, Mac};
use socket::{XskConfig, XskSocket, FRAME_SIZE};

pub use socket::{XdpMode, XskStats};

/// Bytes kept before each datagram in a transmit frame for our headers (62 for IPv6).
const HEADROOM: usize = 64;
/// Transmit frames per batch; the socket's transmit frames are split into batches.
const FRAMES_PER_BATCH: u32 = 256;
/// How often at most the kernel's neighbour table is read again after a miss.
const NEIGHBOUR_REREAD: Duration = Duration::from_secs(1);

/// What the fast path has done, for the shard's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XdpCounters {
    /// Frames read from the RX ring.
    pub frames_received: u64,
    /// Of those, not a UDP datagram for the server's port (dropped).
    pub frames_not_ours: u64,
    /// Datagrams the kernel finished sending through the TX ring (completions).
    pub sent: u64,
    /// Datagrams sent through the kernel socket (next hop unknown).
    pub sent_by_kernel: u64,
    /// Datagrams dropped because neither path could take them.
    pub send_failed: u64,
}

struct TxBatch {
    datagrams: TransmitBatch,
    /// UMEM address of the batch's first frame.
    base: u64,
    /// Frames handed to the kernel and not completed.
    in_flight: u32,
}

/// A shard's AF_XDP socket, its transmit batches and the next-hop table.
pub struct XdpPath {
    socket: XskSocket,
    /// TTL (hop limit) of the IP multicast datagrams sent through the socket.
    multicast_hop_limit: u8,
    local_mac: Mac,
    /// The server's address (its IP may be unspecified: then the address a peer wrote to
    /// is the one we answer from).
    local: SocketAddr,
    /// Peer IP → (next-hop MAC, our address it reached).
    neighbours: HashMap<IpAddr, (Mac, IpAddr)>,
    neighbours_read: Option<Instant>,
    batches: Vec<TxBatch>,
    free: Vec<usize>,
    /// The TX descriptors of the batch being posted (kept for its capacity).
    descriptors: Vec<(u64, u32)>,
    tx_base: u64,
    counters: XdpCounters,
}

impl XdpCounters {
    fn add(mut self, other: XdpCounters) -> XdpCounters {
        self.frames_received += other.frames_received;
        self.frames_not_ours += other.frames_not_ours;
        self.sent += other.sent;
        self.sent_by_kernel += other.sent_by_kernel;
        self.send_failed += other.send_failed;
        self
    }

    /// The counters of several paths (a shard's sockets), summed.
    pub fn sum(paths: &[XdpPath]) -> XdpCounters {
        paths
            .iter()
            .map(XdpPath::counters)
            .fold(XdpCounters::default(), XdpCounters::add)
    }
}

impl XdpPath {
    /// Opens an AF_XDP socket on `queue` of `interface` for the server at `local`; IP
    /// multicast datagrams sent through it get `multicast_hop_limit`.
    ///
    /// A shard that sends through another socket opens this one `receive_only`: it
    /// keeps only a token amount of transmit frames.
    pub fn open(
        interface: &str,
        queue: u32,
        local: SocketAddr,
        multicast_hop_limit: u8,
        receive_only: bool,
    ) -> io::Result<Self> {
        let ifindex = crate::engine::sockopt::interface_index(interface)?;
        let local_mac = interface_mac(interface)?;
        let mut config = XskConfig::default();
        if receive_only {
            config.tx_frames = 64;
        }
        let mut socket = XskSocket::open(ifindex, queue, config)?;
        let tx_frames = socket.config().tx_frames;
        let mut batches = Vec::new();
        while let Some(region) = socket.tx_region(FRAMES_PER_BATCH.min(tx_frames)) {
            let base = region.offset();
            batches.push(TxBatch {
                datagrams: TransmitBatch::over(Box::new(region), FRAME_SIZE, HEADROOM),
                base,
                in_flight: 0,
            });
        }
        let tx_base = batches.first().map_or(0, |b| b.base);
        Ok(XdpPath {
            socket,
            multicast_hop_limit,
            local_mac,
            local,
            neighbours: HashMap::new(),
            neighbours_read: None,
            free: (0..batches.len()).rev().collect(),
            descriptors: Vec::with_capacity(FRAMES_PER_BATCH as usize),
            batches,
            tx_base,
            counters: XdpCounters::default(),
        })
    }

    pub fn mode(&self) -> XdpMode {
        self.socket.mode()
    }

    pub fn socket(&self) -> &XskSocket {
        &self.socket
    }

    pub fn counters(&self) -> XdpCounters {
        self.counters
    }

    pub fn kernel_stats(&self) -> io::Result<XskStats> {
        self.socket.stats()
    }

    /// Reads every frame waiting in the RX ring and hands each datagram for the server's
    /// port to `each` (from, bytes); learns next hops on the way.
    pub fn receive(&mut self, mut each: impl FnMut(SocketAddr, &[u8])) -> u32 {
        let (port, neighbours, counters) =
            (self.local.port(), &mut self.neighbours, &mut self.counters);
        self.socket.receive(|bytes| {
            counters.frames_received += 1;
            match frame::parse_udp(bytes) {
                Some(d) if d.to.port() == port => {
                    neighbours.insert(d.from.ip(), (d.source_mac, d.to.ip()));
                    each(d.from, d.payload);
                }
                _ => counters.frames_not_ours += 1,
            }
        })
    }

    /// Takes back the frames the kernel finished sending.
    fn reap(&mut self) {
        let (batches, free, tx_base) = (&mut self.batches, &mut self.free, self.tx_base);
        let sent = &mut self.counters.sent;
        let batch_bytes = u64::from(FRAMES_PER_BATCH) * FRAME_SIZE as u64;
        self.socket.completed(|addr| {
            let Some(index) = addr
                .checked_sub(tx_base)
                .map(|offset| (offset / batch_bytes) as usize)
            else {
                return;
            };
            if let Some(batch) = batches.get_mut(index) {
                *sent += 1;
                batch.in_flight = batch.in_flight.saturating_sub(1);
                if batch.in_flight == 0 {
                    batch.datagrams.clear();
                    free.push(index);
                }
            }
        });
    }

    /// Batches free for filling.
    pub fn free_batches(&mut self) -> usize {
        self.reap();
        self.free.len()
    }

    /// Lets `fill` seal datagrams into a free batch of UMEM frames, writes their headers
    /// and queues them on the TX ring (or the kernel socket `kernel` for an unknown next
    /// hop). Returns how many datagrams `fill` produced; 0 when no batch is free.
    pub fn fill(
        &mut self,
        kernel: &UdpSocket,
        fill: impl FnOnce(&mut TransmitBatch) -> usize,
    ) -> usize {
        self.reap();
        let Some(index) = self.free.pop() else {
            return 0;
        };
        let n = fill(&mut self.batches[index].datagrams);
        self.post(index, kernel);
        n
    }

    fn post(&mut self, index: usize, kernel: &UdpSocket) {
        let len = self.batches[index].datagrams.len();
        // Reused batch after batch: no allocation per batch.
        let mut descriptors = std::mem::take(&mut self.descriptors);
        descriptors.clear();
        for i in 0..len {
            let batch = &mut self.batches[index];
            let Some((to, datagram_len, slot)) = batch.datagrams.filled_slot_mut(i) else {
                break;
            };
            let slot_addr = batch.base + (i * FRAME_SIZE) as u64;
            let hop = match frame::multicast_mac(to.ip()) {
                Some(mac) if !self.local.ip().is_unspecified() => {
                    Some((mac, self.local.ip(), self.multicast_hop_limit))
                }
                Some(_) => None,
                None => next_hop(
                    &mut self.neighbours,
                    &mut self.neighbours_read,
                    self.local,
                    to,
                )
                .map(|(mac, from_ip)| (mac, from_ip, frame::UNICAST_HOP_LIMIT)),
            };
            let written = hop.and_then(|(mac, from_ip, hop_limit)| {
                let link = Link {
                    source_mac: self.local_mac,
                    destination_mac: mac,
                    hop_limit,
                };
                let from = SocketAddr::new(from_ip, self.local.port());
                frame::write_headers(slot, HEADROOM, datagram_len, &link, from, to)
            });
            match written {
                Some(start) => {
                    let frame_len = HEADROOM + datagram_len - start;
                    descriptors.push((slot_addr + start as u64, frame_len as u32));
                }
                None => {
                    let datagram = &slot[HEADROOM..HEADROOM + datagram_len];
                    match kernel.send_to(datagram, to) {
                        Ok(_) => self.counters.sent_by_kernel += 1,
                        Err(_) => self.counters.send_failed += 1,
                    }
                }
            }
        }
        // The TX ring holds every transmit frame, so it always has room for a batch.
        let queued = self.socket.transmit(descriptors.iter().copied()) as usize;
        self.counters.send_failed += (descriptors.len() - queued) as u64;
        self.descriptors = descriptors;
        let batch = &mut self.batches[index];
        batch.in_flight = queued as u32;
        if queued == 0 {
            batch.datagrams.clear();
            self.free.push(index);
        }
        self.socket.kick();
    }

    /// Pushes out what the TX ring still holds (copy mode sends a bounded number per kick).
    pub fn kick(&mut self) {
        self.socket.kick();
    }
}

/// The next-hop MAC and our source IP for a datagram to `to`.
fn next_hop(
    neighbours: &mut HashMap<IpAddr, (Mac, IpAddr)>,
    last_read: &mut Option<Instant>,
    local: SocketAddr,
    to: SocketAddr,
) -> Option<(Mac, IpAddr)> {
    if let Some(&hop) = neighbours.get(&to.ip()) {
        return Some(hop);
    }
    let (IpAddr::V4(_), false) = (to.ip(), local.ip().is_unspecified()) else {
        return None;
    };
    let stale = last_read.map_or(true, |t| t.elapsed() >= NEIGHBOUR_REREAD);
    if !stale {
        return None;
    }
    *last_read = Some(Instant::now());
    let table = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
    for (ip, mac) in parse_arp_table(&table) {
        neighbours.entry(ip).or_insert((mac, local.ip()));
    }
    neighbours.get(&to.ip()).copied()
}

/// (IP, MAC) of every complete entry of `/proc/net/arp`.
pub fn parse_arp_table(table: &str) -> Vec<(IpAddr, Mac)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let ip: IpAddr = fields.first()?.parse().ok()?;
            // Flags 0x2: complete.
            let flags = u32::from_str_radix(fields.get(2)?.trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None;
            }
            Some((ip, parse_mac(fields.get(3)?)?))
        })
        .collect()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn interface_mac(interface: &str) -> io::Result<Mac> {
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path)?;
    parse_mac(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not a MAC address: {}", text.trim()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_neighbour_table_gives_complete_entries_only() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     10.231.0.2       0x1         0x2         7a:1c:00:4e:9b:01     *        veth0\n\
                     10.231.0.3       0x1         0x0         00:00:00:00:00:00     *        veth0\n\
                     garbage line\n";
        assert_eq!(
            parse_arp_table(table),
            vec![(
                "10.231.0.2".parse().unwrap(),
                [0x7a, 0x1c, 0x00, 0x4e, 0x9b, 0x01]
            )]
        );
        assert_eq!(parse_mac("7a:1c:00:4e:9b"), None);
        assert_eq!(parse_mac("7a:1c:00:4e:9b:01:02"), None);
    }
}
