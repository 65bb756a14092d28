//! What the `hostile_*` and `crash_*` tests share: a payload with its libtorrent-made torrent,
//! the `shoal` binary run as a child process, a scriptable misbehaving peer
//! ([`evil_peer::EvilPeer`]) and a bencode writer for hand-made bad torrents.
//!
//! Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

pub mod bencode;
pub mod evil_peer;
pub mod http;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shoal_testkit::tempfile::TempDir;
use shoal_testkit::{event_name, make_torrent, payload_tree, ChildGuard, TorrentInfo, TorrentOpts};

/// Bound on a whole transfer on loopback; only a stall or a hang gets near it.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on Shoal printing its `started` line (it checks existing data first).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `shoal` binary under test.
pub fn shoal_bin() -> PathBuf {
    shoal_testkit::shoal_bin(option_env!("CARGO_BIN_EXE_shoal"))
        .unwrap_or_else(|e| panic!("no shoal binary: {e}"))
}

/// `shoal ARGS...` ready to run, without the DHT (its default routers are outside; a test
/// of the DHT removes `SHOAL_NO_DHT` and names local nodes) or LSD (multicast on the LAN).
pub fn shoal_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(shoal_bin());
    cmd.args(args)
        .env("SHOAL_NO_DHT", "1")
        .env("SHOAL_NO_LSD", "1")
        .env("SHOAL_NO_PORT_MAPPING", "1");
    cmd
}

/// A multi-file payload in `<tmp>/data/share` (nested folders, a zero-length file, a short
/// last piece) and a v1 torrent of it made by libtorrent.
pub struct Fixture {
    pub dir: TempDir,
    /// Holds the torrent's top folder `share/`: the data folder a seed is given.
    pub data: PathBuf,
    pub torrent: TorrentInfo,
}

impl Fixture {
    pub fn new(total: u64, piece_kib: u32, seed: u64) -> Fixture {
        let dir = shoal_testkit::tempfile::Builder::new()
            .prefix("shoal-hostile-")
            .tempdir()
            .expect("creating a temporary folder");
        let data = dir.path().join("data");
        let piece = u64::from(piece_kib) * 1024;
        payload_tree(&data.join("share"), total, piece, 5, seed)
            .unwrap_or_else(|e| panic!("writing the payload: {e}"));
        let opts = TorrentOpts { piece_kib, ..TorrentOpts::default() };
        let torrent = make_torrent(&data.join("share"), &dir.path().join("share.torrent"), &opts)
            .unwrap_or_else(|e| panic!("making the torrent: {e}"));
        Fixture { dir, data, torrent }
    }

    /// The shared content, to compare a download with.
    pub fn content(&self) -> PathBuf {
        self.data.join("share")
    }

    pub fn info_hash(&self) -> [u8; 20] {
        hex20(&self.torrent.info_hash)
    }

    pub fn piece_count(&self) -> u32 {
        u32::try_from(self.torrent.num_pieces).expect("piece count fits u32")
    }

    /// A fresh folder path under the fixture (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// 40 hex digits to 20 bytes.
pub fn hex20(hex: &str) -> [u8; 20] {
    assert_eq!(hex.len(), 40, "not a 40-digit hex info hash: {hex}");
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .unwrap_or_else(|e| panic!("bad hex {hex}: {e}"));
    }
    out
}

/// Starts `shoal download TORRENT -o OUT --json EXTRA...`.
pub fn spawn_download(name: &str, torrent: &Path, out: &Path, extra: &[String]) -> ChildGuard {
    let mut cmd = shoal_command(["download".as_ref(), torrent.as_os_str()]);
    cmd.arg("-o").arg(out).arg("--json").args(extra);
    ChildGuard::spawn(name, cmd).unwrap_or_else(|e| panic!("starting shoal: {e}"))
}

/// Waits for Shoal's `started` line and returns its listen address.
pub fn wait_started(shoal: &mut ChildGuard) -> Option<SocketAddr> {
    let started = shoal
        .wait_event("started", START_TIMEOUT)
        .unwrap_or_else(|e| panic!("shoal did not start: {e}"));
    started["listen"].as_str().map(|s| s.parse().expect("listen address"))
}

/// Waits for the `complete` line, then for a successful exit; returns the `complete` line.
pub fn wait_complete(shoal: &mut ChildGuard) -> Value {
    let done = shoal
        .wait_event("complete", TRANSFER_TIMEOUT)
        .unwrap_or_else(|e| panic!("shoal did not complete the download: {e}"));
    shoal
        .wait_success(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("shoal did not exit cleanly after completing: {e}"));
    done
}

/// True while the process has not exited.
pub fn still_running(process: &mut ChildGuard) -> bool {
    process.wait_exit(Duration::ZERO).is_err()
}

/// An event's unsigned field, or a panic naming it.
pub fn field_u64(event: &Value, field: &str) -> u64 {
    event[field].as_u64().unwrap_or_else(|| panic!("no unsigned {field:?} in {event}"))
}

/// True when the caller should skip an interop test (`SHOAL_SKIP_INTEROP=1`).
pub fn skip() -> bool {
    shoal_testkit::skip_interop()
}

/// The name of an event line, for messages.
pub fn name_of(event: &Value) -> &str {
    event_name(event).unwrap_or("?")
}

/// What a finished command printed, and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with stdin closed, killing it (by its PID, through its `Child`)
/// if it takes longer than `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Ran {
    use std::io::Read;
    use std::process::Stdio;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {shown}: {e}"));
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = collect(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = collect(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} did not finish within {timeout:?}");
            }
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    Ran {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Every path under `root` (relative, sorted), folders included: to prove a command
/// created nothing.
pub fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            out.push(if is_dir { format!("{rel}/") } else { rel });
            if is_dir {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// SIGKILL to one process we started, by its PID.
pub fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("running kill: {e}"));
    assert!(status.success(), "kill -9 {pid} failed: {status}");
}

/// Sets `path`'s modification time to `secs_ago` seconds before now (with `touch`).
pub fn set_mtime_ago(path: &std::path::Path, secs_ago: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let status = Command::new("touch")
        .arg("-d")
        .arg(format!("@{}", now - secs_ago))
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("running touch: {e}"));
    assert!(status.success(), "touch {} failed", path.display());
}
