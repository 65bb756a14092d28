//! A byte rate shared by several senders, sans IO: a sender reserves the bytes it is about to
//! send and waits until the instant it is given. This is virtual scheduling (GCRA): the limit
//! keeps a theoretical time at which the link is free again, a reservation moves it on by
//! `bytes / rate`, and up to `burst` bytes may go ahead of it. Reservations are served in the
//! order they are made, so no sender starves, and a sender that waits has its bytes counted at
//! once, so the senders behind it wait for them too.

use std::time::Duration;

use crate::time::Instant;

#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Bytes per second, at least 1.
    rate: u64,
    /// How far ahead of the theoretical schedule a sender may be: `burst` bytes' worth.
    tolerance: Duration,
    /// When everything reserved so far has left, at the rate.
    free_at: Instant,
}

impl RateLimit {
    /// `rate` bytes per second with bursts of up to `burst` bytes.
    pub fn new(rate: u64, burst: u64) -> RateLimit {
        let rate = rate.max(1);
        RateLimit { rate, tolerance: duration_of(burst, rate), free_at: Instant::ZERO }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Reserves `bytes` at `now`: they may be sent at the returned instant (`now` or later).
    pub fn reserve(&mut self, now: Instant, bytes: u64) -> Instant {
        // The bytes' place in the schedule, which they may run ahead of by the tolerance.
        let start = self.free_at.max(now);
        self.free_at = start + duration_of(bytes, self.rate);
        Instant::from_duration(start.since_epoch().saturating_sub(self.tolerance)).max(now)
    }
}

fn duration_of(bytes: u64, rate: u64) -> Duration {
    Duration::from_nanos((u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1))) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_follows_at_the_rate() {
        let mut limit = RateLimit::new(1000, 500);
        // Bytes may run half a second (the burst) ahead of the schedule: these leave at once.
        assert_eq!(limit.reserve(at(0), 250), at(0));
        assert_eq!(limit.reserve(at(0), 250), at(0));
        assert_eq!(limit.reserve(at(0), 500), at(0));
        // Beyond it, each byte waits for its turn at 1000 bytes/s.
        assert_eq!(limit.reserve(at(0), 100), at(500));
        assert_eq!(limit.reserve(at(0), 100), at(600));
    }

    #[test]
    fn senders_share_the_rate_in_the_order_they_ask() {
        let mut limit = RateLimit::new(1000, 0);
        let first = limit.reserve(at(0), 1000);
        let second = limit.reserve(at(10), 1000);
        assert_eq!(first, at(0));
        assert_eq!(second, at(1000), "the second waits for the first's bytes");
        // An idle link does not bank unused time beyond the burst.
        assert_eq!(limit.reserve(at(10_000), 10), at(10_000));
        assert_eq!(limit.reserve(at(10_000), 10), at(10_010));
    }

    #[test]
    fn over_a_long_run_the_average_is_the_rate() {
        let mut limit = RateLimit::new(2 << 20, 64 << 10);
        let mut last = Instant::ZERO;
        for _ in 0..1024 {
            last = limit.reserve(Instant::ZERO, 16 << 10); // 16 MiB in all
        }
        let secs = last.since_epoch().as_secs_f64();
        assert!((7.9..8.0).contains(&secs), "16 MiB at 2 MiB/s took {secs}s");
    }
}
