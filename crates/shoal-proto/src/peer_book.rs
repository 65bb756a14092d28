//! The addresses a torrent knows about: where to connect next, who failed, who is banned.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::time::Instant;
use crate::types::PeerSource;

/// Strikes (shared blame for pieces that failed their hash) that get an address banned.
pub const STRIKES_TO_BAN: u32 = 3;
/// A failed address is retried after `RETRY_BASE * 2^(failures - 1)` (3 s, 6 s, 12 s...: the
/// first retry is soon, since a peer that was just starting or briefly overloaded is common,
/// and a stream may depend on it), and forgotten after `MAX_FAILURES` attempts.
const RETRY_BASE: Duration = Duration::from_secs(3);
const MAX_FAILURES: u32 = 6;
/// After a clean disconnect an address is not dialled again for this long.
const RECONNECT_DELAY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// Being dialled or connected (outgoing), or known to be connected to us.
    Busy,
}

#[derive(Clone, Debug)]
struct Entry {
    state: State,
    failures: u32,
    retry_at: Instant,
    /// Who named the address first.
    source: PeerSource,
}

pub struct PeerBook {
    entries: BTreeMap<SocketAddr, Entry>,
    strikes: BTreeMap<IpAddr, u32>,
    banned: BTreeSet<IpAddr>,
    max_known: usize,
}

impl PeerBook {
    pub fn new(max_known: usize) -> Self {
        PeerBook {
            entries: BTreeMap::new(),
            strikes: BTreeMap::new(),
            banned: BTreeSet::new(),
            max_known,
        }
    }

    /// Learns an address (from a tracker, the user, the DHT, PEX). Returns false if it was
    /// ignored: already known, banned, unusable, or the book is full.
    pub fn add(&mut self, addr: SocketAddr, now: Instant, source: PeerSource) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        if self.banned.contains(&addr.ip()) || self.entries.contains_key(&addr) {
            return false;
        }
        if self.entries.len() >= self.max_known {
            return false;
        }
        let entry = Entry { state: State::Idle, failures: 0, retry_at: now, source };
        self.entries.insert(addr, entry);
        true
    }

    /// Who named `addr` first, while it is in the book.
    pub fn source(&self, addr: SocketAddr) -> Option<PeerSource> {
        self.entries.get(&addr).map(|e| e.source)
    }

    /// Takes the next address worth dialling and marks it busy.
    pub fn next_to_connect(&mut self, now: Instant) -> Option<SocketAddr> {
        let (addr, entry) =
            self.entries.iter_mut().find(|(_, e)| e.state == State::Idle && e.retry_at <= now)?;
        entry.state = State::Busy;
        Some(*addr)
    }

    /// Marks an address as connected (e.g. a peer that dialled us told us its listen port).
    pub fn mark_busy(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.state = State::Busy;
        }
    }

    /// A dial failed, or the handshake did.
    pub fn on_failed(&mut self, addr: SocketAddr, now: Instant) {
        let Some(e) = self.entries.get_mut(&addr) else { return };
        e.failures += 1;
        if e.failures >= MAX_FAILURES {
            self.entries.remove(&addr);
            return;
        }
        e.state = State::Idle;
        e.retry_at = now + RETRY_BASE * 2u32.pow((e.failures - 1).min(5));
    }

    /// A connection to or from `addr` ended after it worked.
    pub fn on_disconnected(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.state = State::Idle;
            e.failures = 0;
            e.retry_at = now + RECONNECT_DELAY;
        }
    }

    /// Forgets an address for good (it was ourselves, or not a BitTorrent peer for this torrent).
    pub fn forget(&mut self, addr: SocketAddr) {
        self.entries.remove(&addr);
    }

    /// Adds a strike against an IP; returns true when that bans it.
    pub fn strike(&mut self, ip: IpAddr) -> bool {
        let count = self.strikes.entry(ip).or_insert(0);
        *count += 1;
        if *count >= STRIKES_TO_BAN {
            self.ban(ip);
            return true;
        }
        false
    }

    pub fn ban(&mut self, ip: IpAddr) {
        self.banned.insert(ip);
        self.entries.retain(|a, _| a.ip() != ip);
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    pub fn banned_count(&self) -> usize {
        self.banned.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dials_each_address_once_and_backs_off_after_failure() {
        let mut b = PeerBook::new(10);
        let now = Instant::ZERO;
        assert!(b.add(addr("127.0.0.2:6881"), now, PeerSource::Dht));
        // The first source that named an address is the one it keeps.
        assert!(!b.add(addr("127.0.0.2:6881"), now, PeerSource::Tracker));
        assert_eq!(b.source(addr("127.0.0.2:6881")), Some(PeerSource::Dht));
        assert_eq!(b.source(addr("127.0.0.3:6881")), None);
        assert!(!b.add(addr("0.0.0.0:1"), now, PeerSource::Manual));
        assert!(!b.add(addr("127.0.0.2:0"), now, PeerSource::Manual));
        assert_eq!(b.next_to_connect(now), Some(addr("127.0.0.2:6881")));
        assert_eq!(b.next_to_connect(now), None);
        b.on_failed(addr("127.0.0.2:6881"), now);
        assert_eq!(b.next_to_connect(now), None);
        assert_eq!(b.next_to_connect(now + Duration::from_secs(2)), None);
        assert_eq!(b.next_to_connect(now + Duration::from_secs(3)), Some(addr("127.0.0.2:6881")));
        b.on_failed(addr("127.0.0.2:6881"), now);
        assert_eq!(b.next_to_connect(now + Duration::from_secs(5)), None);
        assert_eq!(b.next_to_connect(now + Duration::from_secs(6)), Some(addr("127.0.0.2:6881")));
    }

    #[test]
    fn strikes_lead_to_a_ban_that_removes_the_ip() {
        let mut b = PeerBook::new(10);
        let ip: IpAddr = "127.0.0.3".parse().unwrap();
        b.add(addr("127.0.0.3:1000"), Instant::ZERO, PeerSource::Manual);
        assert!(!b.strike(ip));
        assert!(!b.strike(ip));
        assert!(b.strike(ip));
        assert!(b.is_banned(ip));
        assert!(b.is_empty());
        assert!(!b.add(addr("127.0.0.3:2000"), Instant::ZERO, PeerSource::Manual));
    }

    #[test]
    fn bounded_in_size() {
        let mut b = PeerBook::new(2);
        assert!(b.add(addr("10.0.0.1:1"), Instant::ZERO, PeerSource::Manual));
        assert!(b.add(addr("10.0.0.2:1"), Instant::ZERO, PeerSource::Manual));
        assert!(!b.add(addr("10.0.0.3:1"), Instant::ZERO, PeerSource::Manual));
    }
}
