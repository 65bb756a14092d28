//! Serving peers' requests: which ones are accepted, and when a block is read for one.
//!
//! A request joins the peer's upload queue ([`Peer::uploads`]); a block is read from storage
//! for it ([`Action::ReadBlock`]) only while the peer's transport has room, and the `piece`
//! message goes out when the read comes back ([`Torrent::on_block_read`]).
//!
//! The room rule is one for every driver: what the transport still holds for the peer (bytes
//! we handed it that it has not put on the wire: a socket's user-space queue, a data channel's
//! `bufferedAmount`, a simulated uplink's queue), as the driver last reported it with
//! [`Torrent::on_send_backlog`], plus the blocks being read for the peer, stays under
//! [`SEND_BACKLOG_LIMIT`]. Requests beyond that wait in the core's queue, where a `cancel` or
//! a choke still reaches them; once read, a block is committed to the wire and neither can.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::{Handled, ProtocolViolation, Torrent};
use crate::peer::UploadRequest;
use crate::picker::BLOCK_SIZE;
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::{BlockRef, Message};

/// Bytes a peer's transport may hold (queued plus being read) before we read more blocks for
/// it. A megabyte keeps a 100 MB/s loopback TCP peer busy for 10 ms, longer than a read from
/// the page cache takes, and a 1 MB/s WebRTC peer for a second, which is about as much as a
/// `cancel` or a choke should have to wait behind.
pub const SEND_BACKLOG_LIMIT: u64 = 1024 * 1024;

/// Peers whose requests wait for their transport to drain, for drivers to report on.
#[derive(Debug, Default)]
pub(super) struct Backlogged(BTreeSet<PeerKey>);

impl Torrent {
    pub(super) fn on_request(&mut self, now: Instant, key: PeerKey, block: BlockRef) -> Handled {
        let valid = self.info.as_ref().is_some_and(|info| {
            block.piece < info.piece_count()
                && block.length > 0
                && block.length <= BLOCK_SIZE
                && u64::from(block.offset) + u64::from(block.length)
                    <= u64::from(info.piece_len(block.piece))
        });
        if !valid {
            return Err(ProtocolViolation::InvalidRequest(block).into());
        }
        let have = self.started && self.have.get(block.piece);
        let max_queue = self.config.max_upload_queue;
        let peer = self.peer_mut(key)?;
        let servable = have && !peer.am_choking && peer.uploads.len() < max_queue;
        // Spreading decides only about requests we could serve (a grant is remembered).
        let acceptable = servable && !self.spread_refuses(now, key, block);
        let peer = self.peer_mut(key)?;
        if !acceptable {
            if peer.supports_fast {
                self.send(key, Message::Reject(block));
            }
            // Without the Fast extension a request while choked is silently dropped.
            return Ok(());
        }
        if peer.uploads.iter().any(|u| u.block == block) {
            return Ok(());
        }
        peer.uploads.push_back(UploadRequest { block, reading: false });
        self.pump_uploads(key);
        Ok(())
    }

    /// The peer's transport still holds `bytes` of what we sent it (the driver's own count,
    /// reported whenever it changes for a peer in [`Torrent::backlogged_peers`], and freely
    /// otherwise). Requests that waited for room are read as it frees up.
    pub fn on_send_backlog(&mut self, now: Instant, key: PeerKey, bytes: u64) {
        self.clock = self.clock.max(now);
        let Some(peer) = self.peers.get_mut(&key) else { return };
        peer.send_backlog = bytes;
        self.pump_uploads(key);
    }

    /// Peers with requests waiting for their transport to drain: the driver reports their
    /// backlog with [`Torrent::on_send_backlog`] when it shrinks.
    pub fn backlogged_peers(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.backlogged.0.iter().copied()
    }

    /// Whether the peer's requests wait for its transport (see [`Torrent::backlogged_peers`]).
    pub fn is_send_backlogged(&self, key: PeerKey) -> bool {
        self.backlogged.0.contains(&key)
    }

    /// Reads blocks for the peer's oldest requests while its transport has room.
    pub(super) fn pump_uploads(&mut self, key: PeerKey) {
        let max_reads = self.config.max_upload_reads;
        let Some(peer) = self.peers.get_mut(&key) else {
            self.backlogged.0.remove(&key);
            return;
        };
        // Counted afresh each time: a cancel may have taken a request whose read is under way.
        let (mut reading, mut committed) = peer
            .uploads
            .iter()
            .filter(|u| u.reading)
            .fold((0, peer.send_backlog), |(n, bytes), u| {
                (n + 1, bytes + u64::from(u.block.length))
            });
        let mut held = false;
        for upload in peer.uploads.iter_mut().filter(|u| !u.reading) {
            if reading >= max_reads {
                break;
            }
            if committed >= SEND_BACKLOG_LIMIT {
                held = true;
                break;
            }
            upload.reading = true;
            reading += 1;
            committed += u64::from(upload.block.length);
            self.actions.push_back(super::Action::ReadBlock { peer: key, block: upload.block });
        }
        if held {
            self.backlogged.0.insert(key);
        } else {
            self.backlogged.0.remove(&key);
        }
    }

