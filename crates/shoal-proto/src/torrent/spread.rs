//! Spreading: an origin sends each piece about once and lets its audience pass it on.
//!
//! A site that seeds a video to viewers who also serve each other pays for every byte it
//! sends. Left alone, every viewer asks the origin for everything (it has every piece, it is
//! fast, it unchokes), and the origin sends the video once per viewer. Two rules, one on each
//! side of a request, make the viewers trade instead:
//!
//! - **The origin** ([`TorrentConfig::spread`], a seed only): a peer's first request for a
//!   piece that another connected peer already has, or that we granted another peer within
//!   [`GRANT_MEMORY`] (it is on its way there), is refused with a BEP 6 `reject`. The
//!   refusal is remembered block by block: if the peer asks for a refused block again (after
//!   our reject, unlike the rest of the piece it asked for in the same breath), it found
//!   nobody else that would send it, or its player cannot wait, and the piece is granted. Once a piece is granted to a peer,
//!   the rest of its blocks follow without another decision. Peers without the Fast
//!   extension cannot be told no, so they are always served. This works with any client
//!   that reacts to `reject` (WebTorrent and libtorrent re-request elsewhere or again), with
//!   no extension on the wire, which BEP 16's super-seeding would need from the viewers'
//!   side (it hides pieces, and a streaming viewer cannot wait for the one it needs).
//! - **The viewer** (every torrent): a piece a peer declined is not asked of that peer again
//!   for [`DECLINE_MEMORY`] (while a reader streams and the piece is not critical,
//!   [`BACKGROUND_DECLINE_MEMORY`]), so the refusal sends the request to the audience, or
//!   lets the piece reach the audience first. A piece a reader is stalled on (critical) is asked of
//!   the decliner again at once unless another peer that unchokes us has it or a web seed
//!   can fetch it (in the simulated six tabs of `benches/crowd.py` the origin's peer then
//!   sends 1.0-1.1 × the file instead of 1.3-1.7 ×: re-asked critical pieces were nearly all
//!   it sent twice).
//!
//! Web seeds follow the viewer's side of the same idea in `webseeds.rs`: while peers deliver,
//! a web seed fetches only pieces no connected peer has and the nearest critical piece.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::Torrent;
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::BlockRef;

/// How long a viewer avoids asking a peer for a piece it declined.
pub const DECLINE_MEMORY: Duration = Duration::from_secs(3);
/// How long a streaming viewer avoids asking a peer for a declined piece no reader is stalled
/// on: the piece has time to come from the audience, whose channels to this viewer may take
/// seconds to open (six real tabs re-asked the origin after 3 s and got most of the video
/// from it twice). When it turns critical, [`DECLINE_MEMORY`] applies.
pub const BACKGROUND_DECLINE_MEMORY: Duration = Duration::from_secs(30);
/// How long the origin counts a piece it granted a peer as on its way to the audience: long
/// enough for a home uplink's viewer to receive a piece and announce it, short enough that a
/// viewer who never does (gone, stalled) does not hold the piece back from the others.
pub const GRANT_MEMORY: Duration = Duration::from_secs(10);
/// Bytes of pieces remembered per peer in each of the lists below (at least
/// [`MIN_REMEMBERED`] pieces; the oldest entries go first). Counted in bytes because a
/// viewer pipelines requests by the megabyte: with 16 KiB pieces (what `shoal serve` picks
/// for a 7 MiB video) a list of 64 pieces forgot a refusal before the viewer's next request
/// for the same piece, and six real tabs got most of the video from the origin twice.
const REMEMBERED_BYTES: u64 = 32 << 20;
const MIN_REMEMBERED: usize = 64;
/// Refused blocks remembered per peer (a few pieces' worth of pipelined requests).
const REFUSALS_REMEMBERED: usize = 2048;

/// Pieces remembered per peer for a torrent of `piece_length`-byte pieces.
fn remembered(piece_length: u32) -> usize {
    let pieces = REMEMBERED_BYTES / u64::from(piece_length.max(1));
    (pieces as usize).max(MIN_REMEMBERED)
}

/// Pieces with the time each was noted, at most a bounded number (the oldest forgotten).
#[derive(Debug, Default)]
struct PieceTimes(BTreeMap<u32, Instant>);

