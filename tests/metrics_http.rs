//! `serve --metrics`: a probe's handshake and a junk datagram move the counters of the
//! page at /metrics, an open session shows in the RTT and congestion window histograms,
//! the page is valid Prometheus text, and other requests (not /metrics, nor the
//! status page and its document: tests/status_page.rs) get 404, 400 or a closed
//! connection without harming the endpoint.

#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use server::{Server, BIN};

/// Sends `request` as is and returns all the server answered before closing.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may close before taking all of an oversized request.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

/// The body of a 200 answer to GET /metrics.
fn scrape(addr: SocketAddr) -> String {
    let answer = get(addr, "/metrics");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// A sample line: `name{label="value",...} number`, checked as the text format asks.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("name and value");
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("value of {line:?}"));
    let (name, labels) = match series.split_once('{') {
        None => (series, ""),
        Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end in }")),
    };
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "metric name in {line:?}"
    );
    let mut parsed = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (label, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(
            label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label name in {line:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escaped char").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c} in {line:?}"),
                },
                (_, c) => value.push(c),
            }
        };
        assert!(parsed.insert(label.to_owned(), value).is_none(), "{line:?}");
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Sample {
        name: name.to_owned(),
        labels: parsed,
        value,
    }
}

/// The family `name` is a sample of: itself, or for a histogram's `_bucket`, `_sum` and
/// `_count`, the histogram.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|family| types.get(*family).is_some_and(|kind| kind == "histogram"))
        .unwrap_or(name)
}

/// A series' labels but `le`, in order.
type SeriesLabels = Vec<(String, String)>;

/// Checks every histogram series (a histogram family's samples with the same labels but
/// `le`): bucket counts never go down as `le` grows, the last bucket is `le="+Inf"`, and
/// it equals `_count`.
fn check_histograms(samples: &[Sample], types: &BTreeMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
        let bucket_name = format!("{family}_bucket");
        let mut buckets: BTreeMap<SeriesLabels, Vec<(String, f64)>> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == bucket_name) {
            let mut series = s.labels.clone();
            let le = series.remove("le").expect("a bucket has le");
            buckets
                .entry(series.into_iter().collect())
                .or_default()
                .push((le, s.value));
        }
        assert!(!buckets.is_empty(), "{family} has no buckets");
        for (series, buckets) in buckets {
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{series:?}: {buckets:?}"
            );
            let (le, inf) = buckets.last().unwrap();
            assert_eq!(le, "+Inf", "{family}{series:?}");
            let labels: Vec<(&str, &str)> = series
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = total(samples, &format!("{family}_count"), &labels);
            assert_eq!(*inf, count, "{family}{series:?}: +Inf bucket and _count");
        }
    }
}

/// Checks the page's format (every sample's family has HELP and TYPE before it, given
/// once; counters end in `_total`; histograms are whole) and returns its samples.
fn parse_page(page: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = Vec::new();
    let mut samples = Vec::new();
    assert!(page.ends_with('\n'), "the page ends with a line feed");
    for line in page.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap().to_owned();
            assert!(!helped.contains(&name), "HELP twice for {name}");
            helped.push(name);
        } else if let Some(ty) = line.strip_prefix("# TYPE ") {
            let (name, kind) = ty.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(kind != "counter" || name.ends_with("_total"), "{line}");
            let first = types.insert(name.to_owned(), kind.to_owned()).is_none();
            assert!(first, "TYPE twice for {name}");
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &types);
            assert!(types.contains_key(family), "no TYPE before {line}");
            assert!(helped.iter().any(|h| h == family), "no HELP before {line}");
            assert!(sample.labels.contains_key("shard"), "{line}");
            samples.push(sample);
        }
    }
    check_histograms(&samples, &types);
    samples
}

