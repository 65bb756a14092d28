//! Rates, sans IO. [`TokenBucket`] and [`SourceBuckets`]: how many requests a source may make
//! (the tracker's clients, the DHT node's queriers). [`RateLimit`]: a byte rate shared by
//! several senders: a sender reserves the bytes it is about to
//! send and waits until the instant it is given. This is virtual scheduling (GCRA): the limit
//! keeps a theoretical time at which the link is free again, a reservation moves it on by
//! `bytes / rate`, and up to `burst` bytes may go ahead of it. Reservations are served in the
//! order they are made, so no sender starves, and a sender that waits has its bytes counted at
//! once, so the senders behind it wait for them too.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::time::Instant;

#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Bytes per second, at least 1.
    rate: u64,
    /// How far ahead of the theoretical schedule a sender may be: `burst` bytes' worth.
    tolerance: Duration,
    /// When everything reserved so far has left, at the rate.
    free_at: Instant,
}

impl RateLimit {
    /// `rate` bytes per second with bursts of up to `burst` bytes.
    pub fn new(rate: u64, burst: u64) -> RateLimit {
        let rate = rate.max(1);
        RateLimit { rate, tolerance: duration_of(burst, rate), free_at: Instant::ZERO }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Reserves `bytes` at `now`: they may be sent at the returned instant (`now` or later).
    pub fn reserve(&mut self, now: Instant, bytes: u64) -> Instant {
        // The bytes' place in the schedule, which they may run ahead of by the tolerance.
        let start = self.free_at.max(now);
        self.free_at = start + duration_of(bytes, self.rate);
        Instant::from_duration(start.since_epoch().saturating_sub(self.tolerance)).max(now)
    }
}

fn duration_of(bytes: u64, rate: u64) -> Duration {
    Duration::from_nanos((u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1))) as u64)
}

/// A token bucket in 12 bytes: `rate` tokens a second up to `burst`, refilled lazily. Time is
/// the caller's, in milliseconds from an epoch of its choosing.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f32,
    /// When `tokens` was last refilled.
    at_ms: u64,
}

impl TokenBucket {
    pub fn full(burst: u32, now_ms: u64) -> Self {
        TokenBucket { tokens: burst as f32, at_ms: now_ms }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: u32, burst: u32, now_ms: u64) -> bool {
        self.refill(rate, burst, now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it would be full at `now_ms`: its source is then no different from a new one.
    pub fn is_full_at(&self, rate: u32, burst: u32, now_ms: u64) -> bool {
        let mut probe = *self;
        probe.refill(rate, burst, now_ms);
        probe.tokens + 1.0 > burst as f32
    }

    fn refill(&mut self, rate: u32, burst: u32, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f32 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate as f32).min(burst as f32);
        self.at_ms = now_ms;
    }
}

/// A [`TokenBucket`] per source (an IP address, say): `rate` requests a second after a burst
/// of `burst`. Bounded: past `soft_cap` sources, those whose bucket has refilled are
/// forgotten, and if none has, the new source is refused (a flood of fresh sources is no
/// reason to forget the ones that are spending their budget).
#[derive(Debug)]
pub struct SourceBuckets<K> {
    rate: u32,
    burst: u32,
    soft_cap: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq> SourceBuckets<K> {
    pub fn new(rate: u32, burst: u32, soft_cap: usize) -> Self {
        SourceBuckets { rate, burst: burst.max(1), soft_cap, buckets: HashMap::new() }
    }

    /// Whether a request from `source` at `now_ms` is allowed (and spends a token if so).
    pub fn allow(&mut self, source: K, now_ms: u64) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if self.buckets.len() >= self.soft_cap && !self.buckets.contains_key(&source) {
            self.buckets.retain(|_, b| !b.is_full_at(rate, burst, now_ms));
            if self.buckets.len() >= self.soft_cap {
                return false;
            }
        }
        self.buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::full(burst, now_ms))
            .take(rate, burst, now_ms)
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = TokenBucket::full(3, 0);
        assert!((0..3).all(|_| b.take(2, 3, 0)));
        assert!(!b.take(2, 3, 0));
        assert!(b.take(2, 3, 500)); // half a second: one token at 2/s
        assert!(!b.take(2, 3, 500));
        assert!((0..3).all(|_| b.take(2, 3, 100_000)));
        assert!(!b.take(2, 3, 100_000));
    }

    #[test]
    fn sources_have_buckets_of_their_own_and_are_bounded() {
        let mut s = SourceBuckets::new(1, 2, 3);
        assert!(s.allow("a", 0) && s.allow("a", 0));
        assert!(!s.allow("a", 0));
        assert!(s.allow("b", 0));
        assert!(s.allow("c", 0));
        // Full of sources still spending: a new one is refused, not one of them forgotten.
        assert!(!s.allow("d", 0));
        assert!(!s.allow("a", 0));
        // Later every bucket has refilled: they make room.
        assert!(s.allow("d", 10_000));
        assert!(s.len() <= 3);
    }

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_follows_at_the_rate() {
        let mut limit = RateLimit::new(1000, 500);
        // Bytes may run half a second (the burst) ahead of the schedule: these leave at once.
        assert_eq!(limit.reserve(at(0), 250), at(0));
        assert_eq!(limit.reserve(at(0), 250), at(0));
        assert_eq!(limit.reserve(at(0), 500), at(0));
        // Beyond it, each byte waits for its turn at 1000 bytes/s.
        assert_eq!(limit.reserve(at(0), 100), at(500));
        assert_eq!(limit.reserve(at(0), 100), at(600));
    }

    #[test]
    fn senders_share_the_rate_in_the_order_they_ask() {
        let mut limit = RateLimit::new(1000, 0);
        let first = limit.reserve(at(0), 1000);
        let second = limit.reserve(at(10), 1000);
        assert_eq!(first, at(0));
        assert_eq!(second, at(1000), "the second waits for the first's bytes");
        // An idle link does not bank unused time beyond the burst.
        assert_eq!(limit.reserve(at(10_000), 10), at(10_000));
        assert_eq!(limit.reserve(at(10_000), 10), at(10_010));
    }

    #[test]
    fn over_a_long_run_the_average_is_the_rate() {
        let mut limit = RateLimit::new(2 << 20, 64 << 10);
        let mut last = Instant::ZERO;
        for _ in 0..1024 {
            last = limit.reserve(Instant::ZERO, 16 << 10); // 16 MiB in all
        }
        let secs = last.since_epoch().as_secs_f64();
        assert!((7.9..8.0).contains(&secs), "16 MiB at 2 MiB/s took {secs}s");
    }
}
