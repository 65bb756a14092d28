//! Noticing that a tracker's socket went dead without closing: the route changed under it (our
//! router got a new public address), or a NAT forgot the connection. Trackers send nothing
//! while no peer makes offers, so silence alone says nothing; a WebSocket ping after a quiet
//! spell must get an answer (every server answers pings, and so does any message), and an
//! unanswered one ends the socket, which then reconnects and announces again.
//!
//! Sans IO: the socket task waits for a frame until [`Keepalive::deadline`] and tells this
//! what happened.

use std::time::Duration;

use tokio::time::Instant;

/// Quiet this long, we ping.
pub(super) const QUIET: Duration = Duration::from_secs(30);
/// A ping unanswered this long ends the socket.
pub(super) const PONG_WAIT: Duration = Duration::from_secs(15);

/// What to do when the deadline passed with nothing heard.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Quiet {
    SendPing,
    /// The last ping went unanswered.
    Dead,
}

pub(super) struct Keepalive {
    deadline: Instant,
    pinged: bool,
}

impl Keepalive {
    pub(super) fn new(now: Instant) -> Self {
        Keepalive { deadline: now + QUIET, pinged: false }
    }

    /// Until when to wait for a frame.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A frame arrived (any frame: a pong, a message, a ping from the server).
    pub(super) fn heard(&mut self, now: Instant) {
        self.deadline = now + QUIET;
        self.pinged = false;
    }

    /// The deadline passed with nothing heard.
    pub(super) fn on_deadline(&mut self, now: Instant) -> Quiet {
        if self.pinged {
            return Quiet::Dead;
        }
        self.pinged = true;
        self.deadline = now + PONG_WAIT;
        Quiet::SendPing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_after_quiet_and_gives_up_without_an_answer() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        assert_eq!(k.deadline(), t0 + QUIET);
        assert_eq!(k.on_deadline(t0 + QUIET), Quiet::SendPing);
        assert_eq!(k.deadline(), t0 + QUIET + PONG_WAIT);
        assert_eq!(k.on_deadline(t0 + QUIET + PONG_WAIT), Quiet::Dead);
    }

    #[test]
    fn anything_heard_resets_it() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        assert_eq!(k.on_deadline(t0 + QUIET), Quiet::SendPing);
        let later = t0 + QUIET + PONG_WAIT / 2;
        k.heard(later);
        assert_eq!(k.deadline(), later + QUIET);
        assert_eq!(k.on_deadline(later + QUIET), Quiet::SendPing, "a new quiet spell, a new ping");
    }
}
