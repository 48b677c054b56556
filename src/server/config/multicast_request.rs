//! The multicast form a publisher asks for in its stream name's query, as encoders set up
//! for Adobe Media Server's multicast service send it.
//!
//! AMS's multicast configurator writes a stream name for Flash Media Live Encoder such as
//! `livestream?fms.multicast.type=3&fms.multicast.groupspec=G%3A0101...`; the service's
//! `main.asc` reads the parameters and republishes the stream into that group. Its event
//! types are 1 = Fusion, 2 = IP multicast, 3 = P2P (the constants of that `main.asc`).
//! We read:
//!
//! | parameter | meaning |
//! |---|---|
//! | `fms.multicast.type` | `1` Fusion, `2` IP multicast, `3` P2P; also `fusion`, `ip`, `p2p` |
//! | `fms.multicast.groupspec` | the group, a groupspec `G:...` (percent-encoded or not), or a group name as `serve --group` takes it |
//! | `fms.multicast.address` | the IP multicast `ADDR:PORT`; required by types 1 and 2 |
//!
//! The type and the groupspec go together: one without the other is refused, as is an
//! address for P2P. AMS's own parameters beyond these (its IP multicast interface, its
//! peer-discovery variant of P2P) are not taken: the interface is the server's
//! (`[server] multicast_interface`).

use std::net::SocketAddr;

use thiserror::Error;

use super::request::Query;
use super::MulticastForm;
use crate::group::GroupSpec;

pub const TYPE_PARAM: &str = "fms.multicast.type";
pub const GROUPSPEC_PARAM: &str = "fms.multicast.groupspec";
pub const ADDRESS_PARAM: &str = "fms.multicast.address";

/// What a publisher asked for: its stream goes into `group`, as `form`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastRequest {
    pub group: GroupSpec,
    pub form: MulticastForm,
    /// Where IP multicast datagrams go (`Ip` and `Fusion`).
    pub address: Option<SocketAddr>,
}

/// Why a publisher's multicast parameters are refused (the publish is, with this reason).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MulticastRequestError {
    #[error("{TYPE_PARAM}={0:?} is not 1 (Fusion), 2 (IP multicast) or 3 (P2P)")]
    UnknownType(String),
    #[error("{TYPE_PARAM} needs {GROUPSPEC_PARAM}, the group to republish into")]
    NoGroup,
    #[error("{GROUPSPEC_PARAM} needs {TYPE_PARAM} (1 Fusion, 2 IP multicast, 3 P2P)")]
    NoType,
    #[error("{GROUPSPEC_PARAM}: {0}")]
    BadGroup(String),
    #[error("{TYPE_PARAM}={0} sends IP multicast: it needs {ADDRESS_PARAM}=ADDR:PORT")]
    NoAddress(u8),
    #[error("{ADDRESS_PARAM}={0:?} is not a multicast ADDR:PORT (224.0.0.0/4 or ff00::/8)")]
    BadAddress(String),
    #[error("{ADDRESS_PARAM} goes with types 1 (Fusion) and 2 (IP multicast), not P2P")]
    AddressWithoutIp,
}

