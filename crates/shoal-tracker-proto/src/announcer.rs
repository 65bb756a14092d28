//! The per-torrent announce scheduler, sans-IO.
//!
//! It decides *when* to announce, *to which* tracker URL and *with which event*; a driver does
//! the requests and reports back. The loop a driver runs:
//!
//! ```text
//! while let Some(job) = announcer.poll(now) { spawn the request for job.url, job.event }
//! on answer:  announcer.on_response(&job.url, &response, now)
//! on error:   announcer.on_failure(&job.url, &error, now)
//! sleep until announcer.next_deadline()
//! ```
//!
//! Policy (BEP 3, BEP 12, and what libtorrent does by default):
//! - One tracker at a time: the first URL in tier order that is not backing off. A URL that
//!   answers is promoted to the front of its tier; one that fails backs off exponentially
//!   and the next URL (then the next tier) is tried at once.
//! - Each tracker gets `started` before anything else, `completed` once when the download
//!   finishes (not when starting as a seeder: call [`Announcer::on_completed`] before the first
//!   poll for that), and `stopped` on shutdown if it saw our `started`.
//! - Regular announces follow the answering tracker's `interval`; [`Announcer::want_peers`]
//!   asks for an early one, no sooner than its `min interval` after the last answer.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_proto::Instant;

use crate::tiers::TrackerTiers;
use crate::types::{
    bounded_message, AnnounceEvent, AnnounceResponse, MAX_INTERVAL, MIN_INTERVAL, MIN_MIN_INTERVAL,
};

/// Tunables of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// Wait after a tracker's first failure; doubled on each further failure.
    pub backoff_base: Duration,
    /// The longest wait between retries of a failing tracker.
    pub backoff_max: Duration,
    /// The floor for early announces when the tracker gave no `min interval`.
    pub default_min_interval: Duration,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        AnnouncerConfig {
            backoff_base: Duration::from_secs(15),
            backoff_max: Duration::from_secs(30 * 60),
            default_min_interval: Duration::from_secs(60),
        }
    }
}

/// An announce the driver should make now; [`crate::announce_request`] says what it carries
/// (for [`AnnounceEvent::Stopped`], no peers wanted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceJob {
    pub url: String,
    pub event: AnnounceEvent,
    /// The tracker id this tracker gave us, to echo back (HTTP).
    pub tracker_id: Option<Vec<u8>>,
}

