//! Where each piece's bytes live: the torrent is one long byte string cut into pieces, and the
//! same string cut into files; this module maps one cut onto the other.

use std::ops::Range;

use shoal_proto::piece_sizes::{PieceSizes, TooManyPieces};

use super::error::StorageError;

/// One file of the torrent, in metainfo order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Relative path components (for a multi-file torrent, including its top folder). The
    /// metainfo parser has validated them; file storage checks them again before touching disk.
    pub path: Vec<String>,
    pub length: u64,
    /// A BEP 47 pad file: never written to disk, reads as zeros.
    pub padding: bool,
}

impl FileSpec {
    pub fn new(path: &[&str], length: u64) -> Self {
        FileSpec { path: path.iter().map(|c| (*c).to_owned()).collect(), length, padding: false }
    }

    pub fn padding(length: u64) -> Self {
        FileSpec { path: vec![".pad".to_owned(), length.to_string()], length, padding: true }
    }
}

/// A run of bytes of one file that belongs to a requested range of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub file_index: usize,
    /// Where the run starts inside the file.
    pub file_offset: u64,
    pub len: u32,
    /// Where the run starts inside the requested range (an index into the caller's buffer).
    pub range_offset: u32,
}

/// The piece/file geometry of one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLayout {
    sizes: PieceSizes,
    files: Vec<FileSpec>,
    /// Offset of each file's first byte in the torrent's byte string.
    file_starts: Vec<u64>,
    piece_count: u32,
}

impl StorageLayout {
    pub fn new(piece_length: u32, files: Vec<FileSpec>) -> Result<Self, StorageError> {
        if piece_length == 0 {
            return Err(StorageError::ZeroPieceLength);
        }
        let mut file_starts = Vec::with_capacity(files.len());
        let mut total_length: u64 = 0;
        for file in &files {
            file_starts.push(total_length);
            total_length =
                total_length.checked_add(file.length).ok_or(StorageError::TotalLengthOverflow)?;
        }
        let sizes = PieceSizes::new(piece_length, total_length);
        let piece_count = sizes
            .piece_count()
            .map_err(|TooManyPieces(count)| StorageError::TooManyPieces { count })?;
        Ok(StorageLayout { sizes, files, file_starts, piece_count })
    }

    pub fn piece_length(&self) -> u32 {
        self.sizes.piece_length()
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    pub fn total_length(&self) -> u64 {
        self.sizes.total_length()
    }

    pub fn files(&self) -> &[FileSpec] {
        &self.files
    }

    /// The bytes of the torrent that file `index` holds, or `None` for an unknown file.
    pub fn file_range(&self, index: usize) -> Option<Range<u64>> {
        let start = *self.file_starts.get(index)?;
        let len = self.files.get(index)?.length;
        Some(start..start + len)
    }

    /// The pieces that overlap file `index` (empty for a zero-length file), e.g. to turn a file
    /// selection into wanted pieces.
    pub fn file_pieces(&self, index: usize) -> Option<Range<u32>> {
        Some(self.sizes.pieces_overlapping(self.file_range(index)?))
    }

    /// Length of `piece`: the piece length, except for a shorter last piece.
    pub fn piece_len(&self, piece: u32) -> Result<u32, StorageError> {
        let out_of_range = StorageError::PieceOutOfRange { piece, count: self.piece_count };
        self.sizes.piece_len(piece).ok_or(out_of_range)
    }

    /// Offset of `piece`'s first byte in the torrent.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.sizes.piece_length())
    }

    /// Checks that `len` bytes at `offset` lie inside `piece`.
    pub fn check_block(&self, piece: u32, offset: u32, len: usize) -> Result<(), StorageError> {
        let piece_len = self.piece_len(piece)?;
        let len = len as u64;
        if u64::from(offset) + len > u64::from(piece_len) {
            return Err(StorageError::BlockOutOfRange { piece, offset, len, piece_len });
        }
        Ok(())
    }

    /// The file runs that make up `len` bytes at `offset` in `piece`, in order. Zero-length
    /// files never appear; pad files do (the storage decides what they mean).
    pub fn segments(
        &self,
        piece: u32,
        offset: u32,
        len: u32,
    ) -> Result<Segments<'_>, StorageError> {
        self.check_block(piece, offset, len as usize)?;
        let start = self.piece_offset(piece) + u64::from(offset);
        let file_index = self.file_containing(start);
        Ok(Segments { layout: self, file_index, position: start, remaining: len, range_offset: 0 })
    }

    /// All of `piece`'s file runs.
    pub fn piece_segments(&self, piece: u32) -> Result<Segments<'_>, StorageError> {
        let len = self.piece_len(piece)?;
        self.segments(piece, 0, len)
    }

    /// The file holding the torrent's byte at `position` (which must be below the total
    /// length): the last file starting at or before it. That file cannot be empty: a file after
    /// an empty one starts where the empty one does, so the empty one is never the last.
    fn file_containing(&self, position: u64) -> usize {
        self.file_starts.partition_point(|&s| s <= position).saturating_sub(1)
    }
}

/// Iterator returned by [`StorageLayout::segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    layout: &'a StorageLayout,
    file_index: usize,
    position: u64,
    remaining: u32,
    range_offset: u32,
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        while self.remaining > 0 {
            let file = self.layout.files.get(self.file_index)?;
            let start = *self.layout.file_starts.get(self.file_index)?;
            let end = start + file.length;
            if self.position >= end {
                self.file_index += 1;
                continue;
            }
            let len = (end - self.position).min(u64::from(self.remaining)) as u32;
            let segment = Segment {
                file_index: self.file_index,
                file_offset: self.position - start,
                len,
                range_offset: self.range_offset,
            };
            self.position += u64::from(len);
            self.remaining -= len;
            self.range_offset += len;
            self.file_index += 1;
            return Some(segment);
        }
        None
    }
}
