//! Bad .torrent files and magnet links given to `shoal info` and `shoal download`: each must
//! fail with exit code 1 (2 for a wrong command line), say on stderr what is wrong, and create
//! nothing, neither in the output folder nor anywhere else.
//!
//! The torrents are written by hand with a bencode writer that writes whatever it is told to,
//! so every case is exactly one defect away from a valid torrent.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use shoal_testkit::loopback_ip;
use support::bencode::{multi_file_info, single_file_info, torrent, Ben};
use support::{run_bounded, shoal_command, snapshot, Ran};

/// A command given a bad input has no reason to take long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One defective input, and what stderr must mention about it.
struct Case {
    label: &'static str,
    /// A file name in the sandbox, or a magnet link.
    source: String,
    /// Fragments stderr must contain (for both `info` and `download`).
    expect: Vec<String>,
}

fn case(label: &'static str, source: impl Into<String>, expect: &[&str]) -> Case {
    Case { label, source: source.into(), expect: expect.iter().map(|s| s.to_string()).collect() }
}

/// Writes a hand-made torrent into the sandbox and returns its case.
fn torrent_case(sandbox: &Path, label: &'static str, bytes: Vec<u8>, expect: &[&str]) -> Case {
    let name = format!("{}.torrent", label.replace(' ', "-"));
    fs::write(sandbox.join(&name), bytes).expect("writing a test torrent");
    case(label, name, expect)
}

fn one_mib_file(name: &str) -> Ben {
    single_file_info(name, 1 << 20, 16384)
}

fn bad_torrents(sandbox: &Path) -> Vec<Case> {
    let escaped = sandbox.join("escaped.txt");
    let escaped = escaped.to_str().expect("UTF-8 temp path");
    let valid = torrent(multi_file_info(
        "album",
        &[(&["a.bin"], 100_000), (&["sub", "b.bin"], 50_000)],
        16384,
    ));
    let mut dotdot_utf8 = one_mib_file("fine");
    dotdot_utf8.set("name.utf-8", Ben::str(".."));
    let mut count_mismatch = one_mib_file("short");
    count_mismatch.set("pieces", support::bencode::fake_pieces(63));
    let mut ragged_pieces = one_mib_file("ragged");
    ragged_pieces.set("pieces", Ben::Bytes(vec![1; 64 * 20 + 7]));
    let mut no_pieces = one_mib_file("nopieces");
    no_pieces.set("pieces", Ben::Bytes(Vec::new()));

    vec![
        torrent_case(
            sandbox,
            "truncated",
            valid[..valid.len() * 6 / 10].to_vec(),
            &["not valid bencode", "end of input"],
        ),
        torrent_case(
            sandbox,
            "dotdot in a path",
            torrent(multi_file_info("album", &[(&["..", "..", "escaped.txt"], 10)], 16384)),
            &["unsafe path component", "\"..\""],
        ),
        torrent_case(
            sandbox,
            "dotdot as the name",
            torrent(single_file_info("..", 10, 16384)),
            &["unsafe path component", "\"..\""],
        ),
        torrent_case(
            sandbox,
            "dotdot as the utf-8 name",
            torrent(dotdot_utf8),
            &["unsafe path component", "\"..\""],
        ),
        torrent_case(
            sandbox,
            "absolute name",
            torrent(single_file_info(escaped, 10, 16384)),
            &["unsafe path component", "path separator"],
        ),
        torrent_case(
            sandbox,
            "absolute path",
            torrent(multi_file_info("album", &[(&[escaped], 10)], 16384)),
            &["unsafe path component", "path separator"],
        ),
        torrent_case(
            sandbox,
            "backslashes",
            torrent(multi_file_info("album", &[(&["..\\..\\escaped.txt"], 10)], 16384)),
            &["unsafe path component", "path separator"],
        ),
        torrent_case(
            sandbox,
            "drive letter",
            torrent(multi_file_info("album", &[(&["C:escaped.txt"], 10)], 16384)),
            &["unsafe path component", "drive letter"],
        ),
        torrent_case(
            sandbox,
            "empty component",
            torrent(multi_file_info("album", &[(&["", "escaped.txt"], 10)], 16384)),
            &["unsafe path component", "empty"],
        ),
        torrent_case(
            sandbox,
            "two files one path",
            torrent(multi_file_info("album", &[(&["a"], 10), (&["a"], 20)], 16384)),
            &["share the path"],
        ),
        torrent_case(
            sandbox,
            "a file where a folder goes",
            torrent(multi_file_info("album", &[(&["a"], 10), (&["a", "b"], 20)], 16384)),
            &["share the path"],
        ),
        torrent_case(
            sandbox,
            "zero piece length",
            torrent(single_file_info("zero", 10, 0)),
            &["piece length", "outside"],
        ),
        torrent_case(
            sandbox,
            "negative piece length",
            torrent(single_file_info("neg", 10, -16384)),
            &["piece length", "outside"],
        ),
        torrent_case(
            sandbox,
            "absurd piece length",
            torrent(single_file_info("huge", 10, 1 << 40)),
            &["piece length", "outside"],
        ),
        torrent_case(
            sandbox,
            "piece count mismatch",
            torrent(count_mismatch),
            &["holds 63 hashes", "need 64"],
        ),
        torrent_case(sandbox, "ragged pieces", torrent(ragged_pieces), &["pieces"]),
        torrent_case(sandbox, "no pieces", torrent(no_pieces), &["pieces"]),
        torrent_case(
            sandbox,
            "negative length",
            torrent(single_file_info("neg", -1, 16384)),
            &["length"],
        ),
        torrent_case(
            sandbox,
            "exabyte length",
            torrent(single_file_info("big", 1 << 60, 256 << 20)),
            &["length"],
        ),
        torrent_case(
            sandbox,
            "no info",
            Ben::dict(&[("announce", Ben::str("x"))]).encode(),
            &["info"],
        ),
        torrent_case(sandbox, "a list", b"li1ei2ee".to_vec(), &["not a dictionary"]),
        torrent_case(
            sandbox,
            "trailing bytes",
            [valid.clone(), b"junk".to_vec()].concat(),
            &["trailing"],
        ),
        torrent_case(sandbox, "empty file", Vec::new(), &["not valid bencode"]),
        torrent_case(
            sandbox,
            "text",
            b"hello, I am not a torrent\n".to_vec(),
            &["not valid bencode"],
        ),
        torrent_case(
            sandbox,
            "png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec(),
            &["not valid bencode"],
        ),
        torrent_case(
            sandbox,
            "deep nesting",
            [vec![b'l'; 100_000], vec![b'e'; 100_000]].concat(),
            &["deeper than"],
        ),
    ]
}

