//! BEP 19 web seeds ("GetRight style" `url-list`), the HTTP side, sans-IO: which requests
//! fetch a byte range of a torrent from a web seed, whether a response may be used, and how
//! the bodies become the torrent's bytes.
//!
//! A driver (tokio + reqwest natively, `fetch()` in the browser) carries out a [`FetchPlan`]:
//! for each [`HttpRange`] it sends `GET url` with [`HttpRange::range_header`], hands the status
//! and headers to [`check_response`], and streams the body into an [`Assembler`], which refuses
//! a single byte more than was asked. BEP 47 padding files are never requested: their bytes
//! are zeros, filled in by the assembler.
//!
//! When to fetch what from which seed is the torrent's business (`torrent/webseeds.rs`).

use std::ops::Range;

use bytes::Bytes;
use thiserror::Error;

use crate::metainfo::Info;
use crate::percent;

/// Longest web seed URL accepted.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WebSeedError {
    #[error("not an http(s) URL: {0:?}")]
    BadUrl(String),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("HTTP 416: the server's file is shorter than the torrent says")]
    RangeNotSatisfiable,
    #[error("the server ignored the Range header (200 OK for part of a file)")]
    RangeIgnored,
    #[error("Content-Range {got:?} does not match the requested bytes {start}-{last}/{total}")]
    ContentRange { got: String, start: u64, last: u64, total: u64 },
    #[error("206 Partial Content without a Content-Range")]
    MissingContentRange,
    #[error("Content-Length is {got}, but {expected} bytes were asked for")]
    ContentLength { got: u64, expected: u64 },
    #[error("the body is longer than the {0} bytes asked for")]
    TooLong(u64),
    #[error("the body ended after {got} of {expected} bytes")]
    TooShort { got: u64, expected: u64 },
    /// Whatever the driver's HTTP stack reports: refused connections, timeouts, resets.
    #[error("{0}")]
    Transport(String),
}

/// One HTTP request of a fetch: a byte range of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRange {
    pub url: String,
    /// The file's index in [`Info::files`].
    pub file: usize,
    /// Bytes of the file, end exclusive.
    pub start: u64,
    pub end: u64,
    /// The file's whole length: what a `Content-Range` total must say.
    pub file_length: u64,
    /// Where `start` lies in the torrent's content.
    pub torrent_offset: u64,
}

impl HttpRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The value of the `Range` header (inclusive end, as HTTP has it).
    pub fn range_header(&self) -> String {
        format!("bytes={}-{}", self.start, self.end - 1)
    }

    /// Whether the whole file is asked for, so a plain `200 OK` is an acceptable answer.
    pub fn is_whole_file(&self) -> bool {
        self.start == 0 && self.end == self.file_length
    }
}

/// The requests that fetch `range` of the torrent's content from one web seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    /// Bytes of the torrent's content, end exclusive.
    pub range: Range<u64>,
    /// In content order; padding files have none.
    pub requests: Vec<HttpRange>,
}

impl FetchPlan {
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// Checks that `url` can be a web seed: http or https with a host, no spaces or controls.
pub fn check_url(url: &str) -> Result<(), WebSeedError> {
    let bad = || WebSeedError::BadUrl(url.chars().take(200).collect());
    if url.len() > MAX_URL_LEN || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(bad());
    }
    Ok(())
}

/// The URL of file `file` at the web seed `base` (BEP 19): a single-file torrent is the URL
/// itself, or the URL plus the torrent's name when it ends with `/`; a multi-file torrent's
/// files are under `base/name/dirs/file`, each component percent-encoded.
pub fn file_url(info: &Info, base: &str, file: usize) -> Option<String> {
    let entry = info.files.get(file)?;
    let mut url = base.to_owned();
    if !info.multi_file {
        if url.ends_with('/') {
            percent::encode_into(info.name.as_bytes(), &mut url);
        }
        return Some(url);
    }
    // A multi-file seed is a folder whatever its URL says (libtorrent does the same).
    if !url.ends_with('/') {
        url.push('/');
    }
    for (i, component) in entry.path.iter().enumerate() {
        if i > 0 {
            url.push('/');
        }
        percent::encode_into(component.as_bytes(), &mut url);
    }
    Some(url)
}