impl MulticastRequest {
    /// The request in `query`, if it makes one: `Ok(None)` when it names none of the
    /// parameters.
    pub fn from_query(
        query: &Query<'_>,
    ) -> Result<Option<MulticastRequest>, MulticastRequestError> {
        let kind = query.get(TYPE_PARAM).filter(|v| !v.is_empty());
        let spec = query.get(GROUPSPEC_PARAM).filter(|v| !v.is_empty());
        let address = query.get(ADDRESS_PARAM).filter(|v| !v.is_empty());
        let (kind, spec) = match (kind, spec) {
            (None, None) if address.is_none() => return Ok(None),
            (None, None) => return Err(MulticastRequestError::AddressWithoutIp),
            (Some(_), None) => return Err(MulticastRequestError::NoGroup),
            (None, Some(_)) => return Err(MulticastRequestError::NoType),
            (Some(k), Some(s)) => (k, s),
        };
        let (number, form) = match kind.trim().to_ascii_lowercase().as_str() {
            "1" | "fusion" => (1, MulticastForm::Fusion),
            "2" | "ip" => (2, MulticastForm::Ip),
            "3" | "p2p" => (3, MulticastForm::P2p),
            _ => return Err(MulticastRequestError::UnknownType(kind.into_owned())),
        };
        let group = GroupSpec::from_name_or_spec(spec.trim())
            .map_err(|e| MulticastRequestError::BadGroup(e.to_string()))?;
        let address = match (address, form.uses_ip()) {
            (None, true) => return Err(MulticastRequestError::NoAddress(number)),
            (None, false) => None,
            (Some(_), false) => return Err(MulticastRequestError::AddressWithoutIp),
            (Some(text), true) => Some(
                text.trim()
                    .parse::<SocketAddr>()
                    .ok()
                    .filter(|a| a.ip().is_multicast() && a.port() != 0)
                    .ok_or_else(|| MulticastRequestError::BadAddress(text.into_owned()))?,
            ),
        };
        Ok(Some(MulticastRequest {
            group,
            form,
            address,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::RequestedStream;

    const SPEC: &str = "G:027f02010101000103010c050e74657374011b00";

    fn request(stream: &str) -> Result<Option<MulticastRequest>, MulticastRequestError> {
        MulticastRequest::from_query(&RequestedStream::parse(stream).query)
    }

    #[test]
    fn the_configurator_stream_names_parse() {
        // What AMS's configurator writes for P2P: the groupspec percent-encoded.
        let encoded = SPEC.replace(':', "%3A");
        let r = request(&format!(
            "livestream?fms.multicast.type=3&fms.multicast.groupspec={encoded}"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r.form, MulticastForm::P2p);
        assert_eq!(r.group, GroupSpec::parse(SPEC).unwrap());
        assert_eq!(r.address, None);
        let r = request(&format!(
            "cam?fms.multicast.type=1&fms.multicast.groupspec={SPEC}\
             &fms.multicast.address=239.1.2.3%3A30000&token=t"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r.form, MulticastForm::Fusion);
        assert_eq!(r.address, Some("239.1.2.3:30000".parse().unwrap()));
        let r = request("cam?fms.multicast.type=ip&fms.multicast.groupspec=event&fms.multicast.address=[ff15::7]:4000")
            .unwrap()
            .unwrap();
        assert_eq!(r.form, MulticastForm::Ip);
        assert_eq!(r.group, GroupSpec::from_name_or_spec("event").unwrap());
        assert_eq!(request("cam?token=abc"), Ok(None));
        assert_eq!(request("cam"), Ok(None));
    }

    #[test]
    fn incomplete_or_wrong_parameters_are_refused_with_the_reason() {
        use MulticastRequestError as E;
        let cases = [
            ("cam?fms.multicast.type=3", E::NoGroup),
            ("cam?fms.multicast.groupspec=g", E::NoType),
            (
                "cam?fms.multicast.type=4&fms.multicast.groupspec=g",
                E::UnknownType("4".into()),
            ),
            (
                "cam?fms.multicast.type=2&fms.multicast.groupspec=g",
                E::NoAddress(2),
            ),
            (
                "cam?fms.multicast.type=1&fms.multicast.groupspec=g&fms.multicast.address=10.0.0.1:5000",
                E::BadAddress("10.0.0.1:5000".into()),
            ),
            (
                "cam?fms.multicast.type=2&fms.multicast.groupspec=g&fms.multicast.address=239.1.1.1",
                E::BadAddress("239.1.1.1".into()),
            ),
            (
                "cam?fms.multicast.type=3&fms.multicast.groupspec=g&fms.multicast.address=239.1.1.1:9",
                E::AddressWithoutIp,
            ),
            ("cam?fms.multicast.address=239.1.1.1:9", E::AddressWithoutIp),
        ];
        for (stream, error) in cases {
            assert_eq!(request(stream), Err(error), "{stream}");
        }
        assert!(matches!(
            request("cam?fms.multicast.type=3&fms.multicast.groupspec=G:zz"),
            Err(E::BadGroup(_))
        ));
        // Every refusal names the parameter to fix.
        assert!(E::NoAddress(1)
            .to_string()
            .contains("fms.multicast.address"));
    }
}
