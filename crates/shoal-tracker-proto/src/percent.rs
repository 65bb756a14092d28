//! Percent-encoding of binary query values (info hashes and peer ids are raw bytes, not text).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PercentError {
    #[error("bad percent escape at byte {0}")]
    BadEscape(usize),
}

/// Appends `bytes` to `out`, escaping every byte outside RFC 3986's unreserved set, so any
/// byte value survives any server's query parser.
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

/// Decodes a query value. `+` means a space, as in HTML form encoding, since common HTTP
/// libraries (Python's `urlencode` among them) write spaces that way; a literal `+` arrives as
/// `%2B` from any client that escapes binary values properly.
pub fn decode(text: &str) -> Result<Vec<u8>, PercentError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(PercentError::BadEscape(i)),
                }
                i += 3;
            }
            b'+' => {
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

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let text = encode(&all);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        assert_eq!(decode(&text).unwrap(), all);
    }

    #[test]
    fn unreserved_bytes_stay_literal() {
        assert_eq!(encode(b"aZ09-._~ /"), "aZ09-._~%20%2F");
        assert_eq!(encode(&[0x12, 0xab]), "%12%AB");
    }

    #[test]
    fn decoding_is_strict_about_escapes() {
        assert_eq!(decode("a%2bb+c%2B").unwrap(), b"a+b c+");
        assert_eq!(decode("%"), Err(PercentError::BadEscape(0)));
        assert_eq!(decode("ab%4"), Err(PercentError::BadEscape(2)));
        assert_eq!(decode("%zz"), Err(PercentError::BadEscape(0)));
    }
}