/// The requests for `range` of the content (clamped to the torrent): one per file it
/// overlaps, padding files skipped.
pub fn plan(info: &Info, base: &str, range: Range<u64>) -> FetchPlan {
    let range = range.start.min(info.total_length)..range.end.min(info.total_length);
    let mut requests = Vec::new();
    for (file, within) in info.file_slices(range.clone()) {
        let entry = &info.files[file];
        if entry.padding {
            continue;
        }
        let Some(url) = file_url(info, base, file) else { continue };
        requests.push(HttpRange {
            url,
            file,
            start: within.start,
            end: within.end,
            file_length: entry.length,
            torrent_offset: entry.offset + within.start,
        });
    }
    FetchPlan { range, requests }
}

/// Whether a response's status and headers answer `request`: `206` with exactly the asked
/// `Content-Range` (and the file's length as its total, when given), or `200` only when the
/// whole file was asked for. A `Content-Length`, when present, must be the asked length.
pub fn check_response(
    request: &HttpRange,
    status: u16,
    content_range: Option<&str>,
    content_length: Option<u64>,
) -> Result<(), WebSeedError> {
    match status {
        206 => {
            let got = content_range.ok_or(WebSeedError::MissingContentRange)?;
            let matches = parse_content_range(got).is_some_and(|(start, last, total)| {
                start == request.start
                    && last + 1 == request.end
                    && total.is_none_or(|t| t == request.file_length)
            });
            if !matches {
                return Err(WebSeedError::ContentRange {
                    got: got.chars().take(100).collect(),
                    start: request.start,
                    last: request.end - 1,
                    total: request.file_length,
                });
            }
        }
        200 if request.is_whole_file() => {}
        200 => return Err(WebSeedError::RangeIgnored),
        416 => return Err(WebSeedError::RangeNotSatisfiable),
        other => return Err(WebSeedError::Status(other)),
    }
    match content_length {
        Some(got) if got != request.len() => {
            Err(WebSeedError::ContentLength { got, expected: request.len() })
        }
        _ => Ok(()),
    }
}

/// `bytes START-LAST/TOTAL` (TOTAL may be `*`).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (start, last) = span.trim().split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (start, last) = (number(start)?, number(last)?);
    let total = match total.trim() {
        "*" => None,
        t => Some(number(t)?),
    };
    (start <= last).then_some((start, last, total))
}

/// Puts the bodies of a plan's requests together into the plan's bytes. Padding is zeros from
/// the start; each request's body must fill exactly its own slot.
/// How a driver's fetch ended; the driver hands it to [`Torrent::on_web_seed_end`].
///
/// [`Torrent::on_web_seed_end`]: crate::torrent::Torrent::on_web_seed_end
#[derive(Debug)]
pub enum FetchEnd {
    /// The whole range arrived.
    Complete(Bytes),
    /// Stopped as the core asked: the bytes that had arrived, from the start of the range
    /// ([`Assembler::into_prefix`]).
    Cancelled(Bytes),
    Failed(WebSeedError),
}

pub struct Assembler {
    start: u64,
    buf: Vec<u8>,
    /// Per request: where its slot begins in `buf`, its length, and how much arrived.
    slots: Vec<(usize, u64, u64)>,
}

impl Assembler {
    pub fn new(plan: &FetchPlan) -> Self {
        let slots = plan
            .requests
            .iter()
            .map(|r| ((r.torrent_offset - plan.range.start) as usize, r.len(), 0))
            .collect();
        // Bounded by the torrent's policy (a few MiB per fetch), not by the server.
        Assembler { start: plan.range.start, buf: vec![0; plan.len() as usize], slots }
    }

