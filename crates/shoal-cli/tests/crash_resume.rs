//! Crash safety: `shoal download` killed with SIGKILL in the middle of a transfer, then run
//! again on the same folder, must finish with the right bytes and without fetching again the
//! pieces it had already verified.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use serde_json::Value;
use shoal_testkit::{assert_trees_equal, event_name, lt_seed, ChildGuard, PeerOpts};
use support::{
    field_u64, kill_9, set_mtime_ago, skip, spawn_download, wait_complete, Fixture, START_TIMEOUT,
    TRANSFER_TIMEOUT,
};

/// 64 MiB in 256 KiB pieces.
const PAYLOAD: u64 = 64 << 20;
const PIECE_KIB: u32 = 256;
/// The seed's upload cap: the whole payload takes about six seconds, so there is a "middle"
/// to kill Shoal in, seen through its once-a-second progress lines.
const SEED_RATE: u64 = 10 << 20;

#[test]
fn killed_download_resumes_without_fetching_verified_pieces_again() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 41);
    let total = fx.torrent.total_size;
    let seed = lt_seed(
        &fx.torrent.path,
        &fx.data,
        &PeerOpts { upload_limit: Some(SEED_RATE), ..PeerOpts::default() },
    )
    .unwrap_or_else(|e| panic!("seed: {e}"));
    let out = fx.path("out");
    let peer_args = ["--peer".to_owned(), seed.addr().to_string()];

    // First run: killed once at least a quarter of the payload is verified.
    let mut first = spawn_download("shoal (killed)", &fx.torrent.path, &out, &peer_args);
    let midway = first
        .wait_for("a quarter of the payload verified", TRANSFER_TIMEOUT, |v| {
            let progress = event_name(v) == Some("progress")
                && v["bytes_done"].as_u64().is_some_and(|done| done >= total / 4);
            progress || event_name(v) == Some("complete")
        })
        .unwrap_or_else(|e| panic!("no progress to kill shoal in the middle of: {e}"));
    assert_eq!(
        event_name(&midway),
        Some("progress"),
        "the download completed before it could be killed (is the seed's upload limit applied?)"
    );
    let verified_at_kill = field_u64(&midway, "bytes_done");
    assert!(verified_at_kill < total, "nothing left to download: {midway}");
    kill_9(first.pid());
    let status = first.wait_exit(Duration::from_secs(30)).expect("the killed shoal exits");
    assert_eq!(status.signal(), Some(9), "shoal was not killed by SIGKILL: {status}");
    eprintln!("killed with {verified_at_kill} of {total} bytes verified");

    // Second run, same folder: it rechecks what is there and fetches only the rest.
    let mut second = spawn_download("shoal (resumed)", &fx.torrent.path, &out, &peer_args);
    let done: Value = wait_complete(&mut second);
    assert_trees_equal(&fx.content(), &out.join("share"));
    let downloaded = field_u64(&done, "downloaded");
    eprintln!("resumed run downloaded {downloaded} bytes: {done}");
    assert!(downloaded < total, "the resumed run downloaded everything again: {done}");
    assert!(
        downloaded <= total - verified_at_kill,
        "the resumed run fetched pieces verified before the kill: {downloaded} bytes \
         downloaded, but only {} were missing",
        total - verified_at_kill
    );
}

/// Every regular file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Runs `shoal download` over data already complete in `fx.data` and returns where its
/// `checked` event says the pieces came from (`resume` or `hash`) and how many.
fn check_complete_data(fx: &Fixture, state: &std::path::Path, run: &str) -> (String, u64) {
    let extra = ["--resume-dir".to_owned(), state.display().to_string()];
    let mut shoal = spawn_download(run, &fx.torrent.path, &fx.data, &extra);
    let checked = shoal
        .wait_event("checked", START_TIMEOUT)
        .unwrap_or_else(|e| panic!("{run}: no checked event: {e}"));
    let done = wait_complete(&mut shoal);
    assert_eq!(field_u64(&done, "downloaded"), 0, "{run}: the data was complete: {done}");
    let from = checked["from"].as_str().unwrap_or_else(|| panic!("no from in {checked}"));
    (from.to_owned(), field_u64(&checked, "pieces_have"))
}

