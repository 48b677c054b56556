//! Looking into a handshake datagram without an endpoint: which peer an IHello asks to
//! be introduced to. A server with several shards uses it to find the shard holding the
//! target's session, since handshakes (session 0) land on any shard.

use super::chunk::{Chunk, PacketView};
use super::cipher::PacketCipher;
use super::epd::{EndpointDiscriminator, PeerId};
use super::packet::unscramble_session_id;

/// The peer ID an IHello datagram names, if it is one (session 0, startup key, an
/// IHello chunk whose EPD is a peer ID). Anything else, malformed included, is `None`.
pub fn ihello_target(datagram: &[u8]) -> Option<PeerId> {
    if unscramble_session_id(datagram)? != 0 {
        return None;
    }
    let mut plain = Vec::with_capacity(datagram.len());
    let range = PacketCipher::startup()
        .open(&datagram[4..], &mut plain)
        .ok()?;
    let view = PacketView::parse(&plain[range]).ok()?;
    view.chunks().find_map(|chunk| match chunk {
        Ok(Chunk::IHello { epd, .. }) => EndpointDiscriminator::parse(epd).ok()?.fingerprint,
        _ => None,
    })
}