    /// Where the assembled bytes start in the torrent's content.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Appends a chunk of request `index`'s body.
    pub fn push(&mut self, index: usize, chunk: &[u8]) -> Result<(), WebSeedError> {
        let Some((at, len, got)) = self.slots.get_mut(index) else {
            return Err(WebSeedError::TooLong(0));
        };
        let room = *len - *got;
        if chunk.len() as u64 > room {
            return Err(WebSeedError::TooLong(*len));
        }
        let from = *at + *got as usize;
        self.buf[from..from + chunk.len()].copy_from_slice(chunk);
        *got += chunk.len() as u64;
        Ok(())
    }

    /// Request `index`'s body ended: it must have been complete.
    pub fn end(&self, index: usize) -> Result<(), WebSeedError> {
        match self.slots.get(index) {
            Some(&(_, len, got)) if got < len => Err(WebSeedError::TooShort { got, expected: len }),
            _ => Ok(()),
        }
    }

    /// The bytes that arrived without a gap from the start of the range (padding between
    /// requests counts as arrived): what a cancelled fetch still delivers.
    pub fn into_prefix(mut self) -> Bytes {
        let mut end = 0;
        let mut whole = true;
        for &(at, len, got) in &self.slots {
            if at < end {
                whole = false; // requests out of order: stop at what is certain
                break;
            }
            // Padding before `at` is nobody's to send: zeros, already there.
            end = at + got as usize;
            if got < len {
                whole = false;
                break;
            }
        }
        if !whole {
            self.buf.truncate(end.min(self.buf.len()));
        }
        Bytes::from(self.buf)
    }

