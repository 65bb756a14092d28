//! The extension protocol (BEP 10): the extended handshake (which extensions a peer speaks,
//! its queue depth, its metadata size) and the small extensions it carries: `lt_donthave`,
//! `ut_pex` received (sent: `pex.rs`), and `ut_metadata`, whose exchange is in `metadata_exchange.rs`.

use std::net::SocketAddr;

use bytes::Bytes;

use super::{Handled, ProtocolViolation, Torrent};
use crate::bitfield::Bitfield;
use crate::extension::{self, ExtendedHandshake, LocalExtension, MetadataMessage, PexMessage};
use crate::peer::Direction;
use crate::time::Instant;
use crate::types::{PeerKey, PeerSource};

impl Torrent {
    pub(super) fn on_extended(
        &mut self,
        now: Instant,
        key: PeerKey,
        id: u8,
        payload: Bytes,
    ) -> Handled {
        if id == extension::HANDSHAKE_ID {
            return self.on_extended_handshake(now, key, &payload);
        }
        match LocalExtension::from_id(id) {
            Some(LocalExtension::Metadata) => {
                let msg = MetadataMessage::decode(&payload)
                    .map_err(ProtocolViolation::BadMetadataMessage)?;
                self.on_metadata_message(now, key, msg)?;
            }
            Some(LocalExtension::DontHave) => {
                let piece = extension::decode_dont_have(&payload)
                    .map_err(ProtocolViolation::BadDontHave)?;
                self.on_donthave(key, piece)?;
            }
            Some(LocalExtension::Pex) => {
                // PEX is advice, not protocol: a malformed message is ignored, not fatal. A
                // private torrent takes peers from its trackers only (BEP 27).
                let pex = PexMessage::decode(&payload).ok().filter(|_| self.pex_allowed());
                if let Some(pex) = pex {
                    self.add_peer_addrs(now, PeerSource::Pex, pex.added.iter().copied());
                }
            }
            None => {} // an extension we did not offer: ignore
        }
        Ok(())
    }

    pub(super) fn on_extended_handshake(
        &mut self,
        now: Instant,
        key: PeerKey,
        payload: &[u8],
    ) -> Handled {
        let hs =
            ExtendedHandshake::decode(payload).map_err(ProtocolViolation::BadExtendedHandshake)?;
        let peer = self.peer_mut(key)?;
        for (name, id) in &hs.extensions {
            match name.as_str() {
                extension::UT_METADATA => peer.extensions.ut_metadata = *id,
                extension::UT_PEX => peer.extensions.ut_pex = *id,
                extension::LT_DONTHAVE => peer.extensions.lt_donthave = *id,
                _ => {}
            }
        }
        if let Some(reqq) = hs.request_queue {
            peer.max_requests = reqq.clamp(1, crate::peer::MAX_QUEUE_TARGET);
        }
        peer.client = hs.client.clone();
        peer.metadata_size = hs.metadata_size;
        peer.listen_port = hs.listen_port;
        if let (Some(port), Some(addr), Direction::Incoming) =
            (hs.listen_port, peer.addr, peer.direction)
        {
            // It dialled us: don't dial it back.
            self.book.mark_busy(SocketAddr::new(addr.ip(), port));
        }
        if self.info.is_none() {
            self.start_metadata(now, key);
        }
        Ok(())
    }

    pub(super) fn on_donthave(&mut self, key: PeerKey, piece: u32) -> Handled {
        let Some(count) = self.piece_count() else { return Ok(()) };
        if piece >= count {
            return Err(ProtocolViolation::DontHaveOutOfRange { piece, count }.into());
        }
        let peer = self.peer_mut(key)?;
        let was_seed = peer.is_seed;
        if was_seed {
            // Demote from the seed count to per-piece availability.
            peer.is_seed = false;
            peer.has = Bitfield::full(count);
        }
        let had = peer.has.clear(piece);
        if let Some(picker) = &mut self.picker {
            if was_seed {
                picker.remove_seed();
                for p in (0..count).filter(|&p| p != piece) {
                    picker.add_available(p);
                }
            } else if had {
                picker.remove_available(piece);
            }
        }
        Ok(())
    }
}
