//! Metadata exchange for magnet links (BEP 9), both directions, without I/O.
//!
//! Downloading: [`MetadataDownload`] hands out 16 KiB pieces of the info dictionary to peers,
//! collects them in any order and returns the whole dictionary once its SHA-1 matches the info
//! hash. Nothing is trusted before that check: if it fails, every piece is dropped and the
//! peers that sent them are named, so the caller can disconnect them.
//!
//! Serving: [`metadata_piece`] cuts a piece out of the info dictionary we have.

use std::time::Duration;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::piece_sizes::PieceSizes;
use crate::time::Instant;
use crate::types::InfoHash;

/// Metadata is exchanged in pieces of this size; only the last may be shorter.
pub const METADATA_PIECE_SIZE: usize = 16 * 1024;

/// The largest info dictionary we fetch: 64 MiB. That is 3.3 million v1 piece hashes (a 3 TiB
/// torrent at 1 MiB pieces), far beyond real torrents, while bounding what a lying peer's
/// `metadata_size` can make us hold. Also the bound [`crate::extension`] enforces on the
/// `metadata_size` and `total_size` values peers send.
pub const MAX_METADATA_SIZE: u64 = 64 * 1024 * 1024;

/// How long a requested piece stays assigned to a peer before another peer may be asked.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies a peer connection to the downloader; the caller chooses the values.
pub type PeerKey = u64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetadataError {
    #[error("metadata size {0} is out of range (1..={MAX_METADATA_SIZE})")]
    SizeOutOfRange(u64),
    #[error("peer {peer} says the metadata is {got} bytes, not {expected}")]
    SizeMismatch { peer: PeerKey, expected: u64, got: u64 },
    #[error("peer {peer} sent metadata piece {piece}, which does not exist")]
    PieceOutOfRange { peer: PeerKey, piece: u32 },
    #[error("peer {peer} sent {got} bytes for metadata piece {piece}, expected {expected}")]
    BadPieceLength { peer: PeerKey, piece: u32, expected: usize, got: usize },
    /// The assembled metadata does not hash to the info hash. All pieces were discarded;
    /// `peers` sent at least one of them (sorted, no duplicates).
    #[error("metadata does not match the info hash (sent by peers {peers:?})")]
    HashMismatch { peers: Vec<PeerKey> },
}

impl MetadataError {
    /// The peers to blame: every contributor for a hash mismatch, the sender for a malformed
    /// piece. (A `SizeMismatch` sender may be honest if the size we started from was the lie;
    /// the hash check catches that case, naming the liar among the contributors.)
    pub fn peers(&self) -> &[PeerKey] {
        match self {
            MetadataError::SizeOutOfRange(_) => &[],
            MetadataError::SizeMismatch { peer, .. }
            | MetadataError::PieceOutOfRange { peer, .. }
            | MetadataError::BadPieceLength { peer, .. } => std::slice::from_ref(peer),
            MetadataError::HashMismatch { peers } => peers,
        }
    }
}

/// An info dictionary of `total_size` bytes cut into metadata pieces: the same cut as a
/// torrent's content.
fn metadata_pieces(total_size: u64) -> PieceSizes {
    PieceSizes::new(METADATA_PIECE_SIZE as u32, total_size)
}

/// Number of metadata pieces for `total_size` bytes.
pub fn piece_count(total_size: u64) -> u32 {
    metadata_pieces(total_size).piece_count().unwrap_or(u32::MAX)
}

/// Piece `piece` of our info dictionary, for answering a `ut_metadata` request; `None` if
/// there is no such piece (answer with a reject).
pub fn metadata_piece(info_bytes: &[u8], piece: u32) -> Option<&[u8]> {
    let range = metadata_pieces(info_bytes.len() as u64).piece_range(piece)?;
    // Inside info_bytes, so both fit in usize.
    info_bytes.get(range.start as usize..range.end as usize)
}

#[derive(Clone, Debug)]
enum Slot {
    Missing,
    Requested { peer: PeerKey, at: Instant },
    Received { peer: PeerKey, data: Vec<u8> },
}

/// Fetches one torrent's info dictionary from peers.
#[derive(Clone, Debug)]
pub struct MetadataDownload {
    info_hash: InfoHash,
    total_size: u64,
    slots: Vec<Slot>,
    received: u32,
    request_timeout: Duration,
    complete: bool,
}

