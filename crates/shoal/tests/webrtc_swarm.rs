//! Shoal to Shoal over WebRTC only: peers find each other through a WebSocket tracker (ours,
//! in-process), connect with data channels, and the core treats them as ordinary peers. No TCP
//! listener anywhere, so every byte went over WebRTC.

use std::path::Path;
use std::time::Duration;

use shoal::webrtc::WebRtcConfig;
use shoal::{
    AddTorrent, Phase, Session, SessionConfig, StorageTarget, TorrentHandle, TorrentSource,
};
use shoal_proto::create::TorrentBuilder;
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;

mod common;

use common::pseudo_random;

const TIMEOUT: Duration = Duration::from_secs(60);

fn webrtc_only() -> SessionConfig {
    SessionConfig {
        listen: None,
        webrtc: Some(WebRtcConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: Duration::from_secs(15),
            ..WebRtcConfig::default()
        }),
        ..SessionConfig::default()
    }
}

fn torrent(data: &[u8], piece_length: u32) -> Metainfo {
    let builder = TorrentBuilder::single_file("video.bin", data.len() as u64).unwrap();
    let mut hasher = builder.piece_length(piece_length).start().unwrap();
    hasher.update(data).unwrap();
    Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap()
}

async fn tracker() -> (shoal_tracker::RunningTracker, String) {
    let config =
        shoal_tracker::Config { ws: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
    let running = shoal_tracker::start(config).await.unwrap();
    let url = format!("ws://{}", running.ws_addr.unwrap());
    (running, url)
}

/// Seeds `meta` from the file in `dir`, announcing to `url`.
fn add_seed(session: &Session, meta: &Metainfo, dir: &Path, url: &str) -> TorrentHandle {
    session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta.clone())),
            target: StorageTarget::Dir(dir.to_path_buf()),
            only_files: None,
            file_priorities: None,
            peers: vec![],
            extra_trackers: vec![url.to_owned()],
            web_seeds: vec![],
        })
        .unwrap()
}

/// Downloads `meta` into memory from its magnet, whose only tracker is `url`.
fn add_magnet(session: &Session, meta: &Metainfo, url: &str) -> TorrentHandle {
    let mut magnet = Magnet::new(meta.info_hash);
    magnet.trackers.push(url.to_owned());
    session
        .add_torrent(AddTorrent {
            source: TorrentSource::Magnet(magnet),
            target: StorageTarget::Memory,
            only_files: None,
            file_priorities: None,
            peers: vec![],
            extra_trackers: vec![],
            web_seeds: vec![],
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_downloads_over_webrtc_from_a_seeder_found_by_the_websocket_tracker() {
    let (_tracker, url) = tracker().await;
    let data = pseudo_random(6 * 1024 * 1024 + 12_345, 9);
    let meta = torrent(&data, 256 * 1024);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("video.bin"), &data).unwrap();

    let seed_session = Session::new(webrtc_only()).await.unwrap();
    let seed = add_seed(&seed_session, &meta, dir.path(), &url);
    tokio::time::timeout(TIMEOUT, seed.wait_complete()).await.unwrap().unwrap();
    // Let the seeder's announce reach the tracker before the leecher offers.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let leech_session = Session::new(webrtc_only()).await.unwrap();
    let leech = add_magnet(&leech_session, &meta, &url);
    // Once both are seeds they may drop each other, so the WebRTC count is watched while
    // the download runs rather than read after it.
    let most_webrtc_peers = tokio::spawn({
        let mut status = leech.watch();
        async move {
            let mut most = status.borrow().webrtc_peers;
            while status.changed().await.is_ok() {
                let now = status.borrow().clone();
                most = most.max(now.webrtc_peers);
                if now.phase == Phase::Seeding {
                    break;
                }
            }
            most
        }
    });
    tokio::time::timeout(TIMEOUT, leech.wait_complete())
        .await
        .expect("download over WebRTC timed out")
        .unwrap();
    assert_eq!(leech.status().phase, Phase::Seeding);
    let most_webrtc_peers =
        tokio::time::timeout(TIMEOUT, most_webrtc_peers).await.unwrap().unwrap();
    assert!(most_webrtc_peers >= 1, "the peer is counted as WebRTC");

    // The bytes, read back through the streaming reader.
    use tokio::io::AsyncReadExt;
    let mut file = leech.open_file(0).await.unwrap();
    let mut got = Vec::new();
    file.read_to_end(&mut got).await.unwrap();
    assert!(got == data, "downloaded bytes differ");

    leech.shutdown().await;
    seed.shutdown().await;
    // Closed connections leave the endpoints empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (leech_session.webrtc_connections() > 0 || seed_session.webrtc_connections() > 0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leech_session.webrtc_connections(), 0);
    assert_eq!(seed_session.webrtc_connections(), 0);
}

/// A seeder that takes one connection answers no more offers than that: the other leechers'
/// offers are dropped before any WebRTC negotiation, not refused after one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_beyond_the_connection_limit_are_not_answered() {
    let (_tracker, url) = tracker().await;
    let data = pseudo_random(2 * 1024 * 1024, 11);
    let meta = torrent(&data, 256 * 1024);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("video.bin"), &data).unwrap();

    let mut config = webrtc_only();
    config.torrent.max_connections = 1;
    let seed_session = Session::new(config).await.unwrap();
    let seed = add_seed(&seed_session, &meta, dir.path(), &url);
    tokio::time::timeout(TIMEOUT, seed.wait_complete()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut leechers = Vec::new();
    for _ in 0..3 {
        let session = Session::new(webrtc_only()).await.unwrap();
        let handle = add_magnet(&session, &meta, &url);
        leechers.push((session, handle));
    }

    // Each leecher offers five connections; the seeder may hold its one peer plus at most
    // one connection it is still negotiating (an answer made before the first peer counted).
    let mut most_connections = 0;
    let mut most_peers = 0;
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        most_connections = most_connections.max(seed_session.webrtc_connections());
        most_peers = most_peers.max(seed.status().stats.peers);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most_peers, 1, "the seeder's limit is one peer");
    assert!(most_connections <= 2, "the seeder negotiated {most_connections} connections");

    // The leecher that got in finishes (the others wait for their next announce).
    let finished = async {
        loop {
            if leechers.iter().any(|(_, h)| h.status().phase == Phase::Seeding) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, finished).await.expect("the admitted leecher completes");
    for (_, handle) in leechers {
        handle.shutdown().await;
    }
    seed.shutdown().await;
}
