//! A bounded set of open file handles, least recently used out first.
//!
//! A torrent may have 100,000 files; the process may have 1,024 descriptors. Handles are
//! shared as `Arc`s so I/O runs outside the cache's lock; a handle evicted while a thread
//! still uses it closes when that thread lets go, so the bound can be exceeded by at most the
//! number of threads doing I/O at that moment.
//!
//! The cache also remembers which files were written since the last flush, including files
//! whose handle has been closed since, so a flush can make all of them durable.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

struct Entry<V> {
    handle: Arc<V>,
    writable: bool,
    dirty: bool,
    last_used: u64,
}

pub struct HandleCache<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, Entry<V>>,
    dirty_closed: HashSet<K>,
}

/// What a flush has to sync: written handles still open, and written files no longer open.
pub struct DirtySet<K, V> {
    pub open: Vec<(K, Arc<V>)>,
    pub closed: Vec<K>,
}

impl<K: Copy + Eq + Hash, V> HandleCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        HandleCache {
            capacity,
            clock: 0,
            entries: HashMap::with_capacity(capacity),
            dirty_closed: HashSet::new(),
        }
    }

    /// The cached handle for `key`, if there is one good enough (`writable` asks for one
    /// opened for writing).
    pub fn get(&mut self, key: K, writable: bool) -> Option<Arc<V>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&key)?;
        if writable && !entry.writable {
            return None;
        }
        entry.last_used = self.clock;
        Some(Arc::clone(&entry.handle))
    }

    /// Caches `handle` for `key`, replacing any older handle for it. Returns the handles
    /// that left the cache so the caller can drop (close) them after releasing its lock.
    pub fn insert(&mut self, key: K, handle: Arc<V>, writable: bool) -> Vec<Arc<V>> {
        self.clock += 1;
        let mut closed = Vec::new();
        let mut dirty = false;
        if let Some(old) = self.entries.remove(&key) {
            dirty = old.dirty;
            closed.push(old.handle);
        }
        while self.entries.len() >= self.capacity {
            let Some(oldest) =
                self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                if evicted.dirty {
                    self.dirty_closed.insert(oldest);
                }
                closed.push(evicted.handle);
            }
        }
        self.entries.insert(key, Entry { handle, writable, dirty, last_used: self.clock });
        closed
    }

    /// Records that `key` was written. Called after the write, under the same lock a flush
    /// takes, so a write is either seen by the next flush or was already synced by this one.
    pub fn mark_written(&mut self, key: K) {
        match self.entries.get_mut(&key) {
            Some(entry) => entry.dirty = true,
            None => {
                self.dirty_closed.insert(key);
            }
        }
    }

    /// Hands over everything written since the last call and forgets it; a caller that fails
    /// to sync something gives it back with [`HandleCache::mark_written`].
    pub fn take_dirty(&mut self) -> DirtySet<K, V> {
        let open = self
            .entries
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(k, e)| {
                e.dirty = false;
                (*k, Arc::clone(&e.handle))
            })
            .collect();
        let closed = self.dirty_closed.drain().collect();
        DirtySet { open, closed }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_handle_is_closed_first() {
        let mut cache: HandleCache<u32, u32> = HandleCache::new(2);
        assert!(cache.insert(1, Arc::new(10), false).is_empty());
        assert!(cache.insert(2, Arc::new(20), false).is_empty());
        assert!(cache.get(1, false).is_some()); // 2 is now the oldest
        let closed = cache.insert(3, Arc::new(30), false);
        assert_eq!(closed.iter().map(|h| **h).collect::<Vec<_>>(), vec![20]);
        assert!(cache.get(2, false).is_none());
        assert!(cache.get(1, false).is_some());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn read_only_handle_does_not_serve_a_write() {
        let mut cache: HandleCache<u32, u32> = HandleCache::new(4);
        cache.insert(1, Arc::new(10), false);
        assert!(cache.get(1, true).is_none());
        let closed = cache.insert(1, Arc::new(11), true);
        assert_eq!(closed.len(), 1);
        assert_eq!(cache.get(1, true).map(|h| *h), Some(11));
    }

    #[test]
    fn written_files_are_remembered_after_their_handle_closes() {
        let mut cache: HandleCache<u32, u32> = HandleCache::new(1);
        cache.insert(1, Arc::new(10), true);
        cache.mark_written(1);
        cache.insert(2, Arc::new(20), true); // evicts 1
        cache.mark_written(2);
        cache.mark_written(3); // written through a handle that was never cached
        let dirty = cache.take_dirty();
        assert_eq!(dirty.open.len(), 1);
        assert_eq!(dirty.open[0].0, 2);
        let mut closed = dirty.closed;
        closed.sort_unstable();
        assert_eq!(closed, vec![1, 3]);
        let again = cache.take_dirty();
        assert!(again.open.is_empty() && again.closed.is_empty());
    }

    #[test]
    fn replacing_a_handle_keeps_it_dirty() {
        let mut cache: HandleCache<u32, u32> = HandleCache::new(4);
        cache.insert(1, Arc::new(10), false);
        cache.mark_written(1);
        cache.insert(1, Arc::new(11), true);
        assert_eq!(cache.take_dirty().open.len(), 1);
    }
}
