//! The knobs that matter for this workload (a UDP packet engine: many small datagrams,
//! io_uring, AF_XDP to come), what we recommend for each and why. docs/tuning.md says
//! the same for people, with sources; scripts/sysctl.d/90-rtmfp-edge.conf carries the
//! sysctl part, and a test keeps the two in step with [`SYSCTLS`].

use super::cpuset::{CpuFormat, CpuSet};
use super::ethtool::{self, Group};
use super::knob::{Knob, Reach, System, Target, Want};
use crate::engine::launch::SOCKET_BUFFER;

/// Which knobs `tune` looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every knob, host-wide ones included.
    All,
    /// Only what belongs to the network namespace we run in: its net.* sysctls and the
    /// interface's settings. A test in a namespace cannot change the host this way.
    Namespace,
}

/// What to tune for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The NIC the server's traffic crosses; without it, global knobs only.
    pub iface: Option<String>,
    /// Shard `i` runs on `cores[i]`, as `serve --shards` pins them.
    pub cores: Vec<usize>,
    pub scope: Scope,
}

/// The core each of `shards` shards is pinned to, as the engine picks them: the i-th
/// CPU we may run on, wrapping around. `shards` 0 means one per CPU.
pub fn shard_cores(shards: usize, available: &[usize]) -> Vec<usize> {
    if available.is_empty() {
        return vec![0; shards.max(1)];
    }
    let shards = if shards == 0 { available.len() } else { shards };
    (0..shards)
        .map(|i| available[i % available.len()])
        .collect()
}

/// A sysctl with a fixed recommendation.
#[derive(Clone, Copy, Debug)]
pub struct Sysctl {
    pub name: &'static str,
    pub value: u64,
    pub reach: Reach,
    pub why: &'static str,
}

const SOCKET_BUFFER_BYTES: u64 = SOCKET_BUFFER as u64;

/// The sysctls whose recommendation depends on nothing but the workload. vm.nr_hugepages
/// depends on the shard count and is not here.
pub const SYSCTLS: &[Sysctl] = &[
    Sysctl {
        name: "net.core.rmem_max",
        value: SOCKET_BUFFER_BYTES,
        reach: Reach::Namespace,
        why: "serve asks SO_RCVBUF 8 MiB per shard socket; the kernel caps the ask here, silently",
    },
    Sysctl {
        name: "net.core.wmem_max",
        value: SOCKET_BUFFER_BYTES,
        reach: Reach::Namespace,
        why: "serve asks SO_SNDBUF 8 MiB per shard socket: a fan-out turn queues thousands of datagrams",
    },
    Sysctl {
        name: "net.core.rmem_default",
        value: 1 << 20,
        reach: Reach::Namespace,
        why: "sockets that ask nothing (clients, multicast receivers) get this; 208 KiB is ~90 full datagrams",
    },
    Sysctl {
        name: "net.core.wmem_default",
        value: 1 << 20,
        reach: Reach::Namespace,
        why: "the same on the send side: room for a batch from sockets that ask nothing",
    },
    Sysctl {
        name: "net.core.netdev_max_backlog",
        value: 16384,
        reach: Reach::Host,
        why: "per-CPU queue before the stack (RPS, veth): a 10 ms stall at 1 M packets/s is 10,000",
    },
    Sysctl {
        name: "net.core.optmem_max",
        value: 131072,
        reach: Reach::Namespace,
        why: "ancillary data and socket filters (the reuseport steering program) are charged here",
    },
    Sysctl {
        name: "net.core.busy_read",
        value: 50,
        reach: Reach::Host,
        why: "blocking reads spin this many us on the NIC queue first (kernel docs: 50 for a few sockets)",
    },
    Sysctl {
        name: "net.core.busy_poll",
        value: 50,
        reach: Reach::Host,
        why: "poll/epoll (the plain-loop engine) spin this many us first (kernel docs: 50 for a few sockets)",
    },
];

/// `net.core.rmem_max` → `/proc/sys/net/core/rmem_max`.
pub fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// AF_XDP UMEM per shard: 4,096 frames of 4 KiB.
pub const UMEM_BYTES_PER_SHARD: u64 = 4096 * 4096;
/// gro_flush_timeout and napi_defer_hard_irqs: the pair given as an example in the
/// commit that added the second (Linux 5.7, "net: napi: add hard irqs deferral feature").
pub const GRO_FLUSH_TIMEOUT_NS: u64 = 20_000;
pub const NAPI_DEFER_HARD_IRQS: u64 = 10;

