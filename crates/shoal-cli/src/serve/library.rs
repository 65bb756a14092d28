//! `shoal serve`'s library: every torrent the server holds, the files shared on its command
//! line and the torrents added through its API or Transmission RPC, with what a person
//! changes (paused or not, which files) and what the server keeps across restarts
//! ([`store`]).
//!
//! Invariants:
//! - An entry has a running torrent (`handle`) exactly when it is neither paused nor queued
//!   (nor failed to start).
//! - At most `max_active_downloads` entries that have not completed run at once; the others
//!   wait in the queue, oldest first (seeding ones do not count).
//! - What the store holds is what `entries` held at the last change (every change saves),
//!   plus the totals of at most [`SAVE_EVERY`] ago.
//!
//! Pausing a torrent stops it (its resume record is saved on the way), and resuming adds it
//! again: with the resume record its verified pieces are taken without hashing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal::{
    AddTorrent, FilePriority, Phase, Session, SessionError, StorageTarget, TorrentHandle,
    TorrentSource,
};
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;
use shoal_proto::InfoHash;
use tokio::sync::watch;

pub mod store;

use store::{SavedTorrent, Store, StoreError};

/// How often the totals (bytes up and down) are saved while nothing else changes.
const SAVE_EVERY: Duration = Duration::from_secs(30);
/// How often the library looks at its torrents (metadata arrived, completed, queue).
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no torrent with id {0:?}")]
    NotFound(String),
    #[error("the torrent {name} ({info_hash}) is already in the library")]
    Duplicate { name: String, info_hash: String },
    #[error("{0}")]
    BadInput(String),
    #[error(
        "the torrent is shared from this server's command line; stop the server to stop sharing it"
    )]
    SharedOnCommandLine,
    #[error("the library is full ({} torrents)", store::MAX_TORRENTS)]
    Full,
    #[error("cannot start the torrent: {0}")]
    Engine(#[from] SessionError),
    #[error("cannot save the library: {0}")]
    Save(#[from] std::io::Error),
}

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// File `n` of `shoal serve FILES...` (also its web seed's and `/torrent/n.torrent`'s n).
    Shared(usize),
    /// Added through the API or Transmission RPC: kept in the store.
    Added,
}

/// One torrent of the library.
#[derive(Clone)]
pub struct Entry {
    /// A small number, for Transmission RPC (which names torrents by number): given at
    /// start and at each add, not kept across restarts (as in Transmission).
    pub id: u32,
    pub info_hash: InfoHash,
    pub origin: Origin,
    /// The metainfo, once known.
    pub meta: Option<Arc<Metainfo>>,
    /// The magnet it was added by, if it was.
    pub magnet: Option<Magnet>,
    pub dir: PathBuf,
    pub only_files: Option<Vec<usize>>,
    /// How soon each file is fetched; `None`: all alike.
    pub file_priorities: Option<Vec<FilePriority>>,
    pub paused: bool,
    pub added_at: u64,
    pub done_at: Option<u64>,
    /// The running torrent; `None` while paused or queued.
    pub handle: Option<TorrentHandle>,
    /// Totals of earlier runs (and of this run's earlier starts).
    pub uploaded_before: u64,
    pub downloaded_before: u64,
    /// Why it could not be started again, if it could not.
    pub error: Option<String>,
    /// The verified pieces when its torrent last stopped (a paused entry's progress).
    pub last_have: Option<Arc<shoal_proto::bitfield::Bitfield>>,
}

/// An entry at one moment.
pub struct Snapshot {
    /// Its running torrent's status; `None` while paused or queued.
    pub status: Option<shoal::TorrentStatus>,
    pub state: State,
    /// Payload bytes over every run.
    pub uploaded: u64,
    pub downloaded: u64,
}

/// What an entry is doing, as the API and Transmission RPC show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Paused,
    /// Waiting for a download slot (`--max-active-downloads`).
    Queued,
    Running(Phase),
    /// It could not be started (the error says why).
    Failed(String),
}

