//! The XDP guard (bpf/xdp_guard.bpf.c) on a veth between two network namespaces the test
//! creates and deletes: on the RTMFP port it drops what cannot be RTMFP and handshakes
//! over a source's rate, counting each by reason, and passes the rest; other UDP ports
//! and TCP on the same interface reach the kernel as before. End to end, `serve
//! --xdp-guard` keeps opening sessions for one source while another floods it with
//! handshakes. Needs root (CI runs as root); skipped with the reason where BPF programs
//! were not built.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtmfp_edge::bench::netns::enter_path;
use rtmfp_edge::engine::xdp_guard::{GuardConfig, GuardCounters, XdpGuard, XdpGuardError};

const SERVER_IP: &str = "10.232.0.1";
const CLIENT_IP: &str = "10.232.0.2";
/// A second client address, on the same interface: another source.
const OTHER_IP: &str = "10.232.0.3";

/// Two namespaces joined by a veth pair (`xs` in the server's, `xc` in the client's),
/// deleted on drop.
struct Pair {
    server: String,
    client: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {} (this test needs root and network namespaces)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let id = std::process::id();
        let pair = Pair {
            server: format!("rtmfp-{tag}-s-{id}"),
            client: format!("rtmfp-{tag}-c-{id}"),
        };
        for ns in [&pair.server, &pair.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &pair.server,
            "link",
            "add",
            "xs",
            "type",
            "veth",
            "peer",
            "name",
            "xc",
            "netns",
            &pair.client,
        ]);
        ip(&[
            "-n",
            &pair.server,
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "xs",
        ]);
        ip(&[
            "-n",
            &pair.client,
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            "xc",
        ]);
        ip(&[
            "-n",
            &pair.client,
            "addr",
            "add",
            &format!("{OTHER_IP}/24"),
            "dev",
            "xc",
        ]);
        ip(&["-n", &pair.server, "link", "set", "xs", "up"]);
        ip(&["-n", &pair.client, "link", "set", "xc", "up"]);
        pair
    }

    fn enter(ns: &str) {
        enter_path(&format!("/var/run/netns/{ns}")).expect("entering the namespace");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Attaches the guard in the current thread's namespace; `None` (the test is skipped)
/// when the BPF programs were not built.
fn attach(config: &GuardConfig) -> Option<XdpGuard> {
    match XdpGuard::attach("xs", config) {
        Ok(guard) => Some(guard),
        Err(XdpGuardError::NotBuilt) => {
            eprintln!("skipped: {}", XdpGuardError::NotBuilt);
            None
        }
        Err(e) => panic!("attaching the XDP guard: {e}"),
    }
}

/// A handshake-shaped RTMFP datagram: session id 0 (the first three words XOR to 0) and
/// 4 + a multiple of 16 bytes.
fn handshake(len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    for (i, b) in d.iter_mut().enumerate().skip(12) {
        *b = i as u8;
    }
    d
}

/// A datagram of an open session: a nonzero session id.
fn session_datagram(i: u8) -> Vec<u8> {
    let mut d = handshake(4 + 32);
    d[0] = 0x01;
    d[20] = i;
    d
}

/// Every datagram `socket` has, until it stays quiet for 300 ms.
fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

#[test]
fn the_guard_drops_what_cannot_be_rtmfp_limits_handshakes_per_source_and_passes_the_rest() {
    let pair = Pair::new("xdpg");
    let (server_ns, client_ns) = (pair.server.clone(), pair.client.clone());
    const PORT: u16 = 19350;
    const OTHER_PORT: u16 = 19351;
    const TCP_PORT: u16 = 19352;
    let config = GuardConfig {
        ports: vec![PORT],
        handshake_rate: 5,
        handshake_burst: 5,
    };

    // The server's side: the guard, the RTMFP port, another UDP port, a TCP listener.
    Pair::enter(&server_ns);
    let Some(guard) = attach(&config) else {
        return;
    };
    let rtmfp = UdpSocket::bind((SERVER_IP, PORT)).unwrap();
    let other = UdpSocket::bind((SERVER_IP, OTHER_PORT)).unwrap();
    let tcp = TcpListener::bind((SERVER_IP, TCP_PORT)).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut conn, _) = tcp.accept().unwrap();
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).unwrap();
        conn.write_all(&byte).unwrap();
    });

    // The client's side, in its own thread (setns is per thread).
    let sender = std::thread::spawn(move || {
        Pair::enter(&client_ns);
        let from = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
        let from_other = UdpSocket::bind((OTHER_IP, 0)).unwrap();
        let to: SocketAddr = format!("{SERVER_IP}:{PORT}").parse().unwrap();
        for _ in 0..100 {
            from.send_to(&[0x5a; 10], to).unwrap();
        }
        for _ in 0..50 {
            from.send_to(&handshake(4 + 16 + 5), to).unwrap();
        }
        // A flood of handshakes from one source, well over 5 a second.
        let flood_started = Instant::now();
        for _ in 0..200 {
            from.send_to(&handshake(4 + 32), to).unwrap();
        }
        let flood_took = flood_started.elapsed();
        // Another source is not held back by it.
        for _ in 0..3 {
            from_other.send_to(&handshake(4 + 48), to).unwrap();
        }
        for i in 0..20 {
            from.send_to(&session_datagram(i), to).unwrap();
        }
        for _ in 0..10 {
            from.send_to(&[1, 2, 3, 4, 5], (SERVER_IP, OTHER_PORT))
                .unwrap();
        }
        let mut conn = TcpStream::connect((SERVER_IP, TCP_PORT)).expect("TCP reaches the kernel");
        conn.write_all(&[7]).unwrap();
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).unwrap();
        assert_eq!(byte, [7]);
        flood_took
    });
    let flood_took = sender.join().unwrap();
    echo.join().unwrap();

    let got = drain(&rtmfp);
    let got_other = drain(&other);
    let c: GuardCounters = guard.counters();
    eprintln!("{c:?}; the flood took {flood_took:?}");

    assert_eq!(c.dropped_short, 100, "{c:?}");
    assert_eq!(c.dropped_bad_length, 50, "{c:?}");
    // Of 200 from one source: the burst of 5 and what 5 a second refilled meanwhile.
    let refilled = (flood_took.as_secs_f64() * 5.0).ceil() as u64;
    let flood_passed = 200 - c.dropped_handshake_rate;
    assert!(
        (5..=5 + refilled + 1).contains(&flood_passed),
        "{flood_passed} of the flood passed: {c:?}"
    );
    // The other source's three, and the flood's share, are the handshakes passed.
    assert_eq!(c.handshakes, flood_passed + 3, "{c:?}");
    assert_eq!(c.passed, c.handshakes + 20, "{c:?}");
    assert_eq!(c.redirected, 0, "no AF_XDP socket is bound");
    // The socket got exactly what passed, none of what was dropped.
    assert_eq!(got.len() as u64, c.passed);
    assert!(got.iter().all(|d| d.len() >= 20));
    assert_eq!(got.iter().filter(|d| d.len() == 4 + 48).count(), 3);
    assert_eq!(got.iter().filter(|d| d[0] == 0x01).count(), 20);
    // Another UDP port on the same interface gets everything, junk included.
    assert_eq!(got_other.len(), 10);
    assert_eq!(c.not_ours, 10, "{c:?}");

    drop(guard);
    drop(pair);
}

