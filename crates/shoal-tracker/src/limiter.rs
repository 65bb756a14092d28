//! Rate limits: a token bucket per client IP (shared by all protocols) and the same bucket
//! inline in each WebSocket connection for its messages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket in 12 bytes: `rate` tokens a second up to `burst`, refilled lazily.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f32,
    /// Milliseconds since the limiter's epoch, when `tokens` was last refilled.
    at_ms: u64,
}

impl Bucket {
    pub fn full(burst: u32, now_ms: u64) -> Self {
        Bucket { tokens: burst as f32, at_ms: now_ms }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: u32, burst: u32, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f32 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate as f32).min(burst as f32);
        self.at_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

const SHARDS: usize = 16;
/// Entries per shard before idle (full) buckets are forgotten.
const SHARD_SOFT_CAP: usize = 16_384;

/// Per-IP limiter; a rate of 0 lets everything through without touching a lock.
pub struct IpLimiter {
    rate: u32,
    burst: u32,
    epoch: Instant,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl IpLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        IpLimiter {
            rate,
            burst: burst.max(1),
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let shard = match ip {
            IpAddr::V4(v4) => usize::from(v4.octets()[3]),
            IpAddr::V6(v6) => usize::from(v6.octets()[15]),
        } % SHARDS;
        let mut map = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SHARD_SOFT_CAP {
            // Forget clients whose bucket has refilled: they are indistinguishable from new.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| {
                let mut probe = *b;
                probe.take(rate, burst, now);
                probe.tokens + 1.0 < burst as f32
            });
        }
        let (rate, burst) = (self.rate, self.burst);
        map.entry(ip).or_insert_with(|| Bucket::full(burst, now)).take(rate, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = Bucket::full(3, 0);
        assert!((0..3).all(|_| b.take(2, 3, 0)));
        assert!(!b.take(2, 3, 0));
        assert!(b.take(2, 3, 500)); // half a second: one token at 2/s
        assert!(!b.take(2, 3, 500));
        assert!((0..3).all(|_| b.take(2, 3, 100_000)));
        assert!(!b.take(2, 3, 100_000));
    }

    #[test]
    fn limiter_is_per_ip_and_zero_disables() {
        let l = IpLimiter::new(1, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b));
        let off = IpLimiter::new(0, 0);
        assert!((0..1000).all(|_| off.allow(a)));
    }
}
