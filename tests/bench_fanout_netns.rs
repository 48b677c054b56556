//! `bench fanout --mode ipmulticast`, one small point end to end: the bench makes its
//! namespace and veth pair, starts `serve` with IP multicast, joins five group members,
//! publishes, counts the group's datagrams on a socket joined in the namespace, and
//! prints a summary line with the mode and the multicast ceiling. A few seconds; needs
//! root (CI runs as root), like the bench.

use std::process::Command;

use rtmfp_edge::bench::mode::Mode;
use rtmfp_edge::bench::report::Point;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp-edge");

#[test]
fn an_ipmulticast_point_admits_the_members_and_counts_the_group_datagrams() {
    let out = std::env::temp_dir().join(format!("rtmfp-edge-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(BIN)
        .args([
            "bench",
            "fanout",
            "--mode",
            "ipmulticast",
            "--subscribers",
            "5",
        ])
        .args([
            "--seconds",
            "1",
            "--ceiling-seconds",
            "0.2",
            "--bitrate",
            "1",
        ])
        .args(["--join-workers", "2", "--out"])
        .arg(&out)
        .output()
        .expect("running the bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the bench failed (needs root, iproute2, nftables):\n{stderr}"
    );
    let line = stdout.lines().last().unwrap_or_default();
    let point = Point::parse_summary(line).unwrap_or_else(|| panic!("summary line: {line}"));
    assert_eq!((point.mode, point.subscribers), (Mode::IpMulticast, 5));
    assert!(
        point.ceiling_method.contains("multicast"),
        "the ceiling was measured to the group: {line}"
    );
    assert!(
        point.datagrams > 0 && point.delivered > 0.0,
        "the group's datagrams reached the namespace: {line}"
    );
    assert!(
        stderr.contains("the server admitted 5 group members"),
        "every member was admitted and got the key:\n{stderr}"
    );
    let csv = std::fs::read_to_string(out.join("fanout.csv")).expect("fanout.csv");
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.ends_with(",mode,cpu_per_1k,io")),
        "{csv}"
    );
    assert!(csv.contains(",ipmulticast,"), "{csv}");
    // No --io given: serve chose.
    assert_eq!(point.io, "auto", "{line}");
    let _ = std::fs::remove_dir_all(&out);
}
