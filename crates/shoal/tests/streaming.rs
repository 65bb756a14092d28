//! Streaming readers against a Shoal seeder over loopback: exact bytes at random offsets,
//! the bounded in-memory store staying within its budget, timeouts and bad file indices.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use shoal::{AddTorrent, OpenFileError, Session, StorageTarget, TorrentSource};
use shoal_proto::create::TorrentBuilder;
use shoal_proto::metainfo::Metainfo;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

mod common;

use common::{local_config, pseudo_random};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Two files, so reads cross file and piece boundaries: `intro.bin` then `movie.bin`.
fn make_content(dir: &Path, piece_length: u32, sizes: [usize; 2]) -> (Metainfo, Vec<Vec<u8>>) {
    let names = ["intro.bin", "movie.bin"];
    let data: Vec<Vec<u8>> =
        sizes.iter().enumerate().map(|(i, &n)| pseudo_random(n, i as u64 + 7)).collect();
    let root = dir.join("show");
    std::fs::create_dir_all(&root).unwrap();
    let mut builder = TorrentBuilder::multi_file("show").unwrap();
    for (name, bytes) in names.iter().zip(&data) {
        std::fs::write(root.join(name), bytes).unwrap();
        builder.add_file(vec![name.to_string()], bytes.len() as u64).unwrap();
    }
    let mut hasher = builder.piece_length(piece_length).start().unwrap();
    for bytes in &data {
        hasher.update(bytes).unwrap();
    }
    (Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap(), data)
}

async fn add(
    session: &Session,
    meta: &Metainfo,
    target: StorageTarget,
    peers: Vec<SocketAddr>,
) -> shoal::TorrentHandle {
    session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta.clone())),
            target,
            only_files: None,
            file_priorities: None,
            peers,
            extra_trackers: vec![],
            web_seeds: vec![],
        })
        .unwrap()
}

async fn seeder(dir: &Path, meta: &Metainfo) -> (Session, shoal::TorrentHandle) {
    let session = Session::new(local_config()).await.unwrap();
    let handle = add(&session, meta, StorageTarget::Dir(dir.to_path_buf()), vec![]).await;
    tokio::time::timeout(TIMEOUT, handle.wait_complete()).await.unwrap().unwrap();
    (session, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reads_return_exactly_the_files_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = make_content(dir.path(), 32 * 1024, [100_001, 3_000_017]);
    let (seed_session, _seed) = seeder(dir.path(), &meta).await;
    let seed_addr = seed_session.listen_addr().unwrap();

    let out = tempfile::tempdir().unwrap();
    let session = Session::new(local_config()).await.unwrap();
    let handle = add(&session, &meta, StorageTarget::Dir(out.path().into()), vec![seed_addr]).await;

    // Seeded, so a failing read is reproducible.
    let mut rng = fastrand::Rng::with_seed(7);
    for (index, expected) in data.iter().enumerate() {
        let mut file = handle.open_file(index).await.unwrap();
        assert_eq!(file.len(), expected.len() as u64);
        let len = expected.len() as u64;
        // The last byte, the first, a read across the first piece boundary, then random ones.
        let mut reads = vec![(len - 1, 1), (0, 10), (32 * 1024 - 5, 10)];
        reads.extend((0..150).map(|_| {
            let at = rng.u64(..len);
            (at, rng.u64(1..=(len - at).min(200_000)))
        }));
        for (at, n) in reads {
            assert_eq!(file.seek(SeekFrom::Start(at)).await.unwrap(), at);
            let mut buf = vec![0u8; n as usize];
            tokio::time::timeout(TIMEOUT, file.read_exact(&mut buf)).await.unwrap().unwrap();
            assert!(buf == expected[at as usize..(at + n) as usize], "file {index} at {at}+{n}");
        }
        // Reading at the end is end-of-file, not an error or a wait.
        file.seek(SeekFrom::End(0)).await.unwrap();
        assert_eq!(file.read(&mut [0u8; 8]).await.unwrap(), 0);
        assert!(file.seek(SeekFrom::Current(-(len as i64) - 1)).await.is_err());
    }
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_memory_store_streams_a_file_many_times_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = make_content(dir.path(), 64 * 1024, [10_000, 24 * 1024 * 1024 + 333]);
    let (seed_session, _seed) = seeder(dir.path(), &meta).await;
    let seed_addr = seed_session.listen_addr().unwrap();

    let budget = 2 * 1024 * 1024;
    let session = Session::new(local_config()).await.unwrap();
    let target = StorageTarget::BoundedMemory { max_bytes: budget };
    let handle = add(&session, &meta, target, vec![seed_addr]).await;
    let mut file = handle.open_file(1).await.unwrap();
    let mut got = Vec::with_capacity(data[1].len());
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = tokio::time::timeout(TIMEOUT, file.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data[1], "streamed bytes differ");
    // The status is republished on a timer; wait for one that saw the whole read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let usage = handle.status().memory.expect("a bounded store reports its usage");
    assert_eq!(usage.budget, budget);
    assert!(usage.peak > budget / 4, "the store barely held anything: {usage:?}");
    assert!(usage.peak <= budget, "over the budget: {usage:?}");
    // The whole file went through a store far smaller than it.
    assert!(handle.status().stats.downloaded >= data[1].len() as u64);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_time_out_without_peers_and_bad_indices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, _) = make_content(dir.path(), 32 * 1024, [1000, 70_000]);
    let session = Session::new(local_config()).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let handle = add(&session, &meta, StorageTarget::Dir(out.path().into()), vec![]).await;
    assert_eq!(handle.open_file(2).await.err(), Some(OpenFileError::NoSuchFile(2)));
    let mut file = handle.open_file(1).await.unwrap();
    file.set_timeout(Some(Duration::from_millis(300)));
    let err = file.read(&mut [0u8; 16]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    handle.shutdown().await;
    let err = file.read(&mut [0u8; 16]).await.unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    assert_eq!(handle.open_file(0).await.err(), Some(OpenFileError::Stopped));
}
