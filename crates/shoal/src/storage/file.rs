//! Pieces stored in the torrent's files on disk.
//!
//! Files are opened on first use and kept in a bounded cache of handles; I/O is positional so
//! every pool thread can use a handle at once. A file is created sparse at its full length the
//! first time a block is written to it. Unselected files are never created: their share of a
//! piece goes to a per-piece part file (see `partfile`). Pad files are never written and read as
//! zeros.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::error::{IoAction, StorageError};
use super::handles::HandleCache;
use super::hashing::{with_scratch, PieceHasher, CHUNK};
use super::layout::{Segment, StorageLayout};
use super::partfile::PartFiles;
use super::positional::{no_follow, read_exact_at, write_all_at};
use super::safe_path::{check_relative, prepare_root, resolve};
use super::PieceStorage;
use crate::resume::{FileStamp, StorageStamps};

/// Tuning for [`FileStorage::open_with`].
#[derive(Debug, Clone)]
pub struct FileStorageOptions {
    /// Folder (one name, under the root) for part files; by default derived from the layout.
    /// Passing the info hash in hex is a good choice.
    pub part_dir: Option<String>,
    /// Most file handles kept open at once.
    pub max_open_files: usize,
}

impl Default for FileStorageOptions {
    fn default() -> Self {
        FileStorageOptions { part_dir: None, max_open_files: 128 }
    }
}

/// What a cached handle refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum HandleKey {
    /// A selected file of the torrent, by index.
    File(usize),
    /// The part file of a piece.
    Part(u32),
}

/// An open file and the path it was opened at, for error messages.
struct OpenFile {
    file: File,
    path: PathBuf,
}

/// Where one segment's bytes live.
enum Place {
    Zeros,
    At { key: HandleKey, offset: u64 },
}

pub struct FileStorage {
    layout: StorageLayout,
    /// Canonical; every path is checked to stay under it.
    root: PathBuf,
    selected: Vec<bool>,
    parts: PartFiles,
    handles: Mutex<HandleCache<HandleKey, OpenFile>>,
}

impl FileStorage {
    /// Opens storage under `root` (created if missing) with one `selection` entry per file
    /// (`true`: wanted). Nothing but the root and the selected zero-length files is created
    /// here; other files appear when first written.
    pub fn open(
        root: &Path,
        layout: StorageLayout,
        selection: &[bool],
    ) -> Result<Self, StorageError> {
        Self::open_with(root, layout, selection, FileStorageOptions::default())
    }

    pub fn open_with(
        root: &Path,
        layout: StorageLayout,
        selection: &[bool],
        options: FileStorageOptions,
    ) -> Result<Self, StorageError> {
        if selection.len() != layout.files().len() {
            return Err(StorageError::SelectionMismatch {
                expected: layout.files().len(),
                got: selection.len(),
            });
        }
        let parts = match options.part_dir {
            Some(name) => PartFiles::new(name)?,
            None => PartFiles::for_layout(&layout),
        };
        check_paths(&layout, selection, &parts)?;
        let root = prepare_root(root)?;
        let storage = FileStorage {
            layout,
            root,
            selected: selection.to_vec(),
            parts,
            handles: Mutex::new(HandleCache::new(options.max_open_files)),
        };
        Ok(storage)
    }

    /// The canonical download folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding part files (it may not exist yet).
    pub fn part_dir(&self) -> PathBuf {
        self.root.join(self.parts.dir_name())
    }

    /// How many file handles are cached right now.
    pub fn open_handles(&self) -> usize {
        self.cache().len()
    }

    /// Zero-length files hold no piece bytes, so no write would ever create them; they are
    /// made when the download completes, not at open, so a refused or failed run leaves
    /// nothing behind.
    fn create_empty_files(&self) -> Result<(), StorageError> {
        for (index, file) in self.layout.files().iter().enumerate() {
            if file.length == 0 && !file.padding && self.is_selected(index) {
                let path = resolve(&self.root, &file.path, true)?;
                let mut options = OpenOptions::new();
                options.write(true).create(true);
                no_follow(&mut options)
                    .open(&path)
                    .map_err(|e| StorageError::io(IoAction::Open, path, e))?;
            }
        }
        Ok(())
    }

    fn is_selected(&self, index: usize) -> bool {
        self.selected.get(index).copied().unwrap_or(false)
    }

    fn cache(&self) -> MutexGuard<'_, HandleCache<HandleKey, OpenFile>> {
        // A panic elsewhere cannot leave the cache inconsistent in a way that matters: at
        // worst a handle is missing or a file is synced twice.
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the bytes of `segment` live; `range_start` is the offset in the piece of the
    /// range the segment was cut from.
    fn place(&self, piece: u32, range_start: u32, segment: &Segment) -> Place {
        let padding = self.layout.files().get(segment.file_index).is_none_or(|f| f.padding);
        if padding {
            Place::Zeros
        } else if self.is_selected(segment.file_index) {
            Place::At { key: HandleKey::File(segment.file_index), offset: segment.file_offset }
        } else {
            Place::At {
                key: HandleKey::Part(piece),
                offset: u64::from(range_start) + u64::from(segment.range_offset),
            }
        }
    }

