//! Shoal and WebTorrent 3 in headless Chromium, over WebRTC, found through our WebSocket
//! tracker: a browser downloads from `shoal seed`, and `shoal download` downloads from a
//! browser. Both check the bytes by SHA-1.
//!
//! WebRTC in Chromium needs an interface other than loopback, so each test re-executes itself
//! in a private network namespace (shoal_testkit::netns) holding the tracker (in-process), the
//! `shoal` child process and the browsers. Skipped (`SKIP:`) only where node, Chromium, the npm
//! packages or namespaces are missing.

mod interop_support;

use interop_support::*;
use shoal_testkit::*;

#[test]
fn webtorrent_in_chromium_downloads_from_shoal_seed() {
    browser_downloads_from_shoal_seed("webtorrent_in_chromium_downloads_from_shoal_seed", false);
}

/// As users run it: Chromium offers mDNS names instead of its host addresses, so Shoal learns
/// the browser's address only from the connectivity checks it receives.
#[test]
fn webtorrent_in_chromium_with_mdns_names_downloads_from_shoal_seed() {
    let test = "webtorrent_in_chromium_with_mdns_names_downloads_from_shoal_seed";
    browser_downloads_from_shoal_seed(test, true);
}

fn browser_downloads_from_shoal_seed(test: &str, mdns: bool) {
    in_netns(test, |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clip.bin");
        write_random_file(&file, (5 << 20) + 4321, 11).unwrap();
        let want = sha1_file(&file).unwrap();
        // No TCP peer can reach the browser: whatever it gets came over WebRTC.
        let (mut seed, started) = shoal_ws_seed(&file, ws);
        let magnet = started["magnet"].as_str().expect("a magnet").to_owned();
        assert!(started["webrtc"].is_string(), "WebRTC is on by default: {started}");

        let opts =
            BrowserOpts { mdns, ..BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT) };
        let out = dir.path().join("out");
        let mut leech = browser_leech(&magnet, &out, &opts).expect("browser starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the browser completes");
        println!("browser done: {done}");
        assert_host_candidates(leech.process(), mdns);
        assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "what WebTorrent verified");
        assert_eq!(sha1_file(&out.join("clip.bin")).unwrap(), want, "what was written");
        drop(leech);
        seed.stop();
    });
}

#[test]
fn shoal_download_downloads_from_webtorrent_in_chromium() {
    shoal_downloads_from_browser("shoal_download_downloads_from_webtorrent_in_chromium", false);
}

/// The other direction with mDNS names in the browser's offers and answers.
#[test]
fn shoal_download_downloads_from_webtorrent_in_chromium_with_mdns_names() {
    let test = "shoal_download_downloads_from_webtorrent_in_chromium_with_mdns_names";
    shoal_downloads_from_browser(test, true);
}

fn shoal_downloads_from_browser(test: &str, mdns: bool) {
    in_netns(test, |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("movie.bin");
        write_random_file(&file, (4 << 20) + 999, 12).unwrap();
        let want = sha1_file(&file).unwrap();
        let opts =
            BrowserOpts { mdns, ..BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT) };
        let mut seed = browser_seed(&file, &opts).expect("browser seed starts");
        let magnet = seed.magnet().expect("the seed's magnet").to_owned();

        let out = dir.path().join("out");
        let done = shoal_download(&[
            arg(&magnet),
            arg("-o"),
            arg(&out),
            arg("--listen"),
            arg("127.0.0.1:0"),
        ]);
        println!("shoal done: {done}");
        assert_eq!(sha1_file(&out.join("movie.bin")).unwrap(), want, "what shoal wrote");
        assert_host_candidates(seed.process(), mdns);
        drop(seed);
    });
}

/// The browser's host candidates (the driver reports the first few) were all mDNS names, or
/// all addresses: the kind the test meant Shoal to deal with.
#[track_caller]
fn assert_host_candidates(browser: &mut ChildGuard, mdns: bool) {
    let is_candidate = |e: &serde_json::Value| event_name(e) == Some("local_candidate");
    if !browser.events().iter().any(is_candidate) {
        let _ =
            browser.wait_for("a host candidate", std::time::Duration::from_secs(10), is_candidate);
    }
    let kinds: Vec<&str> = browser
        .events()
        .iter()
        .filter(|e| is_candidate(e))
        .filter_map(|e| e["kind"].as_str())
        .collect();
    let want = if mdns { "mdns" } else { "address" };
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == want),
        "the browser's host candidates were {kinds:?}, not all {want}"
    );
}
