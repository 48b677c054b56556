//! `probe`: open a session with any RTMFP server, print what was negotiated, close it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::url::RtmfpUrl;
use crate::net::{os_seed, UdpDriver};
use crate::proto::endpoint::{EndpointConfig, Event, SessionId};
use crate::proto::epd::EndpointDiscriminator;
use crate::proto::session::{CloseReason, SessionEvent};
use crate::proto::Endpoint;

pub fn probe(url: &str, timeout: Duration) -> Result<()> {
    let url = RtmfpUrl::parse(url)?;
    let mut driver = UdpDriver::bind(
        unspecified_for(url.server),
        Endpoint::new(EndpointConfig::default(), os_seed()),
    )?;
    let now = driver.now();
    let sid = driver
        .endpoint
        .connect(now, url.server, EndpointDiscriminator::for_uri(&url.tc_url));
    let outcome = probe_session(&mut driver, sid, timeout)?;
    println!("{outcome}");
    Ok(())
}

/// The wildcard address of `server`'s family, for a client socket.
pub fn unspecified_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    }
}

/// Events the endpoint produced since the last call, until `stop` says so.
fn until(endpoint: &mut Endpoint, mut stop: impl FnMut(&Endpoint, Event) -> bool) -> bool {
    while let Some(e) = endpoint.poll_event() {
        if stop(endpoint, e) {
            return false;
        }
    }
    true
}

/// Opens, measures and closes one session; the text `probe` prints.
fn probe_session(
    driver: &mut UdpDriver<Endpoint>,
    sid: SessionId,
    timeout: Duration,
) -> Result<String> {
    let mut failure = None;
    let mut opened = false;
    driver.run(timeout, |ep, _| {
        until(ep, |_, event| match event {
            Event::SessionOpened { session, .. } if session == sid => {
                opened = true;
                true
            }
            Event::HandshakeFailed {
                session,
                failure: f,
            } if session == sid => {
                failure = Some(f);
                true
            }
            _ => false,
        })
    })?;
    if let Some(f) = failure {
        bail!("handshake failed: {f}");
    }
    if !opened {
        match driver.endpoint.handshake_step(sid) {
            Some(step) => bail!("handshake timed out after {timeout:?} at {step}"),
            None => bail!("handshake timed out after {timeout:?}"),
        }
    }
    // Measure a round trip with a ping before closing.
    let now = driver.now();
    if let Some(s) = driver.endpoint.session_mut(sid) {
        s.ping(now);
    }
    driver.run(Duration::from_millis(1500), |ep, _| {
        while ep.poll_event().is_some() {}
        ep.session(sid).is_some_and(|s| s.srtt().is_none())
    })?;
    let s = driver.endpoint.session(sid).context("session vanished")?;
    let info = s.info.clone();
    let rtt = s
        .srtt()
        .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "unknown".into());
    let peer = s.peer;
    let now = driver.now();
    if let Some(s) = driver.endpoint.session_mut(sid) {
        s.close(now);
    }
    let mut closed = false;
    driver.run(Duration::from_secs(5), |ep, _| {
        until(ep, |_, event| match event {
            Event::Session {
                session,
                event: SessionEvent::Closed(r),
            } if session == sid => {
                closed = r == CloseReason::LocalClose;
                true
            }
            _ => false,
        })
    })?;
    Ok(format!(
        "connected to {peer}\nlayout: {}\nDH group: {}\nHMAC: send {}, receive {}\nsession sequence numbers: send {}, receive {}\nRTT: {rtt}\nserver peer id: {}\nclose: {}",
        info.layout,
        info.dh_group,
        info.tx_hmac.map(|n| format!("{n} bytes")).unwrap_or_else(|| "no".into()),
        info.rx_hmac.map(|n| format!("{n} bytes")).unwrap_or_else(|| "no".into()),
        yes_no(info.tx_sequence_numbers),
        yes_no(info.rx_sequence_numbers),
        info.far_peer_id,
        if closed { "acknowledged" } else { "not acknowledged" },
    ))
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
