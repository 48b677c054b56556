//! NIC ring sizes (`ethtool -g`/`-G`) and interrupt coalescing (`ethtool -c`/`-C`): the
//! knobs that live in the driver, not in a file. The `ethtool` program does the ioctl and
//! netlink work; we read its report and name the setting to change.

use std::collections::BTreeMap;
use std::io;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::refusal::Refusal;

/// Runs `ethtool` with some arguments; its standard output.
pub trait Ethtool {
    fn run(&self, args: &[&str]) -> Result<String, Refusal>;
}

/// The installed `ethtool` program.
#[derive(Clone, Copy, Debug, Default)]
pub struct EthtoolCommand;

impl Ethtool for EthtoolCommand {
    fn run(&self, args: &[&str]) -> Result<String, Refusal> {
        let out = match Command::new("ethtool").args(args).output() {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Refusal::Unavailable("ethtool not installed".into()))
            }
            Err(e) => return Err(Refusal::Failed(format!("running ethtool: {e}"))),
        };
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        if said.contains("Operation not supported") {
            Err(Refusal::Unavailable(format!(
                "not supported by the device (ethtool {}: {said})",
                args[0]
            )))
        } else if said.contains("Operation not permitted") {
            Err(Refusal::NotPermitted)
        } else {
            Err(Refusal::Failed(format!(
                "ethtool {}: {said}",
                args.join(" ")
            )))
        }
    }
}

/// Which report a setting is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Ring sizes: `-g` shows them, `-G` sets them.
    Ring,
    /// Interrupt coalescing: `-c` and `-C`.
    Coalesce,
}

impl Group {
    fn show(self) -> &'static str {
        match self {
            Group::Ring => "-g",
            Group::Coalesce => "-c",
        }
    }

    pub fn set(self) -> &'static str {
        match self {
            Group::Ring => "-G",
            Group::Coalesce => "-C",
        }
    }
}

/// `ethtool -g`: the pre-set maximums and the current sizes, by `-G` setting name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rings {
    pub max: BTreeMap<String, u64>,
    pub current: BTreeMap<String, u64>,
}

/// Parses `ethtool -g` output; sizes the device does not have (`n/a`) are left out.
pub fn parse_rings(report: &str) -> Rings {
    let mut rings = Rings::default();
    let mut section = None;
    for line in report.lines() {
        let line = line.trim();
        if line.starts_with("Pre-set maximums") {
            section = Some(true);
            continue;
        }
        if line.starts_with("Current hardware settings") {
            section = Some(false);
            continue;
        }
        let (Some(is_max), Some((label, value))) = (section, line.split_once(':')) else {
            continue;
        };
        let setting = match label.trim() {
            "RX" => "rx",
            "RX Mini" => "rx-mini",
            "RX Jumbo" => "rx-jumbo",
            "TX" => "tx",
            _ => continue,
        };
        if let Ok(n) = value.trim().parse::<u64>() {
            let map = if is_max {
                &mut rings.max
            } else {
                &mut rings.current
            };
            map.insert(setting.to_string(), n);
        }
    }
    rings
}

/// Parses `ethtool -c` output into `-C` setting names and their values (`on`, `off`,
/// a number, or `n/a` where the device has no such setting).
pub fn parse_coalescing(report: &str) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    for line in report.lines() {
        let line = line.trim();
        // "Adaptive RX: off  TX: n/a" holds two settings.
        if let Some(rest) = line.strip_prefix("Adaptive RX:") {
            let (rx, tx) = match rest.split_once("TX:") {
                Some((rx, tx)) => (rx.trim(), Some(tx.trim())),
                None => (rest.trim(), None),
            };
            settings.insert("adaptive-rx".to_string(), rx.to_string());
            if let Some(tx) = tx {
                settings.insert("adaptive-tx".to_string(), tx.to_string());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                settings.insert(name.to_string(), value.trim().to_string());
            }
        }
    }
    settings
}

/// The current value of one setting.
pub fn read(
    ethtool: &dyn Ethtool,
    iface: &str,
    group: Group,
    setting: &str,
) -> Result<String, Refusal> {
    let report = ethtool.run(&[group.show(), iface])?;
    let value = match group {
        Group::Ring => parse_rings(&report)
            .current
            .get(setting)
            .map(u64::to_string),
        Group::Coalesce => parse_coalescing(&report)
            .remove(setting)
            .filter(|v| v != "n/a"),
    };
    value.ok_or_else(|| Refusal::Unavailable(format!("{iface} has no {setting} setting")))
}

/// Sets one setting.
pub fn write(
    ethtool: &dyn Ethtool,
    iface: &str,
    group: Group,
    setting: &str,
    value: &str,
) -> Result<(), Refusal> {
    ethtool
        .run(&[group.set(), iface, setting, value])
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The layout ethtool 6.1 prints (Debian 12), for a virtio NIC.
    const RINGS: &str = "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\n\
        RX Mini:\tn/a\nRX Jumbo:\tn/a\nTX:\t\t4096\nCurrent hardware settings:\n\
        RX:\t\t256\nRX Mini:\tn/a\nRX Jumbo:\tn/a\nTX:\t\t512\nRX Buf Len:\t\tn/a\n\
        CQE Size:\t\tn/a\nTX Push:\toff\n";
    const COALESCING: &str = "Coalesce parameters for eth0:\nAdaptive RX: off  TX: n/a\n\
        stats-block-usecs: n/a\nsample-interval: n/a\n\nrx-usecs: 0\nrx-frames: 1\n\
        rx-usecs-irq: n/a\n\nCQE mode RX: n/a  TX: n/a\n";

    #[test]
    fn ring_report_gives_maximums_and_current_sizes() {
        let rings = parse_rings(RINGS);
        assert_eq!(rings.max.get("rx"), Some(&4096));
        assert_eq!(rings.max.get("tx"), Some(&4096));
        assert_eq!(rings.current.get("rx"), Some(&256));
        assert_eq!(rings.current.get("tx"), Some(&512));
        assert_eq!(rings.current.get("rx-mini"), None, "n/a is left out");
    }

    #[test]
    fn coalescing_report_splits_the_adaptive_line() {
        let c = parse_coalescing(COALESCING);
        assert_eq!(c["adaptive-rx"], "off");
        assert_eq!(c["adaptive-tx"], "n/a");
        assert_eq!(c["rx-usecs"], "0");
        assert_eq!(c["rx-frames"], "1");
        assert!(!c.contains_key("CQE mode RX"));
    }
}
