//! `tune apply` then `tune revert` in a network namespace the test creates and deletes,
//! with a veth pair in it: the namespace's writable knobs change, and after the revert
//! every knob the apply touched reads exactly as before. `--scope netns` keeps host-wide
//! knobs out, and the host's own values are checked unchanged around both runs. Needs
//! root and network namespaces (CI runs as root).

#[path = "support/netns.rs"]
mod netns;

use std::path::PathBuf;

use netns::{End, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp-edge");

/// net.core sysctls a child namespace has on this kernel (those it lacks are reported
/// missing by tune and skipped here).
const SYSCTLS: &[&str] = &[
    "/proc/sys/net/core/rmem_max",
    "/proc/sys/net/core/wmem_max",
    "/proc/sys/net/core/rmem_default",
    "/proc/sys/net/core/wmem_default",
    "/proc/sys/net/core/optmem_max",
];

/// Host-wide values that a namespaced run must never move.
const HOST: &[&str] = &[
    "/proc/sys/net/core/rmem_max",
    "/proc/sys/net/core/wmem_max",
    "/proc/sys/net/core/rmem_default",
    "/proc/sys/net/core/wmem_default",
    "/proc/sys/net/core/optmem_max",
    "/proc/sys/net/core/netdev_max_backlog",
    "/proc/sys/net/core/busy_read",
    "/proc/sys/net/core/busy_poll",
    "/proc/sys/vm/nr_hugepages",
];

/// The test's namespace with a veth pair in it, and where tune keeps its state; the
/// namespace (with the pair) and the state file are deleted on drop.
struct TuneNs {
    ns: Netns,
    veth: String,
    state: PathBuf,
}

impl TuneNs {
    fn new() -> TuneNs {
        let pid = std::process::id();
        let ns = Netns::new("tune");
        let veth = format!("tune{pid}a");
        let peer = format!("tune{pid}b");
        netns::veth(End::new(&ns, &veth), End::new(&ns, &peer));
        TuneNs {
            ns,
            veth,
            state: std::env::temp_dir().join(format!("rtmfp-tune-{pid}.json")),
        }
    }

    fn tune(&self, action: &str) -> String {
        let state = self.state.to_str().unwrap();
        let mut args = vec!["tune", action, "--state", state];
        if action != "revert" {
            args.extend(["--iface", &self.veth, "--shards", "2", "--scope", "netns"]);
        }
        let out = self.ns.exec(BIN, &args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tune {action} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The files of the veth's knobs, as the namespace sees them.
    fn veth_files(&self) -> Vec<String> {
        let dir = format!("/sys/class/net/{}", self.veth);
        [
            "gro_flush_timeout",
            "napi_defer_hard_irqs",
            "queues/rx-0/rps_cpus",
            "queues/tx-0/xps_cpus",
        ]
        .iter()
        .map(|f| format!("{dir}/{f}"))
        .collect()
    }

    /// Each file's contents in the namespace, or None where it is not there.
    fn read(&self, files: &[String]) -> Vec<(String, Option<String>)> {
        files
            .iter()
            .map(|f| {
                let out = self.ns.exec("cat", &[f]);
                let value = out
                    .status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string());
                (f.clone(), value)
            })
            .collect()
    }

    fn value(&self, file: &str) -> String {
        self.read(&[file.to_string()])[0]
            .1
            .clone()
            .unwrap_or_else(|| panic!("{file} missing in the namespace"))
    }

    fn set(&self, file: &str, value: &str) {
        let out = self
            .ns
            .exec("sh", &["-c", &format!("echo {value} > {file}")]);
        assert!(out.status.success(), "setting {file}");
    }
}

impl Drop for TuneNs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state);
    }
}

fn host_values() -> Vec<(&'static str, Option<String>)> {
    HOST.iter()
        .map(|f| (*f, std::fs::read_to_string(f).ok()))
        .collect()
}

#[test]
fn apply_then_revert_in_a_namespace_leaves_every_knob_as_it_was() {
    let host_before = host_values();
    let ns = TuneNs::new();
    let mut files: Vec<String> = SYSCTLS.iter().map(|s| s.to_string()).collect();
    files.extend(ns.veth_files());
    // optmem_max is writable in a child namespace: start it below our value, so apply
    // has a sysctl to raise and revert one to lower back.
    ns.set("/proc/sys/net/core/optmem_max", "20480");
    let before = ns.read(&files);

    let shown = ns.tune("show");
    assert!(
        shown.contains(&format!("{} gro_flush_timeout", ns.veth)),
        "{shown}"
    );
    assert!(!shown.contains("netdev_max_backlog"), "host-wide: {shown}");
    assert!(!ns.state.exists(), "show writes no state");
    assert_eq!(ns.read(&files), before, "show changes nothing");

    let applied = ns.tune("apply");
    assert!(ns.state.exists(), "apply saved the old values:\n{applied}");
    assert_eq!(
        ns.value("/proc/sys/net/core/optmem_max"),
        "131072",
        "{applied}"
    );
    let dir = format!("/sys/class/net/{}", ns.veth);
    assert_eq!(ns.value(&format!("{dir}/gro_flush_timeout")), "20000");
    assert_eq!(ns.value(&format!("{dir}/napi_defer_hard_irqs")), "10");
    let xps = ns.value(&format!("{dir}/queues/tx-0/xps_cpus"));
    assert!(
        xps.chars().any(|c| c != '0' && c != ','),
        "the shards' cores send on tx-0: {xps}\n{applied}"
    );
    let state = std::fs::read_to_string(&ns.state).unwrap();
    for knob in [
        "optmem_max",
        "gro_flush_timeout",
        "napi_defer_hard_irqs",
        "xps_cpus",
    ] {
        assert!(state.contains(knob), "{knob} saved: {state}");
    }
    assert_eq!(host_values(), host_before, "the host's values after apply");

    let reverted = ns.tune("revert");
    assert_eq!(
        ns.read(&files),
        before,
        "every knob back as it was:\n{applied}\n{reverted}"
    );
    assert!(!ns.state.exists(), "state removed:\n{reverted}");
    assert_eq!(host_values(), host_before, "the host's values after revert");
}
