//! `shoal stream`'s HTTP server against its contract, on loopback, fed by a libtorrent seeder:
//! hundreds of Range reads checked byte for byte while the torrent is still downloading, the
//! answers to bad requests (400, 404, 416, HEAD, multiple ranges, content types), and clients
//! that walk away mid-body (no reader may stay behind).
//!
//! Every process is killed when its guard drops; every wait is bounded; nothing asserts on
//! wall-clock time.

mod stream_support;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use shoal_testkit::tempfile::TempDir;
use shoal_testkit::*;
use stream_support::*;

const PIECE_KIB: u32 = 64;
const PIECE: u64 = PIECE_KIB as u64 * 1024;
/// About forty MiB: 640 pieces, twenty seconds behind the rate-limited seeder.
const TOTAL: u64 = 40 << 20;
/// The torrent's last piece is this long.
const TAIL: u64 = 777;
/// The seeder's upload cap: slow enough that the download is still running while the first
/// reads are served, fast enough to finish in seconds.
const SEED_RATE: u64 = 2 << 20;
/// How many Range reads test (a) makes.
const READS: usize = 300;

/// One file of the torrent under test, with its bytes.
struct Source {
    index: usize,
    /// Relative to the torrent's top folder.
    rel: String,
    /// Where it starts in the torrent's byte space (v1, no pad files).
    torrent_offset: u64,
    bytes: Vec<u8>,
    /// The path part of its URL, from `shoal stream`'s listening line.
    path: String,
}

impl Source {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A multi-file payload in `<tmp>/data/share` and its libtorrent-made torrent.
struct Fixture {
    dir: TempDir,
    data: PathBuf,
    torrent: TorrentInfo,
}

impl Fixture {
    fn tree(total: u64, seed: u64) -> Fixture {
        let dir = tempfile::Builder::new().prefix("shoal-stream-").tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        payload_tree(&data.join("share"), total, PIECE, TAIL, seed).expect("writing the payload");
        Fixture::finish(dir, data)
    }

    /// Files named for each media type the server must label, so that Content-Type can be
    /// checked; `video.mp4` is the largest playable file.
    fn media_names(seed: u64) -> Fixture {
        let dir = tempfile::Builder::new().prefix("shoal-stream-").tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        let share = data.join("share");
        let files: [(&str, u64); 8] = [
            ("video.mp4", 700_000),
            ("extras/clip.webm", 300_001),
            ("extras/movie.mkv", 200_003),
            ("song.mp3", 150_007),
            ("subs/en.vtt", 5_001),
            ("subs/en.srt", 4_999),
            ("notes.bin", 90_000),
            ("empty.txt", 0),
        ];
        for (i, (rel, size)) in files.iter().enumerate() {
            write_random_file(&share.join(rel), *size, seed * 100 + i as u64).expect("a file");
        }
        Fixture::finish(dir, data)
    }

    fn finish(dir: TempDir, data: PathBuf) -> Fixture {
        let opts = TorrentOpts { piece_kib: PIECE_KIB, ..TorrentOpts::default() };
        let torrent = make_torrent(&data.join("share"), &dir.path().join("share.torrent"), &opts)
            .expect("making the torrent with libtorrent");
        Fixture { dir, data, torrent }
    }

