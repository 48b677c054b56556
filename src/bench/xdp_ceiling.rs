//! What AF_XDP itself allows here: the same 1200-byte datagrams to the same N
//! destinations as the kernel ceiling, prebuilt once in UMEM frames (headers included)
//! and cycled through the TX ring of one AF_XDP socket, with no encryption and no
//! server. The `--io xdp` server's rate is read against this and against the kernel's.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::ceiling::DATAGRAM;
use crate::engine::xdp::frame::{write_headers, Link, Mac};
use crate::engine::xdp::socket::{XskConfig, XskSocket, FRAME_SIZE};
use crate::proto::batch::SlotMemory;

const FRAMES: u32 = 4096;
const HEADROOM: usize = 64;
const BATCH: usize = 64;

/// Packets a second one AF_XDP socket on queue 0 of `interface` sends, round-robin over
/// `dests` (next hop `destination_mac`), for `run_for`; and the mode it bound in.
pub fn measure(
    interface: &str,
    from: SocketAddrV4,
    dests: &[SocketAddrV4],
    destination_mac: Mac,
    run_for: Duration,
) -> Result<(f64, String)> {
    let ifindex = crate::engine::sockopt::interface_index(interface)?;
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))?;
    let source_mac = crate::engine::xdp::parse_mac(&mac_text).context("the interface's MAC")?;
    let config = XskConfig {
        rx_frames: 64,
        tx_frames: FRAMES,
        zero_copy: true,
    };
    let mut socket = XskSocket::open(ifindex, 0, config).context("an AF_XDP socket")?;
    let mut region = socket
        .tx_region(FRAMES)
        .context("the UMEM's transmit frames")?;
    let base = region.offset();
    let link = Link {
        source_mac,
        destination_mac,
        hop_limit: crate::engine::xdp::frame::UNICAST_HOP_LIMIT,
    };
    let mut descriptors = Vec::with_capacity(FRAMES as usize);
    let memory = region.bytes_mut();
    for i in 0..FRAMES as usize {
        let slot = &mut memory[i * FRAME_SIZE..(i + 1) * FRAME_SIZE];
        slot[HEADROOM..HEADROOM + DATAGRAM].fill(0xa5);
        let to = SocketAddr::V4(dests[i % dests.len()]);
        let start = write_headers(slot, HEADROOM, DATAGRAM, &link, SocketAddr::V4(from), to)
            .context("building a frame")?;
        let addr = base + (i * FRAME_SIZE + start) as u64;
        descriptors.push((addr, (HEADROOM + DATAGRAM - start) as u32));
    }
    let mut free: VecDeque<usize> = (0..FRAMES as usize).collect();
    let mut sent = 0u64;
    let mut batch: Vec<(u64, u32)> = Vec::with_capacity(BATCH);
    let start = Instant::now();
    while start.elapsed() < run_for {
        sent += u64::from(socket.completed(|addr| {
            free.push_back(((addr - base) / FRAME_SIZE as u64) as usize);
        }));
        let take = free.len().min(BATCH);
        batch.clear();
        batch.extend(free.drain(..take).map(|i| descriptors[i]));
        let queued = socket.transmit(batch.iter().copied()) as usize;
        // What the ring did not take goes back to the front.
        for &(addr, _) in batch[queued..].iter().rev() {
            free.push_front(((addr - base) / FRAME_SIZE as u64) as usize);
        }
        socket.kick();
    }
    Ok((
        sent as f64 / start.elapsed().as_secs_f64(),
        socket.mode().to_string(),
    ))
}
