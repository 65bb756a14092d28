//! Players at nodes: starting, seeking and waking them, and carrying their reader's moves to
//! the core (as a driver's reader does with `set_reader` / `remove_reader`).
//!
//! A player is looked at only when something can change for it: the time its playback reaches
//! the next piece boundary (an event it schedules), the piece its reads wait for being
//! verified, a seek. So a thousand players cost a few events per piece each, not one per
//! millisecond.

use shoal_proto::streaming::ReaderId;

use super::{Event, Sim};
use crate::node::NodeId;
use crate::player::{Player, PlayerConfig, PlayerStats, ReaderUpdate};

/// The reader id a node's player uses with its core (one player per node).
const PLAYER_READER: ReaderId = ReaderId(1);

impl Sim {
    /// `node` starts playing now (replacing any player it had): it asks its core for the
    /// pieces under its position and shows a first frame once its startup buffer is verified.
    pub fn play(&mut self, node: NodeId, config: PlayerConfig) {
        let info = &self.torrent.metainfo.info;
        let (piece_length, total) = (info.piece_length, info.total_length);
        self.nodes[node].player = Some(Player::new(config, piece_length, total, self.now));
        self.step_player(node);
    }

    /// `node`'s player jumps to torrent offset `offset` and buffers there.
    pub fn seek(&mut self, node: NodeId, offset: u64) {
        let now = self.now;
        let Some(player) = self.nodes[node].player.as_mut() else { return };
        player.seek(now, offset);
        self.step_player(node);
    }

    /// What `node`'s player went through, if it has one.
    pub fn player(&self, node: NodeId) -> Option<&PlayerStats> {
        self.nodes[node].player()
    }

    /// Fetch only what readers wait for (the core's `set_deadline_only`), as the bounded
    /// in-memory stores of the native and browser drivers do.
    pub fn set_deadline_only(&mut self, node: NodeId, only: bool) {
        self.nodes[node].torrent.set_deadline_only(only);
        self.drain(node);
    }

    /// A look `node`'s player asked for: its playback's scheduled one (`timer`), or one for a
    /// verified piece. Looks no longer wanted are skipped.
    pub(super) fn on_player_wake(&mut self, node: NodeId, timer: bool) {
        let now = self.now;
        let Some(player) = self.nodes[node].player.as_mut() else { return };
        if timer && player.wake == Some(now) {
            player.wake = None;
        } else if !timer && player.check_pending {
            player.check_pending = false;
        } else {
            return;
        }
        self.step_player(node);
    }

    /// Pieces became verified at `node` (`Some(piece)`, or `None` for whatever a recheck found):
    /// a player whose reads wait for them looks again, later in this instant (as a driver's
    /// reader wakes when its piece arrives).
    pub(super) fn player_pieces_verified(&mut self, node: NodeId, piece: Option<u32>) {
        let Some(player) = self.nodes[node].player.as_mut() else { return };
        if !player.check_pending && piece.is_none_or(|p| player.waits_for(p)) {
            player.check_pending = true;
            self.schedule(self.now, Event::Player { node, timer: false });
        }
    }

    /// Brings `node`'s player up to now, moves its reader in the core and schedules its next
    /// look.
    fn step_player(&mut self, node: NodeId) {
        if !self.running(node) {
            return;
        }
        let now = self.now;
        let n = &mut self.nodes[node];
        let Some(player) = n.player.as_mut() else { return };
        let have = n.torrent.have();
        let next = player.advance(now, |piece| have.get(piece));
        match player.reader_update(now) {
            Some(ReaderUpdate::Set(window)) => n.torrent.set_reader(now, PLAYER_READER, window),
            Some(ReaderUpdate::Remove) => n.torrent.remove_reader(now, PLAYER_READER),
            None => {}
        }
        // A look scheduled earlier for another time is skipped when it comes (see
        // `on_player_wake`).
        if next != player.wake {
            player.wake = next;
            if let Some(at) = next {
                self.schedule(at, Event::Player { node, timer: true });
            }
        }
        self.drain(node);
    }
}
