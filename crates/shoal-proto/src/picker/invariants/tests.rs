//! Random sequences of the calls a driver makes, with every invariant checked after each one.
//! A model of the peers stands in for the driver: what each peer has (invariant 8) and which
//! requests are outstanding at it (invariant 12).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::picker::{BlockOutcome, Deadline, Geometry, PickFor, Picker, BLOCK_SIZE};
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::BlockRef;

const PEERS: usize = 5;
/// Takes runs like a web seed: has everything, is not counted in availability.
const WEB_SEED: usize = PEERS;

#[derive(Default)]
struct ModelPeer {
    connected: bool,
    seed: bool,
    has: Vec<bool>,
    /// Requests handed to this peer and not yet delivered, rejected or cancelled.
    asked: BTreeSet<BlockRef>,
}

struct Run {
    rng: fastrand::Rng,
    picker: Picker,
    geometry: Geometry,
    peers: Vec<ModelPeer>,
    now: Instant,
    /// How often the interesting paths were taken, so the test knows it reached them.
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    verified: usize,
    failed: usize,
    duplicates_cancelled: usize,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = fastrand::Rng::with_seed(seed);
        // Four blocks a piece, a short last piece of one or two blocks.
        let piece_length = 4 * BLOCK_SIZE;
        let pieces = rng.u64(3..12);
        let total = (pieces - 1) * u64::from(piece_length) + rng.u64(1..2 * u64::from(BLOCK_SIZE));
        let geometry = Geometry::new(piece_length, total);
        let picker = Picker::new(geometry, rng.u64(..));
        let mut peers: Vec<ModelPeer> = (0..=PEERS).map(|_| ModelPeer::default()).collect();
        peers[WEB_SEED].connected = true;
        Run { rng, picker, geometry, peers, now: Instant::ZERO, seen: Seen::default() }
    }

    fn key(index: usize) -> PeerKey {
        PeerKey(index as u64)
    }

    fn step(&mut self) {
        match self.rng.u8(..16) {
            0 => self.connect(),
            1 => self.announce_have(),
            2 => self.disconnect(),
            3..=5 => self.pick(),
            6 => self.pick_run(),
            7..=9 => self.deliver(),
            10 => self.unrequest(),
            11 => self.verify(),
            12 => self.change_pieces(),
            13 => self.change_deadlines(),
            _ => self.now = self.now + Duration::from_millis(self.rng.u64(..1500)),
        }
    }

    fn connect(&mut self) {
        let i = self.rng.usize(..PEERS);
        if self.peers[i].connected {
            return;
        }
        let pieces = self.geometry.piece_count as usize;
        let seed = self.rng.u8(..4) == 0;
        let has: Vec<bool> = (0..pieces).map(|_| seed || self.rng.bool()).collect();
        if seed {
            self.picker.add_seed();
        } else {
            (0..pieces).filter(|&p| has[p]).for_each(|p| self.picker.add_available(p as u32));
        }
        self.peers[i] = ModelPeer { connected: true, seed, has, asked: BTreeSet::new() };
    }

    fn announce_have(&mut self) {
        let i = self.rng.usize(..PEERS);
        let piece = self.rng.u32(..self.geometry.piece_count);
        let peer = &mut self.peers[i];
        if peer.connected && !peer.has[piece as usize] {
            peer.has[piece as usize] = true;
            self.picker.add_available(piece);
        }
    }

    fn disconnect(&mut self) {
        let i = self.rng.usize(..PEERS);
        if !self.peers[i].connected {
            return;
        }
        let peer = std::mem::take(&mut self.peers[i]);
        for block in peer.asked {
            self.picker.on_unrequest(block, Run::key(i));
        }
        if peer.seed {
            self.picker.remove_seed();
        } else {
            let held = (0..peer.has.len()).filter(|&p| peer.has[p]);
            held.for_each(|p| self.picker.remove_available(p as u32));
        }
    }

    fn pick(&mut self) {
        let i = self.rng.usize(..PEERS);
        let peer = &self.peers[i];
        if !peer.connected {
            return;
        }
        let who = PickFor {
            peer: Run::key(i),
            max: self.rng.usize(1..8),
            idle: peer.asked.is_empty(),
            critical_ok: self.rng.bool(),
            background_ok: self.rng.u8(..4) > 0,
        };
        let (seed, has) = (peer.seed, peer.has.clone());
        let mut out = Vec::new();
        self.picker.pick(self.now, who, |p| seed || has[p as usize], &mut out);
        assert!(out.len() <= who.max, "{} blocks for a room of {}", out.len(), who.max);
        for block in out {
            assert!(seed || has[block.piece as usize], "{block:?} from a peer without it");
            self.handed(i, block);
        }
    }

    fn pick_run(&mut self) {
        let max_bytes = self.rng.u64(1..6 * u64::from(BLOCK_SIZE));
        let background_ok = self.rng.u8(..4) > 0;
        let run =
            self.picker.pick_run(self.now, Run::key(WEB_SEED), max_bytes, background_ok, |_| true);
        for pair in run.windows(2) {
            let end = u64::from(pair[0].piece) * u64::from(self.geometry.piece_length)
                + u64::from(pair[0].offset + pair[0].length);
            let next = u64::from(pair[1].piece) * u64::from(self.geometry.piece_length)
                + u64::from(pair[1].offset);
            assert_eq!(end, next, "a run with a gap: {run:?}");
        }
        for block in run {
            self.handed(WEB_SEED, block);
        }
    }

    /// A block the picker handed to peer `i`: never one it holds, never twice to one peer.
    fn handed(&mut self, i: usize, block: BlockRef) {
        assert!(!self.picker.has(block.piece), "{block:?} of a piece we hold");
        assert!(self.picker.is_requested_from(&block, Run::key(i)), "{block:?} not recorded");
        assert!(self.peers[i].asked.insert(block), "{block:?} asked twice of peer {i}");
    }

    /// An outstanding request at a random peer, taken out of the model.
    fn take_asked(&mut self) -> Option<(usize, BlockRef)> {
        let i = self.rng.usize(..=PEERS);
        let asked = &mut self.peers[i].asked;
        let block = *asked.iter().nth(self.rng.usize(..asked.len().max(1)))?;
        asked.remove(&block);
        Some((i, block))
    }

    fn deliver(&mut self) {
        let Some((i, block)) = self.take_asked() else { return };
        if let BlockOutcome::Accepted { cancel: Some(other), .. } =
            self.picker.on_block(block, Run::key(i))
        {
            // The driver cancels the other copy; the picker already counts it as received.
            assert_ne!(other, Run::key(i));
            self.peers[other.0 as usize].asked.remove(&block);
            self.seen.duplicates_cancelled += 1;
        }
    }

    fn unrequest(&mut self) {
        if let Some((i, block)) = self.take_asked() {
            self.picker.on_unrequest(block, Run::key(i));
        }
    }

    fn verify(&mut self) {
        let piece = self.rng.u32(..self.geometry.piece_count);
        let ok = self.rng.u8(..5) > 0;
        let verifying = !self.picker.is_to_arrive(piece) && !self.picker.has(piece);
        let blamed = self.picker.on_verified(piece, ok);
        if verifying && ok {
            self.seen.verified += 1;
        } else if verifying {
            assert!(!blamed.is_empty(), "a failed piece blames nobody");
            self.seen.failed += 1;
        }
    }

    /// What the driver does outside downloads: priorities (file selection, streaming boosts),
    /// pieces found at a recheck, pieces the bounded store evicts.
    fn change_pieces(&mut self) {
        let piece = self.rng.u32(..self.geometry.piece_count);
        match self.rng.u8(..3) {
            0 => self.picker.set_priority(piece, self.rng.u8(..3)),
            // A recheck finds pieces that are not being downloaded.
            1 if !self.picker.is_in_progress(piece) => self.picker.set_have(piece),
            _ => self.picker.unset_have(piece),
        }
    }

    fn change_deadlines(&mut self) {
        if self.rng.u8(..8) == 0 {
            self.picker.set_deadline_only(self.rng.bool());
        }
        let n = self.geometry.piece_count + 2; // unknown indices are dropped
        let deadlines: Vec<Deadline> = (0..self.rng.usize(..4))
            .map(|_| Deadline { piece: self.rng.u32(..n), critical: self.rng.bool() })
            .collect();
        self.picker.set_deadlines(deadlines);
    }

    /// Everything the picker checks itself, then availability (8) and requests (12) against
    /// the model.
    fn check(&self) {
        self.picker.check_invariants();
        let seeds = self.peers.iter().filter(|p| p.connected && p.seed).count();
        for piece in 0..self.geometry.piece_count {
            let holders = self.peers[..PEERS]
                .iter()
                .filter(|p| p.connected && !p.seed && p.has[piece as usize])
                .count();
            assert_eq!(self.picker.availability(piece) as usize, seeds + holders, "8: {piece}");
            for (i, peer) in self.peers.iter().enumerate() {
                for (block, _) in self.picker.requested_from(piece, Run::key(i)) {
                    assert!(peer.asked.contains(&block), "12: {block:?} requested from peer {i}?");
                }
            }
        }
    }
}

