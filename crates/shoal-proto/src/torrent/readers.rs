//! Streaming readers in the torrent: their positions become the picker's deadlines, a seek
//! cancels what was requested for the old position, and critical pieces are watched so a
//! slow or stalled peer does not hold a player up.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Torrent;
use crate::extension;
use crate::picker::Deadline;
use crate::streaming::{self, ReaderId, ReaderWindow};
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::{BlockRef, Message};

/// How often critical pieces are checked for late or slow requests while some are missing.
const STREAM_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// A peer this many times slower than the fastest one gives up its critical blocks.
const SLOW_FACTOR: u64 = 4;
/// Below this best rate (bytes/s), rates are too noisy to call anyone slow.
const MIN_JUDGED_RATE: u64 = 256 * 1024;
/// A torrent counts as streamed this long after its last reader went away: a player opens a
/// new reader per request, and the next one should not wait behind a deep request queue.
const STREAMING_LINGER: Duration = Duration::from_secs(30);
/// Share of the best download rate seen (percent) that background pieces may take while
/// streaming.
const STREAMING_BACKGROUND_SHARE: u64 = 50;
/// Requests a peer may have beyond its queue target for late critical blocks.
const CRITICAL_EXTRA_REQUESTS: u32 = 8;

impl Torrent {
    /// Adds a reader or moves it (a read advanced into a new piece, or a seek). Deadlines move
    /// at once; requests for pieces no reader waits for any more are cancelled.
    pub fn set_reader(&mut self, now: Instant, id: ReaderId, window: ReaderWindow) {
        self.clock = self.clock.max(now);
        if self.readers.get(&id) == Some(&window) {
            return;
        }
        self.readers.insert(id, window);
        self.first_reader_at.get_or_insert(now);
        self.streaming_until = Some(now + STREAMING_LINGER);
        self.update_deadlines(now);
    }

    /// A reader is gone: what it waited for is no longer urgent.
    pub fn remove_reader(&mut self, now: Instant, id: ReaderId) {
        self.clock = self.clock.max(now);
        if self.readers.remove(&id).is_some() {
            self.streaming_until = Some(now + STREAMING_LINGER);
            self.update_deadlines(now);
        }
    }

    /// While streaming, pieces no reader waits for get at most this share (in percent) of the
    /// best rate seen, so a seek finds the peers with room to spare. Rate-limited seeders hand
    /// out their allowance in ticks: spent on background pieces, a seek waits for the next.
    pub(super) fn background_has_headroom(&self, now: Instant) -> bool {
        self.background_rate.rate(now) * 100 < self.peak_download_rate * STREAMING_BACKGROUND_SHARE
    }

    /// Whether someone reads the torrent now or did a moment ago: request queues stay short.
    pub(super) fn is_streaming(&self, now: Instant) -> bool {
        !self.readers.is_empty() || self.streaming_until.is_some_and(|t| now < t)
    }

