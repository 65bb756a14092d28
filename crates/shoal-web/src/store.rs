//! The tab's piece store: everything lives in memory and goes when the tab closes.
//!
//! Pieces are assembled block by block, handed out whole for hashing, and kept once
//! verified. With a budget (a torrent larger than the memory we may spend) verified pieces
//! are dropped by the same rules as the native bounded store
//! ([`shoal_proto::eviction`]): passed pieces first, never those a reader is about to play.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use shoal_proto::eviction;
use shoal_proto::streaming::ReaderWindow;
use shoal_proto::PieceSizes;

/// Why a write was refused. The core only writes blocks it requested, so these mean a bug
/// or a torrent whose geometry changed under us; the block is dropped either way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("piece {0} is out of range")]
    NoSuchPiece(u32),
    #[error("block at {offset}+{len} does not fit piece {piece} of {piece_len} bytes")]
    OutOfBounds { piece: u32, offset: u32, len: usize, piece_len: u32 },
}

pub struct PieceStore {
    sizes: PieceSizes,
    assembling: HashMap<u32, Vec<u8>>,
    verified: HashMap<u32, Bytes>,
    /// Pieces taken out for hashing: their bytes are alive in the hasher, so they stay
    /// counted as resident until the verdict.
    hashing: HashSet<u32>,
    budget: Option<u64>,
    resident: u64,
    peak: u64,
}

impl PieceStore {
    /// A store for a torrent of this geometry; `budget` bounds the bytes held, `None` keeps
    /// everything.
    pub fn new(piece_length: u32, total_length: u64, budget: Option<u64>) -> Self {
        PieceStore {
            sizes: PieceSizes::new(piece_length, total_length),
            assembling: HashMap::new(),
            verified: HashMap::new(),
            hashing: HashSet::new(),
            budget,
            resident: 0,
            peak: 0,
        }
    }

    /// Length of `piece`; 0 past the end.
    pub fn piece_len(&self, piece: u32) -> u32 {
        self.sizes.piece_len(piece).unwrap_or(0)
    }

    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Bytes held now (assembling and verified).
    pub fn resident(&self) -> u64 {
        self.resident
    }

    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The most a reader's read-ahead may ask for under the budget.
    pub fn max_readahead(&self) -> Option<u64> {
        let piece_length = u64::from(self.sizes.piece_length());
        self.budget.map(|b| eviction::windows_budget(b).max(piece_length))
    }

    pub fn has(&self, piece: u32) -> bool {
        self.verified.contains_key(&piece)
    }

    /// Copies a block into the piece being assembled.
    pub fn write(&mut self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StoreError> {
        let piece_len = self.piece_len(piece);
        if piece_len == 0 {
            return Err(StoreError::NoSuchPiece(piece));
        }
        let end = offset as usize + data.len();
        if end > piece_len as usize {
            return Err(StoreError::OutOfBounds { piece, offset, len: data.len(), piece_len });
        }
        let buffer = self.assembling.entry(piece).or_insert_with(|| {
            self.resident += u64::from(piece_len);
            vec![0; piece_len as usize]
        });
        buffer[offset as usize..end].copy_from_slice(data);
        self.peak = self.peak.max(self.resident);
        Ok(())
    }

    /// The assembled piece, taken out for hashing. Put it back with [`Self::verified`] if it
    /// passes; if it fails it is simply dropped with [`Self::discard`].
    pub fn take_assembled(&mut self, piece: u32) -> Option<Vec<u8>> {
        let data = self.assembling.remove(&piece)?;
        self.hashing.insert(piece);
        Some(data)
    }

    /// A piece whose hash checked out (after [`Self::take_assembled`], or one we seed).
    pub fn verified(&mut self, piece: u32, data: Bytes) {
        let len = data.len() as u64;
        let was_hashing = self.hashing.remove(&piece);
        match self.verified.insert(piece, data) {
            // A piece out for hashing was still counted as resident; a seeded one was not.
            None if !was_hashing => self.resident += len,
            None => {}
            Some(old) if was_hashing => {
                self.resident = self.resident.saturating_sub(old.len() as u64)
            }
            Some(_) => {}
        }
        self.peak = self.peak.max(self.resident);
    }

    /// A piece taken for hashing that failed: its bytes are gone.
    pub fn discard(&mut self, piece: u32) {
        if self.hashing.remove(&piece) {
            self.resident = self.resident.saturating_sub(u64::from(self.piece_len(piece)));
        }
    }

    /// A verified piece's bytes, for uploads and readers.
    pub fn piece(&self, piece: u32) -> Option<&Bytes> {
        self.verified.get(&piece)
    }

    /// `len` bytes at torrent offset `offset`, when every piece they touch is verified.
    pub fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        self.read_verified(offset, len).filter(|out| out.len() == len)
    }