impl PieceTimes {
    fn note(&mut self, piece: u32, now: Instant, cap: usize) {
        self.0.insert(piece, now);
        if self.0.len() > cap {
            // Rare (a peer asking for more than the cap at once): a scan is fine.
            if let Some((&oldest, _)) = self.0.iter().min_by_key(|(_, &at)| at) {
                self.0.remove(&oldest);
            }
        }
    }

    fn get(&self, piece: u32) -> Option<Instant> {
        self.0.get(&piece).copied()
    }
}

/// What one peer's spreading has decided so far.
#[derive(Debug, Default)]
pub struct SpreadState {
    /// Origin side: pieces granted to this peer (its further blocks are served), and when.
    granted: PieceTimes,
    /// Origin side: blocks refused to this peer once (a second request is granted).
    refused: BTreeSet<BlockRef>,
    /// The order `refused` was filled in, to forget the oldest first (it may still name
    /// blocks whose piece was granted since; at most twice the cap).
    refused_order: VecDeque<BlockRef>,
    /// Viewer side: pieces this peer declined to send us, and when.
    declined: PieceTimes,
}

impl SpreadState {
    /// Whether this peer declined anything lately (the common case is no: skip the work).
    pub fn has_declined(&self) -> bool {
        !self.declined.0.is_empty()
    }
}

impl Torrent {
    /// Origin side: whether to refuse `key`'s request for a block of `piece`.
    pub(super) fn spread_refuses(&mut self, now: Instant, key: PeerKey, block: BlockRef) -> bool {
        let piece = block.piece;
        if !self.config.spread || !self.have.is_full() {
            return false;
        }
        let cap = self.info.as_ref().map_or(MIN_REMEMBERED, |i| remembered(i.piece_length));
        let Some(peer) = self.peers.get(&key) else { return false };
        if !peer.supports_fast || peer.spread.granted.get(piece).is_some() {
            return false;
        }
        let elsewhere = self.peers.values().any(|p| {
            p.key != key
                && (p.is_seed
                    || p.has.get(piece)
                    || p.spread
                        .granted
                        .get(piece)
                        .is_some_and(|at| now.saturating_since(at) < GRANT_MEMORY))
        });
        let Some(peer) = self.peers.get_mut(&key) else { return false };
        let state = &mut peer.spread;
        let asked_again = state.refused.contains(&block);
        if elsewhere && !asked_again {
            // `refused_order` may name blocks granted since (see below): skip those.
            while state.refused.len() >= REFUSALS_REMEMBERED {
                let Some(oldest) = state.refused_order.pop_front() else { break };
                state.refused.remove(&oldest);
            }
            if state.refused.insert(block) {
                state.refused_order.push_back(block);
            }
            self.stats.spread_refused += 1;
            return true;
        }
        // The piece is granted: its refusals are void. Found by range (a grant per block
        // with 16 KiB pieces: no scan of the whole memory); the order list is compacted only
        // when stale names have piled up.
        let first = BlockRef { piece, offset: 0, length: 0 };
        let last = BlockRef { piece, offset: u32::MAX, length: u32::MAX };
        let void: Vec<BlockRef> = state.refused.range(first..=last).copied().collect();
        for b in &void {
            state.refused.remove(b);
        }
        if state.refused_order.len() > 2 * REFUSALS_REMEMBERED {
            let refused = &state.refused;
            state.refused_order.retain(|b| refused.contains(b));
        }
        if elsewhere {
            self.stats.spread_granted_again += 1;
        }
        state.granted.note(piece, now, cap);
        false
    }

    /// Viewer side: `key` rejected a block of `piece`.
    pub(super) fn note_declined(&mut self, now: Instant, key: PeerKey, piece: u32) {
        let cap = self.info.as_ref().map_or(MIN_REMEMBERED, |i| remembered(i.piece_length));
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let declined = &mut peer.spread.declined;
        if declined.0.len() >= cap {
            declined.0.retain(|_, at| now.saturating_since(*at) < BACKGROUND_DECLINE_MEMORY);
        }
        declined.note(piece, now, cap);
    }

    /// Viewer side: forgets declines older than any memory applies to, so a peer that
    /// declined once long ago costs its refills nothing (called every tick).
    pub(super) fn forget_old_declines(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let declined = &mut peer.spread.declined.0;
        if !declined.is_empty() {
            declined.retain(|_, at| now.saturating_since(*at) < BACKGROUND_DECLINE_MEMORY);
        }
    }

