//! A crowd watching one video from one capped origin: how much the origin sends, how long
//! viewers wait for a first frame, and how much they stall.
//!
//! The origin is a seed with a capped uplink, running the core as `shoal serve` does
//! ([`TorrentConfig::spread`] unless told otherwise). Viewers are browser tabs: the core with
//! the tab's configuration (its connection limit, the head of the file first), deadline-only
//! when the file is larger than the tab's memory (the tab's bounded store), and a player
//! ([`Sim::play`]) reading from the start at the video's bitrate with the tab's read-ahead.
//! Each viewer has a home uplink and downlink drawn at random, arrives at a random time in
//! the arrival window, learns peers from a tracker (a random sample of the viewers still
//! there, plus the origin) at arrival and again at each re-announce, watches for a random
//! time after its first frame and then closes the tab ([`Sim::stop`]).
//!
//! Not modelled: a WebSocket tracker's offer matching (a tracker answer here is addresses the
//! viewer dials, as a BitTorrent tracker's is), WebRTC itself, the bounded store's eviction
//! (a viewer keeps and serves everything it fetched), the web seed unless asked for.
//!
//! Everything random is drawn from the seed before the run (arrivals, links, watch times),
//! so a run with and without spreading faces the same audience, and a seed replays a run
//! exactly.
//!
//! What the figures mean:
//! - `origin_bytes_per_file`: what left the origin's uplink (nearly all of it blocks), in
//!   copies of the file. Not the core's `uploaded`, which also counts blocks still queued on
//!   the uplink and blocks dropped with the connection of a viewer that left.
//! - start time: from arrival to the first frame. A viewer that never showed one counts with
//!   the time from its arrival to the end of the run (such viewers do not leave: a viewer's
//!   watch time starts at its first frame), so they raise the percentiles rather than vanish.
//! - `stall_ratio`: time stalled over time watched, where a viewer watches from its first
//!   frame until it leaves, the run ends, or playback reaches the end of the file. A stall
//!   still going on then counts up to that moment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use shoal_proto::torrent::{TorrentConfig, VIEWER_WEB_SEED_GRACE};
use shoal_proto::{Instant, PieceSizes};

use crate::fixture::TestTorrent;
use crate::node::{NodeConfig, NodeId};
use crate::player::{PlayerConfig, PlayerState, Wait};
use crate::rng::SimRng;
use crate::sim::{NetConfig, Sim, SimConfig};
use crate::store::Verify;
use crate::webseed::WebSeedConfig;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Bytes per second of `mbit` megabits per second.
pub fn mbit(mbit: f64) -> u64 {
    (mbit * 1e6 / 8.0).round() as u64
}

/// The tab's read-ahead for a reader (`shoal-web`'s `DEFAULT_READAHEAD`).
pub const TAB_READAHEAD: u64 = 8 * MIB;
/// The tab's memory for a torrent's pieces (`shoal-web`'s `DriverConfig::max_memory`): a
/// larger file streams through a bounded store, deadline-only.
pub const TAB_MEMORY: u64 = 512 * MIB;
/// The tab's connection limit (`shoal-web`'s `DriverConfig::max_connections`).
pub const TAB_MAX_CONNECTIONS: usize = 40;
/// How often the WebSocket tracker asks a tab to announce (`shoal-tracker`'s
/// `ws_interval_secs`).
pub const TRACKER_INTERVAL: Duration = Duration::from_secs(120);
/// How often the driver looks for viewers that showed their first frame (to start their
/// watch time): a viewer leaves at most this late.
const LOOK_EVERY: Duration = Duration::from_secs(1);
const WEB_SEED_URL: &str = "http://origin.example/video";
/// Mixed into the seed for the audience's draws, so they do not share a sequence with the
/// simulation's own generator (which also answers for the tracker: `Sim::introduce_random`).
const AUDIENCE_SALT: u64 = 0x0061_7564_6965_6e63;

/// How the audience arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Everybody within a short window (a link posted to many people at once).
    Flash,
    /// Arrivals spread over a long window (a stream with a steady audience).
    Steady,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Flash => "flash",
            Scenario::Steady => "steady",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        match name {
            "flash" => Some(Scenario::Flash),
            "steady" => Some(Scenario::Steady),
            _ => None,
        }
    }

    /// The arrival window unless told otherwise.
    pub fn default_arrival(self) -> Duration {
        match self {
            Scenario::Flash => Duration::from_secs(30),
            Scenario::Steady => Duration::from_secs(600),
        }
    }
}