impl Entry {
    pub fn name(&self) -> String {
        if let Some(meta) = &self.meta {
            return meta.info.name.clone();
        }
        if let Some(name) = self.handle.as_ref().and_then(TorrentHandle::name) {
            return name;
        }
        let shown = self.magnet.as_ref().and_then(|m| m.display_name.clone());
        shown.unwrap_or_else(|| self.info_hash.to_hex())
    }

    /// The entry now, its torrent's status read once (a listing of many torrents reads each
    /// once, not once per field).
    pub fn snapshot(&self) -> Snapshot {
        let status = self.handle.as_ref().map(TorrentHandle::status);
        let state = match (&status, &self.error) {
            (Some(status), _) => State::Running(status.phase.clone()),
            (None, Some(error)) => State::Failed(error.clone()),
            (None, None) if self.paused => State::Paused,
            (None, None) => State::Queued,
        };
        let stats = status.as_ref().map(|s| &s.stats);
        Snapshot {
            state,
            uploaded: self.uploaded_before + stats.map_or(0, |s| s.uploaded),
            downloaded: self.downloaded_before + stats.map_or(0, |s| s.downloaded),
            status,
        }
    }

    pub fn uploaded(&self) -> u64 {
        self.snapshot().uploaded
    }

    pub fn downloaded(&self) -> u64 {
        self.snapshot().downloaded
    }

    /// Verified bytes of each file: from the running torrent's pieces, or from those it had
    /// when it last stopped; all of each selected file once complete; `None` when not known
    /// (the metadata, or a paused torrent's pieces since the server started).
    pub fn file_bytes_done(&self, snapshot: &Snapshot) -> Option<Vec<u64>> {
        let meta = self.meta.as_ref()?;
        let have = snapshot.status.as_ref().and_then(|s| s.have.clone());
        if let Some(have) = have.or_else(|| self.last_have.clone()) {
            return Some(meta.info.file_bytes_done(&have));
        }
        self.done_at?;
        let files = meta.info.files.iter().zip(self.selection_mask());
        Some(files.map(|(f, selected)| if selected { f.length } else { 0 }).collect())
    }

    /// One flag per file of its metadata (none before it is known): selected or not.
    pub fn selection_mask(&self) -> Vec<bool> {
        let count = self.meta.as_ref().map_or(0, |m| m.info.files.len());
        selection_mask(self.only_files.as_deref(), count)
    }

    /// Bytes of the selected files, and how many of them are verified.
    pub fn wanted_and_done(&self, snapshot: &Snapshot) -> (u64, u64) {
        let Some(meta) = &self.meta else { return (0, 0) };
        let done = self.file_bytes_done(snapshot);
        let selected = self.selection_mask();
        let (mut wanted, mut verified) = (0, 0);
        for (i, file) in meta.info.files.iter().enumerate().filter(|(i, _)| selected[*i]) {
            wanted += file.length;
            verified += done.as_ref().and_then(|d| d.get(i)).copied().unwrap_or(0);
        }
        (wanted, verified.min(wanted))
    }

    /// Whether it still has pieces to fetch (for the download queue).
    fn downloading(&self) -> bool {
        self.done_at.is_none()
    }

    fn saved(&self) -> SavedTorrent {
        SavedTorrent {
            info_hash: self.info_hash.to_hex(),
            name: self.name(),
            magnet: self.magnet.as_ref().map(Magnet::to_uri),
            dir: self.dir.clone(),
            only_files: self.only_files.clone(),
            file_priorities: self.file_priorities.clone(),
            paused: self.paused,
            added_at: self.added_at,
            done_at: self.done_at,
            uploaded: self.uploaded(),
            downloaded: self.downloaded(),
        }
    }