/// A clean exit leaves a resume record: the next start trusts it while every file is as it
/// was (no hashing), and hashes again once one changed.
#[test]
fn a_restart_with_unchanged_files_does_not_hash_them_again() {
    if skip() {
        return;
    }
    let fx = Fixture::new(4 << 20, 64, 43);
    let pieces = u64::from(fx.piece_count());
    let state = fx.path("state");
    // Files written just now could change again within one tick of the file system's clock
    // without their time moving, and are not trusted (the record's "racily clean" rule): the
    // fixture's are made older, as any file not written in the last seconds is.
    let files = files_under(&fx.content());
    for file in &files {
        set_mtime_ago(file, 3600);
    }
    assert_eq!(check_complete_data(&fx, &state, "first start"), ("hash".into(), pieces));
    assert_eq!(check_complete_data(&fx, &state, "second start"), ("resume".into(), pieces));
    assert_eq!(check_complete_data(&fx, &state, "third start"), ("resume".into(), pieces));
    // One file touched (same bytes, another time): hashed again, all still good.
    set_mtime_ago(&files[0], 7200);
    assert_eq!(check_complete_data(&fx, &state, "after a touch"), ("hash".into(), pieces));
    assert_eq!(check_complete_data(&fx, &state, "then"), ("resume".into(), pieces));
    // Without a record (another folder for them, or none kept), the start hashes.
    let mut shoal =
        spawn_download("no resume", &fx.torrent.path, &fx.data, &["--no-resume".into()]);
    let checked = shoal.wait_event("checked", START_TIMEOUT).expect("checked event");
    assert_eq!(checked["from"], "hash", "{checked}");
    wait_complete(&mut shoal);
}

/// `shoal seed PATH` until it reports how it made the torrent and found the data, then stopped
/// with SIGTERM (a clean stop); returns the `made` and `checked` events' `from`.
fn seed_path_once(file: &std::path::Path, state: &std::path::Path, run: &str) -> (String, String) {
    let args = ["seed".as_ref(), file.as_os_str(), "--json".as_ref(), "--resume-dir".as_ref()];
    let mut cmd = support::shoal_command(args);
    cmd.arg(state);
    let mut seed = ChildGuard::spawn(run, cmd).unwrap_or_else(|e| panic!("{run}: {e}"));
    let made = seed.wait_event("made", START_TIMEOUT).unwrap_or_else(|e| panic!("{run}: {e}"));
    let checked =
        seed.wait_event("checked", START_TIMEOUT).unwrap_or_else(|e| panic!("{run}: {e}"));
    assert_eq!(checked["pieces_have"], checked["pieces_total"], "{run}: {checked}");
    // Seeding: from now on SIGTERM stops it cleanly.
    seed.wait_event("seeding", START_TIMEOUT).unwrap_or_else(|e| panic!("{run}: {e}"));
    let status = seed.stop().expect("the seed exits");
    assert!(status.success(), "{run}: a stopped seed exits 0: {status}");
    let from =
        |e: &Value| e["from"].as_str().unwrap_or_else(|| panic!("no from in {e}")).to_owned();
    (from(&made), from(&checked))
}

/// A shared path is not read again at a restart: the torrent made of it comes from the
/// record of the last start and the pieces from the resume record, while the file is
/// unchanged; once it changed, both are made again from its bytes.
#[test]
fn a_shared_path_restarts_without_reading_its_file() {
    let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("clip.bin");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
    std::fs::write(&file, &bytes).expect("write the file");
    set_mtime_ago(&file, 3600);
    let state = dir.path().join("state");
    let hashed = ("hash".to_owned(), "hash".to_owned());
    let remembered = ("record".to_owned(), "resume".to_owned());
    assert_eq!(seed_path_once(&file, &state, "first"), hashed);
    assert_eq!(seed_path_once(&file, &state, "second"), remembered);
    assert_eq!(seed_path_once(&file, &state, "third"), remembered);
    set_mtime_ago(&file, 7200);
    assert_eq!(seed_path_once(&file, &state, "after a touch"), hashed);
    assert_eq!(seed_path_once(&file, &state, "then"), remembered);
}
