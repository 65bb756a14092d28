//! Learning the info dictionary from peers (BEP 9) when the torrent came from a magnet:
//! asking peers that offer `ut_metadata` for its pieces, answering their requests once we
//! know it, and applying what peers said about their pieces before we could count them.

use bytes::Bytes;

use super::{Action, DisconnectReason, Handled, ProtocolViolation, Stop, Torrent};
use crate::bitfield::Bitfield;
use crate::extension::MetadataMessage;
use crate::metadata::{self, MetadataDownload};
use crate::metainfo::Info;
use crate::picker::{Geometry, Picker};
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::Message;

/// Metadata pieces requested from one peer at a time.
const METADATA_REQUESTS_PER_PEER: u32 = 2;

impl Torrent {
    pub(super) fn start_metadata(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else { return };
        let (Some(size), true) = (peer.metadata_size, peer.extensions.ut_metadata != 0) else {
            return;
        };
        if self.metadata.is_none() {
            match MetadataDownload::new(self.info_hash, size) {
                Ok(md) => self.metadata = Some(md),
                Err(e) => {
                    let reason = DisconnectReason::Protocol(ProtocolViolation::BadMetadata(e));
                    self.drop_peer(now, key, reason);
                    return;
                }
            }
        }
        self.request_metadata(now, key);
    }

    pub(super) fn request_metadata(&mut self, now: Instant, key: PeerKey) {
        let Some(md) = &mut self.metadata else { return };
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.extensions.ut_metadata == 0 {
            return;
        }
        let mut out = Vec::new();
        while peer.metadata_in_flight < METADATA_REQUESTS_PER_PEER {
            let Some(piece) = md.next_request(key.0, now) else { break };
            peer.metadata_in_flight += 1;
            out.push((peer.extensions.ut_metadata, piece));
        }
        for (id, piece) in out {
            let payload = MetadataMessage::Request { piece }.encode();
            self.send(key, Message::Extended { id, payload });
        }
    }

    pub(super) fn on_metadata_message(
        &mut self,
        now: Instant,
        key: PeerKey,
        msg: MetadataMessage,
    ) -> Handled {
        match msg {
            MetadataMessage::Request { piece } => {
                let their_id = self.peer_mut(key)?.extensions.ut_metadata;
                if their_id == 0 {
                    return Ok(());
                }
                let reply =
                    match self.info_bytes.as_ref().and_then(|b| metadata::metadata_piece(b, piece))
                    {
                        Some(data) => MetadataMessage::Data {
                            piece,
                            total_size: self.info_bytes.as_ref().map_or(0, |b| b.len() as u64),
                            data: Bytes::copy_from_slice(data),
                        },
                        None => MetadataMessage::Reject { piece },
                    };
                self.send(key, Message::Extended { id: their_id, payload: reply.encode() });
            }
            MetadataMessage::Reject { piece } => {
                let peer = self.peer_mut(key)?;
                peer.metadata_in_flight = peer.metadata_in_flight.saturating_sub(1);
                if let Some(md) = &mut self.metadata {
                    md.on_reject(key.0, piece);
                }
            }
            MetadataMessage::Data { piece, total_size, data } => {
                let peer = self.peer_mut(key)?;
                peer.metadata_in_flight = peer.metadata_in_flight.saturating_sub(1);
                let Some(md) = &mut self.metadata else { return Ok(()) };
                match md.on_data(key.0, piece, total_size, &data) {
                    Ok(Some(info_bytes)) => {
                        self.metadata = None;
                        let bytes = Bytes::from(info_bytes);
                        if let Err(e) = self.install_info(bytes.clone()) {
                            // The hash matched, so the torrent itself is bad: nothing to retry.
                            return Err(ProtocolViolation::InvalidTorrent(e).into());
                        }
                        self.after_metadata(now);
                        self.actions.push_back(Action::MetadataReceived { info_bytes: bytes });
                    }
                    Ok(None) => self.request_metadata(now, key),
                    Err(e) => {
                        let culprits = e.peers().to_vec();
                        for culprit in culprits {
                            let violation = ProtocolViolation::BadMetadata(e.clone());
                            self.drop_peer(
                                now,
                                PeerKey(culprit),
                                DisconnectReason::Protocol(violation),
                            );
                        }
                        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                        for k in keys {
                            self.request_metadata(now, k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn install_info(
        &mut self,
        bytes: Bytes,
    ) -> Result<(), crate::metainfo::MetainfoError> {
        let info = Info::from_bytes(&bytes)?;
        let geometry = Geometry::new(info.piece_length, info.total_length);
        self.have = Bitfield::new(info.piece_count());
        let mut picker = Picker::new(geometry, self.random_seed);
        picker.set_deadline_only(self.deadline_only);
        self.picker = Some(picker);
        self.info = Some(info);
        self.info_bytes = Some(bytes);
        Ok(())
    }

    /// Piece information that arrived before the metadata can be applied now.
    pub(super) fn after_metadata(&mut self, now: Instant) {
        let Some(count) = self.piece_count() else { return };
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            peer.has = Bitfield::new(count);
            let early_bitfield = peer.early_bitfield.take();
            let early_haves = std::mem::take(&mut peer.early_haves);
            let have_all = peer.early_have_all;
            if have_all {
                self.apply_bitfield(now, key, Bitfield::full(count));
            } else if let Some(bits) = early_bitfield {
                match Bitfield::from_bytes(&bits, count) {
                    Ok(has) => self.apply_bitfield(now, key, has),
                    Err(e) => {
                        let reason = DisconnectReason::Protocol(ProtocolViolation::BadBitfield(e));
                        self.drop_peer(now, key, reason);
                        continue;
                    }
                }
            }
            for piece in early_haves {
                match self.on_have(now, key, piece) {
                    Ok(()) => {}
                    Err(Stop::Violation(violation)) => {
                        self.drop_peer(now, key, DisconnectReason::Protocol(violation));
                        break;
                    }
                    Err(Stop::PeerGone) => break,
                }
            }
        }
    }
}
