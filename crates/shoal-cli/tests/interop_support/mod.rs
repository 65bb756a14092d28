//! What the `interop_*` tests share: a test payload with its libtorrent-made torrent, the
//! `shoal` binary run as a child process, and two small loopback helpers (a tracker scrape,
//! an HTTP server for one .torrent file).
//!
//! Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

mod stun;
#[allow(unused_imports)] // not every test binary starts coturn
pub use stun::*;

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_testkit::tempfile::TempDir;
use shoal_testkit::*;

/// A few MiB: seconds to move on loopback, yet about a hundred pieces.
pub const PAYLOAD_BYTES: u64 = 3 << 20;
pub const PIECE_KIB: u32 = 32;
/// The torrent's last piece is this many bytes long.
pub const LAST_PIECE_BYTES: u64 = 5;
/// Bound on one transfer. Transmission alone spends ~10 s before it moves data; the rest takes
/// a few seconds, so this only catches a stall.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on `shoal seed` checking its data and starting to seed.
pub const SEED_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A multi-file payload (nested folders, a zero-length file, a 5-byte last piece) in
/// `<tmp>/data/share`, and a v1 torrent of it made by libtorrent, without trackers.
pub struct Fixture {
    pub dir: TempDir,
    /// Holds the torrent's top folder `share/`: the data folder a seed is given.
    pub data: PathBuf,
    pub torrent: TorrentInfo,
}

impl Fixture {
    pub fn new(seed: u64) -> Fixture {
        let dir = shoal_testkit::tempfile::Builder::new()
            .prefix("shoal-interop-")
            .tempdir()
            .expect("creating a temporary folder");
        let data = dir.path().join("data");
        let piece = u64::from(PIECE_KIB) * 1024;
        payload_tree(&data.join("share"), PAYLOAD_BYTES, piece, LAST_PIECE_BYTES, seed)
            .expect("writing the payload");
        let opts = TorrentOpts { piece_kib: PIECE_KIB, ..TorrentOpts::default() };
        let torrent = make_torrent(&data.join("share"), &dir.path().join("share.torrent"), &opts)
            .expect("making the torrent with libtorrent");
        assert_eq!(torrent.total_size % piece, LAST_PIECE_BYTES, "payload: short last piece");
        assert!(torrent.files.iter().any(|f| f.size == 0), "payload: a zero-length file");
        Fixture { dir, data, torrent }
    }

    /// The shared content, `data/share`.
    pub fn shared(&self) -> PathBuf {
        self.data.join("share")
    }

    /// A fresh download folder `<tmp>/<name>` (not created: the client does that).
    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `magnet:?xt=urn:btih:<hex>` and nothing else: no name, no trackers, no peers.
    pub fn bare_magnet(&self) -> String {
        format!("magnet:?xt=urn:btih:{}", self.torrent.info_hash)
    }

    /// The index of the torrent file at `path` (relative to the top folder), as `--only`
    /// takes it.
    #[track_caller]
    pub fn file_index(&self, path: &str) -> usize {
        self.torrent
            .files
            .iter()
            .position(|f| f.path == path || f.path == format!("share/{path}"))
            .unwrap_or_else(|| panic!("no file {path} in {:?}", self.torrent.files))
    }
}

/// What a downloader put in `out` for our torrent.
pub fn downloaded(out: &Path) -> PathBuf {
    out.join("share")
}

pub fn shoal_path() -> PathBuf {
    shoal_bin(option_env!("CARGO_BIN_EXE_shoal")).expect("the shoal binary")
}

/// `shoal ARGS... --json`, started (not waited for).
pub fn spawn_shoal(name: &str, args: &[OsString]) -> ChildGuard {
    spawn_shoal_with_env(name, args, &[])
}

/// [`spawn_shoal`] with more environment variables (e.g. `SSL_CERT_FILE` for a test CA).
pub fn spawn_shoal_with_env(name: &str, args: &[OsString], env: &[(&str, &Path)]) -> ChildGuard {
    let mut cmd = Command::new(shoal_path());
    cmd.envs(env.iter().copied());
    spawn_shoal_through(name, cmd, args)
}