/// The interface named does not exist here.
#[derive(Debug, thiserror::Error)]
#[error(
    "no interface {iface} in this network namespace (there are: {}); name one `ip link` lists",
    known.join(", ")
)]
pub struct UnknownInterface {
    pub iface: String,
    pub known: Vec<String>,
}

/// Every knob for `options`, in the order the table shows them.
pub fn knobs(sys: &System, options: &Options) -> Result<Vec<Knob>, UnknownInterface> {
    let shards = options.cores.len().max(1) as u64;
    let mut knobs: Vec<Knob> = SYSCTLS
        .iter()
        .map(|s| Knob {
            name: s.name.to_string(),
            target: Target::file(sysctl_path(s.name)),
            want: Want::AtLeast(s.value),
            why: s.why.to_string(),
            reach: s.reach,
        })
        .collect();
    knobs.push(Knob {
        name: "net.ipv4.udp_mem".into(),
        target: Target::file(sysctl_path("net.ipv4.udp_mem")),
        want: Want::Nothing,
        why: format!(
            "pages all UDP sockets may hold (min pressure max); the max should pass {} for {shards} shard(s)",
            shards * 4 * SOCKET_BUFFER_BYTES / 4096
        ),
        reach: Reach::Host,
    });
    knobs.push(hugepages(sys, shards));
    if let Some(iface) = &options.iface {
        let known = sys.tree.list("/sys/class/net");
        if !known.contains(iface) {
            return Err(UnknownInterface {
                iface: iface.clone(),
                known,
            });
        }
        knobs.extend(interface(sys, iface, &options.cores));
        knobs.extend(irqs(sys, iface, &options.cores));
    }
    knobs.extend(governors(sys, &options.cores));
    if options.scope == Scope::Namespace {
        knobs.retain(|k| k.reach == Reach::Namespace);
    }
    Ok(knobs)
}