/// The sum over shards of `name`'s samples that carry all of `labels`.
fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn a_probe_and_a_junk_datagram_show_in_valid_prometheus_text() {
    let server = Server::start(&["--rtmp", "off", "--shards", "2", "--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics.expect("serve says where metrics are");
    let before = parse_page(&scrape(metrics));
    assert_eq!(total(&before, "rtmfp_edge_sessions_opened_total", &[]), 0.0);
    let shards: Vec<&str> = before
        .iter()
        .filter(|s| s.name == "rtmfp_edge_sessions")
        .map(|s| s.labels["shard"].as_str())
        .collect();
    assert_eq!(shards, ["0", "1"], "one sample per shard");

    let out = Command::new(BIN)
        .args(["probe", &server.rtmfp_url("live"), "--timeout", "20"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Too short for any RTMFP packet: dropped as bad_length by whichever shard reads it.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(&[1, 2, 3], server.rtmfp).unwrap();

    // Shards copy their servers' numbers now and then: scrape until they show.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let samples = parse_page(&scrape(metrics));
        let opened = total(
            &samples,
            "rtmfp_edge_sessions_opened_total",
            &[("role", "responder")],
        );
        let dropped = total(
            &samples,
            "rtmfp_edge_datagrams_dropped_total",
            &[("reason", "bad_length")],
        );
        if opened >= 1.0 && dropped >= 1.0 {
            break samples;
        }
        assert!(Instant::now() < deadline, "counters never moved");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sum = |name| total(&samples, name, &[]);
    assert!(sum("rtmfp_edge_handshake_cookies_sent_total") >= 1.0);
    // IHello, IIKeying, and the session's own packets at least.
    assert!(sum("rtmfp_edge_datagrams_received_total") >= 4.0);
    assert!(sum("rtmfp_edge_received_bytes_total") > sum("rtmfp_edge_datagrams_received_total"));
    assert!(sum("rtmfp_edge_datagrams_sent_total") >= 2.0);
    assert!(sum("rtmfp_edge_sent_bytes_total") > 0.0);
    let reasons: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "rtmfp_edge_datagrams_dropped_total" && s.labels["shard"] == "0")
        .map(|s| s.labels["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"bad_cookie") && reasons.contains(&"replayed"),
        "{reasons:?}"
    );
}

/// A client process, killed when the test ends however it ends.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn an_open_session_shows_in_the_rtt_and_congestion_window_histograms() {
    let server = Server::start(&["--rtmp", "off", "--shards", "1", "--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics.unwrap();
    let before = parse_page(&scrape(metrics));
    assert_eq!(
        total(&before, "rtmfp_edge_session_rtt_seconds_count", &[]),
        0.0
    );
    assert_eq!(
        total(&before, "rtmfp_edge_session_cwnd_bytes_count", &[]),
        0.0
    );

    // A player waiting for a stream nobody publishes: its session stays open.
    let _player = Client(
        Command::new(BIN)
            .args([
                "play",
                &server.rtmfp_url("live/cam"),
                "--output",
                "/dev/null",
            ])
            .args(["--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let samples = parse_page(&scrape(metrics));
        let shard0 = [("shard", "0")];
        if total(&samples, "rtmfp_edge_session_rtt_seconds_count", &shard0) >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no session ever had an RTT");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A scrape may mix two snapshots: let a few pass with the session open, so that the
    // gauge and the histograms agree.
    std::thread::sleep(Duration::from_millis(300));
    let samples = parse_page(&scrape(metrics));
    let sum = |name| total(&samples, name, &[("shard", "0")]);
    let sessions = sum("rtmfp_edge_sessions");
    assert!(sum("rtmfp_edge_session_rtt_seconds_count") >= 1.0);
    assert!(sum("rtmfp_edge_session_rtt_seconds_count") <= sessions);
    assert!(sum("rtmfp_edge_session_rtt_seconds_sum") > 0.0);
    // Loopback: well under a second per session.
    assert!(sum("rtmfp_edge_session_rtt_seconds_sum") < sessions);
    assert_eq!(sum("rtmfp_edge_session_cwnd_bytes_count"), sessions);
    // At least two full fragments each.
    assert!(sum("rtmfp_edge_session_cwnd_bytes_sum") >= 2000.0 * sessions);
}

#[test]
fn other_requests_get_404_or_400_or_are_closed_and_the_endpoint_lives_on() {
    let server = Server::start(&["--rtmp", "off", "--shards", "1", "--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics.unwrap();
    for path in [
        "/index.html",
        "/metrics/x",
        "/status.json/x",
        "/favicon.ico",
    ] {
        let answer = get(metrics, path);
        assert!(
            answer.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{path}: {answer}"
        );
    }
    let answer = exchange(metrics, b"\x16\x03\x01\x02\x00 not http\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // A head that never ends: cut off at the size bound, unanswered.
    let answer = exchange(metrics, &vec![b'A'; 64 * 1024]);
    assert_eq!(answer, "");
    // A client that connects and says nothing is closed after the read timeout.
    assert_eq!(exchange(metrics, b""), "");
    let page = scrape(metrics);
    assert!(!parse_page(&page).is_empty());
}
