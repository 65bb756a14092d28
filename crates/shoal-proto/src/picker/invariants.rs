//! Checks of the picker's invariants (numbered as in the module doc of `picker.rs`): the cheap
//! ones after each call that changes pieces in debug builds, all of them in the tests.

use super::{Block, Picker, PieceState};

impl Picker {
    /// After a call that changed `pieces` (repeats in a row are checked once): the counts and
    /// those pieces, in debug builds only. Costs O(the pieces' blocks), never O(pieces).
    pub(super) fn debug_check(&self, pieces: impl IntoIterator<Item = u32>) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.check_counts();
        let mut last = None;
        for piece in pieces {
            if last != Some(piece) && piece < self.geometry.piece_count {
                self.check_piece(piece);
            }
            last = Some(piece);
        }
    }

    /// The bounds that hold whatever the pieces are: O(1).
    fn check_counts(&self) {
        let pieces = self.geometry.piece_count;
        assert!(self.partial.len() <= pieces as usize, "2: more started pieces than pieces");
        assert!(self.wanted_missing <= pieces, "7: wanted_missing {}", self.wanted_missing);
        assert!(self.order.len() <= 2 * pieces as usize, "9: order of {}", self.order.len());
        assert!(self.run_cursor <= pieces, "11: run_cursor {}", self.run_cursor);
    }

    /// Invariants 2 to 6 and 11 for one piece: O(its blocks).
    fn check_piece(&self, piece: u32) {
        let state = self.state[piece as usize];
        let partial = self.partial.get(&piece);
        let started = matches!(state, PieceState::InProgress | PieceState::Verifying);
        assert_eq!(partial.is_some(), started, "2: piece {piece} is {state:?}");
        if piece < self.run_cursor {
            assert_eq!(state, PieceState::Have, "11: piece {piece} below the run cursor");
        }
        let Some(partial) = partial else { return };
        let blocks = self.geometry.block_count(piece) as usize;
        assert_eq!(partial.blocks.len(), blocks, "3: blocks of piece {piece}");
        assert_eq!(partial.requested_at.len(), blocks, "3: request times of piece {piece}");
        let count = |kind: fn(&Block) -> bool| partial.blocks.iter().filter(|b| kind(b)).count();
        let free = count(|b| *b == Block::Free);
        let received = count(|b| *b == Block::Received);
        assert_eq!(partial.free as usize, free, "3: free blocks of piece {piece}");
        assert_eq!(partial.received as usize, received, "3: received blocks of piece {piece}");
        assert_eq!(state == PieceState::Verifying, received == blocks, "4: piece {piece}");
        for block in &partial.blocks {
            if let Block::Requested(first, Some(dup)) = block {
                assert_ne!(first, dup, "5: piece {piece} duplicated to the same peer");
            }
        }
        let contributors = &partial.contributors;
        assert!(contributors.len() <= received, "6: contributors of piece {piece}");
        for (i, peer) in contributors.iter().enumerate() {
            assert!(!contributors[..i].contains(peer), "6: {peer:?} twice in piece {piece}");
        }
    }

    /// Every invariant the picker can check by itself (8 needs the peers): O(pieces).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let pieces = self.geometry.piece_count as usize;
        let sizes = [self.state.len(), self.availability.len(), self.priority.len()];
        assert_eq!(sizes, [pieces; 3], "1: sizes");
        self.check_counts();
        (0..self.geometry.piece_count).for_each(|piece| self.check_piece(piece));
        let wanted_missing = (0..pieces)
            .filter(|&i| self.priority[i] > 0 && self.state[i] != PieceState::Have)
            .count();
        assert_eq!(self.wanted_missing as usize, wanted_missing, "7: wanted_missing");
        if self.order_built_at.is_some() {
            let queued: std::collections::BTreeSet<u32> = self.order.iter().copied().collect();
            for piece in 0..self.geometry.piece_count {
                let i = piece as usize;
                if self.state[i] == PieceState::Missing && self.priority[i] > 0 {
                    assert!(queued.contains(&piece), "9: wanted piece {piece} not in the order");
                }
            }
        }
        let deadlines: std::collections::BTreeSet<u32> =
            self.deadlines.iter().map(|d| d.piece).collect();
        assert_eq!(deadlines, self.deadline_set, "10: deadline set");
        assert!(deadlines.iter().all(|&p| (p as usize) < pieces), "10: deadline past the end");
    }
}

#[cfg(test)]
mod tests;
