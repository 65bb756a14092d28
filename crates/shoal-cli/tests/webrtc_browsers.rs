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
    in_netns("webtorrent_in_chromium_downloads_from_shoal_seed", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clip.bin");
        write_random_file(&file, (5 << 20) + 4321, 11).unwrap();
        let want = sha1_file(&file).unwrap();
        // No TCP peer can reach the browser: whatever it gets came over WebRTC.
        let (mut seed, started) = shoal_ws_seed(&file, ws);
        let magnet = started["magnet"].as_str().expect("a magnet").to_owned();
        assert!(started["webrtc"].is_string(), "WebRTC is on by default: {started}");

        let opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let out = dir.path().join("out");
        let mut leech = browser_leech(&magnet, &out, &opts).expect("browser starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the browser completes");
        println!("browser done: {done}");
        assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "what WebTorrent verified");
        assert_eq!(sha1_file(&out.join("clip.bin")).unwrap(), want, "what was written");
        drop(leech);
        seed.stop();
    });
}

#[test]
fn shoal_download_downloads_from_webtorrent_in_chromium() {
    in_netns("shoal_download_downloads_from_webtorrent_in_chromium", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("movie.bin");
        write_random_file(&file, (4 << 20) + 999, 12).unwrap();
        let want = sha1_file(&file).unwrap();
        let opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let seed = browser_seed(&file, &opts).expect("browser seed starts");
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
        drop(seed);
    });
}
