//! Peers behind two different NAT routers meet over WebRTC through the addresses a STUN
//! server saw (server-reflexive candidates): what `--stun` is for. Two Shoal peers, and
//! WebTorrent in Chromium (given the same STUN server, as a site would) downloading from
//! `shoal seed`.
//!
//! The test's network namespace plays the internet, with the WebSocket tracker and coturn on
//! it; each peer runs on a host behind a masquerading router with a stateful filter
//! (`shoal_testkit::nat`), and both hosts have the same private address, 192.168.1.2. A
//! peer's host candidate is therefore useless to the other, and the only way through is each
//! side's public mapping, learnt from STUN, with ICE checks from both ends opening the
//! routers' filters. When the seed's router gets a new public address, the seed learns it
//! from its next STUN request and is reached there. Without `--stun` on one side the same two
//! peers cannot meet: that run shows the NAT is real and the first ones went through it.
//!
//! Skipped (`SKIP:`) without coturn, nftables (scripts/install-test-deps.sh installs both),
//! root, or for the browser test Chromium.

mod interop_support;

use std::path::Path;
use std::time::{Duration, Instant};

use interop_support::*;
use serde_json::Value;
use shoal_testkit::nat::{self, NatHost};
use shoal_testkit::*;

/// Bound on the transfer of [`PAYLOAD`] bytes (seconds when it works).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the peers get to meet when they cannot: several rounds of offers and ICE checks,
/// where the run that works connects within a second or two.
const CANNOT_MEET_WAIT: Duration = Duration::from_secs(20);
/// Bound on a `stats` line (every 5 s) showing what the seed knows.
const STATS_WAIT: Duration = Duration::from_secs(15);
/// Bound on the download after the change: the seed's STUN refresh (every 25 s) and
/// reconnect, and shorter than the announce interval (120 s), so the peers can only meet in
/// time through the offers the seed sends when it rejoins.
const AFTER_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Some hundred pieces, and a short last piece.
const PAYLOAD: u64 = (4 << 20) + 1234;
/// The seeded file's name (and the torrent's).
const FILE_NAME: &str = "behind-nat.bin";

#[test]
fn shoal_peers_behind_two_nats_meet_through_stun() {
    let test = "shoal_peers_behind_two_nats_meet_through_stun";
    let missing = coturn_unavailable().or_else(nat::unavailable);
    in_netns_unless(test, missing, |_loopback_ws| {
        let net = Internet::new();
        let (mut seed_host, mut seed, magnet, want) = net.seed_behind_nat(1, 51);
        let leech_host = NatHost::new(2).expect("the downloader's NAT");

        // Both sides with STUN: through both NATs.
        let out = net.dir.path().join("got");
        let mut leech = download_behind(&leech_host, &magnet, &out, &net.ws, Some(&net.stun));
        let started = Instant::now();
        if let Err(e) = leech.wait_success(TRANSFER_TIMEOUT) {
            panic!(
                "the download behind a NAT did not succeed: {e}\n--- seed ---\n{}\n\
                 --- seed's router ---\n{}\n--- downloader's router ---\n{}",
                seed.output_tail(),
                seed_host.router_state(),
                leech_host.router_state()
            );
        }
        println!("through two NATs in {:.1?}", started.elapsed());
        let leech_started = event(&leech, "started");
        assert_public(&leech_started, &leech_host);
        assert_only_webrtc_peers(leech.events());
        assert_eq!(sha1_file(&out.join(FILE_NAME)).unwrap(), want);

        // The seed's router gets a new public address, and a new downloader announces at
        // once, while the seed does not know yet: its offers go to the seed's dead socket.
        // The seed's next STUN request finds the new address; the seed reopens its tracker
        // socket at that and rejoins with fresh offers carrying it, which is how the two meet
        // (their regular announces are two minutes away; the download is bounded below that).
        let counter = |name: &str| net.tracker.stats().counters.get(name).copied().unwrap_or(0);
        // The first downloader announces `stopped` as it exits, and the tracker may count it
        // only now: wait until its socket is gone (the seed's alone is open), so that late
        // announce is not taken for the next downloader's.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter("ws_connections_open") != 1 {
            assert!(Instant::now() < deadline, "the first downloader's tracker socket stayed open");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (accepted, announced) = (counter("ws_connections_accepted"), counter("ws_announces"));
        let moved = seed_host.renumber().expect("a new public address");
        let out = net.dir.path().join("got-after-the-change");
        let mut leech = download_behind(&leech_host, &magnet, &out, &net.ws, Some(&net.stun));
        let deadline = Instant::now() + Duration::from_secs(20);
        while counter("ws_announces") == announced {
            assert!(Instant::now() < deadline, "the downloader did not announce");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            counter("ws_connections_accepted"),
            accepted + 1,
            "only the downloader connected: the seed was still on its old socket"
        );
        if let Err(e) = leech.wait_success(AFTER_CHANGE_TIMEOUT) {
            panic!(
                "no download after the seed's address changed: {e}\n--- seed ---\n{}",
                seed.output_tail()
            );
        }
        assert_eq!(sha1_file(&out.join(FILE_NAME)).unwrap(), want);
        let prefix = format!("{moved}:");
        let noticed = seed.wait_for("the new public address", STATS_WAIT, |e| {
            event_name(e) == Some("stats")
                && e["webrtc_stun"].as_str().is_some_and(|a| a.starts_with(&prefix))
        });
        if let Err(e) = noticed {
            panic!("the seed does not report its new address {moved}: {e}");
        }
        assert!(
            seed.output_tail().contains("WebSocket tracker: our public address changed"),
            "the seed's tracker socket was reopened for the new address:\n{}",
            seed.output_tail()
        );

        // The downloader without STUN: only its private host candidate to offer.
        let out = net.dir.path().join("not-got");
        let mut stuck = download_behind(&leech_host, &magnet, &out, &net.ws, None);
        let met = stuck.wait_for("a WebRTC peer", CANNOT_MEET_WAIT, |e| {
            event_name(e) == Some("complete") || e["webrtc_peers"].as_u64().unwrap_or(0) > 0
        });
        match met {
            Err(Error::Timeout { .. }) => {}
            Ok(e) => panic!(
                "a peer with no public address reached a peer behind another NAT, so the \
                 routers do not filter: {e}\n{}\n{}",
                seed_host.router_state(),
                leech_host.router_state()
            ),
            Err(e) => panic!("the downloader without STUN: {e}"),
        }
        stuck.stop();
        seed.stop();
        net.stop();
    });
}

