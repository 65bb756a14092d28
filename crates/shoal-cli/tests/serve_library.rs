//! `shoal serve` as the server a person leaves running: its library of torrents (kept in
//! `--state`, across a clean stop and a `kill -9`), its JSON API, Debian's
//! `transmission-remote` driving it through Transmission RPC, and who may do so (`--auth`,
//! `Host`, `Origin`). Every torrent comes from a real libtorrent seeder on loopback.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_testkit::{
    assert_trees_equal, lt_seed, make_torrent, payload_tree, ChildGuard, Peer, PeerOpts,
    TorrentInfo, TorrentOpts,
};
use support::http::{self, get_json, post_json};
use support::{kill_9, set_mtime_ago, shoal_command, skip, START_TIMEOUT, TRANSFER_TIMEOUT};

/// A running `shoal serve` and where it answers.
struct Server {
    process: ChildGuard,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// `127.0.0.1:PORT`, as `transmission-remote` takes it.
    host: String,
    /// Its HTTP tracker's announce URL.
    tracker: String,
}

/// `shoal serve` (no files: it shares the sample video) with its library in `state` and new
/// torrents in `downloads`.
fn serve(name: &str, state: &Path, downloads: &Path, extra: &[&str]) -> Server {
    let mut cmd = shoal_command(["serve"]);
    cmd.args(["--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--no-webrtc", "--json"]);
    cmd.arg("--state").arg(state).arg("--download-dir").arg(downloads);
    cmd.arg("--resume-dir").arg(state.join("resume"));
    cmd.args(extra);
    let mut process = ChildGuard::spawn(name, cmd).unwrap_or_else(|e| panic!("{name}: {e}"));
    let serving =
        process.wait_event("serving", START_TIMEOUT).unwrap_or_else(|e| panic!("{name}: {e}"));
    let base = serving["url"].as_str().expect("a url").trim_end_matches('/').to_owned();
    let host = base.trim_start_matches("http://").to_owned();
    let tracker = serving["tracker"]["http"].as_str().expect("an HTTP tracker").to_owned();
    Server { process, base, host, tracker }
}

/// A payload of `total` bytes (a few files), its torrent announcing to `tracker`, and a
/// libtorrent seeder of it capped at `rate` bytes per second.
struct Swarm {
    dir: shoal_testkit::tempfile::TempDir,
    torrent: TorrentInfo,
    seed: Peer,
}

impl Swarm {
    fn new(total: u64, tracker: &str, rate: u64, seed_value: u64) -> Swarm {
        let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        payload_tree(&data.join("show"), total, 64 * 1024, 3, seed_value)
            .unwrap_or_else(|e| panic!("writing the payload: {e}"));
        let opts =
            TorrentOpts { piece_kib: 64, trackers: vec![tracker.to_owned()], ..Default::default() };
        let torrent = make_torrent(&data.join("show"), &dir.path().join("show.torrent"), &opts)
            .unwrap_or_else(|e| panic!("making the torrent: {e}"));
        let seed_opts = PeerOpts { upload_limit: Some(rate), ..PeerOpts::default() };
        let seed = lt_seed(&torrent.path, &data, &seed_opts)
            .unwrap_or_else(|e| panic!("libtorrent seed: {e}"));
        Swarm { dir, torrent, seed }
    }

    fn content(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("show")
    }
}

/// Runs `transmission-remote HOST ARGS...`; its standard output, after it succeeded.
fn remote(host: &str, args: &[&str]) -> String {
    let output = Command::new("transmission-remote")
        .arg(host)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running transmission-remote: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "transmission-remote {args:?}: {stdout}{stderr}");
    stdout
}

/// `transmission-remote -l`'s row of the torrent named `name`: (id, the row).
fn listed(host: &str, name: &str) -> Option<(String, String)> {
    let list = remote(host, &["-l"]);
    let row = list.lines().find(|line| line.trim_end().ends_with(name))?;
    let id = row.split_whitespace().next()?.trim_end_matches('*').to_owned();
    Some((id, row.to_owned()))
}

