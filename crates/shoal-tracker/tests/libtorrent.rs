//! libtorrent (python3-libtorrent, through shoal-testkit) announces to our tracker over HTTP
//! and over UDP, and a leecher finds the seeder through the tracker alone.

mod common;

use std::time::Duration;

use shoal_testkit::*;
use shoal_tracker::Config;

fn find_each_other(tracker_url: impl Fn(&shoal_tracker::RunningTracker) -> String) {
    if skip_interop() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tracker = runtime.block_on(common::tracker(Config::default()));
    let url = tracker_url(&tracker);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    payload_tree(&data.join("share"), 2 << 20, 32 << 10, 3, 11).unwrap();
    let torrent = make_torrent(
        &data.join("share"),
        &dir.path().join("share.torrent"),
        &TorrentOpts::default(),
    )
    .unwrap();
    let via_tracker = PeerOpts::default().tracker(url.clone());
    let seed = lt_seed(&torrent.path, &data, &via_tracker).unwrap();
    assert_eq!(seed.ready_event()["tracker"], "ok", "the seed announced to {url}");
    // No `connect`: the tracker's peer list is the only way to the seed.
    let out = dir.path().join("out");
    let opts = via_tracker.timeout(Duration::from_secs(90));
    let _leech = lt_download(&torrent.magnet, &out, &opts, Duration::from_secs(120)).unwrap();
    assert_trees_equal(&data.join("share"), &out.join("share"));
    let stats = tracker.stats();
    println!("{}", stats.to_json());
    runtime.block_on(tracker.shutdown()).unwrap();
}

#[test]
fn libtorrent_peers_find_each_other_over_http() {
    find_each_other(|t| format!("http://{}/announce", t.http_addr.unwrap()));
}

#[test]
fn libtorrent_peers_find_each_other_over_udp() {
    find_each_other(|t| format!("udp://{}", t.udp_addr.unwrap()));
}
