//! A node's storage: blocks kept in memory as they were written.
//!
//! Blocks are stored as the `Bytes` the core handed over, which for a simulated transfer are
//! reference-counted slices of the seeder's content: a 200-node swarm holds one copy of the
//! file, not 200. Reads that line up with a stored block (the usual case: peers request the
//! blocks the picker cut) are zero-copy too.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use shoal_proto::metainfo::Info;

pub struct PieceStore {
    piece_length: u32,
    total_length: u64,
    piece_count: u32,
    /// piece -> (offset -> data). Writes never overlap: the core only writes whole blocks.
    pieces: BTreeMap<u32, BTreeMap<u32, Bytes>>,
}

impl PieceStore {
    pub fn new(info: &Info) -> Self {
        PieceStore {
            piece_length: info.piece_length,
            total_length: info.total_length,
            piece_count: info.piece_count(),
            pieces: BTreeMap::new(),
        }
    }

    pub fn piece_len(&self, piece: u32) -> u32 {
        if piece >= self.piece_count {
            return 0;
        }
        let start = u64::from(piece) * u64::from(self.piece_length);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Stores `data` at `offset` of `piece`; out-of-range writes are ignored (and reported).
    pub fn write(&mut self, piece: u32, offset: u32, data: Bytes) -> bool {
        let end = u64::from(offset) + data.len() as u64;
        if piece >= self.piece_count || end > u64::from(self.piece_len(piece)) || data.is_empty() {
            return false;
        }
        self.pieces.entry(piece).or_default().insert(offset, data);
        true
    }

    /// `length` bytes at `offset` of `piece`, or `None` if any of them was never written.
    pub fn read(&self, piece: u32, offset: u32, length: u32) -> Option<Bytes> {
        let blocks = self.pieces.get(&piece)?;
        let end = offset.checked_add(length)?;
        let (&start, first) = blocks.range(..=offset).next_back()?;
        let skip = (offset - start) as usize;
        if skip + length as usize <= first.len() {
            return Some(first.slice(skip..skip + length as usize));
        }
        // Spans stored blocks: copy them together.
        let mut out = BytesMut::with_capacity(length as usize);
        let mut at = offset;
        for (&block_start, data) in blocks.range(start..) {
            if at >= end {
                break;
            }
            let block_end = block_start + data.len() as u32;
            if block_start > at || block_end <= at {
                return None; // a gap
            }
            let from = (at - block_start) as usize;
            let to = (end.min(block_end) - block_start) as usize;
            out.extend_from_slice(&data[from..to]);
            at = block_start + to as u32;
        }
        (at == end).then(|| out.freeze())
    }

    /// SHA-1 of the whole piece, or `None` if part of it is missing.
    pub fn hash(&self, piece: u32) -> Option<[u8; 20]> {
        let blocks = self.pieces.get(&piece)?;
        let mut hasher = Sha1::new();
        let mut next = 0u32;
        for (&offset, data) in blocks {
            if offset != next {
                return None;
            }
            hasher.update(data);
            next += data.len() as u32;
        }
        (next == self.piece_len(piece)).then(|| hasher.finalize().into())
    }

    /// Forgets what was written for a piece (it failed its hash check and will be refetched).
    pub fn clear(&mut self, piece: u32) {
        self.pieces.remove(&piece);
    }

    /// Everything, if every piece is complete.
    pub fn assemble(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.total_length as usize);
        for piece in 0..self.piece_count {
            out.extend_from_slice(&self.read(piece, 0, self.piece_len(piece))?);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::TestTorrent;

    #[test]
    fn reads_across_blocks_and_hashes_whole_pieces() {
        let t = TestTorrent::random(3, 40_000, 32 * 1024).expect("fixture");
        let mut store = PieceStore::new(&t.metainfo.info);
        assert_eq!(store.piece_count(), 2);
        assert_eq!(store.piece_len(1), 40_000 - 32 * 1024);
        let p0 = t.piece(0);
        assert!(store.write(0, 0, p0.slice(..16384)));
        assert_eq!(store.hash(0), None, "half a piece has no hash");
        assert!(store.write(0, 16384, p0.slice(16384..)));
        assert_eq!(store.hash(0), Some(t.metainfo.info.piece_hashes[0]));
        assert_eq!(store.read(0, 16000, 1000).as_deref(), Some(&p0[16000..17000]));
        assert_eq!(store.read(1, 0, 10), None);
        assert!(!store.write(1, 0, Bytes::from(vec![0; 40_000])), "longer than the piece");
        store.clear(0);
        assert_eq!(store.read(0, 0, 1), None);
    }
}