    fn relative_path(&self, key: HandleKey) -> Vec<String> {
        match key {
            HandleKey::File(index) => {
                self.layout.files().get(index).map(|f| f.path.clone()).unwrap_or_default()
            }
            HandleKey::Part(piece) => self.parts.components(piece).to_vec(),
        }
    }

    /// The length a file is created with: the file's length, or the piece's for a part file.
    fn full_length(&self, key: HandleKey) -> u64 {
        match key {
            HandleKey::File(index) => self.layout.files().get(index).map_or(0, |f| f.length),
            HandleKey::Part(piece) => self.layout.piece_len(piece).map_or(0, u64::from),
        }
    }

    /// A handle for `key`, from the cache or freshly opened. `write` creates the file (and its
    /// folders) if needed.
    fn handle(&self, key: HandleKey, write: bool) -> Result<Arc<OpenFile>, StorageError> {
        if let Some(handle) = self.cache().get(key, write) {
            return Ok(handle);
        }
        // Opened outside the lock so a slow open does not stall other threads' I/O. Two threads
        // racing to open the same file both succeed; the cache keeps one handle.
        let (handle, writable) = self.open_file(key, write)?;
        let handle = Arc::new(handle);
        let closed = self.cache().insert(key, Arc::clone(&handle), writable);
        drop(closed);
        Ok(handle)
    }

    fn open_file(&self, key: HandleKey, write: bool) -> Result<(OpenFile, bool), StorageError> {
        let path = resolve(&self.root, &self.relative_path(key), write)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(write);
        let result = no_follow(&mut options).open(&path);
        let (file, writable) = match result {
            Ok(file) => (file, true),
            // Seeding from read-only media: reading is all that was asked for.
            Err(e) if !write && is_read_only_error(&e) => {
                let mut options = OpenOptions::new();
                options.read(true);
                let file = no_follow(&mut options)
                    .open(&path)
                    .map_err(|e| StorageError::io(IoAction::Open, &path, e))?;
                (file, false)
            }
            Err(e) => return Err(StorageError::io(IoAction::Open, path, e)),
        };
        if write {
            // Sparse: the length is set, no byte is written. A file that was longer (left by
            // something else under the same name) is cut to the torrent's length, or the
            // finished download would carry a foreign tail.
            let wanted = self.full_length(key);
            let current =
                file.metadata().map_err(|e| StorageError::io(IoAction::Inspect, &path, e))?.len();
            if current != wanted {
                file.set_len(wanted).map_err(|e| StorageError::io(IoAction::Resize, &path, e))?;
            }
        }
        Ok((OpenFile { file, path }, writable))
    }

    /// Whether the file behind `key` exists and holds at least `needed` bytes.
    fn holds(&self, key: HandleKey, needed: u64) -> Result<bool, StorageError> {
        let cached = self.cache().get(key, false);
        let len = match cached {
            Some(handle) => handle
                .file
                .metadata()
                .map_err(|e| StorageError::io(IoAction::Inspect, &handle.path, e))?
                .len(),
            None => {
                let path = resolve(&self.root, &self.relative_path(key), false)?;
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_file() => meta.len(),
                    Ok(_) => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(StorageError::io(IoAction::Inspect, path, e)),
                }
            }
        };
        Ok(len >= needed)
    }

    /// Syncs a file that was written but whose handle has been closed since.
    fn sync_closed(&self, key: HandleKey) -> Result<(), StorageError> {
        let path = resolve(&self.root, &self.relative_path(key), false)?;
        let mut options = OpenOptions::new();
        // Windows only flushes through a handle with write access.
        options.write(true);
        match no_follow(&mut options).open(&path) {
            Ok(file) => file.sync_data().map_err(|e| StorageError::io(IoAction::Sync, path, e)),
            // Deleted behind our back: nothing left to make durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(IoAction::Open, path, e)),
        }
    }
}

impl PieceStorage for FileStorage {
    fn layout(&self) -> &StorageLayout {
        &self.layout
    }

    fn stamps(&self) -> Option<StorageStamps> {
        let mut files = Vec::new();
        for (index, file) in self.layout.files().iter().enumerate() {
            // Padding and empty files hold no piece bytes.
            if file.padding || file.length == 0 || !self.is_selected(index) {
                continue;
            }
            let name = file.path.join("/");
            files.push(match resolve(&self.root, &file.path, false) {
                Ok(path) => FileStamp::of(name, &path),
                Err(_) => FileStamp { path: name, len: None, modified_ns: None },
            });
        }
        // Part files (pieces shared with files not selected), in name order; the folder holds
        // at most one per piece.
        let dir = self.part_dir();
        let mut parts: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .take(self.layout.piece_count() as usize + 1)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        parts.sort();
        for name in parts {
            let path = dir.join(&name);
            files.push(FileStamp::of(format!("{}/{name}", self.parts.dir_name()), &path));
        }
        Some(StorageStamps { root: self.root.clone(), files })
    }

