//! The piece picker: which blocks to request from which peer.
//!
//! Order of preference when a peer has room in its request queue:
//! 0. deadline pieces (set by streaming readers, most urgent first): their free blocks, and for
//!    the critical ones (right under a reader) also blocks that are late at another peer, so a
//!    player waiting on them is not held up by one slow peer;
//! 1. free blocks of pieces this peer already started, so a piece normally comes from one peer
//!    (finishes sooner, keeps disk writes local, and makes a bad piece attributable);
//! 2. a new piece, rarest first among the wanted pieces the peer has (highest priority first);
//! 3. free blocks of pieces other peers started;
//! 4. endgame: when nothing is free, blocks already requested from someone else, at most one
//!    duplicate each; the first copy to arrive wins and the other is cancelled.
//!
//! Availability counts peers that have a piece; peers that have everything (seeds) are counted
//! once in `seeds` instead, so a seed connecting or leaving costs O(1) rather than O(pieces).
//!
//! # Invariants
//!
//! What the fields promise each other between calls. Debug builds assert the cheap part at the
//! end of each call that changes pieces: the counts (O(1)) and the pieces the call touched
//! (O(their blocks)); `check_invariants` in the tests checks everything (O(pieces)) after each
//! step of random call sequences (both in `picker/invariants.rs`).
//!
//! 1. **Sizes.** `state`, `availability` and `priority` have one entry per piece.
//! 2. **Started pieces.** A piece has a `Partial` exactly when it is `InProgress` or
//!    `Verifying`; `Missing` and `Have` pieces have none.
//! 3. **Block counts.** A partial has `block_count(piece)` blocks and as many `requested_at`
//!    times; `free` and `received` are kept as blocks change, and always equal the number of
//!    `Free` and `Received` blocks.
//! 4. **Verifying.** A partial is `Verifying` exactly when every block is `Received`; nothing
//!    changes its blocks until `on_verified` or `set_have` ends it.
//! 5. **Duplicates.** A block requested twice (`Requested(first, Some(dup))`, endgame or a late
//!    critical block) names two different peers.
//! 6. **Contributors.** A partial's contributors are distinct, and there are no more of them
//!    than blocks received (none before the first block).
//! 7. **Wanted.** `wanted_missing` is kept as pieces and priorities change, and always equals
//!    the number of pieces with a priority above 0 that are not `Have`.
//! 8. **Availability.** `availability[p]` is the number of connected peers, seeds apart, that
//!    announced `p`; `seeds` the number of connected seeds. The driver keeps both from the
//!    peers' bitfields (`add_available`, `remove_available`, `add_seed`, `remove_seed`); the
//!    picker cannot see those, so only the tests check this, against a model of the peers.
//! 9. **Order.** Once built (`order_built_at` is set), `order` holds every `Missing` piece with
//!    a priority above 0: a piece that is missing again is queued again, and a priority change
//!    forces a rebuild. Entries may be stale or repeated (they are checked when used), but
//!    never more than twice as many as pieces: past that the order is dropped and rebuilt.
//! 10. **Deadlines.** `deadline_set` holds exactly the pieces of `deadlines`, all of them
//!     pieces of the torrent.
//! 11. **Web seed cursor.** Every piece below `run_cursor` is `Have`, and `run_cursor` is at
//!     most the piece count.
//! 12. **Requests.** A block is `Requested` from a peer only while a pick handed it to that
//!     peer and neither a delivery nor that peer's `on_unrequest` ended it: `requested_from`
//!     never names a request the driver does not have outstanding (checked in the tests,
//!     against the model of the peers).

use std::collections::BTreeMap;

use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::BlockRef;

mod invariants;

/// The block size every mainstream client uses and accepts.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// A block requested this long ago, with nothing else left to request, may be duplicated.
const ENDGAME_STRAGGLER_AGE: std::time::Duration = std::time::Duration::from_secs(2);
/// Duplicates handed to one idle peer per pick.
const ENDGAME_DUPLICATES: usize = 2;

/// How often the rarest-first order is rebuilt at most, when availability changes. Rarest-first
/// is a heuristic; rebuilding on every `have` message would cost O(n log n) per block.
const ORDER_REBUILD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// A block of a critical piece requested this long ago is late: a second peer may fetch it.
pub const CRITICAL_LATE: std::time::Duration = std::time::Duration::from_millis(500);

/// One piece a reader is waiting for, in the order they are needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub piece: u32,
    /// Right under a reader's position: fetched from fast peers only, duplicated when late.
    pub critical: bool,
}

/// What the picker needs to know about the peer it picks for.
#[derive(Clone, Copy, Debug)]
pub struct PickFor {
    pub peer: PeerKey,
    /// Blocks to add at most.
    pub max: usize,
    /// Nothing is outstanding at the peer: endgame may duplicate stragglers to it.
    pub idle: bool,
    /// The peer may take blocks of critical pieces (it is not much slower than the best).
    pub critical_ok: bool,
    /// Pieces no reader waits for may be picked too (false: deadlines only, for now).
    pub background_ok: bool,
}

/// Piece and block sizes of one torrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub piece_length: u32,
    pub total_length: u64,
    pub piece_count: u32,
}

