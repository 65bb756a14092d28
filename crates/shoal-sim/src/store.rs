//! A node's storage: blocks kept in memory as they were written.
//!
//! Blocks are stored as the `Bytes` the core handed over, which for a simulated transfer are
//! reference-counted slices of the seeder's content: a 200-node swarm holds one copy of the
//! file, not 200. Reads that line up with a stored block (the usual case: peers request the
//! blocks the picker cut) are zero-copy too.
//!
//! A store that knows the torrent's content ([`PieceStore::with_content`]) goes further: a
//! complete piece whose bytes are exactly the content's is kept as one bit, and reads of it
//! are slices of the content. A node then costs an eighth of a byte per piece it holds instead
//! of ~50 bytes per block, which is what lets ten thousand nodes hold a 1 GiB file. What reads
//! and hashes return is the same either way.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use shoal_proto::metainfo::Info;
use shoal_proto::PieceSizes;

/// How a completed piece is checked (`NetConfig::verify`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// SHA-1 of the piece against the torrent's hash, as a real client checks it.
    #[default]
    Sha1,
    /// The piece passes iff its bytes are the content's at that place: the verdict SHA-1 gives
    /// (barring a collision), without hashing. Blocks that are zero-copy slices of the
    /// content are recognised by address; anything else (a corrupted copy, bytes that went
    /// through the codec) is compared byte for byte. For swarms too big to hash every piece.
    /// Needs a store that knows the content ([`PieceStore::with_content`]), as the
    /// simulator's stores do.
    Identity,
}

pub struct PieceStore {
    sizes: PieceSizes,
    piece_count: u32,
    /// The torrent's content, if this store may keep pieces that equal it as bits.
    content: Option<Bytes>,
    /// One bit per piece: complete and exactly the content's bytes (not in `pieces`).
    whole: Vec<u64>,
    /// piece -> (offset -> data), for pieces being written and pieces that are not the
    /// content's. Writes never overlap: the core only writes whole blocks.
    pieces: BTreeMap<u32, BTreeMap<u32, Bytes>>,
}

impl PieceStore {
    pub fn new(info: &Info) -> Self {
        PieceStore {
            sizes: info.piece_sizes(),
            piece_count: info.piece_count(),
            content: None,
            whole: Vec::new(),
            pieces: BTreeMap::new(),
        }
    }

    /// A store that keeps complete pieces equal to `content` (the whole torrent's bytes) as
    /// one bit each. Content of the wrong length is ignored: the store then keeps blocks.
    pub fn with_content(info: &Info, content: Bytes) -> Self {
        let mut store = PieceStore::new(info);
        if content.len() as u64 == info.total_length {
            store.whole = vec![0; store.piece_count.div_ceil(64) as usize];
            store.content = Some(content);
        }
        store
    }

    fn is_whole(&self, piece: u32) -> bool {
        self.whole.get((piece / 64) as usize).is_some_and(|w| w & (1 << (piece % 64)) != 0)
    }

    fn set_whole(&mut self, piece: u32, on: bool) {
        if let Some(w) = self.whole.get_mut((piece / 64) as usize) {
            if on {
                *w |= 1 << (piece % 64);
            } else {
                *w &= !(1 << (piece % 64));
            }
        }
    }

    /// The content's bytes of `piece` (if the store knows the content).
    fn content_piece(&self, piece: u32) -> Option<Bytes> {
        let content = self.content.as_ref()?;
        let range = self.sizes.piece_range(piece)?;
        let (start, end) = (usize::try_from(range.start).ok()?, usize::try_from(range.end).ok()?);
        (end <= content.len()).then(|| content.slice(start..end))
    }

    /// Whether `data` is what the content holds at `offset` of `piece`, given that piece's
    /// content `expected`: the same address (a zero-copy slice of the content) or the same
    /// bytes.
    fn is_content(expected: &Bytes, offset: u32, data: &[u8]) -> bool {
        let Some(want) = expected.get(offset as usize..offset as usize + data.len()) else {
            return false;
        };
        std::ptr::eq(want.as_ptr(), data.as_ptr()) || want == data
    }

    /// Whether `piece` is complete and every byte of it is the content's.
    pub fn matches_content(&self, piece: u32) -> bool {
        if self.is_whole(piece) {
            return true;
        }
        let (Some(expected), Some(blocks)) = (self.content_piece(piece), self.pieces.get(&piece))
        else {
            return false;
        };
        let mut next = 0u32;
        for (&offset, data) in blocks {
            if offset != next || !Self::is_content(&expected, offset, data) {
                return false;
            }
            next += data.len() as u32;
        }
        next == self.piece_len(piece)
    }

    /// Whether `piece` passes its check: SHA-1 against `expected`, or (`Verify::Identity`)
    /// equality with the content. Either way it fails without an expected hash (no info).
    pub fn verify(&self, piece: u32, how: Verify, expected: Option<&[u8; 20]>) -> bool {
        match how {
            Verify::Sha1 => expected.is_some_and(|e| self.hash(piece).as_ref() == Some(e)),
            Verify::Identity => expected.is_some() && self.matches_content(piece),
        }
    }

    /// Turns `piece` into a bit if it is complete and the content's (memory only: reads and
    /// hashes are unchanged).
    fn collapse_if_content(&mut self, piece: u32) {
        let len = self.piece_len(piece);
        let Some(blocks) = self.pieces.get(&piece) else { return };
        // Cheap test first (the piece's end is there), so a piece is walked only near its end.
        let ends =
            blocks.last_key_value().is_some_and(|(&o, d)| o as usize + d.len() == len as usize);
        if ends && self.matches_content(piece) {
            self.pieces.remove(&piece);
            self.set_whole(piece, true);
        }
    }

