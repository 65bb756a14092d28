//! Shoal to Shoal over loopback TCP, in one process: a seeder made from files on disk, and a
//! leecher that downloads them from a `.torrent` and from a bare magnet.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use shoal::{AddTorrent, Phase, Session, StorageTarget, TorrentSource};
use shoal_proto::create::TorrentBuilder;
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;

mod common;

use common::{local_config, pseudo_random};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Writes a multi-file tree (nested folder, a zero-length file, a tail of a few bytes) and
/// returns its torrent.
fn make_content(dir: &Path, piece_length: u32) -> Metainfo {
    let files: Vec<(Vec<&str>, Vec<u8>)> = vec![
        (vec!["a.bin"], pseudo_random(700_000, 1)),
        (vec!["empty.txt"], Vec::new()),
        (vec!["nested", "deeper", "b.bin"], pseudo_random(1_300_001, 2)),
        (vec!["z.txt"], b"tail".to_vec()),
    ];
    let root = dir.join("content");
    let mut specs = Vec::new();
    for (path, data) in &files {
        let mut full = root.clone();
        for c in path {
            full.push(c);
        }
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, data).unwrap();
        specs.push((path.iter().map(|s| s.to_string()).collect::<Vec<_>>(), data.len() as u64));
    }
    let mut builder = TorrentBuilder::multi_file("content").unwrap();
    for (path, len) in specs {
        builder.add_file(path, len).unwrap();
    }
    let mut hasher = builder.piece_length(piece_length).start().unwrap();
    for (_, data) in &files {
        hasher.update(data).unwrap();
    }
    Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap()
}

fn assert_same_tree(a: &Path, b: &Path) {
    for entry in walk(a) {
        let rel = entry.strip_prefix(a).unwrap();
        let other = b.join(rel);
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(&other).unwrap(),
            "{rel:?} differs"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn seeder(dir: &Path, meta: &Metainfo) -> (Session, SocketAddr, shoal::TorrentHandle) {
    let session = Session::new(local_config()).await.unwrap();
    let handle = session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta.clone())),
            target: StorageTarget::Dir(dir.to_path_buf()),
            only_files: None,
            file_priorities: None,
            peers: vec![],
            extra_trackers: vec![],
            web_seeds: vec![],
        })
        .unwrap();
    tokio::time::timeout(TIMEOUT, handle.wait_complete()).await.unwrap().unwrap();
    let addr = session.listen_addr().unwrap();
    (session, addr, handle)
}

