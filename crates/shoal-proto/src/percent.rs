//! Percent-encoding (RFC 3986) of bytes in URIs: magnet links and tracker queries both carry
//! binary values (info hashes, peer ids) and free text.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PercentError {
    #[error("bad percent escape at byte {0}")]
    BadEscape(usize),
}

/// What a literal `+` means when decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plus {
    /// HTML form encoding: HTTP query strings written by common libraries use `+` for spaces.
    Space,
    /// Plain URI components (magnet links, as WebTorrent writes them): `+` is itself.
    Literal,
}

/// Appends `bytes` to `out`, escaping every byte outside RFC 3986's unreserved set, so any
/// byte value survives any parser.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Percent-encodes `bytes` into a new string.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    encode_into(bytes, &mut out);
    out
}

/// Decodes a percent-encoded value.
pub fn decode(text: &str, plus: Plus) -> Result<Vec<u8>, PercentError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(crate::types::hex_val);
                let lo = bytes.get(i + 2).copied().and_then(crate::types::hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(PercentError::BadEscape(i)),
                }
                i += 3;
            }
            b'+' if plus == Plus::Space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let text = encode(&all);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        assert_eq!(decode(&text, Plus::Space).unwrap(), all);
    }

    #[test]
    fn unreserved_bytes_stay_literal() {
        assert_eq!(encode(b"aZ09-._~ /"), "aZ09-._~%20%2F");
        assert_eq!(encode(&[0x12, 0xab]), "%12%AB");
    }

    #[test]
    fn decoding_is_strict_about_escapes() {
        assert_eq!(decode("a%2bb+c%2B", Plus::Space).unwrap(), b"a+b c+");
        assert_eq!(decode("%", Plus::Space), Err(PercentError::BadEscape(0)));
        assert_eq!(decode("ab%4", Plus::Space), Err(PercentError::BadEscape(2)));
        assert_eq!(decode("%zz", Plus::Space), Err(PercentError::BadEscape(0)));
    }
}
