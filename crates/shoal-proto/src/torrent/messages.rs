//! The peer wire protocol's messages (BEP 3, the Fast extension of BEP 6): what each one
//! changes, and which ones break the protocol ([`ProtocolViolation`]). What a peer has
//! (have, bitfield, have-all) feeds the picker's availability; blocks go through the picker
//! to storage.

use bytes::Bytes;

use super::{Action, DisconnectReason, FastMessage, Handled, ProtocolViolation, Stop, Torrent};
use crate::bitfield::Bitfield;
use crate::picker::BlockOutcome;
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::{BlockRef, Message};

/// A peer may send this many unrequested bytes before it is dropped.
const MAX_UNREQUESTED_BYTES: u64 = 16 * 1024 * 1024;
/// Allowed-fast pieces remembered per peer.
const MAX_ALLOWED_FAST: usize = 64;
/// Haves remembered per peer before the metadata (and thus the piece count) is known.
const MAX_EARLY_HAVES: usize = 100_000;

impl Torrent {
    /// A message arrived from a connected peer.
    pub fn on_message(&mut self, now: Instant, key: PeerKey, message: Message) {
        self.clock = self.clock.max(now);
        let Some(peer) = self.peers.get_mut(&key) else { return };
        peer.last_received = now;
        let first = !peer.got_first_message;
        if !matches!(message, Message::KeepAlive | Message::Extended { .. }) {
            peer.got_first_message = true;
        }
        if let Err(Stop::Violation(violation)) = self.handle_message(now, key, message, first) {
            self.drop_peer(now, key, DisconnectReason::Protocol(violation));
        }
    }

    pub(super) fn handle_message(
        &mut self,
        now: Instant,
        key: PeerKey,
        message: Message,
        first: bool,
    ) -> Handled {
        match message {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Unknown { .. } => {}
            Message::Choke => {
                let peer = self.peer_mut(key)?;
                peer.peer_choking = true;
                if !peer.supports_fast {
                    // Without the Fast extension a choke discards every pending request.
                    let dropped: Vec<BlockRef> = peer.requests.drain(..).collect();
                    if let Some(picker) = &mut self.picker {
                        for block in dropped {
                            picker.on_unrequest(block, key);
                        }
                    }
                }
            }
            Message::Unchoke => {
                let peer = self.peer_mut(key)?;
                peer.peer_choking = false;
                peer.last_block_at = now;
                self.fill_requests(now, key);
            }
            Message::Interested => {
                self.peer_mut(key)?.peer_interested = true;
                let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
                if self.choker.has_free_slot(unchoked) {
                    self.set_choke(key, false);
                }
            }
            Message::NotInterested => {
                self.peer_mut(key)?.peer_interested = false;
            }
            Message::Have(piece) => self.on_have(now, key, piece)?,
            Message::Bitfield(bits) => {
                if first {
                    self.on_bitfield(now, key, bits)?;
                } else {
                    self.on_late_bitfield(now, key, bits)?;
                }
            }
            Message::HaveAll | Message::HaveNone => {
                let peer = self.peer_mut(key)?;
                if !peer.supports_fast {
                    let which = match message {
                        Message::HaveAll => FastMessage::HaveAll,
                        _ => FastMessage::HaveNone,
                    };
                    return Err(ProtocolViolation::FastMessageWithoutFast(which).into());
                }
                if !first {
                    // WebTorrent joining from a magnet sends its have-none (or have-all) only
                    // once it knows the piece count, after the extended handshake and the
                    // metadata exchange: as late as a late bitfield, and taken the same way.
                    if matches!(message, Message::HaveAll) {
                        self.on_late_have_all(now, key)?;
                    }
                    return Ok(());
                }
                if matches!(message, Message::HaveAll) {
                    self.on_have_all(now, key);
                }
            }
            Message::Request(block) => self.on_request(now, key, block)?,
            Message::Cancel(block) => {
                let peer = self.peer_mut(key)?;
                if let Some(i) = peer.uploads.iter().position(|u| u.block == block) {
                    peer.uploads.remove(i);
                }
            }
            Message::Piece { piece, offset, data } => {
                self.on_piece(now, key, piece, offset, data)?
            }
            Message::Reject(block) => {
                let peer = self.peer_mut(key)?;
                if !peer.supports_fast {
                    return Err(
                        ProtocolViolation::FastMessageWithoutFast(FastMessage::Reject).into()
                    );
                }
                let outstanding = peer.take_request(&block);
                // Noted even for a request we cancelled meanwhile (a reader moved, another
                // peer delivered): the peer refuses the piece, and asking it again soon would
                // read as "nobody else will send it" to a spreading origin.
                self.note_declined(now, key, block.piece);
                if outstanding {
                    if let Some(picker) = &mut self.picker {
                        picker.on_unrequest(block, key);
                    }
                    self.offer_declined(now, key, block.piece);
                }
            }
            Message::AllowedFast(piece) => {
                let peer = self.peer_mut(key)?;
                if peer.allowed_fast.len() < MAX_ALLOWED_FAST && !peer.allowed_fast.contains(&piece)
                {
                    peer.allowed_fast.push(piece);
                }
                self.fill_requests(now, key);
            }
            Message::Extended { id, payload } => self.on_extended(now, key, id, payload)?,
        }
        Ok(())
    }