    /// The verified bytes at torrent offset `offset`, at most `max_len`: as far as the pieces
    /// from there on are verified, one after the other; `None` while the first one is not.
    /// What a stream hands its consumer: each piece as soon as it is there.
    pub fn read_prefix(&self, offset: u64, max_len: usize) -> Option<Vec<u8>> {
        self.read_verified(offset, max_len).filter(|out| !out.is_empty() || max_len == 0)
    }

    /// Bytes from `offset`, up to `len`, until the first piece that is not verified.
    fn read_verified(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let end = offset.checked_add(len as u64)?;
        if end > self.sizes.total_length() || self.sizes.piece_length() == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        for piece in self.sizes.pieces_overlapping(offset..end) {
            let Some(data) = self.verified.get(&piece) else { break };
            let bytes = self.sizes.piece_range(piece)?;
            // Both inside the piece, which is in memory: they fit in usize.
            let from = (offset.max(bytes.start) - bytes.start) as usize;
            let to = (end.min(bytes.end) - bytes.start) as usize;
            out.extend_from_slice(data.get(from..to)?);
        }
        Some(out)
    }

    /// Whether every piece under `offset..offset + len` is verified.
    pub fn has_range(&self, offset: u64, len: u64) -> bool {
        if self.sizes.piece_length() == 0 {
            return true;
        }
        let Some(end) = offset.checked_add(len) else { return false };
        self.sizes.pieces_overlapping(offset..end).all(|p| self.has(p))
    }