/// Virtual time after the last arrival unless told otherwise: long enough for the last
/// viewers to start and play for minutes.
pub const DEFAULT_TAIL: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrowdConfig {
    pub seed: u64,
    pub viewers: usize,
    pub scenario: Scenario,
    /// Viewers arrive uniformly at random within this window from the start (for a given
    /// count, the arrival times of a Poisson process).
    pub arrival: Duration,
    /// Virtual time simulated in all (arrivals included).
    pub duration: Duration,
    pub file_size: u64,
    pub piece_size: u32,
    /// Bytes per second the video plays at.
    pub bitrate: u64,
    /// The origin's uplink, bytes per second.
    pub origin_upload: u64,
    /// The origin's connection limit (the core's default, as `shoal serve` uses it).
    pub origin_connections: usize,
    /// The origin spreads (`TorrentConfig::spread`).
    pub spread: bool,
    /// Viewers' uplinks, uniformly in this range (bytes per second, inclusive).
    pub uplink: (u64, u64),
    /// Viewers' downlinks, uniformly in this range (bytes per second, inclusive).
    pub downlink: (u64, u64),
    /// Viewers' connection limit.
    pub max_connections: usize,
    /// Viewers a tracker answer names at most (the origin comes on top).
    pub peers_per_announce: usize,
    /// Viewers announce again this often; `None`: only at arrival.
    pub reannounce: Option<Duration>,
    /// Mean of the (exponential) time a viewer watches after its first frame; those drawn
    /// past the end of the run watch to the end.
    pub watch_mean: Duration,
    /// The tab's memory for pieces: a larger file is fetched deadline-only.
    pub tab_memory: u64,
    /// The read-ahead the player's reader asks for (the tab's fixed one).
    pub readahead: u64,
    /// A web seed on the origin at this rate (bytes per second, shared by all), if any.
    pub web_seed: Option<u64>,
    /// One-way delay of every connection at least (each adds up to 30 ms more): the network,
    /// and in `benches/crowd.py` six tabs' event loops on two busy cores.
    pub latency: Duration,
    /// Time from a viewer's fetch to the web seed's first byte: the network's round trip, and
    /// in `benches/crowd.py` six tabs' engines on two busy cores (0.3-1 s a fetch there).
    pub web_seed_latency: Duration,
    /// From a viewer's arrival to its player asking for data: the page, its Service Worker
    /// and the `<video>` element (0.7 s for one tab, about 4 s each for six tabs on two
    /// busy cores). Meanwhile the tab's torrent runs, without a reader. Start times count
    /// from the arrival.
    pub player_delay: Duration,
    /// From a viewer's arrival to its first announce, and so to its first peers: a tab's
    /// WebRTC offers travel through the tracker and its channels open after the ICE, DTLS and
    /// SCTP handshakes (a few hundred ms alone, seconds for six tabs on two busy cores).
    /// Viewers who announce meanwhile may still connect to it.
    pub peer_delay: Duration,
    /// From a viewer's announce to its connections with the viewers it named: the origin (a
    /// native peer) answers a tab's offer at once, two busy tabs take seconds. Zero: all at
    /// once.
    pub mesh_delay: Duration,
    /// How viewers check pieces: `Identity` gives SHA-1's verdict without hashing, which at
    /// ten thousand viewers would be terabytes of SHA-1 and dominate the run.
    pub verify: Verify,
}

impl CrowdConfig {
    /// The defaults: a 1 GiB, 4 Mbit/s video in 256 KiB pieces, an origin with a 20 Mbit/s
    /// uplink that spreads, home uplinks of 1-20 Mbit/s and downlinks of 50-100 Mbit/s, the
    /// tab's limits, five minutes of tail after the arrivals.
    pub fn new(scenario: Scenario, viewers: usize) -> Self {
        let arrival = scenario.default_arrival();
        CrowdConfig {
            seed: 1,
            viewers,
            scenario,
            arrival,
            duration: arrival + DEFAULT_TAIL,
            file_size: GIB,
            // Half a second of video. Measured against 1 MiB (100 viewers, five seeds): the
            // origin sends a quarter less and viewers stall half as much, for a first frame
            // ~0.5 s later at the median; the startup buffer comes from several peers at once
            // rather than one home uplink. It costs the simulation ~1.5 times the events.
            piece_size: (256 * KIB) as u32,
            bitrate: mbit(4.0),
            // Five times the bitrate: a small server or a fibre line can feed five viewers on
            // its own, so anything beyond a handful of viewers must come from the audience.
            origin_upload: mbit(20.0),
            origin_connections: TorrentConfig::default().max_connections,
            spread: true,
            uplink: (mbit(1.0), mbit(20.0)),
            downlink: (mbit(50.0), mbit(100.0)),
            max_connections: TAB_MAX_CONNECTIONS,
            peers_per_announce: 40,
            reannounce: Some(TRACKER_INTERVAL),
            watch_mean: Duration::from_secs(300),
            tab_memory: TAB_MEMORY,
            readahead: TAB_READAHEAD,
            web_seed: None,
            latency: NetConfig::default().latency,
            web_seed_latency: WebSeedConfig::new(WEB_SEED_URL, 0).latency,
            player_delay: Duration::ZERO,
            peer_delay: Duration::ZERO,
            mesh_delay: Duration::ZERO,
            verify: Verify::Identity,
        }
    }

