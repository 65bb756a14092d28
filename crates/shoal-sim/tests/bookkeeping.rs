//! The simulator's own bookkeeping stays bounded (what lets it carry ten thousand nodes):
//! finished connections are freed, logs are capped, and identity verification gives the
//! verdicts SHA-1 gives.

mod common;

use common::*;
use shoal_sim::{Behaviour, NetConfig, NodeConfig, Sim, SimConfig, Verify};

/// Everyone stops: once the goodbyes have drained, no connection and no event is left.
#[test]
fn finished_connections_are_freed() {
    let mut sim = Sim::new(31, torrent(31, 2 * MIB, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(2 * MIB));
    for _ in 0..6 {
        let node = sim.add_node(NodeConfig::leecher().upload(512 * KIB));
        sim.introduce(node, seeder);
        sim.introduce_random(node, 3);
    }
    let _ = sim.run_until(|s| s.all_complete(), secs(120));
    assert!(sim.all_complete(), "{}", summary(&sim));
    assert!(sim.live_connections() > 0);
    for node in 0..sim.node_count() {
        sim.stop(node);
    }
    sim.run_for(secs(30));
    assert_eq!(sim.live_connections(), 0, "{}", summary(&sim));
    assert_eq!(sim.pending_events(), 0);
}

/// With a log limit, records past it are counted, not kept.
#[test]
fn logs_keep_at_most_the_limit() {
    let mut config = SimConfig::new(32);
    config.max_log_records = 1;
    let mut sim = Sim::with_config(config, torrent(32, MIB, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder());
    let leechers: Vec<_> = (0..3).map(|_| sim.add_node(NodeConfig::leecher())).collect();
    for &l in &leechers {
        sim.introduce(l, seeder);
    }
    let _ = sim.run_until(|s| s.all_complete(), secs(60));
    // The seeder drops every leecher once it is complete (or as it leaves).
    for &l in &leechers {
        sim.stop(l);
    }
    sim.run_for(secs(5));
    let log = sim.node(seeder).log();
    assert!(log.disconnects.len() <= 1 && log.refusals.len() <= 1, "{log:?}");
    assert!(log.records_omitted >= 1, "{log:?}");
    assert!(log.sent("piece") > 0 && log.sent.get("have-all").is_some(), "{log:?}");
}

/// A corrupting peer next to an honest one, both ways of verifying: the same pieces fail,
/// the same peer is banned, and the leecher ends with the right bytes.
#[test]
fn identity_verification_gives_sha1_verdicts() {
    let run = |verify: Verify| {
        let mut config = SimConfig::new(33);
        config.net = NetConfig { verify, ..NetConfig::default() };
        let mut sim = Sim::with_config(config, torrent(33, 2 * MIB, 64 * 1024));
        let bad = sim.add_node(NodeConfig::seeder().behaviour(Behaviour::CorruptBlocks));
        let good = sim.add_node(NodeConfig::seeder().upload(MIB));
        let leecher = sim.add_node(NodeConfig::leecher());
        sim.introduce(leecher, bad);
        sim.introduce(leecher, good);
        complete(&mut sim, leecher, secs(300));
        assert_content(&sim, leecher);
        let log = sim.node(leecher).log();
        (log.pieces_failed, log.pieces_verified, sim.stats().events)
    };
    let sha1 = run(Verify::Sha1);
    assert!(sha1.0 > 0, "the corrupting peer got no piece through: {sha1:?}");
    assert_eq!(run(Verify::Identity), sha1, "(failed, verified, events)");
}
