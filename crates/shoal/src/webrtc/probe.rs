//! Repairs a loss at the tail of a flight long before sctp-proto's retransmission timer.
//!
//! When the last packets of a flight are lost, nothing comes back to tell SCTP: no
//! acknowledgement reports a gap, so no fast retransmit, and the data waits for the
//! retransmission timer, whose minimum is one second in sctp-proto 0.10 (`RTO_MIN`, a
//! constant; str0m 0.24 exposes no transport settings). Into Chromium, whose WebRTC socket
//! has a 64 KiB receive buffer, such losses are common (see `pacer.rs`), and each cost a
//! streaming reader a full second.
//!
//! The probe is TCP's tail-loss probe moved below the transport: when a connection with
//! unacknowledged data has been quiet for about two round trips, the last few datagrams are
//! sent again exactly as they were. DTLS makes that safe: a record the remote already has is
//! dropped by its replay window, one it lost is accepted, and SCTP then acknowledges it and
//! reports the gaps before it, which starts fast retransmit for the rest. An
//! acknowledgement that *we* lost is not repaired this way (the copies are dropped as
//! replays, nothing answers), which is why the timer stays.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Datagrams kept for a probe: the tail of the last flight.
pub(crate) const PROBE_PACKETS: usize = 4;
/// Probes per quiet period; after them the retransmission timer takes over.
pub(crate) const MAX_PROBES: u32 = 2;
/// Bounds of the wait before a probe. Below, a probe races the remote's acknowledgement
/// for nothing; above, it is no longer much sooner than SCTP's own timer.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(25);
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(250);
/// The wait before a round trip has been measured.
pub(crate) const INITIAL_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct TailProbe {
    recent: VecDeque<(SocketAddr, Vec<u8>)>,
    /// The last datagram sent or received: quiet time counts from here.
    last_activity: Option<Instant>,
    /// The first datagram sent since we last heard from the remote.
    unanswered_since: Option<Instant>,
    /// Smoothed time from a send to the remote's next datagram: a round trip plus whatever
    /// the remote waits before acknowledging.
    srtt: Option<Duration>,
    /// Probes sent since the last activity.
    probes: u32,
    /// Datagrams sent again, for the connection's statistics.
    resent: u64,
}

impl TailProbe {
    pub(crate) fn new() -> Self {
        TailProbe {
            recent: VecDeque::with_capacity(PROBE_PACKETS),
            last_activity: None,
            unanswered_since: None,
            srtt: None,
            probes: 0,
            resent: 0,
        }
    }

    /// A datagram left for the remote; it is kept (moved, not copied) for a probe.
    pub(crate) fn on_sent(&mut self, now: Instant, to: SocketAddr, datagram: Vec<u8>) {
        if self.recent.len() == PROBE_PACKETS {
            self.recent.pop_front();
        }
        self.recent.push_back((to, datagram));
        self.last_activity = Some(now);
        self.unanswered_since.get_or_insert(now);
        self.probes = 0;
    }

    /// The remote sent a datagram.
    pub(crate) fn on_heard(&mut self, now: Instant) {
        if let Some(sent) = self.unanswered_since.take() {
            let sample = now.saturating_duration_since(sent);
            self.srtt = Some(match self.srtt {
                None => sample,
                Some(srtt) => (srtt * 7 + sample) / 8,
            });
        }
        self.last_activity = Some(now);
        self.probes = 0;
    }