/// What we know of one tracker URL, for display.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrackerStatus {
    /// Failures since its last answer.
    pub failures: u32,
    /// When it may be tried again, while backing off.
    pub retry_at: Option<Instant>,
    pub last_error: Option<String>,
    pub last_success: Option<Instant>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub warning: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct TrackerState {
    status: TrackerStatus,
    started_sent: bool,
    completed_sent: bool,
    tracker_id: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct InFlight {
    url: String,
    event: AnnounceEvent,
    /// Whether the download was complete when the job left: a tracker that first hears of us
    /// as a seeder must not get `completed` afterwards.
    complete_when_sent: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { since: Instant },
    Stopped,
}

/// The announce schedule of one torrent.
#[derive(Clone, Debug)]
pub struct Announcer {
    tiers: TrackerTiers,
    trackers: BTreeMap<String, TrackerState>,
    config: AnnouncerConfig,
    phase: Phase,
    in_flight: Vec<InFlight>,
    /// When the next regular announce is due; `None` until a tracker answered (due at once).
    next_regular: Option<Instant>,
    last_success: Option<Instant>,
    min_interval: Duration,
    complete: bool,
    /// The download finished at this time and no tracker has been told yet.
    completed_pending: Option<Instant>,
    /// An early announce was asked for at this time.
    wants_peers: Option<Instant>,
    stop_queue: Vec<String>,
}

impl Announcer {
    pub fn new(tiers: TrackerTiers, config: AnnouncerConfig) -> Self {
        let trackers =
            tiers.iter().map(|(_, url)| (url.to_owned(), TrackerState::default())).collect();
        let min_interval = config.default_min_interval;
        Announcer {
            tiers,
            trackers,
            config,
            phase: Phase::Running,
            in_flight: Vec::new(),
            next_regular: None,
            last_success: None,
            min_interval,
            complete: false,
            completed_pending: None,
            wants_peers: None,
            stop_queue: Vec::new(),
        }
    }

    /// The next announce to make now, if any. Call repeatedly until `None`: during shutdown
    /// several `stopped` announces may be due at once.
    pub fn poll(&mut self, now: Instant) -> Option<AnnounceJob> {
        match self.phase {
            Phase::Stopped => None,
            Phase::Stopping { .. } => {
                if self.stop_queue.is_empty() {
                    return None;
                }
                let url = self.stop_queue.remove(0);
                let tracker_id = self.trackers.get(&url).and_then(|t| t.tracker_id.clone());
                self.in_flight.push(InFlight {
                    url: url.clone(),
                    event: AnnounceEvent::Stopped,
                    complete_when_sent: self.complete,
                });
                Some(AnnounceJob { url, event: AnnounceEvent::Stopped, tracker_id })
            }
            Phase::Running => {
                if self.next_deadline()? > now {
                    return None;
                }
                let url = self.first_available(now)?.to_owned();
                let state = self.trackers.get(&url)?;
                let event = if !state.started_sent {
                    AnnounceEvent::Started
                } else if self.complete && !state.completed_sent {
                    AnnounceEvent::Completed
                } else {
                    AnnounceEvent::None
                };
                let tracker_id = state.tracker_id.clone();
                self.in_flight.push(InFlight {
                    url: url.clone(),
                    event,
                    complete_when_sent: self.complete,
                });
                Some(AnnounceJob { url, event, tracker_id })
            }
        }
    }

    /// When [`Announcer::poll`] will next have a job, if nothing else happens first. `None`
    /// while waiting for an answer, with no tracker, or once stopped.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopped => None,
            Phase::Stopping { since } => (!self.stop_queue.is_empty()).then_some(since),
            Phase::Running => {
                if !self.in_flight.is_empty() || self.tiers.is_empty() {
                    return None;
                }
                let regular = self.next_regular.unwrap_or(Instant::ZERO);
                let early = self.wants_peers.map(|asked| {
                    asked.max(self.last_success.unwrap_or(Instant::ZERO) + self.min_interval)
                });
                let due =
                    [Some(regular), self.completed_pending, early].into_iter().flatten().min()?;
                let available = self
                    .trackers
                    .values()
                    .map(|t| t.status.retry_at.unwrap_or(Instant::ZERO))
                    .min()?;
                Some(due.max(available))
            }
        }
    }

    /// A tracker answered the job sent to `url`.
    pub fn on_response(&mut self, url: &str, response: &AnnounceResponse, now: Instant) {
        let Some(job) = self.take_in_flight(url) else { return };
        let Some(state) = self.trackers.get_mut(url) else { return };
        let status = &mut state.status;
        status.failures = 0;
        status.retry_at = None;
        status.last_error = None;
        status.last_success = Some(now);
        status.seeders = response.seeders;
        status.leechers = response.leechers;
        status.warning = response.warning.clone();
        if let Some(id) = &response.tracker_id {
            state.tracker_id = Some(id.clone());
        }
        match job.event {
            AnnounceEvent::Started => {
                state.started_sent = true;
                state.completed_sent |= job.complete_when_sent;
            }
            AnnounceEvent::Completed => state.completed_sent = true,
            AnnounceEvent::Stopped => state.started_sent = false,
            AnnounceEvent::None => {}
        }
        let tracker_knows_we_finished = state.completed_sent;
        let tracker_registered_us = state.started_sent;

        match self.phase {
            Phase::Running => {
                self.tiers.promote(url);
                let interval = response.interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
                self.min_interval = response
                    .min_interval
                    .unwrap_or(self.config.default_min_interval)
                    .clamp(MIN_MIN_INTERVAL, interval.max(MIN_MIN_INTERVAL));
                self.last_success = Some(now);
                self.next_regular = Some(now + interval);
                self.wants_peers = None;
                if tracker_knows_we_finished {
                    self.completed_pending = None;
                }
            }
            Phase::Stopping { .. } => {
                // A regular job that was already under way when we began stopping: if it
                // registered us, that tracker needs a `stopped` too.
                if job.event != AnnounceEvent::Stopped && tracker_registered_us {
                    self.stop_queue.push(url.to_owned());
                }
                self.finish_stopping_if_done();
            }
            Phase::Stopped => {}
        }
    }

    /// The job sent to `url` failed (network error, timeout, tracker refusal). `error` is kept
    /// for display.
    pub fn on_failure(&mut self, url: &str, error: &dyn std::fmt::Display, now: Instant) {
        let Some(job) = self.take_in_flight(url) else { return };
        match self.phase {
            Phase::Running => {
                let backoff =
                    self.backoff(self.trackers.get(url).map_or(0, |t| t.status.failures) + 1);
                if let Some(state) = self.trackers.get_mut(url) {
                    state.status.failures = state.status.failures.saturating_add(1);
                    state.status.retry_at = Some(now + backoff);
                    state.status.last_error = Some(bounded_message(error.to_string().as_bytes()));
                }
            }
            // Shutdown does not retry a `stopped`: a tracker that missed it forgets us on its
            // own. But a regular job that was under way when shutdown began kept its tracker
            // out of the stop queue, and that tracker still has us registered.
            Phase::Stopping { .. } => {
                let registered = self.trackers.get(url).is_some_and(|t| t.started_sent);
                if job.event != AnnounceEvent::Stopped && registered {
                    self.stop_queue.push(url.to_owned());
                }
                self.finish_stopping_if_done();
            }
            Phase::Stopped => {}
        }
    }

    /// The download just finished: the next announce (due at once) carries `completed`.
    /// Called before the first announce, it means "starting as a seeder": trackers then get
    /// `started` with nothing left, and never `completed`.
    pub fn on_completed(&mut self, now: Instant) {
        if self.complete {
            return;
        }
        self.complete = true;
        // Due at once. A tracker that first hears of us after this learns it from `started`
        // (nothing left), which clears this without a `completed`.
        self.completed_pending = Some(now);
    }

    /// Ask for an announce sooner than the regular interval because we need peers; it happens
    /// no earlier than the tracker's `min interval` after its last answer.
    pub fn want_peers(&mut self, now: Instant) {
        if self.phase == Phase::Running && self.wants_peers.is_none() {
            self.wants_peers = Some(now);
        }
    }

    /// Begins shutdown: every tracker that registered us gets `stopped`, once, without
    /// retries. A job already under way is still reported as usual.
    pub fn stop(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Stopping { since: now };
        let busy: Vec<&str> = self.in_flight.iter().map(|j| j.url.as_str()).collect();
        self.stop_queue = self
            .tiers
            .iter()
            .map(|(_, url)| url)
            .filter(|url| {
                self.trackers.get(*url).is_some_and(|t| t.started_sent) && !busy.contains(url)
            })
            .map(str::to_owned)
            .collect();
        self.finish_stopping_if_done();
    }

    /// True once shutdown has nothing left to send or wait for.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The tiers in their current order (answering trackers promoted).
    pub fn tiers(&self) -> &TrackerTiers {
        &self.tiers
    }

    /// What we know of one tracker.
    pub fn tracker_status(&self, url: &str) -> Option<&TrackerStatus> {
        self.trackers.get(url).map(|t| &t.status)
    }

    fn first_available(&self, now: Instant) -> Option<&str> {
        self.tiers.iter().map(|(_, url)| url).find(|url| {
            self.trackers.get(*url).is_some_and(|t| t.status.retry_at.is_none_or(|at| at <= now))
        })
    }

    fn take_in_flight(&mut self, url: &str) -> Option<InFlight> {
        let index = self.in_flight.iter().position(|j| j.url == url)?;
        Some(self.in_flight.remove(index))
    }

    fn finish_stopping_if_done(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. })
            && self.in_flight.is_empty()
            && self.stop_queue.is_empty()
        {
            self.phase = Phase::Stopped;
        }
    }

    /// `base · 2^(failures-1)`, capped.
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.config.backoff_base.saturating_mul(factor).min(self.config.backoff_max)
    }
}

#[cfg(test)]
mod tests;
