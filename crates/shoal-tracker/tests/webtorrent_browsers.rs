//! Two headless Chromium instances running WebTorrent 3 (shoal-testkit's browser peers)
//! exchange a file with our tracker as their only way to find each other: the seed's magnet
//! names only our ws:// tracker, browsers have no DHT, and the tracker's counters show the
//! offer and the answer it relayed. The file is checked by SHA-1 as written to disk.
//!
//! WebRTC needs an interface other than loopback, so the test re-executes itself in a private
//! network namespace (shoal_testkit::netns): the tracker runs in-process there, on the
//! namespace's own 127.0.0.1, and the browsers are its child processes. It is skipped (with
//! `SKIP:`) only on a machine without node, Chromium, the npm packages or namespaces.

mod common;

use std::time::Duration;

use shoal_testkit::*;
use shoal_tracker::Config;

/// Its full name, for re-executing exactly this test in the namespace.
const TEST: &str = "two_browsers_exchange_a_file_through_the_tracker_alone";

#[test]
fn two_browsers_exchange_a_file_through_the_tracker_alone() {
    if skip_interop() {
        return;
    }
    if let Some(why) = browser_unavailable() {
        println!("SKIP: {why}");
        eprintln!("SKIP: {TEST}: {why}");
        return;
    }
    match run_test_in_netns(TEST, Duration::from_secs(400)) {
        Ok(Netns::Inside) => {}
        Ok(Netns::Passed) => return,
        Ok(Netns::Skipped(why)) => {
            println!("SKIP: {why}");
            eprintln!("SKIP: {TEST}: {why}");
            return;
        }
        Err(e) => panic!("{e}"),
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tracker = runtime.block_on(shoal_tracker::start(Config {
        ws: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    }));
    let tracker = tracker.expect("tracker starts");
    let ws = format!("ws://{}", tracker.ws_addr.unwrap());

    let dir = tempfile::tempdir().unwrap();
    // Not a whole number of pieces: the short last piece goes through too.
    let file = dir.path().join("clip.bin");
    write_random_file(&file, (3 << 20) + 12_345, 7).unwrap();
    let want = sha1_file(&file).unwrap();

    let opts = BrowserOpts::default().announce(ws.clone()).timeout(Duration::from_secs(150));
    let seed = browser_seed(&file, &opts).unwrap();
    let magnet = seed.magnet().expect("the seed's ready event has a magnet").to_owned();
    let trackers: Vec<&str> = magnet.split('&').filter(|p| p.starts_with("tr=")).collect();
    assert_eq!(trackers.len(), 1, "only our tracker in {magnet}");
    assert_eq!(tracker.stats().ws.seeders + tracker.stats().ws.leechers, 1, "the seed announced");

    let out = dir.path().join("out");
    let mut leech = browser_leech(&magnet, &out, &opts).unwrap();
    let done = leech.wait_done(Duration::from_secs(200)).unwrap();
    println!("leech done: {done}");

    assert_eq!(done["info_hash"].as_str(), seed.info_hash());
    assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "what WebTorrent verified");
    assert_eq!(sha1_file(&out.join("clip.bin")).unwrap(), want, "what was written");
    let stats = tracker.stats();
    println!("{}", stats.to_json());
    let counter = |name: &str| stats.counters.get(name).copied().unwrap_or(0);
    assert!(counter("ws_announces") >= 2, "both browsers announced");
    assert!(counter("ws_offers_relayed") >= 1, "an offer went through the tracker");
    assert!(counter("ws_answers_relayed") >= 1, "an answer came back through it");

    drop((leech, seed));
    runtime.block_on(tracker.shutdown()).unwrap();
}
