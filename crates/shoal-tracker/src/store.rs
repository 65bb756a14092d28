//! The swarm store: for each torrent, who is in it. Classic peers (HTTP and UDP, one shared
//! set, keyed by address) and WebSocket peers (keyed by peer id, reachable only through their
//! socket) are kept apart: a browser cannot dial a TCP address, and a classic client cannot
//! answer a WebRTC offer.
//!
//! The map is split in shards by the first byte of the info hash (uniformly random), each
//! behind its own mutex, so that announces for different torrents rarely wait on each other.
//! Every operation holds one shard lock for a few microseconds and never awaits.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use rand::Rng;
use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::{AnnounceEvent, ScrapeStats};

use crate::ws::Outbox;

const SHARDS: usize = 64;

/// Seconds since the server started: peers remember when they last announced in 4 bytes.
pub type Secs = u32;

/// One peer's entry; `V` is what the kind of peer needs to be reached.
#[derive(Debug)]
pub(crate) struct Entry<V> {
    pub value: V,
    pub seeder: bool,
    pub last_seen: Secs,
}

/// The peers of one torrent, of one kind, with their counts kept up to date.
#[derive(Debug)]
pub(crate) struct Swarm<K, V> {
    /// Insertion-ordered with O(1) swap-removal, so that a random index is a random peer.
    peers: IndexMap<K, Entry<V>>,
    seeders: u32,
    /// `completed` events seen (the scrape's `downloaded`).
    completed: u32,
}

impl<K: Hash + Eq + Clone, V> Swarm<K, V> {
    fn new() -> Self {
        Swarm { peers: IndexMap::new(), seeders: 0, completed: 0 }
    }

    pub fn stats(&self) -> ScrapeStats {
        let total = self.peers.len() as u32;
        ScrapeStats {
            seeders: self.seeders,
            completed: self.completed,
            leechers: total - self.seeders,
        }
    }

    /// Adds or refreshes a peer. `Err` when the swarm is full and the peer is new.
    fn upsert(
        &mut self,
        key: K,
        value: V,
        seeder: bool,
        event: AnnounceEvent,
        now: Secs,
        max_peers: usize,
    ) -> Result<(), Full> {
        if event == AnnounceEvent::Completed {
            self.completed = self.completed.saturating_add(1);
        }
        match self.peers.get_mut(&key) {
            Some(entry) => {
                if entry.seeder != seeder {
                    if seeder {
                        self.seeders += 1;
                    } else {
                        self.seeders -= 1;
                    }
                }
                *entry = Entry { value, seeder, last_seen: now };
            }
            None => {
                if self.peers.len() >= max_peers {
                    return Err(Full);
                }
                self.seeders += u32::from(seeder);
                self.peers.insert(key, Entry { value, seeder, last_seen: now });
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: &K) -> Option<Entry<V>> {
        let entry = self.peers.swap_remove(key)?;
        self.seeders -= u32::from(entry.seeder);
        Some(entry)
    }

    /// Up to `n` peers other than `me` that `keep` accepts, starting at a random index and
    /// wrapping around. Swap-removal keeps shuffling the order, so windows are well mixed.
    fn sample<'a>(
        &'a self,
        n: usize,
        me: &K,
        mut keep: impl FnMut(&K, &Entry<V>) -> bool,
        out: &mut Vec<(&'a K, &'a Entry<V>)>,
    ) {
        let len = self.peers.len();
        if n == 0 || len == 0 {
            return;
        }
        let start = if len > n + 1 { rand::rng().random_range(0..len) } else { 0 };
        for i in 0..len {
            if out.len() == n {
                break;
            }
            if let Some((k, e)) = self.peers.get_index((start + i) % len) {
                if k != me && keep(k, e) {
                    out.push((k, e));
                }
            }
        }
    }

    /// Drops peers not seen since `deadline`; returns how many.
    fn expire(&mut self, deadline: Secs) -> usize {
        let before = self.peers.len();
        let mut seeders_gone = 0;
        self.peers.retain(|_, e| {
            let keep = e.last_seen >= deadline;
            if !keep && e.seeder {
                seeders_gone += 1;
            }
            keep
        });
        self.seeders -= seeders_gone;
        before - self.peers.len()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &Entry<V>)> {
        self.peers.iter()
    }
}

/// The swarm has reached `max_peers_per_swarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why an announce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("swarm is full")]
    SwarmFull,
    #[error("tracker is tracking too many torrents")]
    TooManySwarms,
}

