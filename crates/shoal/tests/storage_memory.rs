//! In-memory storage: allocation on first write, eviction, accounting.

use sha1::{Digest, Sha1};
use shoal::storage::{FileSpec, MemoryStorage, PieceStorage, StorageError, StorageLayout};

fn layout() -> StorageLayout {
    // 16-byte pieces over 40 bytes: two full pieces and one of 8 bytes, with a pad file.
    StorageLayout::new(
        16,
        vec![FileSpec::new(&["m", "a"], 13), FileSpec::padding(3), FileSpec::new(&["m", "b"], 24)],
    )
    .unwrap()
}

#[test]
fn blocks_round_trip_and_pieces_hash() {
    let storage = MemoryStorage::new(layout());
    assert_eq!(storage.resident_bytes(), 0);
    storage.write_block(1, 8, b"world!!!").unwrap();
    storage.write_block(1, 0, b"hello, w").unwrap();
    let mut buf = [0u8; 16];
    storage.read_block(1, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello, wworld!!!");
    let mut part = [0u8; 5];
    storage.read_block(1, 7, &mut part).unwrap();
    assert_eq!(&part, b"wworl");
    let expected: [u8; 20] = Sha1::digest(b"hello, wworld!!!").into();
    assert_eq!(storage.hash_piece(1).unwrap(), expected);
    assert_eq!(storage.resident_bytes(), 16);
    assert!(storage.may_hold_piece(1).unwrap());
    assert!(!storage.may_hold_piece(0).unwrap());
}

#[test]
fn pieces_are_allocated_at_their_own_length_and_evicted() {
    let storage = MemoryStorage::new(layout());
    storage.write_block(2, 0, b"last").unwrap();
    assert_eq!(storage.resident_bytes(), 8);
    storage.write_block(0, 0, b"x").unwrap();
    assert_eq!(storage.resident_bytes(), 24);
    let mut resident = storage.resident_pieces();
    resident.sort_unstable();
    assert_eq!(resident, vec![0, 2]);
    // The unwritten tail of a piece reads as zeros.
    let mut buf = [1u8; 8];
    storage.read_block(2, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"last\0\0\0\0");

    assert!(storage.evict(0));
    assert!(!storage.evict(0));
    assert_eq!(storage.resident_bytes(), 8);
    assert!(!storage.is_resident(0));
    let mut buf = [0u8; 1];
    assert!(matches!(
        storage.read_block(0, 0, &mut buf),
        Err(StorageError::NotResident { piece: 0 })
    ));
    assert!(storage.hash_piece(0).unwrap_err().is_missing_data());
}

#[test]
fn pad_bytes_stay_zero() {
    let storage = MemoryStorage::new(layout());
    storage.write_block(0, 0, &[0xAA; 16]).unwrap();
    let mut buf = [0u8; 16];
    storage.read_block(0, 0, &mut buf).unwrap();
    assert_eq!(&buf[..13], &[0xAA; 13]);
    assert_eq!(&buf[13..], &[0, 0, 0]);
}

#[test]
fn out_of_range_is_refused() {
    let storage = MemoryStorage::new(layout());
    assert!(matches!(
        storage.write_block(2, 4, b"12345"),
        Err(StorageError::BlockOutOfRange { .. })
    ));
    assert!(matches!(storage.write_block(3, 0, b"1"), Err(StorageError::PieceOutOfRange { .. })));
    assert!(storage.hash_piece(3).is_err());
    assert_eq!(storage.resident_bytes(), 0);
    storage.flush().unwrap();
}
