//! `shoal` against aria2 1.36, both ways, on loopback, with protocol encryption required (RC4
//! only) on aria2's side and, when Shoal seeds, on Shoal's too. aria2 cannot be told to dial a
//! peer, so the two find each other through opentracker: each announces, and the one that
//! learns the other's address from the tracker dials it.
//!
//! Every transfer is bounded in time and checked byte for byte against the source.

mod interop_support;

use interop_support::*;
use shoal_testkit::*;

#[test]
fn aria2_seeds_to_shoal_through_opentracker() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(21);
    let tracker = opentracker(&[&fx.torrent.info_hash]).unwrap();
    let opts = PeerOpts {
        extra_args: vec!["--require-crypto".into()],
        ..PeerOpts::default().tracker(tracker.announce_url())
    };
    let _seed = aria2_seed(&fx.torrent.path, &fx.data, &opts).unwrap();
    // Shoal asks the tracker once at start: the seed must be known by then
    wait_for_tracker_peers(tracker.addr(), &fx.torrent.info_hash, 1);
    let out = fx.out("shoal");
    let complete = shoal_download(&[
        arg(&fx.torrent.path),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--tracker"),
        arg(tracker.announce_url()),
    ]);
    assert_eq!(complete["encrypted_connections"], 1, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn shoal_seeds_to_aria2_through_opentracker() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(22);
    let tracker = opentracker(&[&fx.torrent.info_hash]).unwrap();
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[
            arg("-o"),
            arg(&fx.data),
            arg("--tracker"),
            arg(tracker.announce_url()),
            arg("--encryption"),
            arg("require"),
        ],
    );
    wait_for_tracker_peers(tracker.addr(), &fx.torrent.info_hash, 1);
    // aria2 learns Shoal's address from the tracker and dials it
    let out = fx.out("aria2");
    let opts = PeerOpts {
        extra_args: vec!["--require-crypto".into()],
        ..PeerOpts::default().tracker(tracker.announce_url())
    };
    let mut leech = aria2_leech(&fx.torrent.path, &out, &opts).unwrap();
    seed.serve(&mut leech);
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}
