//! From readers' positions to the pieces they wait for.
//!
//! A reader (a player reading a file over HTTP, an `AsyncRead` in the library) sits at a byte
//! offset of the torrent and reads towards the end of its file. The pieces under it are
//! *critical*: the player is stalled until they arrive. The pieces after them, up to a
//! read-ahead the driver sizes from the reader's bitrate, are *urgent*. Both become the
//! picker's deadlines, ordered by how soon a reader reaches them, so with several readers
//! (two files, or a player that opened one file twice) the nearest needs of each come first.
//! How far ahead that is, from what a reader consumed, is [`readahead`]: one rule for every
//! driver that measures its readers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::picker::{Deadline, Geometry};

/// Bytes after a reader's position whose pieces are critical (at least the piece under it).
pub const CRITICAL_BYTES: u64 = 1024 * 1024;
/// Deadline pieces at most, across all readers: bounds the work per position change.
pub const MAX_DEADLINE_PIECES: usize = 4096;

/// Read-ahead before the reader's bitrate is known.
pub const DEFAULT_READAHEAD: u64 = 16 * 1024 * 1024;
/// Read-ahead at most, however fast the reader.
pub const MAX_READAHEAD: u64 = 256 * 1024 * 1024;
/// Seconds of the reader's bitrate to fetch ahead of it.
pub const READAHEAD_SECONDS: u64 = 30;
/// How long a reader's bitrate is measured before it sizes the read-ahead: a player's first
/// reads are a burst (headers, the startup buffer) that says nothing about its bitrate.
pub const RATE_WARMUP: Duration = Duration::from_secs(2);

/// Bytes to fetch ahead of a reader that consumed `bytes` in the `elapsed` since it opened or
/// last seeked: [`READAHEAD_SECONDS`] of that rate within [`DEFAULT_READAHEAD`] and
/// [`MAX_READAHEAD`], or the default while the rate is too young to trust.
pub fn readahead(bytes: u64, elapsed: Duration) -> u64 {
    if elapsed < RATE_WARMUP {
        return DEFAULT_READAHEAD;
    }
    let per_second = (u128::from(bytes) * 1_000_000_000 / elapsed.as_nanos().max(1)) as u64;
    per_second.saturating_mul(READAHEAD_SECONDS).clamp(DEFAULT_READAHEAD, MAX_READAHEAD)
}

/// Identifies one reader of one torrent; chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReaderId(pub u64);

/// Where a reader is and how far ahead it wants data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderWindow {
    /// Offset in the torrent (all files concatenated) the reader reads next.
    pub position: u64,
    /// Exclusive end of what it may read: the end of its file.
    pub end: u64,
    /// Bytes after `position` to fetch early.
    pub readahead: u64,
}

