//! libtorrent, aria2 and Transmission (through shoal-testkit's drivers) announce to our
//! tracker over HTTP and over UDP and find each other through it alone: no peer is told
//! another's address.
//!
//! Who dials whom follows the clients' limits on loopback (see tests/peers/README.md): aria2
//! cannot be told to dial, so it leeches and dials the libtorrent seed it learns from the
//! tracker; Transmission never dials 127.x peers, so it seeds and libtorrent, which got its
//! address from the tracker, dials it. Both of them give their own 127.x address as the
//! source of their announces, which is what the tracker hands out.

mod common;

use std::time::{Duration, Instant};

use shoal_testkit::*;
use shoal_tracker::{Config, RunningTracker};

#[derive(Clone, Copy)]
enum Proto {
    Http,
    Udp,
}

fn url(tracker: &RunningTracker, proto: Proto) -> String {
    match proto {
        Proto::Http => format!("http://{}/announce", tracker.http_addr.unwrap()),
        Proto::Udp => format!("udp://{}", tracker.udp_addr.unwrap()),
    }
}

/// Waits until the tracker knows `want` seeders, so that a leecher announcing next is sure to
/// be given one: clients re-announce only after the tracker's interval, too late for a test.
fn wait_seeders(tracker: &RunningTracker, want: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while tracker.stats().classic.seeders < want {
        assert!(Instant::now() < deadline, "no {want} seeder(s) announced within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    torrent: TorrentInfo,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("data/share");
        payload_tree(&share, 2 << 20, 32 << 10, 3, seed).unwrap();
        let torrent =
            make_torrent(&share, &dir.path().join("share.torrent"), &TorrentOpts::default())
                .unwrap();
        Fixture { dir, torrent }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }
}

fn counter(tracker: &RunningTracker, name: &str) -> u64 {
    tracker.stats().counters.get(name).copied().unwrap_or(0)
}

/// Both peers' announces came in over `proto`, into one swarm.
fn check_announced(tracker: &RunningTracker, proto: Proto) {
    let stats = tracker.stats();
    println!("{}", stats.to_json());
    let name = match proto {
        Proto::Http => "http_announces",
        Proto::Udp => "udp_announces",
    };
    assert!(counter(tracker, name) >= 2, "expected both peers' {name}");
    assert_eq!(stats.classic.torrents, 1);
}

/// A tracker on loopback, a torrent of a fresh payload, and peer options that announce to the
/// tracker over `proto` only.
struct Swarm {
    runtime: tokio::runtime::Runtime,
    tracker: RunningTracker,
    fx: Fixture,
    via: PeerOpts,
}

impl Swarm {
    fn new(proto: Proto, seed: u64) -> Swarm {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let tracker = runtime.block_on(common::tracker(Config::default()));
        let via = PeerOpts::default().tracker(url(&tracker, proto));
        Swarm { runtime, tracker, fx: Fixture::new(seed), via }
    }

    /// Checks the tracker's counts while `peers` still run (leaving, they would empty the
    /// swarm), then stops them and the tracker.
    fn finish(self, proto: Proto, peers: impl Sized) {
        check_announced(&self.tracker, proto);
        drop(peers);
        self.runtime.block_on(self.tracker.shutdown()).unwrap();
    }
}

fn libtorrent_seeds_aria2_leeches(proto: Proto, seed: u64) {
    if skip_interop() {
        return;
    }
    let swarm = Swarm::new(proto, seed);
    let (fx, via) = (&swarm.fx, &swarm.via);
    let lt = lt_seed(&fx.torrent.path, &fx.data(), via).unwrap();
    assert_eq!(lt.ready_event()["tracker"], "ok", "libtorrent announced");
    wait_seeders(&swarm.tracker, 1, Duration::from_secs(30));
    let opts = via.clone().timeout(Duration::from_secs(90));
    let mut aria2 = aria2_leech(&fx.torrent.path, &fx.out(), &opts).unwrap();
    aria2.wait_done(Duration::from_secs(120)).unwrap();
    assert_trees_equal(&fx.data().join("share"), &fx.out().join("share"));
    swarm.finish(proto, (aria2, lt));
}

fn transmission_seeds_libtorrent_leeches(proto: Proto, seed: u64) {
    if skip_interop() {
        return;
    }
    let swarm = Swarm::new(proto, seed);
    let (fx, via) = (&swarm.fx, &swarm.via);
    let transmission = transmission_seed(&fx.torrent.path, &fx.data(), via).unwrap();
    // Transmission announces some time after it listens.
    wait_seeders(&swarm.tracker, 1, Duration::from_secs(60));
    let opts = via.clone().timeout(Duration::from_secs(120));
    let lt = lt_download(&fx.torrent.magnet, &fx.out(), &opts, Duration::from_secs(150)).unwrap();
    assert_trees_equal(&fx.data().join("share"), &fx.out().join("share"));
    swarm.finish(proto, (lt, transmission));
}

#[test]
fn libtorrent_seeds_to_aria2_found_over_http() {
    libtorrent_seeds_aria2_leeches(Proto::Http, 41);
}

#[test]
fn libtorrent_seeds_to_aria2_found_over_udp() {
    libtorrent_seeds_aria2_leeches(Proto::Udp, 42);
}

#[test]
fn transmission_seeds_to_libtorrent_found_over_http() {
    transmission_seeds_libtorrent_leeches(Proto::Http, 43);
}

#[test]
fn transmission_seeds_to_libtorrent_found_over_udp() {
    transmission_seeds_libtorrent_leeches(Proto::Udp, 44);
}
