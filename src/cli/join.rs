//! `join`: join a NetGroup through the server and report the overlay it forms: which
//! members the server names, which pass the group handshake, what reports say.
//!
//! Receiving the group's live stream from peers builds on this (the media layer is not
//! wired to this command yet: it prints group events only).

use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};

use super::stream_client;
use super::url::RtmfpUrl;
use crate::flash::client::ClientEvent;
use crate::group::member::GroupEvent;
use crate::group::GroupSpec;
use crate::proto::endpoint::EndpointConfig;
use crate::proto::keying::HandshakeLayout;

/// Joins `spec` on the server of `url` and prints group events for `duration`.
pub fn join(
    url: &str,
    spec: &str,
    token: Option<String>,
    duration: Duration,
    timeout: Duration,
) -> Result<()> {
    let url = RtmfpUrl::parse(url)?;
    let spec = GroupSpec::parse(spec).with_context(|| format!("groupspec {spec:?}"))?;
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
    let id = driver
        .endpoint
        .peer_id()
        .map(|p| p.to_string())
        .unwrap_or_default();
    eprintln!("joined group {} as peer {id}", spec.group_id());
    let started = StdInstant::now();
    let mut refused = false;
    let mut closed = None;
    while started.elapsed() < duration && !refused && closed.is_none() {
        let left = duration.saturating_sub(started.elapsed());
        driver.run(left, |c, _| {
            while let Some(e) = c.poll_event() {
                match e {
                    ClientEvent::Group(g) => {
                        match &g {
                            GroupEvent::JoinRefused => refused = true,
                            GroupEvent::Heard(p) => println!("heard {p}"),
                            GroupEvent::NeighbourUp(p) => println!("neighbour up {p}"),
                            GroupEvent::NeighbourDown(p) => println!("neighbour down {p}"),
                            GroupEvent::HandshakeRejected { peer, why } => {
                                println!("handshake from {peer} rejected: {why}")
                            }
                            GroupEvent::Report { from, peers } => {
                                println!("report from {from}: {peers} peers")
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
        })?;
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
    println!("neighbours={neighbours} heard={heard}");
    stream_client::close(&mut driver)
}