    /// What is wrong with the configuration, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.viewers == 0 {
            return Err("at least one viewer".into());
        }
        if !self.piece_size.is_power_of_two() || self.piece_size < 16 * 1024 {
            return Err(format!("piece size {} is not a power of two >= 16 KiB", self.piece_size));
        }
        if self.file_size == 0 || self.file_size > 64 * GIB {
            return Err(format!("file size {} is not in 1 byte..64 GiB", self.file_size));
        }
        if let Err(e) = PieceSizes::new(self.piece_size, self.file_size).piece_count() {
            return Err(e.to_string());
        }
        if self.bitrate == 0 || self.origin_upload == 0 {
            return Err("the bitrate and the origin's uplink must be positive".into());
        }
        if self.uplink.0 > self.uplink.1 || self.downlink.0 > self.downlink.1 {
            return Err("a link range's minimum is above its maximum".into());
        }
        if self.uplink.0 == 0 || self.downlink.0 == 0 {
            return Err("viewers' links must be positive".into());
        }
        if self.max_connections == 0 || self.origin_connections == 0 {
            return Err("connection limits must be positive".into());
        }
        if self.duration < self.arrival {
            return Err("the run must last at least as long as the arrivals".into());
        }
        if self.reannounce.is_some_and(|d| d.is_zero()) {
            return Err("a re-announce interval must be positive".into());
        }
        Ok(())
    }

    /// Whether viewers fetch only what their reader waits for: the tab does for a file larger
    /// than its memory.
    pub fn deadline_only(&self) -> bool {
        self.file_size > self.tab_memory
    }

    /// The read-ahead the player tells the core: the tab's, within a bounded store's share
    /// for readers' windows.
    pub fn player_readahead(&self) -> u64 {
        match self.deadline_only() {
            true => self
                .readahead
                .min(shoal_proto::eviction::windows_budget(self.tab_memory))
                .max(u64::from(self.piece_size)),
            false => self.readahead,
        }
    }

    /// The core configuration of a viewer: the tab's (`shoal-web`'s `api.rs`).
    pub fn viewer_torrent_config(&self) -> TorrentConfig {
        TorrentConfig {
            max_connections: self.max_connections,
            client_name: concat!("Shoal web ", env!("CARGO_PKG_VERSION")).to_owned(),
            file_ends_first: true,
            web_seed_grace: VIEWER_WEB_SEED_GRACE,
            // A tab's peers are WebRTC: no address to pass on (the simulator gives them one).
            peer_exchange: false,
            ..TorrentConfig::default()
        }
    }

    /// The core configuration of the origin: `shoal serve`'s.
    pub fn origin_torrent_config(&self) -> TorrentConfig {
        TorrentConfig {
            spread: self.spread,
            max_connections: self.origin_connections,
            // Its audience is tabs: WebRTC peers, no address to pass on.
            peer_exchange: false,
            ..TorrentConfig::default()
        }
    }
}

/// What a run gave, all of it determined by the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrowdFigures {
    /// Viewers that arrived.
    pub viewers: usize,
    pub virtual_secs: f64,
    pub events: u64,
    /// What left the origin's uplink for its peers (blocks, and the little else on the wire).
    pub origin_bytes: u64,
    /// What the origin's core counts as uploaded: blocks handed to the driver, including
    /// those still queued at the end and those dropped when their viewer left.
    pub origin_core_uploaded_bytes: u64,
    pub origin_bytes_per_file: f64,
    /// Of the origin's uplink capacity over the run.
    pub origin_utilisation: f64,
    /// Requests the spreading origin refused (another viewer had the piece or was being
    /// sent it), and pieces it granted anyway because a viewer asked again.
    pub origin_refused: u64,
    pub origin_granted_again: u64,
    /// Body bytes the web seed sent (kept by viewers or not: what the operator pays for).
    pub web_seed_bytes: u64,
    /// Of those, what viewers kept (the rest arrived after peers had brought it, or was cut
    /// off mid-block by a cancel).
    pub web_seed_kept_bytes: u64,
    /// Payload viewers received in all, and sent each other.
    pub viewer_downloaded_bytes: u64,
    pub viewer_uploaded_bytes: u64,
    /// Payload viewers received and threw away (duplicates, blocks no longer wanted).
    pub viewer_wasted_bytes: u64,
    /// Of what viewers received, the part the origin (peer and web seed) sent.
    pub origin_share: f64,
    /// Viewers that showed a first frame, and those that never did.
    pub started: usize,
    pub never_started: usize,
    /// Start times over all viewers (never started: arrival to the end), in seconds.
    pub start_p50_s: f64,
    pub start_p95_s: f64,
    pub start_p99_s: f64,
    pub start_max_s: f64,
    pub start_mean_s: f64,
    pub stall_ratio: f64,
    pub stalled_secs: f64,
    pub watched_secs: f64,
    pub stalls: u64,
    /// Stalls per viewer that started.
    pub stalls_per_viewer: f64,
    /// Viewers that stalled at least once.
    pub viewers_stalled: usize,
    /// Viewers that closed the tab before the end, that played to the end of the file, and
    /// that were still there at the end.
    pub viewers_left: usize,
    pub viewers_finished: usize,
    pub viewers_at_end: usize,
    /// Connections established (both handshakes) over the run.
    pub connections: u64,
    /// The origin's peers at the end.
    pub origin_peers_at_end: usize,
}

