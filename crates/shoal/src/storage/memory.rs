//! Pieces kept in memory, allocated on first write and dropped on demand: the base for the
//! bounded streaming store and for tests and simulations.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::error::StorageError;
use super::hashing::sha1;
use super::layout::StorageLayout;
use super::PieceStorage;

#[derive(Default)]
struct Pieces {
    data: HashMap<u32, Box<[u8]>>,
    bytes: u64,
}

pub struct MemoryStorage {
    layout: StorageLayout,
    pieces: RwLock<Pieces>,
}

impl MemoryStorage {
    pub fn new(layout: StorageLayout) -> Self {
        MemoryStorage { layout, pieces: RwLock::new(Pieces::default()) }
    }

    /// Drops `piece`'s bytes; returns whether it was resident.
    pub fn evict(&self, piece: u32) -> bool {
        let mut pieces = self.write();
        match pieces.data.remove(&piece) {
            Some(buf) => {
                pieces.bytes -= buf.len() as u64;
                true
            }
            None => false,
        }
    }

    /// Bytes held by resident pieces.
    pub fn resident_bytes(&self) -> u64 {
        self.read().bytes
    }

    pub fn is_resident(&self, piece: u32) -> bool {
        self.read().data.contains_key(&piece)
    }

    /// Resident pieces, in no particular order.
    pub fn resident_pieces(&self) -> Vec<u32> {
        self.read().data.keys().copied().collect()
    }

    // Lock poisoning only means another thread panicked mid-copy; the map itself stays valid
    // (a piece with torn bytes fails its hash check like any bad data).
    fn read(&self) -> RwLockReadGuard<'_, Pieces> {
        self.pieces.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Pieces> {
        self.pieces.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The runs (offset in the range, length) of a block that belong to pad files. Pad bytes
    /// are never stored, so they read as the zeros the piece was allocated with, as in file
    /// storage.
    fn pad_runs(&self, piece: u32, offset: u32, len: u32) -> Result<Vec<(u32, u32)>, StorageError> {
        let files = self.layout.files();
        Ok(self
            .layout
            .segments(piece, offset, len)?
            .filter(|s| files.get(s.file_index).is_some_and(|f| f.padding))
            .map(|s| (s.range_offset, s.len))
            .collect())
    }
}

impl PieceStorage for MemoryStorage {
    fn layout(&self) -> &StorageLayout {
        &self.layout
    }

    fn write_block(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        self.layout.check_block(piece, offset, data.len())?;
        let piece_len = self.layout.piece_len(piece)?;
        let pads = self.pad_runs(piece, offset, data.len() as u32)?;
        let mut pieces = self.write();
        let pieces = &mut *pieces;
        let buf = pieces.data.entry(piece).or_insert_with(|| {
            pieces.bytes += u64::from(piece_len);
            vec![0; piece_len as usize].into_boxed_slice()
        });
        let start = offset as usize;
        let target =
            buf.get_mut(start..start + data.len()).ok_or(StorageError::BlockOutOfRange {
                piece,
                offset,
                len: data.len() as u64,
                piece_len,
            })?;
        target.copy_from_slice(data);
        for (at, len) in pads {
            if let Some(run) = target.get_mut(at as usize..(at + len) as usize) {
                run.fill(0);
            }
        }
        Ok(())
    }

    fn read_block(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        self.layout.check_block(piece, offset, buf.len())?;
        let pieces = self.read();
        let stored = pieces.data.get(&piece).ok_or(StorageError::NotResident { piece })?;
        let start = offset as usize;
        let source =
            stored.get(start..start + buf.len()).ok_or(StorageError::NotResident { piece })?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn hash_piece(&self, piece: u32) -> Result<[u8; 20], StorageError> {
        self.layout.piece_len(piece)?;
        let pieces = self.read();
        let stored = pieces.data.get(&piece).ok_or(StorageError::NotResident { piece })?;
        Ok(sha1(stored))
    }

    fn may_hold_piece(&self, piece: u32) -> Result<bool, StorageError> {
        self.layout.piece_len(piece)?;
        Ok(self.is_resident(piece))
    }

    /// Nothing to make durable.
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