/// Deadlines for `readers`, most urgent first, skipping pieces `held` says we have.
pub fn deadlines<'a>(
    geometry: &Geometry,
    readers: impl IntoIterator<Item = &'a ReaderWindow>,
    held: impl Fn(u32) -> bool,
) -> Vec<Deadline> {
    if geometry.piece_length == 0 || geometry.piece_count == 0 {
        return Vec::new();
    }
    let piece_length = u64::from(geometry.piece_length);
    let sizes = crate::PieceSizes::new(geometry.piece_length, geometry.total_length);
    let last_piece = geometry.piece_count - 1;
    // (distance from the reader, piece, critical) for every piece in every window.
    let mut wanted: Vec<(u64, u32, bool)> = Vec::new();
    for window in readers {
        let end = window.end.min(geometry.total_length);
        if window.position >= end {
            continue;
        }
        let critical_end = window.position.saturating_add(CRITICAL_BYTES);
        let ahead_end = window.position.saturating_add(window.readahead.max(1)).min(end);
        let pieces = sizes.pieces_overlapping(window.position..ahead_end);
        let first = pieces.start;
        for piece in first..pieces.end.min(last_piece + 1) {
            if wanted.len() >= MAX_DEADLINE_PIECES * 2 {
                break;
            }
            let start = u64::from(piece) * piece_length;
            let distance = start.saturating_sub(window.position);
            let critical = piece == first || start < critical_end;
            wanted.push((distance, piece, critical));
        }
    }
    wanted.sort_unstable();
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut out: Vec<Deadline> = Vec::new();
    for (_, piece, critical) in wanted {
        if held(piece) {
            continue;
        }
        match seen.get(&piece) {
            // Nearer to another reader already; it may still be critical for this one.
            Some(&i) => out[i].critical |= critical,
            None => {
                if out.len() == MAX_DEADLINE_PIECES {
                    continue;
                }
                seen.insert(piece, out.len());
                out.push(Deadline { piece, critical });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    fn geometry() -> Geometry {
        // 64 pieces of 256 KiB.
        Geometry::new(256 * 1024, 64 * 256 * KIB)
    }

    fn pieces(d: &[Deadline]) -> Vec<u32> {
        d.iter().map(|d| d.piece).collect()
    }

    #[test]
    fn window_starts_under_the_reader_and_marks_the_first_mebibyte_critical() {
        let g = geometry();
        let w = ReaderWindow {
            position: 10 * 256 * KIB + 5,
            end: g.total_length,
            readahead: 2048 * KIB,
        };
        let d = deadlines(&g, [&w], |_| false);
        assert_eq!(pieces(&d), (10..=18).collect::<Vec<_>>());
        let critical: Vec<u32> = d.iter().filter(|d| d.critical).map(|d| d.piece).collect();
        assert_eq!(critical, vec![10, 11, 12, 13, 14]);
    }

    #[test]
    fn stops_at_the_end_of_the_file_and_skips_held_pieces() {
        let g = geometry();
        let w = ReaderWindow { position: 0, end: 3 * 256 * KIB, readahead: 100 * 1024 * KIB };
        let d = deadlines(&g, [&w], |p| p == 1);
        assert_eq!(pieces(&d), vec![0, 2]);
        let at_end = ReaderWindow { position: 3 * 256 * KIB, end: 3 * 256 * KIB, readahead: 1 };
        assert!(deadlines(&g, [&at_end], |_| false).is_empty());
    }

    #[test]
    fn two_readers_interleave_by_distance() {
        let g = geometry();
        let a = ReaderWindow { position: 0, end: g.total_length, readahead: 3 * 256 * KIB };
        let b = ReaderWindow {
            position: 40 * 256 * KIB,
            end: g.total_length,
            readahead: 3 * 256 * KIB,
        };
        let d = deadlines(&g, [&a, &b], |_| false);
        assert_eq!(pieces(&d), vec![0, 40, 1, 41, 2, 42]);
    }

    #[test]
    fn overlapping_readers_keep_each_piece_once_and_critical_wins() {
        let g = geometry();
        let a = ReaderWindow { position: 0, end: g.total_length, readahead: 16 * 256 * KIB };
        let b =
            ReaderWindow { position: 8 * 256 * KIB, end: g.total_length, readahead: 8 * 256 * KIB };
        let d = deadlines(&g, [&a, &b], |_| false);
        assert_eq!(d.len(), 16);
        let critical = |p: u32| d.iter().find(|x| x.piece == p).is_some_and(|x| x.critical);
        assert!(critical(3) && !critical(4), "a's first mebibyte");
        assert!(critical(8) && critical(11), "b's first mebibyte");
        assert!(!critical(12));
    }

    #[test]
    fn readahead_is_thirty_seconds_of_the_measured_rate_within_bounds() {
        let secs = Duration::from_secs;
        assert_eq!(readahead(100 * 1024 * KIB, secs(1)), DEFAULT_READAHEAD, "still warming up");
        assert_eq!(readahead(0, secs(10)), DEFAULT_READAHEAD, "slow readers get the floor");
        assert_eq!(readahead(2048 * KIB * 10, secs(10)), 30 * 2048 * KIB);
        assert_eq!(readahead(u64::MAX, secs(3)), MAX_READAHEAD);
    }

    #[test]
    fn huge_readahead_is_bounded() {
        let g = Geometry::new(16 * 1024, 1 << 40);
        let w = ReaderWindow { position: 0, end: u64::MAX, readahead: u64::MAX };
        assert_eq!(deadlines(&g, [&w], |_| false).len(), MAX_DEADLINE_PIECES);
    }
}
