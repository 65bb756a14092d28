//! Shoal's browser engine (web/shoal.js over crates/shoal-web compiled to wasm) in headless
//! Chromium: it downloads and plays media streamed through its Service Worker from a native
//! `shoal seed`, from WebTorrent in another Chromium, and from another Shoal tab; and native
//! Shoal downloads from a Shoal tab. Bytes are checked by SHA-1 in the page (read through the
//! public API), playback by the `<video>`'s currentTime advancing, before and after a seek to
//! near the end.
//!
//! Like the other WebRTC tests, each runs inside a private network namespace with our
//! tracker; the page is served from 127.0.0.1 there (a secure context: SubtleCrypto and
//! Service Workers work).

mod interop_support;
mod stream_support;

use interop_support::*;
use serde_json::Value;
use shoal_testkit::*;

fn in_netns_web(test: &str, body: impl FnOnce(&str)) {
    in_netns_unless(test, shoal_web_unavailable(), body);
}

fn leech_opts(ws: &str) -> BrowserOpts {
    let mut opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
    opts.play = true;
    opts
}

/// Checks a Shoal web leech's `done`: the bytes, and that playback advanced before and after
/// the seek.
#[track_caller]
fn check_played(done: &Value, want_sha1: &str) {
    println!("shoal web done: {done}");
    assert_eq!(done["sha1"].as_str(), Some(want_sha1), "what the page read through the API");
    let played = &done["played"];
    let duration = played["duration"].as_f64().expect("a duration");
    assert!(played["first"].as_f64().is_some_and(|t| t > 0.5), "playback advanced: {played}");
    let target = played["seekTarget"].as_f64().expect("a seek target");
    assert!(target >= duration - 2.5, "the seek went near the end: {played}");
    assert!(
        played["afterSeek"].as_f64().is_some_and(|t| t > target),
        "playback advanced after the seek: {played}"
    );
}

fn native_seed(file: &std::path::Path, ws: &str) -> (ChildGuard, String) {
    let (seed, started) = shoal_ws_seed(file, ws);
    let magnet = started["magnet"].as_str().expect("a magnet").to_owned();
    (seed, magnet)
}

/// `count` native seeders of one random file of `len` bytes (in `dir`): their magnet, the
/// file's SHA-1 and the seeders.
fn native_swarm(
    dir: &std::path::Path,
    len: u64,
    count: usize,
    ws: &str,
) -> (String, String, Vec<ChildGuard>) {
    let file = dir.join("swarm.bin");
    write_random_file(&file, len, 31).unwrap();
    let want = sha1_file(&file).unwrap();
    let seeds: Vec<_> = (0..count).map(|_| native_seed(&file, ws)).collect();
    let btih = |magnet: &str| magnet.split('&').next().map(str::to_owned);
    assert!(seeds.iter().all(|(_, m)| btih(m) == btih(&seeds[0].1)), "one torrent");
    let magnet = seeds[0].1.clone();
    (magnet, want, seeds.into_iter().map(|(seed, _)| seed).collect())
}

#[test]
fn shoal_web_plays_an_mp4_from_shoal_seed() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("shoal_web_plays_an_mp4_from_shoal_seed", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clip.mp4");
        make_mp4_moov_at_end(&file, 12, 800).expect("ffmpeg makes the MP4");
        let want = sha1_file(&file).unwrap();
        let (mut seed, magnet) = native_seed(&file, ws);
        let mut leech = shoal_web_leech(&magnet, None, &leech_opts(ws)).expect("the page starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the page completes");
        check_played(&done, &want);
        drop(leech);
        seed.stop();
    });
}

/// The two containers the issue's playback tests cover, made by ffmpeg.
#[derive(Clone, Copy)]
enum Media {
    Mp4,
    Webm,
}

impl Media {
    /// Writes a 12 s clip named `stem` with this container's extension into `dir`.
    fn make(self, dir: &std::path::Path, stem: &str) -> std::path::PathBuf {
        match self {
            Media::Mp4 => {
                let file = dir.join(format!("{stem}.mp4"));
                make_mp4_moov_at_end(&file, 12, 600).expect("ffmpeg makes the MP4");
                file
            }
            Media::Webm => {
                let file = dir.join(format!("{stem}.webm"));
                make_webm(&file, 12, 600).expect("ffmpeg makes the WebM");
                file
            }
        }
    }
}

