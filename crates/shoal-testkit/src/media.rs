//! What the streaming tests need beyond peers: test media made with Debian's ffmpeg, a
//! bounded runner for one-shot tools (ffmpeg, ffprobe), `shoal stream` as a child process, and
//! the memory figures of a process from `/proc`.
//!
//! The media is generated per test into its temporary folder (no cache): a 40 s MP4 takes about
//! three seconds with `-preset ultrafast`. The MP4 keeps ffmpeg's default layout, its `moov`
//! atom (the index a player needs before it can decode anything) written after `mdat`, so a
//! streaming server must serve the file's end before its middle: that is the case to test.
//! A noise filter over the test pattern makes the encoder actually spend the bitrate asked for,
//! so the file size is `seconds × bitrate` give or take a few percent.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::paths::require_tool;
use crate::process::{event_name, ChildGuard};

/// Bound on generating one test file: seconds normally, this only catches a hang.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(300);

/// Writes an H.264/AAC MP4 of `seconds` seconds at about `video_kbps` kbit/s of video (plus
/// 128 kbit/s of audio) to `path`, with its `moov` atom after `mdat` (no `+faststart`).
/// Checks the atom order before returning.
pub fn make_mp4_moov_at_end(path: &Path, seconds: u32, video_kbps: u32) -> Result<()> {
    let rate = format!("{video_kbps}k");
    let mut cmd = ffmpeg_from_test_pattern(seconds, "640x360", 440);
    cmd.args(["-vf", "noise=alls=30:allf=t"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .args(["-b:v", &rate, "-maxrate", &rate, "-bufsize", &format!("{}k", video_kbps / 2)])
        .args(["-c:a", "aac", "-b:a", "128k"])
        // plain mp4 muxer: `moov` goes last unless `-movflags +faststart` moves it
        .args(["-f", "mp4"])
        .arg(path);
    run_bounded("ffmpeg (mp4)", cmd, ENCODE_TIMEOUT)?.require_success()?;
    if moov_after_mdat(path)? {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{}: ffmpeg put moov before mdat: {:?}",
            path.display(),
            top_level_boxes(path)?
        )))
    }
}

/// Writes a VP8/Opus WebM of `seconds` seconds at about `video_kbps` kbit/s to `path`.
pub fn make_webm(path: &Path, seconds: u32, video_kbps: u32) -> Result<()> {
    let mut cmd = ffmpeg_from_test_pattern(seconds, "320x240", 660);
    cmd.args(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"])
        .args(["-b:v", &format!("{video_kbps}k")])
        .args(["-c:a", "libopus", "-b:a", "64k", "-f", "webm"])
        .arg(path);
    run_bounded("ffmpeg (webm)", cmd, ENCODE_TIMEOUT)?.require_success()
}

/// `ffmpeg` reading a moving test pattern and a sine tone for `seconds`; the caller adds the
/// codecs and the output.
fn ffmpeg_from_test_pattern(seconds: u32, size: &str, tone_hz: u32) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=25")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency={tone_hz}:sample_rate=48000")])
        .args(["-t", &seconds.to_string()]);
    cmd
}

/// Fails with a clear message unless ffmpeg and ffprobe are installed.
pub fn require_media_tools() -> Result<()> {
    require_tool("ffmpeg")?;
    require_tool("ffprobe")?;
    Ok(())
}

/// One top-level box (atom) of an ISO media file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mp4Box {
    /// The four-character type, e.g. `moov`.
    pub kind: String,
    pub offset: u64,
    pub size: u64,
}

/// The top-level boxes of an MP4 file, in file order. Reads only the box headers.
pub fn top_level_boxes(path: &Path) -> Result<Vec<Mp4Box>> {
    let context = || format!("reading the boxes of {}", path.display());
    let mut file = File::open(path).map_err(|e| Error::io(context(), e))?;
    let len = file.metadata().map_err(|e| Error::io(context(), e))?.len();
    let mut boxes = Vec::new();
    let mut offset = 0u64;
    while offset + 8 <= len {
        file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(context(), e))?;
        let mut head = [0u8; 16];
        let want = if len - offset >= 16 { 16 } else { 8 };
        file.read_exact(&mut head[..want]).map_err(|e| Error::io(context(), e))?;
        let short = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let size = match short {
            // 64-bit size follows the type
            1 if want == 16 => u64::from_be_bytes([
                head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
            ]),
            // the box runs to the end of the file
            0 => len - offset,
            s => s,
        };
        if size < 8 || offset + size > len {
            return Err(Error::Setup(format!(
                "{}: box at {offset} has an impossible size {size} (file is {len} bytes)",
                path.display()
            )));
        }
        let kind = String::from_utf8_lossy(&head[4..8]).into_owned();
        boxes.push(Mp4Box { kind, offset, size });
        offset += size;
    }
    Ok(boxes)
}

