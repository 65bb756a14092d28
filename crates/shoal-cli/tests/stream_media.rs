//! Real players' access patterns on `shoal stream`: an MP4 whose `moov` atom is at the end
//! (ffmpeg's default layout, no faststart), seeded by libtorrent at 1 MiB/s so that the whole
//! download takes about 24 s. `ffprobe` on the stream URL must succeed while most of the file
//! is still missing (it reads the start, then jumps to the index at the end), and
//! `ffmpeg -i URL -f null -` must decode every frame without one error while the file
//! downloads. Once writing to `-o`, once in memory.
//!
//! Every process is killed when its guard drops; every wait is bounded; nothing asserts on
//! wall-clock time.

mod stream_support;

use std::process::Command;
use std::time::{Duration, Instant};

use shoal_testkit::*;
use stream_support::*;

/// 40 s of 4.8 Mbit/s video and 128 kbit/s audio: about 24 MiB.
const SECONDS: u32 = 40;
const VIDEO_KBPS: u32 = 4800;
const PIECE_KIB: u32 = 64;
/// The seeder's upload cap, so that the download takes well over ten seconds.
const SEED_RATE: u64 = 1 << 20;
/// Bounds on the tools (they normally take a second, and about the download's duration).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const DECODE_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `-o DIR`: the full download continues while streaming.
    Disk,
    /// no `-o`: pieces held in memory within the default budget.
    Memory,
}

#[track_caller]
fn progress(stream: &ShoalStream) -> (u64, u64) {
    pieces(&api_status(stream))
}

fn ffprobe_and_ffmpeg_on_a_moov_at_end_mp4(mode: Mode, seed_no: u64) {
    require_media_tools().expect("ffmpeg and ffprobe");
    let dir = tempfile::Builder::new().prefix("shoal-stream-media-").tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    let mp4 = data.join(format!("clip-{seed_no}.mp4"));
    make_mp4_moov_at_end(&mp4, SECONDS, VIDEO_KBPS).expect("making the MP4");
    let boxes = top_level_boxes(&mp4).expect("boxes");
    eprintln!("test MP4: {boxes:?}");
    let opts = TorrentOpts { piece_kib: PIECE_KIB, ..TorrentOpts::default() };
    let torrent = make_torrent(&mp4, &dir.path().join("clip.torrent"), &opts).expect("torrent");
    let seed_opts = PeerOpts { upload_limit: Some(SEED_RATE), ..PeerOpts::default() };
    let seed = lt_seed(&torrent.path, &data, &seed_opts).expect("libtorrent seed");

    let out = dir.path().join("out");
    let args = match mode {
        Mode::Disk => vec![arg("-o"), arg(&out)],
        Mode::Memory => Vec::new(),
    };
    let started = Instant::now();
    let stream = start_stream(&torrent.path, seed.addr(), &args);
    assert_eq!(stream.listening["selected"].as_u64(), Some(0), "{}", stream.listening);
    assert_eq!(stream.files()[0]["mime"].as_str(), Some("video/mp4"), "{}", stream.listening);
    let url = stream.file_url(0).expect("the file's URL");

    // ffprobe: needs the start and the moov at the end, not the middle
    let mut probe = Command::new("ffprobe");
    probe.args(["-v", "error", "-show_format", "-show_streams"]).arg(&url);
    let probed = run_bounded("ffprobe", probe, PROBE_TIMEOUT).expect("ffprobe ran");
    let (have, total) = progress(&stream);
    eprintln!(
        "{mode:?}: ffprobe done {:.1?} after start, with {have}/{total} pieces",
        started.elapsed()
    );
    probed.require_success().unwrap_or_else(|e| panic!("ffprobe {url} failed: {e}"));
    assert!(probed.stderr.trim().is_empty(), "ffprobe complained: {}", probed.stderr);
    for want in ["codec_name=h264", "codec_name=aac", "format_name=mov,mp4"] {
        assert!(probed.stdout.contains(want), "ffprobe output lacks {want}:\n{}", probed.stdout);
    }
    assert!(
        have < total,
        "ffprobe must succeed long before the download completes, but all {total} pieces are in"
    );

    // ffmpeg decodes everything while the download runs
    let (have, total) = progress(&stream);
    assert!(have < total, "the download finished before the decode started: {have}/{total}");
    let mut decode = Command::new("ffmpeg");
    decode.args(["-nostdin", "-v", "error", "-i"]).arg(&url).args(["-f", "null", "-"]);
    let t0 = Instant::now();
    let decoded = run_bounded("ffmpeg -f null", decode, DECODE_TIMEOUT).expect("ffmpeg ran");
    let (have, total) = progress(&stream);
    eprintln!("{mode:?}: decoded in {:.1?}; then {have}/{total} pieces", t0.elapsed());
    decoded.require_success().unwrap_or_else(|e| panic!("ffmpeg -i {url} failed: {e}"));
    assert!(
        decoded.stderr.trim().is_empty(),
        "ffmpeg reported errors while decoding:\n{}",
        decoded.stderr
    );

    if mode == Mode::Disk {
        wait_status(&stream, "a complete download", Duration::from_secs(120), |s| {
            let (have, total) = pieces(s);
            have == total
        });
        drop(stream);
        assert_trees_equal(&mp4, &out.join(mp4.file_name().expect("a name")));
    }
}