/// [`spawn_shoal`] through `cmd`, a command that runs the shoal binary (plainly, or wrapped:
/// `nsenter ... shoal` on a NAT host).
pub fn spawn_shoal_through(name: &str, mut cmd: Command, args: &[OsString]) -> ChildGuard {
    // No DHT unless the test names local nodes: its default routers are outside.
    if args.iter().any(|a| a == "--dht-bootstrap") {
        cmd.env_remove("SHOAL_NO_DHT");
    } else {
        cmd.env("SHOAL_NO_DHT", "1");
    }
    // No multicast on the LAN unless the test asks for it (SHOAL_NO_LSD=0, in a namespace).
    if !cmd.get_envs().any(|(key, _)| key == "SHOAL_NO_LSD") {
        cmd.env("SHOAL_NO_LSD", "1");
    }
    // Nor any router asked to forward a port, unless the test made one (miniupnpd).
    if !cmd.get_envs().any(|(key, _)| key == "SHOAL_NO_PORT_MAPPING") {
        cmd.env("SHOAL_NO_PORT_MAPPING", "1");
    }
    cmd.args(args).arg("--json");
    // The engine's debug lines are few (connections and why they end, announces) and are
    // what a failure message needs; plain text, since they end up in a test log.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn,shoal=debug");
    }
    cmd.env("NO_COLOR", "1");
    ChildGuard::spawn(name, cmd).expect("starting shoal")
}

/// `shoal seed FILE` announced to the WebSocket tracker `ws` only (TCP on a loopback port
/// nobody is told about), waited on until it seeds; returns it with its `started` event.
pub fn shoal_ws_seed(file: &Path, ws: &str) -> (ChildGuard, Value) {
    let mut seed = spawn_shoal(
        "shoal-seed",
        &[arg("seed"), arg(file), arg("--listen"), arg("127.0.0.1:0"), arg("--tracker"), arg(ws)],
    );
    let started = seed.wait_event("started", SEED_START_TIMEOUT).expect("shoal seed starts");
    seed.wait_event("seeding", SEED_START_TIMEOUT).expect("shoal seed is seeding");
    (seed, started)
}

/// `shoal serve FILE` on free loopback ports with `extra` arguments and environment; returns
/// it with its `serving` event once it is up.
pub fn spawn_shoal_serve(
    name: &str,
    file: &Path,
    extra: &[OsString],
    env: &[(&str, &Path)],
) -> (ChildGuard, serde_json::Value) {
    let mut args = vec![arg("serve"), arg(file)];
    args.extend([arg("--http"), arg("127.0.0.1:0"), arg("--listen"), arg("127.0.0.1:0")]);
    if !extra.iter().any(|a| a == "--state") {
        args.extend([arg("--state"), arg(fresh_state_dir())]);
    }
    args.extend(extra.iter().cloned());
    let mut serve = spawn_shoal_with_env(name, &args, env);
    let serving = serve.wait_event("serving", SEED_START_TIMEOUT).expect("shoal serve starts");
    println!("serving: {serving}");
    (serve, serving)
}

/// A library folder of its own for one `shoal serve` (servers lock theirs, and tests run many
/// at once): under `$XDG_DATA_HOME` when set (`scripts/test.sh` gives each run one and
/// removes it), else under the temporary folder.
fn fresh_state_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("shoal-test-serve").join(format!("{}-{n}", std::process::id()))
}

/// Turns anything path- or string-like into one command-line argument.
pub fn arg(a: impl Into<OsString>) -> OsString {
    a.into()
}

