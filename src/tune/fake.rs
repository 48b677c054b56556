//! A fake host for unit tests: /proc and /sys as plain files under a scratch directory,
//! writes that can be refused per path, and an `ethtool` that keeps ring sizes and
//! coalescing in memory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ethtool::Ethtool;
use super::knob::System;
use super::refusal::Refusal;
use super::sysfs::{SysRoot, Tree};

pub struct FakeHost {
    pub dir: PathBuf,
    /// Ethtool settings of eth0: ring `rx`/`tx` and coalescing `adaptive-rx`.
    pub driver: Rc<RefCell<BTreeMap<String, String>>>,
}

type WriteHook = Box<dyn Fn(&str)>;

/// A tree whose writes to some paths fail, and that calls a hook before each write.
struct Guarded {
    inner: SysRoot,
    refused: Vec<(String, Refusal)>,
    before_write: Option<WriteHook>,
}

impl Tree for Guarded {
    fn read(&self, path: &str) -> Result<String, Refusal> {
        self.inner.read(path)
    }
    fn write(&self, path: &str, value: &str) -> Result<(), Refusal> {
        if let Some(hook) = &self.before_write {
            hook(path);
        }
        match self.refused.iter().find(|(p, _)| p == path) {
            Some((_, r)) => Err(r.clone()),
            None => self.inner.write(path, value),
        }
    }
    fn list(&self, dir: &str) -> Vec<String> {
        self.inner.list(dir)
    }
    fn link(&self, path: &str) -> Option<String> {
        self.inner.link(path)
    }
}

struct FakeEthtool(Rc<RefCell<BTreeMap<String, String>>>);

impl Ethtool for FakeEthtool {
    fn run(&self, args: &[&str]) -> Result<String, Refusal> {
        let mut d = self.0.borrow_mut();
        match args {
            ["-g", "eth0"] => Ok(format!(
                "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nRX Mini:\tn/a\n\
                 TX:\t\t4096\nCurrent hardware settings:\nRX:\t\t{}\nRX Mini:\tn/a\nTX:\t\t{}\n",
                d["rx"], d["tx"]
            )),
            ["-c", "eth0"] => Ok(format!(
                "Coalesce parameters for eth0:\nAdaptive RX: {}  TX: n/a\nrx-usecs: 0\n",
                d["adaptive-rx"]
            )),
            ["-G" | "-C", "eth0", setting, value] => {
                d.insert(setting.to_string(), value.to_string());
                Ok(String::new())
            }
            _ => Err(Refusal::Unavailable(format!(
                "not supported by the device (ethtool {})",
                args[0]
            ))),
        }
    }
}

impl FakeHost {
    /// An empty tree.
    pub fn empty() -> FakeHost {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rtmfp-tune-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let driver = [("rx", "256"), ("tx", "256"), ("adaptive-rx", "off")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FakeHost {
            dir,
            driver: Rc::new(RefCell::new(driver)),
        }
    }

    /// A 2-CPU host with eth0 (two queues, two IRQs named after it) and stock values.
    pub fn typical() -> FakeHost {
        let host = FakeHost::empty();
        for (path, value) in [
            ("/proc/sys/net/core/rmem_max", "212992"),
            ("/proc/sys/net/core/wmem_max", "212992"),
            ("/proc/sys/net/core/rmem_default", "212992"),
            ("/proc/sys/net/core/wmem_default", "212992"),
            ("/proc/sys/net/core/netdev_max_backlog", "1000"),
            ("/proc/sys/net/core/optmem_max", "20480"),
            ("/proc/sys/net/core/busy_read", "0"),
            ("/proc/sys/net/core/busy_poll", "0"),
            ("/proc/sys/net/ipv4/udp_mem", "90000\t120000\t180000"),
            ("/proc/sys/vm/nr_hugepages", "0"),
            (
                "/proc/meminfo",
                "MemTotal: 4000000 kB\nHugepagesize:       2048 kB",
            ),
            (
                "/proc/interrupts",
                "           CPU0       CPU1\n  \
                 24:   1   0  IO-APIC   5-edge      ACPI:Ged\n  \
                 40:  10  20  PCI-MSI 524288-edge      eth0-TxRx-0\n  \
                 41:  10  20  PCI-MSI 524289-edge      eth0-TxRx-1\n  \
                 42:   0   0  PCI-MSI 524290-edge      eth01\n\
                 NMI:   0   0   Non-maskable interrupts",
            ),
            ("/proc/irq/40/smp_affinity_list", "0-1"),
            ("/proc/irq/41/smp_affinity_list", "0-1"),
            ("/sys/class/net/eth0/gro_flush_timeout", "0"),
            ("/sys/class/net/eth0/napi_defer_hard_irqs", "0"),
            ("/sys/class/net/eth0/queues/rx-0/rps_cpus", "0"),
            ("/sys/class/net/eth0/queues/rx-1/rps_cpus", "0"),
            ("/sys/class/net/eth0/queues/tx-0/xps_cpus", "0"),
            ("/sys/class/net/eth0/queues/tx-1/xps_cpus", "0"),
            ("/sys/class/net/lo/gro_flush_timeout", "0"),
            (
                "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                "powersave",
            ),
            (
                "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
                "powersave",
            ),
        ] {
            host.set(path, value);
        }
        host
    }

    /// Where the tests keep the state file: beside the tree, not in it.
    pub fn state_path(&self) -> PathBuf {
        let mut name = self.dir.as_os_str().to_owned();
        name.push(".state.json");
        PathBuf::from(name)
    }

    pub fn path(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }

    /// Creates or overwrites a file, as the kernel shows it (with a newline).
    pub fn set(&self, path: &str, value: &str) {
        let file = self.path(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, format!("{value}\n")).unwrap();
    }

    pub fn get(&self, path: &str) -> String {
        fs::read_to_string(self.path(path))
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// Makes /proc/self/ns/net point at `namespace`.
    pub fn set_namespace(&self, namespace: &str) {
        let link = self.path("/proc/self/ns/net");
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(namespace, link).unwrap();
    }

    /// Every file under the tree with its contents: the whole host, to compare.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_symlink() {
                    continue;
                }
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.dir, &mut out);
        out
    }

    pub fn system(&self) -> System {
        self.system_with(Vec::new(), None)
    }

    /// A system whose writes to `refused` paths fail as given, and that calls
    /// `before_write` with each path it is about to write.
    pub fn system_with(
        &self,
        refused: Vec<(&str, Refusal)>,
        before_write: Option<WriteHook>,
    ) -> System {
        System {
            tree: Box::new(Guarded {
                inner: SysRoot::new(&self.dir),
                refused: refused
                    .into_iter()
                    .map(|(p, r)| (p.to_string(), r))
                    .collect(),
                before_write,
            }),
            ethtool: Box::new(FakeEthtool(self.driver.clone())),
        }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.state_path());
    }
}