    /// Length of `piece`; 0 past the end.
    pub fn piece_len(&self, piece: u32) -> u32 {
        self.sizes.piece_len(piece).unwrap_or(0)
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
        if self.is_whole(piece) {
            let Some(expected) = self.content_piece(piece) else { return false };
            if Self::is_content(&expected, offset, &data) {
                return true; // Nothing changes.
            }
            // Other bytes over a piece kept as a bit: it becomes blocks again, the content's
            // around the new ones.
            self.set_whole(piece, false);
            let len = expected.len() as u32;
            let blocks = self.pieces.entry(piece).or_default();
            if offset > 0 {
                blocks.insert(0, expected.slice(..offset as usize));
            }
            if end < u64::from(len) {
                blocks.insert(end as u32, expected.slice(end as usize..));
            }
        }
        let blocks = self.pieces.entry(piece).or_default();
        blocks.insert(offset, data);
        // A piece is complete when its last block arrives; only then can it become a bit.
        if self.content.is_some() {
            self.collapse_if_content(piece);
        }
        true
    }

    /// `length` bytes at `offset` of `piece`, or `None` if any of them was never written.
    pub fn read(&self, piece: u32, offset: u32, length: u32) -> Option<Bytes> {
        let end = offset.checked_add(length)?;
        if self.is_whole(piece) {
            let bytes = self.content_piece(piece)?;
            return (end as usize <= bytes.len())
                .then(|| bytes.slice(offset as usize..end as usize));
        }
        let blocks = self.pieces.get(&piece)?;
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
        if self.is_whole(piece) {
            return Some(Sha1::digest(self.content_piece(piece)?).into());
        }
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
        self.set_whole(piece, false);
    }

    /// Pieces kept as blocks (being written, or not the content's), for memory accounting.
    pub fn pieces_in_blocks(&self) -> usize {
        self.pieces.len()
    }

    /// Everything, if every piece is complete.
    pub fn assemble(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.sizes.total_length() as usize);
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

    /// Identity verification passes a piece iff its bytes are the content's, wherever they
    /// are stored; a store that knows the content keeps such a piece as a bit.
    #[test]
    fn identity_verification_compares_bytes_not_addresses() {
        let t = TestTorrent::random(4, 3 * 32 * 1024, 32 * 1024).expect("fixture");
        let info = &t.metainfo.info;
        let hash = |p: u32| Some(&info.piece_hashes[p as usize]);
        let mut store = PieceStore::with_content(info, t.content.clone());

        // Zero-copy slices of the content (how blocks travel between simulated nodes).
        let p0 = t.piece(0);
        assert!(store.write(0, 0, p0.slice(..16384)));
        assert!(!store.verify(0, Verify::Identity, hash(0)), "half a piece");
        assert!(store.write(0, 16384, p0.slice(16384..)));
        assert!(store.verify(0, Verify::Identity, hash(0)));
        assert!(store.verify(0, Verify::Sha1, hash(0)));
        assert_eq!(store.pieces_in_blocks(), 0, "a piece equal to the content is a bit");
        assert_eq!(store.read(0, 100, 20000).as_deref(), Some(&p0[100..20100]));

        // The right bytes from another allocation (as the codec delivers them) pass.
        let p1 = t.piece(1);
        assert!(store.write(1, 0, Bytes::from(p1[..16384].to_vec())));
        assert!(store.write(1, 16384, Bytes::from(p1[16384..].to_vec())));
        assert!(store.verify(1, Verify::Identity, hash(1)));
        assert_eq!(store.pieces_in_blocks(), 0);

        // A corrupted block is a copy with one byte flipped: it fails, as with SHA-1.
        let p2 = t.piece(2);
        let mut bad = p2[16384..].to_vec();
        bad[100] ^= 1;
        assert!(store.write(2, 0, p2.slice(..16384)));
        assert!(store.write(2, 16384, Bytes::from(bad)));
        assert!(!store.verify(2, Verify::Identity, hash(2)));
        assert!(!store.verify(2, Verify::Sha1, hash(2)));
        assert_eq!(store.pieces_in_blocks(), 1, "a wrong piece keeps its blocks");
        // Content's bytes at another place of the torrent are wrong here.
        store.clear(2);
        assert!(store.write(2, 0, p2.slice(..16384)));
        assert!(store.write(2, 16384, p0.slice(16384..)));
        assert!(!store.verify(2, Verify::Identity, hash(2)));
        // Without an expected hash (no info), nothing passes.
        assert!(!store.verify(0, Verify::Identity, None));

        // Different bytes written over a piece kept as a bit: it is blocks again.
        assert!(store.write(0, 0, Bytes::from(vec![7u8; 16384])));
        assert_eq!(
            store.read(0, 16380, 8).as_deref(),
            Some(&[7, 7, 7, 7, p0[16384], p0[16385], p0[16386], p0[16387]][..])
        );
        assert!(!store.verify(0, Verify::Identity, hash(0)));
        assert!(!store.verify(0, Verify::Sha1, hash(0)));
        store.clear(0);
        assert_eq!(store.read(0, 0, 1), None);

        // A store that does not know the content keeps blocks and cannot vouch for them.
        let mut plain = PieceStore::new(info);
        assert!(plain.write(1, 0, t.piece(1)));
        assert!(plain.verify(1, Verify::Sha1, hash(1)));
        assert!(!plain.verify(1, Verify::Identity, hash(1)));
    }
}
