//! `bench group --mode sim` through the library: a small group runs on the virtual
//! clock, and the bench measures what a user reads from it.

use rtmfp_edge::bench::group::{self, GroupOptions, Mode};

#[test]
fn a_small_simulated_group_plays_the_stream_and_is_measured() {
    let opts = GroupOptions {
        members: 20,
        seconds: 6.0,
        mode: Mode::Sim,
        seed: 7,
        ..GroupOptions::default()
    };
    let run = group::run(&opts).expect("the bench runs");
    let s = run.summary();
    assert_eq!(s.members, 20);
    assert!(s.frames > 100, "the publisher sent {} frames", s.frames);
    assert!(s.delivered >= 0.99, "delivered {}", s.delivered);
    assert!(
        s.server_upload_ratio.is_finite() && s.server_upload_ratio > 0.0,
        "server_upload_ratio {}",
        s.server_upload_ratio
    );
    let line = s.line();
    assert!(
        line.starts_with("members=20 delivered="),
        "summary line: {line}"
    );
    for key in [
        " missing=",
        " server_upload_ratio=",
        " member_upload_ratio_max=",
        " p99_ms=",
    ] {
        assert!(line.contains(key), "{key} in {line}");
    }
}
