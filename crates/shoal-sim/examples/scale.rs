//! How far the simulator scales: a swarm of leechers arriving over time around one seeder
//! with a capped uplink, run for some virtual minutes, with the real time, events per second
//! and peak memory it cost.
//!
//! ```text
//! cargo run --release -p shoal-sim --example scale -- nodes=2000 mib=128 piece_kib=256 \
//!     minutes=5 arrive_s=120 verify=identity
//! ```
//!
//! Every setting is `key=value` (see `Settings`); the defaults are a 500-node run. Leechers'
//! uplinks are drawn from 1-20 Mbit/s as a crowd of home viewers would have; each is told
//! about the seeder and ~40 random others when it arrives and again every `announce_s` while
//! it is incomplete (a tracker's answer).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant as WallClock};

use shoal_sim::rng::SimRng;
use shoal_sim::{NetConfig, NodeConfig, Sim, SimConfig, TestTorrent, Verify};

/// Mixed into the seed for the leechers' uplinks.
const UPLINK_SALT: u64 = 0x7570_6c69_6e6b;

/// The system allocator, counting the bytes live on the heap: what the simulation itself
/// holds, apart from the allocator's slack that the peak RSS also shows.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_mib() -> f64 {
    LIVE.load(Relaxed) as f64 / (1u64 << 20) as f64
}

#[derive(Debug)]
struct Settings {
    nodes: usize,
    mib: u64,
    piece_kib: u32,
    minutes: u64,
    /// Leechers arrive evenly over this many virtual seconds.
    arrive_s: u64,
    /// Incomplete leechers ask the "tracker" again this often.
    announce_s: u64,
    /// Random peers per announce, and the connection cap.
    peers: usize,
    /// The seeder's uplink, bytes per second.
    seed_rate: u64,
    /// Leechers' download link, bytes per second.
    down_rate: u64,
    /// `sha1` (real hashing) or `identity` (compare against the content).
    verify: String,
    seed: u64,
    /// Print a progress line every this many virtual seconds.
    report_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nodes: 500,
            mib: 64,
            piece_kib: 256,
            minutes: 3,
            arrive_s: 60,
            announce_s: 60,
            peers: 40,
            seed_rate: 2_500_000,
            down_rate: 2_500_000,
            verify: "sha1".into(),
            seed: 1,
            report_s: 30,
        }
    }
}

fn parse() -> Result<Settings, String> {
    let mut s = Settings::default();
    for arg in std::env::args().skip(1) {
        let (key, value) = arg.split_once('=').ok_or_else(|| format!("not key=value: {arg}"))?;
        let num = || value.parse::<u64>().map_err(|e| format!("{key}: {e}"));
        match key {
            "nodes" => s.nodes = num()? as usize,
            "mib" => s.mib = num()?,
            "piece_kib" => s.piece_kib = num()? as u32,
            "minutes" => s.minutes = num()?,
            "arrive_s" => s.arrive_s = num()?,
            "announce_s" => s.announce_s = num()?.max(1),
            "peers" => s.peers = num()? as usize,
            "seed_rate" => s.seed_rate = num()?,
            "down_rate" => s.down_rate = num()?,
            "verify" => s.verify = value.to_string(),
            "seed" => s.seed = num()?,
            "report_s" => s.report_s = num()?.max(1),
            _ => return Err(format!("unknown setting {key}")),
        }
    }
    Ok(s)
}

