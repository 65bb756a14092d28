//! The choker: which peers we upload to.
//!
//! Tit-for-tat (BEP 3): every round, the interested peers that give us the most (while we
//! download) or that take the most (while we seed, so our upload goes where it moves fastest)
//! are unchoked, plus one optimistic unchoke that rotates so new peers get a chance to prove
//! themselves. Peers that are not interested stay choked; they cost nothing either way.

use std::time::Duration;

use crate::time::Instant;
use crate::types::PeerKey;

/// How often the regular unchoke set is recomputed.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(10);
/// How long an optimistic unchoke lasts before it moves to another peer.
pub const OPTIMISTIC_INTERVAL: Duration = Duration::from_secs(30);

/// What the choker needs to know about one connected peer.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub peer: PeerKey,
    pub interested: bool,
    /// Bytes/s we receive from this peer.
    pub download_rate: u64,
    /// Bytes/s we send to this peer.
    pub upload_rate: u64,
}

pub struct Choker {
    slots: usize,
    last_round: Option<Instant>,
    optimistic: Option<PeerKey>,
    optimistic_since: Instant,
    /// Picks the optimistic unchoke; seeded by the driver, so a run is reproducible.
    rng: fastrand::Rng,
}

impl Choker {
    /// `slots` peers are unchoked at once, one of them optimistically.
    pub fn new(slots: usize, random_seed: u64) -> Self {
        Choker {
            slots: slots.max(1),
            last_round: None,
            optimistic: None,
            optimistic_since: Instant::ZERO,
            rng: fastrand::Rng::with_seed(random_seed),
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Whether a regular round is due.
    pub fn round_due(&self, now: Instant) -> bool {
        match self.last_round {
            None => true,
            Some(at) => now.saturating_since(at) >= ROUND_INTERVAL,
        }
    }

    /// Computes the set of peers to unchoke (the rest are choked). `seeding` ranks by upload
    /// rate instead of download rate.
    pub fn round(&mut self, now: Instant, candidates: &[Candidate], seeding: bool) -> Vec<PeerKey> {
        self.last_round = Some(now);
        let mut interested: Vec<&Candidate> = candidates.iter().filter(|c| c.interested).collect();
        if interested.len() <= self.slots {
            self.optimistic = None;
            return interested.iter().map(|c| c.peer).collect();
        }
        interested.sort_by(|a, b| {
            let (ra, rb) = if seeding {
                (a.upload_rate, b.upload_rate)
            } else {
                (a.download_rate, b.download_rate)
            };
            rb.cmp(&ra).then(a.peer.cmp(&b.peer))
        });
        let regular = self.slots - 1;
        let mut unchoked: Vec<PeerKey> = interested[..regular].iter().map(|c| c.peer).collect();
        let rest = &interested[regular..];

        let keep_optimistic = self.optimistic.is_some_and(|p| {
            rest.iter().any(|c| c.peer == p)
                && now.saturating_since(self.optimistic_since) < OPTIMISTIC_INTERVAL
        });
        if !keep_optimistic {
            // `rest` is never empty here (more interested peers than slots).
            self.optimistic = self.rng.choice(rest).map(|c| c.peer);
            self.optimistic_since = now;
        }
        if let Some(p) = self.optimistic {
            unchoked.push(p);
        }
        unchoked
    }

    /// Whether a peer that just became interested can be unchoked now, without waiting for
    /// the next round: true while fewer than `slots` peers are unchoked.
    pub fn has_free_slot(&self, currently_unchoked: usize) -> bool {
        currently_unchoked < self.slots
    }

    /// A peer left; forget it if it held the optimistic slot.
    pub fn remove(&mut self, peer: PeerKey) {
        if self.optimistic == Some(peer) {
            self.optimistic = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(peer: u64, interested: bool, down: u64, up: u64) -> Candidate {
        Candidate { peer: PeerKey(peer), interested, download_rate: down, upload_rate: up }
    }

    #[test]
    fn unchokes_everyone_interested_when_slots_suffice() {
        let mut ch = Choker::new(4, 1);
        let got = ch.round(Instant::ZERO, &[c(1, true, 0, 0), c(2, false, 9, 9)], false);
        assert_eq!(got, vec![PeerKey(1)]);
    }

    #[test]
    fn ranks_by_rate_and_adds_one_optimistic() {
        let mut ch = Choker::new(3, 1);
        let cands = [
            c(1, true, 10, 0),
            c(2, true, 50, 0),
            c(3, true, 30, 0),
            c(4, true, 1, 100),
            c(5, true, 2, 0),
        ];
        let got = ch.round(Instant::ZERO, &cands, false);
        assert_eq!(got.len(), 3);
        assert_eq!(&got[..2], &[PeerKey(2), PeerKey(3)]);
        assert!([PeerKey(1), PeerKey(4), PeerKey(5)].contains(&got[2]));
        // Seeding ranks by what we send.
        let got = ch.round(Instant::ZERO, &cands, true);
        assert_eq!(got[0], PeerKey(4));
    }

    #[test]
    fn optimistic_slot_rotates_after_its_interval() {
        let mut ch = Choker::new(2, 42);
        let cands: Vec<Candidate> = (1..=20).map(|i| c(i, true, 100 - i, 0)).collect();
        let first = ch.round(Instant::ZERO, &cands, false)[1];
        let later = Instant::ZERO + ROUND_INTERVAL;
        assert_eq!(ch.round(later, &cands, false)[1], first, "kept within its interval");
        let mut seen = std::collections::HashSet::new();
        for round in 1..10u32 {
            let at = Instant::ZERO + OPTIMISTIC_INTERVAL * round;
            seen.insert(ch.round(at, &cands, false)[1]);
        }
        assert!(seen.len() > 1, "optimistic unchoke never moved");
    }
}
