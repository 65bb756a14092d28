use crate::chunk::chunk_payload_data::ChunkPayloadData;

use alloc::collections::VecDeque;

/// The sender's chunks in flight, by TSN.
///
/// This side assigns TSNs one after the other and the flight only ever loses its oldest
/// chunk (cumulative acknowledgement), so the flight is a run of consecutive TSNs: a deque
/// indexed by `tsn - first` finds a chunk without hashing. Every SACK looks up each TSN its
/// gap blocks name, i.e. most of the flight while a loss is being repaired, and a hash map
/// with SipHash made that most of a WebRTC seeder's CPU.
#[derive(Default, Debug)]
pub(crate) struct InflightQueue {
    /// `slots[i]` holds TSN `first + i`. `None` only where a caller skipped TSNs, which
    /// the association never does (tests may).
    slots: VecDeque<Option<ChunkPayloadData>>,
    first: u32,
    len: usize,
    n_bytes: usize,
    /// How many chunks carry a deadline (partially reliable, timed): while none does,
    /// nothing can expire and the expiry walk is skipped.
    n_timed: usize,
    /// Test-only cost meter: chunks looked up or visited, so that a test can check that a
    /// sender's work per chunk does not grow with the flight.
    #[cfg(test)]
    pub(crate) work: core::sync::atomic::AtomicU64,
}

impl InflightQueue {
    fn slot(&self, tsn: u32) -> Option<usize> {
        let i = tsn.wrapping_sub(self.first) as usize;
        (i < self.slots.len()).then_some(i)
    }

    #[cfg(test)]
    fn count_work(&self, n: usize) {
        self.work
            .fetch_add(n as u64, core::sync::atomic::Ordering::Relaxed);
    }

    #[cfg(not(test))]
    fn count_work(&self, _n: usize) {}

    /// Adds a chunk whose TSN is new to the flight (normally the next one).
    pub(crate) fn push_no_check(&mut self, p: ChunkPayloadData) {
        let tsn = p.tsn;
        if self.slots.is_empty() {
            self.first = tsn;
        } else if crate::util::sna32lt(tsn, self.first) {
            // Not done by the association (TSNs only grow); kept correct for tests.
            for _ in 0..self.first.wrapping_sub(tsn) {
                self.slots.push_front(None);
            }
            self.first = tsn;
        }
        let i = tsn.wrapping_sub(self.first) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        self.n_bytes += p.user_data.len();
        if p.deadline.is_some() {
            self.n_timed += 1;
        }
        if let Some(old) = self.slots[i].replace(p) {
            self.forget(&old);
        } else {
            self.len += 1;
        }
    }

    fn forget(&mut self, c: &ChunkPayloadData) {
        self.n_bytes = self.n_bytes.saturating_sub(c.user_data.len());
        if c.deadline.is_some() {
            self.n_timed -= 1;
        }
    }

    /// Pops only if the oldest chunk's TSN matches the given TSN.
    pub(crate) fn pop(&mut self, tsn: u32) -> Option<ChunkPayloadData> {
        // Skipped TSNs (tests only) are not chunks: drop them from the front first.
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first = self.first.wrapping_add(1);
        }
        if tsn != self.first {
            return None;
        }
        let c = self.slots.pop_front()??;
        self.first = self.first.wrapping_add(1);
        self.len -= 1;
        self.forget(&c);
        Some(c)
    }

    pub(crate) fn get(&self, tsn: u32) -> Option<&ChunkPayloadData> {
        self.count_work(1);
        self.slots.get(self.slot(tsn)?)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, tsn: u32) -> Option<&mut ChunkPayloadData> {
        self.count_work(1);
        let i = self.slot(tsn)?;
        self.slots.get_mut(i)?.as_mut()
    }

    /// The chunks in TSN order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ChunkPayloadData> {
        self.slots.iter().inspect(|_| self.count_work(1)).flatten()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut ChunkPayloadData> {
        #[cfg(test)]
        let work = &self.work;
        self.slots
            .iter_mut()
            .inspect(move |_| {
                #[cfg(test)]
                work.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            })
            .flatten()
    }

    pub(crate) fn mark_as_acked(&mut self, tsn: u32) -> usize {
        let Some(c) = self.get_mut(tsn) else {
            return 0;
        };
        c.acked = true;
        c.retransmit = false;
        let n = c.user_data.len();
        c.user_data.clear();
        self.n_bytes -= n;
        n
    }

    /// Abandon siblings by identity, including nonconsecutive TSNs.
    pub(crate) fn abandon_message(&mut self, message_id: u64) -> usize {
        let mut released = 0;
        for chunk in self.iter_mut() {
            if chunk.message_id == message_id {
                released += chunk.user_data.len();
                chunk.user_data.clear();
                chunk.abandoned = true;
                chunk.retransmit = false;
            }
        }
        self.n_bytes -= released;
        released
    }

    pub(crate) fn mark_all_to_retransmit(&mut self) {
        for chunk in self.iter_mut() {
            if !chunk.acked && !chunk.abandoned {
                chunk.retransmit = true;
            }
        }
    }

    /// Whether any chunk carries a deadline.
    pub(crate) fn has_timed(&self) -> bool {
        self.n_timed > 0
    }

    pub(crate) fn get_num_bytes(&self) -> usize {
        self.n_bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains_stream(&self, stream_identifier: u16) -> bool {
        self.iter()
            .any(|chunk| chunk.stream_identifier == stream_identifier)
    }
}
