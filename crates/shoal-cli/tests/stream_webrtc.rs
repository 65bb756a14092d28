//! `shoal stream` fed by a seeder it can reach only over WebRTC: both are Shoal, they meet
//! through the WebSocket tracker, and nobody learns the seeder's TCP address. The status API
//! counts the peer as a WebRTC peer, and the file streams intact through a bounded store.
//!
//! In a private network namespace, like every WebRTC test (see `webrtc_browsers.rs`), though no
//! browser takes part.

mod interop_support;
mod stream_support;

use std::time::Duration;

use interop_support::{arg, in_netns_unless, shoal_ws_seed};
use shoal_testkit::{write_random_file, ShoalStream};
use stream_support::{get, shoal_path, wait_status, LISTEN_TIMEOUT};

#[test]
fn shoal_stream_plays_from_a_seeder_reachable_only_over_webrtc() {
    let test = "shoal_stream_plays_from_a_seeder_reachable_only_over_webrtc";
    in_netns_unless(test, None, |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("talk.mp4");
        write_random_file(&file, (16 << 20) + 99, 31).unwrap();
        let want = std::fs::read(&file).unwrap();
        let (mut seed, started) = shoal_ws_seed(&file, ws);
        // The printed magnet carries the seeder's TCP address (`x.pe`): build one that names
        // the info hash and the WebSocket tracker only, so metadata and data come over WebRTC.
        let hash = started["info_hash"].as_str().and_then(shoal_proto::InfoHash::from_hex);
        let mut magnet = shoal_proto::magnet::Magnet::new(hash.expect("an info hash"));
        magnet.trackers.push(ws.to_owned());
        let magnet = magnet.to_uri();

        let stream = ShoalStream::start(
            &shoal_path(),
            &magnet,
            // A bounded store keeps the download behind the reader, so the peer stays connected
            // while the test looks (a complete stream and a seed would part at once).
            &[arg("--listen"), arg("127.0.0.1:0"), arg("--max-memory"), arg("4MiB")],
            LISTEN_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("`shoal stream` did not start: {e}"));
        let status = wait_status(&stream, "a WebRTC peer", Duration::from_secs(60), |s| {
            s["webrtc_peers"].as_u64() >= Some(1)
        });
        assert_eq!(status["peers"], status["webrtc_peers"], "every peer is a WebRTC one: {status}");
        let url = status["files"][0]["url"].as_str().expect("the file's URL").to_owned();
        let response = get(stream.addr(), &url, None);
        assert_eq!(response.status(), 200, "{}", response.describe());
        assert!(response.body == want, "the streamed bytes differ ({} bytes)", response.body.len());
        seed.stop();
    });
}