/// How a browser seeder starts: WebTorrent 3 in Chromium, or another Shoal tab.
type BrowserSeeder = fn(&std::path::Path, &BrowserOpts) -> shoal_testkit::Result<BrowserPeer>;

/// A Shoal tab plays `media` that a browser (`seeder`) seeds from another Chromium.
fn plays_from_a_browser(test: &str, media: Media, seeder: BrowserSeeder) {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web(test, |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = media.make(dir.path(), "clip");
        let want = sha1_file(&file).unwrap();
        let opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let seed = seeder(&file, &opts).expect("the browser seeds");
        let magnet = seed.magnet().expect("the seed's magnet").to_owned();
        let mut leech = shoal_web_leech(&magnet, None, &leech_opts(ws)).expect("the page starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the page completes");
        check_played(&done, &want);
        drop(leech);
        drop(seed);
    });
}

#[test]
fn shoal_web_plays_a_webm_from_webtorrent_in_chromium() {
    let test = "shoal_web_plays_a_webm_from_webtorrent_in_chromium";
    plays_from_a_browser(test, Media::Webm, browser_seed);
}

#[test]
fn shoal_web_plays_an_mp4_from_webtorrent_in_chromium() {
    let test = "shoal_web_plays_an_mp4_from_webtorrent_in_chromium";
    plays_from_a_browser(test, Media::Mp4, browser_seed);
}

/// Tab A shares a WebM it was given; tab B plays it (the MP4 case is the test below).
#[test]
fn a_shoal_tab_plays_a_webm_another_tab_shares() {
    plays_from_a_browser(
        "a_shoal_tab_plays_a_webm_another_tab_shares",
        Media::Webm,
        shoal_web_seed,
    );
}

#[test]
fn a_shoal_tab_feeds_another_tab_and_native_shoal() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("a_shoal_tab_feeds_another_tab_and_native_shoal", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.mp4");
        make_mp4_moov_at_end(&file, 10, 600).expect("ffmpeg makes the MP4");
        let want = sha1_file(&file).unwrap();
        let opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let tab_a = shoal_web_seed(&file, &opts).expect("tab A shares the file");
        let magnet = tab_a.magnet().expect("tab A's magnet").to_owned();
        println!("tab A: {}", tab_a.ready_event());

        let mut tab_b = shoal_web_leech(&magnet, None, &leech_opts(ws)).expect("tab B starts");
        let done = tab_b.wait_done(BROWSER_TIMEOUT).expect("tab B completes");
        check_played(&done, &want);

        let out = dir.path().join("native");
        let done = shoal_download(&[
            arg(&magnet),
            arg("-o"),
            arg(&out),
            arg("--listen"),
            arg("127.0.0.1:0"),
        ]);
        println!("shoal download done: {done}");
        assert_eq!(sha1_file(&out.join("shared.mp4")).unwrap(), want, "what native Shoal wrote");
        drop(tab_b);
        drop(tab_a);
    });
}

/// A tab added right as its client starts has no offers gathered yet: its first announce
/// leaves with the first one, and when the tracker's answer counts three seeders, a second
/// announce carries offers for the others. The tab must reach all three, not just the one the
/// first offer went to (the regular re-announce is minutes away).
#[test]
fn a_tab_that_starts_cold_reaches_every_seeder() {
    in_netns_web("a_tab_that_starts_cold_reaches_every_seeder", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let (magnet, want, seeds) = native_swarm(dir.path(), 24 << 20, 3, ws);
        let opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let mut leech = shoal_web_leech(&magnet, None, &opts).expect("the page starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the page completes");
        assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "the bytes the page read");
        let connected =
            leech.process().events().iter().filter(|e| e["event"] == "peer_connected").count();
        assert!(connected >= 3, "the tab connected to {connected} of the 3 seeders: {done}");
        drop(leech);
        for mut seed in seeds {
            seed.stop();
        }
    });
}

