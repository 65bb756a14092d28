//! Choking: which interested peers we upload to. The [`Choker`](crate::choker::Choker) picks
//! them each round; this side applies its choice, and a choke takes the peer's pending
//! requests with it (rejected explicitly for peers that speak the Fast extension).

use super::Torrent;
use crate::choker::Candidate;
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::{BlockRef, Message};

impl Torrent {
    pub(super) fn set_choke(&mut self, key: PeerKey, choke: bool) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.am_choking == choke {
            return;
        }
        peer.am_choking = choke;
        if choke {
            // Pending requests die with the choke; Fast peers are told so explicitly.
            let pending: Vec<BlockRef> =
                peer.uploads.iter().filter(|u| !u.reading).map(|u| u.block).collect();
            peer.uploads.retain(|u| u.reading);
            let fast = peer.supports_fast;
            self.send(key, Message::Choke);
            if fast {
                for block in pending {
                    self.send(key, Message::Reject(block));
                }
            }
            // Nothing of its waits for the transport any more.
            self.pump_uploads(key);
        } else {
            self.send(key, Message::Unchoke);
        }
    }

    pub(super) fn choke_round(&mut self, now: Instant) {
        let candidates: Vec<Candidate> = self
            .peers
            .values()
            .map(|p| Candidate {
                peer: p.key,
                interested: p.peer_interested,
                download_rate: p.download.rate(now),
                upload_rate: p.upload.rate(now),
            })
            .collect();
        let unchoke = self.choker.round(now, &candidates, self.completed);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.set_choke(key, !unchoke.contains(&key));
        }
    }
}
