//! The page's monotonic clock (`performance.now()`) as the core's [`Instant`].

use std::time::Duration;

use shoal_proto::Instant;

#[derive(Clone, Copy)]
pub struct Clock {
    origin_ms: f64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin_ms: performance_now() }
    }

    pub fn now(&self) -> Instant {
        let ms = (performance_now() - self.origin_ms).max(0.0);
        Instant::from_duration(Duration::from_secs_f64(ms / 1000.0))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn performance_now() -> f64 {
    // Outside a window (unit tests on the host) there is no clock to read: time stands still,
    // which only the tests see.
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}
