//! The Shoal web app (web/index.html, app.js, ui/) in headless Chromium, driven through its
//! page like a person would (`tests/web/shoal_app_ui.mjs`): sharing files from one tab to
//! others by the app's link, bad input handled with clear messages while the page keeps
//! working, and a screenshot mid-playback. Also: WebTorrent 3 in Chromium downloads from a
//! Shoal tab.
//!
//! Like the other browser tests, each runs in a private network namespace with our WebSocket
//! tracker; the app is served from 127.0.0.1 there (a secure context) with `?tracker=`.
//!
//! And the app as `shoal serve --tls-cert` serves it, over https and wss.
//!
//! `SHOAL_SCREENSHOT=docs/screenshot.png` makes the screenshot test write the committed
//! screenshot (relative to the repository); otherwise it goes to a temporary folder.

mod interop_support;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interop_support::*;
use serde_json::Value;
use shoal_testkit::*;

/// Bound on one scenario, start to end (each of its steps is bounded by the driver too).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);
const STEP_TIMEOUT_SECS: &str = "60";

fn in_netns_web(test: &str, body: impl FnOnce(&str)) {
    in_netns_unless(test, shoal_web_unavailable(), body);
}

/// Runs scenario `name` of the UI driver with `files`; returns its `step` events by name once
/// it printed `done`. Panics with the driver's output if it failed.
fn run_scenario(name: &str, files: &[&Path], ws: &str) -> HashMap<String, Value> {
    let mut args: Vec<OsString> = files.iter().map(|f| f.as_os_str().to_owned()).collect();
    args.extend(["--tracker".into(), ws.into()]);
    run_scenario_args(name, &args)
}

/// [`run_scenario`] with the driver's arguments as given.
fn run_scenario_args(name: &str, args: &[OsString]) -> HashMap<String, Value> {
    let web = shoal_testkit::browser::web_dir();
    let mut cmd = Command::new("node");
    cmd.current_dir(&web).arg(web.join("shoal_app_ui.mjs")).arg(name);
    cmd.args(args).args(["--step-timeout", STEP_TIMEOUT_SECS]);
    cmd.arg("--max-seconds").arg(SCENARIO_TIMEOUT.as_secs().to_string());
    if let Some(chromium) = std::env::var_os("CHROMIUM") {
        cmd.arg("--chromium").arg(chromium);
    }
    let mut driver = ChildGuard::spawn(format!("app-ui-{name}"), cmd).expect("the driver starts");
    let end = driver.wait_for("done or error", SCENARIO_TIMEOUT + Duration::from_secs(10), |v| {
        matches!(event_name(v), Some("done" | "error"))
    });
    let steps: HashMap<String, Value> = driver
        .events()
        .iter()
        .filter(|v| event_name(v) == Some("step"))
        .map(|v| (v["step"].as_str().unwrap_or_default().to_owned(), v.clone()))
        .collect();
    for (step, v) in &steps {
        println!("{step}: {v}");
    }
    match end {
        Ok(v) if event_name(&v) == Some("done") => steps,
        Ok(v) => panic!("scenario {name} failed: {v}\n{}", driver.output_tail()),
        Err(e) => panic!("scenario {name}: {e}\n{}", driver.output_tail()),
    }
}

#[track_caller]
fn step<'a>(steps: &'a HashMap<String, Value>, name: &str) -> &'a Value {
    steps.get(name).unwrap_or_else(|| panic!("no {name:?} step among {:?}", steps.keys()))
}

#[track_caller]
fn assert_mentions(v: &Value, field: &str, words: &[&str]) {
    let text = v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}")).to_lowercase();
    for word in words {
        assert!(text.contains(&word.to_lowercase()), "{field} {text:?} should mention {word:?}");
    }
}