    /// The driver read a block for a peer's request (`None`: the read failed).
    pub fn on_block_read(
        &mut self,
        now: Instant,
        key: PeerKey,
        block: BlockRef,
        data: Option<Bytes>,
    ) {
        self.clock = self.clock.max(now);
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let Some(i) = peer.uploads.iter().position(|u| u.block == block && u.reading) else {
            return; // cancelled meanwhile
        };
        peer.uploads.remove(i);
        let length = u64::from(block.length);
        match data {
            Some(data) if data.len() == block.length as usize && !peer.am_choking => {
                peer.upload.record(now, length);
                // The transport holds it from now on, until the driver says otherwise.
                peer.send_backlog += length;
                self.upload_rate.record(now, length);
                self.stats.uploaded += length;
                self.send(key, Message::Piece { piece: block.piece, offset: block.offset, data });
            }
            _ => {
                if peer.supports_fast {
                    self.send(key, Message::Reject(block));
                }
            }
        }
        self.pump_uploads(key);
    }

    /// The peer is gone: nothing waits for its transport.
    pub(super) fn forget_uploads(&mut self, key: PeerKey) {
        self.backlogged.0.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::torrent::testing::{block, Harness, PIECE};
    use crate::torrent::TorrentConfig;

    /// A seeder with one interested peer (unchoked at once: a slot is free), and no limit on
    /// reads in flight but the backlog's.
    fn seeder_with_peer() -> (Harness, PeerKey) {
        let config = TorrentConfig { max_upload_reads: 1024, ..TorrentConfig::default() };
        let mut h = Harness::new(config, true);
        let key = h.peer(Instant::ZERO, &[]);
        h.actions();
        assert!(!h.t.peers[&key].am_choking, "a free slot unchokes at once");
        (h, key)
    }

    fn request_pieces(h: &mut Harness, key: PeerKey, pieces: std::ops::Range<u32>) {
        for piece in pieces {
            for index in 0..PIECE / BLOCK_SIZE {
                h.t.on_message(Instant::ZERO, key, Message::Request(block(piece, index)));
            }
        }
    }

    fn data(block: &BlockRef) -> Option<Bytes> {
        Some(Bytes::from(vec![0; block.length as usize]))
    }

    #[test]
    fn reads_stop_at_the_backlog_limit_and_resume_as_the_transport_drains() {
        let (mut h, key) = seeder_with_peer();
        request_pieces(&mut h, key, 0..8); // 2 MiB asked for
        let first = h.reads();
        assert_eq!(first.len() as u64 * u64::from(BLOCK_SIZE), SEND_BACKLOG_LIMIT);
        assert_eq!(h.t.backlogged_peers().collect::<Vec<_>>(), vec![key]);

        // The reads come back: the transport now holds the megabyte, nothing more is read.
        let now = Instant::ZERO + Duration::from_millis(1);
        for b in &first {
            h.t.on_block_read(now, key, *b, data(b));
        }
        assert!(h.reads().is_empty());

        // Half of it left the socket: half a megabyte more is read, oldest requests first.
        h.t.on_send_backlog(now, key, SEND_BACKLOG_LIMIT / 2);
        let second = h.reads();
        assert_eq!(second.len() as u64 * u64::from(BLOCK_SIZE), SEND_BACKLOG_LIMIT / 2);
        assert_eq!(second[0], block(4, 0));
        assert!(h.t.is_send_backlogged(key));
    }

    #[test]
    fn a_cancel_or_a_choke_reaches_requests_held_for_the_transport() {
        let (mut h, key) = seeder_with_peer();
        request_pieces(&mut h, key, 0..8);
        let first = h.reads();
        let held = block(7, 0);
        assert!(!first.contains(&held));
        h.t.on_message(Instant::ZERO, key, Message::Cancel(held));
        for b in &first {
            h.t.on_block_read(Instant::ZERO, key, *b, data(b));
        }
        h.actions();
        h.t.on_send_backlog(Instant::ZERO, key, 0);
        let released = h.reads();
        assert_eq!(released.len(), 63, "the cancelled request is never read");
        assert!(!released.contains(&held));

        // A choke rejects what still waits (Fast peers are told) and nothing waits any more.
        h.t.set_choke(key, true);
        assert!(h.t.peers[&key].uploads.iter().all(|u| u.reading));
        assert!(!h.t.is_send_backlogged(key));
    }

    #[test]
    fn a_departed_peer_is_no_longer_reported_on() {
        let (mut h, key) = seeder_with_peer();
        request_pieces(&mut h, key, 0..8);
        h.reads();
        assert!(h.t.is_send_backlogged(key));
        h.t.on_disconnected(Instant::ZERO, key);
        assert_eq!(h.t.backlogged_peers().count(), 0);
    }
}
