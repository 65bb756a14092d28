//! A budget of DHT queries per source address: what keeps our node from being a tool against
//! others or itself. A real node asks another a few queries a second at most; one that asks
//! far more is scanning, flooding, or spoofing someone else's address to make us answer them.
//! Each IPv4 address gets a bucket (a burst, refilled at a steady rate); a query with no
//! token left gets no answer. Bounded: the buckets of the longest-idle sources go first.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mainline::{RequestFilter, RequestSpecific};

/// Queries a source may send at once.
pub const BURST: f64 = 40.0;
/// Queries a second a source may keep sending.
pub const RATE: f64 = 10.0;
/// Sources tracked at once.
pub const MAX_SOURCES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets, by source IP.
#[derive(Debug, Default)]
pub struct SourceBuckets {
    buckets: HashMap<Ipv4Addr, Bucket>,
}

impl SourceBuckets {
    /// Whether a query from `ip` at `now` is answered (and spends a token if so).
    pub fn allow(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_SOURCES {
            self.forget_idlest();
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket { tokens: BURST, last: now });
        let elapsed = now.saturating_duration_since(bucket.last);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * RATE).min(BURST);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops the eighth of the buckets idle longest (whose sources would find them full
    /// again anyway): one scan for many insertions.
    fn forget_idlest(&mut self) {
        let mut lasts: Vec<Instant> = self.buckets.values().map(|b| b.last).collect();
        let cut = lasts.len() / 8;
        let (_, &mut threshold, _) = lasts.select_nth_unstable(cut);
        self.buckets.retain(|_, b| b.last > threshold);
    }
}

/// The [`SourceBuckets`] as the DHT node's request filter.
#[derive(Clone, Debug, Default)]
pub struct SourceLimit(Arc<Mutex<SourceBuckets>>);

impl RequestFilter for SourceLimit {
    fn allow_request(&self, _request: &RequestSpecific, from: SocketAddrV4) -> bool {
        let mut buckets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buckets.allow(*from.ip(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How long a source that spent its burst waits for its next answer.
    fn refill_time() -> Duration {
        Duration::from_secs_f64(1.0 / RATE)
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut b = SourceBuckets::default();
        let t0 = Instant::now();
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let answered = (0..100).filter(|_| b.allow(ip, t0)).count();
        assert_eq!(answered, BURST as usize);
        // Another source is not held back by the first one's flood.
        assert!(b.allow(Ipv4Addr::new(192, 0, 2, 2), t0));
        assert!(!b.allow(ip, t0 + refill_time() / 2));
        assert!(b.allow(ip, t0 + refill_time()));
        // A second later: about RATE more.
        let later = t0 + refill_time() + Duration::from_secs(1);
        let answered = (0..100).filter(|_| b.allow(ip, later)).count();
        assert!((RATE as usize - 1..=RATE as usize + 1).contains(&answered), "{answered}");
    }

    #[test]
    fn the_table_of_sources_is_bounded() {
        let mut b = SourceBuckets::default();
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 * 3) {
            let now = t0 + Duration::from_millis(u64::from(i));
            assert!(b.allow(Ipv4Addr::from(0x0a00_0000 + i), now));
            assert!(b.buckets.len() <= MAX_SOURCES);
        }
    }
}
