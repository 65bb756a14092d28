//! "Binary strings": how WebTorrent puts 20-byte ids in JSON. Each byte becomes the character
//! with that code point (0-255), so the JSON text holds 20 characters, not 40 hex digits. Bytes
//! 0x80-0xFF are two bytes of UTF-8 on the wire and control bytes are `\u00XX` escapes.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::WsError;

/// The 20 characters of `bytes` as a Rust string.
pub fn encode_binary_id(bytes: &[u8; 20]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The 20 bytes of a binary string: exactly 20 characters, each at most U+00FF.
pub fn decode_binary_id(text: &str, field: &'static str) -> Result<[u8; 20], WsError> {
    // Over the UTF-8 bytes rather than `chars()`: U+0000-U+007F is one byte, U+0080-U+00FF
    // two (lead byte 0xC2 or 0xC3), anything else is out of range. `text` is valid UTF-8, so
    // a lead byte is always followed by its continuation byte.
    let mut out = [0u8; 20];
    let mut bytes = text.as_bytes().iter();
    for slot in &mut out {
        let b = *bytes.next().ok_or(WsError::Invalid { field, reason: "not 20 characters" })?;
        *slot = match b {
            0..=0x7f => b,
            0xc2 | 0xc3 => {
                let next = bytes.next().copied().unwrap_or(0);
                ((b & 0x03) << 6) | (next & 0x3f)
            }
            _ => return Err(WsError::Invalid { field, reason: "character above U+00FF" }),
        };
    }
    if bytes.next().is_some() {
        return Err(WsError::Invalid { field, reason: "not 20 characters" });
    }
    Ok(out)
}

/// Appends `bytes` as a quoted JSON binary string, escaping what JSON requires.
pub fn push_json_binary_string(out: &mut String, bytes: &[u8]) {
    // Every id of every message the tracker sends goes through here. Ids are short: encode
    // them into a stack buffer as UTF-8 bytes (pushing chars one by one copies each
    // two-byte one separately), then append that with one check.
    if bytes.len() <= 32 {
        let mut buf = [0u8; 2 + 6 * 32];
        let mut n = 0;
        let mut put = |b: u8| {
            buf[n] = b;
            n += 1;
        };
        put(b'"');
        for &b in bytes {
            match b {
                b'"' | b'\\' => {
                    put(b'\\');
                    put(b);
                }
                0..=0x1f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    for e in [
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ] {
                        put(e);
                    }
                }
                0x20..=0x7f => put(b),
                _ => {
                    put(0xc0 | (b >> 6));
                    put(0x80 | (b & 0x3f));
                }
            }
        }
        put(b'"');
        // Always valid UTF-8 by construction; the slow path below stays the reference.
        if let Ok(text) = std::str::from_utf8(&buf[..n]) {
            out.push_str(text);
            return;
        }
    }
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            _ => out.push(char::from(b)),
        }
    }
    out.push('"');
}

/// A 20-byte id read from a binary string (for serde-derived wire structs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BinaryId(pub [u8; 20]);

impl<'de> Deserialize<'de> for BinaryId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BinaryId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string of 20 characters U+0000-U+00FF")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BinaryId, E> {
                decode_binary_id(v, "id").map(BinaryId).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A scrape's `info_hash`: one binary string or a list of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OneOrMany(pub Vec<[u8; 20]>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a binary string or a list of binary strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                decode_binary_id(v, "info_hash").map(|id| OneOrMany(vec![id])).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(BinaryId(id)) = seq.next_element()? {
                    if out.len() == super::MAX_SCRAPE_HASHES {
                        return Err(de::Error::custom(WsError::TooManyHashes(out.len() + 1)));
                    }
                    out.push(id);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_through_json() {
        for start in [0u8, 20, 40, 120, 200, 236] {
            let id: [u8; 20] = std::array::from_fn(|i| start.wrapping_add(i as u8));
            let mut json = String::new();
            push_json_binary_string(&mut json, &id);
            // What a JavaScript peer's JSON.parse would see is what serde_json sees.
            let text: String = serde_json::from_str(&json).unwrap();
            assert_eq!(text.chars().count(), 20);
            assert_eq!(decode_binary_id(&text, "x").unwrap(), id);
            assert_eq!(encode_binary_id(&id), text);
        }
    }

    #[test]
    fn rejects_wrong_lengths_and_wide_characters() {
        assert!(decode_binary_id(&"a".repeat(19), "x").is_err());
        assert!(decode_binary_id(&"a".repeat(21), "x").is_err());
        let wide = format!("{}\u{100}", "a".repeat(19));
        assert_eq!(
            decode_binary_id(&wide, "x"),
            Err(WsError::Invalid { field: "x", reason: "character above U+00FF" })
        );
        // 40 hex digits are not a binary string.
        assert!(decode_binary_id(&"ab".repeat(20), "x").is_err());
        // 20 bytes of UTF-8 that are fewer than 20 characters.
        assert!(decode_binary_id(&"é".repeat(10), "x").is_err());
    }
}
