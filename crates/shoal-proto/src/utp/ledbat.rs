//! LEDBAT (RFC 6817), the congestion control that makes uTP yield: the sender measures the
//! one-way delay of its packets (the peer echoes it in every packet), takes the lowest delay of
//! the last minutes as the empty-queue base, and grows its window while the queuing delay above
//! that base is under a target, shrinking it when over. A TCP flow (or anything that fills a
//! queue) sharing the bottleneck raises the delay, and uTP backs off before it loses packets.
//!
//! Slow start (doubling per round trip) runs until the queuing delay reaches half the target or
//! a packet is lost, so a fresh connection on an empty path (loopback, a LAN) is at full speed
//! in a few round trips rather than the seconds LEDBAT's linear growth would take.

use std::time::Duration;

use crate::time::Instant;

/// Queuing delay LEDBAT aims for (libtorrent's and libutp's 100 ms).
pub const TARGET_DELAY: Duration = Duration::from_millis(100);
/// Most the window grows in one round trip once out of slow start.
const GAIN_PER_RTT: f64 = 3000.0;
/// The base delay is the lowest of this many one-minute buckets.
const BASE_HISTORY: usize = 3;
const BUCKET: Duration = Duration::from_secs(60);

/// `a < b` in wrapping microseconds (the peer's clock and ours differ by any offset).
fn earlier(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[derive(Clone, Debug)]
struct BaseDelay {
    buckets: [Option<u32>; BASE_HISTORY],
    current: usize,
    bucket_start: Option<Instant>,
}

impl BaseDelay {
    fn new() -> Self {
        BaseDelay { buckets: [None; BASE_HISTORY], current: 0, bucket_start: None }
    }

    /// Records a sample; returns the base (lowest recent) delay.
    fn update(&mut self, delay: u32, now: Instant) -> u32 {
        let start = *self.bucket_start.get_or_insert(now);
        if now.saturating_since(start) >= BUCKET {
            self.current = (self.current + 1) % BASE_HISTORY;
            self.buckets[self.current] = None;
            self.bucket_start = Some(now);
        }
        let slot = &mut self.buckets[self.current];
        if slot.is_none_or(|low| earlier(delay, low)) {
            *slot = Some(delay);
        }
        self.buckets
            .iter()
            .flatten()
            .copied()
            .fold(delay, |low, d| if earlier(d, low) { d } else { low })
    }
}

#[derive(Clone, Debug)]
pub struct Ledbat {
    mss: usize,
    cwnd: f64,
    slow_start: bool,
    ssthresh: f64,
    max_cwnd: f64,
    base: BaseDelay,
    last_queuing: Duration,
}

impl Ledbat {
    /// A controller for packets of `mss` payload bytes, never above `max_cwnd` bytes in
    /// flight (the send buffer: more could not be in flight anyway).
    pub fn new(mss: usize, max_cwnd: usize) -> Self {
        Ledbat {
            mss,
            cwnd: (2 * mss) as f64,
            slow_start: true,
            ssthresh: max_cwnd as f64,
            max_cwnd: max_cwnd as f64,
            base: BaseDelay::new(),
            last_queuing: Duration::ZERO,
        }
    }

    /// Bytes that may be in flight now.
    pub fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// The queuing delay of the latest sample.
    pub fn queuing_delay(&self) -> Duration {
        self.last_queuing
    }

    /// `acked` bytes were newly acknowledged by a packet that echoed `delay` (our packets'
    /// one-way delay, microseconds); `window_full` says whether the flight had filled the
    /// window (an application-limited sender must not grow it).
    pub fn on_ack(&mut self, acked: usize, delay: u32, window_full: bool, now: Instant) {
        let base = self.base.update(delay, now);
        let queuing = Duration::from_micros(u64::from(delay.wrapping_sub(base)));
        self.last_queuing = queuing;
        let acked = acked as f64;
        if self.slow_start {
            if queuing > TARGET_DELAY / 2 || self.cwnd >= self.ssthresh {
                self.slow_start = false;
            } else if window_full {
                self.cwnd += acked;
            }
        }
        if !self.slow_start {
            let target = TARGET_DELAY.as_secs_f64();
            let off_target = ((target - queuing.as_secs_f64()) / target).clamp(-1.0, 1.0);
            if off_target < 0.0 || window_full {
                self.cwnd += GAIN_PER_RTT * off_target * acked / self.cwnd;
            }
        }
        self.clamp();
    }

    /// A packet was lost (found by selective or duplicate ACKs): halve, once per window.
    pub fn on_loss(&mut self) {
        self.slow_start = false;
        self.cwnd /= 2.0;
        self.ssthresh = self.cwnd;
        self.clamp();
    }

    /// Nothing was acknowledged for a whole retransmission timeout: one packet at a time,
    /// then slow start back up to half of where it was.
    pub fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2.0).max(self.min());
        self.cwnd = self.min();
        self.slow_start = true;
    }

    fn min(&self) -> f64 {
        self.mss as f64
    }

    fn clamp(&mut self) {
        self.cwnd = self.cwnd.clamp(self.min(), self.max_cwnd.max(self.min()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn slow_start_doubles_until_the_queue_builds_then_delay_steers() {
        let t0 = Instant::ZERO;
        let mut c = Ledbat::new(MSS, 10_000_000);
        // Base delay 5 ms (clock offset included): queuing 0, slow start doubles.
        for _ in 0..4 {
            let w = c.window();
            c.on_ack(w, 5_000, true, t0);
            assert_eq!(c.window(), 2 * w);
        }
        // 80 ms of queue: over half the target, slow start ends; still under target: grows.
        let w = c.window();
        c.on_ack(w, 85_000, true, t0);
        let grown = c.window();
        assert!(grown > w && grown <= w + 3000, "{w} -> {grown}");
        // 200 ms of queue: over target, shrinks whether or not the window was full.
        c.on_ack(grown, 205_000, false, t0);
        assert!(c.window() < grown);
        // Under target but application-limited: no growth.
        let w = c.window();
        c.on_ack(w, 5_000, false, t0);
        assert_eq!(c.window(), w);
    }

    #[test]
    fn loss_halves_and_timeout_restarts_from_one_packet() {
        let mut c = Ledbat::new(MSS, 1_000_000);
        c.on_ack(64_000, 0, true, Instant::ZERO);
        let w = c.window();
        c.on_loss();
        assert_eq!(c.window(), w / 2);
        c.on_timeout();
        assert_eq!(c.window(), MSS);
        for _ in 0..20 {
            c.on_loss();
        }
        assert_eq!(c.window(), MSS, "never below one packet");
    }

    #[test]
    fn the_base_delay_survives_clock_wrap_and_forgets_old_minutes() {
        let mut b = BaseDelay::new();
        let t0 = Instant::ZERO;
        assert_eq!(b.update(u32::MAX - 10, t0), u32::MAX - 10);
        // 20 µs later in wrapping terms is not lower.
        assert_eq!(b.update(9, t0), u32::MAX - 10);
        // Three minutes on, the old minimum has left the history.
        let later = t0 + Duration::from_secs(200);
        b.update(500, t0 + Duration::from_secs(70));
        b.update(600, t0 + Duration::from_secs(140));
        assert_eq!(b.update(700, later), 500);
    }
}