    /// What the engine is given to (re)start it.
    fn add_request(&self) -> AddTorrent {
        let source = match (&self.meta, &self.magnet) {
            (Some(meta), _) => TorrentSource::Metainfo(Box::new((**meta).clone())),
            (None, Some(magnet)) => TorrentSource::Magnet(magnet.clone()),
            (None, None) => TorrentSource::Magnet(Magnet::new(self.info_hash)),
        };
        let mut add = AddTorrent {
            source,
            target: StorageTarget::Dir(self.dir.clone()),
            only_files: self.only_files.clone(),
            file_priorities: self.file_priorities.clone(),
            peers: Vec::new(),
            extra_trackers: Vec::new(),
            web_seeds: Vec::new(),
        };
        // A magnet's trackers and peers stay useful once the metadata is known.
        if let (Some(_), Some(magnet)) = (&self.meta, &self.magnet) {
            add.extra_trackers = magnet.trackers.clone();
            add.peers = magnet.peers.iter().filter_map(|p| p.parse().ok()).collect();
            add.web_seeds = magnet.web_seeds.clone();
        }
        add
    }
}

/// A change of a torrent's files; a field left `None` stays as it is.
#[derive(Default)]
pub struct FilesChange {
    /// `Some(None)`: every file.
    pub selected: Option<Option<Vec<usize>>>,
    /// `Some(None)`: all alike.
    pub priorities: Option<Option<Vec<FilePriority>>>,
}

/// A torrent to add.
pub struct NewTorrent {
    pub source: TorrentSource,
    /// Its folder [default: the server's `--download-dir`].
    pub dir: Option<PathBuf>,
    pub paused: bool,
    pub only_files: Option<Vec<usize>>,
}

struct Inner {
    entries: Vec<Entry>,
    next_id: u32,
    saved_at: Instant,
    /// Whether the store's library was read: until then nothing is written over it (a start
    /// that failed to read it must not replace it with an empty one).
    loaded: bool,
    /// Kept torrents not taken in at load (shared on the command line now, or unusable): saved
    /// again as they were, never dropped by a save.
    set_aside: Vec<SavedTorrent>,
    /// Torrents being removed (their files, maybe): not added again until that is over.
    removing: HashSet<InfoHash>,
}