#[derive(Clone, Debug)]
pub struct CrowdReport {
    pub config: CrowdConfig,
    pub figures: CrowdFigures,
    /// Wall-clock seconds the run took (not part of what a seed determines).
    pub real_secs: f64,
    /// The process's peak resident memory (VmHWM), where the system reports it.
    pub peak_rss_mib: Option<f64>,
}

/// Where a run is, for a progress display.
#[derive(Clone, Debug)]
pub struct Progress {
    pub virtual_secs: f64,
    pub real_secs: f64,
    pub events: u64,
    pub arrived: usize,
    pub watching: usize,
    pub started: usize,
    pub pending_events: usize,
    pub live_connections: usize,
    pub origin_bytes: u64,
}

/// One viewer, drawn before the run.
#[derive(Clone, Debug)]
struct Viewer {
    arrive: Duration,
    uplink: u64,
    downlink: u64,
    /// Watch time after the first frame.
    watch: Duration,
    node: Option<NodeId>,
    started_at: Option<Duration>,
    outcome: Option<Outcome>,
}

/// What a viewer went through, taken when it leaves or at the end.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// Time to first frame, or (never started) from arrival to then.
    start: Duration,
    started: bool,
    stalls: u32,
    stalled: Duration,
    watched: Duration,
    finished: bool,
    left: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    Arrive(usize),
    Play(usize),
    Leave(usize),
    Announce(usize),
    /// The viewer's connections to the viewers its announce named (after `mesh_delay`).
    Meet(usize),
}

/// Runs the crowd.
pub fn run(config: &CrowdConfig) -> Result<CrowdReport, String> {
    run_with_progress(config, None, |_| {})
}

/// Runs the crowd, calling `progress` every `every` of virtual time.
pub fn run_with_progress(
    config: &CrowdConfig,
    every: Option<Duration>,
    mut progress: impl FnMut(&Progress),
) -> Result<CrowdReport, String> {
    config.validate()?;
    let wall = std::time::Instant::now();
    let mut run = Run::new(config)?;
    let mut next_progress = every;
    loop {
        let now = run.sim.elapsed();
        run.do_due_tasks(now);
        run.begin_watching(now);
        if let Some(at) = next_progress.filter(|&at| now >= at) {
            next_progress = every.map(|e| at + e);
            progress(&run.progress(now, wall));
        }
        if now >= config.duration || !run.advance(now) {
            break;
        }
    }
    Ok(run.report(wall))
}

/// One crowd run under way: the simulation, the audience, and what is planned for them.
struct Run<'a> {
    config: &'a CrowdConfig,
    sim: Sim,
    origin: NodeId,
    viewers: Vec<Viewer>,
    /// Tasks by virtual time, ties in the order they were planned.
    agenda: BTreeMap<(Duration, u64), Task>,
    planned: u64,
    arrived: usize,
    /// Viewers there now (arrived and not left).
    watching: usize,
    /// Viewers that arrived and have not shown a first frame yet.
    waiting: BTreeSet<usize>,
}

impl<'a> Run<'a> {
    /// The origin (and its web seed) up, and every viewer's arrival planned.
    fn new(config: &'a CrowdConfig) -> Result<Self, String> {
        let torrent = TestTorrent::random(config.seed, config.file_size, config.piece_size)
            .map_err(|e| e.to_string())?;
        let mut sim_config = SimConfig::new(config.seed);
        // The run is cut in slices of at most `LOOK_EVERY`; no slice is a livelock.
        sim_config.max_events_per_run = 1 << 62;
        sim_config.torrent = config.viewer_torrent_config();
        sim_config.net.verify = config.verify;
        sim_config.net.latency = config.latency;
        // Nothing here reads the nodes' records of disconnects and refusals; ten thousand
        // viewers keeping a thousand each would cost gigabytes.
        sim_config.max_log_records = 0;
        let mut sim = Sim::with_config(sim_config, torrent);
        let origin = sim.add_node(
            NodeConfig::seeder()
                .upload(config.origin_upload)
                .torrent_config(config.origin_torrent_config()),
        );
        if let Some(rate) = config.web_seed {
            let latency = config.web_seed_latency;
            sim.add_web_seed(WebSeedConfig { latency, ..WebSeedConfig::new(WEB_SEED_URL, rate) });
        }
        let mut run = Run {
            config,
            sim,
            origin,
            viewers: draw_viewers(config),
            agenda: BTreeMap::new(),
            planned: 0,
            arrived: 0,
            watching: 0,
            waiting: BTreeSet::new(),
        };
        for i in 0..run.viewers.len() {
            run.plan(run.viewers[i].arrive, Task::Arrive(i));
        }
        Ok(run)
    }