#[test]
fn random_call_sequences_keep_every_invariant() {
    let mut seen = Seen::default();
    for seed in 0..200 {
        let mut run = Run::new(seed);
        for step in 0..400 {
            // Debug checks inside the picker panic too: say which sequence broke.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run.step();
                run.check();
            }));
            assert!(result.is_ok(), "seed {seed}, step {step}: an invariant broke (see above)");
        }
        seen.verified += run.seen.verified;
        seen.failed += run.seen.failed;
        seen.duplicates_cancelled += run.seen.duplicates_cancelled;
    }
    // The sequences must reach the interesting states, not stall at the start.
    assert!(
        seen.verified > 200 && seen.failed > 40,
        "{} verified, {} failed",
        seen.verified,
        seen.failed
    );
    assert!(seen.duplicates_cancelled > 200, "{} duplicates", seen.duplicates_cancelled);
}

/// Invariant 9's bound: with only seeds connected nothing marks the order for a rebuild, and a
/// piece its owner keeps giving back (a peer that chokes us again and again) was queued again
/// each time, without end.
#[test]
fn the_order_stays_bounded_when_a_piece_keeps_coming_back() {
    let geometry = Geometry::new(BLOCK_SIZE, 4 * u64::from(BLOCK_SIZE));
    let mut picker = Picker::new(geometry, 1);
    picker.add_seed();
    let who =
        PickFor { peer: PeerKey(1), max: 1, idle: true, critical_ok: true, background_ok: true };
    for round in 0..100u64 {
        let mut out = Vec::new();
        picker.pick(Instant::ZERO + Duration::from_millis(round), who, |_| true, &mut out);
        assert_eq!(out.len(), 1);
        picker.on_unrequest(out[0], who.peer);
        assert!(picker.order.len() <= 8, "round {round}: {} entries", picker.order.len());
    }
    picker.check_invariants();
}
