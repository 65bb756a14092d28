//! Streaming: players reading the torrent at a bitrate while it downloads. What the core
//! promises a player (`Torrent::set_reader`: deadlines under the reader, cancels on a seek,
//! critical pieces kept from slow peers, deadline-only fetching) checked by what the player
//! went through: time to first frame, stalls, seek waits, bytes fetched.

mod common;

use std::time::Duration;

use common::*;
use shoal_proto::eviction;
use shoal_sim::rng::SimRng;
use shoal_sim::{NodeConfig, NodeId, PlayerConfig, PlayerStats, Sim, SimStats};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn player(sim: &Sim, node: NodeId) -> &PlayerStats {
    sim.player(node).unwrap_or_else(|| panic!("node {node} has no player"))
}

/// Runs until `node`'s player has shown its first frame.
fn first_frame(sim: &mut Sim, node: NodeId, limit: Duration) -> Duration {
    let shown = |s: &Sim| s.player(node).is_some_and(|p| p.first_frame.is_some());
    if let Err(e) = sim.run_until(shown, limit) {
        panic!("no first frame: {e}\n{:?}\n{}", sim.player(node), summary(sim));
    }
    player(sim, node).first_frame.unwrap_or_default()
}

/// Runs until every seek `node`'s player was asked for is served or abandoned.
fn seeks_settled(sim: &mut Sim, node: NodeId, limit: Duration) {
    let settled = |s: &Sim| {
        s.player(node).is_some_and(|p| p.seek_waits.len() as u32 + p.seeks_abandoned == p.seeks)
    };
    if let Err(e) = sim.run_until(settled, limit) {
        panic!("a seek was not served: {e}\n{:?}\n{}", sim.player(node), summary(sim));
    }
}

