//! The core's notion of time. Drivers pass `Instant`s in; the core never reads a clock, so the
//! simulation driver can run a virtual clock and wasm32 needs no `std::time`.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, as an offset from an arbitrary epoch chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    pub fn from_duration(since_epoch: Duration) -> Self {
        Instant(since_epoch)
    }

    pub fn since_epoch(self) -> Duration {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0 + rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}
