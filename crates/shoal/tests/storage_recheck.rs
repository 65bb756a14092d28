//! The recheck on start: which pieces are already there and good.

use std::fs;

use sha1::{Digest, Sha1};
use shoal::storage::{
    verify_existing, FileSpec, FileStorage, MemoryStorage, PieceStorage, StorageError,
    StorageLayout,
};

fn content(total: u64) -> Vec<u8> {
    (0..total).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Three files of 100, 0 and 150 bytes over 32-byte pieces (8 pieces, the last 26 bytes).
fn layout() -> StorageLayout {
    StorageLayout::new(
        32,
        vec![
            FileSpec::new(&["r", "one"], 100),
            FileSpec::new(&["r", "empty"], 0),
            FileSpec::new(&["r", "sub", "two"], 150),
        ],
    )
    .unwrap()
}

fn piece_hashes(layout: &StorageLayout, data: &[u8]) -> Vec<[u8; 20]> {
    (0..layout.piece_count())
        .map(|p| {
            let start = layout.piece_offset(p) as usize;
            let len = layout.piece_len(p).unwrap() as usize;
            Sha1::digest(&data[start..start + len]).into()
        })
        .collect()
}

fn write_piece(storage: &dyn PieceStorage, data: &[u8], piece: u32) {
    let layout = storage.layout();
    let start = layout.piece_offset(piece) as usize;
    let len = layout.piece_len(piece).unwrap() as usize;
    storage.write_block(piece, 0, &data[start..start + len]).unwrap();
}

#[test]
fn fresh_download_is_all_absent_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let hashes = piece_hashes(&layout, &content(layout.total_length()));
    let storage = FileStorage::open(dir.path(), layout, &[true, true, true]).unwrap();
    let mut reported = Vec::new();
    let have = verify_existing(&storage, &hashes, |done| reported.push(done)).unwrap();
    assert_eq!(have, vec![false; 8]);
    assert_eq!(reported, (1..=8).collect::<Vec<u32>>());
    assert!(!dir.path().join("r/one").exists());
    assert!(!dir.path().join("r/sub").exists());
}

#[test]
fn partially_present_data_is_found_piece_by_piece() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let data = content(layout.total_length());
    let hashes = piece_hashes(&layout, &data);
    {
        let storage = FileStorage::open(dir.path(), layout.clone(), &[true; 3]).unwrap();
        for piece in [0, 2, 3, 5, 7] {
            write_piece(&storage, &data, piece);
        }
        // Piece 5 gets a corrupt byte, as if a peer had lied and the process died before the
        // hash check.
        storage.write_block(5, 10, &[data[5 * 32 + 10] ^ 1]).unwrap();
        storage.flush().unwrap();
    }
    // A restart: a new storage over the same folder.
    let storage = FileStorage::open(dir.path(), layout, &[true; 3]).unwrap();
    let have = verify_existing(&storage, &hashes, |_| {}).unwrap();
    // Piece 3 spans both files (bytes 96..128).
    assert_eq!(have, vec![true, false, true, true, false, false, false, true]);
}

#[test]
fn files_shorter_than_needed_count_as_absent() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let data = content(layout.total_length());
    let hashes = piece_hashes(&layout, &data);
    {
        let storage = FileStorage::open(dir.path(), layout.clone(), &[true; 3]).unwrap();
        for piece in 0..layout.piece_count() {
            write_piece(&storage, &data, piece);
        }
    }
    // Another program truncated the second file to 40 bytes (bytes 100..140 of the torrent).
    let two = fs::OpenOptions::new().write(true).open(dir.path().join("r/sub/two")).unwrap();
    two.set_len(40).unwrap();
    drop(two);
    let storage = FileStorage::open(dir.path(), layout, &[true; 3]).unwrap();
    assert!(!storage.may_hold_piece(4).unwrap());
    let have = verify_existing(&storage, &hashes, |_| {}).unwrap();
    assert_eq!(have, vec![true, true, true, true, false, false, false, false]);
}

#[test]
fn pieces_kept_in_part_files_verify_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout();
    let data = content(layout.total_length());
    let hashes = piece_hashes(&layout, &data);
    // Only "two" is wanted: piece 3 is shared with the skipped "one".
    let selection = [false, true, true];
    {
        let storage = FileStorage::open(dir.path(), layout.clone(), &selection).unwrap();
        for piece in 3..layout.piece_count() {
            write_piece(&storage, &data, piece);
        }
    }
    assert!(!dir.path().join("r/one").exists());
    let storage = FileStorage::open(dir.path(), layout, &selection).unwrap();
    let have = verify_existing(&storage, &hashes, |_| {}).unwrap();
    assert_eq!(have, vec![false, false, false, true, true, true, true, true]);
}

#[test]
fn wrong_number_of_hashes_is_refused() {
    let storage = MemoryStorage::new(layout());
    assert!(matches!(
        verify_existing(&storage, &[[0; 20]; 3], |_| {}),
        Err(StorageError::HashCountMismatch { expected: 8, got: 3 })
    ));
}

#[test]
fn memory_storage_rechecks_resident_pieces_only() {
    let layout = layout();
    let data = content(layout.total_length());
    let hashes = piece_hashes(&layout, &data);
    let storage = MemoryStorage::new(layout);
    write_piece(&storage, &data, 1);
    write_piece(&storage, &data, 6);
    storage.write_block(4, 0, b"not the right bytes").unwrap();
    let have = verify_existing(&storage, &hashes, |_| {}).unwrap();
    assert_eq!(have, vec![false, true, false, false, false, false, true, false]);
}