/// Downloads `source` into `out` from the peer at `seed`, waiting for completion.
async fn leech(
    source: TorrentSource,
    out: &Path,
    only_files: Option<Vec<usize>>,
    seed: SocketAddr,
) -> (Session, shoal::TorrentHandle) {
    let session = Session::new(local_config()).await.unwrap();
    let handle = session
        .add_torrent(AddTorrent {
            source,
            target: StorageTarget::Dir(out.to_path_buf()),
            only_files,
            file_priorities: None,
            peers: vec![seed],
            extra_trackers: vec![],
            web_seeds: vec![],
        })
        .unwrap();
    tokio::time::timeout(TIMEOUT, handle.wait_complete())
        .await
        .expect("download timed out")
        .unwrap();
    (session, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_multi_file_torrent_from_shoal_seeder() {
    let dir = tempfile::tempdir().unwrap();
    let meta = make_content(dir.path(), 64 * 1024);
    let (_seed_session, seed_addr, _seed) = seeder(dir.path(), &meta).await;

    let out = tempfile::tempdir().unwrap();
    let source = TorrentSource::Metainfo(Box::new(meta.clone()));
    let (_session, handle) = leech(source, out.path(), None, seed_addr).await;
    assert_eq!(handle.status().phase, Phase::Seeding);
    assert_same_tree(&dir.path().join("content"), &out.path().join("content"));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_from_bare_magnet() {
    let dir = tempfile::tempdir().unwrap();
    let meta = make_content(dir.path(), 32 * 1024);
    let (_seed_session, seed_addr, _seed) = seeder(dir.path(), &meta).await;

    let out = tempfile::tempdir().unwrap();
    let source = TorrentSource::Magnet(Magnet::new(meta.info_hash));
    let _ = leech(source, out.path(), None, seed_addr).await;
    assert_same_tree(&dir.path().join("content"), &out.path().join("content"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_only_selected_files() {
    let dir = tempfile::tempdir().unwrap();
    let meta = make_content(dir.path(), 64 * 1024);
    let (_seed_session, seed_addr, _seed) = seeder(dir.path(), &meta).await;

    let out = tempfile::tempdir().unwrap();
    let source = TorrentSource::Metainfo(Box::new(meta.clone()));
    let _ = leech(source, out.path(), Some(vec![3]), seed_addr).await;
    let got = std::fs::read(out.path().join("content/z.txt")).unwrap();
    assert_eq!(got, b"tail");
    assert!(!out.path().join("content/a.bin").exists(), "an unselected file was created");
}

/// `SessionConfig::max_upload_rate` holds the seeder to its cap (a bound on correctness, not
/// a speed figure: the cap may never be exceeded), and the download still completes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_seeder_never_sends_faster_than_its_cap() {
    const CAP: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let meta = make_content(dir.path(), 64 * 1024); // 2 MB of content
    let config = shoal::SessionConfig { max_upload_rate: Some(CAP), ..local_config() };
    let session = Session::new(config).await.unwrap();
    assert_eq!(session.upload_limit().rate(), Some(CAP));
    let seed = session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta.clone())),
            target: StorageTarget::Dir(dir.path().to_path_buf()),
            only_files: None,
            file_priorities: None,
            peers: vec![],
            extra_trackers: vec![],
            web_seeds: vec![],
        })
        .unwrap();
    tokio::time::timeout(TIMEOUT, seed.wait_complete()).await.unwrap().unwrap();
    let addr = session.listen_addr().unwrap();

    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let source = TorrentSource::Metainfo(Box::new(meta.clone()));
    let _ = leech(source, out.path(), None, addr).await;
    let took = started.elapsed().as_secs_f64();
    assert_same_tree(&dir.path().join("content"), &out.path().join("content"));
    // 2,000,005 bytes at 1 MiB/s, less what may run ahead of the schedule: one burst (a
    // tenth of a second's worth) and the chunk a writer sends at the start of its turn.
    let total = meta.info.total_length;
    let ahead = CAP as f64 / 10.0 + 64.0 * 1024.0;
    let least = (total as f64 - ahead) / CAP as f64;
    assert!(took >= least, "{total} bytes arrived in {took:.2}s under a 1 MiB/s cap");
}

/// The download cap, set on a running session (as the server's API and Transmission RPC do),
/// holds what the leecher reads from its peers to the cap (a bound on correctness, not a speed
/// figure), and the download completes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cap_set_while_running_holds_the_leecher_to_it() {
    const CAP: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let meta = make_content(dir.path(), 64 * 1024); // 2 MB of content
    let (_seed_session, seed_addr, _seed) = seeder(dir.path(), &meta).await;

    let session = Session::new(local_config()).await.unwrap();
    assert_eq!(session.download_limit().rate(), None);
    session.download_limit().set_rate(Some(CAP));
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let handle = session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta.clone())),
            target: StorageTarget::Dir(out.path().to_path_buf()),
            only_files: None,
            file_priorities: None,
            peers: vec![seed_addr],
            extra_trackers: vec![],
            web_seeds: vec![],
        })
        .unwrap();
    tokio::time::timeout(TIMEOUT, handle.wait_complete()).await.unwrap().unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_same_tree(&dir.path().join("content"), &out.path().join("content"));
    // What may run ahead of the schedule: one burst (a tenth of a second's worth) and the
    // read that comes before its own wait (the reader's buffer, at most 256 KiB).
    let total = meta.info.total_length;
    let ahead = CAP as f64 / 10.0 + 256.0 * 1024.0;
    let least = (total as f64 - ahead) / CAP as f64;
    assert!(took >= least, "{total} bytes arrived in {took:.2}s under a 1 MiB/s download cap");
}
