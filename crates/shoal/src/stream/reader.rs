//! [`FileStream`]: one file of a torrent as `AsyncRead + AsyncSeek`, with streaming priority.
//!
//! A read waits until the piece under the position is verified, then copies from storage; it
//! never returns bytes that are missing or unverified and never fails because a piece has not
//! arrived yet (unless the caller set a timeout). The stream tells the torrent where it is
//! whenever it enters a new piece or seeks, so the pieces under it are fetched first.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use shoal_proto::streaming::{self, ReaderId, ReaderWindow};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::mpsc;

use super::shared::StreamShared;
use crate::storage::StorageError;
use crate::torrent_task::Command;

/// Bytes copied out of storage per read at most.
const CHUNK: u64 = 256 * 1024;

type Pending = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// One file of a torrent, readable while it downloads. Dropping it releases its deadlines.
pub struct FileStream {
    shared: Arc<StreamShared>,
    commands: mpsc::UnboundedSender<Command>,
    id: ReaderId,
    /// Offset of the file's first byte in the torrent.
    file_start: u64,
    len: u64,
    pos: u64,
    timeout: Option<Duration>,
    buffer: Bytes,
    pending: Option<Pending>,
    seek_to: Option<u64>,
    /// The window last reported to the torrent.
    reported: Option<ReaderWindow>,
    rate: ConsumptionRate,
}

/// How fast the consumer reads, measured since the last seek.
struct ConsumptionRate {
    since: tokio::time::Instant,
    bytes: u64,
}

impl ConsumptionRate {
    fn new() -> Self {
        ConsumptionRate { since: tokio::time::Instant::now(), bytes: 0 }
    }

    /// Bytes to fetch ahead: the core's rule (`streaming::readahead`) for what was read.
    fn readahead(&self) -> u64 {
        streaming::readahead(self.bytes, self.since.elapsed())
    }
}

impl FileStream {
    pub(crate) fn new(
        shared: Arc<StreamShared>,
        commands: mpsc::UnboundedSender<Command>,
        file_start: u64,
        len: u64,
    ) -> Self {
        let id = ReaderId(shared.next_reader_id());
        FileStream {
            shared,
            commands,
            id,
            file_start,
            len,
            pos: 0,
            timeout: None,
            buffer: Bytes::new(),
            pending: None,
            seek_to: None,
            reported: None,
            rate: ConsumptionRate::new(),
        }
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset the next read starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// How long one read may wait for its piece before failing with `TimedOut`; `None` (the
    /// default) waits as long as the torrent runs.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Tells the torrent where this reader is, when that changed enough to matter: a new piece,
    /// or a read-ahead that grew or shrank by a quarter.
    fn report_position(&mut self) {
        let readahead = self.rate.readahead();
        let window = ReaderWindow {
            position: self.file_start + self.pos,
            end: self.file_start + self.len,
            readahead,
        };
        let piece_length = self.shared.storage().map_or(0, |s| s.layout().piece_length());
        let same_piece = |a: u64, b: u64| {
            piece_length != 0 && a / u64::from(piece_length) == b / u64::from(piece_length)
        };
        if let Some(last) = self.reported {
            let similar = last.readahead.abs_diff(readahead) < last.readahead / 4;
            if same_piece(last.position, window.position) && similar {
                return;
            }
        }
        self.reported = Some(window);
        let _ = self.commands.send(Command::SetReader { id: self.id, window });
    }

    fn start_chunk(&mut self) -> Pending {
        let offset = self.file_start + self.pos;
        let want = (self.len - self.pos).min(CHUNK);
        Box::pin(read_chunk(self.shared.clone(), offset, want, self.timeout))
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::RemoveReader { id: self.id });
    }
}

impl AsyncRead for FileStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.buffer.is_empty() {
                let n = buf.remaining().min(this.buffer.len());
                buf.put_slice(&this.buffer.split_to(n));
                this.pos += n as u64;
                this.rate.bytes += n as u64;
                return Poll::Ready(Ok(()));
            }
            if this.pos >= this.len || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.pending.is_none() {
                this.report_position();
                this.pending = Some(this.start_chunk());
            }
            let Some(pending) = this.pending.as_mut() else { continue };
            match pending.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.pending = None;
                    this.buffer = result?;
                }
            }
        }
    }
}

impl AsyncSeek for FileStream {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match position {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => this.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => this.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative or overflowing offset")
        })?;
        this.seek_to = Some(target);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        if let Some(target) = this.seek_to.take() {
            if target != this.pos {
                this.pos = target;
                this.buffer = Bytes::new();
                this.pending = None;
                this.rate = ConsumptionRate::new();
                // The deadlines move now, not at the next read.
                if this.pos < this.len {
                    this.report_position();
                }
            }
        }
        Poll::Ready(Ok(this.pos))
    }
}

/// Waits for the piece under `offset`, then reads up to `want` bytes of it.
async fn read_chunk(
    shared: Arc<StreamShared>,
    offset: u64,
    want: u64,
    timeout: Option<Duration>,
) -> io::Result<Bytes> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        // Registered before checking, so a piece verified in between still wakes us.
        let notified = shared.changed().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.is_closed() {
            return Err(io::Error::other("the torrent stopped"));
        }
        if let Some(storage) = shared.storage() {
            let piece_length = u64::from(storage.layout().piece_length());
            let piece = (offset / piece_length) as u32;
            if shared.has(piece) {
                let in_piece = offset - u64::from(piece) * piece_length;
                let piece_len = storage.layout().piece_len(piece).map_err(io::Error::other)?;
                let len = want.min(u64::from(piece_len) - in_piece) as usize;
                let storage = storage.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    storage.read_block(piece, in_piece as u32, &mut buf).map(|()| Bytes::from(buf))
                })
                .await
                .map_err(io::Error::other)?;
                match read {
                    Ok(bytes) => return Ok(bytes),
                    // Evicted between the check and the read: wait for it again.
                    Err(StorageError::NotResident { .. }) => continue,
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
        }
        match deadline {
            None => notified.await,
            Some(at) => {
                if tokio::time::timeout_at(at, notified).await.is_err() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the data at offset {offset} did not arrive in time"),
                    ));
                }
            }
        }
    }
}
