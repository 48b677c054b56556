//! `serve`: RTMFP on UDP and RTMP on TCP feeding one edge server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::probe::yes_no;
use crate::net::edge_loop::EdgeLoop;
use crate::net::os_seed;
use crate::proto::endpoint::EndpointConfig;
use crate::proto::session::SessionConfig;
use crate::proto::{DropReason, Instant};
use crate::server::config::ServerConfig;
use crate::server::edge::{EdgeServer, ServerEvent};

/// How often the server prints its drop counters (only when they changed).
const DROP_REPORT: Duration = Duration::from_secs(60);

/// The config to run with: the file's (or the embedded default), then the flags.
pub fn effective_config(
    listen: Option<SocketAddr>,
    rtmp: Option<&str>,
    config: Option<&Path>,
) -> Result<ServerConfig> {
    let mut cfg = match config {
        Some(path) => ServerConfig::load(path).map_err(anyhow::Error::msg)?,
        None => ServerConfig::embedded_default(),
    };
    if let Some(addr) = listen {
        cfg.rtmfp_listen = addr;
    }
    match rtmp {
        None => {}
        Some("off") => cfg.rtmp_listen = None,
        Some(addr) => {
            cfg.rtmp_listen = Some(
                addr.parse()
                    .with_context(|| format!("--rtmp {addr:?}: expected ADDR:PORT or off"))?,
            )
        }
    }
    Ok(cfg)
}

pub fn endpoint_config(cfg: &ServerConfig) -> EndpointConfig {
    EndpointConfig {
        cookie_len: cfg.cookie_len,
        session: SessionConfig {
            keepalive: cfg.keepalive,
            idle_timeout: cfg.idle_timeout,
            ..SessionConfig::default()
        },
        ..EndpointConfig::server()
    }
}

/// Binds the server's sockets.
pub fn bind(cfg: ServerConfig) -> Result<EdgeLoop> {
    let endpoint = endpoint_config(&cfg);
    let (udp, tcp) = (cfg.rtmfp_listen, cfg.rtmp_listen);
    let server = EdgeServer::new(Arc::new(cfg), endpoint, os_seed());
    EdgeLoop::bind(server, udp, tcp).with_context(|| match tcp {
        Some(tcp) => format!("binding RTMFP on udp://{udp} and RTMP on tcp://{tcp}"),
        None => format!("binding RTMFP on udp://{udp}"),
    })
}

pub fn serve(listen: Option<SocketAddr>, rtmp: Option<&str>, config: Option<&Path>) -> Result<()> {
    let cfg = effective_config(listen, rtmp, config)?;
    if cfg.apps().is_empty() {
        bail!("the config has no [[app]]");
    }
    let apps: Vec<String> = cfg.apps().iter().map(|a| a.name.clone()).collect();
    let mut edge = bind(cfg)?;
    println!("rtmfp-edge serving RTMFP on udp://{}", edge.rtmfp_addr()?);
    if let Some(tcp) = edge.rtmp_addr() {
        println!("RTMP on tcp://{tcp}");
    }
    println!("apps: {}", apps.join(", "));
    println!("server peer id {}", edge.server.endpoint.server_peer_id());
    let mut last_report = Instant::ZERO;
    let mut reported = std::collections::BTreeMap::new();
    edge.run(|server, now| {
        while let Some(event) = server.poll_event() {
            log_event(server, &event);
        }
        if now.saturating_since(last_report) >= DROP_REPORT {
            last_report = now;
            if server.endpoint.drops() != &reported {
                reported = server.endpoint.drops().clone();
                print_drops(&reported);
            }
        }
        true
    })?;
    Ok(())
}

pub fn log_event(server: &EdgeServer, event: &ServerEvent) {
    match event {
        ServerEvent::RtmfpSessionOpened {
            session,
            conn,
            peer,
        } => {
            let negotiated = server
                .endpoint
                .session(*session)
                .map(|s| {
                    let i = &s.info;
                    format!(
                        "layout {}, DH group {}, HMAC {}, sequence numbers {}, peer id {}",
                        i.layout,
                        i.dh_group,
                        i.tx_hmac.map_or("no".into(), |n| format!("{n}")),
                        yes_no(i.tx_sequence_numbers),
                        i.far_peer_id
                    )
                })
                .unwrap_or_default();
            println!("rtmfp session {session:08x} (conn {conn}) from {peer}: {negotiated}")
        }
        ServerEvent::RtmfpSessionClosed { session, reason } => {
            println!("rtmfp session {session:08x} closed: {reason:?}")
        }
        ServerEvent::RtmpClosed { conn, error } => match error {
            Some(e) => println!("rtmp conn {conn} closed: {e}"),
            None => println!("rtmp conn {conn} closed"),
        },
        ServerEvent::App(e) => println!("{e:?}"),
        ServerEvent::Introduced { from, target } => {
            println!("introduced {from} to peer {target}")
        }
    }
}

fn print_drops(drops: &std::collections::BTreeMap<DropReason, u64>) {
    if !drops.is_empty() {
        let list: Vec<String> = drops
            .iter()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        println!("dropped datagrams: {}", list.join(" "));
    }
}
