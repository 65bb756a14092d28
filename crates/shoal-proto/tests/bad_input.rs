//! Hostile and broken torrents: each must fail with the error that names the problem, and
//! none may panic.

use std::fs;
use std::path::Path;

use shoal_proto::bencode::{BencodeError, Encoder};
use shoal_proto::metainfo::{Metainfo, MetainfoError, MAX_FILES, MAX_PIECES};

fn fixture(name: &str) -> Vec<u8> {
    fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// A torrent whose info dictionary has the given `(key, encoded value)` entries (sorted by
/// the caller).
fn torrent(info: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.begin_dict().key(b"info").begin_dict();
    for (key, value) in info {
        enc.key(key.as_bytes()).raw(value);
    }
    enc.end().end();
    enc.finish()
}

fn int(i: i64) -> Vec<u8> {
    format!("i{i}e").into_bytes()
}

fn bytes(b: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.bytes(b);
    enc.finish()
}

fn pieces(n: usize) -> Vec<u8> {
    bytes(&vec![0xaa; n * 20])
}

/// `files` with the given paths, each one byte long.
fn files(paths: &[&[&[u8]]]) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.begin_list();
    for path in paths {
        enc.begin_dict().key(b"length").int(1).key(b"path").begin_list();
        for part in *path {
            enc.bytes(part);
        }
        enc.end().end();
    }
    enc.end();
    enc.finish()
}

fn multi(paths: &[&[&[u8]]]) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(&torrent(&[
        ("files", files(paths)),
        ("name", bytes(b"dir")),
        ("piece length", int(16384)),
        ("pieces", pieces(1)),
    ]))
}

fn single(name: &[u8], length: i64, piece_length: i64, piece_count: usize) -> Vec<u8> {
    torrent(&[
        ("length", int(length)),
        ("name", bytes(name)),
        ("piece length", int(piece_length)),
        ("pieces", pieces(piece_count)),
    ])
}

#[test]
fn truncated_input_always_fails_cleanly() {
    let good = fixture("libtorrent-hybrid.torrent");
    assert!(Metainfo::from_bytes(&good).is_ok());
    for len in 0..good.len() {
        assert!(Metainfo::from_bytes(&good[..len]).is_err(), "prefix of {len} bytes parsed");
    }
}

#[test]
fn corrupt_input_is_rejected() {
    let good = fixture("libtorrent-multi.torrent");
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    assert_eq!(
        Metainfo::from_bytes(&trailing),
        Err(MetainfoError::Bencode(BencodeError::TrailingBytes(4)))
    );
    // A string length prefix that no longer fits: "6:folder" -> "9:folder".
    let at = good.windows(8).position(|w| w == b"6:folder").unwrap();
    let mut bad_length = good.clone();
    bad_length[at] = b'9';
    assert!(matches!(Metainfo::from_bytes(&bad_length), Err(MetainfoError::Bencode(_))));
    // `pieces` one byte shorter (the byte removed too): not a multiple of 20.
    let at = good.windows(8).position(|w| w == b"6:pieces").unwrap() + 8;
    let colon = at + good[at..].iter().position(|&b| b == b':').unwrap();
    let len: usize = std::str::from_utf8(&good[at..colon]).unwrap().parse().unwrap();
    let mut short_pieces = good[..at].to_vec();
    short_pieces.extend_from_slice(format!("{}:", len - 1).as_bytes());
    short_pieces.extend_from_slice(&good[colon + 2..]);
    assert!(matches!(
        Metainfo::from_bytes(&short_pieces),
        Err(MetainfoError::Invalid { field, .. }) if field == "info.pieces"
    ));

    // Flipping any single byte must never panic (most flips are errors, a few only change
    // a hash or a name).
    for i in 0..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            let _ = Metainfo::from_bytes(&bad);
        }
    }
}

#[test]
fn structural_errors_name_the_field() {
    assert_eq!(Metainfo::from_bytes(b"le"), Err(MetainfoError::NotADictionary("torrent")));
    assert_eq!(Metainfo::from_bytes(b"de"), Err(MetainfoError::Missing("info".into())));
    assert_eq!(Metainfo::from_bytes(b"d4:infoi1ee"), Err(MetainfoError::NotADictionary("info")));
    let no_name =
        torrent(&[("length", int(1)), ("piece length", int(16384)), ("pieces", pieces(1))]);
    assert_eq!(Metainfo::from_bytes(&no_name), Err(MetainfoError::Missing("info.name".into())));
    assert_eq!(
        Metainfo::from_bytes(&single(b"\xff\xfe", 1, 16384, 1)),
        Err(MetainfoError::NotUtf8("info.name".into()))
    );
    let both = torrent(&[
        ("files", files(&[&[b"a"]])),
        ("length", int(1)),
        ("name", bytes(b"x")),
        ("piece length", int(16384)),
        ("pieces", pieces(1)),
    ]);
    assert!(
        matches!(Metainfo::from_bytes(&both), Err(MetainfoError::Invalid { field, .. }) if field == "info")
    );
}

