//! Peers that vanish, peers that leave cleanly, peers that show up late.

mod common;

use common::*;
use shoal_proto::torrent::DisconnectReason;
use shoal_sim::{NodeConfig, NodeState, Sim, SimConfig};

/// The fast seeder crashes a third of the way in; a slower seeder and a peer holding half the
/// pieces remain, and the download completes with the right bytes.
#[test]
fn seeder_crash_with_other_sources_left() {
    let mut sim = Sim::new(31, torrent(31, 4 * MIB, 128 * 1024));
    let pieces = sim.torrent().piece_count();
    let fast_seeder = sim.add_node(NodeConfig::seeder().upload(MIB));
    let slow_seeder = sim.add_node(NodeConfig::seeder().upload(128 * KIB));
    let partial = sim.add_node(NodeConfig::leecher().upload(256 * KIB).with_pieces(0..pieces / 2));
    let leecher = sim.add_node(NodeConfig::leecher());
    for other in [fast_seeder, slow_seeder, partial] {
        sim.introduce(leecher, other);
    }
    sim.introduce(partial, fast_seeder);
    let third = pieces / 3;
    sim.run_until(|s| s.node(leecher).stats(s.now()).pieces_have >= third, secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    assert!(!sim.node(leecher).is_complete());
    let crashed_at = sim.elapsed();
    sim.kill(fast_seeder);
    let done = complete(&mut sim, leecher, secs(600));
    assert_content(&sim, leecher);
    eprintln!("seeder crashed at {crashed_at:?}, leecher complete at {done:?}");
    // What the dead seeder held is reassigned after the core's request timeout (15 s), not
    // after the idle timeout (150 s) that finally notices it is gone.
    assert!(done - crashed_at < secs(60), "took {:?}\n{}", done - crashed_at, summary(&sim));
    assert_eq!(sim.node(fast_seeder).state(), NodeState::Crashed);
}

/// The only seeder crashes: the leecher waits without panicking, notices the silence, and
/// completes once a new seeder appears.
#[test]
fn sole_seeder_crash_then_a_new_seeder() {
    let mut sim = Sim::new(32, torrent(32, 2 * MIB, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(256 * KIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.introduce(leecher, seeder);
    sim.run_until(|s| s.node(leecher).stats(s.now()).pieces_have >= 8, secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    sim.kill(seeder);
    let have_at_crash = sim.node(leecher).stats(sim.now()).pieces_have;

    // Five minutes with nobody to download from.
    sim.run_for(secs(300));
    let node = sim.node(leecher);
    assert!(node.is_running());
    assert!(!node.is_complete());
    assert_eq!(node.stats(sim.now()).pieces_have, have_at_crash);
    assert_eq!(node.peer_count(), 0, "the dead seeder is still counted as a peer");
    let idle = node
        .log()
        .disconnects
        .iter()
        .any(|d| d.remote == seeder && d.reason == DisconnectReason::Idle);
    assert!(idle, "the silent seeder was never dropped\n{}", summary(&sim));

    let second = sim.add_node(NodeConfig::seeder().upload(MIB));
    sim.introduce(leecher, second);
    complete(&mut sim, leecher, secs(120));
    assert_content(&sim, leecher);
}

/// A peer that leaves cleanly closes its connections; the other side notices at once (not
/// after a timeout) and finishes from the remaining seeder.
#[test]
fn clean_shutdown_is_noticed_at_once() {
    let mut sim = Sim::new(33, torrent(33, 2 * MIB, 64 * 1024));
    let seeder_a = sim.add_node(NodeConfig::seeder().upload(256 * KIB));
    let seeder_b = sim.add_node(NodeConfig::seeder().upload(256 * KIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.introduce(leecher, seeder_a);
    sim.introduce(leecher, seeder_b);
    sim.run_until(|s| s.node(leecher).stats(s.now()).pieces_have >= 4, secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    sim.stop(seeder_a);
    let stopped_at = sim.elapsed();
    // The goodbye travels behind the blocks already queued on the seeder's 256 KiB/s link
    // (at most 64 requests: 1 MiB, 4 s).
    let noticed = sim
        .run_until(|s| s.node(leecher).peer_count() == 1, secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    assert!(noticed.since_epoch() - stopped_at <= secs(5));
    assert!(!sim.is_connected(leecher, seeder_a));
    let closes = &sim.node(seeder_a).log().disconnects;
    assert!(closes.iter().any(|d| d.remote == leecher && d.reason == DisconnectReason::Shutdown));
    complete(&mut sim, leecher, secs(120));
    assert_content(&sim, leecher);
}

/// Dialling an address where nobody runs fails after the connect timeout and is retried with
/// back-off, without disturbing the download from a real peer.
#[test]
fn unreachable_addresses_fail_and_do_not_block() {
    let mut config = SimConfig::new(34);
    config.torrent.max_connections = 8;
    let mut sim = Sim::with_config(config, torrent(34, MIB, 32 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(512 * KIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    // Two hosts that crashed, and three addresses where there never was anyone.
    let crashed: Vec<_> = (0..2).map(|_| sim.add_node(NodeConfig::leecher())).collect();
    for &c in &crashed {
        sim.kill(c);
        sim.introduce(leecher, c);
    }
    let nobody = (0..3).map(|i| format!("192.0.2.{}:6881", i + 1).parse().unwrap()).collect();
    sim.add_peer_addrs(leecher, nobody);
    sim.introduce(leecher, seeder);
    complete(&mut sim, leecher, secs(120));
    assert_content(&sim, leecher);
    // The download did not wait for the dead addresses: they fail only at the 10 s connect
    // timeout, and are then retried with back-off (3 s after the first failure, 6 s after the
    // second, 12 s after the third...), not hammered: in 60 s, four attempts per address.
    assert!(sim.elapsed() < secs(5));
    assert_eq!(sim.node(leecher).log().connect_failures, 0);
    sim.run_for(secs(60));
    let failures = sim.node(leecher).log().connect_failures;
    assert!((15..=20).contains(&failures), "{failures} failures\n{}", summary(&sim));
    assert!(sim.stats().dials <= 21, "{}", summary(&sim));
}