    fn write_block(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        self.layout.check_block(piece, offset, data.len())?;
        // check_block bounded the length by the piece length, a u32.
        for segment in self.layout.segments(piece, offset, data.len() as u32)? {
            let Place::At { key, offset: at } = self.place(piece, offset, &segment) else {
                continue;
            };
            let bytes = slice(data, &segment);
            let handle = self.handle(key, true)?;
            write_all_at(&handle.file, bytes, at)
                .map_err(|e| StorageError::io(IoAction::Write, &handle.path, e))?;
            self.cache().mark_written(key);
        }
        Ok(())
    }

    fn read_block(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        self.layout.check_block(piece, offset, buf.len())?;
        for segment in self.layout.segments(piece, offset, buf.len() as u32)? {
            let place = self.place(piece, offset, &segment);
            let bytes = slice_mut(buf, &segment);
            match place {
                Place::Zeros => bytes.fill(0),
                Place::At { key, offset: at } => {
                    let handle = self.handle(key, false)?;
                    read_exact_at(&handle.file, bytes, at)
                        .map_err(|e| StorageError::io(IoAction::Read, &handle.path, e))?;
                }
            }
        }
        Ok(())
    }

    fn hash_piece(&self, piece: u32) -> Result<[u8; 20], StorageError> {
        let mut hasher = PieceHasher::default();
        for segment in self.layout.piece_segments(piece)? {
            match self.place(piece, 0, &segment) {
                Place::Zeros => hasher.update_zeros(u64::from(segment.len)),
                Place::At { key, offset } => {
                    let handle = self.handle(key, false)?;
                    with_scratch(|scratch| {
                        let mut done: u64 = 0;
                        let total = u64::from(segment.len);
                        while done < total {
                            let n = (total - done).min(CHUNK as u64) as usize;
                            let chunk = &mut scratch[..n];
                            read_exact_at(&handle.file, chunk, offset + done)
                                .map_err(|e| StorageError::io(IoAction::Read, &handle.path, e))?;
                            hasher.update(chunk);
                            done += n as u64;
                        }
                        Ok::<(), StorageError>(())
                    })?;
                }
            }
        }
        Ok(hasher.finish())
    }

    fn may_hold_piece(&self, piece: u32) -> Result<bool, StorageError> {
        for segment in self.layout.piece_segments(piece)? {
            if let Place::At { key, offset } = self.place(piece, 0, &segment) {
                if !self.holds(key, offset + u64::from(segment.len))? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn complete(&self) -> Result<(), StorageError> {
        self.create_empty_files()?;
        self.flush()
    }

    fn flush(&self) -> Result<(), StorageError> {
        let dirty = self.cache().take_dirty();
        let mut first_error = None;
        for (key, handle) in dirty.open {
            if let Err(e) = handle.file.sync_data() {
                self.cache().mark_written(key);
                first_error.get_or_insert(StorageError::io(IoAction::Sync, &handle.path, e));
            }
        }
        for key in dirty.closed {
            if let Err(e) = self.sync_closed(key) {
                self.cache().mark_written(key);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Re-checks every path before anything touches the disk, and refuses what would make two
/// selected files collide: the same path twice, a file that is also another file's folder, or
/// a file shadowing the part folder.
fn check_paths(
    layout: &StorageLayout,
    selection: &[bool],
    parts: &PartFiles,
) -> Result<(), StorageError> {
    let mut selected_paths = HashSet::new();
    for (file, &selected) in layout.files().iter().zip(selection) {
        if file.padding {
            continue;
        }
        check_relative(&file.path)?;
        if file.path.first().map(String::as_str) == Some(parts.dir_name()) {
            return Err(StorageError::UnsafePath {
                path: file.path.join("/"),
                reason: "collides with the part file folder",
            });
        }
        if selected && !selected_paths.insert(file.path.as_slice()) {
            return Err(StorageError::DuplicatePath { path: file.path.join("/") });
        }
    }
    for path in &selected_paths {
        if let Some(folder) = (1..path.len()).find(|&n| selected_paths.contains(&path[..n])) {
            return Err(StorageError::FileIsAlsoFolder { path: path[..folder].join("/") });
        }
    }
    Ok(())
}

fn is_read_only_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem)
}

// Segments come from `segments(piece, offset, buf.len())`, so they always lie inside the
// buffer; `get` keeps that an invariant rather than a panic site.
fn slice<'a>(data: &'a [u8], segment: &Segment) -> &'a [u8] {
    let start = segment.range_offset as usize;
    data.get(start..start + segment.len as usize).unwrap_or(&[])
}

fn slice_mut<'a>(data: &'a mut [u8], segment: &Segment) -> &'a mut [u8] {
    let start = segment.range_offset as usize;
    data.get_mut(start..start + segment.len as usize).unwrap_or(&mut [])
}