/// Peak resident memory of this process, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU time this process has used, in seconds (Linux; 0 elsewhere). On a shared machine it
/// is a steadier measure than the wall clock.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; the
    // kernel counts them in USER_HZ, which is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let s = match parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let real = WallClock::now();
    let torrent = match TestTorrent::random(s.seed, s.mib << 20, s.piece_kib << 10) {
        Ok(torrent) => torrent,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let fixture_time = real.elapsed();
    let mut config = SimConfig::new(s.seed);
    config.torrent.max_connections = s.peers;
    config.max_events_per_run = u64::MAX;
    config.net = NetConfig::default();
    if !set_verify(&mut config.net, &s.verify) {
        eprintln!("verify must be sha1 or identity");
        std::process::exit(2);
    }
    let mut sim = Sim::with_config(config, torrent);
    let seeder = sim.add_node(NodeConfig::seeder().upload(s.seed_rate));
    // Uplinks of 1-20 Mbit/s, drawn from a fixed sequence so runs compare; salted so it does
    // not repeat the simulation's own draws.
    let mut draw = SimRng::new(s.seed ^ UPLINK_SALT);
    let mut next_uplink = move || (1 + draw.below(20)) * 125_000;
    println!("{s:?}; fixture built in {fixture_time:.1?}");

    let total = Duration::from_secs(s.minutes * 60);
    let gap = Duration::from_secs(s.arrive_s) / (s.nodes.max(1) as u32);
    let mut added = 0usize;
    let mut next_arrival = Duration::ZERO;
    let mut next_announce = Duration::from_secs(s.announce_s);
    let mut next_report = Duration::from_secs(s.report_s);
    let mut events_before = 0u64;
    let mut real_before = real.elapsed();
    let run_start = real.elapsed();
    let cpu_start = cpu_secs();
    while sim.elapsed() < total {
        while added < s.nodes && next_arrival <= sim.elapsed() {
            let node =
                sim.add_node(NodeConfig::leecher().upload(next_uplink()).download(s.down_rate));
            sim.introduce(node, seeder);
            sim.introduce_random(node, s.peers);
            added += 1;
            next_arrival += gap;
        }
        if sim.elapsed() >= next_announce {
            next_announce += Duration::from_secs(s.announce_s);
            for id in 1..sim.node_count() {
                if !sim.node(id).is_complete() {
                    sim.introduce_random(id, s.peers);
                }
            }
        }
        if sim.elapsed() >= next_report {
            next_report += Duration::from_secs(s.report_s);
            let now = real.elapsed();
            let events = sim.stats().events;
            let complete = sim.nodes().iter().skip(1).filter(|n| n.is_complete()).count();
            println!(
                "  t={:>4}s nodes={added} complete={complete} events={events} \
                 ({:.0}/s lately) pending={} conns={} real={now:.1?} heap={:.0} MiB \
                 rss={:.0} MiB",
                sim.elapsed().as_secs(),
                (events - events_before) as f64 / (now - real_before).as_secs_f64().max(1e-9),
                sim.pending_events(),
                sim.live_connections(),
                heap_mib(),
                peak_rss_mib()
            );
            events_before = events;
            real_before = now;
        }
        let mut stop = total;
        if added < s.nodes {
            stop = stop.min(next_arrival);
        }
        stop = stop.min(next_announce).min(next_report);
        let step = stop.saturating_sub(sim.elapsed()).max(Duration::from_micros(1));
        sim.run_for(step);
    }

    let run = real.elapsed() - run_start;
    let cpu = cpu_secs() - cpu_start;
    let now = sim.now();
    let stats = sim.stats().clone();
    let leechers = sim.nodes().iter().skip(1);
    let complete = leechers.clone().filter(|n| n.is_complete()).count();
    let downloaded: u64 = leechers.clone().map(|n| n.stats(now).downloaded).sum();
    // Viewer-minutes: each leecher's virtual minutes in the swarm.
    let viewer_minutes: f64 =
        leechers.map(|n| (now - n.added_at()).as_secs_f64() / 60.0).sum::<f64>();
    println!(
        "nodes={} virtual={:?} real={run:.2?} cpu={cpu:.1}s events={} events/cpu-s={:.0} \
         messages={} dials={} \
         payload={:.0} MiB (leechers got {:.0} MiB) complete={complete} \
         viewer-minutes={viewer_minutes:.0} real-ms/viewer-minute={:.1} \
         cpu-ms/viewer-minute={:.1} cpu-ms/MiB={:.2} peak-rss={:.0} MiB",
        s.nodes,
        sim.elapsed(),
        stats.events,
        stats.events as f64 / cpu.max(1e-9),
        stats.messages,
        stats.dials,
        stats.payload_bytes as f64 / (1u64 << 20) as f64,
        downloaded as f64 / (1u64 << 20) as f64,
        run.as_secs_f64() * 1000.0 / viewer_minutes.max(1e-9),
        cpu * 1000.0 / viewer_minutes.max(1e-9),
        cpu * 1000.0 / (downloaded as f64 / (1u64 << 20) as f64).max(1e-9),
        peak_rss_mib(),
    );
}

fn set_verify(net: &mut NetConfig, verify: &str) -> bool {
    net.verify = match verify {
        "sha1" => Verify::Sha1,
        "identity" => Verify::Identity,
        _ => return false,
    };
    true
}