pub struct Library {
    session: Arc<Session>,
    store: Option<Store>,
    download_dir: PathBuf,
    max_active_downloads: AtomicUsize,
    inner: Mutex<Inner>,
    /// Bumped at every change and tick: what `/api/events` waits on.
    changes: watch::Sender<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Library {
    /// An empty library that keeps what is added in `store` (none: nothing is kept).
    pub fn new(
        session: Arc<Session>,
        store: Option<Store>,
        download_dir: PathBuf,
        max_active_downloads: usize,
    ) -> Library {
        Library {
            session,
            store,
            download_dir,
            max_active_downloads: AtomicUsize::new(max_active_downloads.max(1)),
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                next_id: 1,
                saved_at: Instant::now(),
                loaded: false,
                set_aside: Vec::new(),
                removing: HashSet::new(),
            }),
            changes: watch::Sender::new(0),
        }
    }

    /// Takes in the torrents the store keeps, started (or queued, or left paused) as they
    /// were. One the command line shares too stays the shared one.
    pub fn load(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let saved = store.load()?;
        let mut inner = self.lock();
        for saved in saved {
            match self.entry_from_saved(saved.clone(), &mut inner) {
                Ok(entry) if inner.entries.iter().any(|e| e.info_hash == entry.info_hash) => {
                    tracing::info!("{} is shared from the command line now", entry.name());
                    inner.set_aside.push(saved);
                }
                Ok(entry) => inner.entries.push(entry),
                Err(reason) => {
                    tracing::warn!("a torrent of the library is left aside: {reason}");
                    inner.set_aside.push(saved);
                }
            }
        }
        inner.loaded = true;
        self.start_queued(&mut inner);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry_from_saved(&self, saved: SavedTorrent, inner: &mut Inner) -> Result<Entry, String> {
        let info_hash = InfoHash::from_hex(&saved.info_hash)
            .ok_or_else(|| format!("{:?} is not an info hash", saved.info_hash))?;
        let magnet = match &saved.magnet {
            Some(uri) => Some(Magnet::parse(uri).map_err(|e| format!("its magnet: {e}"))?),
            None => None,
        };
        let meta = self.store.as_ref().and_then(|s| s.load_torrent(info_hash)).map(Arc::new);
        if meta.is_none() && magnet.is_none() {
            return Err(format!("{} has neither its .torrent nor a magnet", saved.name));
        }
        let id = inner.next_id;
        inner.next_id += 1;
        Ok(Entry {
            id,
            info_hash,
            origin: Origin::Added,
            meta,
            magnet,
            dir: saved.dir,
            only_files: saved.only_files,
            file_priorities: saved.file_priorities,
            paused: saved.paused,
            added_at: saved.added_at,
            done_at: saved.done_at,
            handle: None,
            uploaded_before: saved.uploaded,
            downloaded_before: saved.downloaded,
            error: None,
            last_have: None,
        })
    }

    pub fn download_dir(&self) -> &Path {
        &self.download_dir
    }

    pub fn max_active_downloads(&self) -> usize {
        self.max_active_downloads.load(Ordering::Relaxed)
    }

    /// Lets `n` (at least 1) downloads run at once from now on: more start at once, or the
    /// ones over it finish (a running download is not stopped to make room).
    pub fn set_max_active_downloads(&self, n: usize) {
        self.max_active_downloads.store(n.max(1), Ordering::Relaxed);
        let mut inner = self.lock();
        self.start_queued(&mut inner);
        drop(inner);
        self.changed();
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.store.as_ref().map(Store::dir)
    }

    /// Takes in a torrent shared from the command line, already running.
    pub fn add_shared(&self, index: usize, meta: Metainfo, dir: PathBuf, handle: TorrentHandle) {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.entries.push(Entry {
            id,
            info_hash: meta.info_hash,
            origin: Origin::Shared(index),
            meta: Some(Arc::new(meta)),
            magnet: None,
            dir,
            only_files: None,
            file_priorities: None,
            paused: false,
            added_at: now_secs(),
            done_at: Some(now_secs()),
            handle: Some(handle),
            uploaded_before: 0,
            downloaded_before: 0,
            error: None,
            last_have: None,
        });
    }

    /// Every entry, as it is now.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.clone()
    }

    /// `f` of every entry, without copying them (the library waits for `f`: keep it short).
    pub fn with_entries<R>(&self, f: impl FnOnce(&[Entry]) -> R) -> R {
        f(&self.lock().entries)
    }

    /// The entry named by `id`: its info hash in hex (as the API names it) or its number (as
    /// Transmission RPC does).
    pub fn find(&self, id: &str) -> Result<Entry, LibraryError> {
        let inner = self.lock();
        find_index(&inner, id)
            .map(|i| inner.entries[i].clone())
            .ok_or_else(|| LibraryError::NotFound(id.to_owned()))
    }

    /// A receiver that sees every change (and every tick).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Adds a torrent (started, queued or paused) and keeps it; returns its entry. Nothing is
    /// added or written when it fails.
    pub fn add(&self, new: NewTorrent) -> Result<Entry, LibraryError> {
        let (info_hash, meta, magnet) = match new.source {
            TorrentSource::Metainfo(meta) => (meta.info_hash, Some(Arc::new(*meta)), None),
            TorrentSource::Magnet(magnet) => (magnet.info_hash, None, Some(magnet)),
        };
        let dir = new.dir.unwrap_or_else(|| self.download_dir.clone());
        if !dir.is_absolute() {
            return Err(LibraryError::BadInput(format!(
                "the folder {} is not an absolute path",
                dir.display()
            )));
        }
        let only_files = match new.only_files {
            Some(only) => Some(normalise_selection(meta.as_deref(), only)?),
            None => None,
        };
        let mut inner = self.lock();
        if inner.removing.contains(&info_hash) {
            return Err(LibraryError::BadInput(
                "that torrent is being removed; add it again in a moment".into(),
            ));
        }
        if let Some(i) = inner.entries.iter().position(|e| e.info_hash == info_hash) {
            let existing = &inner.entries[i];
            return Err(LibraryError::Duplicate {
                name: existing.name(),
                info_hash: info_hash.to_hex(),
            });
        }
        if inner.entries.len() >= store::MAX_TORRENTS {
            return Err(LibraryError::Full);
        }
        if let (Some(store), Some(meta)) = (&self.store, &meta) {
            store.save_torrent(meta)?;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.entries.push(Entry {
            id,
            info_hash,
            origin: Origin::Added,
            meta,
            magnet,
            dir,
            only_files,
            file_priorities: None,
            paused: new.paused,
            added_at: now_secs(),
            done_at: None,
            handle: None,
            uploaded_before: 0,
            downloaded_before: 0,
            error: None,
            last_have: None,
        });
        if let Err(e) = self.save(&mut inner) {
            inner.entries.pop();
            if let Some(store) = &self.store {
                store.forget_torrent(info_hash);
            }
            return Err(e.into());
        }
        self.start_queued(&mut inner);
        let entry = inner.entries.iter().find(|e| e.info_hash == info_hash).cloned();
        drop(inner);
        self.changed();
        entry.ok_or_else(|| LibraryError::NotFound(info_hash.to_hex()))
    }

    /// Stops `id` and forgets it; with `delete_data`, its files go too.
    pub async fn remove(&self, id: &str, delete_data: bool) -> Result<(), LibraryError> {
        let entry = {
            let mut inner = self.lock();
            let i = find_index(&inner, id).ok_or_else(|| LibraryError::NotFound(id.into()))?;
            if inner.entries[i].origin != Origin::Added {
                return Err(LibraryError::SharedOnCommandLine);
            }
            let entry = inner.entries.remove(i);
            if let Err(e) = self.save(&mut inner) {
                inner.entries.insert(i, entry);
                return Err(e.into());
            }
            if let Some(store) = &self.store {
                store.forget_torrent(entry.info_hash);
            }
            inner.removing.insert(entry.info_hash);
            entry
        };
        self.stopped(entry.handle.clone()).await;
        if delete_data {
            if let Some(meta) = &entry.meta {
                delete_files(&entry, meta);
            }
        }
        self.lock().removing.remove(&entry.info_hash);
        Ok(())
    }

    /// Stops `id` until [`Library::resume`]; its verified pieces are kept.
    pub async fn pause(&self, id: &str) -> Result<(), LibraryError> {
        let handle = {
            let mut inner = self.lock();
            let i = find_index(&inner, id).ok_or_else(|| LibraryError::NotFound(id.into()))?;
            let entry = &mut inner.entries[i];
            if entry.paused {
                return Ok(());
            }
            entry.paused = true;
            entry.error = None;
            let handle = take_handle(entry);
            self.save(&mut inner)?;
            handle
        };
        self.stopped(handle).await;
        Ok(())
    }

    /// Starts `id` again (or queues it behind the active downloads).
    pub fn resume(&self, id: &str) -> Result<(), LibraryError> {
        let mut inner = self.lock();
        let i = find_index(&inner, id).ok_or_else(|| LibraryError::NotFound(id.into()))?;
        let entry = &mut inner.entries[i];
        if !entry.paused && entry.error.is_none() {
            return Ok(());
        }
        entry.paused = false;
        entry.error = None;
        self.save(&mut inner)?;
        self.start_queued(&mut inner);
        drop(inner);
        self.changed();
        Ok(())
    }

    /// Changes which files of `id` are downloaded (`selected`: indices, `None` for all) and how
    /// soon (`priorities`: one per file, `None` for all alike); either left out stays as it
    /// is. A running torrent restarts with them (its verified pieces kept).
    pub async fn set_files(&self, id: &str, change: FilesChange) -> Result<(), LibraryError> {
        let handle = {
            let mut inner = self.lock();
            let i = find_index(&inner, id).ok_or_else(|| LibraryError::NotFound(id.into()))?;
            let entry = &mut inner.entries[i];
            if entry.origin != Origin::Added {
                return Err(LibraryError::SharedOnCommandLine);
            }
            let Some(meta) = entry.meta.clone() else {
                return Err(LibraryError::BadInput(
                    "the torrent's files are not known yet (its metadata is still on the way)"
                        .into(),
                ));
            };
            let count = meta.info.files.len();
            let only = match change.selected {
                Some(Some(only)) => {
                    let only = normalise_selection(Some(&meta), only)?;
                    // Every file named is no selection at all.
                    (only.len() < count).then_some(only)
                }
                Some(None) => None,
                None => entry.only_files.clone(),
            };
            let priorities = match change.priorities {
                Some(Some(p)) if p.len() != count => {
                    return Err(LibraryError::BadInput(format!(
                        "{} priorities for {count} files: give one per file",
                        p.len()
                    )))
                }
                // All alike is no priority at all.
                Some(Some(p)) => p.iter().any(|&x| x != p[0]).then_some(p),
                Some(None) => None,
                None => entry.file_priorities.clone(),
            };
            if entry.only_files == only && entry.file_priorities == priorities {
                return Ok(());
            }
            if entry.only_files != only {
                // More files may mean more to fetch.
                entry.done_at = None;
            }
            entry.only_files = only;
            entry.file_priorities = priorities;
            let handle = take_handle(entry);
            self.save(&mut inner)?;
            handle
        };
        self.stopped(handle).await;
        Ok(())
    }

    /// After a change that took an entry's torrent away: stops it (waited, so a start again
    /// finds it gone), lets the queue move and tells the watchers.
    async fn stopped(&self, handle: Option<TorrentHandle>) {
        if let Some(handle) = handle {
            handle.shutdown().await;
        }
        let mut inner = self.lock();
        self.start_queued(&mut inner);
        drop(inner);
        self.changed();
    }

    /// Starts what may run: every entry neither paused nor failed, downloads up to
    /// `max_active_downloads` at once (oldest first).
    fn start_queued(&self, inner: &mut Inner) {
        let mut active =
            inner.entries.iter().filter(|e| e.handle.is_some() && e.downloading()).count();
        for entry in &mut inner.entries {
            if entry.handle.is_some() || entry.paused || entry.error.is_some() {
                continue;
            }
            if entry.downloading() {
                if active >= self.max_active_downloads() {
                    continue;
                }
                active += 1;
            }
            match self.session.add_torrent(entry.add_request()) {
                Ok(handle) => entry.handle = Some(handle),
                // Its previous run (paused a moment ago) is still stopping: a later tick
                // starts it.
                Err(SessionError::Duplicate) => {}
                Err(e) => entry.error = Some(e.to_string()),
            }
        }
    }

    /// Looks at every torrent: keeps a magnet's metadata once it arrived, notes completion,
    /// starts queued downloads, saves the totals now and then.
    pub fn tick(&self) {
        let mut inner = self.lock();
        let mut dirty = false;
        for entry in &mut inner.entries {
            let Some(handle) = &entry.handle else { continue };
            let status = handle.status();
            if entry.meta.is_none() {
                let meta = status.info_bytes.as_ref().and_then(|b| {
                    let mut meta = Metainfo::from_info_bytes(b).ok()?;
                    if let Some(magnet) = &entry.magnet {
                        meta.trackers = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
                        meta.web_seeds = magnet.web_seeds.clone();
                    }
                    Some(meta)
                });
                if let Some(meta) = meta.filter(|m| m.info_hash == entry.info_hash) {
                    if let Some(store) = &self.store {
                        if let Err(e) = store.save_torrent(&meta) {
                            tracing::warn!("cannot keep the metadata of {}: {e}", meta.info.name);
                        }
                    }
                    // A selection made before the files were known keeps the files there are.
                    let count = meta.info.files.len();
                    if let Some(only) = &mut entry.only_files {
                        only.retain(|&i| i < count);
                    }
                    entry.meta = Some(Arc::new(meta));
                    dirty = true;
                }
            }
            if let Phase::Failed(reason) = &status.phase {
                // It holds no download slot from now on; resuming tries again.
                entry.error = Some(reason.clone());
                if let Some(handle) = take_handle(entry) {
                    tokio::spawn(async move { handle.shutdown().await });
                }
                dirty = true;
                continue;
            }
            dirty |= note_completion(entry, &status);
        }
        self.start_queued(&mut inner);
        if dirty || inner.saved_at.elapsed() >= SAVE_EVERY {
            if let Err(e) = self.save(&mut inner) {
                tracing::warn!("cannot save the library: {e}");
            }
        }
        drop(inner);
        self.changed();
    }

    /// Ticks until the receiver says stop.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    // It may write the library (a synced file): not on an async worker.
                    let library = self.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || library.tick()).await {
                        tracing::error!("the library's tick failed: {e}");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Saves the library and stops every torrent (each saves its resume record).
    pub async fn shutdown(&self) {
        let handles: Vec<TorrentHandle> = {
            let mut inner = self.lock();
            for entry in &mut inner.entries {
                if let Some(status) = entry.handle.as_ref().map(TorrentHandle::status) {
                    note_completion(entry, &status);
                }
            }
            if let Err(e) = self.save(&mut inner) {
                tracing::warn!("cannot save the library: {e}");
            }
            inner.entries.iter().filter_map(|e| e.handle.clone()).collect()
        };
        for handle in handles {
            handle.shutdown().await;
        }
    }

    fn save(&self, inner: &mut Inner) -> std::io::Result<()> {
        inner.saved_at = Instant::now();
        let Some(store) = &self.store else { return Ok(()) };
        if !inner.loaded {
            return Ok(());
        }
        let kept = inner.entries.iter().filter(|e| e.origin == Origin::Added).map(Entry::saved);
        let torrents: Vec<SavedTorrent> = kept.chain(inner.set_aside.iter().cloned()).collect();
        // The write is synced: an async worker hands its other tasks on meanwhile.
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        match on_worker {
            true => tokio::task::block_in_place(|| store.save(torrents)),
            false => store.save(torrents),
        }
    }
}

