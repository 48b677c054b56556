//! The metrics endpoint: a plain HTTP/1.x server on its own thread that answers
//! `GET` for the paths its caller serves (`/metrics`, the status page at `/` and its
//! document at `/status.json`) and anything else with 404. One connection at a time
//! (a scraper or a curl, not a crowd), each bounded in size and time, so a client that
//! sends garbage or nothing costs at most [`READ_TIMEOUT`] and a closed socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest request head read; a longer one is closed unanswered.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request (and to take our answer).
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The path the metrics are served at.
pub const PATH: &str = "/metrics";
/// The status page's path, and its document's.
pub const STATUS_PAGE_PATH: &str = "/";
pub const STATUS_JSON_PATH: &str = "/status.json";

/// A page to answer with: its content type and body.
pub type Page = (&'static str, String);

/// A running metrics endpoint.
pub struct MetricsServer {
    /// The address it listens on (the port chosen, when asked for port 0).
    pub addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` and answers `GET PATH` with `pages(PATH)` (made afresh for
    /// every request; `None`: 404) on a thread of its own, for the life of the process.
    pub fn start(
        addr: SocketAddr,
        pages: impl Fn(&str) -> Option<Page> + Send + 'static,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || accept_loop(listener, pages))?;
        Ok(MetricsServer {
            addr,
            _thread: thread,
        })
    }
}

fn accept_loop(listener: TcpListener, pages: impl Fn(&str) -> Option<Page>) {
    loop {
        match listener.accept() {
            // A client that goes away mid-answer is its own business.
            Ok((stream, _)) => {
                let _ = serve_one(stream, &pages);
            }
            // Out of descriptors or a connection reset before accept: wait, go on.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn serve_one(mut stream: TcpStream, pages: &impl Fn(&str) -> Option<Page>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let Some(head) = read_head(&mut stream)? else {
        return Ok(());
    };
    let response = respond(&head, pages);
    stream.write_all(&response)?;
    stream.flush()
}

/// Reads up to the blank line that ends a request head; `None` when the client sent
/// more than [`MAX_REQUEST`] without one, or closed first.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if head_end(&head).is_some() {
            return Ok(Some(head));
        }
        if head.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let room = (MAX_REQUEST - head.len()).min(buf.len());
        match stream.read(&mut buf[..room]) {
            Ok(0) => return Ok(None),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Where the head ends: after `\r\n\r\n` (or a bare `\n\n`, which some clients send).
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter().chain(lf).min()
}

/// The whole answer to a request head: `pages(path)` for a `GET` (the query string
/// left out), 404 for any other method or a path it has no page for, 400 for a request
/// line that is not HTTP/1.x.
pub fn respond(head: &[u8], pages: impl FnOnce(&str) -> Option<Page>) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let well_formed = parts.next().is_none()
        && version.is_some_and(|v| v.starts_with("HTTP/1."))
        && target.is_some_and(|t| t.starts_with('/'));
    if !well_formed {
        return answer(
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n",
        );
    }
    let path = target.map_or("", |t| t.split('?').next().unwrap_or(t));
    let page = if method == Some("GET") {
        pages(path)
    } else {
        None
    };
    match page {
        Some((content_type, body)) => answer("200 OK", content_type, &body),
        None => answer(
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics, the status page at /\n",
        ),
    }
}

fn answer(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::text::CONTENT_TYPE;

    /// Serves `/metrics` with `body`, nothing else.
    fn metrics(body: &'static str) -> impl FnOnce(&str) -> Option<Page> {
        move |path| (path == PATH).then(|| (CONTENT_TYPE, body.to_owned()))
    }

    fn status(response: &[u8]) -> String {
        let text = String::from_utf8_lossy(response);
        text.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn get_metrics_serves_the_page_as_prometheus_text() {
        let r = respond(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            metrics("a 1\n"),
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("\r\nContent-Type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Length: 4\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\na 1\n"), "{text}");
        let query = respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", metrics(""));
        assert_eq!(status(&query), "HTTP/1.1 200 OK");
    }

    #[test]
    fn other_paths_and_methods_are_not_found_and_never_render_the_page() {
        for head in [
            &b"GET /nothing HTTP/1.1\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\n\r\n",
        ] {
            let r = respond(head, |_| None);
            assert_eq!(status(&r), "HTTP/1.1 404 Not Found");
        }
        for head in [
            &b"POST /metrics HTTP/1.1\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\n\r\n",
        ] {
            let r = respond(head, |_| panic!("page rendered for {head:?}"));
            assert_eq!(status(&r), "HTTP/1.1 404 Not Found");
        }
    }

    #[test]
    fn each_path_gets_its_own_page_and_content_type() {
        let pages = |path: &str| match path {
            STATUS_PAGE_PATH => Some(("text/html; charset=utf-8", "<html>".to_owned())),
            STATUS_JSON_PATH => Some(("application/json", "{}".to_owned())),
            _ => None,
        };
        let page = String::from_utf8(respond(b"GET / HTTP/1.1\r\n\r\n", pages)).unwrap();
        assert!(page.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(page.ends_with("\r\n\r\n<html>"));
        let doc = respond(b"GET /status.json?t=1 HTTP/1.1\r\n\r\n", pages);
        let doc = String::from_utf8(doc).unwrap();
        assert!(doc.contains("\r\nContent-Type: application/json\r\n"));
        assert!(doc.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn garbage_gets_400_without_panicking() {
        for head in [
            &b""[..],
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics SSH-2.0\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
        ] {
            let r = respond(head, |_| panic!("page rendered for {head:?}"));
            assert_eq!(status(&r), "HTTP/1.1 400 Bad Request", "{head:?}");
        }
    }

    #[test]
    fn a_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