    pub(super) fn on_have(&mut self, now: Instant, key: PeerKey, piece: u32) -> Handled {
        let Some(count) = self.piece_count() else {
            let peer = self.peer_mut(key)?;
            if peer.early_haves.len() < MAX_EARLY_HAVES {
                peer.early_haves.push(piece);
            }
            return Ok(());
        };
        if piece >= count {
            return Err(ProtocolViolation::HaveOutOfRange { piece, count }.into());
        }
        let peer = self.peer_mut(key)?;
        if peer.is_seed || !peer.has.set(piece) {
            return Ok(());
        }
        let became_seed = peer.has.is_full();
        if let Some(picker) = &mut self.picker {
            picker.add_available(piece);
            if became_seed {
                self.promote_to_seed(key);
            }
            let wanted = self.picker.as_ref().is_some_and(|p| p.is_wanted(piece));
            if wanted {
                self.set_interested(key, true);
                self.fill_requests(now, key);
            }
        }
        self.maybe_drop_useless(now, key);
        Ok(())
    }

    /// A peer with every piece is counted once as a seed rather than once per piece.
    pub(super) fn promote_to_seed(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.is_seed {
            return;
        }
        peer.is_seed = true;
        if let Some(picker) = &mut self.picker {
            for piece in peer.has.iter_ones() {
                picker.remove_available(piece);
            }
            picker.add_seed();
        }
    }

    pub(super) fn on_bitfield(&mut self, now: Instant, key: PeerKey, bits: Bytes) -> Handled {
        let Some(count) = self.piece_count() else {
            self.peer_mut(key)?.early_bitfield = Some(bits);
            return Ok(());
        };
        let has = Bitfield::from_bytes(&bits, count).map_err(ProtocolViolation::BadBitfield)?;
        self.apply_bitfield(now, key, has);
        Ok(())
    }

    /// BEP 3 allows a bitfield only first, but aria2 sends one after `have none` once it has
    /// pieces. Like libtorrent we accept it as a batch of `have`s: bits are only ever added.
    pub(super) fn on_late_bitfield(&mut self, now: Instant, key: PeerKey, bits: Bytes) -> Handled {
        let Some(count) = self.piece_count() else {
            // Before the metadata, it replaces what we noted so far.
            self.peer_mut(key)?.early_bitfield = Some(bits);
            return Ok(());
        };
        let has = Bitfield::from_bytes(&bits, count).map_err(ProtocolViolation::BadBitfield)?;
        for piece in has.iter_ones() {
            self.on_have(now, key, piece)?;
        }
        Ok(())
    }

