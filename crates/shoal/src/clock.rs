//! Maps tokio's monotonic clock onto the core's `Instant` (an offset from an epoch).

use shoal_proto::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock { epoch: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed())
    }

    pub fn tokio_instant(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + at.since_epoch()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