    /// When the next probe is due, if one may be sent.
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.recent.is_empty() || self.probes >= MAX_PROBES {
            return None;
        }
        // Each probe of a quiet period waits twice as long as the one before.
        Some(self.last_activity? + self.delay() * (1 << self.probes))
    }

    /// The datagrams to send again now, if a probe is due and the remote has not yet
    /// acknowledged everything (`outstanding`). With nothing outstanding the probe is off
    /// until the next datagram.
    pub(crate) fn probe(
        &mut self,
        now: Instant,
        outstanding: bool,
    ) -> Option<&VecDeque<(SocketAddr, Vec<u8>)>> {
        if self.due().is_none_or(|due| due > now) {
            return None;
        }
        if !outstanding {
            self.probes = MAX_PROBES;
            return None;
        }
        self.probes += 1;
        self.resent += self.recent.len() as u64;
        Some(&self.recent)
    }

    /// Datagrams sent again so far.
    pub(crate) fn resent(&self) -> u64 {
        self.resent
    }

    fn delay(&self) -> Duration {
        self.srtt.map_or(INITIAL_DELAY, |srtt| (srtt * 2).clamp(MIN_DELAY, MAX_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_to_probe_before_anything_was_sent() {
        let mut probe = TailProbe::new();
        let now = Instant::now();
        probe.on_heard(now);
        assert_eq!(probe.due(), None);
        assert!(probe.probe(now + ms(1000), true).is_none());
    }

    #[test]
    fn a_quiet_connection_resends_its_last_datagrams() {
        let t0 = Instant::now();
        let mut probe = TailProbe::new();
        for i in 0..6u8 {
            probe.on_sent(t0, addr(), vec![i]);
        }
        let due = probe.due().expect("due");
        assert_eq!(due, t0 + INITIAL_DELAY);
        assert!(probe.probe(due - ms(1), true).is_none(), "not before it is due");
        let sent: Vec<u8> =
            probe.probe(due, true).expect("probe").iter().map(|(_, d)| d[0]).collect();
        assert_eq!(sent, vec![2, 3, 4, 5], "the last PROBE_PACKETS, oldest first");
        // The second probe waits twice as long; then the retransmission timer's turn.
        assert_eq!(probe.due(), Some(t0 + INITIAL_DELAY * 2));
        assert!(probe.probe(t0 + INITIAL_DELAY * 2, true).is_some());
        assert_eq!(probe.due(), None);
        assert_eq!(probe.resent(), 8);
    }

    #[test]
    fn activity_postpones_and_rearms_the_probe() {
        let t0 = Instant::now();
        let mut probe = TailProbe::new();
        probe.on_sent(t0, addr(), vec![0]);
        let first = probe.probe(t0 + INITIAL_DELAY, true).is_some();
        assert!(first);
        probe.on_heard(t0 + ms(150));
        // Sample: 150 ms from the first unanswered send; delay 2 × srtt, within bounds.
        assert_eq!(probe.due(), Some(t0 + ms(150) + MAX_DELAY));
        probe.on_sent(t0 + ms(200), addr(), vec![1]);
        assert_eq!(probe.due(), Some(t0 + ms(200) + MAX_DELAY));
    }

    #[test]
    fn the_delay_follows_the_measured_round_trip() {
        let t0 = Instant::now();
        let mut probe = TailProbe::new();
        probe.on_sent(t0, addr(), vec![0]);
        probe.on_heard(t0 + ms(20));
        probe.on_sent(t0 + ms(30), addr(), vec![1]);
        assert_eq!(probe.due(), Some(t0 + ms(30) + ms(40)));
        // A loopback round trip stays above the floor.
        let mut fast = TailProbe::new();
        fast.on_sent(t0, addr(), vec![0]);
        fast.on_heard(t0 + ms(1));
        fast.on_sent(t0 + ms(2), addr(), vec![1]);
        assert_eq!(fast.due(), Some(t0 + ms(2) + MIN_DELAY));
    }

    #[test]
    fn nothing_outstanding_turns_the_probe_off_until_the_next_send() {
        let t0 = Instant::now();
        let mut probe = TailProbe::new();
        probe.on_sent(t0, addr(), vec![0]);
        assert!(probe.probe(t0 + INITIAL_DELAY, false).is_none());
        assert_eq!(probe.due(), None, "no wake-ups for an idle connection");
        probe.on_sent(t0 + ms(500), addr(), vec![1]);
        assert!(probe.due().is_some());
    }
}