    pub(super) fn apply_bitfield(&mut self, now: Instant, key: PeerKey, has: Bitfield) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let full = has.is_full();
        peer.has = has;
        if full {
            peer.is_seed = true;
            if let Some(picker) = &mut self.picker {
                picker.add_seed();
            }
        } else if let Some(picker) = &mut self.picker {
            for piece in peer.has.iter_ones() {
                picker.add_available(piece);
            }
        }
        self.update_interest(key);
        self.fill_requests(now, key);
        self.maybe_drop_useless(now, key);
    }

    /// A have-all after other messages: whatever the peer did not announce yet, as haves.
    pub(super) fn on_late_have_all(&mut self, now: Instant, key: PeerKey) -> Handled {
        let Some(count) = self.piece_count() else {
            self.peer_mut(key)?.early_have_all = true;
            return Ok(());
        };
        let missing: Vec<u32> = {
            let peer = self.peer_mut(key)?;
            (0..count).filter(|&p| !peer.has.get(p)).collect()
        };
        for piece in missing {
            self.on_have(now, key, piece)?;
        }
        Ok(())
    }

    pub(super) fn on_have_all(&mut self, now: Instant, key: PeerKey) {
        match self.piece_count() {
            Some(count) => self.apply_bitfield(now, key, Bitfield::full(count)),
            None => {
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.early_have_all = true;
                }
            }
        }
    }

    pub(super) fn on_piece(
        &mut self,
        now: Instant,
        key: PeerKey,
        piece: u32,
        offset: u32,
        data: Bytes,
    ) -> Handled {
        let block = BlockRef { piece, offset, length: data.len() as u32 };
        let len = data.len() as u64;
        let peer = self.peer_mut(key)?;
        // A block we no longer have requested from this peer (cancelled after a timeout, or a
        // race with a choke) is still welcome if nobody delivered it yet; the picker decides.
        let requested = peer.take_request(&block);
        if requested {
            peer.last_block_at = now;
            peer.snubbed = false;
        }
        let Some(picker) = &mut self.picker else { return Ok(()) };
        if requested {
            if let (Some(sent), Some(peer)) =
                (picker.requested_at(&block), self.peers.get_mut(&key))
            {
                peer.record_latency(now.saturating_since(sent));
            }
        }
        match picker.on_block(block, key) {
            BlockOutcome::Unwanted => {
                self.stats.wasted += len;
                let peer = self.peer_mut(key)?;
                // A block we cancelled was sent before the cancel reached the peer: late,
                // not unrequested.
                if !requested && !peer.take_cancelled(&block) {
                    peer.unrequested_bytes += len;
                    if peer.unrequested_bytes > MAX_UNREQUESTED_BYTES {
                        let limit = MAX_UNREQUESTED_BYTES;
                        return Err(ProtocolViolation::TooManyUnrequestedBytes { limit }.into());
                    }
                }
            }
            BlockOutcome::Accepted { cancel, piece_complete } => {
                // Only useful data earns a peer rate (and with it, unchoke slots).
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.download.record(now, len);
                }
                self.keep_block(now, block, data, cancel, piece_complete);
            }
        }
        self.fill_requests(now, key);
        Ok(())
    }

    /// A block the picker accepted (from a peer or a web seed): count it, write it, verify
    /// the piece when it is complete, and cancel the duplicate request elsewhere.
    pub(super) fn keep_block(
        &mut self,
        now: Instant,
        block: BlockRef,
        data: Bytes,
        cancel: Option<PeerKey>,
        piece_complete: bool,
    ) {
        let BlockRef { piece, offset, length } = block;
        let len = u64::from(length);
        self.download_rate.record(now, len);
        self.peak_download_rate = self.peak_download_rate.max(self.download_rate.rate(now));
        if self.picker.as_ref().is_some_and(|p| !p.is_deadline(piece)) {
            self.background_rate.record(now, len);
        }
        self.stats.downloaded += len;
        self.actions.push_back(Action::WriteBlock { piece, offset, data });
        if piece_complete {
            self.actions.push_back(Action::VerifyPiece { piece });
        }
        if let Some(other) = cancel {
            if let Some(p) = self.peers.get_mut(&other) {
                if p.take_request(&block) {
                    self.send(other, Message::Cancel(block));
                }
            }
        }
    }
}