    /// Viewer side: pieces not to ask `key` for now: it declined them lately, and they are
    /// not critical to a reader, or another peer that unchokes us has them, or a web seed can
    /// bring them (it takes the nearest critical piece, `webseeds.rs`).
    pub(super) fn avoided_pieces(&self, now: Instant, key: PeerKey) -> Vec<u32> {
        let Some(peer) = self.peers.get(&key) else { return Vec::new() };
        let web_seed = self.has_usable_web_seed(now);
        let streaming = self.is_streaming(now);
        // Looked up once per remembered decline (up to thousands): a set, not a scan of the
        // deadlines each time.
        let critical_pieces: BTreeSet<u32> =
            self.picker.as_ref().map_or_else(BTreeSet::new, |pk| {
                pk.deadlines().iter().filter(|d| d.critical).map(|d| d.piece).collect()
            });
        let critical = |piece: u32| critical_pieces.contains(&piece);
        peer.spread
            .declined
            .0
            .iter()
            .filter(|&(&piece, &at)| {
                let memory = match streaming && !critical(piece) {
                    true => BACKGROUND_DECLINE_MEMORY,
                    false => DECLINE_MEMORY,
                };
                now.saturating_since(at) < memory
            })
            .map(|(&piece, _)| piece)
            .filter(|&piece| {
                !critical(piece)
                    || web_seed
                    || self
                        .peers
                        .values()
                        .any(|p| p.key != key && !p.peer_choking && (p.is_seed || p.has.get(piece)))
            })
            .collect()
    }

