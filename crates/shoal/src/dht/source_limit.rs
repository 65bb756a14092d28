//! A budget of DHT queries per source address: what keeps our node from being a tool against
//! others or itself. A real node asks another a few queries a second at most; one that asks
//! far more is scanning, flooding, or spoofing someone else's address to make us answer them.
//! Each IPv4 address gets a token bucket (`shoal_proto::rate::SourceBuckets`, the tracker's
//! rule too); a query with no token left gets no answer.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mainline::{RequestFilter, RequestSpecific};
use shoal_proto::rate::SourceBuckets;

/// Queries a source may send at once.
pub const BURST: u32 = 40;
/// Queries a second a source may keep sending.
pub const RATE: u32 = 10;
/// Sources tracked at once (past that, those whose bucket refilled are forgotten).
pub const MAX_SOURCES: usize = 4096;

/// The buckets as the DHT node's request filter.
#[derive(Clone, Debug)]
pub struct SourceLimit {
    epoch: Instant,
    buckets: Arc<Mutex<SourceBuckets<Ipv4Addr>>>,
}

impl Default for SourceLimit {
    fn default() -> Self {
        SourceLimit {
            epoch: Instant::now(),
            buckets: Arc::new(Mutex::new(SourceBuckets::new(RATE, BURST, MAX_SOURCES))),
        }
    }
}

impl RequestFilter for SourceLimit {
    fn allow_request(&self, _request: &RequestSpecific, from: SocketAddrV4) -> bool {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.allow(*from.ip(), now_ms)
    }
}
