//! Deterministic pseudo-random test content: the same seed and size always give the same
//! bytes, so a failing test can be rerun on the same data, and no two files of a tree share
//! content (a piece delivered to the wrong offset cannot pass verification by accident).
//!
//! `tests/peers/make_payload.py` builds the same [`tree_layout`] from the command line (with
//! Python's own generator, so the bytes differ; the shapes are the same).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// splitmix64: tiny, fast and good enough to make content no codec can compress or confuse.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes `size` pseudo-random bytes derived from `seed` to `path` (parent folders created).
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let file =
        File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut rng = SplitMix64(seed ^ size.rotate_left(32));
    let mut left = size;
    let mut chunk = [0u8; 8];
    while left > 0 {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
        let n = left.min(8) as usize;
        out.write_all(&chunk[..n])
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        left -= n as u64;
    }
    out.flush().map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// One random file `dir/random-<size>-<seed>.bin`; returns its path.
pub fn payload(dir: &Path, size: u64, seed: u64) -> Result<PathBuf> {
    let path = dir.join(format!("random-{size}-{seed}.bin"));
    write_random_file(&path, size, seed)?;
    Ok(path)
}

/// The files of a multi-file test torrent (relative path, size), chosen to hit edge cases:
/// a file ending mid-piece, a zero-length file, nested folders, an odd-sized file, and a last
/// file sized so that the torrent's final piece is exactly `tail` bytes long.
///
/// `total` is approximate; `tail` must be within `1..=piece_size`.
pub fn tree_layout(total: u64, piece_size: u64, tail: u64) -> Result<Vec<(String, u64)>> {
    if piece_size == 0 || tail == 0 || tail > piece_size {
        return Err(Error::Setup(format!(
            "tree_layout needs 1 <= tail ({tail}) <= piece size ({piece_size})"
        )));
    }
    let alpha = total * 40 / 100 + 1000;
    let beta = total * 20 / 100 + 7;
    let gamma = total * 35 / 100;
    let base = alpha + beta + gamma;
    // the last piece is (total size mod piece size) bytes: size tail.bin to make that `tail`
    let mut last = (tail + piece_size - base % piece_size) % piece_size;
    if last == 0 {
        last = piece_size;
    }
    Ok(vec![
        ("alpha.bin".to_owned(), alpha),
        ("empty.txt".to_owned(), 0),
        ("nested/beta.bin".to_owned(), beta),
        ("nested/deeper/gamma.bin".to_owned(), gamma),
        ("tail.bin".to_owned(), last),
    ])
}

/// Writes [`tree_layout`] under `root` (which becomes the torrent's top folder); returns the
/// files as (path, size).
pub fn payload_tree(
    root: &Path,
    total: u64,
    piece_size: u64,
    tail: u64,
    seed: u64,
) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for (i, (rel, size)) in tree_layout(total, piece_size, tail)?.into_iter().enumerate() {
        let path = root.join(&rel);
        // a distinct stream per file: identical files would hide misplaced pieces
        let file_seed = seed.wrapping_mul(1000).wrapping_add(i as u64);
        write_random_file(&path, size, file_seed)?;
        files.push((path, size));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = payload(dir.path(), 1001, 7).unwrap();
        let b = dir.path().join("b");
        write_random_file(&b, 1001, 7).unwrap();
        let c = dir.path().join("c");
        write_random_file(&c, 1001, 8).unwrap();
        let (a, b, c) = (fs::read(a).unwrap(), fs::read(b).unwrap(), fs::read(c).unwrap());
        assert_eq!(a.len(), 1001);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn tree_ends_with_a_short_last_piece() {
        for (total, piece, tail) in [(3 << 20, 32768, 5), (100_000, 16384, 16384), (0, 16384, 1)] {
            let layout = tree_layout(total, piece, tail).unwrap();
            let sum: u64 = layout.iter().map(|(_, s)| s).sum();
            assert_eq!(sum % piece, tail % piece, "{total} {piece} {tail}");
            assert!(layout.iter().any(|(p, s)| *s == 0 && p == "empty.txt"));
            assert!(layout.iter().any(|(p, _)| p.matches('/').count() == 2));
        }
        assert!(tree_layout(1000, 16384, 0).is_err());
        assert!(tree_layout(1000, 16384, 16385).is_err());
    }

    #[test]
    fn payload_tree_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = payload_tree(&dir.path().join("t"), 200_000, 16384, 3, 1).unwrap();
        assert_eq!(files.len(), 5);
        for (path, size) in files {
            assert_eq!(fs::metadata(path).unwrap().len(), size);
        }
    }
}
