//! Piece storage: where downloaded blocks are written, read back for peers and readers, and
//! hashed for verification.
//!
//! - [`layout`]: the piece/file geometry ([`StorageLayout`], [`FileSpec`], [`Segment`]).
//! - [`PieceStorage`]: what the driver calls, implemented by [`FileStorage`] (files on disk)
//!   and [`MemoryStorage`] (pieces in RAM).
//! - [`verify_existing`]: the recheck on start.
//!
//! # Threads
//!
//! Every method takes `&self` and the trait requires `Send + Sync`: the driver shares one
//! `Arc<dyn PieceStorage>` across a blocking thread pool and calls it from any of those threads
//! at once, never from the async I/O threads. File storage uses positional I/O, so there is no
//! shared cursor to lock; its only locks guard the handle cache and are never held during I/O.
//!
//! # Durability
//!
//! Writes go to the operating system's page cache and nothing is synced per block. That is
//! enough to survive the process being killed (even with `kill -9`): the kernel still holds
//! the data and writes it back. It is not enough for a power loss or a kernel crash; for that
//! the driver calls [`PieceStorage::flush`], which `fdatasync`s every file written since the
//! previous flush (including files whose handle was closed since). A sane policy for the
//! driver: flush when a file or the torrent completes, on a timer (e.g. every minute while
//! downloading) and on shutdown. Closing a handle does not sync (it would stall whichever
//! thread evicted it), and folder entries are not synced either.
//!
//! None of this is load-bearing for correctness: there is no resume file that could disagree
//! with the data. The restart path is always [`verify_existing`], which trusts only hashes, so
//! whatever a crash lost is found missing and downloaded again.

mod error;
mod file;
mod handles;
mod hashing;
pub mod layout;
mod memory;
mod partfile;
mod positional;
mod recheck;
mod safe_path;

pub use error::{IoAction, StorageError};
pub use file::{FileStorage, FileStorageOptions};
pub use layout::{FileSpec, Segment, Segments, StorageLayout};
pub use memory::MemoryStorage;
pub use recheck::verify_existing;
pub use safe_path::check_component;

use crate::resume::StorageStamps;

/// Block storage as the driver sees it. Blocks are addressed like the wire protocol addresses
/// them, `(piece, offset in piece)`, so the driver never does file arithmetic.
///
/// Why this shape:
/// - hashing lives in the storage because only it knows where a piece's bytes are (several
///   files, a part file, pad zeros, memory) and can stream them through the hasher in chunks
///   instead of assembling a piece-sized copy first;
/// - `may_hold_piece` lets a recheck skip pieces that cannot be present without reading them;
/// - `layout` is exposed so generic code (the recheck) cannot be handed a mismatched layout.
pub trait PieceStorage: Send + Sync {
    /// The geometry this storage was opened with.
    fn layout(&self) -> &StorageLayout;

    /// Stores `data` at `offset` in `piece`. The block may span files.
    fn write_block(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError>;

    /// Fills `buf` with the bytes at `offset` in `piece`.
    fn read_block(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<(), StorageError>;

    /// SHA-1 of `piece`'s bytes as stored (pad bytes as zeros).
    fn hash_piece(&self, piece: u32) -> Result<[u8; 20], StorageError>;

    /// `false` when some of `piece`'s bytes certainly are not stored (a file missing or too
    /// short, a piece not resident); `true` means "worth hashing", not "good".
    fn may_hold_piece(&self, piece: u32) -> Result<bool, StorageError>;

    /// Makes every write that completed before this call durable (see the module docs).
    fn flush(&self) -> Result<(), StorageError>;

    /// Every selected piece is verified: create what no piece write creates (zero-length
    /// files), then flush.
    fn complete(&self) -> Result<(), StorageError> {
        self.flush()
    }

    /// The files holding this storage's bytes as they are now, for a resume record
    /// ([`crate::resume`]); `None` when nothing outlives the process (memory).
    fn stamps(&self) -> Option<StorageStamps> {
        None
    }
}
