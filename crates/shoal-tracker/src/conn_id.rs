//! BEP 15 connection ids that cost the server no memory: an id is a keyed hash of the client's
//! address and the current minute. The key is random per process, and each minute's hash is
//! keyed anew (the minute is hashed in), so an id cannot be forged or replayed after it
//! expires. An id is accepted during the minute it was issued and the next one (60-120 s).

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

/// SipHash-1-3 with a random 128-bit key (the standard library's `RandomState`).
pub struct ConnectionIds {
    key: std::collections::hash_map::RandomState,
}

impl Default for ConnectionIds {
    fn default() -> Self {
        ConnectionIds { key: std::collections::hash_map::RandomState::new() }
    }
}

impl ConnectionIds {
    fn hash(&self, addr: &SocketAddr, minute: u64) -> u64 {
        let mut h = self.key.build_hasher();
        h.write_u64(minute);
        match addr {
            SocketAddr::V4(a) => h.write(&a.ip().octets()),
            SocketAddr::V6(a) => h.write(&a.ip().octets()),
        }
        h.write_u16(addr.port());
        h.finish()
    }

    /// The id for a client connecting at `now_secs` (any monotonic seconds).
    pub fn issue(&self, addr: &SocketAddr, now_secs: u64) -> u64 {
        self.hash(addr, now_secs / 60)
    }

    pub fn check(&self, id: u64, addr: &SocketAddr, now_secs: u64) -> bool {
        let minute = now_secs / 60;
        id == self.hash(addr, minute) || (minute > 0 && id == self.hash(addr, minute - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bound_to_address_and_time() {
        let ids = ConnectionIds::default();
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:1001".parse().unwrap();
        let id = ids.issue(&a, 1000);
        assert!(ids.check(id, &a, 1000));
        assert!(ids.check(id, &a, 1079)); // next minute bucket
        assert!(!ids.check(id, &a, 1200)); // expired
        assert!(!ids.check(id, &b, 1000));
        assert!(!ids.check(id ^ 1, &a, 1000));
        // Another process (another key) does not accept our ids.
        assert!(!ConnectionIds::default().check(id, &a, 1000));
    }
}