    /// The plan's bytes, once every body is complete.
    pub fn finish(self) -> Result<Bytes, WebSeedError> {
        for index in 0..self.slots.len() {
            self.end(index)?;
        }
        Ok(Bytes::from(self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::FileEntry;

    fn info(files: &[(&[&str], u64, bool)], multi: bool) -> Info {
        let mut offset = 0;
        let files: Vec<FileEntry> = files
            .iter()
            .map(|(path, length, padding)| {
                let entry = FileEntry {
                    path: path.iter().map(|s| s.to_string()).collect(),
                    length: *length,
                    offset,
                    padding: *padding,
                };
                offset += length;
                entry
            })
            .collect();
        let piece_length = 16 * 1024;
        Info {
            name: files[0].path[0].clone(),
            piece_length,
            piece_hashes: vec![[0; 20]; offset.div_ceil(u64::from(piece_length)) as usize],
            files,
            total_length: offset,
            private: false,
            multi_file: multi,
        }
    }

    #[test]
    fn single_file_urls() {
        let i = info(&[(&["Big Buck.mp4"], 1000, false)], false);
        assert_eq!(file_url(&i, "http://h/x.mp4", 0).unwrap(), "http://h/x.mp4");
        assert_eq!(file_url(&i, "http://h/d/", 0).unwrap(), "http://h/d/Big%20Buck.mp4");
    }

    #[test]
    fn multi_file_urls_encode_each_component() {
        let i = info(&[(&["album", "disc 1", "a#b?.flac"], 10, false)], true);
        let want = "http://h/m/album/disc%201/a%23b%3F.flac";
        assert_eq!(file_url(&i, "http://h/m/", 0).unwrap(), want);
        assert_eq!(file_url(&i, "http://h/m", 0).unwrap(), want);
    }

    #[test]
    fn a_range_across_files_skips_padding() {
        let i = info(
            &[
                (&["t", "a"], 100, false),
                (&["t", ".pad", "28"], 28, true),
                (&["t", "b"], 50, false),
                (&["t", "empty"], 0, false),
                (&["t", "c"], 10, false),
            ],
            true,
        );
        let p = plan(&i, "http://h/", 90..185);
        let got: Vec<(String, u64, u64, u64)> =
            p.requests.iter().map(|r| (r.url.clone(), r.start, r.end, r.torrent_offset)).collect();
        assert_eq!(
            got,
            vec![
                ("http://h/t/a".into(), 90, 100, 90),
                ("http://h/t/b".into(), 0, 50, 128),
                ("http://h/t/c".into(), 0, 7, 178),
            ]
        );
        assert_eq!(p.requests[1].range_header(), "bytes=0-49");
        assert!(p.requests[1].is_whole_file() && !p.requests[0].is_whole_file());
        // Clamped to the torrent.
        assert_eq!(plan(&i, "http://h/", 180..10_000).range, 180..188);
    }

    #[test]
    fn responses_must_match_the_request() {
        let r = HttpRange {
            url: "u".into(),
            file: 0,
            start: 10,
            end: 20,
            file_length: 100,
            torrent_offset: 10,
        };
        assert_eq!(check_response(&r, 206, Some("bytes 10-19/100"), Some(10)), Ok(()));
        assert_eq!(check_response(&r, 206, Some("bytes 10-19/*"), None), Ok(()));
        assert!(matches!(
            check_response(&r, 206, Some("bytes 10-19/99"), None),
            Err(WebSeedError::ContentRange { .. })
        ));
        assert!(matches!(
            check_response(&r, 206, Some("bytes 0-19/100"), None),
            Err(WebSeedError::ContentRange { .. })
        ));
        assert!(check_response(&r, 206, Some("bytes -19/100"), None).is_err());
        assert!(check_response(&r, 206, Some("items 10-19/100"), None).is_err());
        assert_eq!(check_response(&r, 206, None, None), Err(WebSeedError::MissingContentRange));
        assert_eq!(check_response(&r, 200, None, Some(100)), Err(WebSeedError::RangeIgnored));
        assert_eq!(check_response(&r, 404, None, None), Err(WebSeedError::Status(404)));
        assert_eq!(check_response(&r, 416, None, None), Err(WebSeedError::RangeNotSatisfiable));
        assert_eq!(
            check_response(&r, 206, Some("bytes 10-19/100"), Some(11)),
            Err(WebSeedError::ContentLength { got: 11, expected: 10 })
        );
        let whole = HttpRange { start: 0, end: 100, ..r };
        assert_eq!(check_response(&whole, 200, None, Some(100)), Ok(()));
    }

    #[test]
    fn assembler_bounds_each_body_and_zero_fills_padding() {
        let i =
            info(&[(&["t", "a"], 4, false), (&["t", "p"], 3, true), (&["t", "b"], 2, false)], true);
        let p = plan(&i, "http://h/", 2..9);
        assert_eq!(p.requests.len(), 2);
        let mut a = Assembler::new(&p);
        a.push(0, b"c").unwrap();
        assert_eq!(a.end(0), Err(WebSeedError::TooShort { got: 1, expected: 2 }));
        a.push(0, b"d").unwrap();
        assert_eq!(a.push(0, b"x"), Err(WebSeedError::TooLong(2)));
        a.push(1, b"ef").unwrap();
        assert_eq!(&a.finish().unwrap()[..], b"cd\0\0\0ef");

        let mut short = Assembler::new(&p);
        short.push(0, b"cd").unwrap();
        assert!(matches!(short.finish(), Err(WebSeedError::TooShort { .. })));

        // A cancelled fetch keeps what arrived without a gap, padding included.
        let mut cut = Assembler::new(&p);
        cut.push(0, b"c").unwrap();
        assert_eq!(&cut.into_prefix()[..], b"c");
        let mut cut = Assembler::new(&p);
        cut.push(0, b"cd").unwrap();
        cut.push(1, b"e").unwrap();
        assert_eq!(&cut.into_prefix()[..], b"cd\0\0\0e");
        let mut cut = Assembler::new(&p);
        cut.push(1, b"ef").unwrap();
        assert!(cut.into_prefix().is_empty(), "a later body without the first is no prefix");
    }

    #[test]
    fn only_http_urls_are_seeds() {
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("HTTPS://example.org").is_ok());
        for bad in
            ["ftp://h/x", "http://", "http:///x", "http://h/a b", "file:///etc/passwd", "h/x"]
        {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
