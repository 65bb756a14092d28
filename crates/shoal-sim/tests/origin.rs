//! An origin seeding to an audience that can serve itself: with spreading
//! (`TorrentConfig::spread`) it sends each piece about once and the viewers pass it on.

mod common;

use common::*;
use shoal_proto::torrent::TorrentConfig;
use shoal_sim::{NodeConfig, Sim};

/// What the origin uploaded, in files, for a crowd of `viewers` that arrive together and all
/// know each other, and when the last one completed (everyone with the right bytes).
fn origin_files_sent(spread: bool, viewers: usize) -> (f64, std::time::Duration) {
    let len = 8 * MIB;
    let mut sim = Sim::new(81, torrent(81, len, 256 * 1024));
    let config = TorrentConfig { spread, ..TorrentConfig::default() };
    // The origin's uplink is as fast as three viewers' together: it can afford to serve them
    // all, so only the policy keeps it from doing so.
    let origin = sim.add_node(NodeConfig::seeder().upload(3 * MIB).torrent_config(config));
    let crowd: Vec<_> = (0..viewers)
        .map(|_| sim.add_node(NodeConfig::leecher().upload(MIB).download(4 * MIB)))
        .collect();
    sim.connect_all();
    let all = sim.run_until(|s| crowd.iter().all(|&v| s.node(v).is_complete()), secs(300));
    let done = all.unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim))).since_epoch();
    for &v in &crowd {
        assert_content(&sim, v);
    }
    let sent = sim.node(origin).stats(sim.now()).uploaded as f64 / len as f64;
    (sent, done)
}

#[test]
fn a_spreading_origin_sends_each_piece_about_once() {
    let (plain, plain_done) = origin_files_sent(false, 8);
    let (spread, spread_done) = origin_files_sent(true, 8);
    eprintln!(
        "origin sent {plain:.2} files plain (all done at {plain_done:?}), \
         {spread:.2} spreading (at {spread_done:?})"
    );
    assert!(spread <= 1.5, "spreading origin sent {spread:.2} files");
    // Without the rule the same crowd takes far more from the origin: the test measures the
    // policy, not a swarm that would have spared the origin anyway.
    assert!(plain >= 2.0 * spread, "plain {plain:.2} against spreading {spread:.2}");
    // The audience's own uplinks carry it: the crowd is not much slower for it.
    assert!(spread_done.as_secs_f64() <= 1.5 * plain_done.as_secs_f64());
}