    /// Drops verified pieces to stay within the budget, by the eviction rules; returns them
    /// so the core can forget it has them.
    pub fn enforce_budget(&mut self, windows: &[ReaderWindow]) -> Vec<u32> {
        let Some(budget) = self.budget else { return Vec::new() };
        let target = eviction::resident_target(budget);
        if self.resident <= target {
            return Vec::new();
        }
        let mut held: Vec<u32> = self.verified.keys().copied().collect();
        held.sort_unstable();
        let piece_length = self.sizes.piece_length();
        let evict = eviction::choose(&held, self.resident, target, piece_length, windows, |p| {
            u64::from(self.piece_len(p))
        });
        for &piece in &evict {
            if let Some(data) = self.verified.remove(&piece) {
                self.resident = self.resident.saturating_sub(data.len() as u64);
            }
        }
        evict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(position: u64, readahead: u64, end: u64) -> ReaderWindow {
        ReaderWindow { position, end, readahead }
    }

    #[test]
    fn assembles_verifies_and_reads_across_pieces() {
        // 3 pieces of 4 bytes, the last one 2 bytes
        let mut store = PieceStore::new(4, 10, None);
        assert_eq!(store.piece_len(2), 2);
        assert_eq!(store.piece_len(3), 0);
        for piece in 0..3u32 {
            let len = store.piece_len(piece) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (piece * 4) as u8 + i as u8).collect();
            store.write(piece, 0, &bytes[..1]).expect("first block");
            store.write(piece, 1, &bytes[1..]).expect("rest");
            assert!(!store.has(piece), "not verified yet");
            let assembled = store.take_assembled(piece).expect("assembled");
            assert_eq!(assembled, bytes);
            store.verified(piece, assembled.into());
        }
        assert_eq!(store.resident(), 10);
        assert_eq!(store.read(0, 10).expect("all"), (0..10u8).collect::<Vec<_>>());
        assert_eq!(store.read(3, 6).expect("across"), vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(store.read(9, 1).expect("last byte"), vec![9]);
        assert_eq!(store.read(9, 2), None, "past the end");
        assert!(store.has_range(0, 10));
    }

    #[test]
    fn a_prefix_read_stops_at_the_first_missing_piece() {
        // 4 pieces of 4 bytes; 0, 1 and 3 verified, 2 missing
        let mut store = PieceStore::new(4, 16, None);
        for piece in [0u32, 1, 3] {
            store.verified(piece, vec![piece as u8; 4].into());
        }
        assert_eq!(store.read_prefix(2, 100), None, "past the end of the torrent");
        assert_eq!(store.read_prefix(2, 12).expect("two pieces"), vec![0, 0, 1, 1, 1, 1]);
        assert_eq!(store.read(2, 12), None, "a whole read waits for piece 2");
        assert_eq!(store.read_prefix(5, 2).expect("within piece 1"), vec![1, 1]);
        assert_eq!(store.read_prefix(8, 4), None, "the first piece is missing");
        assert_eq!(store.read_prefix(12, 4).expect("the last piece"), vec![3; 4]);
        assert_eq!(store.read_prefix(8, 0), Some(Vec::new()), "nothing asked, nothing to wait for");
    }

    #[test]
    fn refuses_blocks_outside_the_piece() {
        let mut store = PieceStore::new(4, 10, None);
        assert_eq!(store.write(3, 0, &[1]), Err(StoreError::NoSuchPiece(3)));
        assert!(matches!(store.write(2, 1, &[1, 2]), Err(StoreError::OutOfBounds { .. })));
        assert!(matches!(store.write(0, 4, &[1]), Err(StoreError::OutOfBounds { .. })));
        assert_eq!(store.resident(), 0, "a refused block allocates nothing");
    }

    #[test]
    fn missing_pieces_make_reads_wait_and_failed_ones_free_memory() {
        let mut store = PieceStore::new(4, 8, None);
        store.write(0, 0, &[0; 4]).expect("write");
        assert_eq!(store.read(0, 1), None, "unverified bytes are never read");
        let data = store.take_assembled(0).expect("assembled");
        assert_eq!(store.resident(), 4, "bytes out for hashing are still held");
        drop(data);
        store.discard(0);
        assert_eq!(store.resident(), 0);
        assert!(!store.has_range(0, 1));
    }

    #[test]
    fn budget_evicts_passed_pieces_and_never_the_window() {
        // 16 pieces of 1 KiB, budget 8 KiB: evict down to 6 KiB
        let mut store = PieceStore::new(1024, 16 * 1024, Some(8 * 1024));
        for piece in 0..10u32 {
            store.verified(piece, vec![piece as u8; 1024].into());
        }
        assert_eq!(store.peak(), 10 * 1024);
        // a reader at piece 7 with 2 KiB read-ahead: pieces 7 and 8 are protected
        let windows = [window(7 * 1024, 2048, 16 * 1024)];
        let evicted = store.enforce_budget(&windows);
        assert_eq!(evicted.len(), 4, "{evicted:?}");
        assert!(store.resident() <= 6 * 1024);
        assert!(store.has(7) && store.has(8), "the reader's window stays");
        for piece in &evicted {
            assert!(*piece < 7 || *piece > 8, "evicted {piece} inside the window");
            assert!(!store.has(*piece));
        }
        assert_eq!(store.max_readahead(), Some(2048));
    }

    #[test]
    fn without_a_budget_nothing_is_evicted() {
        let mut store = PieceStore::new(4, 40, None);
        for piece in 0..10u32 {
            store.verified(piece, vec![0; 4].into());
        }
        assert!(store.enforce_budget(&[]).is_empty());
        assert_eq!(store.resident(), 40);
    }
}
