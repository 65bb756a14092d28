//! What a torrent's task shares with its readers: which pieces are verified, the storage to
//! read them from, and a signal when either changes.
//!
//! The task is the only writer. Readers check `has` and read storage directly (storage is
//! `Sync`), so a read never waits for the task's event loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use shoal_proto::bitfield::Bitfield;
use tokio::sync::Notify;

use crate::storage::PieceStorage;

pub(crate) struct StreamShared {
    have: Mutex<Bitfield>,
    storage: OnceLock<Arc<dyn PieceStorage>>,
    /// Woken (all waiters) when a piece is verified, storage opens or the torrent ends.
    changed: Notify,
    closed: AtomicBool,
    next_reader: AtomicU64,
}

impl Default for StreamShared {
    fn default() -> Self {
        StreamShared {
            have: Mutex::new(Bitfield::new(0)),
            storage: OnceLock::new(),
            changed: Notify::new(),
            closed: AtomicBool::new(false),
            next_reader: AtomicU64::new(0),
        }
    }
}

impl StreamShared {
    pub fn has(&self, piece: u32) -> bool {
        self.have.lock().unwrap_or_else(PoisonError::into_inner).get(piece)
    }

    pub fn storage(&self) -> Option<&Arc<dyn PieceStorage>> {
        self.storage.get()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    pub fn next_reader_id(&self) -> u64 {
        self.next_reader.fetch_add(1, Ordering::Relaxed)
    }

    // ---- the task's side ----

    /// Storage is open and `have` holds what the recheck verified.
    pub fn open(&self, storage: Arc<dyn PieceStorage>, have: Bitfield) {
        *self.have.lock().unwrap_or_else(PoisonError::into_inner) = have;
        let _ = self.storage.set(storage);
        self.changed.notify_waiters();
    }

    pub fn set_have(&self, piece: u32) {
        self.have.lock().unwrap_or_else(PoisonError::into_inner).set(piece);
        self.changed.notify_waiters();
    }

    /// Called before the piece's bytes are dropped, so no new read starts on it.
    pub fn clear_have(&self, piece: u32) {
        self.have.lock().unwrap_or_else(PoisonError::into_inner).clear(piece);
    }

    /// The torrent stopped or failed: waiting readers give up.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }
}