/// `shoal download TORRENT -o OUT --listen <a fresh 127.x>:0 --peer PEER ARGS...`: see
/// [`shoal_download`].
#[track_caller]
pub fn shoal_download_from(
    torrent: &Path,
    out: &Path,
    peer: SocketAddr,
    args: &[OsString],
) -> Value {
    let mut all = vec![
        arg(torrent),
        arg("-o"),
        arg(out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(peer.to_string()),
    ];
    all.extend_from_slice(args);
    shoal_download(&all)
}

/// Runs `shoal download ARGS... --json` to its end (bounded by [`TRANSFER_TIMEOUT`]) and
/// requires exit status 0 and a `complete` event; returns that event.
#[track_caller]
pub fn shoal_download(args: &[OsString]) -> Value {
    let mut all = vec![arg("download")];
    all.extend_from_slice(args);
    let mut shoal = spawn_shoal("shoal-download", &all);
    let started = Instant::now();
    if let Err(e) = shoal.wait_success(TRANSFER_TIMEOUT) {
        panic!("`shoal download {}` did not succeed: {e}", show_args(args));
    }
    eprintln!("shoal download took {:.1?}", started.elapsed());
    let complete =
        shoal.events().iter().find(|e| event_name(e) == Some("complete")).cloned().unwrap_or_else(
            || {
                panic!(
                    "`shoal download` exited 0 without a \"complete\" event; output:\n{}",
                    shoal.output_tail()
                )
            },
        );
    complete
}

/// A running `shoal seed`; killed when dropped.
pub struct ShoalSeed {
    pub process: ChildGuard,
    /// Its `started` event (`listen`, `magnet`, `info_hash`).
    pub started: Value,
}

impl ShoalSeed {
    /// The address it accepts peers on.
    #[track_caller]
    pub fn addr(&self) -> SocketAddr {
        self.started["listen"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            panic!("`shoal seed` started without a listen address: {}", self.started)
        })
    }

    /// Waits (bounded) for `leech` to download from this seed and returns its `done` event;
    /// a failure shows what both sides said last.
    #[track_caller]
    pub fn serve(&mut self, leech: &mut Peer) -> Value {
        match leech.wait_done(TRANSFER_TIMEOUT) {
            Ok(done) => done,
            Err(e) => panic!(
                "{e}\n--- last output of {} ---\n{}\n--- end of output ---",
                self.process.name(),
                self.process.output_tail()
            ),
        }
    }

    #[track_caller]
    pub fn magnet(&self) -> &str {
        self.started["magnet"]
            .as_str()
            .unwrap_or_else(|| panic!("`shoal seed` started without a magnet: {}", self.started))
    }
}

/// `shoal seed SOURCE --listen IP:0 ARGS... --json`; returns once it says it is seeding,
/// which means it has checked all of its data.
#[track_caller]
pub fn shoal_seed(source: &Path, ip: Ipv4Addr, args: &[OsString]) -> ShoalSeed {
    let mut all = vec![arg("seed"), arg(source), arg("--listen"), arg(format!("{ip}:0"))];
    all.extend_from_slice(args);
    let mut process = spawn_shoal(&format!("shoal-seed@{ip}"), &all);
    let started = process
        .wait_event("started", SEED_START_TIMEOUT)
        .unwrap_or_else(|e| panic!("`shoal seed` did not start: {e}"));
    process
        .wait_event("seeding", SEED_START_TIMEOUT)
        .unwrap_or_else(|e| panic!("`shoal seed` did not reach seeding: {e}"));
    ShoalSeed { process, started }
}

