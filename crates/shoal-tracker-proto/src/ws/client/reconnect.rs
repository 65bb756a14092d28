//! When to try the tracker's socket again after it failed or closed.
//!
//! Exponential backoff from [`BACKOFF_START`] to [`BACKOFF_MAX`], reset only by a connection
//! that lasted [`STABLE_CONNECTION`]: a tracker that accepts and drops us at once must not be
//! hammered every second. Whether to reconnect at all after the wait is the client's call
//! ([`WsClient::wants_connection`](super::WsClient::wants_connection)): at once with torrents
//! to keep in the swarm, otherwise at the next announce.

use std::time::Duration;

use shoal_proto::Instant;

/// The wait after the first failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A connection that lasted this long resets the backoff.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// The reconnect backoff of one tracker socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconnect {
    next: Duration,
    connected_at: Option<Instant>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { next: BACKOFF_START, connected_at: None }
    }
}

impl Reconnect {
    pub fn new() -> Self {
        Self::default()
    }

    /// The socket is open (WebSocket upgrade done).
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// A connection ended or an attempt failed: how long to wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.connected_at.take() {
            if now.saturating_since(since) >= STABLE_CONNECTION {
                self.next = BACKOFF_START;
            }
        }
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let mut r = Reconnect::new();
        let waits: Vec<u64> = (0..9).map(|_| r.failed(at(0)).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn only_a_stable_connection_resets_the_backoff() {
        let mut r = Reconnect::new();
        for _ in 0..4 {
            r.failed(at(0));
        }
        // Accepted, then dropped after 29 s: still backing off.
        r.connected(at(100));
        assert_eq!(r.failed(at(129)), Duration::from_secs(16));
        // Lasted 30 s: back to the start.
        r.connected(at(200));
        assert_eq!(r.failed(at(230)), BACKOFF_START);
        assert_eq!(r.failed(at(231)), Duration::from_secs(2));
        // A connect failure after a stable connection does not reuse the old connection time.
        r.connected(at(300));
        assert_eq!(r.failed(at(400)), BACKOFF_START);
        assert_eq!(r.failed(at(500)), Duration::from_secs(2));
    }
}