    /// A block of `piece` is free again after `decliner` refused it: the peers that have it
    /// may pick it up now rather than at their next refill.
    pub(super) fn offer_declined(&mut self, now: Instant, decliner: PeerKey, piece: u32) {
        let holders: Vec<PeerKey> = self
            .peers
            .values()
            .filter(|p| p.key != decliner && !p.peer_choking && (p.is_seed || p.has.get(piece)))
            .map(|p| p.key)
            .collect();
        for key in holders {
            self.fill_requests(now, key);
        }
        // What nobody else took goes back to the decliner, which grants a second request.
        self.fill_requests(now, decliner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torrent::testing::{block, Harness};
    use crate::torrent::{Action, TorrentConfig};
    use crate::wire::Message;

    fn origin(spread: bool) -> Harness {
        Harness::new(TorrentConfig { spread, ..TorrentConfig::default() }, true)
    }

    fn request(h: &mut Harness, key: PeerKey, b: BlockRef) -> Vec<Message> {
        h.t.on_message(Instant::ZERO, key, Message::Request(b));
        h.sent_to(key)
    }

    #[test]
    fn an_origin_refuses_a_piece_the_audience_has_until_asked_again() {
        let mut h = origin(true);
        let asker = h.peer(Instant::ZERO, &[]);
        let _holder = h.peer(Instant::ZERO, &[3]);
        h.actions();
        // Nobody else has piece 2: served. Piece 3 is with the other viewer: refused, every
        // block asked for in the same breath too.
        h.t.on_message(Instant::ZERO, asker, Message::Request(block(2, 0)));
        assert!(matches!(h.actions()[..], [Action::ReadBlock { .. }]));
        assert_eq!(request(&mut h, asker, block(3, 0)), vec![Message::Reject(block(3, 0))]);
        assert_eq!(request(&mut h, asker, block(3, 1)), vec![Message::Reject(block(3, 1))]);
        // Asked again after the reject: nobody else would send it; the piece is granted, and
        // its other blocks follow without another refusal.
        h.t.on_message(Instant::ZERO, asker, Message::Request(block(3, 0)));
        h.t.on_message(Instant::ZERO, asker, Message::Request(block(3, 2)));
        assert_eq!(h.reads(), vec![block(3, 0), block(3, 2)]);
        let stats = h.t.stats(Instant::ZERO);
        assert_eq!((stats.spread_refused, stats.spread_granted_again), (2, 1));
    }

    #[test]
    fn a_piece_on_its_way_to_one_viewer_is_refused_to_the_next() {
        let mut h = origin(true);
        let first = h.peer(Instant::ZERO, &[]);
        let second = h.peer(Instant::ZERO, &[]);
        h.actions();
        h.t.on_message(Instant::ZERO, first, Message::Request(block(5, 0)));
        assert_eq!(h.reads(), vec![block(5, 0)]);
        assert_eq!(request(&mut h, second, block(5, 0)), vec![Message::Reject(block(5, 0))]);
        // Once the grant is old, the first viewer evidently is not passing it on.
        let later = Instant::ZERO + GRANT_MEMORY;
        h.t.on_message(later, second, Message::Request(block(5, 1)));
        assert_eq!(h.reads(), vec![block(5, 1)]);
    }

    #[test]
    fn without_spreading_every_request_is_served() {
        let mut h = origin(false);
        let asker = h.peer(Instant::ZERO, &[]);
        let _holder = h.peer(Instant::ZERO, &[3]);
        h.actions();
        h.t.on_message(Instant::ZERO, asker, Message::Request(block(3, 0)));
        assert_eq!(h.reads(), vec![block(3, 0)]);
    }

    /// A viewer and two peers that have piece 0 only; `declining` unchokes it and is asked
    /// for the piece, `other` still chokes it.
    fn viewer_asking() -> (Harness, PeerKey, PeerKey, Vec<BlockRef>) {
        let mut h = Harness::new(TorrentConfig::default(), false);
        let declining = h.peer(Instant::ZERO, &[0]);
        let other = h.peer(Instant::ZERO, &[0]);
        h.t.on_message(Instant::ZERO, declining, Message::Unchoke);
        let asked = requests_to(&mut h, declining);
        assert!(!asked.is_empty());
        (h, declining, other, asked)
    }

    fn requests_to(h: &mut Harness, to: PeerKey) -> Vec<BlockRef> {
        h.sent_to(to)
            .into_iter()
            .filter_map(|m| match m {
                Message::Request(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// The decliner refuses everything it was asked, as a spreading origin does.
    fn decline_all(h: &mut Harness, decliner: PeerKey, asked: &[BlockRef]) {
        for b in asked {
            h.t.on_message(Instant::ZERO, decliner, Message::Reject(*b));
        }
    }

    #[test]
    fn a_declined_piece_goes_to_a_peer_that_has_it_not_back_to_the_decliner() {
        let (mut h, declining, other, asked) = viewer_asking();
        h.t.on_message(Instant::ZERO, other, Message::Unchoke);
        h.actions();
        decline_all(&mut h, declining, &asked);
        let actions = h.actions();
        let asked_of = |peer: PeerKey| {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::Send { peer: p, message: Message::Request(b) } if *p == peer => {
                        Some(*b)
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert!(asked_of(declining).is_empty(), "asked the decliner again: {actions:?}");
        assert!(asked_of(other).contains(&asked[0]), "the refused blocks go to the other peer");
    }

    #[test]
    fn a_declined_piece_nobody_else_sends_goes_back_to_the_decliner_when_a_reader_waits() {
        // The other peer chokes us: nobody else would send it.
        let (mut h, declining, _other, asked) = viewer_asking();
        decline_all(&mut h, declining, &asked);
        // Not critical to a reader: it waits out the decline rather than insisting.
        assert!(requests_to(&mut h, declining).is_empty());
        // A reader stalls on it: asked again at once, which the origin grants.
        let window = crate::streaming::ReaderWindow { position: 0, end: 1, readahead: 1 };
        h.t.set_reader(Instant::ZERO, crate::streaming::ReaderId(1), window);
        h.t.handle_timeout(Instant::ZERO + std::time::Duration::from_millis(200));
        assert!(requests_to(&mut h, declining).contains(&asked[0]));
    }

    #[test]
    fn a_decline_is_forgotten_after_a_while() {
        let (mut h, declining, _other, asked) = viewer_asking();
        decline_all(&mut h, declining, &asked);
        h.actions();
        h.t.handle_timeout(Instant::ZERO + DECLINE_MEMORY);
        assert!(requests_to(&mut h, declining).contains(&asked[0]));
    }

    #[test]
    fn what_is_remembered_scales_with_the_piece_length() {
        // 32 MiB of pieces: a viewer's pipelined requests fit, whatever the piece size.
        assert_eq!(remembered(16 << 10), 2048);
        assert_eq!(remembered(1 << 20), MIN_REMEMBERED);
        let mut times = PieceTimes::default();
        for piece in 0..100 {
            times.note(piece, Instant::ZERO + std::time::Duration::from_millis(piece.into()), 64);
        }
        assert_eq!(times.0.len(), 64);
        assert!(times.get(35).is_none() && times.get(36).is_some() && times.get(99).is_some());
    }
}
