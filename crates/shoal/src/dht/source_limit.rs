//! A budget of DHT queries per source address: what keeps our node from being a tool against
//! others or itself. A real node asks another a few queries a second at most; one that asks
//! far more is scanning, flooding, or spoofing someone else's address to make us answer them.
//! Each IPv4 address gets a token bucket (`shoal_proto::rate::SourceBuckets`, the tracker's
//! rule too); a query with no token left gets no answer. Above them, one bucket for all
//! sources: a flood from many (spoofed) addresses gets no more answers a second than a busy
//! node gives, so our node is not an amplifier for it and spends no more than that on it
//! (libtorrent caps its DHT's upload at 8,000 bytes a second for the same reason).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mainline::{RequestFilter, RequestSpecific};
use shoal_proto::rate::{SourceBuckets, TokenBucket};

/// Queries a source may send at once.
pub const BURST: u32 = 40;
/// Queries a second a source may keep sending.
pub const RATE: u32 = 10;
/// Sources tracked at once (past that, those whose bucket refilled are forgotten).
pub const MAX_SOURCES: usize = 4096;
/// Answers a second to all sources together (some 50 KB/s of answers at most), and at once.
pub const GLOBAL_RATE: u32 = 200;
pub const GLOBAL_BURST: u32 = 400;

/// The buckets as the DHT node's request filter.
#[derive(Clone, Debug)]
pub struct SourceLimit {
    epoch: Instant,
    buckets: Arc<Mutex<Buckets>>,
}

#[derive(Debug)]
struct Buckets {
    per_source: SourceBuckets<Ipv4Addr>,
    all: TokenBucket,
}

impl Default for SourceLimit {
    fn default() -> Self {
        SourceLimit {
            epoch: Instant::now(),
            buckets: Arc::new(Mutex::new(Buckets {
                per_source: SourceBuckets::new(RATE, BURST, MAX_SOURCES),
                all: TokenBucket::full(GLOBAL_BURST, 0),
            })),
        }
    }
}

impl RequestFilter for SourceLimit {
    fn allow_request(&self, _request: &RequestSpecific, from: SocketAddrV4) -> bool {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // A source over its own budget does not spend the shared one.
        buckets.per_source.allow(*from.ip(), now_ms)
            && buckets.all.take(GLOBAL_RATE, GLOBAL_BURST, now_ms)
    }
}
