//! Rate limits: a token bucket per client IP (shared by all protocols; the buckets are
//! `shoal_proto::rate`'s) and the same bucket inline in each WebSocket connection for its
//! messages.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use shoal_proto::rate::SourceBuckets;
pub use shoal_proto::rate::TokenBucket as Bucket;

const SHARDS: usize = 16;
/// Entries per shard before idle (full) buckets are forgotten.
const SHARD_SOFT_CAP: usize = 16_384;

/// Per-IP limiter; a rate of 0 lets everything through without touching a lock.
pub struct IpLimiter {
    rate: u32,
    epoch: Instant,
    shards: Vec<Mutex<SourceBuckets<IpAddr>>>,
}

impl IpLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        IpLimiter {
            rate,
            epoch: Instant::now(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(SourceBuckets::new(rate, burst, SHARD_SOFT_CAP)))
                .collect(),
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
        let mut buckets = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        buckets.allow(ip, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