fn find_index(inner: &Inner, id: &str) -> Option<usize> {
    let id = id.trim();
    if let Ok(number) = id.parse::<u32>() {
        if id.len() < 40 {
            return inner.entries.iter().position(|e| e.id == number);
        }
    }
    let hash = InfoHash::from_hex(&id.to_ascii_lowercase())?;
    inner.entries.iter().position(|e| e.info_hash == hash)
}

/// Notes when an entry's torrent first has every wanted piece; `true` if that is news.
fn note_completion(entry: &mut Entry, status: &shoal::TorrentStatus) -> bool {
    let news = status.phase == Phase::Seeding && entry.done_at.is_none();
    if news {
        entry.done_at = Some(now_secs());
    }
    news
}

/// Stops counting an entry's running torrent: its totals so far move into the entry's own.
fn take_handle(entry: &mut Entry) -> Option<TorrentHandle> {
    let handle = entry.handle.take()?;
    let status = handle.status();
    note_completion(entry, &status);
    entry.uploaded_before += status.stats.uploaded;
    entry.downloaded_before += status.stats.downloaded;
    entry.last_have = status.have.clone().or(entry.last_have.take());
    Some(handle)
}

fn check_selection(meta: &Metainfo, only: &[usize]) -> Result<(), LibraryError> {
    match only.iter().find(|&&i| i >= meta.info.files.len()) {
        Some(i) => Err(LibraryError::BadInput(format!(
            "the torrent has {} files; there is no file {i}",
            meta.info.files.len()
        ))),
        None => Ok(()),
    }
}

