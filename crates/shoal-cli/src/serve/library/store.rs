//! The library on disk, under the state folder (`shoal serve --state DIR`):
//!
//! - `library.json`: every torrent added through the API or Transmission RPC, with its folder,
//!   file selection, paused state, totals and the magnet it came by; replaced atomically.
//! - `torrents/<info hash>.torrent`: its metainfo once known (given, or fetched from peers for
//!   a magnet), so a restart fetches no metadata again.
//! - `lock`: held while a server uses the folder, so two servers never write one library.
//!
//! Torrents shared on the command line are not kept here: the command line names them again
//! (and `made.rs` remembers the torrent made of each).

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal::resume::{read_record, write_record};
use shoal_proto::metainfo::{Metainfo, MAX_METAINFO_BYTES};
use shoal_proto::InfoHash;

const VERSION: u32 = 1;
/// Far more than any library needs (a torrent's entry is a few hundred bytes).
const MAX_LIBRARY_BYTES: u64 = 64 << 20;
/// At most this many torrents are kept: a bound on what the API can make the server hold.
pub const MAX_TORRENTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the state folder {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error(
        "the state folder {0} is in use by another shoal serve (give this one another --state)"
    )]
    Locked(PathBuf),
    #[error(
        "{0} is damaged or from a newer Shoal; nothing was changed (move it away to start with \
         an empty library)"
    )]
    Damaged(PathBuf),
}

/// One torrent of the library as kept on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTorrent {
    pub info_hash: String,
    pub name: String,
    /// The magnet it was added by: its trackers, web seeds and peers until the metadata is
    /// known (after that the .torrent is kept too).
    pub magnet: Option<String>,
    /// The folder its files are in.
    pub dir: PathBuf,
    /// File indices to download; `None` for all.
    pub only_files: Option<Vec<usize>>,
    /// How soon each file is fetched; `None` (or absent) for all alike.
    #[serde(default)]
    pub file_priorities: Option<Vec<shoal::FilePriority>>,
    pub paused: bool,
    /// Seconds since the Unix epoch.
    pub added_at: u64,
    pub done_at: Option<u64>,
    /// Payload bytes sent and received over every run.
    pub uploaded: u64,
    pub downloaded: u64,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    torrents: Vec<SavedTorrent>,
}

/// The state folder, locked for this process.
pub struct Store {
    dir: PathBuf,
    /// Held (an advisory lock) until the store is dropped.
    _lock: File,
}

impl Store {
    /// Opens (creating it if needed) and locks the state folder.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let folder = |source| StoreError::Folder { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir.join("torrents")).map_err(folder)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(folder)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.to_owned()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(folder(e)),
        }
        Ok(Store { dir: dir.to_owned(), _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn library_file(&self) -> PathBuf {
        self.dir.join("library.json")
    }

    /// The torrents kept; none for a new folder. A file that is there but does not parse is
    /// an error, never silently replaced by an empty library.
    pub fn load(&self) -> Result<Vec<SavedTorrent>, StoreError> {
        let path = self.library_file();
        if !path.exists() {
            return Ok(Vec::new());
        }
        match read_record::<Saved>(&path, MAX_LIBRARY_BYTES) {
            Some(saved) if saved.version == VERSION && saved.torrents.len() <= MAX_TORRENTS => {
                Ok(saved.torrents)
            }
            _ => Err(StoreError::Damaged(path)),
        }
    }

    /// Replaces the kept list with `torrents`; refused (the old file stays) when the list
    /// would be larger than a start reads.
    pub fn save(&self, torrents: Vec<SavedTorrent>) -> std::io::Result<()> {
        let saved = Saved { version: VERSION, torrents };
        let text = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        if text.len() as u64 > MAX_LIBRARY_BYTES {
            return Err(std::io::Error::other(format!(
                "the library would take {} bytes, more than the {MAX_LIBRARY_BYTES} a start reads",
                text.len()
            )));
        }
        write_record(&self.library_file(), &text)
    }

    fn torrent_file(&self, info_hash: InfoHash) -> PathBuf {
        self.dir.join("torrents").join(format!("{}.torrent", info_hash.to_hex()))
    }

    /// The metainfo kept for `info_hash`, if any (and it is the torrent it says it is).
    pub fn load_torrent(&self, info_hash: InfoHash) -> Option<Metainfo> {
        use std::io::Read;
        let mut bytes = Vec::new();
        File::open(self.torrent_file(info_hash))
            .ok()?
            .take(MAX_METAINFO_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        let meta = Metainfo::from_bytes(&bytes).ok()?;
        (meta.info_hash == info_hash).then_some(meta)
    }

    pub fn save_torrent(&self, meta: &Metainfo) -> std::io::Result<()> {
        write_record(&self.torrent_file(meta.info_hash), &meta.to_torrent_bytes())
    }

    pub fn forget_torrent(&self, info_hash: InfoHash) {
        let _ = std::fs::remove_file(self.torrent_file(info_hash));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(name: &str) -> SavedTorrent {
        SavedTorrent {
            info_hash: "ab".repeat(20),
            name: name.into(),
            magnet: Some(format!("magnet:?xt=urn:btih:{}", "ab".repeat(20))),
            dir: PathBuf::from("/data"),
            only_files: Some(vec![0, 2]),
            file_priorities: Some(vec![shoal::FilePriority::High, shoal::FilePriority::Low]),
            paused: true,
            added_at: 1,
            done_at: None,
            uploaded: 5,
            downloaded: 7,
        }
    }

    #[test]
    fn a_saved_library_loads_as_it_was_and_a_second_server_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(store.load().expect("empty").is_empty());
        store.save(vec![saved("a"), saved("b")]).expect("save");
        assert_eq!(store.load().expect("load"), vec![saved("a"), saved("b")]);
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Locked(_))));
        drop(store);
        assert!(Store::open(dir.path()).is_ok(), "the lock goes with the store");
    }

    #[test]
    fn a_damaged_library_is_an_error_and_stays_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("library.json"), b"{\"version\":1,\"torr").expect("write");
        assert!(matches!(store.load(), Err(StoreError::Damaged(_))));
        let kept = std::fs::read(dir.path().join("library.json")).expect("read");
        assert_eq!(kept, b"{\"version\":1,\"torr");
    }
}
