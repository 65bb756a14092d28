//! What the `stream_*` tests share: `shoal stream` started against a libtorrent seeder, and a
//! small blocking HTTP/1.1 client over `std::net::TcpStream` (one connection per request,
//! `Connection: close`), enough to check status lines, headers and bodies byte for byte, and
//! to walk away from a body halfway.
//!
//! Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_testkit::*;

/// Bound on `shoal stream` printing its `listening` line (metadata from a .torrent is at hand,
/// so this only catches a hang).
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one socket read: a read waits for verified data, which a rate-limited seeder
/// delivers within seconds; this only catches a stall.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Cap on response headers we accept.
const MAX_HEAD: usize = 64 * 1024;

pub fn shoal_path() -> PathBuf {
    shoal_bin(option_env!("CARGO_BIN_EXE_shoal")).expect("the shoal binary")
}

pub fn arg(a: impl Into<OsString>) -> OsString {
    a.into()
}

/// `shoal stream SOURCE --json --http 127.0.0.1:0 --listen 127.x:0 --peer SEED ARGS...`.
#[track_caller]
pub fn start_stream(source: &Path, seed: SocketAddr, args: &[OsString]) -> ShoalStream {
    let mut all = vec![
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(seed.to_string()),
    ];
    all.extend_from_slice(args);
    ShoalStream::start(&shoal_path(), source, &all, LISTEN_TIMEOUT)
        .unwrap_or_else(|e| panic!("`shoal stream` did not start: {e}"))
}

/// A parsed response head.
#[derive(Clone, Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
}

/// A whole response.
#[derive(Clone, Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// For failure messages: the head and the start of the body.
    pub fn describe(&self) -> String {
        let shown = &self.body[..self.body.len().min(200)];
        format!(
            "{} {:?} body ({} bytes) {:?}",
            self.head.status,
            self.head.headers,
            self.body.len(),
            String::from_utf8_lossy(shown)
        )
    }
}

/// How the body of a response is delimited.
enum Framing {
    Length(u64),
    /// `left`: bytes left in the current chunk (0: a chunk header comes next); `done` after
    /// the last chunk.
    Chunked {
        left: u64,
        done: bool,
    },
    UntilClose,
}

/// A response body being read from its connection; dropping it closes the connection.
pub struct Body {
    reader: BufReader<TcpStream>,
    framing: Framing,
}

impl Body {
    /// Whatever the server still sends on this connection until it closes it, read raw
    /// (ignoring the framing), waiting at most `timeout` for each read: after a HEAD response
    /// this must be nothing.
    pub fn raw_rest(mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        let mut rest = self.reader.buffer().to_vec();
        self.reader.consume(rest.len());
        self.reader.get_mut().read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// Shuts the connection down now (both directions), as a player does when it seeks away.
    pub fn abort(self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed with {left} body bytes missing"),
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    let size = read_chunk_size(&mut self.reader)?;
                    if size == 0 {
                        // trailers end with an empty line
                        loop {
                            let line = read_line(&mut self.reader)?;
                            if line.is_empty() {
                                break;
                            }
                        }
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-chunk"));
                }
                *left -= n as u64;
                if *left == 0 {
                    let end = read_line(&mut self.reader)?;
                    if !end.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "chunk without CRLF",
                        ));
                    }
                }
                Ok(n)
            }
            Framing::UntilClose => self.reader.read(buf),
        }
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = Vec::new();
    reader.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line"));
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
}

fn read_chunk_size(reader: &mut BufReader<TcpStream>) -> io::Result<u64> {
    let line = read_line(reader)?;
    let digits = line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(digits, 16).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {line:?}: {e}"))
    })
}

/// Sends one request and reads the response head; the body is left on the connection.
pub fn open(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<(Head, Body)> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    (&stream).write_all(request.as_bytes())?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let status_line = read_line(&mut reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("status line {status_line:?}"))
        })?;
    let mut head = Head { status, headers: Vec::new() };
    let mut size = status_line.len();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        size += line.len();
        if size > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("header {line:?}"))
        })?;
        head.headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let chunked =
        head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let framing = if no_body {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked { left: 0, done: false }
    } else if let Some(len) = head.content_length() {
        Framing::Length(len)
    } else {
        Framing::UntilClose
    };
    Ok((head, Body { reader, framing }))
}

/// One request, its whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let (head, mut body) = open(addr, method, path, headers)?;
    let mut bytes = Vec::new();
    body.read_to_end(&mut bytes)?;
    Ok(Response { head, body: bytes })
}

/// `GET path` with `Range: range`, or without a Range header when `range` is `None`.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str, range: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
    request(addr, "GET", path, &headers)
        .unwrap_or_else(|e| panic!("GET {path} (Range {range:?}) failed: {e}"))
}

/// `GET /api/status` as JSON.
#[track_caller]
pub fn api_status(stream: &ShoalStream) -> Value {
    let response = get(stream.addr(), "/api/status", None);
    assert_eq!(response.status(), 200, "/api/status: {}", response.describe());
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("/api/status is not JSON ({e}): {}", response.describe()))
}

/// (pieces_have, pieces_total) from a status document.
#[track_caller]
pub fn pieces(status: &Value) -> (u64, u64) {
    let have = status["pieces_have"].as_u64();
    let total = status["pieces_total"].as_u64();
    match (have, total) {
        (Some(have), Some(total)) => (have, total),
        _ => panic!("/api/status without pieces_have/pieces_total: {status}"),
    }
}

/// Polls `/api/status` every 100 ms until `done` accepts it; panics with the last status after
/// `timeout`.
#[track_caller]
pub fn wait_status(
    stream: &ShoalStream,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = api_status(stream);
        if done(&status) {
            return status;
        }
        if Instant::now() >= deadline {
            panic!("no {what} within {timeout:?}; last /api/status: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny deterministic generator for offsets and lengths (splitmix64): a failing run can be
/// replayed with the same seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
