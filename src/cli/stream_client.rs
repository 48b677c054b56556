//! What `publish`, `play` and `demo` share: connect a [`FlashClient`] over UDP, create a
//! stream, and wait for the status a command should bring.

use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Result};

use super::probe::unspecified_for;
use super::url::RtmfpUrl;
use crate::flash::amf::Value;
use crate::flash::client::{ClientEvent, FlashClient};
use crate::flash::command::code;
use crate::net::{os_seed, UdpDriver};
use crate::proto::endpoint::EndpointConfig;
use crate::proto::Instant;

pub type ClientDriver = UdpDriver<FlashClient>;

/// A status that ends what a client was doing: the server no longer allows its
/// connection or its publication (its config was reloaded).
pub fn is_revocation(code: &str) -> bool {
    [
        code::CONNECT_REJECTED,
        code::CONNECT_INVALID_APP,
        code::PUBLISH_DENIED,
    ]
    .contains(&code)
}

/// Connects to the URL's app; fails with the server's code and description if refused.
pub fn connect(url: &RtmfpUrl, token: Option<String>, timeout: Duration) -> Result<ClientDriver> {
    connect_with(url, token, timeout, EndpointConfig::default())
}

/// [`connect`] with a chosen endpoint configuration (handshake layouts, say).
pub fn connect_with(
    url: &RtmfpUrl,
    token: Option<String>,
    timeout: Duration,
    config: EndpointConfig,
) -> Result<ClientDriver> {
    let args = token.into_iter().map(Value::from).collect();
    let seed = os_seed();
    // The client's clock starts with the driver's: connect at the driver's now.
    let mut driver = UdpDriver::bind(
        unspecified_for(url.server),
        FlashClient::connect(
            Instant::ZERO,
            url.server,
            &url.tc_url,
            &url.app,
            args,
            config,
            seed,
        ),
    )?;
    let mut outcome = None;
    driver.run(timeout, |c, _| {
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::Connected => outcome = Some(Ok(())),
                ClientEvent::Failed { code, description } => {
                    outcome = Some(Err(format!("{code}: {description}")))
                }
                ClientEvent::Closed(reason) => {
                    outcome = Some(Err(format!("session closed ({reason:?})")))
                }
                _ => {}
            }
        }
        outcome.is_none()
    })?;
    match outcome {
        Some(Ok(())) => Ok(driver),
        Some(Err(why)) => bail!("connecting to {} refused: {why}", url.tc_url),
        None => bail!("connecting to {}: no answer within {timeout:?}", url.tc_url),
    }
}

/// Creates a NetStream and returns its id.
pub fn create_stream(driver: &mut ClientDriver, timeout: Duration) -> Result<u32> {
    driver.endpoint.create_stream();
    let mut created = None;
    let mut closed = None;
    driver.run(timeout, |c, _| {
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::StreamCreated { stream_id } => created = Some(stream_id),
                ClientEvent::Closed(r) => closed = Some(r),
                _ => {}
            }
        }
        created.is_none() && closed.is_none()
    })?;
    match (created, closed) {
        (Some(id), _) => Ok(id),
        (None, Some(r)) => bail!("session closed ({r:?}) before createStream was answered"),
        (None, None) => bail!("createStream not answered within {timeout:?}"),
    }
}

/// Waits for an `onStatus` on `stream_id`: `Ok(code)` for one of `success`, an error
/// naming the code and description for anything at error level (codes outside
/// `success` that the caller cares about).
pub fn await_status(
    driver: &mut ClientDriver,
    stream_id: u32,
    success: &[&str],
    timeout: Duration,
    mut other: impl FnMut(ClientEvent),
) -> Result<String> {
    let deadline = StdInstant::now() + timeout;
    let mut result: Option<Result<String, String>> = None;
    while result.is_none() && StdInstant::now() < deadline {
        driver.run(
            deadline.saturating_duration_since(StdInstant::now()),
            |c, _| {
                while let Some(e) = c.poll_event() {
                    match e {
                        ClientEvent::Status {
                            stream_id: s,
                            code,
                            description,
                        } if s == stream_id => {
                            if success.contains(&code.as_str()) {
                                result = Some(Ok(code));
                            } else if code.contains("Failed")
                                || code.contains("BadName")
                                || code.contains("Denied")
                                || code.contains("NotFound")
                                || code.contains("Rejected")
                            {
                                result = Some(Err(format!("{code}: {description}")));
                            }
                        }
                        ClientEvent::Closed(r) => {
                            result = Some(Err(format!("session closed ({r:?})")))
                        }
                        e => other(e),
                    }
                    if result.is_some() {
                        return false;
                    }
                }
                true
            },
        )?;
    }
    match result {
        Some(Ok(code)) => Ok(code),
        Some(Err(why)) => bail!("{why}"),
        None => bail!("no {} within {timeout:?}", success.join(" or ")),
    }
}

/// Closes the session and waits (briefly) for the server to acknowledge.
pub fn close(driver: &mut ClientDriver) -> Result<()> {
    let now = driver.now();
    driver.endpoint.close(now);
    driver.run(Duration::from_secs(3), |c, _| {
        while let Some(e) = c.poll_event() {
            if matches!(e, ClientEvent::Closed(_)) {
                return false;
            }
        }
        true
    })?;
    Ok(())
}
