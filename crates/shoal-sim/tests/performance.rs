//! How fast, not just whether: slow peers must not hold a download hostage, and a big swarm
//! must finish.

mod common;

use std::time::Duration;

use common::*;
use shoal_sim::{NodeConfig, Sim, SimConfig};

/// Time for one leecher to finish from a fast seeder, with or without a very slow seeder.
fn download_time(seed: u64, with_slow_peer: bool, slow_rate: u64) -> Duration {
    let mut sim = Sim::new(seed, torrent(80, 4 * MIB, 128 * 1024));
    let fast = sim.add_node(NodeConfig::seeder().upload(MIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    if with_slow_peer {
        let slow = sim.add_node(NodeConfig::seeder().upload(slow_rate));
        sim.introduce(leecher, slow);
        // The slow peer gets to take requests first.
        sim.run_for(Duration::from_millis(500));
    }
    sim.introduce(leecher, fast);
    let start = sim.elapsed();
    let done = complete(&mut sim, leecher, secs(900));
    assert_content(&sim, leecher);
    done - start
}

/// A peer that takes requests and serves them at a trickle, next to a fast one: the download
/// finishes in about the time the fast peer alone needs (its requests are reassigned, and
/// the endgame duplicates what it still holds).
#[test]
fn slow_peer_does_not_hold_the_download_hostage() {
    for slow_rate in [4 * KIB, 32 * KIB] {
        let alone = download_time(81, false, slow_rate);
        let with_slow = download_time(81, true, slow_rate);
        eprintln!(
            "slow peer at {slow_rate} B/s: fast alone {alone:?}, with the slow peer {with_slow:?}"
        );
        assert!(
            with_slow < alone * 2,
            "slow peer at {slow_rate} B/s: {with_slow:?} vs {alone:?} for the fast peer alone"
        );
    }
}

/// 200 nodes join a swarm with one seeder over a minute, each learning 30 random others from
/// a "tracker" when it joins and every 30 s after; connections per node are bounded.
#[test]
fn two_hundred_nodes_join_one_seeder() {
    let mut config = SimConfig::new(90);
    config.torrent.max_connections = 30;
    let mut sim = Sim::with_config(config, torrent(90, 2 * MIB, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(2 * MIB));
    let real = std::time::Instant::now();
    let mut last_announce = Duration::ZERO;
    for i in 0..199 {
        let node = sim.add_node(NodeConfig::leecher().upload(512 * KIB).download(2 * MIB));
        sim.introduce(node, seeder);
        sim.introduce_random(node, 30);
        if i % 10 == 9 {
            sim.run_for(secs(3));
        }
    }
    let limit = sim.elapsed() + secs(1200);
    while !sim.all_complete() && sim.elapsed() < limit {
        let _ = sim.run_until(|s| s.all_complete(), secs(30));
        if sim.elapsed() - last_announce >= secs(30) {
            last_announce = sim.elapsed();
            for id in 0..sim.node_count() {
                if !sim.node(id).is_complete() {
                    sim.introduce_random(id, 30);
                }
            }
        }
    }
    assert!(sim.all_complete(), "{}", summary(&sim));
    // Recorded, not asserted: how the swarm behaved.
    let now = sim.now();
    let stats = sim.stats();
    let last = sim.nodes().iter().filter_map(|n| n.completed_at()).max().unwrap();
    let slowest =
        sim.nodes().iter().filter_map(|n| Some(n.completed_at()? - n.added_at())).max().unwrap();
    let wasted: u64 = sim.nodes().iter().map(|n| n.stats(now).wasted).sum();
    eprintln!(
        "200 nodes: last completion at {:?} virtual (slowest node took {slowest:?}); \
         {} messages, {} events, {} connections; {:.0} MiB of blocks received, {:.0} MiB of \
         them wasted; seeder sent {:.2}x the file; {:?} real time",
        last.since_epoch(),
        stats.messages,
        stats.events,
        stats.connections,
        stats.payload_bytes as f64 / MIB as f64,
        wasted as f64 / MIB as f64,
        sim.node(seeder).stats(now).uploaded as f64 / sim.torrent().len() as f64,
        real.elapsed(),
    );
    for node in sim.nodes() {
        assert!(node.data().as_deref() == Some(&sim.torrent().content[..]));
        assert!(node.peer_count() <= 30);
    }
}