    pub fn readers(&self) -> impl Iterator<Item = (ReaderId, ReaderWindow)> + '_ {
        self.readers.iter().map(|(id, w)| (*id, *w))
    }

    /// Fetch only pieces readers wait for (`true`): the bounded in-memory store, which would
    /// evict anything else again.
    pub fn set_deadline_only(&mut self, only: bool) {
        self.deadline_only = only;
        if let Some(picker) = &mut self.picker {
            picker.set_deadline_only(only);
        }
    }

    /// The driver dropped a verified piece from storage (to stay within a memory bound): it is
    /// missing again, and peers that understand `lt_donthave` stop asking us for it.
    pub fn on_piece_evicted(&mut self, now: Instant, piece: u32) {
        self.clock = self.clock.max(now);
        if !self.have.clear(piece) {
            return;
        }
        if let Some(picker) = &mut self.picker {
            picker.unset_have(piece);
        }
        let told: Vec<(PeerKey, u8)> = self
            .peers
            .values()
            .filter(|p| p.extensions.lt_donthave != 0)
            .map(|p| (p.key, p.extensions.lt_donthave))
            .collect();
        for (key, id) in told {
            let payload = extension::encode_dont_have(piece);
            self.send(key, Message::Extended { id, payload });
        }
    }

    /// Whether `key` may take blocks of critical pieces: yes unless it is much slower than the
    /// best peer and a fast peer can serve them.
    pub(super) fn critical_ok(&self, now: Instant, key: PeerKey) -> bool {
        if self.best_peer_rate == 0 {
            return true;
        }
        self.peers
            .get(&key)
            .is_some_and(|p| p.download.rate(now) * SLOW_FACTOR >= self.best_peer_rate)
    }

    /// Recomputes deadlines from the readers and cancels requests they made stale.
    pub(super) fn update_deadlines(&mut self, now: Instant) {
        let Some(picker) = &mut self.picker else { return };
        let geometry = *picker.geometry();
        let old: BTreeSet<u32> = picker.deadlines().iter().map(|d| d.piece).collect();
        let new = streaming::deadlines(&geometry, self.readers.values(), |p| picker.has(p));
        let current: BTreeSet<u32> = new.iter().map(|d| d.piece).collect();
        // Critical pieces nobody is fetching yet: a seek, or a reader's first read. Peers
        // serve requests in order, so whatever is queued at a peer that could serve them is
        // in the way and is cancelled too.
        let fresh_critical: Vec<u32> = new
            .iter()
            .filter(|d| d.critical && !picker.is_in_progress(d.piece))
            .map(|d| d.piece)
            .collect();
        let any_critical = new.iter().any(|d| d.critical);
        picker.set_deadlines(new);

        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            let clear_the_way = fresh_critical.iter().any(|&p| peer.has_piece(p));
            let cancelled: Vec<BlockRef> = peer
                .requests
                .iter()
                .filter(|b| {
                    let wanted_now = current.contains(&b.piece);
                    let stale = old.contains(&b.piece) && !wanted_now;
                    stale || (clear_the_way && !wanted_now)
                })
                .copied()
                .collect();
            if cancelled.is_empty() {
                continue;
            }
            peer.requests.retain(|b| !cancelled.contains(b));
            if let Some(picker) = &mut self.picker {
                for block in &cancelled {
                    picker.on_unrequest(*block, key);
                }
            }
            for block in cancelled {
                self.send(key, Message::Cancel(block));
            }
        }
        for &key in &keys {
            self.update_interest(key);
            self.fill_requests(now, key);
        }
        self.fill_web_seeds(now);
        if any_critical {
            let at = now + STREAM_CHECK_INTERVAL;
            self.next_stream_check = Some(self.next_stream_check.map_or(at, |t| t.min(at)));
        }
    }

    /// While critical pieces are missing: judges peer speeds, takes critical blocks away from
    /// much slower peers, and lets fast peers take late critical blocks beyond their queue.
    pub(super) fn stream_check(&mut self, now: Instant) {
        self.next_stream_check = None;
        let Some(picker) = &self.picker else { return };
        let critical: Vec<u32> = picker
            .deadlines()
            .iter()
            .filter(|d| d.critical && !picker.has(d.piece))
            .map(|&Deadline { piece, .. }| piece)
            .collect();
        if critical.is_empty() {
            self.best_peer_rate = 0;
            return;
        }
        self.next_stream_check = Some(now + STREAM_CHECK_INTERVAL);

        let serving = |p: &crate::peer::Peer| !p.peer_choking && p.am_interested;
        let best = self
            .peers
            .values()
            .filter(|p| serving(p))
            .map(|p| p.download.rate(now))
            .max()
            .unwrap_or(0);
        let fast = |p: &crate::peer::Peer| serving(p) && p.download.rate(now) * SLOW_FACTOR >= best;
        let covered = critical
            .iter()
            .all(|&piece| self.peers.values().any(|p| fast(p) && p.has_piece(piece)));
        self.best_peer_rate = if best >= MIN_JUDGED_RATE && covered { best } else { 0 };

        if self.best_peer_rate > 0 {
            let taken: Vec<(PeerKey, Vec<BlockRef>)> = self
                .peers
                .values()
                .filter(|p| !fast(p))
                .map(|p| {
                    let blocks = critical
                        .iter()
                        .flat_map(|&piece| picker.requested_from(piece, p.key))
                        .map(|(block, _)| block)
                        .collect();
                    (p.key, blocks)
                })
                .collect();
            for (key, blocks) in taken {
                self.take_back(key, &blocks);
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests_beyond(now, key, CRITICAL_EXTRA_REQUESTS);
        }
    }

    /// Withdraws requests from a peer: they are free for others and the peer is told.
    fn take_back(&mut self, key: PeerKey, blocks: &[BlockRef]) {
        if blocks.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else { return };
        peer.requests.retain(|b| !blocks.contains(b));
        if let Some(picker) = &mut self.picker {
            for block in blocks {
                picker.on_unrequest(*block, key);
            }
        }
        for &block in blocks {
            self.send(key, Message::Cancel(block));
        }
    }
}