/// WebTorrent in Chromium behind one NAT, configured with the same STUN server (as a site
/// would), downloads from `shoal seed` behind another.
#[test]
fn webtorrent_in_chromium_behind_a_nat_downloads_from_shoal_behind_another() {
    let test = "webtorrent_in_chromium_behind_a_nat_downloads_from_shoal_behind_another";
    browser_behind_a_nat(test, browser_unavailable(), |magnet, out, opts| {
        let peer = browser_leech(magnet, out, opts).expect("the browser starts");
        (peer, Some(out.join(FILE_NAME)))
    });
}

/// The same with Shoal's own browser client (the wasm engine in Chromium).
#[test]
fn shoal_web_in_chromium_behind_a_nat_downloads_from_shoal_behind_another() {
    let test = "shoal_web_in_chromium_behind_a_nat_downloads_from_shoal_behind_another";
    browser_behind_a_nat(test, shoal_web_unavailable(), |magnet, _out, opts| {
        (shoal_web_leech(magnet, None, opts).expect("the page starts"), None)
    });
}

/// A browser peer behind NAT 2, started by `leech` with a magnet, a download folder and its
/// options, downloads from `shoal seed` behind NAT 1; `leech` also says where the file lands,
/// if it is written out. Checks that the browser had a server-reflexive candidate at its
/// router's address, and the bytes.
fn browser_behind_a_nat(
    test: &str,
    browser_missing: Option<String>,
    leech: impl FnOnce(&str, &Path, &BrowserOpts) -> (BrowserPeer, Option<std::path::PathBuf>),
) {
    let missing = browser_missing.or_else(coturn_unavailable).or_else(nat::unavailable);
    in_netns_unless(test, missing, |_loopback_ws| {
        let net = Internet::new();
        let (seed_host, mut seed, magnet, want) = net.seed_behind_nat(1, 52);
        let browser_host = NatHost::new(2).expect("the browser's NAT");

        let opts = BrowserOpts {
            stun: Some(net.stun.clone()),
            launcher: browser_host.launcher(),
            ..BrowserOpts::default().announce(&net.ws).timeout(BROWSER_TIMEOUT)
        };
        let out = net.dir.path().join("browser-out");
        let (mut peer, written) = leech(&magnet, &out, &opts);
        let done = match peer.wait_done(BROWSER_TIMEOUT) {
            Ok(done) => done,
            Err(e) => panic!(
                "the browser behind a NAT did not complete: {e}\n--- seed ---\n{}\n\
                 --- seed's router ---\n{}\n--- browser's router ---\n{}",
                seed.output_tail(),
                seed_host.router_state(),
                browser_host.router_state()
            ),
        };
        println!("browser done: {done}");
        let public = browser_host.public_addr().to_string();
        let srflx = peer.process().events().iter().any(|e| {
            event_name(e) == Some("local_candidate")
                && e["kind"] == "srflx"
                && e["address"].as_str() == Some(public.as_str())
        });
        assert!(srflx, "the browser had no server-reflexive candidate at {public}");
        assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "what the browser verified");
        if let Some(file) = written {
            assert_eq!(sha1_file(&file).unwrap(), want, "what was written");
        }
        drop(peer);
        seed.stop();
        net.stop();
    });
}

