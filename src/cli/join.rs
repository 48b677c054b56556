//! `join`: join a NetGroup through the server and report the overlay it forms: which
//! members the server names, which pass the group handshake, what reports say.
//!
//! With `--play NAME` it also takes that stream from its neighbours (relaying it to
//! others as members do) and, with `--output`, writes it as FLV.

use std::time::{Duration, Instant as StdInstant};

use std::io::Write;

use anyhow::{bail, Context, Result};

use super::stream_client;
use super::url::RtmfpUrl;
use crate::flash::amf::Value;
use crate::flash::client::ClientEvent;
use crate::flv::{FlvHeader, FlvTag, FlvWriter, TagType};
use crate::group::member::GroupEvent;
use crate::group::GroupSpec;
use crate::media::{MediaKind, MediaMessage};
use crate::proto::endpoint::EndpointConfig;
use crate::proto::keying::HandshakeLayout;

/// Writes what the group brings as FLV, timestamps rebased to start at 0. Headers the
/// stream repeats for members that join late (metadata, codec headers identical to the
/// last ones written) are written once: the file is what the publisher sent.
struct FlvOut {
    sink: std::io::BufWriter<std::fs::File>,
    writer: FlvWriter,
    base: Option<u32>,
    buf: Vec<u8>,
    /// The last metadata, video header and audio header written.
    headers: [Option<bytes::Bytes>; 3],
}

impl FlvOut {
    fn create(path: &str) -> Result<Self> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {path}"))?;
        Ok(FlvOut {
            sink: std::io::BufWriter::new(file),
            writer: FlvWriter::new(FlvHeader::new(true, true)),
            base: None,
            buf: Vec::new(),
            headers: Default::default(),
        })
    }

    fn write(&mut self, m: &MediaMessage) -> Result<()> {
        let header = match m.kind {
            MediaKind::Data if m.is_metadata() => Some(0),
            MediaKind::Video if m.is_sequence_header() => Some(1),
            MediaKind::Audio if m.is_sequence_header() => Some(2),
            _ => None,
        };
        if let Some(i) = header {
            if self.headers[i].as_ref() == Some(&m.payload) {
                return Ok(());
            }
            self.headers[i] = Some(m.payload.clone());
        }
        let tag_type = match m.kind {
            MediaKind::Audio => TagType::Audio,
            MediaKind::Video => TagType::Video,
            MediaKind::Data => TagType::Script,
        };
        let base = *self.base.get_or_insert(m.timestamp);
        let ts = m.timestamp.saturating_sub(base);
        self.buf.clear();
        self.writer
            .write_tag(
                &FlvTag::new(tag_type, ts, m.payload.to_vec()),
                &mut self.buf,
            )
            .map_err(|e| anyhow::anyhow!("writing FLV: {e}"))?;
        self.sink.write_all(&self.buf).context("writing output")
    }
}

/// How long `join` stays after the stream it plays was unpublished: the server answers
/// pulls for the stream's last fragments for 5 s (`PUBLICATION_LINGER`), and one pull
/// may need a retry after a fetch period (2.5 s).
const UNPUBLISHED_DRAIN: Duration = Duration::from_secs(4);

/// `join --multicast-interface --multicast-source`, checked.
pub fn multicast_join(
    interface: Option<String>,
    source: Option<&str>,
) -> Result<crate::net::MulticastJoin> {
    let mut join = crate::net::MulticastJoin {
        interface,
        ..Default::default()
    };
    match source {
        None => {}
        Some("any") => join.any_source = true,
        Some(text) => {
            join.source = Some(text.parse().with_context(|| {
                format!("--multicast-source {text:?}: expected an IP address or any")
            })?)
        }
    }
    if let Some(name) = &join.interface {
        crate::engine::sockopt::interface_index(name)
            .with_context(|| format!("--multicast-interface {name:?}"))?;
    }
    Ok(join)
}