/// A client's `RTCPeerConnection`s are bounded over all it does (Chromium refuses a page's
/// 501st): with room for two, the tab meets two of the three seeders and still completes.
/// The page is open a while first, so its offer pool has filled: pooled offers must bring
/// their slots to the torrent, and leave one free for a seeder's offer.
#[test]
fn a_tab_holds_no_more_connections_than_its_budget() {
    in_netns_web("a_tab_holds_no_more_connections_than_its_budget", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let (magnet, want, seeds) = native_swarm(dir.path(), 8 << 20, 3, ws);
        let mut opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        opts.client_options = Some(serde_json::json!({ "maxPeerConnections": 2 }));
        opts.idle_before_add = std::time::Duration::from_millis(1500);
        let mut leech = shoal_web_leech(&magnet, None, &opts).expect("the page starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the page completes");
        assert_eq!(done["sha1"].as_str(), Some(want.as_str()), "the bytes the page read");
        let connected =
            leech.process().events().iter().filter(|e| e["event"] == "peer_connected").count();
        assert!((1..=2).contains(&connected), "{connected} peers within a budget of 2: {done}");
        drop(leech);
        for mut seed in seeds {
            seed.stop();
        }
    });
}

/// A page plays from a web seed alone, the metadata coming from the magnet's `xs` .torrent.
#[test]
fn shoal_web_plays_from_a_web_seed_alone() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("shoal_web_plays_from_a_web_seed_alone", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir(&site).unwrap();
        let file = site.join("clip.mp4");
        make_mp4_moov_at_end(&file, 12, 800).expect("ffmpeg makes the MP4");
        let want = sha1_file(&file).unwrap();
        let server =
            nginx(&site, &NginxOpts { cors: true, ..NginxOpts::default() }).expect("nginx starts");
        // No tracker, no peers: only the web seed (a folder URL: the file's name is appended).
        let opts = TorrentOpts { web_seeds: vec![server.url("")], ..TorrentOpts::default() };
        let torrent = make_torrent(&file, &site.join("clip.torrent"), &opts).expect("the torrent");
        // A bare magnet whose `xs` names the .torrent on the same server: no peer can send
        // the metadata, so the page plays only if it fetches the .torrent and takes its web
        // seed from there.
        let magnet = format!(
            "magnet:?xt=urn:btih:{}&xs={}",
            torrent.info_hash,
            shoal_proto::percent::encode(server.url("clip.torrent").as_bytes())
        );
        let mut leech = shoal_web_leech(&magnet, None, &leech_opts(ws)).expect("the page starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the page completes");
        check_played(&done, &want);
        let status = &done["status"];
        assert_eq!(status["peers"].as_u64(), Some(0), "no peer was involved: {status}");
        assert_eq!(
            status["webSeedDownloaded"].as_u64(),
            Some(std::fs::metadata(&file).unwrap().len()),
            "every byte came from the web seed: {status}"
        );
        drop(leech);
        println!("nginx log:\n{}", server.access_log());
    });
}

