//! Bencode (BEP 3), zero-copy and strict.
//!
//! Decoded values borrow from the input, and every dictionary keeps the span of its original
//! bytes: the info hash is SHA-1 over the `info` dictionary exactly as it was sent, so it must
//! never be re-encoded. Decoding rejects what the format forbids (leading zeros, `-0`,
//! duplicate keys, trailing bytes) and is bounded in nesting depth and in value count, so a
//! hostile input cannot exhaust the stack or memory.

use std::fmt;

use thiserror::Error;

/// How deeply lists and dictionaries may nest before decoding gives up.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// How many values (of any kind) one decode may produce.
pub const DEFAULT_MAX_VALUES: usize = 4_000_000;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BencodeError {
    #[error("bencode: unexpected end of input at byte {0}")]
    UnexpectedEof(usize),
    #[error("bencode: unexpected byte {byte:#04x} at byte {at}")]
    UnexpectedByte { byte: u8, at: usize },
    #[error("bencode: malformed integer at byte {0}")]
    BadInteger(usize),
    #[error("bencode: malformed string length at byte {0}")]
    BadLength(usize),
    #[error("bencode: string at byte {at} claims {len} bytes, past the end of input")]
    StringTooLong { at: usize, len: u64 },
    #[error("bencode: dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    #[error("bencode: duplicate dictionary key at byte {0}")]
    DuplicateKey(usize),
    #[error("bencode: nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("bencode: more than {0} values")]
    TooManyValues(usize),
    #[error("bencode: {0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// A decoded value borrowing from the input buffer.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary in input order, with its original encoded bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    raw: &'a [u8],
}

impl<'a> Dict<'a> {
    /// The value under `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn get_int(&self, key: &[u8]) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }

    pub fn get_bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key).and_then(Value::as_bytes)
    }

    /// A UTF-8 string value; `None` if absent or not valid UTF-8.
    pub fn get_str(&self, key: &[u8]) -> Option<&'a str> {
        self.get_bytes(key).and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn get_list(&self, key: &[u8]) -> Option<&[Value<'a>]> {
        self.get(key).and_then(Value::as_list)
    }

    pub fn get_dict(&self, key: &[u8]) -> Option<&Dict<'a>> {
        self.get(key).and_then(Value::as_dict)
    }

    /// The dictionary's bytes exactly as they appeared in the input.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Re-encodes the value. Dictionaries are written from their original bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.value(self);
        enc.finish()
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if b.len() <= 256 => write!(f, "{s:?}"),
                _ => write!(f, "<{} bytes>", b.len()),
            },
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => fmt::Debug::fmt(d, f),
        }
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (String::from_utf8_lossy(k), v)))
            .finish()
    }
}

/// Bounds applied while decoding untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: DEFAULT_MAX_DEPTH, max_values: DEFAULT_MAX_VALUES }
    }
}

/// Decodes exactly one value that must span the whole buffer.
pub fn decode(buf: &[u8]) -> Result<Value<'_>, BencodeError> {
    decode_with(buf, Limits::default())
}

/// As [`decode`], with explicit limits.
pub fn decode_with(buf: &[u8], limits: Limits) -> Result<Value<'_>, BencodeError> {
    let (value, used) = decode_prefix_with(buf, limits)?;
    if used != buf.len() {
        return Err(BencodeError::TrailingBytes(buf.len() - used));
    }
    Ok(value)
}

/// Decodes one value from the start of `buf` and returns it with the number of bytes it took.
/// Used where a bencoded header is followed by raw payload (BEP 9 `ut_metadata` data).
pub fn decode_prefix(buf: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    decode_prefix_with(buf, Limits::default())
}

pub fn decode_prefix_with(buf: &[u8], limits: Limits) -> Result<(Value<'_>, usize), BencodeError> {
    let mut decoder = Decoder { buf, pos: 0, values: 0, limits };
    let value = decoder.value(0)?;
    Ok((value, decoder.pos))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
    limits: Limits,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.buf.get(self.pos).copied().ok_or(BencodeError::UnexpectedEof(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(BencodeError::TooManyValues(self.limits.max_values));
        }
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                let depth = self.enter(depth)?;
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let depth = self.enter(depth)?;
                let start = self.pos;
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString(key_at));
                    }
                    let key = self.bytes()?;
                    // Input is normally sorted, so a duplicate can only be the previous key;
                    // fall back to a scan when it is not.
                    let duplicate = match entries.last() {
                        Some((last, _)) if *last < key => false,
                        Some(_) => entries.iter().any(|(k, _)| *k == key),
                        None => false,
                    };
                    if duplicate {
                        return Err(BencodeError::DuplicateKey(key_at));
                    }
                    let value = self.value(depth)?;
                    entries.push((key, value));
                }
                self.pos += 1;
                Ok(Value::Dict(Dict { entries, raw: &self.buf[start..self.pos] }))
            }
            byte => Err(BencodeError::UnexpectedByte { byte, at: self.pos }),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, BencodeError> {
        if depth >= self.limits.max_depth {
            return Err(BencodeError::TooDeep(self.limits.max_depth));
        }
        Ok(depth + 1)
    }

    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let end = self.buf[self.pos..]
            .iter()
            .position(|&b| b == b'e')
            .map(|i| self.pos + i)
            .ok_or(BencodeError::UnexpectedEof(self.buf.len()))?;
        let digits = &self.buf[self.pos..end];
        let (negative, magnitude) = match digits.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, digits),
        };
        let well_formed = !magnitude.is_empty()
            && magnitude.iter().all(u8::is_ascii_digit)
            && (magnitude.len() == 1 || magnitude[0] != b'0')
            && (!negative || magnitude != b"0");
        if !well_formed {
            return Err(BencodeError::BadInteger(start));
        }
        // Safe: checked ASCII digits above.
        let text = std::str::from_utf8(digits).map_err(|_| BencodeError::BadInteger(start))?;
        let value = text.parse::<i64>().map_err(|_| BencodeError::BadInteger(start))?;
        self.pos = end + 1;
        Ok(value)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let colon = self.buf[self.pos..]
            .iter()
            .take(21)
            .position(|&b| b == b':')
            .map(|i| self.pos + i)
            .ok_or(if self.buf.len() - self.pos < 21 {
                BencodeError::UnexpectedEof(self.buf.len())
            } else {
                BencodeError::BadLength(start)
            })?;
        let digits = &self.buf[self.pos..colon];
        if digits.is_empty()
            || !digits.iter().all(u8::is_ascii_digit)
            || (digits.len() > 1 && digits[0] == b'0')
        {
            return Err(BencodeError::BadLength(start));
        }
        let len: u64 = digits
            .iter()
            .try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .ok_or(BencodeError::BadLength(start))?;
        let body = colon + 1;
        let remaining = (self.buf.len() - body) as u64;
        if len > remaining {
            return Err(BencodeError::StringTooLong { at: start, len });
        }
        let end = body + len as usize;
        self.pos = end;
        Ok(&self.buf[body..end])
    }
}

