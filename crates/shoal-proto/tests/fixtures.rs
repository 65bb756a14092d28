//! Torrents made by libtorrent, Transmission and WebTorrent (see fixtures/README.md): our
//! parser must agree with the info hashes those tools reported, the piece hashes must match
//! the committed content, and our creator must reproduce the tools' info dictionaries where
//! they follow the same conventions.

use std::fs;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use shoal_proto::create::TorrentBuilder;
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (file name, info hash hex) as the generating tools reported them.
fn reported_hashes() -> Vec<(String, String)> {
    let text = fs::read_to_string(fixtures().join("hashes.txt")).unwrap();
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next().unwrap().to_owned(), fields.next().unwrap().to_owned())
        })
        .collect()
}

fn load(name: &str) -> Metainfo {
    Metainfo::from_bytes(&fs::read(fixtures().join(name)).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The torrent's content, read from `content/` in torrent order, padding files as zeros.
fn content_of(m: &Metainfo) -> Vec<u8> {
    let mut out = Vec::new();
    for file in &m.info.files {
        if file.padding {
            out.resize(out.len() + file.length as usize, 0);
            continue;
        }
        let path = file.path.iter().fold(fixtures().join("content"), |p, c| p.join(c));
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(bytes.len() as u64, file.length, "{}", path.display());
        out.extend(bytes);
    }
    out
}

#[test]
fn info_hashes_match_the_tools() {
    let hashes = reported_hashes();
    assert_eq!(hashes.len(), 7);
    for (name, hex) in hashes {
        let m = load(&name);
        assert_eq!(m.info_hash.to_hex(), hex, "{name}");
    }
}

#[test]
fn piece_hashes_match_the_content() {
    for (name, _) in reported_hashes() {
        let m = load(&name);
        let content = content_of(&m);
        assert_eq!(content.len() as u64, m.info.total_length, "{name}");
        let pieces: Vec<&[u8]> = content.chunks(m.info.piece_length as usize).collect();
        assert_eq!(pieces.len() as u32, m.info.piece_count(), "{name}");
        for (i, piece) in pieces.iter().enumerate() {
            assert_eq!(piece.len() as u32, m.info.piece_len(i as u32), "{name} piece {i}");
            assert_eq!(Sha1::digest(piece).as_slice(), m.info.piece_hashes[i], "{name} piece {i}");
        }
    }
}

#[test]
fn fields_are_read_as_the_tools_wrote_them() {
    let lt = load("libtorrent-multi.torrent");
    assert!(lt.info.multi_file && !lt.info.private);
    assert_eq!(lt.info.name, "folder");
    assert_eq!(
        lt.trackers,
        vec![
            vec!["http://tracker.example/announce".to_string()],
            vec!["udp://tracker2.example:6969/announce".to_string()]
        ]
    );
    assert_eq!(lt.web_seeds, vec!["http://seed.example/files/".to_string()]);
    assert_eq!(lt.comment.as_deref(), Some("shoal fixture"));
    assert_eq!(lt.created_by.as_deref(), Some("libtorrent fixture"));
    let empty = lt.info.files.iter().find(|f| f.path == ["folder", "empty.txt"]).unwrap();
    assert_eq!(empty.length, 0);
    assert!(lt.info.files.iter().any(|f| f.path == ["folder", "nested", "deeper", "b.bin"]));

    let hybrid = load("libtorrent-hybrid.torrent");
    assert_eq!(hybrid.info.files.iter().filter(|f| f.padding).count(), 4);
    assert!(hybrid.info.files.iter().filter(|f| f.padding).all(|f| f.path[1] == ".pad"));

    let single = load("transmission-single.torrent");
    assert!(single.info.private && !single.info.multi_file);
    assert_eq!(single.info.files[0].path, vec!["single.bin"]);
    assert!(!load("transmission-multi.torrent").info.private);

    let wt = load("webtorrent-multi.torrent");
    assert_eq!(wt.trackers, vec![vec!["wss://tracker.example".to_string()]]);
    assert_eq!(wt.creation_date, Some(1_700_000_000));
}

#[test]
fn magnet_links_round_trip() {
    for (name, hex) in reported_hashes() {
        let m = load(&name);
        let magnet = Magnet::parse(&m.magnet_uri()).unwrap();
        assert_eq!(magnet.info_hash.to_hex(), hex);
        assert_eq!(magnet.display_name.as_deref(), Some(m.info.name.as_str()));
        assert_eq!(magnet.trackers, m.tracker_urls().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(magnet.web_seeds, m.web_seeds);
    }
}

#[test]
fn info_bytes_parse_alone_as_after_a_metadata_download() {
    let m = load("libtorrent-hybrid.torrent");
    let bare = Metainfo::from_info_bytes(&m.info_bytes).unwrap();
    assert_eq!(bare.info, m.info);
    assert_eq!(bare.info_hash, m.info_hash);
    assert!(bare.trackers.is_empty());
}

/// Files under `dir`, depth first, components sorted: the CLI's order.
fn walk(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Vec<u8>)>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        prefix.push(path.file_name().unwrap().to_str().unwrap().to_owned());
        if path.is_dir() {
            walk(&path, prefix, out);
        } else {
            out.push((prefix.clone(), fs::read(&path).unwrap()));
        }
        prefix.pop();
    }
}

#[test]
fn our_creator_reproduces_webtorrent_and_libtorrent() {
    let mut files = Vec::new();
    walk(&fixtures().join("content/folder"), &mut Vec::new(), &mut files);
    let mut builder = TorrentBuilder::multi_file("folder").unwrap();
    for (path, bytes) in &files {
        builder.add_file(path.clone(), bytes.len() as u64).unwrap();
    }
    let mut hasher = builder.piece_length(16384).start().unwrap();
    for (_, bytes) in &files {
        hasher.update(bytes).unwrap();
    }
    let ours = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
    let theirs = load("webtorrent-multi.torrent");
    assert_eq!(ours.info_bytes, theirs.info_bytes);
    assert_eq!(ours.info_hash, theirs.info_hash);

    let single = fs::read(fixtures().join("content/single.bin")).unwrap();
    let mut hasher = TorrentBuilder::single_file("single.bin", single.len() as u64)
        .unwrap()
        .piece_length(16384)
        .start()
        .unwrap();
    hasher.update(&single).unwrap();
    let ours = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
    assert_eq!(ours.info_hash, load("libtorrent-single.torrent").info_hash);
}