/// `shoal serve` is the only seeder (hybrid peer, web seed and tracker in one process): the
/// page plays its file, and the binary serves the app's engine and Service Worker itself.
#[test]
fn shoal_web_plays_from_shoal_serve() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("shoal_web_plays_from_shoal_serve", |_ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("served.webm");
        make_webm(&file, 12, 600).expect("ffmpeg makes the WebM");
        let want = sha1_file(&file).unwrap();
        let (mut serve, serving) = spawn_shoal_serve("shoal-serve", &file, &[], &[]);
        assert_eq!(serving["engine_built"].as_bool(), Some(true), "{serving}");
        let url = serving["url"].as_str().expect("the app's URL").to_owned();
        let ws = serving["tracker"]["ws"].as_str().expect("its WebSocket tracker").to_owned();
        let magnet = serving["files"][0]["magnet"].as_str().expect("a magnet").to_owned();
        let app_url = serving["files"][0]["app_url"].as_str().expect("an app link").to_owned();
        assert!(app_url.starts_with(&url) && app_url.contains("#magnet="), "{app_url}");
        let addr: std::net::SocketAddr =
            url.trim_start_matches("http://").trim_end_matches('/').parse().expect("IP:port");
        for (path, kind) in
            [("/pkg/shoal_web_bg.wasm", "application/wasm"), ("/sw.js", "text/javascript")]
        {
            let response = stream_support::get(addr, path, None);
            assert_eq!(response.status(), 200, "{path}: {}", response.describe());
            let got = response.head.header("content-type").unwrap_or_default();
            assert!(got.starts_with(kind), "{path}: {got}");
        }
        // The engine travels compressed, and a browser holding it fetches it only once.
        let plain = stream_support::get(addr, "/pkg/shoal_web_bg.wasm", None);
        let br = [("Accept-Encoding", "gzip, deflate, br, zstd")];
        let packed = stream_support::request(addr, "GET", "/pkg/shoal_web_bg.wasm", &br).unwrap();
        assert_eq!(packed.head.header("content-encoding"), Some("br"), "{}", packed.describe());
        assert!(packed.body.len() * 2 < plain.body.len(), "{} bytes", packed.body.len());
        let mut unpacked = Vec::new();
        brotli::BrotliDecompress(&mut &packed.body[..], &mut unpacked).expect("valid brotli");
        assert!(unpacked == plain.body, "the brotli body is the engine");
        let etag = packed.head.header("etag").expect("a validator").to_owned();
        let again = [("Accept-Encoding", "br"), ("If-None-Match", etag.as_str())];
        let cached = stream_support::request(addr, "GET", "/pkg/shoal_web_bg.wasm", &again);
        let cached = cached.unwrap();
        assert_eq!(cached.status(), 304, "{}", cached.describe());
        assert!(cached.body.is_empty());
        // The magnet names the .torrent over HTTP (`xs`), so a page need not wait for a peer
        // to learn the metadata.
        let info_hash = serving["files"][0]["info_hash"].as_str().expect("an info hash");
        let xs = format!(
            "xs={}",
            shoal_proto::percent::encode(format!("{url}torrent/0.torrent").as_bytes())
        );
        assert!(magnet.contains(&xs), "{magnet}");
        let torrent = stream_support::get(addr, "/torrent/0.torrent", None);
        assert_eq!(torrent.status(), 200, "{}", torrent.describe());
        let meta = shoal_proto::metainfo::Metainfo::from_bytes(&torrent.body).expect("a .torrent");
        assert_eq!(meta.info_hash.to_hex(), info_hash);
        assert_eq!(stream_support::get(addr, "/torrent/1.torrent", None).status(), 404);
        // Browsers signal on the app's own port; a plain GET there is told what it is.
        assert_eq!(ws, format!("{}announce", url.replacen("http://", "ws://", 1)));
        let response = stream_support::get(addr, "/announce", None);
        assert_eq!(response.status(), 426, "{}", response.describe());
        let opts = {
            let mut o = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
            o.play = true;
            o
        };
        let mut leech = shoal_web_leech(&magnet, None, &opts).expect("the page starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("the page completes");
        check_played(&done, &want);
        // The hybrid peer was found through the tracker on the app's port, not only the web seed.
        let connected =
            leech.process().events().iter().filter(|e| e["event"] == "peer_connected").count();
        assert!(connected >= 1, "the page met no peer: {done}");
        drop(leech);
        // The snippet printed for the file, pasted into a page of another site, plays through
        // Shoal; where WebRTC is off, over HTTP from the origin.
        let embed = &serving["files"][0]["embeds"][0];
        let html = embed["html"].as_str().expect("a snippet");
        let http_url = embed["http_url"].as_str().expect("the file over HTTP");
        assert!(http_url.starts_with(&format!("{url}webseed/0/")), "{embed}");
        let page = tempfile::tempdir().unwrap();
        let body = format!("<!doctype html><meta charset=utf-8><title>A blog</title>\n{html}\n");
        std::fs::write(page.path().join("index.html"), body).unwrap();
        let played = embed_page(page.path(), false);
        assert_eq!(played["via"], "shoal", "{played}");
        assert!(played["src"].as_str().is_some_and(|s| s.contains("/shoal-stream/")), "{played}");
        let played = embed_page(page.path(), true);
        assert_eq!(played["via"], "http", "{played}");
        assert_eq!(played["src"].as_str(), Some(http_url), "{played}");
        // One page load of the printed link, counted at the server (a relay in front of its app
        // port; the page's WebRTC, tracker and web seed traffic go to the server directly): the
        // page, the app and the engine, compressed; a reload only the page and empty answers.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let relay = runtime.block_on(TcpRelay::start(addr));
        let link = app_url.replacen(&url, &format!("http://{}/", relay.addr), 1);
        let (load, reload) = weigh_page(&link, &relay);
        println!("one page load: {load} bytes from the server, a reload: {reload} bytes");
        assert!((200_000..=400_000).contains(&load), "a page load took {load} bytes");
        assert!(reload <= 20_000, "a reload took {reload} bytes");
        serve.stop();
    });
}

