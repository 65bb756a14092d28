//! `shoal` against Transmission 3.00, both ways, on loopback.
//!
//! Transmission never dials peers in 127.0.0.0/8 and tells peers apart by IP, so every process
//! has its own 127.x address and Shoal always dials Transmission: `shoal download --peer` to
//! fetch from it, `shoal seed --peer` to serve it. Transmission waits for its ~10 s rechoke
//! before data moves.
//!
//! Transmission requires protocol encryption here, and so does Shoal when it seeds: both
//! speak MSE with RC4.
//!
//! Every transfer is bounded in time and checked byte for byte against the source.

mod interop_support;

use interop_support::*;
use shoal_testkit::*;

fn encryption_required() -> PeerOpts {
    PeerOpts { extra_args: vec!["--encryption".into(), "required".into()], ..PeerOpts::default() }
}

#[test]
fn transmission_seeds_to_shoal() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(31);
    let seed = transmission_seed(&fx.torrent.path, &fx.data, &encryption_required()).unwrap();
    let out = fx.out("shoal");
    let complete = shoal_download(&[
        arg(&fx.torrent.path),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(seed.addr().to_string()),
    ]);
    assert_eq!(complete["encrypted_connections"], 1, "{complete}");
    // Shoal, unlike Transmission, creates the zero-length file too
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn shoal_seeds_to_transmission() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(32);
    let out = fx.out("transmission");
    let mut leech = transmission_leech(&fx.torrent.path, &out, &encryption_required()).unwrap();
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[
            arg("-o"),
            arg(&fx.data),
            arg("--peer"),
            arg(leech.addr().to_string()),
            arg("--encryption"),
            arg("require"),
        ],
    );
    seed.serve(&mut leech);
    // Transmission 3.00 does not create zero-length files
    assert_trees_equal_allow_missing_empty(&fx.shared(), &downloaded(&out));
}
