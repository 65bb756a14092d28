//! File storage: multi-file round trips, sparse creation, unselected files and part files,
//! pad files, the open-handle bound and concurrent use.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use sha1::{Digest, Sha1};
use shoal::storage::{
    FileSpec, FileStorage, FileStorageOptions, PieceStorage, StorageError, StorageLayout,
};

/// The torrent's content: byte `i` of the whole torrent.
fn content(total: u64) -> Vec<u8> {
    (0..total).map(|i| (i.wrapping_mul(131) >> 3) as u8 ^ (i as u8)).collect()
}

fn sha1(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

fn piece_bytes<'a>(layout: &StorageLayout, data: &'a [u8], piece: u32) -> &'a [u8] {
    let start = layout.piece_offset(piece) as usize;
    &data[start..start + layout.piece_len(piece).unwrap() as usize]
}

/// Writes every piece in `blocks`-byte blocks, last piece first so files are created out of
/// order.
fn write_pieces(storage: &dyn PieceStorage, data: &[u8], pieces: &[u32], block: usize) {
    let layout = storage.layout();
    for &piece in pieces.iter().rev() {
        let bytes = piece_bytes(layout, data, piece);
        for (i, chunk) in bytes.chunks(block).enumerate() {
            storage.write_block(piece, (i * block) as u32, chunk).unwrap();
        }
    }
}

/// Nested folders, an empty file, pieces spanning 3+ files and a 3-byte last piece.
fn nested_layout() -> StorageLayout {
    StorageLayout::new(
        32,
        vec![
            FileSpec::new(&["album", "cover.jpg"], 10),
            FileSpec::new(&["album", "cd1", "01.flac"], 7),
            FileSpec::new(&["album", "cd1", "empty.cue"], 0),
            FileSpec::new(&["album", "cd1", "02.flac"], 9),
            FileSpec::new(&["album", "cd2", "deep", "03.flac"], 40),
            FileSpec::new(&["album", "notes.txt"], 1),
        ],
    )
    .unwrap()
}

fn all(layout: &StorageLayout) -> Vec<u32> {
    (0..layout.piece_count()).collect()
}

#[test]
fn multi_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let layout = nested_layout();
    assert_eq!(layout.total_length(), 67);
    assert_eq!(layout.piece_len(2).unwrap(), 3);
    let data = content(layout.total_length());
    let storage = FileStorage::open(dir.path(), layout.clone(), &[true; 6]).unwrap();
    write_pieces(&storage, &data, &all(&layout), 5);

    for piece in all(&layout) {
        let expected = piece_bytes(&layout, &data, piece);
        assert_eq!(storage.hash_piece(piece).unwrap(), sha1(expected));
        let mut buf = vec![0; expected.len()];
        storage.read_block(piece, 0, &mut buf).unwrap();
        assert_eq!(buf, expected);
    }
    // A block read across four files.
    let mut buf = [0u8; 20];
    storage.read_block(0, 8, &mut buf).unwrap();
    assert_eq!(&buf[..], &data[8..28]);
    storage.complete().unwrap();

    // Every file holds exactly its bytes, the empty one included.
    let mut offset = 0usize;
    for file in layout.files() {
        let path = file.path.iter().fold(dir.path().to_path_buf(), |p, c| p.join(c));
        let on_disk = fs::read(&path).unwrap();
        assert_eq!(on_disk, &data[offset..offset + file.length as usize], "{path:?}");
        offset += file.length as usize;
    }
}

#[test]
fn empty_files_appear_on_completion_and_unselected_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StorageLayout::new(
        16,
        vec![
            FileSpec::new(&["t", "a"], 4),
            FileSpec::new(&["t", "x", "wanted-empty"], 0),
            FileSpec::new(&["t", "y", "skipped-empty"], 0),
        ],
    )
    .unwrap();
    let storage = FileStorage::open(dir.path(), layout, &[false, true, false]).unwrap();
    // Opening alone leaves no trace (a refused seed must not write into its folder).
    assert!(!dir.path().join("t").exists());
    storage.complete().unwrap();
    assert!(dir.path().join("t/x/wanted-empty").is_file());
    assert!(!dir.path().join("t/y").exists());
    assert!(!dir.path().join("t/a").exists());
}