/// Removes the torrent's selected files under its folder, its part files, then the folders of
/// a multi-file torrent that are left empty. Nothing outside the torrent's own paths is
/// touched (the paths are checked safe when the metainfo is parsed).
fn delete_files(entry: &Entry, meta: &Metainfo) {
    let dir = &entry.dir;
    let selected = selection_mask(entry.only_files.as_deref(), meta.info.files.len());
    for (file, _) in meta.info.files.iter().zip(&selected).filter(|(_, s)| **s) {
        let path = file.path.iter().fold(dir.to_owned(), |p, c| p.join(c));
        let _ = std::fs::remove_file(&path);
        let mut parent = path.parent();
        // Up to and including the torrent's own folder, never `dir` itself.
        while let Some(folder) = parent.filter(|p| p.starts_with(dir) && *p != dir) {
            if std::fs::remove_dir(folder).is_err() {
                break;
            }
            parent = folder.parent();
        }
    }
    // Where the engine keeps the pieces that straddle unselected files (`torrent_task`).
    let parts = dir.join(format!(".shoal-parts-{}", meta.info_hash.to_hex()));
    let _ = std::fs::remove_dir_all(parts);
}

/// One flag per file: whether `only` (indices; `None` for all) selects it. Linear in both.
pub fn selection_mask(only: Option<&[usize]>, count: usize) -> Vec<bool> {
    let Some(only) = only else { return vec![true; count] };
    let mut mask = vec![false; count];
    for &i in only {
        if let Some(m) = mask.get_mut(i) {
            *m = true;
        }
    }
    mask
}

