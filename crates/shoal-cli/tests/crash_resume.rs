//! Crash safety: `shoal download` killed with SIGKILL in the middle of a transfer, then run
//! again on the same folder, must finish with the right bytes and without fetching again the
//! pieces it had already verified.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shoal_testkit::{assert_trees_equal, event_name, lt_seed, PeerOpts};
use support::{field_u64, skip, spawn_download, wait_complete, Fixture, TRANSFER_TIMEOUT};

/// 64 MiB in 256 KiB pieces.
const PAYLOAD: u64 = 64 << 20;
const PIECE_KIB: u32 = 256;
/// The seed's upload cap: the whole payload takes about six seconds, so there is a "middle"
/// to kill Shoal in, seen through its once-a-second progress lines.
const SEED_RATE: u64 = 10 << 20;

/// SIGKILL to one process we started, by its PID.
fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("running kill: {e}"));
    assert!(status.success(), "kill -9 {pid} failed: {status}");
}

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