impl MetadataDownload {
    /// Prepares to fetch `total_size` bytes (the `metadata_size` a peer announced). Memory is
    /// taken only as pieces arrive, so a lying size costs nothing until data backs it.
    pub fn new(info_hash: InfoHash, total_size: u64) -> Result<Self, MetadataError> {
        if total_size == 0 || total_size > MAX_METADATA_SIZE {
            return Err(MetadataError::SizeOutOfRange(total_size));
        }
        Ok(MetadataDownload {
            info_hash,
            total_size,
            slots: vec![Slot::Missing; piece_count(total_size) as usize],
            received: 0,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            complete: false,
        })
    }

    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    pub fn num_pieces(&self) -> u32 {
        self.slots.len() as u32
    }

    pub fn received_pieces(&self) -> u32 {
        self.received
    }

    /// True once [`MetadataDownload::on_data`] has returned the verified metadata.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The next piece to request from `peer`, which the downloader then considers in flight
    /// with it. Pieces nobody holds come first; then pieces whose request timed out, preferably
    /// ones held by another peer. `None`: nothing to ask for now (all received or in flight).
    pub fn next_request(&mut self, peer: PeerKey, now: Instant) -> Option<u32> {
        if self.complete {
            return None;
        }
        let timed_out = |slot: &Slot| match slot {
            Slot::Requested { at, .. } => now.saturating_since(*at) >= self.request_timeout,
            _ => false,
        };
        let held_by_other =
            |slot: &Slot| matches!(slot, Slot::Requested { peer: p, .. } if *p != peer);
        let index = self
            .slots
            .iter()
            .position(|slot| matches!(slot, Slot::Missing))
            .or_else(|| self.slots.iter().position(|s| timed_out(s) && held_by_other(s)))
            .or_else(|| self.slots.iter().position(timed_out))?;
        let slot = self.slots.get_mut(index)?;
        *slot = Slot::Requested { peer, at: now };
        u32::try_from(index).ok()
    }