/// Writes bencode. Dictionary keys must be written in sorted order, which the caller controls;
/// debug builds check it.
#[derive(Default)]
pub struct Encoder {
    out: Vec<u8>,
    #[cfg(debug_assertions)]
    last_keys: Vec<Option<Vec<u8>>>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.out.push(b'i');
        self.out.extend_from_slice(value.to_string().as_bytes());
        self.out.push(b'e');
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(value.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(value);
        self
    }

    pub fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    /// Writes a dictionary key (the next call writes its value).
    pub fn key(&mut self, key: &[u8]) -> &mut Self {
        #[cfg(debug_assertions)]
        if let Some(Some(last)) = self.last_keys.last() {
            debug_assert!(last.as_slice() < key, "bencode keys out of order: {key:?}");
        }
        #[cfg(debug_assertions)]
        if let Some(slot) = self.last_keys.last_mut() {
            *slot = Some(key.to_vec());
        }
        self.bytes(key)
    }

    pub fn begin_list(&mut self) -> &mut Self {
        self.out.push(b'l');
        #[cfg(debug_assertions)]
        self.last_keys.push(None);
        self
    }

    pub fn begin_dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        #[cfg(debug_assertions)]
        self.last_keys.push(None);
        self
    }

    /// Closes the innermost list or dictionary.
    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        #[cfg(debug_assertions)]
        self.last_keys.pop();
        self
    }

    /// Appends already-encoded bencode verbatim (e.g. an `info` dictionary's original bytes).
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.out.extend_from_slice(encoded);
        self
    }

    pub fn value(&mut self, value: &Value<'_>) -> &mut Self {
        match value {
            Value::Int(i) => self.int(*i),
            Value::Bytes(b) => self.bytes(b),
            Value::List(items) => {
                self.out.push(b'l');
                for item in items {
                    self.value(item);
                }
                self.out.push(b'e');
                self
            }
            Value::Dict(d) => self.raw(d.raw()),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_scalars_and_containers() {
        assert_eq!(decode(b"i42e").unwrap(), Value::Int(42));
        assert_eq!(decode(b"i-7e").unwrap(), Value::Int(-7));
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(decode(b"4:spam").unwrap(), Value::Bytes(b"spam"));
        assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
        let v = decode(b"l4:spami3ee").unwrap();
        assert_eq!(v, Value::List(vec![Value::Bytes(b"spam"), Value::Int(3)]));
        let v = decode(b"d3:cow3:moo4:spamd1:ai1eee").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.get_str(b"cow"), Some("moo"));
        assert_eq!(d.get_dict(b"spam").unwrap().raw(), b"d1:ai1ee");
        assert_eq!(d.raw(), b"d3:cow3:moo4:spamd1:ai1eee");
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"i-e",
            b"i1",
            b"i9223372036854775808e",
            b"01:a",
            b"5:abc",
            b"l",
            b"d1:a",
            b"di1ei2ee",
            b"d1:ai1e1:ai2ee",
            b"x",
            b"",
            b"-1:a",
            b"99999999999999999999999:a",
        ] {
            assert!(decode(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(b"i1ei2e"), Err(BencodeError::TrailingBytes(3)));
    }

    #[test]
    fn bounds_depth_and_count() {
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert_eq!(decode(deep.as_bytes()), Err(BencodeError::TooDeep(DEFAULT_MAX_DEPTH)));
        let limits = Limits { max_depth: 8, max_values: 3 };
        assert_eq!(decode_with(b"li1ei2ei3ee", limits), Err(BencodeError::TooManyValues(3)));
    }

    #[test]
    fn prefix_reports_consumed_length() {
        let (v, used) = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWDATA").unwrap();
        assert_eq!(used, 25);
        assert_eq!(v.as_dict().unwrap().get_int(b"piece"), Some(0));
    }

    #[test]
    fn encoder_round_trips() {
        let mut e = Encoder::new();
        e.begin_dict().key(b"a").int(-3).key(b"b").begin_list().str("x").bytes(b"").end().end();
        let out = e.finish();
        assert_eq!(out, b"d1:ai-3e1:bl1:x0:ee");
        assert_eq!(decode(&out).unwrap().encode(), out);
    }
}
