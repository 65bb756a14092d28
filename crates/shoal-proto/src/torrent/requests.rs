//! Asking peers for blocks: interest (we want something a peer has), and topping up each
//! peer's request queue from the picker, within the streaming limits (critical pieces only
//! from fast enough peers, background pieces paced while a reader plays) and away from
//! pieces the peer declined (`spread.rs`).

use super::Torrent;
use crate::picker::PickFor;
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::Message;

impl Torrent {
    pub(super) fn update_interest(&mut self, key: PeerKey) {
        let Some(picker) = &self.picker else { return };
        let Some(peer) = self.peers.get(&key) else { return };
        let wants = self.started && picker.wants_any(|p| peer.has.get(p), peer.is_seed);
        self.set_interested(key, wants);
    }

    pub(super) fn set_interested(&mut self, key: PeerKey, interested: bool) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.am_interested != interested {
            peer.am_interested = interested;
            let msg = if interested { Message::Interested } else { Message::NotInterested };
            self.send(key, msg);
        }
    }

    pub(super) fn fill_requests(&mut self, now: Instant, key: PeerKey) {
        self.fill_requests_beyond(now, key, 0);
    }

    /// Tops up `key`'s request queue; `extra` blocks beyond its target are allowed (late
    /// critical blocks must not wait for a full queue to drain).
    pub(super) fn fill_requests_beyond(&mut self, now: Instant, key: PeerKey, extra: u32) {
        if !self.started {
            return;
        }
        let critical_ok = self.critical_ok(now, key);
        let streaming = self.is_streaming(now);
        let background_ok = !streaming || self.background_has_headroom(now);
        if self.picker.is_none() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if !peer.am_interested || !peer.can_request() {
            return;
        }
        peer.update_queue_target(now, streaming);
        let outstanding = peer.requests.len() as u32;
        let target = peer.queue_target + extra;
        // Refill in batches rather than one block at a time: picking has a fixed cost.
        let slack = (target / 8).clamp(1, 16);
        if outstanding + slack > target && outstanding != 0 && extra == 0 {
            return;
        }
        let room = (target - outstanding.min(target)) as usize;
        if room == 0 {
            return;
        }
        let who =
            PickFor { peer: key, max: room, idle: outstanding == 0, critical_ok, background_ok };
        let avoided = match peer.spread.has_declined() {
            true => self.avoided_pieces(now, key),
            false => Vec::new(),
        };
        let (Some(picker), Some(peer)) = (&mut self.picker, self.peers.get_mut(&key)) else {
            return;
        };
        self.scratch.clear();
        if peer.peer_choking {
            let allowed = peer.allowed_fast.clone();
            picker.pick(now, who, |p| allowed.contains(&p) && peer.has_piece(p), &mut self.scratch);
        } else {
            let has = &peer.has;
            let seed = peer.is_seed;
            let offered = |p| (seed || has.get(p)) && !avoided.contains(&p);
            picker.pick(now, who, offered, &mut self.scratch);
        }
        if self.scratch.is_empty() {
            return;
        }
        if peer.requests.is_empty() {
            peer.last_block_at = now;
        }
        peer.requests.extend(self.scratch.iter().copied());
        let blocks = std::mem::take(&mut self.scratch);
        for block in &blocks {
            self.send(key, Message::Request(*block));
        }
        self.scratch = blocks;
    }
}
