//! The binary over real UDP on loopback: `probe` succeeds against `serve`, and the demo
//! moves data both ways.

#[path = "support/server.rs"]
mod server;

use std::net::UdpSocket;
use std::process::Command;

use server::Server;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn probe_succeeds_against_serve_and_reports_what_was_negotiated() {
    let server = Server::start(&["--rtmp", "off"]);
    let out = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .args(["probe", &server.rtmfp_url("live"), "--timeout", "20"])
        .output()
        .unwrap();
    drop(server);
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
fn serve_refuses_an_ip_multicast_interface_that_does_not_exist() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rtmp",
            "off",
            "--group",
            "g",
            "--multicast-form",
            "ip",
            "--multicast-address",
            "239.1.2.3:30000",
            "--multicast-interface",
            "nosuch0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started anyway");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no network interface called \"nosuch0\""),
        "{err}"
    );
    // An IPv6 multicast address cannot go out of an IPv4 socket: said before serving.
    let out = Command::new(env!("CARGO_BIN_EXE_rtmfp-edge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rtmp",
            "off",
            "--group",
            "g",
            "--multicast-form",
            "ip",
            "--multicast-address",
            "[ff15::1]:30000",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started anyway");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the same IP version"), "{err}");
}

#[test]
fn demo_publishes_and_plays_the_whole_bundled_stream() {
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
    let sent = number_before(&text, "publisher: sent ", " video");
    let received = number_before(&text, "player: received ", " video");
    assert!(sent > 100, "{text}");
    assert_eq!(
        sent, received,
        "every video frame reached the player:\n{text}"
    );
    assert!(text.contains("stream ended by the publisher"), "{text}");
}

fn number_before(text: &str, prefix: &str, suffix: &str) -> u64 {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        + prefix.len();
    let rest = &text[start..];
    rest[..rest.find(suffix).unwrap()].parse().unwrap()
}