    fn plan(&mut self, at: Duration, task: Task) {
        self.planned += 1;
        self.agenda.insert((at, self.planned), task);
    }

    /// Carries out every task due by `now`, in order.
    fn do_due_tasks(&mut self, now: Duration) {
        while let Some(entry) = self.agenda.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let task = entry.remove();
            self.do_task(now, task);
        }
    }

    fn do_task(&mut self, now: Duration, task: Task) {
        let config = self.config;
        match task {
            Task::Arrive(i) => {
                self.arrived += 1;
                let node = arrive(&mut self.sim, config, &self.viewers[i]);
                self.viewers[i].node = Some(node);
                match config.player_delay.is_zero() {
                    true => play(&mut self.sim, config, node),
                    false => self.plan(now + config.player_delay, Task::Play(i)),
                }
                self.watching += 1;
                self.waiting.insert(i);
                if config.peer_delay.is_zero() {
                    self.do_task(now, Task::Announce(i));
                } else {
                    self.plan(now + config.peer_delay, Task::Announce(i));
                }
            }
            Task::Play(i) => {
                let Some(node) = self.viewers[i].node else { return };
                if self.viewers[i].outcome.is_none() && self.sim.node(node).is_running() {
                    play(&mut self.sim, config, node);
                }
            }
            Task::Leave(i) => {
                let Some(node) = self.viewers[i].node else { return };
                self.viewers[i].outcome = Some(outcome(&self.sim, node, true));
                self.watching -= 1;
                self.sim.stop(node);
            }
            Task::Announce(i) => {
                let Some(node) = self.viewers[i].node else { return };
                if self.viewers[i].outcome.is_some() || !self.sim.node(node).is_running() {
                    return;
                }
                if config.mesh_delay.is_zero() {
                    announce(&mut self.sim, config, node, self.origin);
                } else {
                    self.sim.introduce(node, self.origin);
                    self.plan(now + config.mesh_delay, Task::Meet(i));
                }
                if let Some(every) = config.reannounce {
                    self.plan(now + every, Task::Announce(i));
                }
            }
            Task::Meet(i) => {
                let Some(node) = self.viewers[i].node else { return };
                if self.viewers[i].outcome.is_none() && self.sim.node(node).is_running() {
                    self.sim.introduce_random(node, config.peers_per_announce);
                }
            }
        }
    }

    /// Viewers whose first frame showed begin their watch time: when they leave is planned.
    fn begin_watching(&mut self, now: Duration) {
        let started: Vec<(usize, Duration)> = self
            .waiting
            .iter()
            .filter_map(|&i| {
                let p = self.sim.player(self.viewers[i].node?)?;
                Some((i, p.asked_at.since_epoch() + p.first_frame?))
            })
            .collect();
        for (i, at) in started {
            self.waiting.remove(&i);
            self.viewers[i].started_at = Some(at);
            let leave = at + self.viewers[i].watch;
            if leave < self.config.duration {
                self.plan(leave.max(now), Task::Leave(i));
            }
        }
    }

    fn progress(&self, now: Duration, wall: std::time::Instant) -> Progress {
        Progress {
            virtual_secs: now.as_secs_f64(),
            real_secs: wall.elapsed().as_secs_f64(),
            events: self.sim.stats().events,
            arrived: self.arrived,
            watching: self.watching,
            started: self.viewers.iter().filter(|v| v.started_at.is_some()).count(),
            pending_events: self.sim.pending_events(),
            live_connections: self.sim.live_connections(),
            origin_bytes: self.sim.node(self.origin).log().wire_bytes_sent,
        }
    }

    /// Runs the simulation up to the next task, at most `LOOK_EVERY` and not past the end.
    /// False when nothing is left to happen at all (cannot be while the origin runs: its
    /// timer ticks), so the run stops rather than spins.
    fn advance(&mut self, now: Duration) -> bool {
        let end = self.config.duration;
        let next_task = self.agenda.keys().next().map_or(end, |k| k.0);
        let step = next_task.min(now + LOOK_EVERY).min(end);
        self.sim.run_for(step - now);
        self.sim.elapsed() >= step
    }

    /// The figures, with the viewers still there counted as they are at the end.
    fn report(mut self, wall: std::time::Instant) -> CrowdReport {
        for v in self.viewers.iter_mut().filter(|v| v.outcome.is_none()) {
            if let Some(node) = v.node {
                v.outcome = Some(outcome(&self.sim, node, false));
            }
        }
        let figures = figures(self.config, &self.sim, self.origin, &self.viewers);
        CrowdReport {
            config: self.config.clone(),
            figures,
            real_secs: wall.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        }
    }
}