    /// When the earliest outstanding request times out: a good time to call
    /// [`MetadataDownload::next_request`] again.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Requested { at, .. } => Some(*at + self.request_timeout),
                _ => None,
            })
            .min()
    }

    /// `peer` rejected its request for `piece`: hand the piece out again.
    pub fn on_reject(&mut self, peer: PeerKey, piece: u32) {
        if let Some(slot) = self.slots.get_mut(piece as usize) {
            if matches!(slot, Slot::Requested { peer: p, .. } if *p == peer) {
                *slot = Slot::Missing;
            }
        }
    }

    /// `peer` disconnected: hand its outstanding pieces out again. Pieces it already delivered
    /// are kept (the hash check decides whether they were good).
    pub fn on_peer_gone(&mut self, peer: PeerKey) {
        for slot in &mut self.slots {
            if matches!(slot, Slot::Requested { peer: p, .. } if *p == peer) {
                *slot = Slot::Missing;
            }
        }
    }

    /// Takes a `ut_metadata` data message. Returns the whole info dictionary when this piece
    /// completed it and it hashes to the info hash; `Ok(None)` while pieces are missing (or if
    /// this piece was a duplicate). Data that was not requested from this peer is accepted
    /// too: the hash check vouches for every byte.
    pub fn on_data(
        &mut self,
        peer: PeerKey,
        piece: u32,
        total_size: u64,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, MetadataError> {
        if self.complete {
            return Ok(None);
        }
        if total_size != self.total_size {
            return Err(MetadataError::SizeMismatch {
                peer,
                expected: self.total_size,
                got: total_size,
            });
        }
        let expected =
            self.piece_len(piece).ok_or(MetadataError::PieceOutOfRange { peer, piece })?;
        if data.len() != expected {
            return Err(MetadataError::BadPieceLength { peer, piece, expected, got: data.len() });
        }
        let slot = self
            .slots
            .get_mut(piece as usize)
            .ok_or(MetadataError::PieceOutOfRange { peer, piece })?;
        if matches!(slot, Slot::Received { .. }) {
            return Ok(None);
        }
        *slot = Slot::Received { peer, data: data.to_vec() };
        self.received += 1;
        if self.received < self.num_pieces() {
            return Ok(None);
        }
        self.finish()
    }

    /// Length piece `piece` must have, `None` if out of range.
    fn piece_len(&self, piece: u32) -> Option<usize> {
        Some(metadata_pieces(self.total_size).piece_len(piece)? as usize)
    }

    /// All pieces are in: assemble, verify, and either hand out the result or start over.
    fn finish(&mut self) -> Result<Option<Vec<u8>>, MetadataError> {
        let mut info = Vec::with_capacity(self.total_size as usize);
        let mut contributors = Vec::new();
        for slot in &self.slots {
            if let Slot::Received { peer, data } = slot {
                info.extend_from_slice(data);
                contributors.push(*peer);
            }
        }
        let digest = Sha1::digest(&info);
        if info.len() as u64 == self.total_size && digest.as_slice() == self.info_hash.0 {
            self.complete = true;
            self.slots = Vec::new();
            return Ok(Some(info));
        }
        contributors.sort_unstable();
        contributors.dedup();
        self.slots.fill(Slot::Missing);
        self.received = 0;
        Err(MetadataError::HashMismatch { peers: contributors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Metadata of `len` bytes with a recognisable pattern, and its info hash.
    fn sample(len: usize) -> (Vec<u8>, InfoHash) {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let hash = InfoHash(Sha1::digest(&bytes).into());
        (bytes, hash)
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn size_bounds() {
        let hash = InfoHash([0; 20]);
        assert_eq!(MetadataDownload::new(hash, 0).unwrap_err(), MetadataError::SizeOutOfRange(0));
        let over = MAX_METADATA_SIZE + 1;
        assert_eq!(
            MetadataDownload::new(hash, over).unwrap_err(),
            MetadataError::SizeOutOfRange(over)
        );
        assert_eq!(MetadataDownload::new(hash, MAX_METADATA_SIZE).unwrap().num_pieces(), 4096);
        assert_eq!(MetadataDownload::new(hash, 1).unwrap().num_pieces(), 1);
        assert_eq!(piece_count(16384), 1);
        assert_eq!(piece_count(16385), 2);
    }

    #[test]
    fn downloads_out_of_order_from_two_peers() {
        let (info, hash) = sample(40_000);
        let mut md = MetadataDownload::new(hash, 40_000).unwrap();
        assert_eq!(md.num_pieces(), 3);
        assert_eq!(md.next_request(1, at(0)), Some(0));
        assert_eq!(md.next_request(2, at(0)), Some(1));
        assert_eq!(md.next_request(2, at(0)), Some(2));
        assert_eq!(md.next_request(1, at(0)), None, "everything is in flight");

        let piece = |i: u32| metadata_piece(&info, i).unwrap();
        assert_eq!(md.on_data(2, 2, 40_000, piece(2)), Ok(None));
        assert_eq!(md.on_data(2, 1, 40_000, piece(1)), Ok(None));
        assert_eq!(md.on_data(2, 1, 40_000, piece(1)), Ok(None), "duplicates are harmless");
        assert_eq!(md.received_pieces(), 2);
        assert_eq!(md.on_data(1, 0, 40_000, piece(0)), Ok(Some(info)));
        assert!(md.is_complete());
        assert_eq!(md.next_request(1, at(1)), None);
        assert_eq!(md.next_timeout(), None);
    }

    #[test]
    fn corrupt_piece_resets_and_names_contributors() {
        let (info, hash) = sample(20_000);
        let mut md = MetadataDownload::new(hash, 20_000).unwrap();
        assert_eq!(md.next_request(7, at(0)), Some(0));
        assert_eq!(md.next_request(9, at(0)), Some(1));
        let mut bad = metadata_piece(&info, 1).unwrap().to_vec();
        bad[10] ^= 1;
        assert_eq!(md.on_data(9, 1, 20_000, &bad), Ok(None));
        assert_eq!(
            md.on_data(7, 0, 20_000, metadata_piece(&info, 0).unwrap()),
            Err(MetadataError::HashMismatch { peers: vec![7, 9] })
        );
        let err = MetadataError::HashMismatch { peers: vec![7, 9] };
        assert_eq!(err.peers(), &[7, 9]);

        // Everything is handed out again, and a good second round completes.
        assert_eq!(md.received_pieces(), 0);
        assert!(!md.is_complete());
        assert_eq!(md.next_request(3, at(1)), Some(0));
        assert_eq!(md.next_request(3, at(1)), Some(1));
        assert_eq!(md.on_data(3, 1, 20_000, metadata_piece(&info, 1).unwrap()), Ok(None));
        assert_eq!(md.on_data(3, 0, 20_000, metadata_piece(&info, 0).unwrap()), Ok(Some(info)));
    }

    #[test]
    fn malformed_pieces_are_refused_without_reset() {
        let (info, hash) = sample(20_000);
        let mut md = MetadataDownload::new(hash, 20_000).unwrap();
        let first = metadata_piece(&info, 0).unwrap();
        assert_eq!(md.on_data(4, 0, 20_000, first), Ok(None));
        assert_eq!(
            md.on_data(5, 1, 20_001, &info[16384..]),
            Err(MetadataError::SizeMismatch { peer: 5, expected: 20_000, got: 20_001 })
        );
        assert_eq!(
            md.on_data(5, 2, 20_000, &[0; 10]),
            Err(MetadataError::PieceOutOfRange { peer: 5, piece: 2 })
        );
        assert_eq!(
            md.on_data(5, u32::MAX, 20_000, &[0; 10]),
            Err(MetadataError::PieceOutOfRange { peer: 5, piece: u32::MAX })
        );
        let err = md.on_data(5, 1, 20_000, &info[16383..]).unwrap_err();
        assert_eq!(
            err,
            MetadataError::BadPieceLength { peer: 5, piece: 1, expected: 3616, got: 3617 }
        );
        assert_eq!(err.peers(), &[5]);
        // A short non-final piece is refused too.
        let mut md2 = MetadataDownload::new(hash, 20_000).unwrap();
        assert!(matches!(
            md2.on_data(5, 0, 20_000, &info[..100]),
            Err(MetadataError::BadPieceLength { .. })
        ));
        // The good piece survived all that.
        assert_eq!(md.received_pieces(), 1);
        assert_eq!(md.on_data(6, 1, 20_000, &info[16384..]), Ok(Some(info)));
    }

    #[test]
    fn rejects_and_departures_free_pieces() {
        let (_, hash) = sample(50_000);
        let mut md = MetadataDownload::new(hash, 50_000).unwrap();
        assert_eq!(md.num_pieces(), 4);
        for expected in 0..4 {
            assert_eq!(md.next_request(1, at(0)), Some(expected));
        }
        md.on_reject(2, 1); // not its piece: no effect
        assert_eq!(md.next_request(2, at(0)), None);
        md.on_reject(1, 1);
        assert_eq!(md.next_request(2, at(0)), Some(1));
        md.on_peer_gone(1);
        assert_eq!(md.next_request(3, at(0)), Some(0));
        assert_eq!(md.next_request(3, at(0)), Some(2));
        assert_eq!(md.next_request(3, at(0)), Some(3));
        assert_eq!(md.next_request(3, at(0)), None);
        md.on_reject(1, 99); // out of range: ignored
    }

    #[test]
    fn timed_out_requests_are_reissued_preferring_other_peers() {
        let (_, hash) = sample(20_000);
        let mut md = MetadataDownload::new(hash, 20_000).unwrap();
        md.set_request_timeout(5 * SECOND);
        assert_eq!(md.next_request(1, at(0)), Some(0));
        assert_eq!(md.next_request(2, at(2)), Some(1));
        assert_eq!(md.next_timeout(), Some(at(5)));
        assert_eq!(md.next_request(3, at(4)), None);
        // At 5 s piece 0 (peer 1) has timed out; peer 2's is not yet due.
        assert_eq!(md.next_request(2, at(5)), Some(0));
        assert_eq!(md.next_timeout(), Some(at(5) + 2 * SECOND));
        // Peer 2 holds both; once both time out, peer 1 takes the lowest.
        assert_eq!(md.next_request(1, at(20)), Some(0));
        // Peer 2 finds nothing held by others that is stale, so it renews its own stale piece.
        assert_eq!(md.next_request(2, at(20)), Some(1));
        assert_eq!(md.next_request(3, at(20)), None);
    }

    #[test]
    fn serving_pieces() {
        let (info, _) = sample(40_000);
        assert_eq!(metadata_piece(&info, 0).map(<[u8]>::len), Some(16384));
        assert_eq!(metadata_piece(&info, 2), Some(&info[32768..]));
        assert_eq!(metadata_piece(&info, 3), None);
        assert_eq!(metadata_piece(&info, u32::MAX), None);
        assert_eq!(metadata_piece(&info[..16384], 1), None);
        assert_eq!(metadata_piece(&[], 0), None);
    }
}