impl Geometry {
    pub fn new(piece_length: u32, total_length: u64) -> Self {
        // A torrent's metainfo holds at most `MAX_PIECES`; anything larger is clamped here.
        let count = crate::PieceSizes::new(piece_length, total_length).count();
        let piece_count = u32::try_from(count).unwrap_or(u32::MAX);
        Geometry { piece_length, total_length, piece_count }
    }

    /// Length of `piece` ([`crate::PieceSizes::piece_len`]); 0 past the end (no blocks there).
    pub fn piece_len(&self, piece: u32) -> u32 {
        crate::PieceSizes::new(self.piece_length, self.total_length).piece_len(piece).unwrap_or(0)
    }

    pub fn block_count(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// The block that starts at `offset`, if `offset`/`length` describe a whole block exactly.
    pub fn block_index(&self, piece: u32, offset: u32, length: u32) -> Option<u32> {
        if piece >= self.piece_count || !offset.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        let index = offset / BLOCK_SIZE;
        (index < self.block_count(piece) && self.block_len(piece, index) == length).then_some(index)
    }

    pub fn block_len(&self, piece: u32, block: u32) -> u32 {
        let piece_len = self.piece_len(piece);
        let start = block * BLOCK_SIZE;
        (piece_len - start).min(BLOCK_SIZE)
    }

    pub fn block(&self, piece: u32, block: u32) -> BlockRef {
        BlockRef { piece, offset: block * BLOCK_SIZE, length: self.block_len(piece, block) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceState {
    Missing,
    InProgress,
    /// Every block arrived; the driver is hashing it.
    Verifying,
    Have,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from the first peer, and in endgame possibly duplicated to a second.
    Requested(PeerKey, Option<PeerKey>),
    Received,
}

struct Partial {
    blocks: Vec<Block>,
    free: u32,
    received: u32,
    /// The peer the piece was first handed to; it gets the rest of the piece first.
    owner: PeerKey,
    /// Everyone who delivered a block of it: the suspects if the hash fails.
    contributors: Vec<PeerKey>,
    /// When each block was last requested, so endgame only duplicates stragglers.
    requested_at: Vec<Instant>,
}

impl Partial {
    fn new(blocks: u32, owner: PeerKey, now: Instant) -> Partial {
        Partial {
            blocks: vec![Block::Free; blocks as usize],
            requested_at: vec![now; blocks as usize],
            free: blocks,
            received: 0,
            owner,
            contributors: Vec::new(),
        }
    }
}

/// What became of a block that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Not wanted (already have it, or not in progress): drop the data.
    Unwanted,
    /// Stored; other peers that were asked for the same block (endgame) should get a cancel.
    Accepted { cancel: Option<PeerKey>, piece_complete: bool },
}

pub struct Picker {
    geometry: Geometry,
    state: Vec<PieceState>,
    availability: Vec<u16>,
    seeds: u32,
    priority: Vec<u8>,
    partial: BTreeMap<u32, Partial>,
    /// Candidate pieces, rarest and most important first; entries may be stale (already
    /// started or done) and are skipped.
    order: Vec<u32>,
    order_dirty: bool,
    order_built_at: Option<Instant>,
    /// Wanted pieces not yet verified.
    wanted_missing: u32,
    /// Breaks ties in the rarest-first order; seeded by the driver, so a run is reproducible.
    rng: fastrand::Rng,
    /// Pieces readers wait for, most urgent first (see [`Picker::set_deadlines`]).
    deadlines: Vec<Deadline>,
    /// The same pieces, for lookups.
    deadline_set: std::collections::BTreeSet<u32>,
    /// Only deadline pieces are fetched: the bounded in-memory store, where anything else
    /// would only be evicted again.
    deadline_only: bool,
    /// No missing wanted piece lies below this index: where web seeds look for new pieces.
    run_cursor: u32,
}

impl Picker {
    /// A picker for a torrent of which we hold nothing yet and want everything.
    pub fn new(geometry: Geometry, random_seed: u64) -> Self {
        let n = geometry.piece_count as usize;
        Picker {
            geometry,
            state: vec![PieceState::Missing; n],
            availability: vec![0; n],
            seeds: 0,
            priority: vec![1; n],
            partial: BTreeMap::new(),
            order: Vec::new(),
            order_dirty: true,
            order_built_at: None,
            wanted_missing: geometry.piece_count,
            rng: fastrand::Rng::with_seed(random_seed),
            deadlines: Vec::new(),
            deadline_set: Default::default(),
            deadline_only: false,
            run_cursor: 0,
        }
    }

    /// Replaces the pieces readers wait for (most urgent first). Held pieces and unknown
    /// indices are ignored.
    pub fn set_deadlines(&mut self, deadlines: impl IntoIterator<Item = Deadline>) {
        self.deadlines.clear();
        let n = self.geometry.piece_count;
        self.deadlines.extend(deadlines.into_iter().filter(|d| d.piece < n));
        self.deadline_set = self.deadlines.iter().map(|d| d.piece).collect();
    }

    /// Whether a reader waits for `piece`.
    pub fn is_deadline(&self, piece: u32) -> bool {
        self.deadline_set.contains(&piece)
    }

    pub fn deadlines(&self) -> &[Deadline] {
        &self.deadlines
    }

    /// Fetch only deadline pieces (`true`), or deadlines first and then everything wanted.
    pub fn set_deadline_only(&mut self, only: bool) {
        self.deadline_only = only;
    }

    /// A verified piece was dropped from storage (the bounded store evicted it): it is missing
    /// again and will be fetched if wanted.
    pub fn unset_have(&mut self, piece: u32) {
        let Some(state) = self.state.get_mut(piece as usize) else { return };
        if *state == PieceState::Have {
            *state = PieceState::Missing;
            if self.priority[piece as usize] > 0 {
                self.wanted_missing += 1;
            }
            self.queue_again(piece, false);
            self.order_dirty = true;
            self.rewind_run_cursor(piece);
            self.debug_check([piece]);
        }
    }

    /// When `block` was last requested, if it is outstanding.
    pub fn requested_at(&self, block: &BlockRef) -> Option<Instant> {
        let index = self.geometry.block_index(block.piece, block.offset, block.length)?;
        let partial = self.partial.get(&block.piece)?;
        match partial.blocks.get(index as usize)? {
            Block::Requested(..) => partial.requested_at.get(index as usize).copied(),
            _ => None,
        }
    }

    /// Whether `block` is still requested from `peer` (first or duplicate): false once anyone
    /// delivered it, or its piece was reset.
    pub fn is_requested_from(&self, block: &BlockRef, peer: PeerKey) -> bool {
        let Some(index) = self.geometry.block_index(block.piece, block.offset, block.length) else {
            return false;
        };
        let Some(partial) = self.partial.get(&block.piece) else { return false };
        matches!(partial.blocks.get(index as usize),
            Some(Block::Requested(first, dup)) if *first == peer || *dup == Some(peer))
    }

    /// Whether blocks of `piece` are still to arrive: it is missing or in progress (not held,
    /// not waiting for its hash check).
    pub fn is_to_arrive(&self, piece: u32) -> bool {
        matches!(self.state.get(piece as usize), Some(PieceState::Missing | PieceState::InProgress))
    }

    /// Whether a connected peer has announced `piece` (a seed has them all).
    pub fn peers_have(&self, piece: u32) -> bool {
        self.seeds > 0 || self.availability.get(piece as usize).is_some_and(|&a| a > 0)
    }

    /// Whether `piece` is being downloaded (some blocks requested or received).
    pub fn is_in_progress(&self, piece: u32) -> bool {
        self.partial.contains_key(&piece)
    }

    /// Blocks of `piece` requested from `peer` (first or duplicate) and not received, with
    /// when they were requested.
    pub fn requested_from(&self, piece: u32, peer: PeerKey) -> Vec<(BlockRef, Instant)> {
        let Some(partial) = self.partial.get(&piece) else { return Vec::new() };
        partial
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| match b {
                Block::Requested(first, dup) => *first == peer || *dup == Some(peer),
                _ => false,
            })
            .map(|(i, _)| (self.geometry.block(piece, i as u32), partial.requested_at[i]))
            .collect()
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Marks a piece as held and verified (from a recheck at start, or a verified download).
    pub fn set_have(&mut self, piece: u32) {
        let Some(state) = self.state.get_mut(piece as usize) else { return };
        if *state != PieceState::Have {
            if *state == PieceState::InProgress || *state == PieceState::Verifying {
                self.partial.remove(&piece);
            }
            *state = PieceState::Have;
            if self.priority[piece as usize] > 0 {
                self.wanted_missing -= 1;
            }
            self.debug_check([piece]);
        }
    }

    pub fn has(&self, piece: u32) -> bool {
        self.state.get(piece as usize) == Some(&PieceState::Have)
    }

    /// Sets how much a piece is wanted: 0 = not at all (its files are skipped), higher = sooner.
    pub fn set_priority(&mut self, piece: u32, priority: u8) {
        let Some(old) = self.priority.get_mut(piece as usize) else { return };
        let missing = self.state[piece as usize] != PieceState::Have;
        if missing && (*old > 0) != (priority > 0) {
            if priority > 0 {
                self.wanted_missing += 1;
            } else {
                self.wanted_missing -= 1;
            }
        }
        *old = priority;
        // A priority change must take effect at the next pick, not after the rebuild interval.
        self.order_built_at = None;
        self.debug_check([piece]);
    }

    pub fn priority(&self, piece: u32) -> u8 {
        self.priority.get(piece as usize).copied().unwrap_or(0)
    }

    /// True once every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.wanted_missing == 0
    }

    pub fn wanted_missing(&self) -> u32 {
        self.wanted_missing
    }

    /// Whether a peer holding `peer_has` has something we want.
    pub fn wants_any(&self, peer_has: impl Fn(u32) -> bool, peer_is_seed: bool) -> bool {
        let deadline_missing = |d: &Deadline| {
            let state = self.state[d.piece as usize];
            state != PieceState::Have && (peer_is_seed || peer_has(d.piece))
        };
        if self.deadlines.iter().any(deadline_missing) {
            return true;
        }
        if self.wanted_missing == 0 || self.deadline_only {
            return false;
        }
        if peer_is_seed {
            return true;
        }
        (0..self.geometry.piece_count).any(|p| self.is_wanted(p) && peer_has(p))
    }

    /// Whether we still want a piece (wanted and not held).
    pub fn is_wanted(&self, piece: u32) -> bool {
        let i = piece as usize;
        i < self.state.len() && self.priority[i] > 0 && self.state[i] != PieceState::Have
    }

    // ---- availability ----

    pub fn add_seed(&mut self) {
        self.seeds += 1;
    }

    pub fn remove_seed(&mut self) {
        self.seeds = self.seeds.saturating_sub(1);
    }

    pub fn add_available(&mut self, piece: u32) {
        if let Some(a) = self.availability.get_mut(piece as usize) {
            *a = a.saturating_add(1);
            self.order_dirty = true;
        }
    }

    pub fn remove_available(&mut self, piece: u32) {
        if let Some(a) = self.availability.get_mut(piece as usize) {
            *a = a.saturating_sub(1);
            self.order_dirty = true;
        }
    }

    /// Number of connected peers known to have `piece`.
    pub fn availability(&self, piece: u32) -> u32 {
        self.seeds + self.availability.get(piece as usize).copied().unwrap_or(0) as u32
    }

    // ---- picking ----

    /// Appends up to `max` blocks for `peer` to request to `out`. `peer_has` tells which pieces
    /// the peer holds; `peer_idle` (nothing outstanding at the peer) allows the endgame to
    /// duplicate a few straggling blocks requested elsewhere.
    pub fn pick(
        &mut self,
        now: Instant,
        who: PickFor,
        peer_has: impl Fn(u32) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        self.pick_blocks(now, who, peer_has, out);
        // Every piece a pick changes hands out at least one block.
        self.debug_check(out[start..].iter().map(|b| b.piece));
    }

    /// [`Picker::pick`], without the checks.
    fn pick_blocks(
        &mut self,
        now: Instant,
        who: PickFor,
        peer_has: impl Fn(u32) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let PickFor { peer, max, idle: peer_idle, critical_ok, background_ok } = who;
        if max == 0 || (self.wanted_missing == 0 && self.deadlines.is_empty()) {
            return;
        }
        let start = out.len();
        let want = |out: &Vec<BlockRef>| out.len() - start < max;

        // 0. What readers wait for.
        self.pick_deadlines(now, peer, &peer_has, max, critical_ok, out);
        if self.deadline_only || !background_ok || self.wanted_missing == 0 || !want(out) {
            return;
        }

        // 1. Pieces this peer owns.
        let geometry = self.geometry;
        for (&piece, partial) in self.partial.iter_mut() {
            if !want(out) {
                return;
            }
            // The owner may have stopped offering it (a reject, an `lt_donthave`).
            if partial.owner == peer && partial.free > 0 && peer_has(piece) {
                take_free_blocks(
                    &geometry,
                    piece,
                    partial,
                    peer,
                    max - (out.len() - start),
                    out,
                    now,
                );
            }
        }

        // 2. New pieces, rarest first.
        if want(out) {
            self.refresh_order(now);
            let mut i = 0;
            while i < self.order.len() && want(out) {
                let piece = self.order[i];
                i += 1;
                let idx = piece as usize;
                if self.state[idx] != PieceState::Missing
                    || self.priority[idx] == 0
                    || !peer_has(piece)
                {
                    continue;
                }
                let mut partial = Partial::new(self.geometry.block_count(piece), peer, now);
                let room = max - (out.len() - start);
                take_free_blocks(&geometry, piece, &mut partial, peer, room, out, now);
                self.state[idx] = PieceState::InProgress;
                self.partial.insert(piece, partial);
            }
        }

        // 3. Free blocks of pieces others started.
        if want(out) {
            for (&piece, partial) in self.partial.iter_mut() {
                if !want(out) {
                    return;
                }
                if partial.free > 0 && peer_has(piece) {
                    let room = max - (out.len() - start);
                    take_free_blocks(&geometry, piece, partial, peer, room, out, now);
                }
            }
        }

        // 4. Endgame: nothing is free for this idle peer and every wanted piece has been
        // started. Duplicate only blocks outstanding for a while, a few at a time: duplicating
        // everything at once doubles the traffic of the last pieces for nothing.
        if out.len() == start && peer_idle && !self.any_missing_wanted_piece_unstarted() {
            let limit = max.min(ENDGAME_DUPLICATES);
            let room = |out: &Vec<BlockRef>| out.len() - start < limit;
            for (&piece, partial) in self.partial.iter_mut() {
                if !room(out) {
                    return;
                }
                if !peer_has(piece) {
                    continue;
                }
                for (b, block) in partial.blocks.iter_mut().enumerate() {
                    if !room(out) {
                        break;
                    }
                    if let Block::Requested(first, None) = *block {
                        let waited = now.saturating_since(partial.requested_at[b]);
                        if first != peer && waited >= ENDGAME_STRAGGLER_AGE {
                            *block = Block::Requested(first, Some(peer));
                            out.push(geometry.block(piece, b as u32));
                        }
                    }
                }
            }
        }
    }

    /// Step 0 of [`Picker::pick`]: free blocks of deadline pieces in order, starting the pieces
    /// not started yet, and late blocks of critical pieces requested from someone else.
    fn pick_deadlines(
        &mut self,
        now: Instant,
        peer: PeerKey,
        peer_has: &impl Fn(u32) -> bool,
        max: usize,
        critical_ok: bool,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        let geometry = self.geometry;
        for i in 0..self.deadlines.len() {
            let room = max - (out.len() - start);
            if room == 0 {
                return;
            }
            let Deadline { piece, critical } = self.deadlines[i];
            if (critical && !critical_ok) || !peer_has(piece) {
                continue;
            }
            let idx = piece as usize;
            match self.state[idx] {
                PieceState::Missing => {
                    let mut partial = Partial::new(geometry.block_count(piece), peer, now);
                    take_free_blocks(&geometry, piece, &mut partial, peer, room, out, now);
                    self.state[idx] = PieceState::InProgress;
                    self.partial.insert(piece, partial);
                }
                PieceState::InProgress => {
                    let Some(partial) = self.partial.get_mut(&piece) else { continue };
                    if partial.free > 0 {
                        take_free_blocks(&geometry, piece, partial, peer, room, out, now);
                    }
                    if critical {
                        let room = max - (out.len() - start);
                        duplicate_late_blocks(&geometry, piece, partial, peer, room, out, now);
                    }
                }
                PieceState::Verifying | PieceState::Have => {}
            }
        }
    }

    // ---- runs for web seeds ----

    /// Claims a run of contiguous blocks (across pieces) of at most `max_bytes` (but at least
    /// one block) for a web seed `peer`, which fetches them with one HTTP request per file.
    /// Order: deadline pieces; the rest of pieces this seed started; a new piece (pieces no
    /// peer has first, lowest index among equals, so a lone web seed reads the file
    /// front to back); free blocks of pieces peers started. A run grows only into pieces
    /// nobody started. `allowed` says which pieces this seed may serve (the torrent's web
    /// seed policy); `background_ok` false limits it to deadline pieces.
    pub fn pick_run(
        &mut self,
        now: Instant,
        peer: PeerKey,
        max_bytes: u64,
        background_ok: bool,
        allowed: impl Fn(u32) -> bool,
    ) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if let Some((first, deadlines_only)) = self.run_start(peer, background_ok, &allowed) {
            self.claim_run(now, peer, first, max_bytes, deadlines_only, &allowed, &mut out);
            self.debug_check(out.iter().map(|b| b.piece));
        }
        out
    }

    /// The piece the next run of [`Picker::pick_run`] starts in, in its order, and whether the
    /// run may grow into deadline pieces only.
    fn run_start(
        &mut self,
        peer: PeerKey,
        background_ok: bool,
        allowed: &impl Fn(u32) -> bool,
    ) -> Option<(u32, bool)> {
        if self.wanted_missing == 0 && self.deadlines.is_empty() {
            return None;
        }
        // 0. What readers wait for.
        let deadline = self.deadlines.iter().map(|d| d.piece).find(|&piece| {
            allowed(piece)
                && match self.state[piece as usize] {
                    PieceState::Missing => true,
                    PieceState::InProgress => self.partial.get(&piece).is_some_and(|p| p.free > 0),
                    _ => false,
                }
        });
        if let Some(piece) = deadline {
            return Some((piece, true));
        }
        if self.deadline_only || !background_ok || self.wanted_missing == 0 {
            return None;
        }
        // 1. The rest of a piece this seed started (a piece longer than one run).
        let own = self
            .partial
            .iter()
            .find(|(p, part)| part.owner == peer && part.free > 0 && allowed(**p));
        if let Some((&piece, _)) = own {
            return Some((piece, false));
        }
        // 2. A new piece.
        if let Some(piece) = self.best_unstarted(allowed) {
            return Some((piece, false));
        }
        // 3. Free blocks others left (a peer that went away mid-piece).
        let other = self.partial.iter().find(|(p, part)| part.free > 0 && allowed(**p));
        other.map(|(&piece, _)| (piece, false))
    }

    /// The wanted piece nobody started with the highest priority and lowest availability,
    /// lowest index first among equals; looks at a bounded number of candidates so huge
    /// torrents do not cost a full scan per run.
    fn best_unstarted(&mut self, allowed: &impl Fn(u32) -> bool) -> Option<u32> {
        const CANDIDATES: usize = 4096;
        let n = self.geometry.piece_count;
        while self.run_cursor < n && self.state[self.run_cursor as usize] == PieceState::Have {
            self.run_cursor += 1;
        }
        let mut best: Option<((u8, u16), u32)> = None;
        let mut seen = 0;
        for piece in self.run_cursor..n {
            let i = piece as usize;
            if self.state[i] != PieceState::Missing || self.priority[i] == 0 || !allowed(piece) {
                continue;
            }
            let key = (u8::MAX - self.priority[i], self.availability[i]);
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, piece));
                if key.1 == 0 && self.priority[i] == 1 && self.seeds == 0 {
                    break; // nobody else has it: nothing can beat it but a higher priority
                }
            }
            seen += 1;
            if seen >= CANDIDATES {
                break;
            }
        }
        best.map(|(_, p)| p)
    }

    /// Claims free blocks from the first free one of `piece` on, contiguously, growing into the
    /// following pieces while they are unstarted, wanted and allowed (deadline pieces only
    /// when `deadlines_only`).
    #[allow(clippy::too_many_arguments)]
    fn claim_run(
        &mut self,
        now: Instant,
        peer: PeerKey,
        first: u32,
        max_bytes: u64,
        deadlines_only: bool,
        allowed: &impl Fn(u32) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let geometry = self.geometry;
        let mut bytes = 0u64;
        let mut piece = first;
        loop {
            let idx = piece as usize;
            if self.state[idx] == PieceState::Missing {
                self.partial.insert(piece, Partial::new(geometry.block_count(piece), peer, now));
                self.state[idx] = PieceState::InProgress;
            }
            let Some(partial) = self.partial.get_mut(&piece) else { return };
            let Some(from) = partial.blocks.iter().position(|b| *b == Block::Free) else { return };
            for b in from..partial.blocks.len() {
                if partial.blocks[b] != Block::Free || (bytes >= max_bytes && !out.is_empty()) {
                    return;
                }
                partial.blocks[b] = Block::Requested(peer, None);
                partial.requested_at[b] = now;
                partial.free -= 1;
                let block = geometry.block(piece, b as u32);
                bytes += u64::from(block.length);
                out.push(block);
            }
            // The whole rest of this piece is ours: go on into the next one if nobody has it.
            let next = piece + 1;
            let continues = next < geometry.piece_count
                && bytes < max_bytes
                && self.state[next as usize] == PieceState::Missing
                && self.priority[next as usize] > 0
                && allowed(next)
                && (!deadlines_only || self.is_deadline(next));
            if !continues {
                return;
            }
            piece = next;
        }
    }

    /// `piece` is missing again: back into the rarest-first order, at the end (or the front),
    /// without waiting for a rebuild. The stale entries it leaves are skipped when used and go
    /// at the next rebuild; should none come for a while (the order was not marked dirty, or
    /// only deadlines are picked), the order is dropped once it holds two entries per piece
    /// and rebuilt at the next pick instead of growing without end (invariant 9).
    fn queue_again(&mut self, piece: u32, at_front: bool) {
        if self.order.len() >= 2 * self.geometry.piece_count as usize {
            self.order.clear();
            self.order_built_at = None;
        } else if at_front {
            self.order.insert(0, piece);
        } else {
            self.order.push(piece);
        }
    }

    /// A piece may be missing again below the web seeds' cursor.
    fn rewind_run_cursor(&mut self, piece: u32) {
        self.run_cursor = self.run_cursor.min(piece);
    }

    fn any_missing_wanted_piece_unstarted(&self) -> bool {
        // Partial pieces plus verified pieces account for every wanted piece in the endgame.
        let started_or_verifying = self.partial.len() as u32;
        self.wanted_missing > started_or_verifying
    }

    fn refresh_order(&mut self, now: Instant) {
        let due = match self.order_built_at {
            None => true,
            Some(at) => self.order_dirty && now.saturating_since(at) >= ORDER_REBUILD_INTERVAL,
        };
        if !due {
            return;
        }
        let mut order: Vec<u32> = (0..self.geometry.piece_count)
            .filter(|&p| {
                self.state[p as usize] == PieceState::Missing && self.priority[p as usize] > 0
            })
            .collect();
        // Random tie-break so peers starting together do not all fetch the same pieces.
        let mut keys: Vec<(u8, u16, u32, u32)> = order
            .iter()
            .map(|&p| {
                let i = p as usize;
                (u8::MAX - self.priority[i], self.availability[i], self.rng.u32(..), p)
            })
            .collect();
        keys.sort_unstable();
        order.clear();
        order.extend(keys.iter().map(|k| k.3));
        self.order = order;
        self.order_dirty = false;
        self.order_built_at = Some(now);
    }

    // ---- results ----

    /// A block arrived from `peer`, which had requested it.
    pub fn on_block(&mut self, block: BlockRef, peer: PeerKey) -> BlockOutcome {
        let Some(index) = self.geometry.block_index(block.piece, block.offset, block.length) else {
            return BlockOutcome::Unwanted;
        };
        let Some(partial) = self.partial.get_mut(&block.piece) else {
            return BlockOutcome::Unwanted;
        };
        let cancel = match partial.blocks[index as usize] {
            Block::Received => return BlockOutcome::Unwanted,
            Block::Free => {
                partial.free -= 1;
                None
            }
            Block::Requested(first, dup) => {
                if first == peer {
                    dup
                } else if dup == Some(peer) {
                    Some(first)
                } else {
                    // Requested from someone else and delivered by this peer (e.g. its request
                    // was timed out and reassigned): take it, cancel the others.
                    Some(first)
                }
            }
        };
        partial.blocks[index as usize] = Block::Received;
        partial.received += 1;
        if !partial.contributors.contains(&peer) {
            partial.contributors.push(peer);
        }
        let piece_complete = partial.received as usize == partial.blocks.len();
        if piece_complete {
            self.state[block.piece as usize] = PieceState::Verifying;
        }
        self.debug_check([block.piece]);
        BlockOutcome::Accepted { cancel, piece_complete }
    }

    /// A request to `peer` is no longer outstanding without having delivered (rejected,
    /// cancelled by us, timed out, or the peer left): the block is free again unless another
    /// peer also has it requested.
    pub fn on_unrequest(&mut self, block: BlockRef, peer: PeerKey) {
        let Some(index) = self.geometry.block_index(block.piece, block.offset, block.length) else {
            return;
        };
        let Some(partial) = self.partial.get_mut(&block.piece) else { return };
        let slot = &mut partial.blocks[index as usize];
        match *slot {
            Block::Requested(first, None) if first == peer => {
                *slot = Block::Free;
                partial.free += 1;
            }
            Block::Requested(first, Some(dup)) if first == peer => {
                *slot = Block::Requested(dup, None);
            }
            Block::Requested(first, Some(dup)) if dup == peer => {
                *slot = Block::Requested(first, None);
            }
            _ => {}
        }
        if partial.owner == peer
            && partial.received == 0
            && partial.free as usize == partial.blocks.len()
        {
            // Nobody is working on it any more: let rarest-first consider it afresh.
            self.partial.remove(&block.piece);
            self.state[block.piece as usize] = PieceState::Missing;
            self.queue_again(block.piece, false);
        }
        self.debug_check([block.piece]);
    }

    /// The driver hashed a complete piece. On success the piece is held; on failure it is
    /// reset for a fresh download and the peers that contributed to it are returned.
    pub fn on_verified(&mut self, piece: u32, ok: bool) -> Vec<PeerKey> {
        if self.state.get(piece as usize) != Some(&PieceState::Verifying) {
            return Vec::new();
        }
        let contributors = self.partial.remove(&piece).map(|p| p.contributors).unwrap_or_default();
        let blamed = if ok {
            self.set_have_from_verifying(piece);
            Vec::new()
        } else {
            self.state[piece as usize] = PieceState::Missing;
            self.order_dirty = true;
            // Put it first so the broken piece is fetched again soon.
            self.queue_again(piece, true);
            contributors
        };
        self.debug_check([piece]);
        blamed
    }

    fn set_have_from_verifying(&mut self, piece: u32) {
        self.state[piece as usize] = PieceState::Have;
        if self.priority[piece as usize] > 0 {
            self.wanted_missing -= 1;
        }
    }
}