    /// Every file of the torrent, with its bytes, matched to the listening line's `files`
    /// (index, path and length must agree with libtorrent's view of the torrent).
    #[track_caller]
    fn sources(&self, stream: &ShoalStream) -> Vec<Source> {
        let listed = stream.files();
        assert_eq!(listed.len(), self.torrent.files.len(), "files: {}", stream.listening);
        let mut offset = 0;
        let mut out = Vec::new();
        for (index, file) in self.torrent.files.iter().enumerate() {
            let entry = &listed[index];
            assert_eq!(entry["index"].as_u64(), Some(index as u64), "{entry}");
            assert_eq!(entry["length"].as_u64(), Some(file.size), "{entry}");
            let path = entry["path"].as_str().unwrap_or_default();
            assert!(path.ends_with(&file.path), "file {index} is {path}, expected {}", file.path);
            let bytes = fs::read(self.data.join("share").join(&file.path)).expect("a source file");
            out.push(Source {
                index,
                rel: file.path.clone(),
                torrent_offset: offset,
                bytes,
                path: stream.file_path(index).expect("a file URL"),
            });
            offset += file.size;
        }
        out
    }
}

fn limited(rate: u64) -> PeerOpts {
    PeerOpts { upload_limit: Some(rate), ..PeerOpts::default() }
}

/// How one read asks for its bytes.
#[derive(Clone, Debug)]
enum Ask {
    /// `bytes=a-b`
    Closed(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`
    Suffix(u64),
}

impl Ask {
    fn header(&self) -> String {
        match self {
            Ask::Closed(a, b) => format!("bytes={a}-{b}"),
            Ask::From(a) => format!("bytes={a}-"),
            Ask::Suffix(n) => format!("bytes=-{n}"),
        }
    }

    /// The first and last byte it selects in a file of `len` bytes (RFC 9110 §14.1.2: a
    /// suffix longer than the file selects all of it, an end past the file is cut to it).
    fn span(&self, len: u64) -> (u64, u64) {
        match *self {
            Ask::Closed(a, b) => (a, b.min(len - 1)),
            Ask::From(a) => (a, len - 1),
            Ask::Suffix(n) => (len - n.min(len), len - 1),
        }
    }
}

/// The reads of test (a): the first and last byte of every file, ranges straddling piece
/// boundaries (which, at a file's start and end, are pieces shared with the neighbouring
/// file), suffix and open-ended ranges, and random ranges, in a shuffled order that starts in
/// the middle of the largest file.
fn plan_reads(files: &[Source], rng: &mut Rng) -> Vec<(usize, Ask)> {
    let nonempty: Vec<&Source> = files.iter().filter(|f| f.len() > 0).collect();
    let mut reads = Vec::new();
    for f in &nonempty {
        let len = f.len();
        reads.push((f.index, Ask::Closed(len - 1, len - 1)));
        reads.push((f.index, Ask::Suffix(1)));
        reads.push((f.index, Ask::Closed(0, 0)));
        reads.push((f.index, Ask::Closed(0, rng.range(0, len.min(3 * PIECE)))));
        reads.push((f.index, Ask::Suffix(rng.range(1, len.min(3 * PIECE) + 1))));
        // an end past the file is cut to it
        reads.push((f.index, Ask::Closed(len - len.min(1000), len + 5000)));
        // piece boundaries that fall inside this file, seen as file offsets
        let first = f.torrent_offset / PIECE + 1;
        let last = (f.torrent_offset + len - 1) / PIECE;
        let boundaries: Vec<u64> = (first..=last)
            .map(|p| p * PIECE - f.torrent_offset)
            .filter(|&b| b > 0 && b < len)
            .collect();
        for _ in 0..boundaries.len().min(12) {
            let b = boundaries[rng.range(0, boundaries.len() as u64) as usize];
            let a = b - rng.range(1, b.min(PIECE) + 1);
            let end = (b + rng.range(0, PIECE * 2)).min(len - 1);
            reads.push((f.index, Ask::Closed(a, end)));
        }
    }
    // a suffix longer than the file: the whole file
    if let Some(small) = nonempty.iter().min_by_key(|f| f.len()) {
        reads.push((small.index, Ask::Suffix(small.len() + 100)));
        reads.push((small.index, Ask::From(0)));
    }
    while reads.len() < READS {
        let f = nonempty[rng.range(0, nonempty.len() as u64) as usize];
        let len = f.len();
        match rng.range(0, 10) {
            0 => reads.push((f.index, Ask::Suffix(rng.range(1, len.min(512 << 10) + 1)))),
            // open-ended reads run to the end of the file: start them near it
            1 => reads.push((f.index, Ask::From(len - rng.range(1, len.min(1 << 20) + 1)))),
            _ => {
                let a = rng.range(0, len);
                let b = (a + rng.range(0, 256 << 10)).min(len - 1);
                reads.push((f.index, Ask::Closed(a, b)));
            }
        }
    }
    // Fisher-Yates with our generator
    for i in (1..reads.len()).rev() {
        reads.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let largest = nonempty.iter().max_by_key(|f| f.len()).expect("a non-empty file");
    let middle = largest.len() / 2 + 12_345;
    reads.insert(0, (largest.index, Ask::Closed(middle, middle + 3 * PIECE)));
    reads
}

/// Checks one 206 answer against the source bytes.
#[track_caller]
fn check_partial(file: &Source, ask: &Ask, response: &Response) {
    let len = file.len();
    let (a, b) = ask.span(len);
    let what = format!("GET {} Range: {}", file.path, ask.header());
    assert_eq!(response.status(), 206, "{what}: {}", response.describe());
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes {a}-{b}/{len}").as_str()),
        "{what}: {}",
        response.describe()
    );
    assert_eq!(response.header("accept-ranges"), Some("bytes"), "{what}: {}", response.describe());
    if let Some(n) = response.head.content_length() {
        assert_eq!(n, b - a + 1, "{what}: Content-Length");
    }
    let want = &file.bytes[a as usize..=b as usize];
    if response.body != want {
        let at = response.body.iter().zip(want).position(|(x, y)| x != y);
        panic!(
            "{what}: body differs from {} bytes {a}-{b}: got {} bytes, want {}, first difference at {at:?}",
            file.rel,
            response.body.len(),
            want.len()
        );
    }
}

/// (a) Hundreds of Range reads, checked byte for byte, served while the torrent downloads from
/// a rate-limited libtorrent seeder with `-o` (the full download continues meanwhile).
#[test]
fn range_reads_return_the_files_bytes_while_downloading() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::tree(TOTAL, 41);
    assert_eq!(fx.torrent.piece_size, PIECE);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &limited(SEED_RATE)).expect("libtorrent seed");
    let out = fx.dir.path().join("out");
    let stream = start_stream(&fx.torrent.path, seed.addr(), &[arg("-o"), arg(&out)]);
    let files = fx.sources(&stream);
    let mut rng = Rng(0x5eed_0041);
    let reads = plan_reads(&files, &mut rng);
    assert!(reads.len() >= READS);

    let mut reads_while_downloading = 0;
    let mut downloading = true;
    for (n, (index, ask)) in reads.iter().enumerate() {
        if downloading && n % 10 == 0 {
            let (have, total) = pieces(&api_status(&stream));
            downloading = have < total;
            if n == 0 {
                assert!(
                    have < total,
                    "the download must still be running at the first read: {have}/{total} pieces"
                );
            }
        }
        if downloading {
            reads_while_downloading += 1;
        }
        let file = &files[*index];
        let response = get(stream.addr(), &file.path, Some(&ask.header()));
        check_partial(file, ask, &response);
    }
    eprintln!(
        "{} reads checked, about {reads_while_downloading} of them while the download ran",
        reads.len()
    );

    // without a Range: the whole file, 200
    let small = files.iter().filter(|f| f.len() > 0).min_by_key(|f| f.len()).expect("a file");
    let whole = get(stream.addr(), &small.path, None);
    assert_eq!(whole.status(), 200, "{}", whole.describe());
    assert_eq!(whole.head.content_length(), Some(small.len()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert!(whole.body == small.bytes, "GET {} without Range: body differs", small.path);

    // the zero-length file: an empty 200
    let empty = files.iter().find(|f| f.len() == 0).expect("the empty file");
    let response = get(stream.addr(), &empty.path, None);
    assert_eq!(response.status(), 200, "{}", response.describe());
    assert!(response.body.is_empty());

    // and what was written to -o is the torrent, once complete
    wait_status(&stream, "a complete download", Duration::from_secs(120), |s| {
        let (have, total) = pieces(s);
        have == total
    });
    drop(stream);
    assert_trees_equal_allow_missing_empty(&fx.data.join("share"), &out.join("share"));
}

/// (b) Bad and unusual requests: malformed ranges are 400, unsatisfiable ones 416 with
/// `bytes */LEN`, unknown files 404, HEAD has the length and no body, several ranges get the
/// whole file, each media type its Content-Type; the playlist lists every file.
#[test]
fn bad_ranges_unknown_files_head_and_content_types() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::media_names(42);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &PeerOpts::default()).expect("libtorrent seed");
    let stream = start_stream(&fx.torrent.path, seed.addr(), &[]);
    let files = fx.sources(&stream);
    let by_name: HashMap<&str, &Source> = files.iter().map(|f| (f.rel.as_str(), f)).collect();
    let addr = stream.addr();

    // the largest playable file is selected by default
    let video = by_name["video.mp4"];
    assert_eq!(
        stream.listening["selected"].as_u64(),
        Some(video.index as u64),
        "{}",
        stream.listening
    );
    assert_eq!(stream.listening["url"].as_str(), stream.file_url(video.index).ok().as_deref());

    let len = video.len();
    for bad in ["bytes=abc", "bytes=5-2", "items=0-1", "bytes=", "bytes=--5", "bytes=1-2-3"] {
        let response = get(addr, &video.path, Some(bad));
        assert_eq!(response.status(), 400, "Range: {bad}: {}", response.describe());
    }
    for unsatisfiable in [format!("bytes={len}-"), format!("bytes={}-{}", len + 10, len + 20)] {
        let response = get(addr, &video.path, Some(&unsatisfiable));
        assert_eq!(response.status(), 416, "Range: {unsatisfiable}: {}", response.describe());
        let want = format!("bytes */{len}");
        assert_eq!(
            response.header("content-range"),
            Some(want.as_str()),
            "Range: {unsatisfiable}: {}",
            response.describe()
        );
    }
    // nothing is satisfiable in an empty file
    let empty = by_name["empty.txt"];
    let response = get(addr, &empty.path, Some("bytes=0-"));
    assert_eq!(response.status(), 416, "empty file, bytes=0-: {}", response.describe());
    assert_eq!(response.header("content-range"), Some("bytes */0"));

    // unknown files
    let count = files.len();
    for path in [format!("/files/{count}/nothing.mp4"), "/files/999999/x".to_owned()] {
        let response = get(addr, &path, None);
        assert_eq!(response.status(), 404, "GET {path}: {}", response.describe());
    }
    let response = get(addr, "/files/notanumber/x", None);
    assert!(
        matches!(response.status(), 400 | 404),
        "GET /files/notanumber/x: {}",
        response.describe()
    );

    // HEAD: the length, the type, and not one byte of body
    let (head, body) = open(addr, "HEAD", &video.path, &[]).expect("HEAD");
    assert_eq!(head.status, 200, "HEAD: {head:?}");
    assert_eq!(head.content_length(), Some(len), "HEAD: {head:?}");
    assert_eq!(head.header("accept-ranges"), Some("bytes"), "HEAD: {head:?}");
    let rest = body.raw_rest(Duration::from_secs(5)).expect("reading after HEAD");
    assert!(rest.is_empty(), "HEAD sent {} body bytes", rest.len());
    let (head, body) = open(addr, "HEAD", &video.path, &[("Range", "bytes=10-19")]).expect("HEAD");
    assert_eq!(head.status, 206, "HEAD with Range: {head:?}");
    assert_eq!(head.content_length(), Some(10), "HEAD with Range: {head:?}");
    assert_eq!(head.header("content-range"), Some(format!("bytes 10-19/{len}").as_str()));
    assert!(body.raw_rest(Duration::from_secs(5)).expect("reading after HEAD").is_empty());

    // several ranges: the whole file
    let song = by_name["song.mp3"];
    let response = get(addr, &song.path, Some("bytes=0-1,5-6"));
    assert_eq!(response.status(), 200, "two ranges: {}", response.describe());
    assert!(response.body == song.bytes, "two ranges: the body is not the whole file");

    // Content-Type by extension, in the listing and on the wire
    for (name, mime) in [
        ("video.mp4", "video/mp4"),
        ("extras/clip.webm", "video/webm"),
        ("extras/movie.mkv", "video/x-matroska"),
        ("song.mp3", "audio/mpeg"),
        ("subs/en.vtt", "text/vtt"),
        ("subs/en.srt", "application/x-subrip"),
    ] {
        let file = by_name[name];
        let listed = &stream.files()[file.index];
        assert_eq!(listed["mime"].as_str(), Some(mime), "{listed}");
        let response = get(addr, &file.path, Some("bytes=0-99"));
        check_partial(file, &Ask::Closed(0, 99), &response);
        let got = response.header("content-type").unwrap_or("");
        assert!(got.starts_with(mime), "{name}: Content-Type {got:?}, expected {mime}");
    }

    // the playlist has every file's URL; the status page is HTML
    let playlist = get(addr, "/playlist.m3u", None);
    assert_eq!(playlist.status(), 200, "{}", playlist.describe());
    let text = String::from_utf8_lossy(&playlist.body);
    for f in &files {
        let url = stream.file_url(f.index).expect("a URL");
        assert!(text.lines().any(|l| l.trim() == url), "{url} missing from the playlist:\n{text}");
    }
    let page = get(addr, "/", None);
    assert_eq!(page.status(), 200, "{}", page.describe());
    assert!(
        page.header("content-type").unwrap_or("").starts_with("text/html"),
        "{}",
        page.describe()
    );
}

/// The `readers` count of the status document.
#[track_caller]
fn readers(stream: &ShoalStream) -> u64 {
    let status = api_status(stream);
    status["readers"].as_u64().unwrap_or_else(|| panic!("no readers count in {status}"))
}

/// (c) Clients that disconnect mid-body, or while their read still waits for a piece, leave
/// no reader behind (in memory mode, behind a slow seeder), and the server keeps serving.
#[test]
fn clients_that_walk_away_leave_no_reader_behind() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::tree(TOTAL, 43);
    let seed =
        lt_seed(&fx.torrent.path, &fx.data, &limited(SEED_RATE / 2)).expect("libtorrent seed");
    let stream = start_stream(&fx.torrent.path, seed.addr(), &[]);
    let files = fx.sources(&stream);
    let big = files.iter().max_by_key(|f| f.len()).expect("a file");
    let addr = stream.addr();

    // one body: read a little, check it, hang up
    let (head, mut body) = open(addr, "GET", &big.path, &[]).expect("GET");
    assert_eq!(head.status, 200, "{head:?}");
    let mut start = vec![0u8; 64 << 10];
    body.read_exact(&mut start).expect("the first 64 KiB");
    assert!(start == big.bytes[..start.len()], "the first 64 KiB differ");
    let open_readers = readers(&stream);
    assert!(
        open_readers >= 1,
        "a body is being streamed but /api/status says readers = {open_readers}"
    );
    body.abort();
    wait_status(
        &stream,
        "readers back to 0 after a client hung up mid-body",
        Duration::from_secs(10),
        |s| s["readers"].as_u64() == Some(0),
    );

    // several at once, asking far ahead (their pieces are not there yet), hanging up before
    // or just after the head arrives
    let mut clients = Vec::new();
    for i in 0..5u64 {
        let offset = big.len() / 2 + i * 3 * PIECE + 777;
        let mut conn = TcpStream::connect(addr).expect("connect");
        write!(conn, "GET {} HTTP/1.1\r\nHost: {addr}\r\nRange: bytes={offset}-\r\n\r\n", big.path)
            .expect("request");
        clients.push(conn);
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(clients);
    wait_status(
        &stream,
        "readers back to 0 after five waiting clients hung up",
        Duration::from_secs(10),
        |s| s["readers"].as_u64() == Some(0),
    );

    // nothing is stuck: a fresh read far into the file is served, byte for byte
    let ask = Ask::Closed(big.len() - 100_000, big.len() - 1);
    check_partial(big, &ask, &get(addr, &big.path, Some(&ask.header())));
    // the client may hold the last byte a moment before the server's body task ends and
    // drops its reader, so give it that moment rather than racing it
    wait_status(&stream, "readers back to 0 after a finished read", Duration::from_secs(5), |s| {
        s["readers"].as_u64() == Some(0)
    });
}