/// A selection as kept: sorted, each index once, within the torrent's files when they are
/// known (else at most as many as a torrent may have).
fn normalise_selection(
    meta: Option<&Metainfo>,
    mut only: Vec<usize>,
) -> Result<Vec<usize>, LibraryError> {
    only.sort_unstable();
    only.dedup();
    match meta {
        Some(meta) => check_selection(meta, &only)?,
        None if only.len() > shoal_proto::metainfo::MAX_FILES => {
            return Err(LibraryError::BadInput(format!(
                "{} files selected: a torrent has at most {}",
                only.len(),
                shoal_proto::metainfo::MAX_FILES
            )))
        }
        None => {}
    }
    Ok(only)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tick saves on a blocking thread and an API change on an async worker, both through
    /// `block_in_place`: neither may panic (a panicking tick would be lost silently).
    #[test]
    fn saves_may_block_on_workers_and_on_blocking_threads() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let on_blocking = tokio::task::spawn_blocking(|| {
                tokio::task::block_in_place(|| 1) + tokio::task::block_in_place(|| 1)
            });
            assert_eq!(on_blocking.await.expect("no panic on a blocking thread"), 2);
            let on_worker = tokio::spawn(async { tokio::task::block_in_place(|| 3) });
            assert_eq!(on_worker.await.expect("no panic on a worker"), 3);
        });
    }

    #[test]
    fn selections_are_sorted_unique_and_bounded() {
        assert_eq!(normalise_selection(None, vec![3, 1, 3, 0]).ok(), Some(vec![0, 1, 3]));
        let too_many: Vec<usize> = (0..=shoal_proto::metainfo::MAX_FILES).collect();
        assert!(normalise_selection(None, too_many).is_err());
        assert_eq!(selection_mask(Some(&[2, 0, 9]), 3), vec![true, false, true]);
        assert_eq!(selection_mask(None, 2), vec![true, true]);
    }
}
