//! A knob: where a kernel or NIC setting lives, the value this workload wants, and what
//! to do given the value it has. Raising is the only way a number moves: a value above
//! ours was set by someone for a reason, and stays.

use serde::{Deserialize, Serialize};

use super::cpuset::{CpuFormat, CpuSet};
use super::ethtool::{self, Ethtool, Group};
use super::refusal::Refusal;
use super::sysfs::Tree;

/// One setting, with what we recommend and why.
#[derive(Clone, Debug)]
pub struct Knob {
    /// `net.core.rmem_max`, `eth0 rx-0 rps_cpus`, `eth0 ring rx`.
    pub name: String,
    pub target: Target,
    pub want: Want,
    /// One line: why this value for a UDP packet engine.
    pub why: String,
    pub reach: Reach,
}

/// Where a knob's value is read and written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A /proc or /sys file, by absolute path.
    File { path: String },
    /// A driver setting through `ethtool`.
    Ethtool {
        iface: String,
        group: Group,
        setting: String,
    },
    /// Nothing to read or write here, and why (no ethtool, a feature the NIC lacks).
    #[serde(skip)]
    Unavailable { reason: String },
}

impl Target {
    pub fn file(path: impl Into<String>) -> Target {
        Target::File { path: path.into() }
    }
}

/// Which network namespace sees a knob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The whole host, whatever namespace `tune` runs in (vm.*, /proc/irq, cpufreq, and
    /// the net.core sysctls only the initial namespace has).
    Host,
    /// The network namespace `tune` runs in: namespaced net.* sysctls, and the
    /// interface's own sysfs files and driver settings.
    Namespace,
}

/// The value a knob should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// A number, raised to this and never lowered.
    AtLeast(u64),
    /// This exact word (a governor, `on`).
    Exactly(String),
    /// This set of CPUs, written in the file's spelling.
    Cpus(CpuSet, CpuFormat),
    /// Shown for its value, never changed.
    Nothing,
}

/// What a knob's current value calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Already what we want.
    Fine,
    /// Above what we want: kept.
    Above,
    /// Write this.
    Change(String),
    /// Nothing is recommended.
    Info,
    /// The current value is not what the knob should hold (not a number...).
    Unparsed(String),
}

impl Want {
    /// The recommended value as the table shows it.
    pub fn shown(&self) -> String {
        match self {
            Want::AtLeast(n) => n.to_string(),
            Want::Exactly(word) => word.clone(),
            Want::Cpus(set, CpuFormat::Mask) => format!("{} (cpus {set})", set.mask()),
            Want::Cpus(set, CpuFormat::List) => set.list(),
            Want::Nothing => "-".into(),
        }
    }

    pub fn decide(&self, current: &str) -> Decision {
        match self {
            Want::AtLeast(want) => match current.trim().parse::<u64>() {
                Ok(n) if n == *want => Decision::Fine,
                Ok(n) if n > *want => Decision::Above,
                Ok(_) => Decision::Change(want.to_string()),
                Err(_) => Decision::Unparsed(format!("not a number: {current:?}")),
            },
            Want::Exactly(want) if current.trim() == want => Decision::Fine,
            Want::Exactly(want) => Decision::Change(want.clone()),
            Want::Cpus(want, format) => match CpuSet::parse(current, *format) {
                Some(set) if set == *want => Decision::Fine,
                Some(_) => Decision::Change(want.format(*format)),
                None => Decision::Unparsed(format!("not a CPU set: {current:?}")),
            },
            Want::Nothing => Decision::Info,
        }
    }
}

/// Where knobs are read and written: the /proc and /sys tree, and ethtool.
pub struct System {
    pub tree: Box<dyn Tree>,
    pub ethtool: Box<dyn Ethtool>,
}

impl System {
    /// This host's /proc, /sys and `ethtool`.
    pub fn host() -> System {
        System {
            tree: Box::new(super::sysfs::SysRoot::host()),
            ethtool: Box::new(ethtool::EthtoolCommand),
        }
    }

    pub fn read(&self, target: &Target) -> Result<String, Refusal> {
        match target {
            Target::File { path } => self.tree.read(path),
            Target::Ethtool {
                iface,
                group,
                setting,
            } => ethtool::read(&*self.ethtool, iface, *group, setting),
            Target::Unavailable { reason } => Err(Refusal::Unavailable(reason.clone())),
        }
    }

    pub fn write(&self, target: &Target, value: &str) -> Result<(), Refusal> {
        match target {
            Target::File { path } => self.tree.write(path, value),
            Target::Ethtool {
                iface,
                group,
                setting,
            } => ethtool::write(&*self.ethtool, iface, *group, setting, value),
            Target::Unavailable { reason } => Err(Refusal::Unavailable(reason.clone())),
        }
    }

    /// The network namespace we run in (`net:[4026531840]`), to tell a revert run in
    /// another namespace from the apply it undoes.
    pub fn namespace(&self) -> Option<String> {
        self.tree.link("/proc/self/ns/net")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_raised_never_lowered() {
        let want = Want::AtLeast(8_388_608);
        assert_eq!(want.decide("212992"), Decision::Change("8388608".into()));
        assert_eq!(want.decide("8388608"), Decision::Fine);
        assert_eq!(want.decide("67108864"), Decision::Above);
        assert!(matches!(want.decide("lots"), Decision::Unparsed(_)));
    }

    #[test]
    fn cpu_sets_compare_by_cpus_not_by_spelling() {
        let want = Want::Cpus([0, 1].into_iter().collect(), CpuFormat::Mask);
        assert_eq!(want.decide("00000000,00000003"), Decision::Fine);
        assert_eq!(want.decide("0"), Decision::Change("3".into()));
        let want = Want::Cpus([2].into_iter().collect(), CpuFormat::List);
        assert_eq!(want.decide("0-3"), Decision::Change("2".into()));
    }

    #[test]
    fn words_are_set_exactly() {
        let want = Want::Exactly("performance".into());
        assert_eq!(want.decide("performance"), Decision::Fine);
        assert_eq!(
            want.decide("powersave"),
            Decision::Change("performance".into())
        );
    }
}