fn take_free_blocks(
    geometry: &Geometry,
    piece: u32,
    partial: &mut Partial,
    peer: PeerKey,
    max: usize,
    out: &mut Vec<BlockRef>,
    now: Instant,
) {
    let mut taken = 0;
    for (b, block) in partial.blocks.iter_mut().enumerate() {
        if taken == max || partial.free == 0 {
            break;
        }
        if *block == Block::Free {
            *block = Block::Requested(peer, None);
            partial.requested_at[b] = now;
            partial.free -= 1;
            taken += 1;
            out.push(geometry.block(piece, b as u32));
        }
    }
}

/// Hands `peer` blocks of a critical piece that another peer has had for [`CRITICAL_LATE`]
/// without delivering (one duplicate per block at most).
fn duplicate_late_blocks(
    geometry: &Geometry,
    piece: u32,
    partial: &mut Partial,
    peer: PeerKey,
    max: usize,
    out: &mut Vec<BlockRef>,
    now: Instant,
) {
    let mut taken = 0;
    for (b, block) in partial.blocks.iter_mut().enumerate() {
        if taken == max {
            break;
        }
        if let Block::Requested(first, None) = *block {
            if first != peer && now.saturating_since(partial.requested_at[b]) >= CRITICAL_LATE {
                *block = Block::Requested(first, Some(peer));
                taken += 1;
                out.push(geometry.block(piece, b as u32));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerKey = PeerKey(1);
    const B: PeerKey = PeerKey(2);

    fn who(peer: PeerKey, max: usize, idle: bool) -> PickFor {
        PickFor { peer, max, idle, critical_ok: true, background_ok: true }
    }

    fn t(ms: u64) -> Instant {
        Instant::from_duration(std::time::Duration::from_millis(ms))
    }

    #[test]
    fn geometry_handles_short_last_piece_and_block() {
        let g = Geometry::new(32 * 1024, 32 * 1024 * 2 + 100);
        assert_eq!(g.piece_count, 3);
        assert_eq!(g.piece_len(2), 100);
        assert_eq!(g.block_count(2), 1);
        assert_eq!(g.block_len(2, 0), 100);
        assert_eq!(g.block_index(2, 0, 100), Some(0));
        assert_eq!(g.block_index(2, 0, BLOCK_SIZE), None);
        assert_eq!(g.block_index(1, BLOCK_SIZE, BLOCK_SIZE), Some(1));
        assert_eq!(g.block_index(1, 100, BLOCK_SIZE), None);
        assert_eq!(g.block_index(3, 0, 100), None);
    }

    #[test]
    fn picks_rarest_first_and_whole_pieces_per_peer() {
        let g = Geometry::new(2 * BLOCK_SIZE, 4 * 2 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 7);
        // Piece 2 is rarest (1 peer), others have 2.
        for piece in [0, 1, 3] {
            p.add_available(piece);
            p.add_available(piece);
        }
        p.add_available(2);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 2, false), |_| true, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|b| b.piece == 2), "{out:?}");
        // A's own piece is continued before anything new.
        p.on_unrequest(out[1], A);
        let mut again = Vec::new();
        p.pick(t(1), who(A, 1, false), |_| true, &mut again);
        assert_eq!(again, vec![out[1]]);
    }

    #[test]
    fn skips_unwanted_and_held_pieces_and_completes() {
        let g = Geometry::new(BLOCK_SIZE, 3 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 1);
        p.set_priority(0, 0);
        p.set_have(1);
        assert_eq!(p.wanted_missing(), 1);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 10, false), |_| true, &mut out);
        assert_eq!(out, vec![g.block(2, 0)]);
        assert_eq!(
            p.on_block(out[0], A),
            BlockOutcome::Accepted { cancel: None, piece_complete: true }
        );
        assert!(!p.is_complete());
        assert!(p.on_verified(2, true).is_empty());
        assert!(p.is_complete());
    }

    #[test]
    fn endgame_duplicates_and_cancels() {
        let g = Geometry::new(BLOCK_SIZE, u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 1);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 10, false), |_| true, &mut out);
        assert_eq!(out.len(), 1);
        let mut dup = Vec::new();
        p.pick(t(0), who(B, 10, true), |_| true, &mut dup);
        assert!(dup.is_empty(), "a block just requested is not a straggler yet");
        p.pick(t(2500), who(B, 10, false), |_| true, &mut dup);
        assert!(dup.is_empty(), "a busy peer does not duplicate");
        p.pick(t(2500), who(B, 10, true), |_| true, &mut dup);
        assert_eq!(dup, out, "endgame should duplicate the straggling block");
        assert_eq!(
            p.on_block(dup[0], B),
            BlockOutcome::Accepted { cancel: Some(A), piece_complete: true }
        );
        assert_eq!(p.on_block(out[0], A), BlockOutcome::Unwanted);
    }

    #[test]
    fn failed_piece_is_refetched_and_blames_contributors() {
        let g = Geometry::new(2 * BLOCK_SIZE, 2 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 1);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 1, false), |_| true, &mut out);
        p.pick(t(0), who(B, 1, false), |_| true, &mut out);
        assert_eq!(out.len(), 2);
        p.on_block(out[0], A);
        p.on_block(out[1], B);
        let mut blamed = p.on_verified(0, false);
        blamed.sort();
        assert_eq!(blamed, vec![A, B]);
        let mut again = Vec::new();
        p.pick(t(1), who(A, 10, false), |_| true, &mut again);
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn peer_leaving_frees_its_blocks() {
        let g = Geometry::new(4 * BLOCK_SIZE, 4 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 1);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 4, false), |_| true, &mut out);
        for b in &out {
            p.on_unrequest(*b, A);
        }
        let mut b_out = Vec::new();
        p.pick(t(0), who(B, 4, false), |_| true, &mut b_out);
        assert_eq!(b_out.len(), 4);
    }

    #[test]
    fn respects_what_the_peer_has() {
        let g = Geometry::new(BLOCK_SIZE, 4 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 3);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 10, false), |piece| piece == 3, &mut out);
        assert_eq!(out, vec![g.block(3, 0)]);
        assert!(p.wants_any(|piece| piece == 0, false));
        assert!(!p.wants_any(|_| false, false));
    }
    fn deadline(piece: u32, critical: bool) -> Deadline {
        Deadline { piece, critical }
    }

    #[test]
    fn deadline_pieces_come_first_in_order() {
        let g = Geometry::new(BLOCK_SIZE, 10 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 5);
        p.set_deadlines([deadline(7, true), deadline(3, false)]);
        let mut out = Vec::new();
        p.pick(t(0), who(A, 3, false), |_| true, &mut out);
        assert_eq!(out[0], g.block(7, 0));
        assert_eq!(out[1], g.block(3, 0));
        assert_eq!(out.len(), 3, "then rarest-first fills the rest");
    }

    #[test]
    fn slow_peers_skip_critical_pieces_but_take_urgent_ones() {
        let g = Geometry::new(BLOCK_SIZE, 10 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 5);
        p.set_deadlines([deadline(7, true), deadline(3, false)]);
        let mut out = Vec::new();
        let slow =
            PickFor { peer: A, max: 1, idle: false, critical_ok: false, background_ok: true };
        p.pick(t(0), slow, |_| true, &mut out);
        assert_eq!(out, vec![g.block(3, 0)]);
    }

    #[test]
    fn late_critical_blocks_are_duplicated_to_another_peer() {
        let g = Geometry::new(2 * BLOCK_SIZE, 4 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 5);
        p.set_deadlines([deadline(1, true)]);
        p.set_deadline_only(true);
        let mut a = Vec::new();
        p.pick(t(0), who(A, 8, false), |_| true, &mut a);
        assert_eq!(a, vec![g.block(1, 0), g.block(1, 1)]);
        let mut b = Vec::new();
        p.pick(t(100), who(B, 8, false), |_| true, &mut b);
        assert!(b.is_empty(), "not late yet, and deadline-only fetches nothing else");
        p.pick(t(600), who(B, 8, false), |_| true, &mut b);
        assert_eq!(b, a, "late blocks go to a second peer while the first is busy");
        assert_eq!(
            p.on_block(b[0], B),
            BlockOutcome::Accepted { cancel: Some(A), piece_complete: false }
        );
        let still_at_a: Vec<BlockRef> =
            p.requested_from(1, A).into_iter().map(|(b, _)| b).collect();
        assert_eq!(still_at_a, vec![g.block(1, 1)], "the delivered block is no longer A's");
    }

    #[test]
    fn evicted_pieces_are_missing_again() {
        let g = Geometry::new(BLOCK_SIZE, 2 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 5);
        p.set_have(0);
        p.set_have(1);
        assert!(p.is_complete());
        p.unset_have(1);
        assert!(!p.is_complete() && !p.has(1));
        let mut out = Vec::new();
        p.pick(t(0), who(A, 4, false), |_| true, &mut out);
        assert_eq!(out, vec![g.block(1, 0)]);
    }

    #[test]
    fn deadline_only_makes_a_peer_interesting_only_for_deadlines() {
        let g = Geometry::new(BLOCK_SIZE, 4 * u64::from(BLOCK_SIZE));
        let mut p = Picker::new(g, 5);
        p.set_deadline_only(true);
        assert!(!p.wants_any(|_| true, false));
        p.set_deadlines([deadline(2, false)]);
        assert!(p.wants_any(|piece| piece == 2, false));
        assert!(!p.wants_any(|piece| piece == 1, false));
    }
}