fn show_args(args: &[OsString]) -> String {
    args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// Waits (bounded) until opentracker at `tracker` knows at least `peers` peers of the torrent
/// (seeders and leechers), asking it by HTTP scrape. A client that announced later than the
/// peer asking for a peer list would otherwise be missed until the next announce, minutes
/// away.
#[track_caller]
pub fn wait_for_tracker_peers(tracker: SocketAddr, info_hash: &str, peers: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match scrape(tracker, info_hash) {
            Ok((complete, incomplete)) if complete + incomplete >= peers => return,
            Ok(counts) => last = format!("scrape says (seeders, leechers) = {counts:?}"),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("opentracker at {tracker} never saw {peers} peer(s) of {info_hash}: {last}");
}

/// (seeders, leechers) of one torrent, from opentracker's HTTP scrape.
fn scrape(tracker: SocketAddr, info_hash: &str) -> Result<(u64, u64), String> {
    let escaped: String =
        (0..info_hash.len()).step_by(2).map(|i| format!("%{}", &info_hash[i..i + 2])).collect();
    let body = http_get(tracker, &format!("/scrape?info_hash={escaped}"))?;
    let count = |key: &str| -> Result<u64, String> {
        let needle = format!("{}:{key}i", key.len());
        let at = body
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .ok_or_else(|| format!("no {key} in scrape {:?}", String::from_utf8_lossy(&body)))?;
        let digits: String = body[at + needle.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| char::from(b))
            .collect();
        digits.parse().map_err(|e| format!("bad {key} count {digits:?}: {e}"))
    };
    Ok((count("complete")?, count("incomplete")?))
}

/// A minimal HTTP/1.0 GET; returns the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("reading from {addr}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {:?}", String::from_utf8_lossy(&response)))?;
    if !response.starts_with(b"HTTP/1.0 200") && !response.starts_with(b"HTTP/1.1 200") {
        return Err(format!("HTTP error: {:?}", String::from_utf8_lossy(&response[..split])));
    }
    Ok(response[split + 4..].to_vec())
}

/// Serves one file over HTTP at `/<name>` on a loopback address until dropped; any other path
/// is a 404.
pub struct HttpFile {
    addr: SocketAddr,
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// How many times the file was served.
    served: Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpFile {
    pub fn serve(name: &str, body: Vec<u8>) -> HttpFile {
        let ip = loopback_ip();
        let listener = TcpListener::bind((ip, 0)).expect("binding the HTTP server");
        let addr = listener.local_addr().expect("the HTTP server's address");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let path = format!("/{name}");
        let thread = {
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if answer(stream, &path, &body) {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        HttpFile { addr, name: name.to_owned(), stop, thread: Some(thread), served }
    }

    pub fn url(&self) -> String {
        format!("http://{}/{}", self.addr, self.name)
    }

    pub fn times_served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for HttpFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request; true if it was for the file.
fn answer(mut stream: TcpStream, path: &str, body: &[u8]) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let wanted = line.lines().next().and_then(|l| l.split(' ').nth(1)).is_some_and(|p| p == path);
    let (status, body): (&str, &[u8]) =
        if wanted { ("200 OK", body) } else { ("404 Not Found", b"not found") };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-bittorrent\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    wanted
}

/// Every regular file under `root`, relative and "/"-separated.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push((entry.path(), rel)),
                Ok(_) => out.push(rel),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The percent-decoded values of parameter `key` in a magnet URI.
pub fn magnet_params(magnet: &str, key: &str) -> Vec<String> {
    let query = magnet.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bound on a browser peer's download.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(150);

/// Runs `body` in a namespace with a WebSocket tracker; returns without running it when the
/// test was done in a child (or skipped).
pub fn in_netns(test: &str, body: impl FnOnce(&str)) {
    in_netns_unless(test, browser_unavailable(), body);
}

/// [`in_netns`] for tests whose other peers are not browsers: `missing` says why those cannot
/// run here (the test is then skipped), `None` when they can.
pub fn in_netns_unless(test: &str, missing: Option<String>, body: impl FnOnce(&str)) {
    if skip_interop() {
        return;
    }
    if let Some(why) = missing {
        println!("SKIP: {test}: {why}");
        return;
    }
    match run_test_in_netns(test, Duration::from_secs(400)) {
        Ok(Netns::Inside) => {}
        Ok(Netns::Passed) => return,
        Ok(Netns::Skipped(why)) => return println!("SKIP: {test}: {why}"),
        Err(e) => panic!("{e}"),
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tracker, ws) = start_ws_tracker(&runtime, "127.0.0.1:0".parse().unwrap());
    body(&ws);
    let stats = tracker.stats();
    println!("tracker: {}", stats.to_json());
    runtime.block_on(tracker.shutdown()).unwrap();
}

/// Our tracker with only its WebSocket listener, on `addr` (port 0 for any), and its
/// `ws://` URL.
pub fn start_ws_tracker(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
) -> (shoal_tracker::RunningTracker, String) {
    let tracker = runtime
        .block_on(shoal_tracker::start(shoal_tracker::Config {
            ws: Some(addr),
            ..shoal_tracker::Config::default()
        }))
        .expect("tracker starts");
    let ws = format!("ws://{}", tracker.ws_addr.expect("a WebSocket listener"));
    (tracker, ws)
}

/// Checks that no `progress` line of a `shoal download` (nor its `complete`) counts a peer
/// other than a WebRTC one; returns the most WebRTC peers one counted.
#[track_caller]
pub fn assert_only_webrtc_peers(events: &[Value]) -> Option<u64> {
    let count = |e: &Value, key: &str| e[key].as_u64().unwrap_or(0);
    let counted = |e: &&Value| matches!(event_name(e), Some("progress" | "complete"));
    if let Some(e) =
        events.iter().filter(counted).find(|e| count(e, "peers") > count(e, "webrtc_peers"))
    {
        panic!("shoal had a peer that was not a WebRTC one: {e}");
    }
    events.iter().filter(counted).map(|e| count(e, "webrtc_peers")).max()
}
