//! Runs `rtmfp-edge serve` on free loopback ports and watches what it logs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rtmfp-edge");

pub struct Server {
    child: Child,
    lines: Receiver<String>,
    pub log: Vec<String>,
    pub rtmfp: SocketAddr,
    pub rtmp: Option<SocketAddr>,
    /// Where `--metrics` serves, when given.
    pub metrics: Option<SocketAddr>,
}

impl Server {
    /// Starts the server with extra arguments (e.g. `--config FILE`, `--rtmp off`).
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(None, extra)
    }

    /// Starts the server inside network namespace `netns` (`ip netns exec`), if given.
    pub fn start_in(netns: Option<&str>, extra: &[&str]) -> Server {
        Server::try_start_in(netns, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Server::start_in`], but when serve exits before it serves (it refused its
    /// arguments, or what they ask for is unavailable here): `Err` with its exit status
    /// and what it wrote to stderr, for a test to report as skipped where that is why.
    pub fn try_start_in(netns: Option<&str>, extra: &[&str]) -> Result<Server, String> {
        let mut args = vec!["serve"];
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--rtmp") {
            args.extend(["--rtmp", "127.0.0.1:0"]);
        }
        args.extend(extra);
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rtmfp-edge serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Passed on to the test's stderr as it comes, and kept until serve has served.
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if kept.len() < 100 {
                    kept.push(line);
                }
            }
            kept
        });
        let mut server = Server {
            child,
            lines,
            log: Vec::new(),
            rtmfp: "0.0.0.0:0".parse().unwrap(),
            rtmp: None,
            metrics: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    server.log.push(line.clone());
                    if line.contains("serving RTMFP on udp://") {
                        break line;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().unwrap();
                    let stderr = stderr.join().unwrap_or_default();
                    return Err(format!(
                        "serve exited ({status}) before it served: {}\nlog:\n{}",
                        stderr.join("\n"),
                        server.log.join("\n")
                    ));
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "server never logged the expected line; log:\n{}",
                    server.log.join("\n")
                ),
            }
        };
        server.rtmfp = line
            .rsplit("udp://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if !extra.contains(&"off") {
            let line = server.wait_for(|l| l.starts_with("RTMP on tcp://"), Duration::from_secs(5));
            server.rtmp = Some(
                line.rsplit("tcp://")
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap(),
            );
        }
        let metrics_flag = extra.iter().position(|a| *a == "--metrics");
        if metrics_flag.is_some_and(|i| extra.get(i + 1) != Some(&"off")) {
            let line = server.wait_for(
                |l| l.starts_with("metrics on http://"),
                Duration::from_secs(5),
            );
            let addr = line["metrics on http://".len()..].trim_end_matches("/metrics");
            server.metrics = Some(addr.parse().unwrap());
        }
        Ok(server)
    }

    /// Waits for a log line; panics with the log so far if it does not come.
    pub fn wait_for(&mut self, mut pred: impl FnMut(&str) -> bool, timeout: Duration) -> String {
        if let Some(l) = self.log.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "server never logged the expected line; log:\n{}",
            self.log.join("\n")
        );
    }

    /// Waits until `n` log lines (so far, in all) satisfy `pred`.
    pub fn wait_count(&mut self, pred: impl Fn(&str) -> bool, n: usize, timeout: Duration) {
        let mut seen = self.log.iter().filter(|l| pred(l)).count();
        if seen >= n {
            return;
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen += usize::from(pred(&line));
                    self.log.push(line);
                    if seen >= n {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "server logged {seen} of {n} expected lines; log:\n{}",
            self.log.join("\n")
        );
    }

    /// Sends `signal` (`libc::SIGHUP`...) to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
        // our own child's, which we have not waited for, so it names no other process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the server to exit; its status and
    /// everything it printed after the lines already read.
    pub fn terminate(&mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let out = Command::new("kill").args(["-TERM", &pid]).output().unwrap();
        assert!(out.status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let rest: Vec<String> = self.lines.try_iter().collect();
        self.log.extend(rest.iter().cloned());
        (status, rest)
    }

    pub fn rtmfp_url(&self, path: &str) -> String {
        format!("rtmfp://{}/{path}", self.rtmfp)
    }

    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp.expect("RTMP enabled"))
    }
}

/// Starts a `join` member of `group` playing `cam` into `output` for `seconds`, inside
/// network namespace `netns` if given; its stdout and stderr are piped.
pub fn spawn_member(
    netns: Option<&str>,
    url: &str,
    group: &str,
    output: &std::path::Path,
    seconds: u32,
) -> Child {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    command
        .args(["join", url, "--group", group, "--play", "cam", "--output"])
        .arg(output)
        .args(["--duration", &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rtmfp-edge join")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