fn bad_magnets() -> Vec<Case> {
    let hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    vec![
        case("no info hash", "magnet:?dn=only-a-name", &["invalid magnet", "xt=urn:btih:"]),
        case("short hash", "magnet:?xt=urn:btih:c12fe1c0", &["invalid magnet", "bad info hash"]),
        case(
            "non-hex hash",
            "magnet:?xt=urn:btih:zz2fe1c06bba254a9dc9f519b335aa7c1367a88a",
            &["invalid magnet", "bad info hash"],
        ),
        case(
            "bad escape",
            format!("magnet:?xt=urn:btih:{hash}&dn=%zz"),
            &["invalid magnet", "percent-encoding"],
        ),
        case(
            "bad peer",
            format!("magnet:?xt=urn:btih:{hash}&x.pe=nowhere"),
            &["invalid magnet", "x.pe"],
        ),
        case(
            "two hashes",
            format!("magnet:?xt=urn:btih:{hash}&xt=urn:btih:{}", "ab".repeat(20)),
            &["invalid magnet", "two different info hashes"],
        ),
        case(
            "too long",
            format!("magnet:?xt=urn:btih:{hash}&dn={}", "a".repeat(70_000)),
            &["invalid magnet", "limit"],
        ),
    ]
}

/// Runs `shoal ARGS` in `sandbox` (its working folder, so relative sources resolve there).
fn shoal_in(sandbox: &Path, args: &[&str]) -> Ran {
    let mut cmd = shoal_command(args);
    cmd.current_dir(sandbox).env_remove("RUST_LOG");
    run_bounded(cmd, COMMAND_TIMEOUT)
}

/// Checks one run; returns what is wrong with it, if anything.
fn check_failure(what: &str, ran: &Ran, code: i32, expect: &[String]) -> Option<String> {
    let mut problems = Vec::new();
    if ran.code != Some(code) {
        problems.push(format!("exit code {:?}, expected {code}", ran.code));
    }
    let stderr = ran.stderr.trim();
    if code == 1 && !stderr.starts_with("shoal: ") {
        problems.push("stderr does not start with `shoal: `".to_owned());
    }
    for fragment in expect {
        if !stderr.contains(fragment.as_str()) {
            problems.push(format!("stderr does not mention {fragment:?}"));
        }
    }
    if !ran.stdout.trim().is_empty() {
        problems.push("something was printed on stdout".to_owned());
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{what}: {}\n    stdout: {}\n    stderr: {}",
            problems.join("; "),
            ran.stdout.trim(),
            stderr
        ))
    }
}

