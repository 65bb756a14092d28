//! The hybrid bridge: one Shoal peer in a TCP swarm and a WebRTC swarm at once, so the two
//! become one. Classic clients cannot speak WebRTC and browsers cannot speak TCP; only Shoal
//! speaks both.
//!
//! - libtorrent 2.0 (TCP only) seeds; `shoal download --seed` dials it and is found by a
//!   WebTorrent browser through the WebSocket tracker; the browser completes the file.
//! - The reverse: a browser seeds, `shoal download --seed` gets it over WebRTC, and a TCP-only
//!   libtorrent leecher that only knows Shoal's TCP address completes.
//!
//! In a private network namespace, like every WebRTC test (see `webrtc_browsers.rs`).

mod interop_support;

use std::net::SocketAddr;

use interop_support::*;
use shoal_testkit::*;

/// `shoal download --seed ...`, waited on until it has started; returns it and its TCP address.
fn shoal_hybrid(args: Vec<std::ffi::OsString>) -> (ChildGuard, SocketAddr) {
    let mut all = vec![arg("download"), arg("--seed"), arg("--listen"), arg("127.0.0.1:0")];
    all.extend(args);
    let mut shoal = spawn_shoal("shoal-hybrid", &all);
    let started = shoal.wait_event("started", SEED_START_TIMEOUT).expect("shoal starts");
    assert!(started["webrtc"].is_string(), "WebRTC is on: {started}");
    let listen: SocketAddr =
        started["listen"].as_str().and_then(|a| a.parse().ok()).expect("a TCP listen address");
    (shoal, listen)
}

#[test]
fn a_browser_gets_a_file_that_only_a_tcp_seeder_has() {
    in_netns("a_browser_gets_a_file_that_only_a_tcp_seeder_has", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let file = data.join("film.bin");
        write_random_file(&file, (6 << 20) + 777, 21).unwrap();
        let want = sha1_file(&file).unwrap();
        let opts = TorrentOpts { piece_kib: 64, ..TorrentOpts::default() };
        let torrent = make_torrent(&file, &dir.path().join("film.torrent"), &opts).unwrap();
        // libtorrent 2.0 from Debian: TCP only, no tracker; only Shoal is told where it is.
        let seed = lt_seed(&torrent.path, &data, &PeerOpts::default()).expect("libtorrent seeds");

        let out = dir.path().join("hybrid");
        let (mut shoal, _) = shoal_hybrid(vec![
            arg(&torrent.path),
            arg("-o"),
            arg(&out),
            arg("--peer"),
            arg(seed.addr().to_string()),
            arg("--tracker"),
            arg(ws),
        ]);

        // The browser knows the info hash and the WebSocket tracker, nothing else.
        let hash = shoal_proto::InfoHash::from_hex(&torrent.info_hash).expect("hex info hash");
        let mut magnet = shoal_proto::magnet::Magnet::new(hash);
        magnet.trackers.push(ws.to_owned());
        let magnet = magnet.to_uri();
        let browser_opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let browser_out = dir.path().join("browser");
        let mut browser = browser_leech(&magnet, &browser_out, &browser_opts).expect("browser");
        let done = browser.wait_done(BROWSER_TIMEOUT).expect("the browser completes");
        println!("browser done: {done}");
        assert_eq!(sha1_file(&browser_out.join("film.bin")).unwrap(), want);
        assert_eq!(sha1_file(&out.join("film.bin")).unwrap(), want, "the hybrid's copy");
        drop(browser);
        shoal.stop();
        drop(seed);
    });
}

#[test]
fn a_tcp_leecher_gets_a_file_that_only_a_browser_has() {
    in_netns("a_tcp_leecher_gets_a_file_that_only_a_browser_has", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("song.bin");
        write_random_file(&file, (5 << 20) + 4321, 22).unwrap();
        let want = sha1_file(&file).unwrap();
        let browser_opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let browser = browser_seed(&file, &browser_opts).expect("browser seeds");
        let magnet = browser.magnet().expect("the browser's magnet").to_owned();
        let info_hash = browser.info_hash().expect("info hash").to_owned();

        let out = dir.path().join("hybrid");
        let (mut shoal, shoal_tcp) = shoal_hybrid(vec![arg(&magnet), arg("-o"), arg(&out)]);

        // libtorrent gets a bare magnet and Shoal's TCP address: metadata and data both come
        // through Shoal, which has them only from the browser.
        let lt_out = dir.path().join("libtorrent");
        let bare = format!("magnet:?xt=urn:btih:{info_hash}");
        let opts = PeerOpts::default().connect(shoal_tcp).timeout(BROWSER_TIMEOUT);
        let mut leech = lt_leech(&bare, &lt_out, &opts).expect("libtorrent leeches");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("libtorrent completes");
        println!("libtorrent done: {done}");
        assert_eq!(sha1_file(&lt_out.join("song.bin")).unwrap(), want, "libtorrent's copy");
        assert_eq!(sha1_file(&out.join("song.bin")).unwrap(), want, "the hybrid's copy");
        let complete =
            shoal.wait_event("complete", SEED_START_TIMEOUT).expect("the hybrid completes");
        assert!(
            complete["webrtc_peers"].as_u64() >= Some(1),
            "its data came over WebRTC: {complete}"
        );
        shoal.stop();
        drop(browser);
    });
}
