//! `shoal create` and `shoal info`, run as the built binary.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().expect("run shoal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "shoal failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A folder with a nested subfolder, a zero-length file and a hidden file.
fn make_folder(root: &Path) {
    fs::create_dir_all(root.join("nested/deeper")).unwrap();
    fs::write(root.join("b.txt"), "b".repeat(20_000)).unwrap();
    fs::write(root.join("a.txt"), "hello\n").unwrap();
    fs::write(root.join("empty"), "").unwrap();
    fs::write(root.join(".hidden"), "h").unwrap();
    let bin: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(root.join("nested/deeper/c.bin"), bin).unwrap();
    fs::write(root.join("nested/d.txt"), "d").unwrap();
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn create_then_info_describes_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("album");
    make_folder(&content);
    let torrent = dir.path().join("album.torrent");
    let created = json(&shoal(&[
        "create",
        path_str(&content),
        "-o",
        path_str(&torrent),
        "--tracker",
        "http://t1.example/announce",
        "--tracker",
        "udp://t2.example:6969",
        "--web-seed",
        "http://seed.example/",
        "--piece-size",
        "16KiB",
        "--comment",
        "made in a test",
        "--json",
    ]));
    assert_eq!(created["name"], "album");
    let hash = created["info_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 40);
    assert!(created["magnet"].as_str().unwrap().contains(&hash));

    let info = json(&shoal(&["info", path_str(&torrent), "--json"]));
    assert_eq!(info["info_hash"], hash.as_str());
    assert_eq!(info["piece_length"], 16384);
    assert_eq!(info["total_length"], 20_000 + 6 + 1 + 70_000 + 1);
    let paths: Vec<&str> =
        info["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        vec![
            "album/.hidden",
            "album/a.txt",
            "album/b.txt",
            "album/empty",
            "album/nested/d.txt",
            "album/nested/deeper/c.bin"
        ]
    );
    assert_eq!(
        info["trackers"],
        serde_json::json!([["http://t1.example/announce"], ["udp://t2.example:6969"]])
    );
    assert_eq!(info["web_seeds"], serde_json::json!(["http://seed.example/"]));
    assert_eq!(info["comment"], "made in a test");
    assert_eq!(info["private"], false);

    // Human output carries the same facts.
    let text = shoal(&["info", path_str(&torrent)]);
    assert!(text.status.success());
    let text = stdout(&text);
    assert!(text.contains(&hash) && text.contains("album/nested/deeper/c.bin"), "{text}");
    assert!(text.contains("tracker tier 2:") && text.contains("magnet:?xt=urn:btih:"), "{text}");

    // The same folder gives the same info hash again (sorted walk, no clock in the info dict).
    let again = dir.path().join("again.torrent");
    let second = json(&shoal(&[
        "create",
        path_str(&content),
        "-o",
        path_str(&again),
        "--piece-size",
        "16384",
        "--json",
    ]));
    assert_eq!(second["info_hash"], hash.as_str());
}

#[test]
fn single_file_private_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("movie.bin");
    fs::write(&file, vec![9u8; 100_000]).unwrap();
    let torrent = dir.path().join("m.torrent");
    let out = shoal(&[
        "create",
        path_str(&file),
        "-o",
        path_str(&torrent),
        "--private",
        "--name",
        "film.bin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("name:") && text.contains("film.bin") && text.contains("magnet:"),
        "{text}"
    );
    let info = json(&shoal(&["info", path_str(&torrent), "--json"]));
    assert_eq!(info["multi_file"], false);
    assert_eq!(info["private"], true);
    assert_eq!(info["files"][0]["path"], "film.bin");
    assert_eq!(info["piece_length"], 16384); // auto: 100 kB is small
}

#[test]
fn info_reads_magnet_links() {
    let magnet = "magnet:?xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056&dn=Sintel&tr=udp%3A%2F%2Ft%3A1";
    let info = json(&shoal(&["info", magnet, "--json"]));
    assert_eq!(info["kind"], "magnet");
    assert_eq!(info["name"], "Sintel");
    assert_eq!(info["trackers"], serde_json::json!(["udp://t:1"]));
    let bad = shoal(&["info", "magnet:?dn=nohash"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).starts_with("shoal: invalid magnet link: "), "{}", stderr(&bad));
}

