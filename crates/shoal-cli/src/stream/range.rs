//! The `Range` request header (RFC 9110 §14), as media players send it.
//!
//! One byte range is served as a 206; a header asking for several ranges is answered with the
//! whole file (RFC 9110 lets a server ignore `Range`; players never ask for several). What is
//! not a byte range at all is refused with 400, so a broken client finds out at once instead
//! of silently receiving a whole film.

use thiserror::Error;

/// The header's length at most; real ones are a few dozen bytes.
const MAX_HEADER_LEN: usize = 1024;

/// What to send for a request's `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range (or several): the whole file, 200.
    Full,
    /// Bytes `start..=end` of the file, 206.
    Partial { start: u64, end: u64 },
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RangeError {
    #[error("malformed Range header: {0}")]
    Malformed(&'static str),
    /// Starts at or past the end of the file (416).
    #[error("the range is outside the file")]
    Unsatisfiable,
}

/// Interprets a `Range` header value for a file of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> Result<RangeRequest, RangeError> {
    let Some(header) = header else { return Ok(RangeRequest::Full) };
    if header.len() > MAX_HEADER_LEN {
        return Err(RangeError::Malformed("too long"));
    }
    let (unit, set) = header.split_once('=').ok_or(RangeError::Malformed("no '='"))?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Err(RangeError::Malformed("the unit is not bytes"));
    }
    let specs: Vec<&str> = set.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut parsed = Vec::with_capacity(specs.len());
    for spec in &specs {
        parsed.push(parse_spec(spec)?);
    }
    match parsed.as_slice() {
        [] => Err(RangeError::Malformed("no range")),
        [one] => resolve(*one, len),
        // Several ranges: each must be well-formed, but the answer is the whole file.
        _ => Ok(RangeRequest::Full),
    }
}

#[derive(Clone, Copy, Debug)]
enum Spec {
    /// `a-b` or `a-`.
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

fn parse_spec(spec: &str) -> Result<Spec, RangeError> {
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed("no '-' in a range"))?;
    let number = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RangeError::Malformed("a position is not a number"));
        }
        s.parse().map_err(|_| RangeError::Malformed("a position is too large"))
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return Ok(Spec::Suffix(number(last)?));
    }
    let start = number(first)?;
    let end = if last.is_empty() { None } else { Some(number(last)?) };
    if end.is_some_and(|e| e < start) {
        return Err(RangeError::Malformed("a range ends before it starts"));
    }
    Ok(Spec::From { start, end })
}

fn resolve(spec: Spec, len: u64) -> Result<RangeRequest, RangeError> {
    match spec {
        Spec::From { start, end } => {
            if start >= len {
                return Err(RangeError::Unsatisfiable);
            }
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            Ok(RangeRequest::Partial { start, end })
        }
        Spec::Suffix(0) => Err(RangeError::Unsatisfiable),
        Spec::Suffix(n) => {
            if len == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            Ok(RangeRequest::Partial { start: len.saturating_sub(n), end: len - 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(start: u64, end: u64) -> Result<RangeRequest, RangeError> {
        Ok(RangeRequest::Partial { start, end })
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None, 100), Ok(RangeRequest::Full));
        assert_eq!(parse(Some("bytes=0-0"), 100), partial(0, 0));
        assert_eq!(parse(Some("bytes=10-"), 100), partial(10, 99));
        assert_eq!(parse(Some("bytes=10-1000"), 100), partial(10, 99));
        assert_eq!(parse(Some("bytes=-1"), 100), partial(99, 99));
        assert_eq!(parse(Some("bytes=-500"), 100), partial(0, 99));
        assert_eq!(parse(Some("Bytes = 5 - 6"), 100), partial(5, 6));
        assert_eq!(parse(Some("bytes=99-99"), 100), partial(99, 99));
    }

    #[test]
    fn several_ranges_mean_the_whole_file() {
        assert_eq!(parse(Some("bytes=0-1, 5-6"), 100), Ok(RangeRequest::Full));
        assert!(parse(Some("bytes=0-1, x-6"), 100).is_err());
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse(Some("bytes=100-"), 100), Err(RangeError::Unsatisfiable));
        assert_eq!(parse(Some("bytes=100-200"), 100), Err(RangeError::Unsatisfiable));
        assert_eq!(parse(Some("bytes=-0"), 100), Err(RangeError::Unsatisfiable));
        assert_eq!(parse(Some("bytes=0-"), 0), Err(RangeError::Unsatisfiable));
        assert_eq!(parse(Some("bytes=-5"), 0), Err(RangeError::Unsatisfiable));
    }

    #[test]
    fn malformed() {
        for bad in [
            "bytes",
            "bytes=",
            "bytes=abc",
            "bytes=5-2",
            "items=0-1",
            "bytes=1",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=0x10-",
            "bytes=99999999999999999999999-",
        ] {
            assert!(
                matches!(parse(Some(bad), 100), Err(RangeError::Malformed(_))),
                "{bad:?} accepted"
            );
        }
        assert!(parse(Some(&format!("bytes={}", "0-1,".repeat(400))), 100).is_err());
    }
}