/// Waits until `transmission-remote -l` shows `name` with a row that `ready` accepts.
fn wait_listed(host: &str, name: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        let row = listed(host, name);
        match &row {
            Some((id, row)) if ready(row) => return id.clone(),
            _ if Instant::now() > deadline => panic!("{name} never {what}: {row:?}"),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `transmission-remote` adds a .torrent that a libtorrent seeder serves; `-l` shows it reach
/// 100%; `-S` and `-s` stop and start it; it is still there, complete, after the server
/// restarts; `-r` removes it and keeps its files.
#[test]
fn transmission_remote_adds_lists_stops_starts_and_removes() {
    if skip() {
        return;
    }
    let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
    let (state, downloads) = (dir.path().join("state"), dir.path().join("downloads"));
    let mut server = serve("serve", &state, &downloads, &[]);
    let swarm = Swarm::new(6 << 20, &server.tracker, 4 << 20, 7);
    let host = server.host.clone();

    let added = remote(&host, &["-a", &swarm.torrent.path.display().to_string()]);
    assert!(added.contains("success"), "{added}");
    let id = wait_listed(&host, "show", "reached 100%", |row| row.contains("100%"));
    assert_trees_equal(&swarm.content(), &downloads.join("show"));

    remote(&host, &["-t", &id, "-S"]);
    wait_listed(&host, "show", "stopped", |row| row.contains("Stopped"));
    remote(&host, &["-t", &id, "-s"]);
    wait_listed(&host, "show", "seeded again", |row| {
        row.contains("100%") && (row.contains("Seeding") || row.contains("Idle"))
    });
    let info = remote(&host, &["-t", &id, "-i"]);
    assert!(info.contains(&swarm.torrent.info_hash), "{info}");
    // File priorities (the torrent restarts with them, from its resume record).
    remote(&host, &["-t", &id, "-ph", "0", "-pl", "1"]);
    let files = remote(&host, &["-t", &id, "-f"]);
    let row = |index: &str| {
        files
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{index}:")))
            .unwrap_or("")
            .to_owned()
    };
    assert!(row("0").contains("High") && row("1").contains("Low"), "{files}");
    let (_, torrent) =
        get_json(&format!("{}/api/torrents/{}", server.base, swarm.torrent.info_hash));
    assert_eq!(torrent["files"][0]["priority"], "high", "{torrent}");
    assert_eq!(torrent["files"][2]["priority"], "normal", "{torrent}");
    wait_listed(&host, "show", "seeded after the change", |row| row.contains("100%"));

    // The speed limits (kB/s) and the queue, as the server's own settings show them.
    remote(&host, &["-d", "500", "-u", "300"]);
    let (_, settings) = get_json(&format!("{}/api/session", server.base));
    assert_eq!(settings["max_download_rate"], 500_000, "{settings}");
    assert_eq!(settings["max_upload_rate"], 300_000, "{settings}");
    remote(&host, &["-D", "-U"]);
    let (_, settings) = get_json(&format!("{}/api/session", server.base));
    assert_eq!(settings["max_download_rate"], Value::Null, "{settings}");
    assert_eq!(settings["max_upload_rate"], Value::Null, "{settings}");
    let session_info = remote(&host, &["-si"]);
    assert!(session_info.contains("Shoal"), "{session_info}");

    // A restart: the library brings it back, complete, without fetching it again, nor
    // hashing it: files written in the last 2 s before a resume record is saved are hashed on
    // the next start (their time cannot tell a later write apart), so they settle first.
    std::thread::sleep(Duration::from_millis(2500));
    server.process.stop().expect("serve stops");
    let mut server = serve("serve again", &state, &downloads, &[]);
    let id = wait_listed(&server.host, "show", "came back complete", |row| {
        row.contains("100%") && !row.contains("Stopped")
    });
    let (_, torrent) =
        get_json(&format!("{}/api/torrents/{}", server.base, swarm.torrent.info_hash));
    assert_eq!(torrent["resumed"], true, "no hashing after a clean restart: {torrent}");

    remote(&server.host, &["-t", &id, "-r"]);
    assert!(listed(&server.host, "show").is_none(), "{}", remote(&server.host, &["-l"]));
    assert_trees_equal(&swarm.content(), &downloads.join("show"));
    let status = server.process.stop().expect("serve exits");
    assert!(status.success(), "{status}");
    drop(swarm.seed);
}

/// Polls `GET /api/torrents/{id}` until `ready` accepts it.
fn wait_torrent(base: &str, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        let (status, torrent) = get_json(&format!("{base}/api/torrents/{id}"));
        assert_eq!(status, 200, "{torrent}");
        if ready(&torrent) {
            return torrent;
        }
        assert!(Instant::now() < deadline, "never {what}: {torrent}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `POST /api/torrents` with a magnet whose only peer is a rate-limited libtorrent seeder of
/// 200 MiB; its `stream_url` answers a Range mid-download; `kill -9` in the middle; the
/// restarted server lists it, resumes and completes, and the seeder sent at most 10 % more
/// than the payload.
/// Bad inputs get 400, 404, 409, 415 and add nothing; DELETE with `delete_data` removes the
/// files.
#[test]
fn the_api_adds_a_magnet_that_streams_and_survives_kill_9() {
    if skip() {
        return;
    }
    let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
    let (state, downloads) = (dir.path().join("state"), dir.path().join("downloads"));
    let server = serve("serve", &state, &downloads, &[]);
    // 200 MiB at 32 MiB/s: a "middle" of a few seconds to kill the server in.
    let swarm = Swarm::new(200 << 20, &server.tracker, 32 << 20, 11);
    let hash = swarm.torrent.info_hash.clone();
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=show&x.pe={}", swarm.seed.addr());
    let base = server.base.clone();

    let added = post_json(&format!("{base}/api/torrents"), &json!({ "source": magnet }));
    assert_eq!(added.status, 201, "{}", String::from_utf8_lossy(&added.body));
    assert_eq!(added.json()["id"], hash.as_str());
    assert_eq!(added.header("location"), Some(format!("/api/torrents/{hash}").as_str()));

    // Bad inputs: nothing added, nothing written.
    let duplicate = post_json(&format!("{base}/api/torrents"), &json!({ "source": magnet }));
    assert_eq!(duplicate.status, 409, "{}", String::from_utf8_lossy(&duplicate.body));
    for bad in [
        json!({ "source": "magnet:?xt=urn:btih:xyz" }),
        json!({ "source": "/etc/passwd" }),
        json!({ "nothing": 1 }),
    ] {
        let answer = post_json(&format!("{base}/api/torrents"), &bad);
        assert_eq!(answer.status, 400, "{bad}: {}", String::from_utf8_lossy(&answer.body));
        assert!(answer.json()["error"].is_string(), "{bad}");
    }
    let too_many: Vec<usize> = (0..100_001).collect();
    let other = format!("magnet:?xt=urn:btih:{}", "ab".repeat(20));
    let answer =
        post_json(&format!("{base}/api/torrents"), &json!({ "source": other, "files": too_many }));
    assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
    let not_torrent = http::request(
        "POST",
        &format!("{base}/api/torrents"),
        &[("Content-Type", "application/x-bittorrent")],
        b"d4:infoi3ee",
    );
    assert_eq!(not_torrent.status, 400);
    let form = http::request(
        "POST",
        &format!("{base}/api/torrents"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"source=x",
    );
    assert_eq!(form.status, 415);
    let (status, _) = get_json(&format!("{base}/api/torrents/{}", "1".repeat(40)));
    assert_eq!(status, 404);
    let (_, list) = get_json(&format!("{base}/api/torrents"));
    let ours: Vec<_> = list["torrents"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|t| t["shared"] == false)
        .collect();
    assert_eq!(ours.len(), 1, "{list}");

    // Its first file plays over HTTP while the rest downloads.
    let torrent = wait_torrent(&base, &hash, "got its metadata", |t| {
        t["files"].as_array().is_some_and(|f| !f.is_empty())
    });
    // The payload's exact size (the fixture rounds what it is asked for).
    let total = torrent["length"].as_u64().expect("a length");
    let first = &torrent["files"][0];
    let url = first["stream_url"].as_str().expect("a stream_url");
    let part = http::get(url, &[("Range", "bytes=100-199")]);
    assert_eq!(part.status, 206, "{url}");
    let on_disk =
        swarm.content().join(first["path"].as_str().expect("a path").trim_start_matches("show/"));
    let expected = std::fs::read(&on_disk).unwrap_or_else(|e| panic!("{}: {e}", on_disk.display()));
    assert_eq!(part.body, expected[100..200], "{url}");

    // kill -9 in the middle.
    let midway = wait_torrent(&base, &hash, "a quarter done", |t| {
        t["bytes_done"].as_u64().is_some_and(|d| d >= total / 4)
    });
    assert_ne!(midway["state"], "seeding", "done before it could be killed: {midway}");
    let files_done: u64 = midway["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["bytes_done"].as_u64())
        .sum();
    assert_eq!(files_done, midway["bytes_done"].as_u64().expect("bytes_done"), "{midway}");
    let mut process = server.process;
    kill_9(process.pid());
    process.wait_exit(Duration::from_secs(30)).expect("the killed serve exits");

    let server = serve("serve after kill -9", &state, &downloads, &[]);
    let base = server.base.clone();
    let done =
        wait_torrent(&base, &hash, "complete after the restart", |t| t["state"] == "seeding");
    assert_trees_equal(&swarm.content(), &downloads.join("show"));
    for file in done["files"].as_array().expect("files") {
        assert_eq!(file["bytes_done"], file["length"], "{file}");
    }
    assert_eq!(done["bytes_done"], total, "{done}");
    // What the seeder sent, as libtorrent counts it when it stops.
    let mut seed = swarm.seed;
    seed.process().close_stdin();
    let exit = seed.process().wait_event("exit", START_TIMEOUT).expect("the seeder's exit");
    let sent = exit["uploaded"].as_u64().expect("uploaded");
    eprintln!("the seeder sent {sent} bytes for {total}");
    assert!(sent <= total + total / 10, "fetched again what was verified: {sent} of {total}");

    // The limits, changed while it runs; a bad value changes nothing.
    let patch = |body: &Value| {
        let text = body.to_string();
        http::request(
            "PATCH",
            &format!("{base}/api/session"),
            &[("Content-Type", "application/json")],
            text.as_bytes(),
        )
    };
    let changed = patch(&json!({ "max_download_rate": 4_000_000, "max_active_downloads": 2 }));
    assert_eq!(changed.status, 200, "{}", String::from_utf8_lossy(&changed.body));
    assert_eq!(changed.json()["max_download_rate"], 4_000_000);
    assert_eq!(changed.json()["max_active_downloads"], 2);
    assert_eq!(patch(&json!({ "max_download_rate": 0 })).status, 400);
    assert_eq!(patch(&json!({ "speed": 1 })).status, 400);
    let lifted = patch(&json!({ "max_download_rate": null }));
    assert_eq!(lifted.json()["max_download_rate"], Value::Null);
    assert_eq!(lifted.json()["max_active_downloads"], 2);

    // Pause, resume, select, delete with the data.
    let paused = http::request("POST", &format!("{base}/api/torrents/{hash}/pause"), &[], b"");
    assert_eq!(paused.status, 200);
    assert_eq!(paused.json()["state"], "paused");
    let resumed = http::request("POST", &format!("{base}/api/torrents/{hash}/resume"), &[], b"");
    assert_eq!(resumed.status, 200);
    wait_torrent(&base, &hash, "seeding again", |t| t["state"] == "seeding");
    let removed =
        http::request("DELETE", &format!("{base}/api/torrents/{hash}?delete_data=true"), &[], b"");
    assert_eq!(removed.status, 204);
    assert!(!downloads.join("show").exists(), "its files are deleted");
    let (status, _) = get_json(&format!("{base}/api/torrents/{hash}"));
    assert_eq!(status, 404);
    drop(server);
}

/// A library file that does not parse stops the start with a clear error and stays as it
/// was: a damaged library is never replaced by an empty one.
#[test]
fn a_damaged_library_stops_the_start_and_is_kept() {
    let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state folder");
    let damaged = b"{\"version\":1,\"torrents\":[{\"info_hash\":";
    std::fs::write(state.join("library.json"), damaged).expect("write");
    let mut cmd = shoal_command(["serve"]);
    cmd.args(["--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--no-webrtc", "--json"]);
    cmd.arg("--state").arg(&state).arg("--resume-dir").arg(state.join("resume"));
    let ran = support::run_bounded(cmd, START_TIMEOUT);
    assert_eq!(ran.code, Some(1), "serve started with a damaged library: {}", ran.stderr);
    assert!(ran.stderr.contains("damaged"), "{}", ran.stderr);
    let kept = std::fs::read(state.join("library.json")).expect("still there");
    assert_eq!(kept, damaged, "the library file was changed");
}

/// With `--auth`, the management API and Transmission RPC want the credentials (401 without
/// or with wrong ones), a foreign `Host` or `Origin` is refused, and the app stays public.
#[test]
fn auth_host_and_origin_guard_the_management_api() {
    let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
    let (state, downloads) = (dir.path().join("state"), dir.path().join("downloads"));
    let server = serve("serve", &state, &downloads, &["--auth", "ann:secret"]);
    let base = &server.base;
    let torrents = format!("{base}/api/torrents");
    let good = ("Authorization", "Basic YW5uOnNlY3JldA==");
    assert_eq!(http::get(&torrents, &[]).status, 401);
    let wrong = http::get(&torrents, &[("Authorization", "Basic YW5uOndyb25n")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").is_some_and(|v| v.starts_with("basic")));
    assert_eq!(http::get(&torrents, &[good]).status, 200);
    let rebound = http::get(&torrents, &[good, ("Host", "evil.example")]);
    assert_eq!(rebound.status, 403);
    let foreign = http::get(&torrents, &[good, ("Origin", "http://evil.example")]);
    assert_eq!(foreign.status, 403);
    let rpc = format!("{base}/transmission/rpc");
    assert_eq!(http::request("POST", &rpc, &[], b"{}").status, 401);
    let handshake = http::request("POST", &rpc, &[good], b"{\"method\":\"session-get\"}");
    assert_eq!(handshake.status, 409, "Transmission's session id handshake");
    let session = handshake.header("x-transmission-session-id").expect("a session id").to_owned();
    let answer = http::request(
        "POST",
        &rpc,
        &[good, ("X-Transmission-Session-Id", &session)],
        b"{\"method\":\"session-get\",\"tag\":7}",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"], "success");
    assert_eq!(answer.json()["tag"], 7);
    // Progress as Server-Sent Events: the list at once.
    let (first, events) = first_event(&format!("{base}/api/events"), &[good]);
    assert!(first.starts_with("event: torrents\ndata: {\"torrents\":["), "{first}");
    // Public: the app and the API's description.
    assert_eq!(http::get(&format!("{base}/"), &[]).status, 200);
    assert_eq!(http::get(&format!("{base}/api/openapi.json"), &[]).status, 200);
    // An event stream still open (a tab left on the app) does not hold the stop.
    let mut process = server.process;
    let status = process.stop().expect("serve exits");
    assert!(status.success(), "serve was killed after its grace: {status}");
    drop(events);
}

/// `shoal serve FILE` restarted: its JSON API says the second start took the pieces from the
/// resume record (and the first hashed them), lists the file with a URL any player opens
/// with a Range, refuses an unknown id with 404, and describes itself (OpenAPI).
#[test]
fn serve_reports_its_torrents_and_their_restart_through_its_api() {
    let dir = shoal_testkit::tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("talk.bin");
    let bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 + i / 777) as u8).collect();
    std::fs::write(&file, &bytes).expect("write the file");
    set_mtime_ago(&file, 3600);
    let state = dir.path().join("state");
    for (run, resumed) in [("first", false), ("second", true)] {
        let mut cmd = support::shoal_command(["serve".as_ref(), file.as_os_str()]);
        cmd.args(["--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--no-webrtc", "--json"]);
        cmd.arg("--resume-dir").arg(&state).arg("--state").arg(state.join("library"));
        let mut serve = ChildGuard::spawn(run, cmd).unwrap_or_else(|e| panic!("{run}: {e}"));
        let serving =
            serve.wait_event("serving", START_TIMEOUT).unwrap_or_else(|e| panic!("{run}: {e}"));
        let base = serving["url"].as_str().expect("a url").trim_end_matches('/').to_owned();
        let id = serving["files"][0]["info_hash"].as_str().expect("an info hash").to_owned();
        // Seeding once the start's check is over.
        let deadline = Instant::now() + START_TIMEOUT;
        let torrent = loop {
            let (status, torrent) = get_json(&format!("{base}/api/torrents/{id}"));
            assert_eq!(status, 200, "{run}: {torrent}");
            if torrent["state"] == "seeding" {
                break torrent;
            }
            assert!(Instant::now() < deadline, "{run}: not seeding: {torrent}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(torrent["resumed"], resumed, "{run}: {torrent}");
        assert_eq!(torrent["progress"], 1.0, "{run}: {torrent}");
        assert_eq!(torrent["length"], bytes.len() as u64, "{run}: {torrent}");
        let (status, list) = get_json(&format!("{base}/api/torrents"));
        assert_eq!(status, 200);
        assert_eq!(list["torrents"][0]["id"], id.as_str(), "{list}");
        // The file plays over HTTP with a Range.
        let stream_url = torrent["files"][0]["stream_url"].as_str().expect("a stream URL");
        let part = http::get(stream_url, &[("Range", "bytes=1000-1999")]);
        assert_eq!(part.status, 206, "{stream_url}");
        assert_eq!(part.body, bytes[1000..2000], "{stream_url}");
        // Unknown id; the description.
        let (status, missing) = get_json(&format!("{base}/api/torrents/{}", "0".repeat(40)));
        assert_eq!(status, 404, "{missing}");
        assert!(missing["error"].is_string(), "{missing}");
        let (status, doc) = get_json(&format!("{base}/api/openapi.json"));
        assert_eq!(status, 200);
        assert_eq!(doc["openapi"], "3.1.0", "{doc}");
        assert_described(&doc, "Torrent", &torrent, &["files"]);
        assert_described(&doc, "File", &torrent["files"][0], &[]);
        let status = serve.stop().expect("serve exits");
        assert!(status.success(), "{run}: a stopped serve exits 0: {status}");
    }
}

/// Every field of `value` is a property of the OpenAPI schema `name`, and every property the
/// schema requires is there (`extra`: fields another part of the document describes).
fn assert_described(doc: &Value, name: &str, value: &Value, extra: &[&str]) {
    let schema = &doc["components"]["schemas"][name];
    let properties = schema["properties"].as_object().unwrap_or_else(|| panic!("{name}"));
    let fields = value.as_object().unwrap_or_else(|| panic!("not an object: {value}"));
    for field in fields.keys().filter(|f| !extra.contains(&f.as_str())) {
        assert!(properties.contains_key(field), "{name}.{field} is not described");
    }
    for required in schema["required"].as_array().expect("required") {
        let required = required.as_str().expect("a name");
        assert!(fields.contains_key(required), "{name}.{required} is missing from {value}");
    }
}

/// The first event of the Server-Sent Events stream at `url`, and the stream, still open.
fn first_event(
    url: &str,
    headers: &[(&str, &str)],
) -> (String, std::io::Lines<std::io::BufReader<std::net::TcpStream>>) {
    use std::io::{BufRead, BufReader, Write};
    let rest = url.strip_prefix("http://").expect("http");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    stream.write_all(format!("{request}\r\n").as_bytes()).expect("send");
    let mut lines = BufReader::new(stream).lines();
    let mut head = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a header line");
        if line.is_empty() {
            break;
        }
        head.push(line.to_ascii_lowercase());
    }
    assert!(head.iter().any(|h| h == "content-type: text/event-stream"), "{head:?}");
    // Chunked: size lines between the event's lines; an empty line ends the event.
    let mut event = String::new();
    for line in lines.by_ref() {
        let line = line.expect("an event line");
        if line.starts_with("event:") || line.starts_with("data:") {
            event.push_str(&line);
            event.push('\n');
        } else if line.is_empty() && !event.is_empty() {
            return (event, lines);
        }
    }
    panic!("the stream ended before an event: {event}");
}