/// `info` (text and JSON) and `download` on every case; the download's output folder must
/// not appear, and nothing else in the sandbox may change.
fn refuse_all(sandbox: &Path, cases: &[Case]) {
    let before = snapshot(sandbox);
    let out = sandbox.join("out");
    let out_arg = out.to_str().expect("UTF-8 temp path");
    let listen = format!("{}:0", loopback_ip());
    let mut failures = Vec::new();
    for c in cases {
        let source = c.source.as_str();
        let runs = [
            ("info", shoal_in(sandbox, &["info", source])),
            ("info --json", shoal_in(sandbox, &["info", source, "--json"])),
            (
                "download",
                shoal_in(
                    sandbox,
                    &["download", source, "-o", out_arg, "--listen", &listen, "--json"],
                ),
            ),
        ];
        for (command, ran) in &runs {
            failures.extend(check_failure(&format!("{} / {command}", c.label), ran, 1, &c.expect));
        }
        if out.exists() {
            failures.push(format!("{}: download created {}", c.label, out.display()));
            let _ = fs::remove_dir_all(&out);
        }
        let after = snapshot(sandbox);
        if after != before {
            failures.push(format!("{}: the sandbox changed: {before:?} -> {after:?}", c.label));
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

fn sandbox() -> shoal_testkit::tempfile::TempDir {
    shoal_testkit::tempfile::Builder::new()
        .prefix("shoal-bad-torrents-")
        .tempdir()
        .expect("creating a temporary folder")
}

#[test]
fn bad_torrents_are_refused_without_creating_anything() {
    let dir = sandbox();
    let cases = bad_torrents(dir.path());
    refuse_all(dir.path(), &cases);
}

#[test]
fn bad_magnets_are_refused_without_creating_anything() {
    let dir = sandbox();
    refuse_all(dir.path(), &bad_magnets());
}

#[test]
fn unreadable_sources_are_refused_without_creating_anything() {
    let dir = sandbox();
    fs::create_dir(dir.path().join("a-folder.torrent")).expect("folder");
    // 1 GiB of nothing (sparse): larger than any torrent, and not to be read whole.
    let huge = fs::File::create(dir.path().join("huge.torrent")).expect("huge file");
    huge.set_len(1 << 30).expect("sizing the huge file");
    drop(huge);
    let cases = vec![
        case("missing file", "no-such.torrent", &["no-such.torrent", "No such file"]),
        case("a folder", "a-folder.torrent", &["a-folder.torrent"]),
        case("a 1 GiB file", "huge.torrent", &["huge.torrent", "bytes"]),
    ];
    refuse_all(dir.path(), &cases);
}

#[test]
fn usage_errors_exit_2_without_creating_anything() {
    let dir = sandbox();
    let sandbox = dir.path();
    fs::write(sandbox.join("good.torrent"), torrent(single_file_info("good.bin", 100, 16384)))
        .expect("writing a torrent");
    let before = snapshot(sandbox);
    let out = sandbox.join("out");
    let out_arg = out.to_str().expect("UTF-8 temp path");
    let cases: Vec<(&str, Vec<&str>, Vec<String>)> = vec![
        ("download without a source", vec!["download"], vec!["Usage".into()]),
        ("info without a source", vec!["info"], vec!["Usage".into()]),
        ("unknown command", vec!["frobnicate"], vec!["frobnicate".into()]),
        (
            "--only beyond the file count",
            vec!["download", "good.torrent", "-o", out_arg, "--only", "5"],
            vec!["--only 5".into(), "1 files".into()],
        ),
        (
            "--listen that is no address",
            vec!["download", "good.torrent", "-o", out_arg, "--listen", "over-there"],
            vec!["--listen".into()],
        ),
        (
            "unknown flag",
            vec!["download", "good.torrent", "-o", out_arg, "--turbo"],
            vec!["--turbo".into()],
        ),
    ];
    let mut failures = Vec::new();
    for (label, args, expect) in &cases {
        let ran = shoal_in(sandbox, args);
        failures.extend(check_failure(label, &ran, 2, expect));
        if out.exists() {
            failures.push(format!("{label}: created {}", out.display()));
            let _ = fs::remove_dir_all(&out);
        }
    }
    let after = snapshot(sandbox);
    assert_eq!(after, before, "the sandbox changed");
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
