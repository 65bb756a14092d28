//! Hash results: a verified piece is announced to every peer; a failed one is fetched again
//! and its senders are blamed (a sole sender is banned, shared blame accumulates strikes).

use super::{Action, DisconnectReason, Torrent};
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::Message;

impl Torrent {
    /// The driver hashed `piece`: `ok` when it matched.
    pub fn on_piece_verified(&mut self, now: Instant, piece: u32, ok: bool) {
        self.clock = self.clock.max(now);
        let Some(picker) = &mut self.picker else { return };
        let blamed = picker.on_verified(piece, ok);
        if ok {
            self.have.set(piece);
            self.actions.push_back(Action::PieceVerified { piece });
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.send(key, Message::Have(piece));
            }
            self.check_completed();
            return;
        }
        let piece_len = self.info.as_ref().map_or(0, |i| u64::from(i.piece_len(piece)));
        self.stats.wasted += piece_len;
        self.stats.downloaded = self.stats.downloaded.saturating_sub(piece_len);
        self.actions.push_back(Action::PieceFailed { piece });
        // A piece from a single peer convicts it; shared blame accumulates strikes. Web seeds
        // have no address to ban: they count failures of their own.
        let sole = blamed.len() == 1;
        for key in blamed {
            if self.is_web_seed(key) {
                self.on_web_seed_bad_piece(key, piece);
                continue;
            }
            let ip = self.peers.get(&key).and_then(|p| p.addr).map(|a| a.ip());
            let Some(ip) = ip.or_else(|| self.departed.get(&key).copied()) else {
                if sole {
                    self.drop_peer(now, key, DisconnectReason::Banned);
                }
                continue;
            };
            let banned = if sole {
                self.book.ban(ip);
                true
            } else {
                self.book.strike(ip)
            };
            if banned {
                let same_ip: Vec<PeerKey> = self
                    .peers
                    .values()
                    .filter(|p| p.addr.map(|a| a.ip()) == Some(ip))
                    .map(|p| p.key)
                    .collect();
                for k in same_ip {
                    self.drop_peer(now, k, DisconnectReason::Banned);
                }
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(now, key);
        }
        self.fill_web_seeds(now);
    }

    pub(super) fn check_completed(&mut self) {
        if self.completed || !self.is_complete() {
            return;
        }
        self.completed = true;
        self.actions.push_back(Action::Completed);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.set_interested(key, false);
        }
    }
}