#[test]
fn serve_with_the_guard_opens_sessions_for_one_source_while_another_floods_it() {
    let pair = Pair::new("xdps");
    const PORT: u16 = 19360;
    let exe = env!("CARGO_BIN_EXE_rtmfp-edge");
    let mut serve = Command::new("ip")
        .args(["netns", "exec", &pair.server, exe, "serve", "--shards", "1"])
        .args(["--listen", &format!("{SERVER_IP}:{PORT}")])
        .args(["--xdp-guard", "xs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    // Wait until it listens (or stops: the guard was not built, say).
    let started = Instant::now();
    let probe = |timeout: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.client,
                exe,
                "probe",
                "--timeout",
                timeout,
            ])
            .arg(format!("rtmfp://{SERVER_IP}:{PORT}/live"))
            .output()
            .expect("probe")
    };
    loop {
        if let Some(status) = serve.try_wait().unwrap() {
            let out = serve.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("not built") {
                eprintln!("skipped: {stderr}");
                return;
            }
            panic!("serve stopped ({status}): {stderr}");
        }
        if probe("2").status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve never answered"
        );
    }

    // A flood of handshake-shaped datagrams from another address of the client's.
    let client_ns = pair.client.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = stop.clone();
    let flood = std::thread::spawn(move || {
        Pair::enter(&client_ns);
        let from = UdpSocket::bind((OTHER_IP, 0)).unwrap();
        let mut sent = 0u64;
        while !flooding.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = from.send_to(&handshake(4 + 64), (SERVER_IP, PORT));
            sent += 1;
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut opened = 0;
    for _ in 0..3 {
        let out = probe("10");
        assert!(
            out.status.success(),
            "a session from {CLIENT_IP} during the flood: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        opened += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();

    // SIGTERM: serve drains and prints the guard's counters.
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let out = serve.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("XDP guard on xs: passed="))
        .unwrap_or_else(|| panic!("no counters in serve's output:\n{stdout}"));
    let counter = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line:?}"))
    };
    eprintln!("{opened} sessions opened; {sent} flood datagrams; {line}");
    // Nearly all of the flood stopped at the guard: at most the burst and 20 a second.
    assert!(
        counter("dropped_handshake_rate") + 40 + 20 * 30 >= sent,
        "{sent} sent: {line}"
    );
    assert!(counter("dropped_handshake_rate") > 0, "{line}");
    assert!(counter("handshakes") >= 2 * opened, "{line}");
    drop(pair);
}