#[cfg(unix)]
#[test]
fn files_are_created_sparse_at_full_length() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let length = 64 << 20;
    let layout = StorageLayout::new(1 << 20, vec![FileSpec::new(&["big.bin"], length)]).unwrap();
    let storage = FileStorage::open(dir.path(), layout, &[true]).unwrap();
    storage.write_block(40, 0, &[1u8; 16384]).unwrap();
    let meta = fs::metadata(dir.path().join("big.bin")).unwrap();
    assert_eq!(meta.len(), length);
    // Far less than 64 MiB is allocated: nothing was zero-filled.
    assert!(meta.blocks() * 512 < 8 << 20, "{} blocks", meta.blocks());
}

#[test]
fn unselected_files_are_not_created_and_shared_pieces_use_part_files() {
    let dir = tempfile::tempdir().unwrap();
    let layout = nested_layout();
    let data = content(layout.total_length());
    // Skip 01.flac (bytes 10..17) and 03.flac (bytes 26..66): pieces 0 and 2 mix wanted and
    // skipped files; piece 1 is all skipped (a driver would not fetch it, but if it does, its
    // bytes land in a part file like any other bytes of a skipped file).
    let selection = [true, false, true, true, false, true];
    let storage = FileStorage::open(dir.path(), layout.clone(), &selection).unwrap();
    write_pieces(&storage, &data, &all(&layout), 7);
    storage.flush().unwrap();

    assert!(!dir.path().join("album/cd1/01.flac").exists());
    assert!(!dir.path().join("album/cd2").exists());
    assert_eq!(fs::read(dir.path().join("album/cover.jpg")).unwrap(), &data[0..10]);
    assert_eq!(fs::read(dir.path().join("album/cd1/02.flac")).unwrap(), &data[17..26]);
    assert_eq!(fs::read(dir.path().join("album/notes.txt")).unwrap(), &data[66..67]);
    let part_dir = storage.part_dir();
    assert!(part_dir.starts_with(storage.root()));
    assert!(part_dir.join("0.part").is_file());

    // The mixed pieces still hash and read whole, also after reopening.
    drop(storage);
    let storage = FileStorage::open(dir.path(), layout.clone(), &selection).unwrap();
    for piece in all(&layout) {
        let expected = piece_bytes(&layout, &data, piece);
        assert_eq!(storage.hash_piece(piece).unwrap(), sha1(expected), "piece {piece}");
        let mut buf = vec![0; expected.len()];
        storage.read_block(piece, 0, &mut buf).unwrap();
        assert_eq!(buf, expected);
    }
}

#[test]
fn part_folder_name_can_be_chosen_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let layout =
        StorageLayout::new(8, vec![FileSpec::new(&["a"], 4), FileSpec::new(&["b"], 4)]).unwrap();
    let options = FileStorageOptions {
        part_dir: Some(".parts-abcdef".into()),
        ..FileStorageOptions::default()
    };
    let storage =
        FileStorage::open_with(dir.path(), layout.clone(), &[true, false], options).unwrap();
    storage.write_block(0, 0, b"wantSKIP").unwrap();
    assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"want");
    let part = fs::read(dir.path().join(".parts-abcdef/0.part")).unwrap();
    assert_eq!(&part[4..8], b"SKIP");

    for bad in ["..", "a/b", ""] {
        let options =
            FileStorageOptions { part_dir: Some(bad.into()), ..FileStorageOptions::default() };
        let result = FileStorage::open_with(dir.path(), layout.clone(), &[true, false], options);
        assert!(matches!(result, Err(StorageError::UnsafePath { .. })), "{bad:?}");
    }
}

#[test]
fn pad_files_are_never_written_and_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StorageLayout::new(
        8,
        vec![FileSpec::new(&["t", "a"], 5), FileSpec::padding(3), FileSpec::new(&["t", "b"], 8)],
    )
    .unwrap();
    let storage = FileStorage::open(dir.path(), layout, &[true, true, true]).unwrap();
    // A peer sends garbage where the padding is; what is stored is what the torrent says.
    storage.write_block(0, 0, b"hello\xff\xff\xff").unwrap();
    let mut buf = [9u8; 8];
    storage.read_block(0, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello\0\0\0");
    assert_eq!(storage.hash_piece(0).unwrap(), sha1(b"hello\0\0\0"));
    assert!(!dir.path().join(".pad").exists());
    assert_eq!(fs::read(dir.path().join("t/a")).unwrap(), b"hello");
}

