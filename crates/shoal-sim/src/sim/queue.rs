//! The event queue: events in (time, insertion order), cheap at millions of pending events.
//!
//! A binary heap of every pending event cost more than anything else the simulator did in a
//! big swarm (sifting through tens of thousands of entries at every pop is cache misses all
//! the way down). This is a calendar queue instead, with exactly the same order:
//!
//! - entries are (time in nanoseconds, sequence number, event), ordered by (time, sequence),
//!   kept inline: a separate slab of events cost a cache miss per event;
//! - entries for the next ~4 s sit unsorted in a wheel of ~0.26 ms buckets; when the clock
//!   reaches a bucket, its entries become a small heap (`current`), which new entries for
//!   that bucket (or earlier) join;
//! - entries beyond the wheel wait in a heap of their own (`far`: timeouts, idle timers) and
//!   join `current` when their bucket comes up;
//! - entries for the current instant (zero disk latency, wake-ups "now") go to a FIFO, which is
//!   in order by construction: each was scheduled after anything else pending for that
//!   instant.

use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use shoal_proto::Instant;

/// Time since the epoch in nanoseconds, and sequence number.
type Key = (u64, u64);

/// An event and when it is due, ordered earliest first (reversed, for `BinaryHeap`).
struct Entry<E> {
    key: Key,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

/// A bucket spans 2^18 ns (~0.26 ms): a few hundred events in a big swarm, so `current`
/// stays small enough for the cache.
const BUCKET_SHIFT: u32 = 18;
/// Buckets in the wheel: 2^14 of them cover ~4.3 s, past the latencies and transmit times
/// of frames (what most events are).
const WHEEL: u64 = 1 << 14;

pub(super) struct EventQueue<E> {
    /// Entries of the bucket being worked through (and anything pushed for it or earlier).
    current: BinaryHeap<Entry<E>>,
    current_bucket: u64,
    /// Entries of buckets `current_bucket + 1 ..= current_bucket + WHEEL - 1`, at
    /// `bucket % WHEEL`, unsorted.
    wheel: Vec<Vec<Entry<E>>>,
    /// One bit per wheel slot that holds entries.
    occupied: Vec<u64>,
    /// Emptied vectors, for wheel slots that fill again: a slot keeps no capacity of its
    /// own, or every one of the 2^14 would hold its busiest moment's worth.
    spare: Vec<Vec<Entry<E>>>,
    /// Entries beyond the wheel.
    far: BinaryHeap<Entry<E>>,
    /// Entries scheduled for the instant that was current when they were scheduled.
    now: VecDeque<Entry<E>>,
    seq: u64,
    len: usize,
}

fn nanos(at: Instant) -> u64 {
    // 584 years of virtual time fit; beyond that, later events keep their order among
    // themselves only by sequence, which no simulation reaches.
    u64::try_from(at.since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

fn bucket(key: &Key) -> u64 {
    key.0 >> BUCKET_SHIFT
}

impl<E> EventQueue<E> {
    pub(super) fn new() -> Self {
        EventQueue {
            current: BinaryHeap::new(),
            current_bucket: 0,
            wheel: (0..WHEEL).map(|_| Vec::new()).collect(),
            occupied: vec![0; (WHEEL / 64) as usize],
            spare: Vec::new(),
            far: BinaryHeap::new(),
            now: VecDeque::new(),
            seq: 0,
            len: 0,
        }
    }

    /// Schedules `event` at `at`, which is not before `now`.
    pub(super) fn push(&mut self, at: Instant, now: Instant, event: E) {
        self.seq += 1;
        self.len += 1;
        let entry = Entry { key: (nanos(at), self.seq), event };
        // Same instant as every other FIFO entry (the FIFO drains before the clock moves on).
        if at <= now && self.now.back().is_none_or(|last| last.key.0 == entry.key.0) {
            self.now.push_back(entry);
            return;
        }
        let b = bucket(&entry.key);
        if b <= self.current_bucket {
            self.current.push(entry);
        } else if b - self.current_bucket < WHEEL {
            let i = (b % WHEEL) as usize;
            if self.wheel[i].capacity() == 0 {
                if let Some(spare) = self.spare.pop() {
                    self.wheel[i] = spare;
                }
            }
            self.wheel[i].push(entry);
            self.occupied[i / 64] |= 1 << (i % 64);
        } else {
            self.far.push(entry);
        }
    }

    /// When the earliest event is due.
    pub(super) fn peek_at(&mut self) -> Option<Instant> {
        self.first().map(|key| Instant::from_duration(Duration::from_nanos(key.0)))
    }

    /// The earliest key, moving to the next bucket that holds any if `current` is empty.
    fn first(&mut self) -> Option<Key> {
        if self.current.is_empty() {
            self.advance();
        }
        match (self.current.peek(), self.now.front()) {
            (Some(h), Some(f)) => Some(h.key.min(f.key)),
            (Some(h), None) => Some(h.key),
            (None, f) => f.map(|f| f.key),
        }
    }

    /// Makes the earliest bucket that holds entries (in the wheel or far) the current one.
    fn advance(&mut self) {
        let from_wheel = self.next_occupied();
        let from_far = self.far.peek().map(|e| bucket(&e.key));
        let next = match (from_wheel, from_far) {
            (Some(w), Some(f)) => w.min(f),
            (Some(w), None) => w,
            (None, Some(f)) => f,
            (None, None) => return,
        };
        self.current_bucket = next;
        if from_wheel == Some(next) {
            let i = (next % WHEEL) as usize;
            self.occupied[i / 64] &= !(1 << (i % 64));
            // Swap the bucket's vector in as the heap (heapified in place, O(n)); the empty
            // heap's allocation is kept for a slot that fills later.
            let entries = std::mem::take(&mut self.wheel[i]);
            let spent = std::mem::replace(&mut self.current, BinaryHeap::from(entries));
            if self.spare.len() < 1024 {
                self.spare.push(spent.into_vec());
            }
        }
        while self.far.peek().is_some_and(|e| bucket(&e.key) <= next) {
            if let Some(entry) = self.far.pop() {
                self.current.push(entry);
            }
        }
    }

    /// The earliest wheel bucket after `current_bucket` that holds entries.
    fn next_occupied(&self) -> Option<u64> {
        let start = (self.current_bucket + 1) % WHEEL;
        let words = self.occupied.len();
        // Walk the bitmap once around, starting at `start`'s word (masked below `start`) and
        // ending with that word's low bits.
        for step in 0..=words {
            let w = (start as usize / 64 + step) % words;
            let mut bits = self.occupied[w];
            if step == 0 {
                bits &= !0u64 << (start % 64);
            } else if step == words {
                bits &= !(!0u64 << (start % 64));
            }
            if bits != 0 {
                let slot = (w * 64) as u64 + u64::from(bits.trailing_zeros());
                let ahead = (slot + WHEEL - start) % WHEEL;
                return Some(self.current_bucket + 1 + ahead);
            }
        }
        None
    }

    /// Takes the earliest event if it is due at `at`.
    pub(super) fn pop_at(&mut self, at: Instant) -> Option<E> {
        let first = self.first()?;
        if first.0 != nanos(at) {
            return None;
        }
        let entry = if self.now.front().is_some_and(|f| f.key == first) {
            self.now.pop_front()
        } else {
            self.current.pop()
        };
        self.len -= 1;
        entry.map(|e| e.event)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;

    use super::*;
    use crate::rng::SimRng;

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut q = EventQueue::new();
        q.push(at(5), at(0), "b");
        q.push(at(0), at(0), "now-1");
        q.push(at(5), at(0), "c");
        q.push(at(1), at(0), "a");
        q.push(at(0), at(0), "now-2");
        q.push(at(60_000), at(0), "far");
        assert_eq!(q.len(), 6);
        assert_eq!(q.peek_at(), Some(at(0)));
        assert_eq!(q.pop_at(at(0)), Some("now-1"));
        assert_eq!(q.pop_at(at(0)), Some("now-2"));
        assert_eq!(q.pop_at(at(0)), None, "nothing else is due at 0");
        assert_eq!(q.pop_at(at(1)), Some("a"));
        // At 5, the heap's events (scheduled earlier) come before what is scheduled at 5.
        q.push(at(5), at(5), "d");
        assert_eq!(q.pop_at(at(5)), Some("b"));
        q.push(at(5), at(5), "e");
        assert_eq!(q.pop_at(at(5)), Some("c"));
        assert_eq!(q.pop_at(at(5)), Some("d"));
        assert_eq!(q.pop_at(at(5)), Some("e"));
        assert_eq!(q.peek_at(), Some(at(60_000)));
        assert_eq!(q.pop_at(at(60_000)), Some("far"));
        assert_eq!(q.peek_at(), None);
        assert_eq!(q.len(), 0);
    }

    /// Random schedules, including the clock jumping ahead without popping (a deadline) and
    /// then events scheduled before the bucket the queue had moved to: the same order as a
    /// plain heap of (time, sequence).
    #[test]
    fn matches_a_plain_heap() {
        let mut rng = SimRng::new(7);
        let mut q = EventQueue::new();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64; // ns
        let delays = [0, 1, 1_000, 100_000, 300_000, 5_000_000, 40_000_000, 5_000_000_000];
        let mut popped = 0;
        for round in 0..20_000 {
            for _ in 0..rng.below(4) {
                let pick = delays[rng.below(delays.len() as u64) as usize];
                let delay = if pick == 0 { 0 } else { rng.below(pick) };
                seq += 1;
                let t = now + delay;
                let inst = Instant::from_duration(Duration::from_nanos(t));
                q.push(inst, Instant::from_duration(Duration::from_nanos(now)), seq);
                reference.push(Reverse((t, seq)));
            }
            if round % 97 == 0 {
                // A deadline: the clock moves on without popping, after a peek.
                let _ = q.peek_at();
                let next = reference.peek().map_or(now, |Reverse((t, _))| *t);
                now = now.max(next.saturating_sub(rng.below(2_000_000)));
                continue;
            }
            let Some(&Reverse((t, _))) = reference.peek() else { continue };
            now = t;
            let inst = Instant::from_duration(Duration::from_nanos(t));
            assert_eq!(q.peek_at(), Some(inst));
            for _ in 0..1 + rng.below(3) {
                match reference.peek() {
                    Some(&Reverse((t2, s))) if t2 == t => {
                        reference.pop();
                        assert_eq!(q.pop_at(inst), Some(s), "round {round}");
                        popped += 1;
                    }
                    _ => assert_eq!(q.pop_at(inst), None),
                }
            }
        }
        while let Some(Reverse((t, s))) = reference.pop() {
            let inst = Instant::from_duration(Duration::from_nanos(t));
            assert_eq!(q.peek_at(), Some(inst));
            assert_eq!(q.pop_at(inst), Some(s));
            popped += 1;
        }
        assert_eq!(q.peek_at(), None);
        assert!(popped > 10_000);
    }
}
