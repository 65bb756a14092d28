//! The disk worker: one thread per torrent that writes blocks, reads blocks for uploads and
//! verifies pieces, so no storage call ever runs on an async I/O thread.
//!
//! Hashing is mostly free of extra I/O: blocks of a piece usually arrive in order (one peer
//! serves a whole piece), so the worker feeds each block into a running SHA-1 as it writes it
//! and has the digest ready when the last block lands. A piece whose blocks came out of order
//! is hashed by reading it back from storage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sha1::{Digest, Sha1};
use shoal_proto::wire::BlockRef;
use shoal_proto::PeerKey;
use tokio::sync::mpsc;

use crate::resume::ResumeFile;
use crate::storage::{PieceStorage, StorageError};

pub enum DiskJob {
    Write {
        piece: u32,
        offset: u32,
        data: Bytes,
    },
    Read {
        peer: PeerKey,
        block: BlockRef,
    },
    Verify {
        piece: u32,
        expected: [u8; 20],
    },
    /// Finds which pieces are on disk and good, from `resume`'s record when the files are
    /// as it saw them, else by hashing them against `hashes`; answers with
    /// `DiskDone::Rechecked`.
    Recheck {
        hashes: Arc<Vec<[u8; 20]>>,
        resume: Option<ResumeFile>,
    },
    /// Saves `have` (verified pieces) in `resume`'s record with the files as they are once
    /// every earlier job is done; `done` is told when it is written (or failed).
    SaveResume {
        resume: ResumeFile,
        have: Vec<bool>,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// Every wanted piece is verified: finish the files and make them durable.
    Complete,
    Flush,
}

pub enum DiskDone {
    /// The resume record just saved stamps a file written too recently to be trusted (see
    /// `resume::settled_before`): the next start would hash the data, unless it is saved
    /// again later.
    ResumeRacy,
    Read {
        peer: PeerKey,
        block: BlockRef,
        data: Option<Bytes>,
    },
    Verified {
        piece: u32,
        ok: bool,
    },
    RecheckProgress {
        done: u32,
        total: u32,
    },
    Rechecked {
        have: Result<Vec<bool>, StorageError>,
        /// Taken from the resume record, not hashed.
        resumed: bool,
    },
    /// The `Complete` job finished: files are whole and durable.
    Completed,
    /// A write failed: the torrent cannot make progress on this storage.
    Failed {
        error: StorageError,
    },
}

/// Sends jobs to the worker; dropping it stops the worker once its queue is drained.
pub struct DiskHandle {
    jobs: std::sync::mpsc::Sender<DiskJob>,
    /// Bytes of blocks queued for writing and not written yet. The torrent task stops reading
    /// from peers while this is high, so a disk slower than the network costs bounded memory.
    backlog: Arc<AtomicU64>,
}

impl DiskHandle {
    pub fn spawn(
        storage: Arc<dyn PieceStorage>,
        done: mpsc::UnboundedSender<DiskDone>,
    ) -> std::io::Result<DiskHandle> {
        let (jobs, rx) = std::sync::mpsc::channel();
        let backlog = Arc::new(AtomicU64::new(0));
        let worker = Worker { storage, done, running: HashMap::new(), backlog: backlog.clone() };
        std::thread::Builder::new().name("shoal-disk".into()).spawn(move || worker.run(rx))?;
        Ok(DiskHandle { jobs, backlog })
    }

    /// Queues a job. A worker that died (its storage failed) drops jobs silently; the failure
    /// was already reported.
    pub fn send(&self, job: DiskJob) {
        if let DiskJob::Write { data, .. } = &job {
            self.backlog.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        let _ = self.jobs.send(job);
    }

    /// Bytes waiting to be written.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
}

struct Worker {
    storage: Arc<dyn PieceStorage>,
    done: mpsc::UnboundedSender<DiskDone>,
    /// Pieces being hashed as they are written: the hash so far and the next offset expected.
    running: HashMap<u32, (Sha1, u32)>,
    backlog: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self, jobs: std::sync::mpsc::Receiver<DiskJob>) {
        while let Ok(job) = jobs.recv() {
            match job {
                DiskJob::Write { piece, offset, data } => {
                    let written = self.storage.write_block(piece, offset, &data);
                    if written.is_ok() {
                        self.hash_along(piece, offset, &data);
                    }
                    self.backlog.fetch_sub(data.len() as u64, Ordering::Relaxed);
                    if let Err(error) = written {
                        let _ = self.done.send(DiskDone::Failed { error });
                        return;
                    }
                }
                DiskJob::Read { peer, block } => {
                    let mut buf = vec![0u8; block.length as usize];
                    let data = self
                        .storage
                        .read_block(block.piece, block.offset, &mut buf)
                        .ok()
                        .map(|()| Bytes::from(buf));
                    let _ = self.done.send(DiskDone::Read { peer, block, data });
                }
                DiskJob::Verify { piece, expected } => {
                    let ok = match self.finished_hash(piece) {
                        Some(digest) => digest == expected,
                        None => self.storage.hash_piece(piece).is_ok_and(|d| d == expected),
                    };
                    let _ = self.done.send(DiskDone::Verified { piece, ok });
                }
                DiskJob::Recheck { hashes, resume } => {
                    let total = hashes.len() as u32;
                    let resumed = resume.and_then(|r| r.load(total, &self.storage.stamps()?));
                    if let Some(have) = resumed {
                        let _ =
                            self.done.send(DiskDone::Rechecked { have: Ok(have), resumed: true });
                        continue;
                    }
                    let done = self.done.clone();
                    let result = crate::storage::verify_existing(&*self.storage, &hashes, |n| {
                        let _ = done.send(DiskDone::RecheckProgress { done: n, total });
                    });
                    let _ = self.done.send(DiskDone::Rechecked { have: result, resumed: false });
                }
                DiskJob::SaveResume { resume, have, done } => {
                    let stamped_ns = crate::resume::now_ns();
                    if let Some(stamps) = self.storage.stamps() {
                        let settled = crate::resume::settled_before(&stamps.files, stamped_ns);
                        if let Err(e) = resume.save(&have, stamped_ns, stamps) {
                            // Only the next start's speed depends on it: it rechecks.
                            tracing::warn!(path = %resume.path().display(), "cannot save the resume record: {e}");
                        }
                        if !settled {
                            let _ = self.done.send(DiskDone::ResumeRacy);
                        }
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                DiskJob::Complete => {
                    let done = match self.storage.complete() {
                        Ok(()) => DiskDone::Completed,
                        Err(error) => DiskDone::Failed { error },
                    };
                    let _ = self.done.send(done);
                }
                DiskJob::Flush => {
                    if let Err(error) = self.storage.flush() {
                        let _ = self.done.send(DiskDone::Failed { error });
                    }
                }
            }
        }
    }

    fn hash_along(&mut self, piece: u32, offset: u32, data: &[u8]) {
        if offset == 0 {
            let mut hasher = Sha1::new();
            hasher.update(data);
            self.running.insert(piece, (hasher, data.len() as u32));
            return;
        }
        match self.running.get_mut(&piece) {
            Some((hasher, next)) if *next == offset => {
                hasher.update(data);
                *next += data.len() as u32;
            }
            // Out of order: give up on this piece's running hash; it is read back instead.
            Some(_) => {
                self.running.remove(&piece);
            }
            None => {}
        }
    }

    fn finished_hash(&mut self, piece: u32) -> Option<[u8; 20]> {
        let (hasher, next) = self.running.remove(&piece)?;
        let len = self.storage.layout().piece_len(piece).ok()?;
        (next == len).then(|| hasher.finalize().into())
    }
}
