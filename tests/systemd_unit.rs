//! The systemd unit we ship (scripts/systemd): it says what serve needs (SIGHUP reloads,
//! SIGTERM drains within the stop timeout, no capabilities unless the XDP guard drop-in
//! adds its three), and `systemd-analyze verify` accepts it with and without the drop-in
//! where the tool exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtmfp_edge::engine::shard::DRAIN_TIMEOUT;

const INSTALLED_BINARY: &str = "/usr/local/bin/rtmfp-edge";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/systemd")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(script(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The values of `key=` in `unit`, in order (comments and other keys skipped).
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn value<'a>(unit: &'a str, key: &str) -> &'a str {
    match values(unit, key)[..] {
        [one] => one,
        ref other => panic!("{key}= appears {} times", other.len()),
    }
}

#[test]
fn the_unit_reloads_with_sighup_and_outlasts_the_drain_on_stop() {
    let unit = read("rtmfp-edge.service");
    assert_eq!(
        value(&unit, "ExecStart"),
        format!("{INSTALLED_BINARY} serve --config /etc/rtmfp-edge/config.toml")
    );
    assert_eq!(value(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value(&unit, "KillSignal"), "SIGTERM");
    let stop: u64 = value(&unit, "TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    let drain = DRAIN_TIMEOUT.as_secs();
    assert!(
        (drain + 1..=drain + 5).contains(&stop),
        "TimeoutStopSec={stop}s must let the {drain} s drain finish (and the shards \
         notice it), without making a stuck stop wait long"
    );
    assert_eq!(value(&unit, "CapabilityBoundingSet"), "", "no capabilities");
    assert_eq!(value(&unit, "NoNewPrivileges"), "yes");
    assert_eq!(value(&unit, "ProtectSystem"), "strict");
    assert_eq!(
        value(&unit, "RestrictAddressFamilies"),
        "AF_INET AF_INET6 AF_UNIX AF_NETLINK"
    );
    let files: u64 = value(&unit, "LimitNOFILE").parse().unwrap();
    assert!(files >= 65536, "room for many RTMP connections");
}

#[test]
fn the_xdp_guard_drop_in_grants_exactly_what_loading_the_guard_needs() {
    let drop_in = read("rtmfp-edge-xdp-guard.conf");
    assert_eq!(values(&drop_in, "ExecStart")[0], "", "resets the unit's");
    assert!(values(&drop_in, "ExecStart")[1].contains(" --xdp-guard "));
    // src/engine/xdp_guard.rs's permission error names the same three.
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        assert_eq!(value(&drop_in, key), "CAP_BPF CAP_NET_ADMIN CAP_PERFMON");
    }
}

/// `systemd-analyze verify` on a copy that runs the binary under test, the drop-in
/// beside it where systemd looks for drop-ins. Reports `skipped` where the tool is
/// absent (it comes with systemd).
#[test]
fn systemd_analyze_verifies_the_unit_and_its_drop_in() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed (it comes with systemd)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rtmfp-edge-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let here = |text: String| text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_rtmfp-edge"));
    let unit = dir.join("rtmfp-edge.service");
    std::fs::write(&unit, here(read("rtmfp-edge.service"))).unwrap();
    let verify = |what: &str| {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Warnings (an unknown key, a bad value) leave the status 0: any word about our
        // unit is a failure.
        let ours = said.lines().any(|l| l.contains("rtmfp-edge"));
        match out.status.success() && !ours {
            true => Ok(()),
            false => Err(format!("systemd-analyze verify ({what}): {said}")),
        }
    };
    let alone = verify("the unit");
    let drop_ins = dir.join("rtmfp-edge.service.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    std::fs::write(
        drop_ins.join("xdp-guard.conf"),
        here(read("rtmfp-edge-xdp-guard.conf")),
    )
    .unwrap();
    let with_drop_in = verify("with the XDP guard drop-in");
    std::fs::remove_dir_all(&dir).ok();
    alone.and(with_drop_in).unwrap_or_else(|e| panic!("{e}"));
}
