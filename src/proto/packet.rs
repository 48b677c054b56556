//! The packet layer: multiplex (scrambled session id, RFC 7016 §2.2.2) and the common
//! packet header (flags, timestamps, RFC 7016 §2.2.4). Encryption lives in `cipher`.

use super::vlu::Reader;
use super::ParseError;

/// RFC 7016 §2.2.4 header flags.
pub const FLAG_TIME_CRITICAL: u8 = 0x80;
pub const FLAG_TIME_CRITICAL_REVERSE: u8 = 0x40;
pub const FLAG_TIMESTAMP: u8 = 0x08;
pub const FLAG_TIMESTAMP_ECHO: u8 = 0x04;
const MODE_MASK: u8 = 0x03;

/// Largest packet (after the session id, before encryption) we send in an open session:
/// leaves room for IPv6 + UDP + session id + padding + HMAC under a 1280-byte path MTU.
pub const MAX_SESSION_PACKET: usize = 1192;
/// Largest startup (handshake) packet we accept or send (certificates with 4096-bit keys).
pub const MAX_STARTUP_PACKET: usize = 4256;
/// The smallest UDP payload that can be RTMFP under the Flash profile: a session id and
/// one AES block.
pub const MIN_DATAGRAM: usize = 4 + 16;

/// Who sent a packet (RFC 7016 §2.2.4 "mod").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Initiator = 1,
    Responder = 2,
    Startup = 3,
}

impl Mode {
    pub fn from_flags(flags: u8) -> Option<Mode> {
        match flags & MODE_MASK {
            1 => Some(Mode::Initiator),
            2 => Some(Mode::Responder),
            3 => Some(Mode::Startup),
            _ => None,
        }
    }
}

/// The plaintext header at the start of every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub mode: Mode,
    pub time_critical: bool,
    pub time_critical_reverse: bool,
    pub timestamp: Option<u16>,
    pub timestamp_echo: Option<u16>,
}

impl PacketHeader {
    pub fn new(mode: Mode) -> Self {
        PacketHeader {
            mode,
            time_critical: false,
            time_critical_reverse: false,
            timestamp: None,
            timestamp_echo: None,
        }
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let flags = r.u8()?;
        let mode = Mode::from_flags(flags).ok_or(ParseError::BadValue)?;
        let timestamp = if flags & FLAG_TIMESTAMP != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        let timestamp_echo = if flags & FLAG_TIMESTAMP_ECHO != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        Ok(PacketHeader {
            mode,
            time_critical: flags & FLAG_TIME_CRITICAL != 0,
            time_critical_reverse: flags & FLAG_TIME_CRITICAL_REVERSE != 0,
            timestamp,
            timestamp_echo,
        })
    }

    pub fn flags(&self) -> u8 {
        let mut flags = self.mode as u8;
        if self.time_critical {
            flags |= FLAG_TIME_CRITICAL;
        }
        if self.time_critical_reverse {
            flags |= FLAG_TIME_CRITICAL_REVERSE;
        }
        if self.timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        if self.timestamp_echo.is_some() {
            flags |= FLAG_TIMESTAMP_ECHO;
        }
        flags
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.flags());
        if let Some(ts) = self.timestamp {
            out.extend_from_slice(&ts.to_be_bytes());
        }
        if let Some(tse) = self.timestamp_echo {
            out.extend_from_slice(&tse.to_be_bytes());
        }
    }

    pub fn len(&self) -> usize {
        1 + 2 * usize::from(self.timestamp.is_some())
            + 2 * usize::from(self.timestamp_echo.is_some())
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// RFC 7016 §2.2.2: the first 32-bit word of a datagram is the session id XOR the next two
/// words of ciphertext. Returns `None` for a datagram too short to carry them.
pub fn unscramble_session_id(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < 12 {
        return None;
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            datagram[i],
            datagram[i + 1],
            datagram[i + 2],
            datagram[i + 3],
        ])
    };
    Some(word(0) ^ word(4) ^ word(8))
}

/// Writes the scrambled session id into `datagram[0..4]`, given that the ciphertext
/// already sits at `datagram[4..]`.
pub fn scramble_session_id(datagram: &mut [u8], session_id: u32) {
    let mut words = [0u32; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut b = [0u8; 4];
        let start = 4 + 4 * i;
        let end = (start + 4).min(datagram.len());
        if start < end {
            b[..end - start].copy_from_slice(&datagram[start..end]);
        }
        *w = u32::from_be_bytes(b);
    }
    let scrambled = session_id ^ words[0] ^ words[1];
    datagram[..4].copy_from_slice(&scrambled.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrambling_round_trips() {
        let mut d = vec![0u8; 36];
        for (i, b) in d.iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        scramble_session_id(&mut d, 0x0102_0304);
        assert_eq!(unscramble_session_id(&d), Some(0x0102_0304));
    }

    #[test]
    fn header_round_trips_every_flag_combination() {
        for flags in 0u8..=255 {
            let Some(mode) = Mode::from_flags(flags) else {
                continue;
            };
            let mut h = PacketHeader::new(mode);
            h.time_critical = flags & FLAG_TIME_CRITICAL != 0;
            h.time_critical_reverse = flags & FLAG_TIME_CRITICAL_REVERSE != 0;
            h.timestamp = (flags & FLAG_TIMESTAMP != 0).then_some(0x1234);
            h.timestamp_echo = (flags & FLAG_TIMESTAMP_ECHO != 0).then_some(0xfedc);
            let mut out = Vec::new();
            h.emit(&mut out);
            assert_eq!(out.len(), h.len());
            assert_eq!(PacketHeader::parse(&mut Reader::new(&out)).unwrap(), h);
        }
    }

    #[test]
    fn mode_zero_is_rejected() {
        assert!(PacketHeader::parse(&mut Reader::new(&[0x08, 0, 1])).is_err());
    }
}