/// A player at 256 KiB/s behind a seeder that uploads 512 KiB/s: the pieces under it come
/// first, so it starts within a couple of seconds and never catches up with the data.
#[test]
fn reader_at_the_bitrate_behind_a_seeder_at_twice_that_never_stalls() {
    let mut sim = Sim::new(1, torrent(1, 12 * MIB, 128 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(512 * KIB));
    let viewer = sim.add_node(NodeConfig::leecher());
    sim.introduce(viewer, seeder);
    sim.play(viewer, PlayerConfig::new(256 * KIB));
    let finished = |s: &Sim| s.player(viewer).is_some_and(|p| p.finished.is_some());
    if let Err(e) = sim.run_until(finished, secs(120)) {
        panic!("did not play through: {e}\n{:?}\n{}", sim.player(viewer), summary(&sim));
    }
    let p = player(&sim, viewer);
    // 2 s of media at 512 KiB/s is 1 s of transfer, plus connecting.
    let first = p.first_frame.unwrap_or_default();
    assert!(first < secs(3), "first frame after {first:?}: {p:?}");
    assert_eq!((p.stalls, p.stalled), (0, Duration::ZERO), "{p:?}");
    // 48 s of media, started within 3 s, never stopped.
    let done = p.finished.map(|t| t - p.asked_at).unwrap_or_default();
    assert!(done < secs(48) + secs(3), "finished after {done:?}");
    assert_eq!(p.position, 12 * MIB);
}

/// What a seek storm left behind.
#[derive(Debug, PartialEq)]
struct Storm {
    player: PlayerStats,
    /// Cancels the viewer sent.
    cancels: u64,
    /// Where it was sent, in order.
    targets: Vec<u64>,
    sim: SimStats,
}

/// Twenty seeks to random offsets 50-250 ms apart, 2 s into playing, then until the last one
/// is served.
fn seek_storm(seed: u64) -> Storm {
    let len = 16 * MIB;
    let mut sim = Sim::new(seed, torrent(2, len, 64 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(MIB));
    let viewer = sim.add_node(NodeConfig::leecher());
    sim.introduce(viewer, seeder);
    sim.play(viewer, PlayerConfig::new(256 * KIB));
    first_frame(&mut sim, viewer, secs(30));
    sim.run_for(secs(2));
    let mut rng = SimRng::new(seed);
    let mut targets = Vec::new();
    for _ in 0..20 {
        let target = rng.below(len);
        targets.push(target);
        sim.seek(viewer, target);
        sim.run_for(ms(50 + rng.below(200)));
    }
    seeks_settled(&mut sim, viewer, secs(30));
    Storm {
        player: player(&sim, viewer).clone(),
        cancels: sim.node(viewer).log().sent("cancel"),
        targets,
        sim: sim.stats().clone(),
    }
}

/// The requests each seek of a storm made stale are cancelled, the last seek is served within
/// a few seconds, and no seek counts as a stall.
#[test]
fn seek_storm_is_cancelled_and_the_last_seek_served() {
    let Storm { player: p, cancels, targets, .. } = seek_storm(2);
    assert_eq!(p.seeks, 20);
    // Each seek abandons requests for the position it leaves.
    assert!(cancels >= u64::from(p.seeks), "{cancels} cancels for {} seeks", p.seeks);
    // Seeks superseded before their buffer arrived are abandoned; the last one is served.
    let last = *p.seek_waits.last().unwrap_or_else(|| panic!("the last seek was not served"));
    assert!(last < secs(5), "the last seek waited {last:?}: {p:?}");
    assert_eq!(p.seek_waits.len() as u32 + p.seeks_abandoned, p.seeks);
    // Seeking is not stalling, and the player is where it was sent.
    assert_eq!((p.stalls, p.stalled), (0, Duration::ZERO), "{p:?}");
    let target = targets.last().copied().unwrap_or_default();
    assert!(p.position >= target && p.position < target + MIB, "{p:?}");
}

/// The same seed gives the same player history (and the same run).
#[test]
fn same_seed_same_player_stats() {
    let first = seek_storm(3);
    assert_eq!(first, seek_storm(3));
    assert!(first.player.seeks_abandoned > 0 && first.cancels > 0, "a storm worth comparing");
}

/// A fast seeder and one 20 times slower (which the viewer met first, so it holds requests
/// when playback starts). The viewer fetches only what it plays and seeks to fresh places
/// every 4 s: each seek must be served about as fast as by the fast seeder alone, because the
/// core keeps critical blocks from the slow peer once it has judged the rates, and takes back
/// those it had.
fn slow_peer_run(with_slow_peer: bool) -> (PlayerStats, u64) {
    let len = 32 * MIB;
    let mut sim = Sim::new(4, torrent(4, len, 64 * 1024));
    let fast = sim.add_node(NodeConfig::seeder().upload(MIB));
    let slow = sim.add_node(NodeConfig::seeder().upload(50 * KIB));
    let viewer = sim.add_node(NodeConfig::leecher());
    // Nothing but the windows is fetched, so every seek lands on data nobody has asked for.
    sim.set_deadline_only(viewer, true);
    if with_slow_peer {
        sim.introduce(viewer, slow);
        sim.run_for(ms(500));
    }
    sim.introduce(viewer, fast);
    let config = PlayerConfig::new(256 * KIB).max_readahead(MIB).buffer_ahead(secs(2));
    sim.play(viewer, config);
    first_frame(&mut sim, viewer, secs(30));
    for i in 1..=8 {
        sim.run_for(secs(4));
        sim.seek(viewer, i * 7 * MIB / 2 + 123);
    }
    seeks_settled(&mut sim, viewer, secs(30));
    (player(&sim, viewer).clone(), sim.node(slow).log().received("cancel"))
}

#[test]
fn slow_peer_does_not_hold_up_critical_pieces() {
    let (alone, _) = slow_peer_run(false);
    let (with_slow, slow_cancels) = slow_peer_run(true);
    let worst = |p: &PlayerStats| p.seek_waits.iter().max().copied().unwrap_or_default();
    eprintln!("fast seeder alone: {alone:?}\nwith a slow one: {with_slow:?}");
    assert_eq!(with_slow.seek_waits.len(), 8, "every seek served: {with_slow:?}");
    assert!(
        worst(&with_slow) <= worst(&alone) * 2,
        "a seek waited {:?} with the slow peer, at most {:?} without",
        worst(&with_slow),
        worst(&alone)
    );
    let (first_alone, first_slow) =
        (alone.first_frame.unwrap_or_default(), with_slow.first_frame.unwrap_or_default());
    assert!(first_slow <= first_alone + ms(1500), "first frame {first_slow:?} vs {first_alone:?}");
    assert_eq!(with_slow.stalls, 0, "{with_slow:?}");
    // The slow peer was asked for blocks and told to forget some of them.
    assert!(slow_cancels > 0);
}

/// The browser's bounded store: deadline-only, read-ahead capped at the store's window share.
/// After 10 s of playing, the viewer holds what it played, its forward buffer and one window,
/// a fraction of the file, though the seeder could have sent all of it.
#[test]
fn deadline_only_player_fetches_only_around_its_position() {
    let len = 32 * MIB;
    let piece = 64 * 1024;
    let mut sim = Sim::new(5, torrent(5, len, piece));
    let seeder = sim.add_node(NodeConfig::seeder().upload(4 * MIB));
    let viewer = sim.add_node(NodeConfig::leecher());
    sim.set_deadline_only(viewer, true);
    sim.introduce(viewer, seeder);
    let window = eviction::windows_budget(4 * MIB);
    sim.play(viewer, PlayerConfig::new(256 * KIB).max_readahead(window));
    sim.run_for(secs(10));
    let p = player(&sim, viewer);
    let downloaded = sim.node(viewer).stats(sim.now()).downloaded;
    assert!(p.position >= 2 * MIB, "played too little: {p:?}");
    assert_eq!(p.stalls, 0, "{p:?}");
    // Windows start at read positions, all at or before the current one; pieces are whole.
    let reach = p.read_position + window + u64::from(piece);
    assert!(downloaded <= reach, "fetched {downloaded} bytes, the windows reach {reach}");
    assert!(downloaded < len / 4, "fetched {downloaded} of {len} bytes");
}