/// What `join` was asked to do.
pub struct JoinOptions<'a> {
    pub url: &'a str,
    /// A groupspec or a group name.
    pub spec: &'a str,
    pub token: Option<String>,
    pub play: Option<&'a str>,
    pub output: Option<&'a str>,
    pub post: Option<&'a str>,
    pub duration: Duration,
    pub timeout: Duration,
    /// Where and from whom to take the group's IP multicast, if the server sends it.
    pub multicast: crate::net::MulticastJoin,
}

/// Joins `spec` on the server of `url` and prints group events for `duration`; plays
/// `play` from the group into `output` if given.
pub fn join(options: JoinOptions<'_>) -> Result<()> {
    let JoinOptions {
        url,
        spec,
        token,
        play,
        output,
        post,
        duration,
        timeout,
        multicast,
    } = options;
    let url = RtmfpUrl::parse(url)?;
    let spec = GroupSpec::from_name_or_spec(spec).with_context(|| format!("--group {spec:?}"))?;
    // Flash-era keying with the server: our peer id is then the Flash-era certificate's,
    // the one Flash and librtmfp members can open sessions to (they know no other).
    let config = EndpointConfig {
        initiator_layouts: vec![HandshakeLayout::FlashEra],
        ..EndpointConfig::default()
    };
    let mut driver = stream_client::connect_with(&url, token, timeout, config)?;
    if !driver.endpoint.join_group(&spec) {
        bail!("the connection is not up: cannot join");
    }
    if let Some(name) = play {
        driver.endpoint.play_from_group(name);
    }
    let mut out = output.map(FlvOut::create).transpose()?;
    let mut media = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    let id = driver
        .endpoint
        .peer_id()
        .map(|p| p.to_string())
        .unwrap_or_default();
    eprintln!("joined group {} as peer {id}", spec.group_id());
    let started = StdInstant::now();
    let mut refused = false;
    let mut closed = None;
    // Posted once the first neighbour is up: a post reaches the members linked then.
    let mut to_post = post.map(|text| Value::String(text.to_owned()));
    let mut posts = 0u64;
    // The IP multicast socket, once the server told us the group's address.
    let mut side: Option<std::net::UdpSocket> = None;
    let mut want_side: Option<std::net::SocketAddr> = None;
    // Shortened when the stream we play is unpublished: we stay to repair its end.
    let mut until = duration;
    while started.elapsed() < until && !refused && closed.is_none() && failure.is_none() {
        let left = until.saturating_sub(started.elapsed());
        let step = |c: &mut crate::flash::client::FlashClient, now: crate::proto::Instant| {
            while let Some(e) = c.poll_event() {
                match e {
                    ClientEvent::Group(g) => {
                        match &g {
                            GroupEvent::JoinRefused => refused = true,
                            GroupEvent::Heard(p) => println!("heard {p}"),
                            GroupEvent::NeighbourUp(p) => {
                                println!("neighbour up {p}");
                                if let Some(message) = to_post.take() {
                                    match c.post_to_group(now, &message) {
                                        Some(Ok(id)) => println!("posted {id}"),
                                        Some(Err(e)) => eprintln!("post refused: {e}"),
                                        None => {}
                                    }
                                }
                            }
                            GroupEvent::Post { id, message } => {
                                posts += 1;
                                println!("post {id} {message:?}");
                            }
                            GroupEvent::Received { route, message } => {
                                println!("received ({route:?}) {message:?}")
                            }
                            // `join` holds no objects: a neighbour asking is told so.
                            GroupEvent::ObjectRequested(request) => {
                                if let Some((g, endpoint)) = c.group_and_endpoint() {
                                    g.deny_requested_object(endpoint, *request);
                                }
                            }
                            GroupEvent::ObjectFetched { index, .. } => {
                                println!("object {index} fetched")
                            }
                            GroupEvent::Unpublished(name) if Some(name.as_str()) == play => {
                                println!("NetStream.MulticastStream.UnpublishNotify {name}");
                                until = until.min(started.elapsed() + UNPUBLISHED_DRAIN);
                            }
                            GroupEvent::Unpublished(_) => {}
                            GroupEvent::MulticastAddress(a) => {
                                println!("the group's stream is also on IP multicast {a}");
                                want_side = Some(*a);
                                return false;
                            }
                            GroupEvent::NeighbourDown(p) => println!("neighbour down {p}"),
                            GroupEvent::HandshakeRejected { peer, why } => {
                                println!("handshake from {peer} rejected: {why}")
                            }
                            GroupEvent::Report { from, peers } => {
                                println!("report from {from}: {peers} peers")
                            }
                            GroupEvent::Media(m) => {
                                media += 1;
                                if let Some(out) = &mut out {
                                    if let Err(e) = out.write(m) {
                                        failure = Some(e);
                                        return false;
                                    }
                                }
                            }
                        }
                        if refused {
                            return false;
                        }
                    }
                    ClientEvent::Status {
                        code, description, ..
                    } if code.starts_with("NetGroup") => {
                        eprintln!("{code}: {description}");
                    }
                    ClientEvent::Closed(r) => {
                        closed = Some(r);
                        return false;
                    }
                    _ => {}
                }
            }
            true
        };
        match &side {
            Some(socket) => driver.run_with_side(
                socket,
                left,
                |c, now, datagram| {
                    c.handle_multicast(now, datagram);
                },
                step,
            )?,
            None => driver.run(left, step)?,
        };
        if let Some(address) = want_side.take() {
            let mut how = multicast.clone();
            if how.source.is_none() && !how.any_source {
                how.source = driver.endpoint.group().and_then(|g| g.multicast_source());
            }
            match crate::net::multicast_receiver(address, &how) {
                Ok(socket) => {
                    match how.source {
                        Some(s) => println!("joined IP multicast {address} for source {s}"),
                        None => println!("joined IP multicast {address}"),
                    }
                    side = Some(socket)
                }
                // Peers still bring the stream.
                Err(e) => eprintln!("cannot receive IP multicast on {address}: {e}"),
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(out) = &mut out {
        out.sink.flush().context("writing output")?;
    }
    if refused {
        bail!("the server refused the join");
    }
    if let Some(r) = closed {
        bail!("session closed ({r:?})");
    }
    let neighbours = driver
        .endpoint
        .group()
        .map_or(0, |g| g.neighbours().count());
    let heard = driver.endpoint.group().map_or(0, |g| g.heard());
    let estimated = driver.endpoint.group().map_or(0, |g| g.estimated_members());
    let group = driver.endpoint.group();
    let stream = group.and_then(|g| g.stream());
    let c = stream.map(|s| s.counters()).unwrap_or_default();
    let r = stream.map(|s| s.reassembly()).unwrap_or_default();
    let from_server = group.map_or(0, |g| g.received_from_server());
    let (mc_drops, mc_taken) = group.map(|g| g.multicast_counts()).unwrap_or_default();
    if !mc_drops.is_empty() {
        let list: Vec<String> = mc_drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("ip multicast datagrams dropped: {}", list.join(" "));
    }
    // One line a script can parse: where the fragments came from, what reached the
    // player, what did not. `repaired_fec` counts fragments IP multicast lost and its
    // repair datagrams rebuilt, apart from `from_multicast` (those that came whole).
    println!(
        "neighbours={neighbours} heard={heard} estimated_members={estimated} posts_received={posts} media_messages={media} fragments_received={} \
         from_server={from_server} from_peers={} from_multicast={} repaired_fec={} multicast_datagrams={mc_taken} duplicates={} pulls_sent={} fragments_relayed={} \
         missing={} late={}",
        c.fragments_received,
        c.fragments_received - from_server - c.from_multicast - c.repaired_fec,
        c.from_multicast,
        c.repaired_fec,
        c.duplicates,
        c.pulls_sent,
        c.fragments_sent,
        r.missing,
        r.late,
    );
    stream_client::close(&mut driver)
}