/// The audience: arrival times, links and watch times, drawn from the seed alone.
fn draw_viewers(config: &CrowdConfig) -> Vec<Viewer> {
    let mut rng = SimRng::new(config.seed ^ AUDIENCE_SALT);
    let window = u64::try_from(config.arrival.as_nanos()).unwrap_or(u64::MAX);
    let mut viewers: Vec<Viewer> = (0..config.viewers)
        .map(|_| {
            let arrive = Duration::from_nanos(rng.below(window));
            let uplink = config.uplink.0 + rng.below(config.uplink.1 - config.uplink.0 + 1);
            let downlink = config.downlink.0 + rng.below(config.downlink.1 - config.downlink.0 + 1);
            // Exponential by inversion, to the millisecond.
            let secs = -config.watch_mean.as_secs_f64() * (1.0 - rng.unit()).ln();
            let watch = Duration::from_millis((secs * 1000.0).min(1e15) as u64);
            Viewer { arrive, uplink, downlink, watch, node: None, started_at: None, outcome: None }
        })
        .collect();
    viewers.sort_by_key(|v| v.arrive);
    viewers
}

/// The viewer opens the tab: its core starts (its player comes after `player_delay`).
fn arrive(sim: &mut Sim, config: &CrowdConfig, viewer: &Viewer) -> NodeId {
    let node = sim.add_node(NodeConfig::leecher().upload(viewer.uplink).download(viewer.downlink));
    sim.set_deadline_only(node, config.deadline_only());
    if config.web_seed.is_some() {
        sim.use_web_seed(node, WEB_SEED_URL);
    }
    node
}

/// The viewer's player asks for the start of the video.
fn play(sim: &mut Sim, config: &CrowdConfig, node: NodeId) {
    let player = PlayerConfig::new(config.bitrate).max_readahead(config.player_readahead());
    sim.play(node, player);
}

/// A tracker's answer: up to `peers_per_announce` running nodes at random, and the origin,
/// which every announce names (the app's tracker knows its own seed).
fn announce(sim: &mut Sim, config: &CrowdConfig, node: NodeId, origin: NodeId) {
    sim.introduce_random(node, config.peers_per_announce);
    sim.introduce(node, origin);
}

/// What `node`'s viewer went through up to now.
fn outcome(sim: &Sim, node: NodeId, left: bool) -> Outcome {
    let now = sim.now();
    let n = sim.node(node);
    // A viewer that never saw a frame waited from its arrival to now (or to leaving).
    let not_started = |start: Duration| Outcome {
        start,
        started: false,
        stalls: 0,
        stalled: Duration::ZERO,
        watched: Duration::ZERO,
        finished: false,
        left,
    };
    let Some(player) = n.player.as_ref() else {
        return not_started(now.saturating_since(n.added_at()));
    };
    let p = player.stats();
    let Some(first_frame) = p.first_frame else {
        return not_started(now.saturating_since(p.asked_at));
    };
    let started_at = p.asked_at + first_frame;
    // The viewer waited from its arrival (the click), not from its player's first ask.
    let first_frame = started_at.saturating_since(n.added_at());
    let until = p.finished.map_or(now, |f| f.min(now));
    let mut stalled = p.stalled;
    if let PlayerState::Waiting { reason: Wait::Stall, since } = player.state() {
        stalled += now.saturating_since(since);
    }
    Outcome {
        start: first_frame,
        started: true,
        stalls: p.stalls,
        stalled,
        watched: until.saturating_since(started_at),
        finished: p.finished.is_some(),
        left,
    }
}

