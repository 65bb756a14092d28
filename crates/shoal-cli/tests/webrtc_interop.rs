//! Shoal and the other WebRTC BitTorrent stacks people run, both directions, over WebRTC
//! only, found through our WebSocket tracker:
//!
//! - libtorrent 2.1 (the PyPI wheel, WebTorrent built in; `tests/peers/lt21_peer.py`), run with
//!   `--no-tcp` so that WebRTC is its only way in or out;
//! - WebTorrent 3 in node with `@roamhq/wrtc` (`tests/web/node_peer.mjs`), which meets peers
//!   through WebSocket trackers only; it is given magnets without `x.pe`, so it never learns
//!   of Shoal's TCP listener.
//!
//! A `shoal download` is given only the bare magnet and the `ws://` tracker, and may count no
//! peer but WebRTC ones on the way; the other side confirms the transport (libtorrent by
//! having no TCP at all, node WebTorrent by its wires' type). Bytes are
//! checked by SHA-1 on both sides.
//!
//! Also: `--stun` against coturn (Debian's STUN/TURN server), and signalling over `wss://`.
//!
//! Each test re-executes itself in a private network namespace (WebRTC gathers no candidates
//! on loopback alone) holding the tracker (in-process), `shoal` and the other peer. Skipped
//! (`SKIP:`) only where that peer is not installed (scripts/install-test-deps.sh installs both)
//! or namespaces cannot be made.

mod interop_support;

use std::path::Path;
use std::time::{Duration, Instant};

use interop_support::*;
use serde_json::Value;
use shoal_testkit::*;

/// Bound on one WebRTC transfer of [`PAYLOAD`] bytes (seconds at the speeds seen here).
const WEBRTC_TIMEOUT: Duration = Duration::from_secs(120);
/// Some hundred pieces, and a short last piece at any piece size.
const PAYLOAD: u64 = (8 << 20) + 4321;

/// A random single file `<dir>/<name>` of [`PAYLOAD`] bytes; returns its SHA-1.
fn payload_file(dir: &Path, name: &str, seed: u64) -> String {
    let file = dir.join(name);
    write_random_file(&file, PAYLOAD, seed).expect("writing the payload");
    sha1_file(&file).expect("hashing the payload")
}

/// `magnet:?xt=urn:btih:<hex>` alone: no `x.pe` (no TCP address), no trackers.
fn bare_magnet(info_hash: &str) -> String {
    format!("magnet:?xt=urn:btih:{info_hash}")
}

/// `shoal download MAGNET --tracker WS` to completion; checks that no progress line (nor the
/// `complete` event) counts a peer other than a WebRTC one. That one of them shows the WebRTC
/// peer is luck: lines come once a second, the transfer can take less, and libtorrent drops a
/// peer the moment it becomes a seed, before `complete`. The other side tells the transport.
#[track_caller]
fn shoal_download_over_webrtc(magnet: &str, ws: &str, out: &Path) -> Vec<Value> {
    shoal_download_over_webrtc_with_env(magnet, ws, out, &[])
}

/// [`shoal_download_over_webrtc`] with more environment variables (a test CA, say).
#[track_caller]
fn shoal_download_over_webrtc_with_env(
    magnet: &str,
    ws: &str,
    out: &Path,
    env: &[(&str, &Path)],
) -> Vec<Value> {
    let args = [
        arg("download"),
        arg(magnet),
        arg("-o"),
        arg(out),
        arg("--listen"),
        arg("127.0.0.1:0"),
        arg("--tracker"),
        arg(ws),
    ];
    let mut shoal = spawn_shoal_with_env("shoal-download", &args, env);
    let started = Instant::now();
    if let Err(e) = shoal.wait_success(WEBRTC_TIMEOUT) {
        panic!("`shoal download` over WebRTC did not succeed: {e}");
    }
    let events = shoal.events().to_vec();
    let secs = started.elapsed().as_secs_f64();
    println!("shoal download took {secs:.1} s ({:.1} MB/s)", PAYLOAD as f64 / 1e6 / secs);
    assert!(
        events.iter().any(|e| event_name(e) == Some("complete")),
        "no \"complete\" event: {}",
        shoal.output_tail()
    );
    let most = assert_only_webrtc_peers(&events);
    println!("most WebRTC peers in shoal's progress: {most:?}");
    events
}

/// `shoal seed <dir>/shoal.bin --tracker WS` (a fresh random file); returns it once seeding,
/// with the file's SHA-1 and a bare magnet of it (no `x.pe`: no way to reach it over TCP).
fn shoal_seed_shoal_bin(dir: &Path, seed: u64, ws: &str) -> (ShoalSeed, String, String) {
    let want = payload_file(dir, "shoal.bin", seed);
    let args = [arg("--tracker"), arg(ws)];
    let shoal = shoal_seed(&dir.join("shoal.bin"), std::net::Ipv4Addr::LOCALHOST, &args);
    assert!(shoal.started["webrtc"].is_string(), "WebRTC is on: {}", shoal.started);
    let magnet = bare_magnet(shoal.started["info_hash"].as_str().expect("an info hash"));
    (shoal, want, magnet)
}

