//! Variable Length Unsigned integers and option lists (RFC 7016 §2.1.2, §2.1.3).
//!
//! A VLU carries 7 bits per byte, most significant group first; the high bit of each byte
//! says "more bytes follow". An option is `length(VLU) type(VLU) value`, where a length of
//! zero is a *marker* that ends an option list (used by user data options).

use super::ParseError;

/// The longest VLU we emit or accept for a `u64` (ten 7-bit groups).
pub const MAX_VLU_LEN: usize = 10;

/// Number of bytes `value` takes as a VLU.
pub fn vlu_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Appends `value` as a VLU.
pub fn put_vlu(out: &mut Vec<u8>, value: u64) {
    let len = vlu_len(value);
    for i in (0..len).rev() {
        let group = ((value >> (7 * i)) & 0x7f) as u8;
        out.push(if i == 0 { group } else { group | 0x80 });
    }
}

/// A cursor over untrusted bytes: every read checks its length first and never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Everything not yet read, consuming it.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub fn peek_rest(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn u8(&mut self) -> Result<u8, ParseError> {
        let (&first, rest) = self.bytes.split_first().ok_or(ParseError::Truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    pub fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.bytes.len() < n {
            return Err(ParseError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// A VLU; values wider than 64 bits are rejected rather than wrapped.
    pub fn vlu(&mut self) -> Result<u64, ParseError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VLU_LEN {
            let byte = self.u8()?;
            if i == MAX_VLU_LEN - 1 && value >> 57 != 0 {
                return Err(ParseError::VluOverflow);
            }
            value = (value << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ParseError::VluOverflow)
    }

    /// A VLU length followed by that many bytes (RFC 7016 §2.1.2 "field").
    pub fn vlu_field(&mut self) -> Result<&'a [u8], ParseError> {
        let len = self.vlu()?;
        let len = usize::try_from(len).map_err(|_| ParseError::Truncated)?;
        self.take(len)
    }

    /// The next option, or `None` for a marker (zero-length option).
    pub fn option(&mut self) -> Result<Option<(u64, &'a [u8])>, ParseError> {
        let body = self.vlu_field()?;
        if body.is_empty() {
            return Ok(None);
        }
        let mut inner = Reader::new(body);
        let kind = inner.vlu()?;
        Ok(Some((kind, inner.rest())))
    }
}

/// Appends a VLU length and the bytes.
pub fn put_vlu_field(out: &mut Vec<u8>, bytes: &[u8]) {
    put_vlu(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends one option (RFC 7016 §2.1.3).
pub fn put_option(out: &mut Vec<u8>, kind: u64, value: &[u8]) {
    put_vlu(out, (vlu_len(kind) + value.len()) as u64);
    put_vlu(out, kind);
    out.extend_from_slice(value);
}

/// Appends an option whose value is a single VLU.
pub fn put_option_vlu(out: &mut Vec<u8>, kind: u64, value: u64) {
    let mut v = Vec::with_capacity(MAX_VLU_LEN);
    put_vlu(&mut v, value);
    put_option(out, kind, &v);
}

/// Appends the zero-length marker that ends an option list.
pub fn put_marker(out: &mut Vec<u8>) {
    out.push(0);
}

/// Iterates the options of a list up to (not including) the first marker.
/// Stops with an error item if the list is malformed.
pub fn options(bytes: &[u8]) -> OptionIter<'_> {
    OptionIter {
        reader: Reader::new(bytes),
        done: false,
    }
}

pub struct OptionIter<'a> {
    reader: Reader<'a>,
    done: bool,
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<(u64, &'a [u8]), ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.reader.is_empty() {
            return None;
        }
        match self.reader.option() {
            Ok(Some(opt)) => Some(Ok(opt)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// First option of `kind` in a list, if the list parses up to it.
pub fn find_option(bytes: &[u8], kind: u64) -> Option<&[u8]> {
    options(bytes)
        .map_while(Result::ok)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlu_round_trips_at_group_boundaries() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_vlu(&mut out, v);
            assert_eq!(out.len(), vlu_len(v));
            assert_eq!(Reader::new(&out).vlu().unwrap(), v);
        }
    }

    #[test]
    fn vlu_known_encodings() {
        let mut out = Vec::new();
        put_vlu(&mut out, 130);
        assert_eq!(out, [0x81, 0x02]);
    }

    #[test]
    fn vlu_rejects_truncation_and_overflow() {
        assert_eq!(Reader::new(&[0x81]).vlu(), Err(ParseError::Truncated));
        assert_eq!(Reader::new(&[0xff; 11]).vlu(), Err(ParseError::VluOverflow));
    }

    #[test]
    fn option_list_stops_at_marker() {
        let mut out = Vec::new();
        put_option(&mut out, 0x15, &[2]);
        put_marker(&mut out);
        put_option(&mut out, 0x15, &[14]);
        let all: Vec<_> = options(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!(all, vec![(0x15, &[2u8][..])]);
    }
}