fn figures(config: &CrowdConfig, sim: &Sim, origin: NodeId, viewers: &[Viewer]) -> CrowdFigures {
    let now: Instant = sim.now();
    let secs = sim.elapsed().as_secs_f64();
    let origin_node = sim.node(origin);
    let origin_bytes = origin_node.log().wire_bytes_sent;
    let outcomes: Vec<Outcome> = viewers.iter().filter_map(|v| v.outcome).collect();
    let (mut downloaded, mut uploaded, mut wasted, mut web_seed_kept) = (0u64, 0u64, 0u64, 0u64);
    for node in viewers.iter().filter_map(|v| v.node) {
        let stats = sim.node(node).stats(now);
        downloaded += stats.downloaded;
        uploaded += stats.uploaded;
        wasted += stats.wasted;
        web_seed_kept += stats.web_seed_downloaded;
    }
    let web_seed = sim.web_seed_bytes(WEB_SEED_URL);
    let mut starts: Vec<f64> = outcomes.iter().map(|o| o.start.as_secs_f64()).collect();
    starts.sort_by(f64::total_cmp);
    let started = outcomes.iter().filter(|o| o.started).count();
    let stalled: Duration = outcomes.iter().map(|o| o.stalled).sum();
    let watched: Duration = outcomes.iter().map(|o| o.watched).sum();
    let stalls: u64 = outcomes.iter().map(|o| u64::from(o.stalls)).sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    CrowdFigures {
        viewers: outcomes.len(),
        virtual_secs: secs,
        events: sim.stats().events,
        origin_bytes,
        origin_core_uploaded_bytes: origin_node.stats(now).uploaded,
        origin_bytes_per_file: ratio(origin_bytes as f64, config.file_size as f64),
        origin_utilisation: ratio(origin_bytes as f64, config.origin_upload as f64 * secs),
        origin_refused: origin_node.stats(now).spread_refused,
        origin_granted_again: origin_node.stats(now).spread_granted_again,
        web_seed_bytes: web_seed,
        web_seed_kept_bytes: web_seed_kept,
        viewer_downloaded_bytes: downloaded,
        viewer_uploaded_bytes: uploaded,
        viewer_wasted_bytes: wasted,
        origin_share: ratio((origin_bytes + web_seed) as f64, downloaded as f64),
        started,
        never_started: outcomes.len() - started,
        start_p50_s: percentile(&starts, 0.50),
        start_p95_s: percentile(&starts, 0.95),
        start_p99_s: percentile(&starts, 0.99),
        start_max_s: starts.last().copied().unwrap_or(0.0),
        start_mean_s: ratio(starts.iter().sum(), starts.len() as f64),
        stall_ratio: ratio(stalled.as_secs_f64(), watched.as_secs_f64()),
        stalled_secs: stalled.as_secs_f64(),
        watched_secs: watched.as_secs_f64(),
        stalls,
        stalls_per_viewer: ratio(stalls as f64, started as f64),
        viewers_stalled: outcomes.iter().filter(|o| o.stalls > 0).count(),
        viewers_left: outcomes.iter().filter(|o| o.left).count(),
        viewers_finished: outcomes.iter().filter(|o| o.finished).count(),
        viewers_at_end: outcomes.iter().filter(|o| !o.left).count(),
        connections: sim.stats().connections,
        origin_peers_at_end: origin_node.peer_count(),
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident set (VmHWM in `/proc/self/status`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl CrowdReport {
    /// One JSON object: the figures, what the run cost, and the configuration.
    pub fn to_json(&self) -> String {
        let c = &self.config;
        let f = &self.figures;
        let mut o = JsonObject::default();
        o.str("scenario", c.scenario.name());
        o.num("seed", c.seed);
        o.num("viewers", f.viewers);
        o.float("virtual_secs", f.virtual_secs);
        o.float("real_secs", self.real_secs);
        o.num("events", f.events);
        match self.peak_rss_mib {
            Some(mib) => o.float("peak_rss_mib", mib),
            None => o.raw("peak_rss_mib", "null"),
        }
        o.num("origin_bytes", f.origin_bytes);
        o.float("origin_bytes_per_file", f.origin_bytes_per_file);
        o.num("origin_refused", f.origin_refused);
        o.num("origin_granted_again", f.origin_granted_again);
        o.num("origin_core_uploaded_bytes", f.origin_core_uploaded_bytes);
        o.float("origin_utilisation", f.origin_utilisation);
        if c.web_seed.is_some() {
            o.num("web_seed_bytes", f.web_seed_bytes);
            o.num("web_seed_kept_bytes", f.web_seed_kept_bytes);
        }
        o.num("viewer_downloaded_bytes", f.viewer_downloaded_bytes);
        o.num("viewer_uploaded_bytes", f.viewer_uploaded_bytes);
        o.num("viewer_wasted_bytes", f.viewer_wasted_bytes);
        o.float("origin_share", f.origin_share);
        o.num("started", f.started);
        o.num("never_started", f.never_started);
        o.str(
            "start_note",
            "start = arrival to first frame; viewers that never started count as arrival to the \
             end of the run",
        );
        o.float("start_p50_s", f.start_p50_s);
        o.float("start_p95_s", f.start_p95_s);
        o.float("start_p99_s", f.start_p99_s);
        o.float("start_max_s", f.start_max_s);
        o.float("start_mean_s", f.start_mean_s);
        o.float("stall_ratio", f.stall_ratio);
        o.float("stalled_secs", f.stalled_secs);
        o.float("watched_secs", f.watched_secs);
        o.num("stalls", f.stalls);
        o.float("stalls_per_viewer", f.stalls_per_viewer);
        o.num("viewers_stalled", f.viewers_stalled);
        o.num("viewers_left", f.viewers_left);
        o.num("viewers_finished", f.viewers_finished);
        o.num("viewers_at_end", f.viewers_at_end);
        o.num("connections", f.connections);
        o.num("origin_peers_at_end", f.origin_peers_at_end);

        let mut k = JsonObject::default();
        k.float("arrival_secs", c.arrival.as_secs_f64());
        k.float("duration_secs", c.duration.as_secs_f64());
        k.num("file_size", c.file_size);
        k.num("piece_size", c.piece_size);
        k.num("bitrate_bytes_per_sec", c.bitrate);
        k.num("origin_upload_bytes_per_sec", c.origin_upload);
        k.num("origin_connections", c.origin_connections);
        k.raw("spread", if c.spread { "true" } else { "false" });
        k.num("uplink_min_bytes_per_sec", c.uplink.0);
        k.num("uplink_max_bytes_per_sec", c.uplink.1);
        k.num("downlink_min_bytes_per_sec", c.downlink.0);
        k.num("downlink_max_bytes_per_sec", c.downlink.1);
        k.num("max_connections", c.max_connections);
        k.num("peers_per_announce", c.peers_per_announce);
        match c.reannounce {
            Some(d) => k.float("reannounce_secs", d.as_secs_f64()),
            None => k.raw("reannounce_secs", "null"),
        }
        k.float("watch_mean_secs", c.watch_mean.as_secs_f64());
        k.num("tab_memory", c.tab_memory);
        k.raw("deadline_only", if c.deadline_only() { "true" } else { "false" });
        k.num("player_readahead", c.player_readahead());
        match c.web_seed {
            Some(rate) => k.num("web_seed_bytes_per_sec", rate),
            None => k.raw("web_seed_bytes_per_sec", "null"),
        }
        k.float("latency_secs", c.latency.as_secs_f64());
        k.float("web_seed_latency_secs", c.web_seed_latency.as_secs_f64());
        k.float("player_delay_secs", c.player_delay.as_secs_f64());
        k.float("peer_delay_secs", c.peer_delay.as_secs_f64());
        k.float("mesh_delay_secs", c.mesh_delay.as_secs_f64());
        k.str("verify", verify_name(c.verify));
        o.raw("config", &k.finish());
        o.finish()
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let f = &self.figures;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} crowd, seed {}: {} viewers over {:.0} s, {:.0} s simulated ({} events) in {:.1} s \
             real, peak RSS {}",
            c.scenario.name(),
            c.seed,
            f.viewers,
            c.arrival.as_secs_f64(),
            f.virtual_secs,
            f.events,
            self.real_secs,
            self.peak_rss_mib.map_or("unknown".into(), |m| format!("{m:.0} MiB")),
        );
        let _ = writeln!(
            s,
            "video {} MiB at {:.1} Mbit/s in {} KiB pieces; origin {:.1} Mbit/s, spread {}",
            c.file_size / MIB,
            c.bitrate as f64 * 8.0 / 1e6,
            c.piece_size / 1024,
            c.origin_upload as f64 * 8.0 / 1e6,
            if c.spread { "on" } else { "off" },
        );
        let _ = writeln!(
            s,
            "origin sent {:.2} files ({} MiB, {:.0}% of its uplink); {:.1}% of what viewers got",
            f.origin_bytes_per_file,
            f.origin_bytes / MIB,
            f.origin_utilisation * 100.0,
            f.origin_share * 100.0,
        );
        if c.web_seed.is_some() {
            let _ = writeln!(s, "web seed sent {} MiB", f.web_seed_bytes / MIB);
        }
        let _ = writeln!(
            s,
            "start: p50 {:.2} s, p95 {:.2} s, max {:.2} s; {} never started (counted as arrival \
             to the end)",
            f.start_p50_s, f.start_p95_s, f.start_max_s, f.never_started,
        );
        let _ = writeln!(
            s,
            "stalls: ratio {:.4} ({:.0} s of {:.0} s watched), {:.2} per viewer, {} viewers \
             stalled",
            f.stall_ratio, f.stalled_secs, f.watched_secs, f.stalls_per_viewer, f.viewers_stalled,
        );
        let _ = write!(
            s,
            "viewers: {} left early, {} finished the video, {} still watching at the end",
            f.viewers_left, f.viewers_finished, f.viewers_at_end,
        );
        s
    }
}

pub fn verify_name(verify: Verify) -> &'static str {
    match verify {
        Verify::Sha1 => "sha1",
        Verify::Identity => "identity",
    }
}

/// A flat JSON object written by hand: keys are ours, strings are escaped.
#[derive(Default)]
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        escape(&mut self.out, key);
        self.out.push(':');
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push_str(value);
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        escape(&mut self.out, value);
    }

    fn num(&mut self, key: &str, value: impl std::fmt::Display) {
        self.raw(key, &value.to_string());
    }

    fn float(&mut self, key: &str, value: f64) {
        // JSON has no NaN or infinity.
        let text = if value.is_finite() { format!("{value}") } else { "null".into() };
        self.raw(key, &text);
    }

    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn json_is_escaped_and_flat() {
        let mut o = JsonObject::default();
        o.str("a\"b", "c\\d\n");
        o.num("n", 3u32);
        o.float("x", f64::NAN);
        assert_eq!(o.finish(), r#"{"a\"b":"c\\d\u000a","n":3,"x":null}"#);
    }
}