#[test]
fn app_shares_a_file_by_link_and_the_swarm_outlives_the_sharer() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("app_shares_a_file_by_link_and_the_swarm_outlives_the_sharer", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holiday clip.mp4");
        make_mp4_moov_at_end(&file, 10, 600).expect("ffmpeg makes the MP4");
        let want = sha1_file(&file).unwrap();
        let steps = run_scenario("share", &[&file], ws);

        let shared = step(&steps, "shared");
        let magnet = shared["magnet"].as_str().expect("tab A shows a magnet");
        let info_hash = shared["infoHash"].as_str().expect("an info hash");
        assert!(magnet.starts_with(&format!("magnet:?xt=urn:btih:{info_hash}")), "{magnet}");
        let link = shared["link"].as_str().expect("tab A shows a link");
        let fragment = link.split_once("#magnet=").map(|(_, m)| m).expect("the link is #magnet=");
        assert!(!fragment.contains(['&', '?', ':']), "the magnet is URL-encoded: {link}");

        let played = step(&steps, "b_played");
        assert!(played["currentTime"].as_f64().is_some_and(|t| t > 0.5), "B plays: {played}");
        let target = played["seekTarget"].as_f64().expect("B seeked");
        assert!(played["afterSeek"].as_f64().is_some_and(|t| t > target), "after seek: {played}");

        let b = step(&steps, "b_saved");
        assert_eq!(b["sha1"].as_str(), Some(want.as_str()), "what tab B saved");
        assert_eq!(b["name"].as_str(), Some("holiday clip.mp4"), "the saved file's name");
        assert!(step(&steps, "a_closed").is_object());
        let c = step(&steps, "c_saved");
        assert_eq!(c["sha1"].as_str(), Some(want.as_str()), "what tab C saved, with A gone");
        assert!(c["b"]["uploaded"].as_u64().is_some_and(|n| n > 0), "B uploaded to C: {c}");
    });
}

#[test]
fn app_explains_bad_input_and_keeps_working() {
    in_netns_web("app_explains_bad_input_and_keeps_working", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("firmware.bin");
        write_random_file(&bin, 300_000, 6).unwrap();
        let fake = dir.path().join("not really.mp4");
        write_random_file(&fake, 200_000, 7).unwrap();
        let not_torrent = dir.path().join("notes.torrent");
        std::fs::write(&not_torrent, "these are my notes, not a torrent\n").unwrap();
        let steps = run_scenario("bad-input", &[&bin, &fake, &not_torrent], ws);

        assert_mentions(step(&steps, "invalid_magnet"), "message", &["not a valid magnet link"]);
        assert_mentions(step(&steps, "not_a_link"), "message", &["not a valid magnet link"]);
        for name in ["picked_not_torrent", "dropped_not_torrent"] {
            assert_mentions(
                step(&steps, name),
                "message",
                &["notes.torrent", "not a valid .torrent"],
            );
        }
        assert_mentions(step(&steps, "nobody_has_it"), "notice", &["no peers yet"]);
        let unplayable = step(&steps, "unplayable");
        assert_mentions(unplayable, "notice", &["cannot play", "firmware.bin", "download"]);
        assert_eq!(unplayable["sha1"].as_str(), Some(sha1_file(&bin).unwrap().as_str()));
        let broken = step(&steps, "broken_media");
        assert_mentions(broken, "notice", &["cannot play", "not really.mp4"]);
    });
}

/// The repository-relative path `SHOAL_SCREENSHOT` names, or a file in `dir`.
fn screenshot_path(dir: &Path) -> PathBuf {
    match std::env::var_os("SHOAL_SCREENSHOT") {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => repo_root().join(p),
        None => dir.join("screenshot.png"),
    }
}

#[test]
fn app_screenshot_mid_playback() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("app_screenshot_mid_playback", |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test pattern.mp4");
        make_mp4_moov_at_end(&file, 20, 800).expect("ffmpeg makes the MP4");
        let png = screenshot_path(dir.path());
        let steps = run_scenario("screenshot", &[&file, &png], ws);
        let shot = step(&steps, "screenshot");
        assert!(shot["currentTime"].as_f64().is_some_and(|t| t > 2.0), "mid-playback: {shot}");
        let bytes = std::fs::read(&png).expect("the screenshot is written");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        assert!(bytes.len() > 20_000, "a real picture: {} bytes", bytes.len());
        println!("screenshot: {}", png.display());
    });
}

#[test]
fn webtorrent_in_chromium_downloads_from_a_shoal_tab() {
    let missing = shoal_web_unavailable().or_else(browser_unavailable);
    in_netns_unless("webtorrent_in_chromium_downloads_from_a_shoal_tab", missing, |ws| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("payload.bin");
        write_random_file(&file, 3 << 20, 11).unwrap();
        let opts = BrowserOpts::default().announce(ws).timeout(BROWSER_TIMEOUT);
        let tab = shoal_web_seed(&file, &opts).expect("the Shoal tab shares the file");
        let magnet = tab.magnet().expect("the tab's magnet").to_owned();
        let out = dir.path().join("webtorrent");
        let mut leech = browser_leech(&magnet, &out, &opts).expect("WebTorrent starts");
        let done = leech.wait_done(BROWSER_TIMEOUT).expect("WebTorrent completes");
        println!("webtorrent done: {done}");
        assert_eq!(done["sha1"].as_str(), Some(sha1_file(&file).unwrap().as_str()));
        assert_eq!(sha1_file(&out.join("payload.bin")).unwrap(), sha1_file(&file).unwrap());
        drop(leech);
        drop(tab);
    });
}