#[test]
fn escaping_paths_are_rejected_not_rewritten() {
    let unsafe_path = |r: Result<Metainfo, MetainfoError>| match r {
        Err(MetainfoError::UnsafePath { field, reason, .. }) => (field, reason),
        other => panic!("expected UnsafePath, got {other:?}"),
    };
    let (field, reason) = unsafe_path(multi(&[&[b"..", b"etc", b"passwd"]]));
    assert_eq!(field, "info.files[0].path");
    assert_eq!(reason, "refers to a folder itself or its parent");
    let (_, reason) = unsafe_path(multi(&[&[b"ok"], &[b"/etc/passwd"]]));
    assert_eq!(reason, "contains a path separator");
    let (_, reason) = unsafe_path(multi(&[&[b"C:\\Windows"]]));
    assert_eq!(reason, "contains a path separator");
    let (_, reason) = unsafe_path(multi(&[&[b"C:"]]));
    assert_eq!(reason, "starts with a drive letter");
    let (_, reason) = unsafe_path(multi(&[&[b"a\0b"]]));
    assert_eq!(reason, "contains a NUL byte");
    let (field, _) = unsafe_path(Metainfo::from_bytes(&single(b"..", 1, 16384, 1)));
    assert_eq!(field, "info.name");
    let (field, _) = unsafe_path(Metainfo::from_bytes(&single(b"/abs", 1, 16384, 1)));
    assert_eq!(field, "info.name");
    let empty_path: &[&[u8]] = &[];
    assert!(
        matches!(multi(&[empty_path]), Err(MetainfoError::Invalid { field, .. }) if field == "info.files[0].path")
    );
}

#[test]
fn path_utf8_twin_is_preferred_when_valid() {
    let mut enc = Encoder::new();
    enc.begin_list().begin_dict().key(b"length").int(1);
    enc.key(b"path").begin_list().bytes(b"\xe9t\xe9").end();
    enc.key(b"path.utf-8").begin_list().str("été").end();
    enc.end().end();
    let m = Metainfo::from_bytes(&torrent(&[
        ("files", enc.finish()),
        ("name", bytes(b"dir")),
        ("piece length", int(16384)),
        ("pieces", pieces(1)),
    ]))
    .unwrap();
    assert_eq!(m.info.files[0].path, vec!["dir", "été"]);
    // Without the twin, a non-UTF-8 path is an error naming the field.
    assert_eq!(multi(&[&[b"\xe9t\xe9"]]), Err(MetainfoError::NotUtf8("info.files[0].path".into())));
}

#[test]
fn absurd_sizes_and_counts_are_bounded() {
    let invalid_field = |r: Result<Metainfo, MetainfoError>| match r {
        Err(MetainfoError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let parse = |b: Vec<u8>| Metainfo::from_bytes(&b);
    assert_eq!(invalid_field(parse(single(b"f", 1, 0, 1))), "info.piece length");
    assert_eq!(invalid_field(parse(single(b"f", 1, -16384, 1))), "info.piece length");
    assert_eq!(invalid_field(parse(single(b"f", 1, 1 << 30, 1))), "info.piece length");
    assert_eq!(invalid_field(parse(single(b"f", -5, 16384, 1))), "info.length");
    assert_eq!(invalid_field(parse(single(b"f", 1 << 60, 16384, 1))), "info.length");
    // 2^40 bytes in 1-byte pieces would need 2^40 hashes.
    let err = parse(single(b"f", 1 << 40, 1, 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "field `info.pieces`: {} pieces is more than the limit of {MAX_PIECES}",
            1u64 << 40
        )
    );
    assert_eq!(
        parse(single(b"f", 40_000, 16384, 2)),
        Err(MetainfoError::PieceCountMismatch {
            actual: 2,
            expected: 3,
            total_length: 40_000,
            piece_length: 16384
        })
    );
    let odd_pieces = torrent(&[
        ("length", int(1)),
        ("name", bytes(b"f")),
        ("piece length", int(16384)),
        ("pieces", bytes(&[0; 19])),
    ]);
    assert_eq!(invalid_field(parse(odd_pieces)), "info.pieces");

    let deep: Vec<&[u8]> = vec![b"d"; 65];
    assert_eq!(
        multi(&[&deep]),
        Err(MetainfoError::TooMany { field: "info.files[0].path".into(), limit: 64 })
    );
    let names: Vec<String> = (0..=MAX_FILES).map(|i| i.to_string()).collect();
    let name_refs: Vec<[&[u8]; 1]> = names.iter().map(|n| [n.as_bytes()]).collect();
    let paths: Vec<&[&[u8]]> = name_refs.iter().map(|p| p.as_slice()).collect();
    assert_eq!(
        multi(&paths),
        Err(MetainfoError::TooMany { field: "info.files".into(), limit: MAX_FILES })
    );
}

#[test]
fn errors_read_well() {
    let err = multi(&[&[b"..", b"x"]]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsafe path component \"..\" in `info.files[0].path`: refers to a folder itself or its parent"
    );
    let err = Metainfo::from_bytes(&single(b"f", 40_000, 16384, 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`info.pieces` holds 2 hashes, but 40000 bytes in pieces of 16384 bytes need 3"
    );
}
