//! The benchmark's topology: a network namespace `rtmfp-bench-<pid>` holding the
//! subscribers, joined to the root namespace by a veth pair on 10.231.0.0/24 (server side
//! .1 in the root namespace, subscribers .2 inside). Everything is deleted on drop, which
//! runs on success, on error and after Ctrl-C (see [`super::catch_interrupts`]).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);
pub const SUBSCRIBER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 2);

pub struct Topology {
    pub ns: String,
    /// The veth end in the root namespace (server side).
    pub root_if: String,
    /// The veth end inside the namespace (subscriber side).
    pub ns_if: String,
    drop_filter: IngressDrop,
}

/// What the nftables rule at the subscribers' veth end drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressDrop {
    Nothing,
    /// Every UDP datagram.
    AllUdp,
    /// UDP datagrams not sent to a multicast group: those go on to the group's socket.
    UnicastUdp,
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd} (is iproute2 installed? scripts/setup)"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Topology {
    /// Creates the namespace and the veth pair, addresses them and brings them up.
    pub fn create() -> Result<Self> {
        let pid = std::process::id();
        let t = Topology {
            ns: format!("rtmfp-bench-{pid}"),
            root_if: format!("rbv{pid}a"),
            ns_if: format!("rbv{pid}b"),
            drop_filter: IngressDrop::Nothing,
        };
        ip(&["netns", "add", &t.ns]).context("creating the network namespace (needs root)")?;
        // From here on, drop cleans up whatever was made.
        ip(&[
            "link", "add", &t.root_if, "type", "veth", "peer", "name", &t.ns_if, "netns", &t.ns,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            &t.root_if,
        ])?;
        ip(&["link", "set", &t.root_if, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut full = vec!["-n", t.ns.as_str()];
            full.extend_from_slice(args);
            ip(&full)
        };
        in_ns(&[
            "addr",
            "add",
            &format!("{SUBSCRIBER_ADDR}/24"),
            "dev",
            &t.ns_if,
        ])?;
        in_ns(&["link", "set", &t.ns_if, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        Ok(t)
    }

    /// Drops UDP datagrams arriving at the subscribers' veth end at the netdev ingress
    /// hook (nftables; after packet taps saw them, before IP): the far end "dropping
    /// them" for the kernel ceiling, and the measurement phase, where the receiver reads
    /// a packet tap instead of N UDP sockets. [`IngressDrop::UnicastUdp`] lets IP
    /// multicast through to the socket joined to the group. (tc would do, but this
    /// kernel has no tc drop action: CONFIG_NET_ACT_GACT is off.)
    /// The MAC address of the subscribers' veth end (inside the namespace).
    pub fn ns_if_mac(&self) -> Result<crate::engine::xdp::frame::Mac> {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-br", "link", "show", "dev", &self.ns_if])
            .output()
            .context("running ip")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(crate::engine::xdp::parse_mac)
            .with_context(|| format!("no MAC address for {} in `{}`", self.ns_if, text.trim()))
    }

    pub fn set_ingress_drop(&mut self, drop: IngressDrop) -> Result<()> {
        if drop == self.drop_filter {
            return Ok(());
        }
        let ns = self.ns.clone();
        let nft = |cmd: &str| {
            run("ip", &["netns", "exec", &ns, "nft", cmd])
                .context("the nftables ingress drop (package nftables, scripts/setup)")
        };
        if self.drop_filter != IngressDrop::Nothing {
            nft("delete table netdev rtmfp_bench")?;
            self.drop_filter = IngressDrop::Nothing;
        }
        let rule = match drop {
            IngressDrop::Nothing => return Ok(()),
            IngressDrop::AllUdp => "add rule netdev rtmfp_bench drop_udp meta l4proto udp drop",
            IngressDrop::UnicastUdp => {
                "add rule netdev rtmfp_bench drop_udp ip daddr != 224.0.0.0/4 meta l4proto udp drop"
            }
        };
        let chain = format!(
            "add chain netdev rtmfp_bench drop_udp {{ type filter hook ingress device {} priority 0 ; }}",
            self.ns_if
        );
        for cmd in ["add table netdev rtmfp_bench", chain.as_str(), rule] {
            nft(cmd)?;
        }
        self.drop_filter = drop;
        Ok(())
    }

    /// Moves the calling thread into the namespace; sockets it creates from then on
    /// live there whichever thread uses them later.
    pub fn enter_on_this_thread(&self) -> Result<()> {
        enter_path(&format!("/var/run/netns/{}", self.ns))
    }
}

/// Moves the calling thread into the network namespace bound at `path`.
pub fn enter_path(path: &str) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    setns_net(f.as_raw_fd()).with_context(|| format!("entering the namespace at {path}"))
}

/// setns(2) into a network namespace, for the calling thread only.
fn setns_net(fd: i32) -> std::io::Result<()> {
    // SAFETY: `fd` is an open namespace file descriptor owned by the caller for the
    // duration of the call; setns changes only this thread's namespace.
    let r = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = ip(&["link", "del", &self.root_if]);
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("bench: cleaning up: {e:#}");
        }
    }
}
