//! The binary over real UDP on loopback: `probe` succeeds against `serve`, and the demo
//! moves data both ways.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn probe_succeeds_against_serve_and_reports_what_was_negotiated() {
    let port = free_udp_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .args([
            "probe",
            &format!("rtmfp://127.0.0.1:{port}/live"),
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    server.kill().ok();
    server.wait().ok();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("layout: rfc7425"), "{text}");
    assert!(text.contains("DH group: 16"), "{text}");
    assert!(
        text.contains("HMAC: send 16 bytes, receive 16 bytes"),
        "{text}"
    );
    assert!(text.contains("close: acknowledged"), "{text}");
}

#[test]
fn probe_names_the_failed_step_when_nobody_answers() {
    let port = free_udp_port();
    let out = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .args([
            "probe",
            &format!("rtmfp://127.0.0.1:{port}/live"),
            "--timeout",
            "3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("handshake timed out") && err.contains("IHello"),
        "{err}"
    );
}

#[test]
fn loopback_demo_moves_data_both_ways() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("byte-exact"), "{text}");
}