/// A libtorrent 2.1 peer that speaks WebRTC only, announcing to `ws`.
fn lt21_opts(ws: &str) -> PeerOpts {
    let mut opts = PeerOpts::default().tracker(ws).timeout(WEBRTC_TIMEOUT);
    opts.extra_args.push("--no-tcp".into());
    opts
}

#[test]
fn shoal_download_from_libtorrent21_over_webrtc() {
    let test = "shoal_download_from_libtorrent21_over_webrtc";
    in_netns_unless(test, lt21_unavailable(), |ws| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let want = payload_file(&data, "lt21.bin", 21);
        // WebTorrent peers speak v1 only: make_torrent.py writes v1.
        let torrent = make_torrent(
            &data.join("lt21.bin"),
            &dir.path().join("lt21.torrent"),
            &TorrentOpts { piece_kib: 64, ..TorrentOpts::default() },
        )
        .expect("making the torrent");
        let seed = lt21_seed(&torrent.path, &data, &lt21_opts(ws)).expect("libtorrent 2.1 seeds");
        println!("libtorrent 2.1 seed: {}", seed.ready_event());

        let out = dir.path().join("out");
        shoal_download_over_webrtc(&bare_magnet(&torrent.info_hash), ws, &out);
        assert_eq!(sha1_file(&out.join("lt21.bin")).unwrap(), want, "what shoal wrote");
        drop(seed);
    });
}

#[test]
fn libtorrent21_downloads_from_shoal_seed_over_webrtc() {
    let test = "libtorrent21_downloads_from_shoal_seed_over_webrtc";
    in_netns_unless(test, lt21_unavailable(), |ws| {
        let dir = tempfile::tempdir().unwrap();
        let (seed, want, magnet) = shoal_seed_shoal_bin(dir.path(), 22, ws);

        let out = dir.path().join("out");
        let mut leech = lt21_leech(&magnet, &out, &lt21_opts(ws)).expect("libtorrent 2.1 starts");
        let done = shoal_serves(&seed, leech.wait_done(WEBRTC_TIMEOUT));
        println!("libtorrent 2.1 done: {done}");
        assert_eq!(sha1_file(&out.join("shoal.bin")).unwrap(), want, "what libtorrent wrote");
        drop(seed);
    });
}

#[test]
fn shoal_download_from_node_webtorrent() {
    let test = "shoal_download_from_node_webtorrent";
    in_netns_unless(test, node_webtorrent_unavailable(), |ws| {
        let dir = tempfile::tempdir().unwrap();
        let want = payload_file(dir.path(), "node.bin", 23);
        let opts = BrowserOpts::default().announce(ws).timeout(WEBRTC_TIMEOUT);
        let mut seed =
            node_seed(&dir.path().join("node.bin"), &opts).expect("node WebTorrent seeds");
        let info_hash = seed.info_hash().expect("the seed's info hash").to_owned();

        let out = dir.path().join("out");
        shoal_download_over_webrtc(&bare_magnet(&info_hash), ws, &out);
        assert_eq!(sha1_file(&out.join("node.bin")).unwrap(), want, "what shoal wrote");
        // The seed reported shoal's connection (it has no other peer); it was a WebRTC one.
        let wire = seed
            .process()
            .wait_for("a peer", Duration::from_secs(10), |e| {
                event_name(e) == Some("peer_connected")
            })
            .expect("node WebTorrent reports its peer");
        assert_webrtc_wires(seed.process().events().iter().chain([&wire]));
        drop(seed);
    });
}

#[test]
fn node_webtorrent_downloads_from_shoal_seed() {
    let test = "node_webtorrent_downloads_from_shoal_seed";
    in_netns_unless(test, node_webtorrent_unavailable(), |ws| {
        let dir = tempfile::tempdir().unwrap();
        let (seed, want, magnet) = shoal_seed_shoal_bin(dir.path(), 24, ws);

        let out = dir.path().join("out");
        let opts = BrowserOpts::default().announce(ws).timeout(WEBRTC_TIMEOUT);
        let mut leech = node_leech(&magnet, &out, &opts).expect("node WebTorrent starts");
        let done = shoal_serves(&seed, leech.wait_done(WEBRTC_TIMEOUT));
        println!("node WebTorrent done: {done}");
        assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "what WebTorrent verified");
        assert_eq!(sha1_file(&out.join("shoal.bin")).unwrap(), want, "what was written");
        assert_webrtc_wires(leech.process().events());
        drop(seed);
    });
}