/// The bytes the server behind `relay` sent for one load of `url` in a fresh browser (the
/// page, what it loads at start and the engine), and for a reload after it.
fn weigh_page(url: &str, relay: &TcpRelay) -> (u64, u64) {
    let web = shoal_testkit::browser::web_dir();
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&web).arg(web.join("embed_page.mjs")).args(["--url", url, "--weigh"]);
    cmd.arg("--max-seconds").arg(BROWSER_TIMEOUT.as_secs().to_string());
    if let Some(chromium) = std::env::var_os("CHROMIUM") {
        cmd.arg("--chromium").arg(chromium);
    }
    let mut page = ChildGuard::spawn("weigh-page", cmd).expect("the driver starts");
    let timeout = BROWSER_TIMEOUT + std::time::Duration::from_secs(10);
    let before = relay.served();
    page.wait_event("loaded", timeout).unwrap_or_else(|e| panic!("the page did not load: {e}"));
    let loaded = relay.served();
    let reloaded = page.wait_event("reloaded", timeout);
    reloaded.unwrap_or_else(|e| panic!("the page did not reload: {e}"));
    (loaded - before, relay.served() - loaded)
}

/// Opens `dir`'s index.html as a page of another site (tests/web/embed_page.mjs), presses play
/// on its video (or its frame's) and returns the driver's `played` event.
fn embed_page(dir: &std::path::Path, no_webrtc: bool) -> Value {
    let web = shoal_testkit::browser::web_dir();
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&web).arg(web.join("embed_page.mjs")).arg(dir);
    cmd.arg("--max-seconds").arg(BROWSER_TIMEOUT.as_secs().to_string());
    if let Some(chromium) = std::env::var_os("CHROMIUM") {
        cmd.arg("--chromium").arg(chromium);
    }
    if no_webrtc {
        cmd.arg("--no-webrtc");
    }
    let mut page = ChildGuard::spawn("embed-page", cmd).expect("the driver starts");
    let played = page.wait_event("played", BROWSER_TIMEOUT + std::time::Duration::from_secs(10));
    let played = played.unwrap_or_else(|e| panic!("the page did not play: {e}"));
    println!("played: {played}");
    played
}

/// An operator's page built from the packed npm package (`npm pack` of web/, not `shoal
/// serve`'s files) plays a magnet that a native `shoal seed` seeds, through the package's
/// `play`.
#[test]
fn a_page_built_from_the_npm_package_plays_from_shoal_seed() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("a_page_built_from_the_npm_package_plays_from_shoal_seed", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("packaged.mp4");
        make_mp4_moov_at_end(&file, 12, 600).expect("ffmpeg makes the MP4");
        let (mut seed, magnet) = native_seed(&file, ws);
        let web = shoal_testkit::browser::web_pkg().parent().expect("web/").to_owned();
        let packed = std::process::Command::new("npm")
            .current_dir(&web)
            .args(["pack", "--silent", "--pack-destination"])
            .arg(dir.path())
            .output()
            .expect("npm runs");
        assert!(packed.status.success(), "npm pack: {}", String::from_utf8_lossy(&packed.stderr));
        let tarball = dir.path().join(String::from_utf8_lossy(&packed.stdout).trim());
        let site = dir.path().join("site");
        std::fs::create_dir(&site).unwrap();
        let untar = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&site)
            .status()
            .expect("tar runs");
        assert!(untar.success());
        let package = site.join("package");
        for shipped in ["shoal.js", "shoal.d.ts", "sw.js", "pkg/shoal_web_bg.wasm", "package.json"]
        {
            assert!(package.join(shipped).is_file(), "the package lacks {shipped}");
        }
        assert!(!package.join("app.js").exists(), "the app is not part of the package");
        let options = serde_json::json!({ "source": magnet, "client": { "trackers": [ws] } });
        let page = format!(
            "<!doctype html><meta charset=utf-8><title>An operator's page</title>\n\
             <video controls playsinline></video>\n\
             <script type=module>\n\
             import {{ play }} from './shoal.js'\n\
             const played = await play(document.querySelector('video'), {options})\n\
             document.documentElement.dataset.via = played.via\n\
             </script>\n"
        );
        std::fs::write(package.join("index.html"), page).unwrap();
        let played = embed_page(&package, false);
        assert_eq!(played["via"], "shoal", "{played}");
        assert!(played["src"].as_str().is_some_and(|s| s.contains("/shoal-stream/")), "{played}");
        seed.stop();
    });
}