fn hugepages(sys: &System, shards: u64) -> Knob {
    let page_kib = sys
        .tree
        .read("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Hugepagesize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .filter(|&k| k > 0)
        .unwrap_or(2048);
    let per_shard = UMEM_BYTES_PER_SHARD.div_ceil(page_kib * 1024);
    Knob {
        name: "vm.nr_hugepages".into(),
        target: Target::file(sysctl_path("vm.nr_hugepages")),
        want: Want::AtLeast(per_shard * shards),
        why: format!(
            "AF_XDP UMEM (--io xdp): {} MiB per shard on {page_kib} KiB pages spares TLB misses",
            UMEM_BYTES_PER_SHARD >> 20
        ),
        reach: Reach::Host,
    }
}

/// The interface's NAPI, RPS/XPS and driver knobs.
fn interface(sys: &System, iface: &str, cores: &[usize]) -> Vec<Knob> {
    let dir = format!("/sys/class/net/{iface}");
    let mut knobs = vec![
        Knob {
            name: format!("{iface} gro_flush_timeout"),
            target: Target::file(format!("{dir}/gro_flush_timeout")),
            want: Want::AtLeast(GRO_FLUSH_TIMEOUT_NS),
            why: "ns before NAPI polls again: with napi_defer_hard_irqs, interrupts coalesce in software".into(),
            reach: Reach::Namespace,
        },
        Knob {
            name: format!("{iface} napi_defer_hard_irqs"),
            target: Target::file(format!("{dir}/napi_defer_hard_irqs")),
            want: Want::AtLeast(NAPI_DEFER_HARD_IRQS),
            why: "empty polls before the NIC may interrupt again: no interrupt per packet under load".into(),
            reach: Reach::Namespace,
        },
    ];
    let queues = sys.tree.list(&format!("{dir}/queues"));
    let rx: Vec<&String> = queues.iter().filter(|q| q.starts_with("rx-")).collect();
    let tx: Vec<&String> = queues.iter().filter(|q| q.starts_with("tx-")).collect();
    let all: CpuSet = cores.iter().copied().collect();
    // Documentation/networking/scaling.rst: with a hardware queue per CPU RPS is
    // redundant; with fewer, spread the work over CPUs that share the interrupting one's
    // memory domain — here, the shards' cores.
    let (rps, rps_why) = if rx.len() >= all.len() {
        (
            CpuSet::new(),
            "a hardware queue per shard core already: RPS would only add a hop",
        )
    } else {
        (
            all.clone(),
            "fewer RX queues than shards: spread protocol work over the shards' cores",
        )
    };
    for q in &rx {
        knobs.push(Knob {
            name: format!("{iface} {q} rps_cpus"),
            target: Target::file(format!("{dir}/queues/{q}/rps_cpus")),
            want: Want::Cpus(rps.clone(), CpuFormat::Mask),
            why: rps_why.into(),
            reach: Reach::Namespace,
        });
    }
    for (q, name) in tx.iter().enumerate() {
        knobs.push(Knob {
            name: format!("{iface} {name} xps_cpus"),
            target: Target::file(format!("{dir}/queues/{name}/xps_cpus")),
            want: Want::Cpus(xps(q, tx.len(), cores), CpuFormat::Mask),
            why: "each shard core sends on its own TX queue: no queue lock shared between shards"
                .into(),
            reach: Reach::Namespace,
        });
    }
    knobs.extend(rings(sys, iface));
    knobs.extend(coalescing(sys, iface));
    knobs
}

/// The cores that send on TX queue `q` of `queues`: shard `i` on queue `i mod queues`, and
/// queues beyond the shards each given one shard's core, so none is left without.
fn xps(q: usize, queues: usize, cores: &[usize]) -> CpuSet {
    if cores.is_empty() {
        return CpuSet::new();
    }
    if queues > cores.len() {
        return [cores[q % cores.len()]].into_iter().collect();
    }
    cores
        .iter()
        .enumerate()
        .filter(|(i, _)| i % queues == q)
        .map(|(_, &c)| c)
        .collect()
}

fn unavailable(name: String, reason: String, why: &str) -> Knob {
    Knob {
        name,
        target: Target::Unavailable { reason },
        want: Want::Nothing,
        why: why.into(),
        reach: Reach::Namespace,
    }
}

const RING_WHY: &str = "a longer ring rides out bursts of small datagrams between polls";

fn rings(sys: &System, iface: &str) -> Vec<Knob> {
    let report = match sys.ethtool.run(&["-g", iface]) {
        Ok(report) => report,
        Err(e) => {
            return vec![unavailable(
                format!("{iface} rings"),
                e.to_string(),
                RING_WHY,
            )]
        }
    };
    let rings = ethtool::parse_rings(&report);
    ["rx", "tx"]
        .into_iter()
        .filter_map(|setting| {
            let max = *rings.max.get(setting).filter(|&&m| m > 0)?;
            Some(Knob {
                name: format!("{iface} ring {setting}"),
                target: Target::Ethtool {
                    iface: iface.into(),
                    group: Group::Ring,
                    setting: setting.into(),
                },
                want: Want::AtLeast(max),
                why: if setting == "rx" {
                    RING_WHY.into()
                } else {
                    "a longer TX ring takes a whole fan-out batch without stopping the queue".into()
                },
                reach: Reach::Namespace,
            })
        })
        .collect()
}

const COALESCE_WHY: &str =
    "the driver coalesces interrupts harder as the packet rate climbs, and less when idle";

fn coalescing(sys: &System, iface: &str) -> Vec<Knob> {
    let report = match sys.ethtool.run(&["-c", iface]) {
        Ok(report) => report,
        Err(e) => {
            return vec![unavailable(
                format!("{iface} coalescing"),
                e.to_string(),
                COALESCE_WHY,
            )]
        }
    };
    let settings = ethtool::parse_coalescing(&report);
    ["adaptive-rx", "adaptive-tx"]
        .into_iter()
        .map(|setting| {
            let name = format!("{iface} coalesce {setting}");
            match settings.get(setting).map(String::as_str) {
                None | Some("n/a") => {
                    unavailable(name, format!("not supported by {iface}"), COALESCE_WHY)
                }
                Some(_) => Knob {
                    name,
                    target: Target::Ethtool {
                        iface: iface.into(),
                        group: Group::Coalesce,
                        setting: setting.into(),
                    },
                    want: Want::Exactly("on".into()),
                    why: COALESCE_WHY.into(),
                    reach: Reach::Namespace,
                },
            }
        })
        .collect()
}

/// IRQs named after the interface in /proc/interrupts (`eth0`, `eth0-TxRx-3`), each
/// pinned to the shard core of its queue: the queue number ending its name, else its
/// place in the list.
fn irqs(sys: &System, iface: &str, cores: &[usize]) -> Vec<Knob> {
    const WHY: &str =
        "the queue's interrupt on the shard core that reads it: packets stay in its cache";
    let table = sys.tree.read("/proc/interrupts").unwrap_or_default();
    let named: Vec<(String, String)> = table
        .lines()
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            if irq.is_empty() || !irq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let name = rest
                .split_whitespace()
                .find(|word| names_interface(word, iface))?;
            Some((irq.to_string(), name.to_string()))
        })
        .collect();
    if named.is_empty() || cores.is_empty() {
        return vec![Knob {
            reach: Reach::Host,
            ..unavailable(
                format!("{iface} IRQ affinity"),
                format!("no IRQ named after {iface} in /proc/interrupts"),
                WHY,
            )
        }];
    }
    named
        .iter()
        .enumerate()
        .map(|(place, (irq, name))| {
            let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            let queue = name[name.len() - digits..].parse().unwrap_or(place);
            Knob {
                name: format!("irq {irq} ({name}) affinity"),
                target: Target::file(format!("/proc/irq/{irq}/smp_affinity_list")),
                want: Want::Cpus(
                    [cores[queue % cores.len()]].into_iter().collect(),
                    CpuFormat::List,
                ),
                why: WHY.into(),
                reach: Reach::Host,
            }
        })
        .collect()
}

