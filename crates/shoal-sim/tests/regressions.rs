//! Regression tests for core bugs the simulation found: simultaneous open, request queues
//! that never shrank, wasteful endgame, liars escaping the ban by leaving, and a rate meter
//! that forgot the last second. Each comment says what went wrong and how the core fixes it.

mod common;

use std::time::Duration;

use common::*;
use shoal_proto::peer::RateMeter;
use shoal_proto::Instant;
use shoal_sim::{Behaviour, NodeConfig, Sim, SimConfig};

/// Two peers that learn each other's address at the same moment dial each other at once.
/// Each accepts the other's connection (`on_incoming`), then refuses its own dial as a
/// `Duplicate` in `on_connected`, so both connections die and the pair stays apart for the
/// 60 s reconnect delay (and may race the same way again). In a 7-node `connect_all` mesh, 5
/// of the 21 pairs end up unconnected. Fix: when a second connection to the same peer id
/// completes in the other direction, both sides keep the one dialled by the lower peer id
/// (and drop the other, whichever it is) instead of always refusing the newer one.
#[test]
fn simultaneous_dials_keep_one_connection() {
    let mut config = SimConfig::new(101);
    config.net.latency_spread = Duration::ZERO; // equal latency both ways: a true race
    let mut sim = Sim::with_config(config, torrent(101, MIB, 32 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(64 * KIB));
    let a = sim.add_node(NodeConfig::leecher());
    let b = sim.add_node(NodeConfig::leecher());
    sim.introduce(a, seeder);
    sim.introduce(b, seeder);
    sim.introduce(a, b);
    sim.introduce(b, a);
    sim.run_for(secs(5));
    assert!(
        sim.is_connected(a, b),
        "a and b each dropped one of their two connections, and not the same one\n{}",
        summary(&sim)
    );
}

/// A peer's request queue should follow its measured rate. `Peer::update_queue_target`
/// never goes below `INITIAL_QUEUE_TARGET` (64 requests, 1 MiB), not only while the rate is
/// unknown, so a 32 KiB/s peer holds 32 s of requests: everything asked of it waits half a
/// minute, cancels and chokes come too late (the native driver has already queued the
/// blocks on the socket), and those blocks are kept from faster peers. In a swarm every
/// uploader carries seconds of backlog. Fix: start lower (8) and, once the rate has been
/// measured for a few seconds, let the target follow it down to a small floor (2-4).
#[test]
fn request_queue_follows_a_slow_peers_rate() {
    let mut sim = Sim::new(102, torrent(102, 4 * MIB, 128 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(32 * KIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.introduce(leecher, seeder);
    // Long enough for the rate to be measured (the meter's window is 5 s).
    sim.run_for(secs(30));
    let backlog = sim.queued_bytes(seeder, leecher);
    let seconds = backlog as f64 / (32 * KIB) as f64;
    assert!(
        seconds <= 8.0,
        "{backlog} bytes of requested blocks wait at a 32 KiB/s seeder: {seconds:.0} s of backlog"
    );
}

/// Endgame should spend little on duplicates. In a small torrent every piece is "started"
/// almost at once (64 requests per peer cover many pieces), so the picker is in endgame from
/// the start and a peer with room fills its whole queue with duplicates of blocks requested
/// a moment ago elsewhere; with the deep queues above, both copies usually arrive (the
/// cancel comes too late). Here 39% of all block bytes are thrown away (47% in the 200-node
/// swarm). Fix: in `Picker::pick` step 4, duplicate only blocks whose request has been
/// outstanding for a while (e.g. 2 s, or a multiple of that peer's block time; the picker
/// then needs a request time per block), only for a peer with nothing else to do, and a
/// couple at a time.
#[test]
fn endgame_wastes_little() {
    let mut config = SimConfig::new(103);
    config.torrent.max_connections = 30;
    // The topology the introductions make: with peer exchange each node fills its 30
    // connections, and the same endgame throws 18% away (an open lead: duplicate less when
    // more peers have room).
    config.torrent.peer_exchange = false;
    let mut sim = Sim::with_config(config, torrent(103, 2 * MIB, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(2 * MIB));
    for i in 0..59 {
        let node = sim.add_node(NodeConfig::leecher().upload(512 * KIB).download(2 * MIB));
        sim.introduce(node, seeder);
        sim.introduce_random(node, 30);
        if i % 10 == 9 {
            sim.run_for(secs(3));
        }
    }
    if let Err(e) = sim.run_until(|s| s.all_complete(), secs(600)) {
        panic!("{e}\n{}", summary(&sim));
    }
    let now = sim.now();
    let wasted: u64 = sim.nodes().iter().map(|n| n.stats(now).wasted).sum();
    let payload = sim.stats().payload_bytes;
    let share = wasted as f64 / payload as f64;
    assert!(share < 0.15, "{:.0}% of the block bytes received were thrown away", share * 100.0);
}

/// A peer that sends a corrupt piece and disconnects before the hash check finishes is never
/// banned: `Torrent::on_piece_verified` looks the culprits' IPs up in `self.peers`, which no
/// longer has them, so the liar can come back and do it again (the same goes for strikes).
/// Fix: remember the IP with the blame (e.g. the picker's contributors, or a small bounded
/// map of recently departed peer keys to IPs).
#[test]
fn a_liar_that_leaves_before_the_hash_check_is_banned() {
    let mut config = SimConfig::new(104);
    config.net.disk_latency = Duration::from_millis(200); // hashing takes a while
    let mut sim = Sim::with_config(config, torrent(104, MIB, 64 * 1024));
    let liar = sim.add_node(NodeConfig::seeder().behaviour(Behaviour::CorruptBlocks));
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.introduce(leecher, liar);
    sim.run_until(|s| s.node(leecher).log().verify_requests >= 1, secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    // The liar hangs up right after its first full piece, before the hash result is in.
    sim.stop(liar);
    sim.run_for(secs(2));
    assert!(sim.node(leecher).log().pieces_failed >= 1, "{}", summary(&sim));
    let banned = sim.node(leecher).stats(sim.now()).banned;
    assert_eq!(banned, 1, "the liar's address was not banned\n{}", summary(&sim));
}

/// `RateMeter::rate` loses the most recent second: once the clock passes into a new second
/// without a new `record`, the bytes of the last recorded second (`current`) are dropped
/// (`let current = if age == 0 { self.current } else { 0 }`) instead of being counted as
/// the newest full bucket. Ticks run at whole-second steps, so the choker and the queue
/// sizing see a peer that sent 100 KiB in the last second as 0 B/s. Also, a young meter
/// divides by the full 5 s window, so a one-second-old peer looks five times slower. Fix:
/// count `current` while it is inside the window, and divide by the time since the first
/// sample when that is shorter than the window.
#[test]
fn a_rate_meter_counts_the_last_second() {
    let mut meter = RateMeter::default();
    for ms in (0..1000).step_by(100) {
        meter.record(Instant::from_duration(Duration::from_millis(ms)), 10 * 1024);
    }
    let rate = meter.rate(Instant::from_duration(Duration::from_millis(1000)));
    assert!(rate > 60 * 1024, "100 KiB/s for one second is reported as {} KiB/s", rate / 1024);
}
