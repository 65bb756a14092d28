//! HTTP web seeds (BEP 19) in a swarm: alone, next to peers, and lying.

mod common;

use common::*;
use shoal_proto::torrent::WebSeedState;
use shoal_sim::{NodeConfig, Sim, WebSeedConfig};

const URL: &str = "http://seed.example/shoal-sim.bin";

/// With no peers at all, a web seed's bandwidth is used in full: pipelined runs leave its link
/// no time idle, so 16 MiB at 4 MiB/s with 500 ms to the first byte take 4.5 s of virtual
/// time (one fetch at a time would take 6 s: four runs, each waiting 500 ms).
#[test]
fn a_web_seed_alone_runs_at_its_full_rate() {
    let mut sim = Sim::new(61, torrent(61, 16 * MIB, 256 * 1024));
    let latency = std::time::Duration::from_millis(500);
    sim.add_web_seed(WebSeedConfig { latency, ..WebSeedConfig::new(URL, 4 * MIB) });
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.use_web_seed(leecher, URL);
    let done = complete(&mut sim, leecher, secs(60));
    assert_content(&sim, leecher);
    assert!(done < secs(5), "took {done:?}: the seed's link sat idle between fetches");
    let stats = sim.node(leecher).stats(sim.now());
    assert_eq!(stats.web_seed_downloaded, 16 * MIB);
    assert_eq!(stats.wasted, 0);
}

/// A seeder and a web seed both deliver. The web seed drops to one short run at a time once
/// the peer serves us, which leaves the peer plenty of pieces (it is never starved of work),
/// and the two together beat either alone (16 s at 1 MiB/s each).
#[test]
fn peers_and_a_web_seed_both_contribute() {
    let mut sim = Sim::new(62, torrent(62, 16 * MIB, 256 * 1024));
    sim.add_web_seed(WebSeedConfig::new(URL, MIB));
    let seeder = sim.add_node(NodeConfig::seeder().upload(MIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.use_web_seed(leecher, URL);
    sim.introduce(leecher, seeder);
    let done = complete(&mut sim, leecher, secs(120));
    assert_content(&sim, leecher);
    let stats = sim.node(leecher).stats(sim.now());
    let from_peers = stats.downloaded - stats.web_seed_downloaded;
    assert!(stats.web_seed_downloaded >= 2 * MIB, "{stats:?}");
    assert!(from_peers >= 6 * MIB, "the web seed starved the swarm: {stats:?}");
    assert!(done < secs(12), "took {done:?}\n{}", summary(&sim));
}

/// A web seed serving a wrong byte in two pieces: those pieces fail, are fetched again from a
/// good seed, and the download completes with the right bytes.
#[test]
fn a_lying_web_seed_is_caught_and_a_good_one_finishes() {
    let bad = "http://bad.example/shoal-sim.bin";
    let mut sim = Sim::new(63, torrent(63, 4 * MIB, 64 * 1024));
    sim.add_web_seed(WebSeedConfig { corrupt_pieces: vec![0, 1], ..WebSeedConfig::new(bad, MIB) });
    sim.add_web_seed(WebSeedConfig::new(URL, MIB));
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.use_web_seed(leecher, bad);
    sim.use_web_seed(leecher, URL);
    complete(&mut sim, leecher, secs(60));
    assert_content(&sim, leecher);
    assert_eq!(sim.node(leecher).log().pieces_failed, 2);
    let seeds = sim.node(leecher).web_seeds(sim.now());
    let bad_status = seeds.iter().find(|s| s.url == bad).expect("bad seed listed");
    assert_eq!(bad_status.hash_failures, 2);
    assert_eq!(bad_status.state, WebSeedState::Active, "two failures are not yet three");
}

/// A web seed answering 404 backs off and is retried later; a peer that appears finishes
/// the download meanwhile, and nothing panics.
#[test]
fn a_broken_web_seed_backs_off_while_peers_deliver() {
    let mut sim = Sim::new(64, torrent(64, 2 * MIB, 64 * 1024));
    sim.add_web_seed(WebSeedConfig { status: Some(404), ..WebSeedConfig::new(URL, MIB) });
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.use_web_seed(leecher, URL);
    sim.run_for(secs(60));
    let fetches = sim.web_seed_fetches(URL);
    // 5 + 10 + 20 s of backoff fit in a minute, 40 more do not.
    assert!((3..=5).contains(&fetches), "{fetches} fetches in 60 s");
    let seeds = sim.node(leecher).web_seeds(sim.now());
    assert_eq!(seeds[0].last_error.as_deref(), Some("the server answered HTTP 404"));
    let seeder = sim.add_node(NodeConfig::seeder().upload(MIB));
    sim.introduce(leecher, seeder);
    complete(&mut sim, leecher, secs(120));
    assert_content(&sim, leecher);
}