/// True when the file's `moov` box comes after its `mdat` box.
pub fn moov_after_mdat(path: &Path) -> Result<bool> {
    let boxes = top_level_boxes(path)?;
    let at = |kind: &str| boxes.iter().position(|b| b.kind == kind);
    Ok(matches!((at("mdat"), at("moov")), (Some(mdat), Some(moov)) if moov > mdat))
}

/// What a one-shot tool printed, and how it ended.
#[derive(Debug)]
pub struct ToolOutput {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Ok when the tool exited 0; otherwise an error carrying its stderr.
    pub fn require_success(&self) -> Result<()> {
        if self.status.success() {
            Ok(())
        } else {
            Err(Error::exited(
                &self.name,
                "successful exit",
                Some(self.status),
                self.stderr.clone(),
            ))
        }
    }
}

/// Runs `cmd` to its end with stdin closed, collecting stdout and stderr whole; kills it (by
/// its own PID) if it is still running after `timeout`.
pub fn run_bounded(name: &str, mut cmd: Command, timeout: Duration) -> Result<ToolOutput> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting {name} ({cmd:?})"), e))?;
    // Collected into shared buffers, so that on a timeout what arrived so far can be shown
    // without joining readers that a surviving grandchild may keep blocked.
    let collect = |stream: Option<Box<dyn Read + Send>>| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let reader = thread::spawn(move || {
            let Some(mut s) = stream else { return };
            let mut chunk = [0u8; 8192];
            // a read error only truncates what we show
            while let Ok(n @ 1..) = s.read(&mut chunk) {
                if let Ok(mut b) = sink.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
        (buffer, reader)
    };
    let text = |buffer: &Mutex<Vec<u8>>| {
        buffer.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    };
    let (out, out_reader) =
        collect(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let (err, err_reader) =
        collect(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // our own child, not yet reaped: its PID cannot have been reused
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    name: name.to_owned(),
                    what: "exit".to_owned(),
                    timeout,
                    tail: text(&err),
                });
            }
            Err(e) => return Err(Error::io(format!("waiting for {name}"), e)),
        }
    };
    // the pipes close when the tool exits (unless it left a child holding them)
    let _ = (out_reader.join(), err_reader.join());
    Ok(ToolOutput { name: name.to_owned(), status, stdout: text(&out), stderr: text(&err) })
}

/// Memory figures of a running process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcMemory {
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of process `pid` (Linux only).
pub fn proc_memory(pid: u32) -> Result<ProcMemory> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {path}"), e))?;
    parse_proc_status(&text).ok_or_else(|| Error::Setup(format!("no VmRSS/VmHWM in {path}")))
}

