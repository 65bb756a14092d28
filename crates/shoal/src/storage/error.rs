//! The one error type of the storage layer.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What the storage was doing when the operating system said no; part of the message so a
/// user can tell "could not create the folder" from "could not read the file".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    CreateDir,
    Inspect,
    Open,
    Read,
    Write,
    Resize,
    Sync,
}

impl fmt::Display for IoAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoAction::CreateDir => "creating directory",
            IoAction::Inspect => "inspecting",
            IoAction::Open => "opening",
            IoAction::Read => "reading",
            IoAction::Write => "writing",
            IoAction::Resize => "resizing",
            IoAction::Sync => "syncing",
        })
    }
}

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("storage: {action} {}: {source}", .path.display())]
    Io {
        action: IoAction,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("storage: refusing path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("storage: {} leads outside the download directory through a symbolic link", .path.display())]
    SymlinkEscape { path: PathBuf },
    #[error("storage: {} is in the way: {reason}", .path.display())]
    Obstructed { path: PathBuf, reason: &'static str },
    #[error("storage: two files share the path {path:?}")]
    DuplicatePath { path: String },
    #[error("storage: {path:?} is both a file and a folder of this torrent")]
    FileIsAlsoFolder { path: String },
    #[error("storage: piece length must not be zero")]
    ZeroPieceLength,
    #[error("storage: total length of the files overflows 64 bits")]
    TotalLengthOverflow,
    #[error("storage: {count} pieces is more than a 32-bit piece index can address")]
    TooManyPieces { count: u64 },
    #[error("storage: piece {piece} does not exist (the torrent has {count})")]
    PieceOutOfRange { piece: u32, count: u32 },
    #[error("storage: {len} bytes at offset {offset} run past the end of piece {piece} ({piece_len} bytes)")]
    BlockOutOfRange { piece: u32, offset: u32, len: u64, piece_len: u32 },
    #[error("storage: selection has {got} entries for {expected} files")]
    SelectionMismatch { expected: usize, got: usize },
    #[error("storage: {got} piece hashes for {expected} pieces")]
    HashCountMismatch { expected: u32, got: usize },
    #[error("storage: piece {piece} is not resident in memory")]
    NotResident { piece: u32 },
}

impl StorageError {
    pub(crate) fn io(action: IoAction, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io { action, path: path.into(), source }
    }

    /// True when the error only means "these bytes are not there (yet)": a missing file, a
    /// file shorter than the piece needs, a piece not in memory. A recheck treats such a
    /// piece as absent instead of failing.
    pub fn is_missing_data(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => {
                matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof)
            }
            StorageError::NotResident { .. } => true,
            _ => false,
        }
    }
}