#[test]
fn bad_torrents_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.torrent");
    fs::write(&garbage, b"d4:infod4:name").unwrap();
    let out = shoal(&["info", path_str(&garbage)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("shoal: ") && err.contains("is not a valid torrent: not valid bencode: "),
        "{err}"
    );

    let evil = dir.path().join("evil.torrent");
    let mut bytes = b"d4:infod5:filesld6:lengthi1e4:pathl2:..6:passwdeee".to_vec();
    bytes.extend_from_slice(b"4:name3:dir12:piece lengthi16384e6:pieces20:");
    bytes.extend_from_slice(&[0; 20]);
    bytes.extend_from_slice(b"ee");
    fs::write(&evil, bytes).unwrap();
    let out = shoal(&["info", path_str(&evil)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unsafe path component \"..\" in `info.files[0].path`"),
        "{}",
        stderr(&out)
    );

    let out = shoal(&["info", path_str(&dir.path().join("missing.torrent"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open"), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(shoal(&["create"]).status.code(), Some(2));
    assert_eq!(shoal(&["create", ".", "--piece-size", "1000"]).status.code(), Some(2));
    assert_eq!(shoal(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(shoal(&["download", "x", "--listen", "not-an-address"]).status.code(), Some(2));
}

/// `--piece-size` shapes a torrent `seed` makes for a PATH; a .torrent already has its
/// pieces, so asking for a size there is a usage error, before anything starts.
#[test]
fn seed_piece_size_applies_to_a_path_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.bin");
    fs::write(&file, vec![3u8; 50_000]).unwrap();
    let torrent = dir.path().join("clip.torrent");
    let out = shoal(&["create", path_str(&file), "-o", path_str(&torrent)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out =
        shoal(&["seed", path_str(&torrent), "-o", path_str(dir.path()), "--piece-size", "64KiB"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--piece-size applies to sharing a PATH"), "{}", stderr(&out));
    assert_eq!(shoal(&["seed", path_str(&file), "--piece-size", "3KiB"]).status.code(), Some(2));
}

#[test]
fn create_refuses_what_it_cannot_share() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = shoal(&["create", path_str(&empty), "-o", path_str(&dir.path().join("e.torrent"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("total size is 0 bytes"), "{}", stderr(&out));

    #[cfg(unix)]
    {
        let content = dir.path().join("content");
        fs::create_dir(&content).unwrap();
        fs::write(content.join("f"), "x").unwrap();
        fs::write(dir.path().join("secret"), "s").unwrap();
        // A link inside the folder is followed...
        std::os::unix::fs::symlink(content.join("f"), content.join("inside")).unwrap();
        let ok = json(&shoal(&[
            "create",
            path_str(&content),
            "-o",
            path_str(&dir.path().join("ok.torrent")),
            "--json",
        ]));
        assert_eq!(ok["files"], 2);
        // ...one leaving it is refused.
        std::os::unix::fs::symlink(dir.path().join("secret"), content.join("outside")).unwrap();
        let out =
            shoal(&["create", path_str(&content), "-o", path_str(&dir.path().join("c.torrent"))]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("points outside"), "{}", stderr(&out));
    }
}

/// libtorrent, reading the torrent we made, must compute the same info hash and layout.
#[test]
fn libtorrent_agrees_with_our_torrent() {
    const SCRIPT: &str = "import sys, libtorrent as lt\n\
        ti = lt.torrent_info(sys.argv[1])\n\
        fs = ti.files()\n\
        print(ti.info_hashes().v1)\n\
        print(ti.num_pieces(), ti.piece_length(), ti.total_size())\n\
        for i in range(fs.num_files()): print(fs.file_path(i).replace('\\\\', '/'), fs.file_size(i))\n";
    let probe = Command::new("/usr/bin/python3").args(["-c", "import libtorrent"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("NOTICE: skipping libtorrent_agrees_with_our_torrent: libtorrent is not importable by /usr/bin/python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("folder");
    make_folder(&content);
    let torrent = dir.path().join("ours.torrent");
    let created = json(&shoal(&["create", path_str(&content), "-o", path_str(&torrent), "--json"]));
    let out =
        Command::new("/usr/bin/python3").args(["-c", SCRIPT, path_str(&torrent)]).output().unwrap();
    assert!(out.status.success(), "libtorrent: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), created["info_hash"].as_str());
    let geometry = format!(
        "{} {} {}",
        created["piece_count"], created["piece_length"], created["total_length"]
    );
    assert_eq!(lines.next(), Some(geometry.as_str()));
    let files: Vec<&str> = lines.collect();
    assert_eq!(
        files,
        vec![
            "folder/.hidden 1",
            "folder/a.txt 6",
            "folder/b.txt 20000",
            "folder/empty 0",
            "folder/nested/d.txt 1",
            "folder/nested/deeper/c.bin 70000"
        ]
    );
}