/// Two Shoal peers that can find each other only through a `wss://` tracker (TLS, with a
/// test CA both trust through `SSL_CERT_FILE`): the seeder announces its offers over TLS, the
/// downloader answers through it, and the bytes come over WebRTC.
#[test]
fn shoal_peers_meet_through_a_wss_tracker() {
    let test = "shoal_peers_meet_through_a_wss_tracker";
    in_netns_unless(test, None, |_plain_ws| {
        let dir = tempfile::tempdir().unwrap();
        let tls = test_certificate(dir.path()).expect("a test certificate");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let tracker = runtime
            .block_on(shoal_tracker::start(shoal_tracker::Config {
                ws: Some("127.0.0.1:0".parse().unwrap()),
                tls_cert: Some(tls.cert.clone()),
                tls_key: Some(tls.key.clone()),
                ..shoal_tracker::Config::default()
            }))
            .expect("the TLS tracker starts");
        let wss = format!("wss://127.0.0.1:{}", tracker.ws_addr.unwrap().port());
        let env = [("SSL_CERT_FILE", tls.ca.as_path())];

        let want = payload_file(dir.path(), "over-tls.bin", 41);
        let seed_args = [
            arg("seed"),
            arg(dir.path().join("over-tls.bin")),
            arg("--listen"),
            arg("127.0.0.1:0"),
            arg("--tracker"),
            arg(&wss),
        ];
        let mut seed = spawn_shoal_with_env("shoal-seed-wss", &seed_args, &env);
        let started = seed
            .wait_event("started", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("`shoal seed` did not start: {e}"));
        seed.wait_event("seeding", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("`shoal seed` did not reach seeding: {e}"));
        let magnet = bare_magnet(started["info_hash"].as_str().expect("an info hash"));

        let out = dir.path().join("got");
        shoal_download_over_webrtc_with_env(&magnet, &wss, &out, &env);
        assert_eq!(sha1_file(&out.join("over-tls.bin")).unwrap(), want);
        let stats = tracker.stats();
        println!("wss tracker: {}", stats.to_json());
        let relayed = |name: &str| stats.counters.get(name).copied().unwrap_or(0);
        assert!(
            relayed("ws_offers_relayed") >= 1 && relayed("ws_answers_relayed") >= 1,
            "the peers did not signal through the TLS tracker: {}",
            stats.to_json()
        );
        seed.stop();
        runtime.block_on(tracker.shutdown()).unwrap();
    });
}

/// `--stun` against coturn, the STUN server people deploy (Debian's, standalone STUN mode):
/// `shoal seed` reports the address the server saw, which, with no NAT in the namespace, is
/// its own WebRTC socket. A server that never answers costs a warning, not the seed.
#[test]
fn shoal_seed_learns_its_address_from_coturn() {
    let test = "shoal_seed_learns_its_address_from_coturn";
    in_netns_unless(test, coturn_unavailable(), |ws| {
        let dir = tempfile::tempdir().unwrap();
        let ip = std::net::Ipv4Addr::LOCALHOST;
        let port = free_port(ip).expect("a free port");
        let mut coturn = start_coturn(dir.path(), ip.into(), port);

        payload_file(dir.path(), "stun.bin", 43);
        let seed_with = |stun: String| {
            let args = [arg("--tracker"), arg(ws), arg("--stun"), arg(stun)];
            shoal_seed(&dir.path().join("stun.bin"), ip, &args)
        };
        let seed = seed_with(format!("{ip}:{port}"));
        let (ours, seen) = (&seed.started["webrtc"], &seed.started["webrtc_stun"]);
        assert!(ours.is_string(), "{}", seed.started);
        assert_eq!(seen, ours, "coturn saw another address than our socket's: {}", seed.started);
        drop(seed);

        coturn.stop();
        // A server that takes the request and never answers.
        let silent = std::net::UdpSocket::bind((ip, port)).expect("the port again");
        let seed = seed_with(format!("{ip}:{port}"));
        let mut buf = [0u8; 512];
        silent.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert!(silent.recv_from(&mut buf).is_ok(), "shoal did not ask the silent server");
        assert!(seed.started["webrtc_stun"].is_null(), "no answer, no address: {}", seed.started);
        assert!(seed.started["webrtc"].is_string(), "WebRTC still on: {}", seed.started);
        let warning = format!("no answer from {ip}:{port}");
        assert!(
            seed.process.output_tail().contains(&warning),
            "no warning {warning:?} in:\n{}",
            seed.process.output_tail()
        );
    });
}

/// Node WebTorrent's `peer_connected` events: at least one, all of them WebRTC.
#[track_caller]
fn assert_webrtc_wires<'a>(events: impl IntoIterator<Item = &'a Value>) {
    let wires: Vec<&Value> =
        events.into_iter().filter(|e| event_name(e) == Some("peer_connected")).collect();
    assert!(!wires.is_empty(), "node WebTorrent reported no peer");
    for wire in wires {
        assert_eq!(wire["type"].as_str(), Some("webrtc"), "a peer other than WebRTC: {wire}");
    }
}

/// The leech's result, or a panic showing what the seed said last.
#[track_caller]
fn shoal_serves(seed: &ShoalSeed, done: shoal_testkit::Result<Value>) -> Value {
    done.unwrap_or_else(|e| {
        panic!(
            "{e}\n--- last output of {} ---\n{}\n--- end ---",
            seed.process.name(),
            seed.process.output_tail()
        )
    })
}
