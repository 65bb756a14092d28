//! Which pieces the bounded in-memory store drops when it is over its budget.
//!
//! Never a piece inside a reader's window (under it or about to be played). First the pieces
//! readers have passed, the longest-passed first (a short seek back stays cheap); then pieces
//! ahead of readers but beyond their windows, the farthest first; pieces no reader is near
//! count as passed.

use crate::streaming::ReaderWindow;

/// Share of a bounded store's budget (one part in this many) that readers' windows may take
/// together; the rest holds verified pieces, served to peers and kept for short seeks back.
pub const WINDOW_SHARE: u64 = 4;
/// A bounded store evicts down to this many quarters of its budget, leaving room for the
/// pieces in flight.
pub const RESIDENT_QUARTERS: u64 = 3;

/// Bytes the readers' windows of a store with this budget may take together.
pub fn windows_budget(budget: u64) -> u64 {
    budget / WINDOW_SHARE
}

/// Residency eviction brings a store with this budget down to.
pub fn resident_target(budget: u64) -> u64 {
    budget / 4 * RESIDENT_QUARTERS
}

/// Pieces to evict, in order, so that `resident_bytes` drops to `target` or as close as
/// allowed. `piece_len` gives each piece's size.
pub fn choose(
    resident: &[u32],
    resident_bytes: u64,
    target: u64,
    piece_length: u32,
    windows: &[ReaderWindow],
    piece_len: impl Fn(u32) -> u64,
) -> Vec<u32> {
    if resident_bytes <= target || piece_length == 0 {
        return Vec::new();
    }
    let plen = u64::from(piece_length);
    // (class, distance) per piece: class 0 = passed or unrelated, 1 = ahead beyond a window;
    // larger distances go first within a class.
    let mut candidates: Vec<(u8, std::cmp::Reverse<u64>, u32)> = Vec::new();
    for &piece in resident {
        let start = u64::from(piece) * plen;
        let end = start + piece_len(piece);
        let mut protected = false;
        let mut ahead_by: Option<u64> = None;
        let mut behind_by: Option<u64> = None;
        for w in windows {
            let window_end = w.position.saturating_add(w.readahead).min(w.end);
            if end > w.position && start < window_end.max(w.position + 1) {
                protected = true;
                break;
            }
            if start >= window_end && start < w.end {
                let d = start - w.position;
                ahead_by = Some(ahead_by.map_or(d, |a| a.min(d)));
            } else if end <= w.position {
                let d = w.position - end;
                behind_by = Some(behind_by.map_or(d, |b| b.min(d)));
            }
        }
        if protected {
            continue;
        }
        let key = match (ahead_by, behind_by) {
            (Some(ahead), _) => (1, std::cmp::Reverse(ahead)),
            (None, Some(behind)) => (0, std::cmp::Reverse(behind)),
            (None, None) => (0, std::cmp::Reverse(u64::MAX)),
        };
        candidates.push((key.0, key.1, piece));
    }
    candidates.sort_unstable();
    let mut bytes = resident_bytes;
    let mut out = Vec::new();
    for (_, _, piece) in candidates {
        if bytes <= target {
            break;
        }
        bytes = bytes.saturating_sub(piece_len(piece));
        out.push(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 100;

    fn window(position: u64, readahead: u64) -> ReaderWindow {
        ReaderWindow { position, end: 100 * P, readahead }
    }

    fn run(resident: &[u32], target_pieces: u64, windows: &[ReaderWindow]) -> Vec<u32> {
        let bytes = resident.len() as u64 * P;
        choose(resident, bytes, target_pieces * P, P as u32, windows, |_| P)
    }

    #[test]
    fn nothing_when_under_budget() {
        assert!(run(&[1, 2, 3], 3, &[window(0, 10)]).is_empty());
    }

    #[test]
    fn passed_pieces_go_first_oldest_first_then_far_ahead() {
        // Reader at piece 10 with a window of 3 pieces (10, 11, 12).
        let resident = [2, 8, 9, 10, 11, 12, 30, 50];
        let order = run(&resident, 0, &[window(10 * P + 5, 3 * P)]);
        assert_eq!(order, vec![2, 8, 9, 50, 30], "the window 10..=12 is never evicted");
    }

    #[test]
    fn stops_once_at_target() {
        let resident = [1, 2, 3, 20];
        assert_eq!(run(&resident, 3, &[window(20 * P, P)]), vec![1]);
    }

    #[test]
    fn every_reader_protects_its_window() {
        let resident = [0, 1, 50, 51, 70];
        let order = run(&resident, 0, &[window(0, 2 * P), window(50 * P, 2 * P)]);
        assert_eq!(order, vec![70]);
    }
}
