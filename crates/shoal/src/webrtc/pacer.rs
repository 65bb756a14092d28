//! Spreads one connection's outgoing datagrams so that a burst fits the receiver's socket.
//!
//! sctp-proto sends everything its congestion window allows the moment it is polled, and
//! does not apply SCTP's Max.Burst (RFC 4960 6.1: at most 4 packets per acknowledgement).
//! Chromium reads WebRTC datagrams through a 64 KiB receive buffer (128 KiB as the kernel
//! counts): a burst of ~100 packets while its network thread is busy overflows it, and a lost
//! packet at the tail of a burst waits for SCTP's retransmission timer, at least one second
//! in sctp-proto. Measured (benches/web.py, `ss -uamp` in the namespace): hundreds of
//! receive-buffer drops per run, and `canplay` at 1.1 s instead of 0.1 s in 3 runs of 6.
//!
//! The pacer releases datagrams against a budget: a full budget is [`MAX_BURST`] packets;
//! every datagram from the remote (acknowledgements, mostly) adds [`ACK_CREDIT`], and time
//! adds [`PACKETS_PER_MS`] so a connection whose acknowledgements stop still drains. What
//! exceeds the budget waits in a bounded queue.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Packets that may leave back to back: well under what fits Chromium's receive buffer.
pub(crate) const MAX_BURST: u32 = 32;
/// Packets released by each datagram the remote sends (SCTP's Max.Burst).
pub(crate) const ACK_CREDIT: u32 = 4;
/// Packets released per millisecond without acknowledgements (~10 MB/s of 1.2 KB packets).
pub(crate) const PACKETS_PER_MS: u32 = 8;
/// Datagrams held at most; beyond, the oldest is dropped as a full network queue would (the
/// SCTP send window keeps the queue far below this in practice).
pub(crate) const MAX_QUEUED: usize = 4096;

/// Budget in thousandths of a packet, so time refills it smoothly.
const MILLI: u64 = 1000;

#[derive(Debug)]
pub(crate) struct Pacer {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    budget: u64,
    refilled_at: Instant,
    dropped: u64,
}

impl Pacer {
    pub(crate) fn new(now: Instant) -> Self {
        Pacer {
            queue: VecDeque::new(),
            budget: u64::from(MAX_BURST) * MILLI,
            refilled_at: now,
            dropped: 0,
        }
    }

    /// A datagram to send: returned at once if the budget allows and nothing waits before
    /// it, else queued.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        to: SocketAddr,
        datagram: Vec<u8>,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        self.refill(now);
        if self.queue.is_empty() && self.budget >= MILLI {
            self.budget -= MILLI;
            return Some((to, datagram));
        }
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back((to, datagram));
        None
    }

    /// The remote sent us something: its acknowledgements clock more packets out.
    pub(crate) fn on_remote_packet(&mut self) {
        self.add(u64::from(ACK_CREDIT) * MILLI);
    }

    /// The next queued datagram the budget allows now.
    pub(crate) fn release(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.queue.is_empty() {
            return None;
        }
        self.refill(now);
        if self.budget < MILLI {
            return None;
        }
        self.budget -= MILLI;
        self.queue.pop_front()
    }

    /// When the budget will allow the next queued datagram; `None` with nothing queued.
    pub(crate) fn next_release(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        let missing = MILLI.saturating_sub(self.budget);
        let per_ms = u64::from(PACKETS_PER_MS) * MILLI;
        let micros = (missing * 1000).div_ceil(per_ms);
        Some(self.refilled_at + Duration::from_micros(micros))
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Datagrams thrown away because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Everything still queued, budget or not (a connection being torn down says goodbye).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (SocketAddr, Vec<u8>)> + '_ {
        self.queue.drain(..)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = elapsed.as_micros() as u64 * u64::from(PACKETS_PER_MS);
        // `earned` is in thousandths of a packet: PACKETS_PER_MS per 1000 µs.
        if earned > 0 {
            self.add(earned);
            self.refilled_at = now;
        }
    }

    fn add(&mut self, amount: u64) {
        self.budget = (self.budget + amount).min(u64::from(MAX_BURST) * MILLI);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[test]
    fn a_full_budget_lets_a_burst_through_then_queues() {
        let now = Instant::now();
        let mut pacer = Pacer::new(now);
        for i in 0..MAX_BURST {
            assert!(pacer.send(now, addr(), vec![i as u8]).is_some(), "packet {i}");
        }
        assert!(pacer.send(now, addr(), vec![0xaa]).is_none());
        assert!(pacer.send(now, addr(), vec![0xbb]).is_none());
        assert_eq!(pacer.queued(), 2);
        assert!(pacer.release(now).is_none(), "no budget left");
    }

    #[test]
    fn acknowledgements_and_time_release_in_order() {
        let now = Instant::now();
        let mut pacer = Pacer::new(now);
        for _ in 0..MAX_BURST {
            pacer.send(now, addr(), vec![0]);
        }
        for i in 0..20u8 {
            assert!(pacer.send(now, addr(), vec![i]).is_none());
        }
        pacer.on_remote_packet();
        let released: Vec<u8> =
            std::iter::from_fn(|| pacer.release(now)).map(|(_, d)| d[0]).collect();
        assert_eq!(released, (0..ACK_CREDIT as u8).collect::<Vec<_>>());

        // Time: PACKETS_PER_MS per millisecond, and the wake-up says when the next one is due.
        let due = pacer.next_release().expect("queued");
        assert!(due > now && due <= now + Duration::from_millis(1));
        assert!(pacer.release(due).is_some());
        let later = now + Duration::from_millis(1);
        let more = std::iter::from_fn(|| pacer.release(later)).count();
        assert_eq!(more, PACKETS_PER_MS as usize - 1);
    }

    #[test]
    fn a_new_datagram_never_overtakes_queued_ones() {
        let now = Instant::now();
        let mut pacer = Pacer::new(now);
        for _ in 0..MAX_BURST {
            pacer.send(now, addr(), vec![0]);
        }
        assert!(pacer.send(now, addr(), vec![1]).is_none());
        pacer.on_remote_packet();
        // Budget is back, but packet 1 waits ahead of packet 2.
        assert!(pacer.send(now, addr(), vec![2]).is_none());
        assert_eq!(pacer.release(now).map(|(_, d)| d[0]), Some(1));
        assert_eq!(pacer.release(now).map(|(_, d)| d[0]), Some(2));
    }

    #[test]
    fn the_queue_is_bounded() {
        let now = Instant::now();
        let mut pacer = Pacer::new(now);
        for _ in 0..MAX_BURST as usize + MAX_QUEUED + 5 {
            pacer.send(now, addr(), vec![0]);
        }
        assert_eq!(pacer.queued(), MAX_QUEUED);
        assert_eq!(pacer.dropped(), 5);
    }
}