fn parse_proc_status(text: &str) -> Option<ProcMemory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(ProcMemory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// A running `shoal stream`, killed when dropped.
pub struct ShoalStream {
    pub process: ChildGuard,
    /// Its `{"event":"listening",...}` line.
    pub listening: Value,
    addr: SocketAddr,
}

impl ShoalStream {
    /// `shoal stream SOURCE --json --http 127.0.0.1:0 ARGS...`; returns once it prints its
    /// `listening` line (which it does once the metadata is known), waiting at most `timeout`.
    pub fn start(
        shoal: &Path,
        source: impl AsRef<OsStr>,
        args: &[OsString],
        timeout: Duration,
    ) -> Result<ShoalStream> {
        let mut cmd = Command::new(shoal);
        cmd.arg("stream")
            .arg(source.as_ref())
            .args(["--json", "--http", "127.0.0.1:0"])
            .args(args)
            .env("NO_COLOR", "1")
            // The DHT's default routers are outside; LSD multicasts on the LAN; port mapping
            // asks the machine's router.
            .env("SHOAL_NO_DHT", "1")
            .env("SHOAL_NO_LSD", "1")
            .env("SHOAL_NO_PORT_MAPPING", "1");
        // the engine's debug lines are what a failure message needs
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn,shoal=debug");
        }
        let mut process = ChildGuard::spawn("shoal-stream", cmd)?;
        let listening = process
            .wait_for("the \"listening\" line", timeout, |v| event_name(v) == Some("listening"))?;
        let addr = listening
            .get("http")
            .and_then(Value::as_str)
            .and_then(|url| url.strip_prefix("http://"))
            .and_then(|hostport| hostport.trim_end_matches('/').parse().ok())
            .ok_or_else(|| {
                Error::Setup(format!("listening line without an http address: {listening}"))
            })?;
        Ok(ShoalStream { process, listening, addr })
    }

    /// Where the HTTP server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The `files` array of the listening line.
    pub fn files(&self) -> &[Value] {
        self.listening.get("files").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }

    /// The full URL of file `index`, as announced.
    pub fn file_url(&self, index: usize) -> Result<String> {
        self.files()
            .iter()
            .find(|f| f.get("index").and_then(Value::as_u64) == Some(index as u64))
            .and_then(|f| f.get("url").and_then(Value::as_str))
            .map(str::to_owned)
            .ok_or_else(|| Error::Setup(format!("no file {index} in {}", self.listening)))
    }

    /// The path part of [`ShoalStream::file_url`] (`/files/0/name.mp4`), for raw HTTP clients.
    pub fn file_path(&self, index: usize) -> Result<String> {
        let url = self.file_url(index)?;
        let prefix = format!("http://{}", self.addr);
        url.strip_prefix(&prefix)
            .map(str::to_owned)
            .ok_or_else(|| Error::Setup(format!("file URL {url} is not under {prefix}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tshoal\nVmPeak:\t  9000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_proc_status(text), Some(ProcMemory { rss_kib: 4096, hwm_kib: 5120 }));
        assert_eq!(parse_proc_status("Name:\tx\n"), None);
        let own = proc_memory(std::process::id()).unwrap();
        assert!(own.rss_kib > 0 && own.hwm_kib >= own.rss_kib, "{own:?}");
    }

    fn write_boxes(path: &Path, boxes: &[(&[u8; 4], u32)]) {
        let mut bytes = Vec::new();
        for (kind, size) in boxes {
            bytes.extend_from_slice(&size.to_be_bytes());
            bytes.extend_from_slice(*kind);
            bytes.resize(bytes.len() + *size as usize - 8, 0);
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn box_order_is_read_from_the_headers() {
        let dir = tempfile::tempdir().unwrap();
        let late = dir.path().join("late.mp4");
        write_boxes(&late, &[(b"ftyp", 24), (b"mdat", 100), (b"moov", 40)]);
        assert!(moov_after_mdat(&late).unwrap());
        let kinds: Vec<_> = top_level_boxes(&late).unwrap().into_iter().map(|b| b.kind).collect();
        assert_eq!(kinds, ["ftyp", "mdat", "moov"]);
        let early = dir.path().join("early.mp4");
        write_boxes(&early, &[(b"ftyp", 24), (b"moov", 40), (b"mdat", 100)]);
        assert!(!moov_after_mdat(&early).unwrap());
        // a size running past the end is an error, not a loop
        let bad = dir.path().join("bad.mp4");
        std::fs::write(&bad, [0, 0, 1, 0, b'm', b'd', b'a', b't', 0, 0]).unwrap();
        assert!(top_level_boxes(&bad).is_err());
    }

    #[test]
    fn run_bounded_collects_output_and_kills_on_timeout() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_bounded("sh", cmd, Duration::from_secs(10)).unwrap();
        assert_eq!((out.stdout.trim(), out.stderr.trim()), ("out", "err"));
        assert!(out.require_success().is_err());
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exec sleep 30"]);
        assert!(matches!(
            run_bounded("sleep", cmd, Duration::from_millis(200)),
            Err(Error::Timeout { .. })
        ));
    }

    /// Needs ffmpeg (the interop tests' machine has it); skipped with the interop tests.
    #[test]
    fn makes_an_mp4_with_moov_at_the_end_and_a_webm() {
        if crate::paths::skip_interop() {
            return;
        }
        require_media_tools().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mp4 = dir.path().join("a.mp4");
        make_mp4_moov_at_end(&mp4, 4, 2000).unwrap();
        let size = std::fs::metadata(&mp4).unwrap().len();
        // 4 s × (2000 + 128) kbit/s ≈ 1 MiB
        assert!((600_000..2_000_000).contains(&size), "{size}");
        let webm = dir.path().join("a.webm");
        make_webm(&webm, 2, 500).unwrap();
        let mut probe = Command::new("ffprobe");
        probe
            .args(["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(&webm);
        let out = run_bounded("ffprobe", probe, Duration::from_secs(30)).unwrap();
        out.require_success().unwrap();
        assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["vp8", "opus"]);
    }
}