/// A classic peer: its address is its identity (nobody can remove or move a peer at another
/// IP), the peer id is kept for dictionary-model answers.
pub(crate) type ClassicSwarm = Swarm<SocketAddr, PeerId>;
/// A WebSocket peer: reachable through its connection's outbox.
pub(crate) type WsSwarm = Swarm<PeerId, Arc<Outbox>>;

struct Shards<S> {
    shards: Vec<Mutex<HashMap<InfoHash, S>>>,
}

impl<S> Shards<S> {
    fn new() -> Self {
        Shards { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn lock(&self, hash: &InfoHash) -> MutexGuard<'_, HashMap<InfoHash, S>> {
        let i = usize::from(hash.0[0]) % SHARDS;
        // A poisoned shard only means another thread panicked mid-update of plain counters;
        // the data stays usable.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn each(&self, mut f: impl FnMut(&mut HashMap<InfoHash, S>)) {
        for shard in &self.shards {
            f(&mut shard.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

/// Totals for the stats endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    pub torrents: u64,
    pub seeders: u64,
    pub leechers: u64,
}

/// The answer to an announce: counts and the chosen peers.
#[derive(Debug, Default)]
pub struct ClassicAnswer {
    pub stats: ScrapeStats,
    pub peers: Vec<(SocketAddr, PeerId)>,
}

/// All swarms of the tracker.
pub struct Store {
    classic: Shards<ClassicSwarm>,
    ws: Shards<WsSwarm>,
    max_peers_per_swarm: usize,
    max_swarms: usize,
    classic_swarms: std::sync::atomic::AtomicUsize,
    ws_swarms: std::sync::atomic::AtomicUsize,
}

impl Store {
    pub fn new(max_peers_per_swarm: usize, max_swarms: usize) -> Self {
        Store {
            classic: Shards::new(),
            ws: Shards::new(),
            max_peers_per_swarm,
            max_swarms,
            classic_swarms: 0.into(),
            ws_swarms: 0.into(),
        }
    }

    /// A classic (HTTP or UDP) announce. `family_of` keeps only peers the client can use.
    #[allow(clippy::too_many_arguments)]
    pub fn announce_classic(
        &self,
        info_hash: InfoHash,
        addr: SocketAddr,
        peer_id: PeerId,
        seeder: bool,
        event: AnnounceEvent,
        numwant: usize,
        now: Secs,
        keep: impl Fn(&SocketAddr) -> bool,
    ) -> Result<ClassicAnswer, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut shard = self.classic.lock(&info_hash);
        if event == AnnounceEvent::Stopped {
            let stats = match shard.get_mut(&info_hash) {
                Some(swarm) => {
                    swarm.remove(&addr);
                    let stats = swarm.stats();
                    if swarm.len() == 0 {
                        shard.remove(&info_hash);
                        self.classic_swarms.fetch_sub(1, Relaxed);
                    }
                    stats
                }
                None => ScrapeStats::default(),
            };
            return Ok(ClassicAnswer { stats, peers: Vec::new() });
        }
        let swarm = match shard.entry(info_hash) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if self.classic_swarms.load(Relaxed) >= self.max_swarms {
                    return Err(StoreError::TooManySwarms);
                }
                self.classic_swarms.fetch_add(1, Relaxed);
                e.insert(Swarm::new())
            }
        };
        swarm
            .upsert(addr, peer_id, seeder, event, now, self.max_peers_per_swarm)
            .map_err(|Full| StoreError::SwarmFull)?;
        let mut chosen = Vec::with_capacity(numwant.min(swarm.len()));
        // Seeders need only leechers.
        swarm.sample(numwant, &addr, |k, e| !(seeder && e.seeder) && keep(k), &mut chosen);
        let peers = chosen.into_iter().map(|(a, e)| (*a, e.value)).collect();
        Ok(ClassicAnswer { stats: swarm.stats(), peers })
    }

    /// Counts for one torrent over classic peers.
    pub fn scrape_classic(&self, info_hash: &InfoHash) -> ScrapeStats {
        self.classic.lock(info_hash).get(info_hash).map(Swarm::stats).unwrap_or_default()
    }

    /// Counts for one torrent over WebSocket peers.
    pub fn scrape_ws(&self, info_hash: &InfoHash) -> ScrapeStats {
        self.ws.lock(info_hash).get(info_hash).map(Swarm::stats).unwrap_or_default()
    }

    /// A WebSocket announce: registers the peer on `outbox` and returns the counts plus up to
    /// `n_offers` other peers to send offers to.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn announce_ws(
        &self,
        info_hash: InfoHash,
        peer_id: PeerId,
        outbox: &Arc<Outbox>,
        seeder: bool,
        event: AnnounceEvent,
        n_offers: usize,
        now: Secs,
    ) -> Result<(ScrapeStats, Vec<Arc<Outbox>>), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut shard = self.ws.lock(&info_hash);
        if event == AnnounceEvent::Stopped {
            let stats = match shard.get_mut(&info_hash) {
                Some(swarm) => {
                    // Only this connection's own entry: another socket may have taken the id.
                    if swarm.peers.get(&peer_id).is_some_and(|e| Arc::ptr_eq(&e.value, outbox)) {
                        swarm.remove(&peer_id);
                    }
                    let stats = swarm.stats();
                    if swarm.len() == 0 {
                        shard.remove(&info_hash);
                        self.ws_swarms.fetch_sub(1, Relaxed);
                    }
                    stats
                }
                None => ScrapeStats::default(),
            };
            return Ok((stats, Vec::new()));
        }
        let swarm = match shard.entry(info_hash) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if self.ws_swarms.load(Relaxed) >= self.max_swarms {
                    return Err(StoreError::TooManySwarms);
                }
                self.ws_swarms.fetch_add(1, Relaxed);
                e.insert(Swarm::new())
            }
        };
        swarm
            .upsert(peer_id, outbox.clone(), seeder, event, now, self.max_peers_per_swarm)
            .map_err(|Full| StoreError::SwarmFull)?;
        let mut chosen = Vec::with_capacity(n_offers.min(swarm.len()));
        swarm.sample(n_offers, &peer_id, |_, e| !(seeder && e.seeder), &mut chosen);
        let targets = chosen.into_iter().map(|(_, e)| e.value.clone()).collect();
        Ok((swarm.stats(), targets))
    }

    /// The connection of WebSocket peer `peer_id` in a torrent, to relay an answer to it.
    pub(crate) fn ws_peer(&self, info_hash: &InfoHash, peer_id: &PeerId) -> Option<Arc<Outbox>> {
        self.ws.lock(info_hash).get(info_hash)?.peers.get(peer_id).map(|e| e.value.clone())
    }

    /// A closed socket: its peer leaves every torrent it announced on that socket.
    pub(crate) fn remove_ws(&self, info_hash: &InfoHash, peer_id: &PeerId, outbox: &Arc<Outbox>) {
        // `Stopped` never fails and never creates a swarm.
        let _ = self.announce_ws(*info_hash, *peer_id, outbox, false, AnnounceEvent::Stopped, 0, 0);
    }

    /// Drops peers that have not announced since `deadline`; returns how many went.
    pub fn expire(&self, deadline: Secs) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let mut gone = 0;
        self.classic.each(|map| {
            map.retain(|_, s| {
                gone += s.expire(deadline);
                let keep = s.len() > 0;
                if !keep {
                    self.classic_swarms.fetch_sub(1, Relaxed);
                }
                keep
            })
        });
        self.ws.each(|map| {
            map.retain(|_, s| {
                gone += s.expire(deadline);
                let keep = s.len() > 0;
                if !keep {
                    self.ws_swarms.fetch_sub(1, Relaxed);
                }
                keep
            })
        });
        gone
    }

    /// Totals over classic and over WebSocket swarms.
    pub fn counts(&self) -> (StoreCounts, StoreCounts) {
        fn total<S>(shards: &Shards<S>, stats: impl Fn(&S) -> ScrapeStats) -> StoreCounts {
            let mut c = StoreCounts::default();
            shards.each(|map| {
                for s in map.values() {
                    let st = stats(s);
                    c.torrents += 1;
                    c.seeders += u64::from(st.seeders);
                    c.leechers += u64::from(st.leechers);
                }
            });
            c
        }
        (total(&self.classic, ClassicSwarm::stats), total(&self.ws, WsSwarm::stats))
    }

    /// Visits every classic swarm (for persistence).
    pub(crate) fn each_classic(&self, mut f: impl FnMut(&InfoHash, &ClassicSwarm)) {
        self.classic.each(|map| {
            for (h, s) in map.iter() {
                f(h, s);
            }
        });
    }

    /// Puts back a saved classic peer.
    pub(crate) fn restore_classic(
        &self,
        info_hash: InfoHash,
        addr: SocketAddr,
        peer_id: PeerId,
        seeder: bool,
        completed: u32,
        now: Secs,
    ) {
        let _ = self.announce_classic(
            info_hash,
            addr,
            peer_id,
            seeder,
            AnnounceEvent::None,
            0,
            now,
            |_| false,
        );
        if let Some(s) = self.classic.lock(&info_hash).get_mut(&info_hash) {
            s.completed = s.completed.max(completed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000 + i))
    }

    fn announce(
        store: &Store,
        i: u16,
        seeder: bool,
        event: AnnounceEvent,
        want: usize,
    ) -> ClassicAnswer {
        store
            .announce_classic(
                InfoHash([1; 20]),
                addr(i),
                PeerId([i as u8; 20]),
                seeder,
                event,
                want,
                5,
                |_| true,
            )
            .unwrap()
    }

    #[test]
    fn counts_follow_events() {
        let store = Store::new(100, 10);
        announce(&store, 1, false, AnnounceEvent::Started, 50);
        announce(&store, 2, true, AnnounceEvent::Started, 50);
        let a = announce(&store, 3, false, AnnounceEvent::Started, 50);
        assert_eq!(a.stats, ScrapeStats { seeders: 1, completed: 0, leechers: 2 });
        assert_eq!(a.peers.len(), 2);
        assert!(a.peers.iter().all(|(p, _)| *p != addr(3)));
        // Leecher 1 completes; re-announcing does not count twice.
        announce(&store, 1, true, AnnounceEvent::Completed, 0);
        let a = announce(&store, 1, true, AnnounceEvent::None, 0);
        assert_eq!(a.stats, ScrapeStats { seeders: 2, completed: 1, leechers: 1 });
        let a = announce(&store, 2, true, AnnounceEvent::Stopped, 0);
        assert_eq!(a.stats, ScrapeStats { seeders: 1, completed: 1, leechers: 1 });
        assert_eq!(store.scrape_classic(&InfoHash([1; 20])), a.stats);
        announce(&store, 1, true, AnnounceEvent::Stopped, 0);
        announce(&store, 3, true, AnnounceEvent::Stopped, 0);
        // The empty swarm is gone.
        assert_eq!(store.counts().0, StoreCounts::default());
    }

    #[test]
    fn seeders_get_only_leechers_and_numwant_is_honoured() {
        let store = Store::new(1000, 10);
        for i in 0..100 {
            announce(&store, i, i % 2 == 0, AnnounceEvent::Started, 0);
        }
        let a = announce(&store, 200, true, AnnounceEvent::Started, 30);
        assert_eq!(a.peers.len(), 30);
        assert!(a.peers.iter().all(|(p, _)| (p.port() - 1000) % 2 == 1));
        let a = announce(&store, 201, false, AnnounceEvent::Started, 500);
        assert_eq!(a.peers.len(), 101);
    }

    #[test]
    fn sampling_is_spread_over_the_swarm() {
        let store = Store::new(1000, 10);
        for i in 0..200 {
            announce(&store, i, false, AnnounceEvent::Started, 0);
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            for (p, _) in announce(&store, 999, false, AnnounceEvent::None, 10).peers {
                seen.insert(p);
            }
        }
        // 100 random windows of 10 out of 200 cover far more than one window.
        assert!(seen.len() > 100, "{}", seen.len());
    }

    #[test]
    fn bounds_peers_and_swarms() {
        let store = Store::new(3, 2);
        for i in 0..3 {
            announce(&store, i, false, AnnounceEvent::Started, 0);
        }
        let full = store.announce_classic(
            InfoHash([1; 20]),
            addr(9),
            PeerId([9; 20]),
            false,
            AnnounceEvent::Started,
            5,
            5,
            |_| true,
        );
        assert_eq!(full.unwrap_err(), StoreError::SwarmFull);
        // A known peer may still re-announce.
        announce(&store, 1, false, AnnounceEvent::None, 0);
        store
            .announce_classic(
                InfoHash([2; 20]),
                addr(1),
                PeerId([1; 20]),
                false,
                AnnounceEvent::None,
                0,
                5,
                |_| true,
            )
            .unwrap();
        let third = store.announce_classic(
            InfoHash([3; 20]),
            addr(1),
            PeerId([1; 20]),
            false,
            AnnounceEvent::None,
            0,
            5,
            |_| true,
        );
        assert_eq!(third.unwrap_err(), StoreError::TooManySwarms);
    }

    #[test]
    fn expiry_drops_quiet_peers_and_empty_swarms() {
        let store = Store::new(100, 10);
        store
            .announce_classic(
                InfoHash([1; 20]),
                addr(1),
                PeerId([1; 20]),
                true,
                AnnounceEvent::None,
                0,
                10,
                |_| true,
            )
            .unwrap();
        store
            .announce_classic(
                InfoHash([1; 20]),
                addr(2),
                PeerId([2; 20]),
                false,
                AnnounceEvent::None,
                0,
                50,
                |_| true,
            )
            .unwrap();
        store
            .announce_classic(
                InfoHash([2; 20]),
                addr(3),
                PeerId([3; 20]),
                false,
                AnnounceEvent::None,
                0,
                10,
                |_| true,
            )
            .unwrap();
        assert_eq!(store.expire(20), 2);
        assert_eq!(
            store.scrape_classic(&InfoHash([1; 20])),
            ScrapeStats { seeders: 0, completed: 0, leechers: 1 }
        );
        assert_eq!(store.counts().0, StoreCounts { torrents: 1, seeders: 0, leechers: 1 });
    }

    #[test]
    fn ws_peers_are_separate_and_only_their_socket_removes_them() {
        let store = Store::new(100, 10);
        let (a, b, c) = (Outbox::new(4), Outbox::new(4), Outbox::new(4));
        let h = InfoHash([7; 20]);
        store.announce_ws(h, PeerId([1; 20]), &a, false, AnnounceEvent::Started, 5, 1).unwrap();
        let (stats, targets) =
            store.announce_ws(h, PeerId([2; 20]), &b, false, AnnounceEvent::Started, 5, 1).unwrap();
        assert_eq!(stats.leechers, 2);
        assert_eq!(targets.len(), 1);
        assert!(Arc::ptr_eq(&targets[0], &a));
        assert_eq!(store.scrape_classic(&h), ScrapeStats::default());
        // Socket c takes over peer id 1 (a reconnect); the old socket closing must not evict it.
        store.announce_ws(h, PeerId([1; 20]), &c, false, AnnounceEvent::None, 0, 1).unwrap();
        store.remove_ws(&h, &PeerId([1; 20]), &a);
        assert!(Arc::ptr_eq(&store.ws_peer(&h, &PeerId([1; 20])).unwrap(), &c));
        store.remove_ws(&h, &PeerId([1; 20]), &c);
        assert!(store.ws_peer(&h, &PeerId([1; 20])).is_none());
        assert_eq!(store.scrape_ws(&h).leechers, 1);
    }
}
