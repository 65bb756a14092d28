//! Finding out, on start, which pieces are already on disk and good.

use super::error::StorageError;
use super::PieceStorage;

/// Hashes every piece the storage may hold and compares it with `hashes` (one per piece, in
/// order). Pieces whose bytes cannot all be there (a missing file, a file too short, a piece
/// not in memory) are marked absent without being read, so a fresh download rechecks in a
/// moment. `progress` is told how many pieces are done after each one.
///
/// A piece whose file vanishes or shrinks while it is being read counts as absent; any other
/// I/O error (permissions, a failing disk) stops the recheck, since every later piece would
/// probably fail the same way and the user needs to know.
pub fn verify_existing<S: PieceStorage + ?Sized>(
    storage: &S,
    hashes: &[[u8; 20]],
    mut progress: impl FnMut(u32),
) -> Result<Vec<bool>, StorageError> {
    let count = storage.layout().piece_count();
    if hashes.len() != count as usize {
        return Err(StorageError::HashCountMismatch { expected: count, got: hashes.len() });
    }
    let mut have = Vec::with_capacity(hashes.len());
    for (piece, expected) in (0..count).zip(hashes) {
        have.push(piece_is_good(storage, piece, expected)?);
        progress(piece + 1);
    }
    Ok(have)
}

fn piece_is_good<S: PieceStorage + ?Sized>(
    storage: &S,
    piece: u32,
    expected: &[u8; 20],
) -> Result<bool, StorageError> {
    if !storage.may_hold_piece(piece)? {
        return Ok(false);
    }
    match storage.hash_piece(piece) {
        Ok(actual) => Ok(&actual == expected),
        Err(e) if e.is_missing_data() => Ok(false),
        Err(e) => Err(e),
    }
}