#[test]
fn ffprobe_and_ffmpeg_stream_a_moov_at_end_mp4_written_to_disk() {
    if skip_interop() {
        return;
    }
    ffprobe_and_ffmpeg_on_a_moov_at_end_mp4(Mode::Disk, 51);
}

#[test]
fn ffprobe_and_ffmpeg_stream_a_moov_at_end_mp4_in_memory() {
    if skip_interop() {
        return;
    }
    ffprobe_and_ffmpeg_on_a_moov_at_end_mp4(Mode::Memory, 52);
}

/// A WebM picked by name (`--file`) out of a folder torrent: labelled `video/webm`, and
/// ffprobe and ffmpeg read it over HTTP while it downloads.
#[test]
fn ffprobe_and_ffmpeg_stream_a_webm_chosen_by_name() {
    if skip_interop() {
        return;
    }
    require_media_tools().expect("ffmpeg and ffprobe");
    let dir = tempfile::Builder::new().prefix("shoal-stream-webm-").tempdir().expect("a temp dir");
    let share = dir.path().join("data").join("show");
    std::fs::create_dir_all(&share).expect("data folder");
    make_webm(&share.join("episode.webm"), 20, 2000).expect("making the WebM");
    // a larger MP4 next to it: without --file, it would be the one selected
    make_mp4_moov_at_end(&share.join("bigger.mp4"), 10, 6000).expect("making the MP4");
    let opts = TorrentOpts { piece_kib: PIECE_KIB, ..TorrentOpts::default() };
    let torrent = make_torrent(&share, &dir.path().join("show.torrent"), &opts).expect("torrent");
    let index = torrent.files.iter().position(|f| f.path == "episode.webm").expect("the WebM");
    let seed_opts = PeerOpts { upload_limit: Some(SEED_RATE), ..PeerOpts::default() };
    let seed =
        lt_seed(&torrent.path, &dir.path().join("data"), &seed_opts).expect("libtorrent seed");

    let stream = start_stream(&torrent.path, seed.addr(), &[arg("--file"), arg("episode.webm")]);
    assert_eq!(stream.listening["selected"].as_u64(), Some(index as u64), "{}", stream.listening);
    assert_eq!(stream.files()[index]["mime"].as_str(), Some("video/webm"), "{}", stream.listening);
    let url = stream.listening["url"].as_str().expect("the selected file's URL").to_owned();
    assert_eq!(url, stream.file_url(index).expect("the WebM's URL"));

    let mut probe = Command::new("ffprobe");
    probe.args(["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"]).arg(&url);
    let probed = run_bounded("ffprobe", probe, PROBE_TIMEOUT).expect("ffprobe ran");
    probed.require_success().unwrap_or_else(|e| panic!("ffprobe {url} failed: {e}"));
    assert_eq!(probed.stdout.split_whitespace().collect::<Vec<_>>(), ["vp8", "opus"]);
    let (have, total) = progress(&stream);
    assert!(have < total, "ffprobe should not need the whole torrent: {have}/{total}");

    let mut decode = Command::new("ffmpeg");
    decode.args(["-nostdin", "-v", "error", "-i"]).arg(&url).args(["-f", "null", "-"]);
    let decoded = run_bounded("ffmpeg -f null", decode, DECODE_TIMEOUT).expect("ffmpeg ran");
    decoded.require_success().unwrap_or_else(|e| panic!("ffmpeg -i {url} failed: {e}"));
    assert!(decoded.stderr.trim().is_empty(), "ffmpeg reported errors:\n{}", decoded.stderr);
}
