//! How a torrent's bytes are cut into pieces: piece `i` starts at `i * piece_length` and is
//! `piece_length` long, except the last, which holds the remainder. The metainfo, the picker
//! and every driver's store ask this one place, so they cannot disagree about the last piece.
//!
//! The same cut serves anything cut into equal parts (the info dictionary's 16 KiB metadata
//! pieces, BEP 9).

use std::ops::Range;

/// More pieces than a `u32` index can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} pieces do not fit a 32-bit piece index")]
pub struct TooManyPieces(pub u64);

/// `total_length` bytes cut into pieces of `piece_length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceSizes {
    piece_length: u32,
    total_length: u64,
}

impl PieceSizes {
    pub const fn new(piece_length: u32, total_length: u64) -> Self {
        PieceSizes { piece_length, total_length }
    }

    pub const fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub const fn total_length(&self) -> u64 {
        self.total_length
    }

    /// How many pieces hold the bytes, unbounded: each caller checks it against its own limit.
    /// 0 for no bytes, and for a piece length of 0 (such pieces hold nothing; whoever accepts
    /// that geometry has no piece to fetch).
    pub const fn count(&self) -> u64 {
        match self.piece_length {
            0 => 0,
            len => self.total_length.div_ceil(len as u64),
        }
    }

    /// [`count`](Self::count) as a piece index bound.
    pub fn piece_count(&self) -> Result<u32, TooManyPieces> {
        let count = self.count();
        u32::try_from(count).map_err(|_| TooManyPieces(count))
    }

    /// Length of `piece`; `None` past the last piece.
    pub fn piece_len(&self, piece: u32) -> Option<u32> {
        let start = self.piece_start(piece)?;
        // At most piece_length, so it fits in u32.
        Some((self.total_length - start).min(u64::from(self.piece_length)) as u32)
    }

    /// The bytes `piece` covers; `None` past the last piece.
    pub fn piece_range(&self, piece: u32) -> Option<Range<u64>> {
        let start = self.piece_start(piece)?;
        Some(start..start + u64::from(self.piece_len(piece)?))
    }

    /// The pieces that hold a byte of `bytes` (empty for an empty range). Bytes past the end
    /// map to the pieces they would be in, so a caller asking whether it has them sees it
    /// does not.
    pub fn pieces_overlapping(&self, bytes: Range<u64>) -> Range<u32> {
        if bytes.is_empty() || self.piece_length == 0 {
            return 0..0;
        }
        let len = u64::from(self.piece_length);
        let index = |i: u64| u32::try_from(i).unwrap_or(u32::MAX);
        index(bytes.start / len)..index(bytes.end.div_ceil(len))
    }

    /// Where `piece` starts, if it holds a byte.
    fn piece_start(&self, piece: u32) -> Option<u64> {
        // u32 * u32 fits in u64.
        let start = u64::from(piece) * u64::from(self.piece_length);
        (self.piece_length != 0 && start < self.total_length).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_last_piece_holds_the_remainder() {
        let sizes = PieceSizes::new(16384, 40_000);
        assert_eq!(sizes.count(), 3);
        assert_eq!(sizes.piece_count(), Ok(3));
        assert_eq!(sizes.piece_len(0), Some(16384));
        assert_eq!(sizes.piece_len(1), Some(16384));
        assert_eq!(sizes.piece_len(2), Some(40_000 - 2 * 16384));
        assert_eq!(sizes.piece_range(2), Some(32768..40_000));
    }

    #[test]
    fn a_full_last_piece_is_full() {
        let sizes = PieceSizes::new(4, 12);
        assert_eq!(sizes.count(), 3);
        assert_eq!(sizes.piece_len(2), Some(4));
        assert_eq!(sizes.piece_range(2), Some(8..12));
        assert_eq!(sizes.piece_len(3), None);
    }

    #[test]
    fn a_single_piece() {
        for total in [1, 7, 16] {
            let sizes = PieceSizes::new(16, total);
            assert_eq!(sizes.count(), 1, "{total} bytes");
            assert_eq!(sizes.piece_len(0), Some(total as u32));
            assert_eq!(sizes.piece_range(0), Some(0..total));
            assert_eq!(sizes.piece_len(1), None);
        }
    }

    #[test]
    fn nothing_to_cut() {
        for sizes in [PieceSizes::new(16384, 0), PieceSizes::new(0, 0), PieceSizes::new(0, 100)] {
            assert_eq!(sizes.count(), 0, "{sizes:?}");
            assert_eq!(sizes.piece_count(), Ok(0));
            assert_eq!(sizes.piece_len(0), None);
            assert_eq!(sizes.piece_range(0), None);
        }
        assert_eq!(PieceSizes::new(0, 100).pieces_overlapping(0..100), 0..0);
    }

    #[test]
    fn past_the_end_is_none() {
        let sizes = PieceSizes::new(16384, 40_000);
        assert_eq!(sizes.piece_len(3), None);
        assert_eq!(sizes.piece_range(3), None);
        assert_eq!(sizes.piece_len(u32::MAX), None);
        assert_eq!(sizes.piece_range(u32::MAX), None);
    }

    #[test]
    fn torrents_beyond_4_gib() {
        // 5 GiB + 1 byte in 1 MiB pieces: offsets and the remainder need 64 bits.
        let sizes = PieceSizes::new(1 << 20, 5 * GIB + 1);
        assert_eq!(sizes.piece_count(), Ok(5 * 1024 + 1));
        assert_eq!(sizes.piece_len(5 * 1024 - 1), Some(1 << 20));
        assert_eq!(sizes.piece_range(5 * 1024), Some(5 * GIB..5 * GIB + 1));
        assert_eq!(sizes.piece_len(5 * 1024), Some(1));
        assert_eq!(sizes.piece_len(5 * 1024 + 1), None);
        // The largest piece index with the largest piece length still has a start.
        let huge = PieceSizes::new(u32::MAX, u64::MAX);
        assert_eq!(huge.piece_len(u32::MAX), Some(u32::MAX));
    }

    #[test]
    fn counts_beyond_a_u32_are_refused() {
        let sizes = PieceSizes::new(1, u64::from(u32::MAX) + 1);
        assert_eq!(sizes.count(), u64::from(u32::MAX) + 1);
        assert_eq!(sizes.piece_count(), Err(TooManyPieces(u64::from(u32::MAX) + 1)));
        assert_eq!(PieceSizes::new(1, u64::from(u32::MAX)).piece_count(), Ok(u32::MAX));
    }

    #[test]
    fn pieces_under_a_byte_range() {
        let sizes = PieceSizes::new(4, 10);
        assert_eq!(sizes.pieces_overlapping(0..10), 0..3);
        assert_eq!(sizes.pieces_overlapping(3..5), 0..2);
        assert_eq!(sizes.pieces_overlapping(4..8), 1..2);
        assert_eq!(sizes.pieces_overlapping(9..10), 2..3);
        assert_eq!(sizes.pieces_overlapping(5..5), 0..0);
        assert_eq!(sizes.pieces_overlapping(10..13), 2..4, "past the end: pieces nobody has");
    }
}