/// A tab whose tracker connection drops: a native peer that announces while the tab is away
/// meets it once the tab's socket is back, through the offers the tab sends when it rejoins.
/// The scheduled re-announces (the tab's and the peer's) are two minutes away, and the
/// download is bounded well below that.
#[test]
fn a_tab_back_on_its_tracker_meets_a_peer_that_announced_meanwhile() {
    let test = "a_tab_back_on_its_tracker_meets_a_peer_that_announced_meanwhile";
    in_netns_web(test, |_ws| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tracker, direct_url) = start_ws_tracker(&runtime, "127.0.0.1:0".parse().unwrap());
        let direct = tracker.ws_addr.unwrap();
        // The tab reaches the tracker through a relay that can be cut; the native peer
        // goes straight to it.
        let relay = runtime.block_on(TcpRelay::start(direct));
        let file = dir.path().join("rejoin.bin");
        write_random_file(&file, 4 << 20, 61).unwrap();
        let want = sha1_file(&file).unwrap();
        let opts = BrowserOpts::default()
            .announce(format!("ws://{}", relay.addr))
            .timeout(BROWSER_TIMEOUT);
        let mut tab = shoal_web_seed(&file, &opts).expect("the tab shares the file");
        let info_hash = tab.ready_event()["info_hash"].as_str().expect("an info hash").to_owned();
        let counter = |name: &str| tracker.stats().counters.get(name).copied().unwrap_or(0);
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !done() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: {}",
                    tracker.stats().to_json()
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };

        relay.cut();
        wait_for("the tab's socket closes", &|| counter("ws_connections_open") == 0);
        let announced = counter("ws_announces");
        let out = dir.path().join("got");
        let mut download = spawn_shoal(
            "shoal-download",
            &[
                arg("download"),
                arg(format!("magnet:?xt=urn:btih:{info_hash}")),
                arg("-o"),
                arg(&out),
                arg("--listen"),
                arg("127.0.0.1:0"),
                arg("--tracker"),
                arg(&direct_url),
            ],
        );
        wait_for("the downloader announces", &|| counter("ws_announces") > announced);
        assert_eq!(counter("ws_connections_open"), 1, "the tab is still away");
        relay.reopen();
        if let Err(e) = download.wait_success(AFTER_REJOIN_TIMEOUT) {
            panic!(
                "the peers did not meet after the tab rejoined: {e}\n--- tab ---\n{}",
                tab.process().output_tail()
            );
        }
        assert_eq!(sha1_file(&out.join("rejoin.bin")).unwrap(), want);
        drop(tab);
        runtime.block_on(tracker.shutdown()).unwrap();
    });
}

/// Bound on the download once the tab's socket is back: well below the two-minute announce
/// interval, so only the offers sent on rejoining can bring the peers together in time.
const AFTER_REJOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A TCP relay to one address that counts what the server sends back through it, and can drop
/// every connection and refuse new ones for a while (a tracker socket lost, then back).
struct TcpRelay {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Bytes the server sent to clients so far.
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TcpRelay {
    async fn start(to: std::net::SocketAddr) -> TcpRelay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = TcpRelay {
            addr,
            open: Default::default(),
            conns: Default::default(),
            served: Default::default(),
        };
        relay.open.store(true, Ordering::Relaxed);
        let (open, conns, served) = (relay.open.clone(), relay.conns.clone(), relay.served.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !open.load(Ordering::Relaxed) {
                    continue; // dropped: closed at once
                }
                let served = served.clone();
                let task = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(outbound) = tokio::net::TcpStream::connect(to).await else { return };
                    let (mut client_in, mut client_out) = inbound.into_split();
                    let (mut server_in, mut server_out) = outbound.into_split();
                    let up = tokio::io::copy(&mut client_in, &mut server_out);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = server_in.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            client_out.write_all(&buf[..n]).await?;
                            served.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    };
                    // Either side closing ends the connection, as a proxy would.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        relay
    }

    fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops every connection; new ones are closed at once until [`TcpRelay::reopen`].
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Relaxed);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