#[test]
fn open_handles_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = (0..40)
        .map(|i| FileSpec::new(&["many", &format!("{:02}", i % 7), &format!("f{i}")], 3))
        .collect();
    let layout = StorageLayout::new(16, files).unwrap();
    let data = content(layout.total_length());
    let options = FileStorageOptions { max_open_files: 4, ..FileStorageOptions::default() };
    let storage = FileStorage::open_with(dir.path(), layout.clone(), &[true; 40], options).unwrap();
    write_pieces(&storage, &data, &all(&layout), 16);
    assert!(storage.open_handles() <= 4);
    // Files written through handles that were since closed are still synced, without error.
    storage.flush().unwrap();
    for piece in all(&layout) {
        assert_eq!(storage.hash_piece(piece).unwrap(), sha1(piece_bytes(&layout, &data, piece)));
    }
    assert!(storage.open_handles() <= 4);
}

#[test]
fn reading_what_was_never_written_reports_missing_data() {
    let dir = tempfile::tempdir().unwrap();
    let layout = nested_layout();
    let storage = FileStorage::open(dir.path(), layout, &[true; 6]).unwrap();
    let mut buf = [0u8; 4];
    let err = storage.read_block(1, 0, &mut buf).unwrap_err();
    assert!(err.is_missing_data(), "{err}");
    assert!(storage.hash_piece(0).unwrap_err().is_missing_data());
    // Reading never creates anything.
    assert!(!dir.path().join("album/cd2").exists());
}

#[test]
fn out_of_range_blocks_and_wrong_selection_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = nested_layout();
    assert!(matches!(
        FileStorage::open(dir.path(), layout.clone(), &[true; 5]),
        Err(StorageError::SelectionMismatch { expected: 6, got: 5 })
    ));
    let storage = FileStorage::open(dir.path(), layout, &[true; 6]).unwrap();
    assert!(matches!(storage.write_block(2, 2, b"xx"), Err(StorageError::BlockOutOfRange { .. })));
    assert!(matches!(storage.write_block(3, 0, b"x"), Err(StorageError::PieceOutOfRange { .. })));
    assert!(storage.hash_piece(99).is_err());
}

#[test]
fn threads_can_share_one_storage() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> =
        (0..9).map(|i| FileSpec::new(&["mt", &format!("f{i}")], 1000 + i * 77)).collect();
    let layout = StorageLayout::new(256, files).unwrap();
    let data = Arc::new(content(layout.total_length()));
    let options = FileStorageOptions { max_open_files: 3, ..FileStorageOptions::default() };
    let storage: Arc<dyn PieceStorage> =
        Arc::new(FileStorage::open_with(dir.path(), layout.clone(), &[true; 9], options).unwrap());
    let workers: Vec<_> = (0..4u32)
        .map(|t| {
            let storage = Arc::clone(&storage);
            let data = Arc::clone(&data);
            std::thread::spawn(move || {
                let mine: Vec<u32> =
                    (0..storage.layout().piece_count()).filter(|p| p % 4 == t).collect();
                write_pieces(storage.as_ref(), &data, &mine, 100);
                for p in mine {
                    let expected = piece_bytes(storage.layout(), &data, p);
                    assert_eq!(storage.hash_piece(p).unwrap(), sha1(expected));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    storage.flush().unwrap();
    assert_eq!(read_all(dir.path(), &layout), *data);
}

fn read_all(root: &Path, layout: &StorageLayout) -> Vec<u8> {
    layout
        .files()
        .iter()
        .flat_map(|f| fs::read(f.path.iter().fold(root.to_path_buf(), |p, c| p.join(c))).unwrap())
        .collect()
}

#[test]
fn a_file_of_the_wrong_length_is_set_to_the_torrents_on_first_write() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("long"), [5u8; 50]).unwrap();
    fs::write(dir.path().join("short"), [6u8; 2]).unwrap();
    let layout =
        StorageLayout::new(16, vec![FileSpec::new(&["long"], 10), FileSpec::new(&["short"], 6)])
            .unwrap();
    let storage = FileStorage::open(dir.path(), layout, &[true, true]).unwrap();
    // Opening alone changes nothing.
    assert_eq!(fs::metadata(dir.path().join("long")).unwrap().len(), 50);
    storage.write_block(0, 0, &[1; 16]).unwrap();
    assert_eq!(fs::read(dir.path().join("long")).unwrap(), [1; 10]);
    assert_eq!(fs::read(dir.path().join("short")).unwrap(), [1; 6]);
}