/// `eth0` and `eth0-TxRx-0` name eth0; `eth01` does not.
fn names_interface(word: &str, iface: &str) -> bool {
    match word.strip_prefix(iface) {
        Some("") => true,
        Some(rest) => rest.starts_with(['-', '_', ':', '@', '.']),
        None => false,
    }
}

fn governors(sys: &System, cores: &[usize]) -> Vec<Knob> {
    const WHY: &str = "shard cores at full clock: a scaling governor lags a burst by milliseconds";
    let mut seen = CpuSet::new();
    let mut knobs = Vec::new();
    for &core in cores {
        if seen.iter().any(|c| c == core) {
            continue;
        }
        seen.insert(core);
        let path = format!("/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor");
        if sys.tree.read(&path).is_err() {
            continue;
        }
        knobs.push(Knob {
            name: format!("cpu{core} scaling_governor"),
            target: Target::file(path),
            want: Want::Exactly("performance".into()),
            why: WHY.into(),
            reach: Reach::Host,
        });
    }
    if knobs.is_empty() {
        knobs.push(Knob {
            reach: Reach::Host,
            ..unavailable(
                "cpu scaling_governor".into(),
                "no cpufreq here (a VM, or no frequency scaling driver)".into(),
                WHY,
            )
        });
    }
    knobs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tune::fake::FakeHost;

    const SNIPPET: &str = include_str!("../../scripts/sysctl.d/90-rtmfp-edge.conf");

    fn options(cores: &[usize], scope: Scope) -> Options {
        Options {
            iface: Some("eth0".into()),
            cores: cores.to_vec(),
            scope,
        }
    }

    fn want<'a>(knobs: &'a [Knob], name: &str) -> &'a Want {
        &knobs
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no knob {name}"))
            .want
    }

    fn cpus(list: &str) -> CpuSet {
        CpuSet::parse_list(list).unwrap()
    }

    #[test]
    fn sysctl_snippet_matches_the_catalogue() {
        let lines = |commented: bool| -> BTreeMap<String, u64> {
            SNIPPET
                .lines()
                .map(str::trim)
                .filter_map(|l| match l.strip_prefix('#') {
                    Some(rest) if commented => Some(rest.trim()),
                    None if !commented && !l.is_empty() => Some(l),
                    _ => None,
                })
                .filter_map(|l| {
                    let (name, value) = l.split_once('=')?;
                    Some((name.trim().to_string(), value.trim().parse().ok()?))
                })
                .collect()
        };
        let catalogue: BTreeMap<String, u64> = SYSCTLS
            .iter()
            .map(|s| (s.name.to_string(), s.value))
            .collect();
        assert_eq!(lines(false), catalogue, "scripts/sysctl.d vs SYSCTLS");

        // The commented hugepages example is what tune computes for 4 shards on 2 MiB pages.
        let host = FakeHost::typical();
        let knobs = knobs(&host.system(), &options(&[0, 1, 2, 3], Scope::All)).unwrap();
        let example = lines(true)["vm.nr_hugepages"];
        assert_eq!(want(&knobs, "vm.nr_hugepages"), &Want::AtLeast(example));
    }

    #[test]
    fn sysctl_names_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.core.rmem_max"),
            "/proc/sys/net/core/rmem_max"
        );
        assert_eq!(
            SYSCTLS[0].value, SOCKET_BUFFER as u64,
            "what serve asks for"
        );
    }

    #[test]
    fn irqs_named_after_the_interface_go_to_their_queues_shard_core() {
        let host = FakeHost::typical();
        let knobs = knobs(&host.system(), &options(&[2, 3], Scope::All)).unwrap();
        assert_eq!(
            want(&knobs, "irq 40 (eth0-TxRx-0) affinity"),
            &Want::Cpus(cpus("2"), CpuFormat::List)
        );
        assert_eq!(
            want(&knobs, "irq 41 (eth0-TxRx-1) affinity"),
            &Want::Cpus(cpus("3"), CpuFormat::List)
        );
        assert!(
            !knobs.iter().any(|k| k.name.contains("eth01")),
            "eth01 is another interface"
        );
    }

    #[test]
    fn rps_stays_off_when_each_shard_core_has_a_queue() {
        let host = FakeHost::typical();
        let two = knobs(&host.system(), &options(&[0, 1], Scope::All)).unwrap();
        assert_eq!(
            want(&two, "eth0 rx-1 rps_cpus"),
            &Want::Cpus(CpuSet::new(), CpuFormat::Mask)
        );
        let four = knobs(&host.system(), &options(&[0, 1, 2, 3], Scope::All)).unwrap();
        assert_eq!(
            want(&four, "eth0 rx-1 rps_cpus"),
            &Want::Cpus(cpus("0-3"), CpuFormat::Mask)
        );
    }

    #[test]
    fn each_shard_core_sends_on_one_tx_queue() {
        assert_eq!(xps(0, 2, &[0, 1, 2, 3]), cpus("0,2"));
        assert_eq!(xps(1, 2, &[0, 1, 2, 3]), cpus("1,3"));
        assert_eq!(xps(2, 4, &[0, 1]), cpus("0"));
        assert_eq!(xps(3, 4, &[0, 1]), cpus("1"));
    }

    #[test]
    fn shards_take_cores_in_order_and_wrap() {
        assert_eq!(shard_cores(0, &[2, 3]), [2, 3]);
        assert_eq!(shard_cores(3, &[2, 3]), [2, 3, 2]);
        assert_eq!(shard_cores(1, &[]), [0]);
    }

    #[test]
    fn netns_scope_leaves_host_wide_knobs_out() {
        let host = FakeHost::typical();
        let knobs = knobs(&host.system(), &options(&[0, 1], Scope::Namespace)).unwrap();
        let names: Vec<&str> = knobs.iter().map(|k| k.name.as_str()).collect();
        for host_wide in [
            "net.core.netdev_max_backlog",
            "net.core.busy_read",
            "net.core.busy_poll",
            "net.ipv4.udp_mem",
            "vm.nr_hugepages",
            "cpu0 scaling_governor",
            "irq 40 (eth0-TxRx-0) affinity",
        ] {
            assert!(!names.contains(&host_wide), "{host_wide} in {names:?}");
        }
        for namespaced in [
            "net.core.rmem_max",
            "net.core.optmem_max",
            "eth0 gro_flush_timeout",
            "eth0 rx-0 rps_cpus",
            "eth0 tx-1 xps_cpus",
            "eth0 ring rx",
        ] {
            assert!(names.contains(&namespaced), "{namespaced} in {names:?}");
        }
    }

    #[test]
    fn an_unknown_interface_is_an_error_naming_the_known_ones() {
        let host = FakeHost::typical();
        let mut options = options(&[0], Scope::All);
        options.iface = Some("eth9".into());
        let e = knobs(&host.system(), &options).unwrap_err();
        assert_eq!(e.known, ["eth0", "lo"]);
    }

    #[test]
    fn without_an_interface_only_global_knobs() {
        let host = FakeHost::typical();
        let mut options = options(&[0], Scope::All);
        options.iface = None;
        let knobs = knobs(&host.system(), &options).unwrap();
        assert!(knobs.iter().all(|k| !k.name.contains("eth0")));
        assert!(knobs.iter().any(|k| k.name == "cpu0 scaling_governor"));
    }
}