/// The test namespace as the internet: a WebSocket tracker and coturn on
/// `nat::internet_servers()`.
struct Internet {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    tracker: shoal_tracker::RunningTracker,
    ws: String,
    stun: String,
    _coturn: ChildGuard,
}

impl Internet {
    fn new() -> Internet {
        let dir = tempfile::tempdir().unwrap();
        let ip = nat::internet_servers().expect("an address for the servers");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tracker, ws) = start_ws_tracker(&runtime, (ip, 0).into());
        let stun_port = free_port(ip).expect("a free port");
        let coturn = start_coturn(dir.path(), ip.into(), stun_port);
        Internet { dir, runtime, tracker, ws, stun: format!("{ip}:{stun_port}"), _coturn: coturn }
    }

    /// A random file of [`PAYLOAD`] bytes seeded by `shoal seed` on NAT host `index`; returns
    /// the host, the seed, a bare magnet (nothing but the info hash) and the file's SHA-1.
    fn seed_behind_nat(
        &self,
        index: u8,
        payload_seed: u64,
    ) -> (NatHost, ChildGuard, String, String) {
        let host = NatHost::new(index).expect("the seed's NAT");
        let file = self.dir.path().join(FILE_NAME);
        write_random_file(&file, PAYLOAD, payload_seed).expect("writing the payload");
        let want = sha1_file(&file).expect("hashing the payload");
        let (seed, started) = seed_behind(&host, &file, &self.ws, &self.stun);
        let magnet = format!("magnet:?xt=urn:btih:{}", started["info_hash"].as_str().unwrap());
        (host, seed, magnet, want)
    }

    fn stop(self) {
        println!("tracker: {}", self.tracker.stats().to_json());
        self.runtime.block_on(self.tracker.shutdown()).unwrap();
    }
}

/// `shoal seed FILE` on `host`, announcing to `ws` with STUN from `stun`; returns it once it
/// seeds, with its `started` event, which must show the router's public address.
fn seed_behind(host: &NatHost, file: &Path, ws: &str, stun: &str) -> (ChildGuard, Value) {
    let args = [
        arg("seed"),
        arg(file),
        arg("--listen"),
        arg(format!("{}:0", host.lan_addr())),
        arg("--tracker"),
        arg(ws),
        arg("--stun"),
        arg(stun),
    ];
    let mut seed = spawn_shoal_through("shoal-seed", host.command(shoal_path()), &args);
    let started = seed.wait_event("started", SEED_START_TIMEOUT).expect("shoal seed starts");
    seed.wait_event("seeding", SEED_START_TIMEOUT).expect("shoal seed is seeding");
    assert_public(&started, host);
    (seed, started)
}

/// `shoal download MAGNET` on `host` into `out`, through `ws` only, with `stun` if given;
/// started, not waited for.
fn download_behind(
    host: &NatHost,
    magnet: &str,
    out: &Path,
    ws: &str,
    stun: Option<&str>,
) -> ChildGuard {
    let mut args = vec![
        arg("download"),
        arg(magnet),
        arg("-o"),
        arg(out),
        arg("--listen"),
        arg(format!("{}:0", host.lan_addr())),
        arg("--tracker"),
        arg(ws),
    ];
    if let Some(stun) = stun {
        args.extend([arg("--stun"), arg(stun)]);
    }
    spawn_shoal_through("shoal-download", host.command(shoal_path()), &args)
}

/// A `started` event of a peer on `host` with STUN: its WebRTC socket is on the LAN and the
/// STUN server saw the router's address.
#[track_caller]
fn assert_public(started: &Value, host: &NatHost) {
    let ip_of = |key: &str| {
        started[key]
            .as_str()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip())
            .unwrap_or_else(|| panic!("no {key} address in {started}"))
    };
    assert_eq!(ip_of("webrtc"), std::net::IpAddr::from(host.lan_addr()), "{started}");
    assert_eq!(ip_of("webrtc_stun"), std::net::IpAddr::from(host.public_addr()), "{started}");
}

/// The first event called `name` that `process` printed.
#[track_caller]
fn event(process: &ChildGuard, name: &str) -> Value {
    process
        .events()
        .iter()
        .find(|e| event_name(e) == Some(name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name:?} event:\n{}", process.output_tail()))
}