/// `shoal serve --tls-cert --tls-key`: the app, its engine, the web seed and the trackers over
/// https and wss (a test CA's certificate: Chromium ignores the error, the hybrid peer trusts
/// the CA); a tab opening the printed link is a secure context, plays, seeks and completes
/// with the right bytes.
#[test]
fn app_plays_from_shoal_serve_over_https() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("app_plays_from_shoal_serve_over_https", |_ws| {
        let dir = tempfile::tempdir().unwrap();
        let tls = test_certificate(dir.path()).expect("a test certificate");
        let file = dir.path().join("served over tls.mp4");
        make_mp4_moov_at_end(&file, 12, 600).expect("ffmpeg makes the MP4");
        let want = sha1_file(&file).unwrap();
        // The hybrid peer announces to its own wss:// tracker: it trusts the test CA.
        let tls_args = [arg("--tls-cert"), arg(&tls.cert), arg("--tls-key"), arg(&tls.key)];
        let (mut serve, serving) =
            spawn_shoal_serve("shoal-serve-tls", &file, &tls_args, &[("SSL_CERT_FILE", &tls.ca)]);
        let url = serving["url"].as_str().unwrap_or_default();
        assert!(url.starts_with("https://"), "{serving}");
        assert!(serving["tracker"]["ws"].as_str().is_some_and(|u| u.starts_with("wss://")));
        assert!(serving["tracker"]["http"].as_str().is_some_and(|u| u.starts_with("https://")));
        let link = serving["files"][0]["app_url"].as_str().expect("an app link").to_owned();
        let steps = run_scenario_args("open-link", &[link.into(), "--ignore-https-errors".into()]);
        let opened = step(&steps, "opened");
        assert_eq!(opened["secureContext"], Value::Bool(true), "{opened}");
        assert!(opened["origin"].as_str().is_some_and(|o| o.starts_with("https://")));
        let played = step(&steps, "played");
        assert!(played["afterSeek"].as_f64() > played["seekTarget"].as_f64(), "{played}");
        let saved = step(&steps, "saved");
        assert_eq!(saved["sha1"].as_str(), Some(want.as_str()), "{saved}");
        serve.stop();
    });
}

/// The app on `shoal serve`'s page uses the server's library: a magnet whose only peer is a
/// libtorrent TCP seeder (no WebRTC anywhere) is added on the server through the Open form,
/// plays in the tab from the server while it downloads, and seeks; the server's list has it
/// after a reload of the page and after a restart of the server.
#[test]
fn app_adds_a_magnet_on_the_server_that_plays_and_stays_listed() {
    if let Err(e) = require_media_tools() {
        return println!("SKIP: {e}");
    }
    in_netns_web("app_adds_a_magnet_on_the_server_that_plays_and_stays_listed", |_ws| {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir_all(&content).unwrap();
        let video = content.join("from the classic swarm.mp4");
        make_mp4_moov_at_end(&video, 12, 600).expect("ffmpeg makes the MP4");
        let torrent =
            make_torrent(&video, &dir.path().join("video.torrent"), &TorrentOpts::default())
                .expect("a torrent of the video");
        let seed =
            lt_seed(&torrent.path, &content, &PeerOpts::default()).expect("libtorrent seeds");
        let magnet =
            format!("magnet:?xt=urn:btih:{}&dn=video&x.pe={}", torrent.info_hash, seed.addr());
        // The server shares something else; the video reaches it from the seeder only.
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, b"what the server shares itself").unwrap();
        let extra = [
            arg("--state"),
            arg(dir.path().join("state")),
            arg("--download-dir"),
            arg(dir.path().join("downloads")),
            arg("--no-webrtc"),
        ];
        let (mut serve, serving) = spawn_shoal_serve("shoal-serve-library", &notes, &extra, &[]);
        let url = serving["url"].as_str().expect("a url").to_owned();
        let steps = run_scenario_args("server-library", &[url.into(), magnet.into()]);
        assert_eq!(step(&steps, "added")["tabTorrents"], 0, "the tab downloads nothing itself");
        let played = step(&steps, "played");
        assert!(played["afterSeek"].as_f64() > played["seekTarget"].as_f64(), "{played}");
        assert!(step(&steps, "listed-after-reload")["name"].is_string());
        serve.stop();

        let (mut serve, serving) = spawn_shoal_serve("shoal-serve-library-2", &notes, &extra, &[]);
        let url = serving["url"].as_str().expect("a url").to_owned();
        let steps =
            run_scenario_args("server-list", &[url.into(), torrent.info_hash.clone().into()]);
        assert!(step(&steps, "played")["currentTime"].as_f64() > Some(0.0));
        serve.stop();
        drop(seed);
    });
}
