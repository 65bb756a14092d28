//! Throughput of `hash_piece` over a 256 MiB file in the page cache: a measurement, not a
//! test. Run it with `cargo run --release -p shoal --example hash_bench`.

use std::time::Instant;

use sha1::{Digest, Sha1};
use shoal::storage::{FileSpec, FileStorage, PieceStorage, StorageLayout};

const SIZE: u64 = 256 << 20;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for piece_length in [256 << 10, 1 << 20, 4 << 20] {
        let layout =
            StorageLayout::new(piece_length, vec![FileSpec::new(&["bench.bin"], SIZE)]).unwrap();
        let storage = FileStorage::open(dir.path(), layout.clone(), &[true]).unwrap();
        let block: Vec<u8> = (0..16384u32).map(|i| (i * 31) as u8).collect();
        for piece in 0..layout.piece_count() {
            for offset in (0..layout.piece_len(piece).unwrap()).step_by(block.len()) {
                storage.write_block(piece, offset, &block).unwrap();
            }
        }
        // Warm-up pass, then the measured one.
        for piece in 0..layout.piece_count() {
            storage.hash_piece(piece).unwrap();
        }
        let start = Instant::now();
        for piece in 0..layout.piece_count() {
            std::hint::black_box(storage.hash_piece(piece).unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "hash_piece, {} KiB pieces: {:.0} MB/s",
            piece_length >> 10,
            SIZE as f64 / secs / 1e6
        );
        drop(storage);
        std::fs::remove_file(dir.path().join("bench.bin")).unwrap();
    }

    // The ceiling: SHA-1 alone over memory.
    let buf = vec![7u8; 64 << 20];
    let start = Instant::now();
    std::hint::black_box(Sha1::digest(&buf));
    let secs = start.elapsed().as_secs_f64();
    println!("sha1 over memory: {:.0} MB/s", buf.len() as f64 / secs / 1e6);
}
