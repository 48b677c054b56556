//! The status page on the metrics address, end to end: a server with two shards and a
//! NetGroup it republishes into, a publisher, a player and a group member (the
//! project's own clients); `/status.json` names the stream, its publisher and its
//! player, and the group with the server's member and its session to the member; then
//! headless Chromium loads `/`, runs its script, and the DOM it renders shows the
//! stream and its player count and the group's overlay drawn; a screenshot of it is a
//! real PNG. Without Chromium (Debian's chromium-headless-shell) the browser half is
//! reported as skipped.

#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use server::{Server, BIN};

/// The bundled test stream, fed to the publisher on its stdin.
const DEMO_FLV: &[u8] = include_bytes!("../src/cli/demo.flv");
const GROUP: &str = "status-group";

/// A client process, killed when the test ends however it ends.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of a 200 answer to `GET path`, and its head.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    (head.to_owned(), body.to_owned())
}

fn status(addr: SocketAddr) -> Value {
    let (head, body) = get(addr, "/status.json");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/json"),
        "{head}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn stream<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    doc["streams"].as_array()?.iter().find(|s| s["key"] == key)
}

fn group<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["groups"].as_array()?.iter().find(|g| g["name"] == name)
}

/// The publisher, the player and the group member are all in the document.
fn settled(doc: &Value) -> bool {
    let Some(s) = stream(doc, "live/cam") else {
        return false;
    };
    let Some(g) = group(doc, GROUP) else {
        return false;
    };
    let linked = g["links"].as_array().is_some_and(|links| {
        links.iter().any(|l| {
            l["kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "server_session"))
        })
    });
    s["publishing"] == true && s["players"] == 1 && g["members"] == 2 && linked
}

/// Debian's headless Chromium, or the full one (which then needs `--headless`).
fn browser() -> Option<(PathBuf, bool)> {
    let candidates = [
        ("/usr/bin/chromium-headless-shell", false),
        ("/usr/lib/chromium/chromium-headless-shell", false),
        ("/usr/bin/chromium", true),
    ];
    candidates
        .iter()
        .find(|(path, _)| Path::new(path).exists())
        .map(|(path, headless)| (PathBuf::from(path), *headless))
}

/// Runs the browser on `url` with `args` and returns its stdout; killed after a minute.
fn run_browser(browser: &(PathBuf, bool), profile: &Path, args: &[&str], url: &str) -> String {
    let (path, headless) = browser;
    let mut command = Command::new(path);
    if *headless {
        command.arg("--headless");
    }
    // As root (CI) Chromium refuses to start without --no-sandbox.
    let mut child = command
        .args(["--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the browser");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser ran over a minute: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(exit.success(), "browser {args:?} failed ({exit}): {err}");
    out
}

#[test]
fn the_status_page_shows_streams_players_and_groups_in_json_and_in_a_browser() {
    let started = Instant::now();
    let server = Server::start(&[
        "--rtmp",
        "off",
        "--shards",
        "2",
        "--group",
        GROUP,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = server.metrics.unwrap();
    let url = server.rtmfp_url("live/cam");

    // The page is served as is, whatever the server holds.
    let (head, page) = get(metrics, "/");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/html"), "{head}");
    assert!(page.contains("status.json"), "{page}");
    let (head, _) = get(metrics, "/nothing-here");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");

    // A publisher fed the bundled stream on stdin, which stays open: it stays published
    // after the last frame, so the player and the member play on.
    let mut publisher = Command::new(BIN)
        .args(["publish", &url, "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    let _publisher = Client(publisher);
    let (keep_open, held) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = stdin.write_all(DEMO_FLV);
        // Until the test ends (its sender dropped).
        let _ = held.recv();
    });
    let _player = Client(
        Command::new(BIN)
            .args(["play", &url, "--output", "/dev/null", "--duration", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _member = Client(
        Command::new(BIN)
            .args(["join", &server.rtmfp_url("live"), "--group", GROUP])
            .args([
                "--play",
                "cam",
                "--output",
                "/dev/null",
                "--duration",
                "120",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // (a) The document names them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let doc = loop {
        let doc = status(metrics);
        if settled(&doc) {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "the stream, its player and the group member never all showed: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(doc["format"], 1);
    let shards = doc["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(shard["shard"], i);
        assert!(shard["datagrams_dropped"]["bad_cookie"].is_u64(), "{shard}");
        assert!(shard["status_age_ms"].is_u64(), "{shard}");
    }
    let total = |field: &str| -> u64 { shards.iter().map(|s| s[field].as_u64().unwrap()).sum() };
    assert!(total("datagrams_received") > 0);
    // Publisher, player, member and the member's session to the server's member.
    assert!(total("sessions") >= 3, "{doc:#}");
    let cam = stream(&doc, "live/cam").unwrap();
    assert_eq!(cam["app"], "live");
    assert_eq!(cam["name"], "cam");
    assert_eq!(cam["publisher"]["address"], "127.0.0.1");
    assert!(cam["publisher"]["conn"].is_string(), "{cam}");
    let players = cam["player_list"].as_array().unwrap();
    assert_eq!(players.len(), 1, "{cam}");
    assert_eq!(players[0]["address"], "127.0.0.1");
    assert_ne!(players[0]["conn"], cam["publisher"]["conn"]);
    let g = group(&doc, GROUP).unwrap();
    let members = g["member_list"].as_array().unwrap();
    assert_eq!(members.iter().filter(|m| m["server"] == true).count(), 1);
    let client = members.iter().find(|m| m["server"] == false).unwrap();
    assert_eq!(client["address"], "127.0.0.1");
    let sm = &g["server_member"];
    assert_eq!(sm["stream"], "cam");
    assert_eq!(sm["neighbours"][0], client["peer_id"]);
    assert!(sm["fragments_published"].as_u64().unwrap() > 0, "{sm}");
    assert!(sm["ip_multicast"].is_null(), "{sm}");
    assert_eq!(sm["sends_to"][0], "peers");
    println!("status.json settled after {:?}", started.elapsed());

    // (b) and (c): the page in a browser.
    let Some(browser) = browser() else {
        eprintln!("skipped: chromium-headless-shell not installed");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status_page");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let page_url = format!("http://{metrics}/");
    // Virtual time runs the page's polls without waiting for them: 3 s is three.
    let dom = run_browser(
        &browser,
        &dir.join("profile-dom"),
        &["--virtual-time-budget=3000", "--dump-dom"],
        &page_url,
    );
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "never rendered: {dom}"
    );
    let row_start = dom
        .find("data-key=\"live/cam\"")
        .unwrap_or_else(|| panic!("no row for live/cam: {dom}"));
    let row = &dom[dom[..row_start].rfind("<tr").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("data-players=\"1\""), "{row}");
    assert!(row.contains("data-publishing=\"true\""), "{row}");
    assert!(row.contains(">cam</td>"), "{row}");
    assert!(row.contains("<td class=\"players\">1</td>"), "{row}");
    assert!(row.contains("127.0.0.1"), "{row}");
    // The group's overlay: the server's member, the client member, and their session.
    assert!(dom.contains("<svg class=\"overlay\""), "{dom}");
    assert!(dom.contains("class=\"member server\""), "{dom}");
    assert!(
        dom.contains(&format!(
            "data-peer=\"{}\"",
            client["peer_id"].as_str().unwrap()
        )),
        "{dom}"
    );
    assert!(dom.contains("<line class=\"server_session\""), "{dom}");
    assert!(dom.contains("to peers: "), "{dom}");
    // Two shards' rows.
    assert!(dom.contains("data-shard=\"1\""), "{dom}");

    let shot = dir.join("status.png");
    run_browser(
        &browser,
        &dir.join("profile-shot"),
        &[
            "--virtual-time-budget=3000",
            "--window-size=1280,900",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
        ],
        &page_url,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    // A blank page compresses to a few kilobytes; tables, text and a graph do not.
    assert!(png.len() > 20_000, "{} bytes", png.len());
    println!(
        "screenshot: {} ({} bytes); test took {:?}",
        shot.display(),
        png.len(),
        started.elapsed()
    );
    drop(keep_open);
}
