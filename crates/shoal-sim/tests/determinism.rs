//! A seed fixes everything: the same scenario twice gives the same run, event for event.

mod common;

use common::*;
use shoal_proto::Instant;
use shoal_sim::{NodeConfig, Sim, SimConfig, SimStats};

/// What a run is compared on.
#[derive(Debug, PartialEq)]
struct Outcome {
    stats: SimStats,
    completed: Vec<Option<Instant>>,
    uploaded: Vec<u64>,
    sent: Vec<Vec<(&'static str, u64)>>,
}

/// A busy scenario: limited links, a magnet node, a crash, a late seeder.
fn run(seed: u64, codec: bool) -> Outcome {
    let mut config = SimConfig::new(seed);
    config.net.codec = codec;
    let mut sim = Sim::with_config(config, torrent(200, 2 * MIB, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(MIB));
    for i in 0..12 {
        let node = if i == 5 { NodeConfig::magnet() } else { NodeConfig::leecher() };
        sim.add_node(node.upload(256 * KIB).download(MIB));
    }
    for node in 1..sim.node_count() {
        sim.introduce(node, seeder);
        sim.introduce_random(node, 4);
    }
    sim.run_for(secs(3));
    sim.kill(seeder);
    let late = sim.add_node(NodeConfig::seeder().upload(512 * KIB));
    for node in 1..late {
        sim.introduce(node, late);
    }
    sim.run_until(|s| s.all_complete(), secs(600))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    let now = sim.now();
    Outcome {
        stats: sim.stats().clone(),
        completed: sim.nodes().iter().map(|n| n.completed_at()).collect(),
        uploaded: sim.nodes().iter().map(|n| n.stats(now).uploaded).collect(),
        sent: sim
            .nodes()
            .iter()
            .map(|n| n.log().sent.iter().map(|(k, v)| (*k, *v)).collect())
            .collect(),
    }
}

#[test]
fn same_seed_same_run() {
    for codec in [false, true] {
        let first = run(5, codec);
        let second = run(5, codec);
        assert_eq!(first, second, "codec {codec}");
        assert!(first.stats.events > 1000);
    }
}

#[test]
fn another_seed_another_run() {
    let a = run(5, false);
    let b = run(6, false);
    assert_ne!(a.completed, b.completed);
}
