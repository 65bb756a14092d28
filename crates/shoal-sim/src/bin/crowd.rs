//! A crowd watching a video from one capped origin, simulated (see `shoal_sim::crowd`).
//!
//! `cargo run --release -p shoal-sim --bin crowd -- --viewers 10000 --json`

use std::process::ExitCode;
use std::time::Duration;

use shoal_sim::crowd::{self, CrowdConfig, Scenario, DEFAULT_TAIL};
use shoal_sim::Verify;

const USAGE: &str = "\
usage: crowd [options]

Simulates viewers arriving at a video served by one origin with a capped uplink, each a
browser tab (the real core with the tab's policy) that plays from the start, and reports what
the origin sent, time to first frame and stalls. The same seed gives the same figures.

  --viewers N             viewers (default 1000)
  --scenario NAME         flash (arrivals within 30 s) or steady (within 600 s); default flash
  --arrival-secs S        arrival window (default: the scenario's)
  --duration S            virtual seconds simulated in all (default: arrivals + 300)
  --seed N                default 1
  --file-size SIZE        video size (default 1GiB); SIZE is bytes or with KiB, MiB, GiB
  --piece-size SIZE       default 256KiB
  --bitrate MBIT          video bitrate in Mbit/s (default 4)
  --origin-upload MBIT    origin's uplink in Mbit/s (default 20)
  --origin-connections N  origin's connection limit (default 80, the core's)
  --no-spread             the origin serves every request (no spreading)
  --uplink-min MBIT       viewers' uplinks, uniform in min..max Mbit/s (default 1..20)
  --uplink-max MBIT
  --downlink-min MBIT     viewers' downlinks (default 50..100)
  --downlink-max MBIT
  --max-connections N     viewers' connection limit (default 40, the tab's)
  --peers-per-announce N  viewers a tracker answer names, besides the origin (default 40)
  --reannounce S          re-announce interval, 0 for never (default 120, the ws tracker's)
  --watch-mean S          mean watch time after the first frame, exponential (default 300)
  --tab-memory SIZE       tab's memory for pieces; a larger file is deadline-only (512MiB)
  --readahead SIZE        player's read-ahead (default 8MiB, the tab's)
  --web-seed MBIT         also a web seed on the origin at this rate (default none)
  --latency SECS          one-way delay of every connection at least (default 0.02)
  --web-seed-latency SECS time to the web seed's first byte (default 0.03)
  --player-delay SECS     from a viewer's arrival to its player asking for data (default 0)
  --peer-delay SECS       from a viewer's arrival to its first announce and peers (default 0)
  --mesh-delay SECS       from an announce to the connections with other viewers (default 0)
  --verify KIND           identity (default: SHA-1's verdict without hashing) or sha1
  --progress              progress lines on stderr every 10 virtual seconds
  --json                  one JSON object on stdout instead of a summary
";

struct Args {
    config: CrowdConfig,
    json: bool,
    progress: bool,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("crowd: {e}\n(see crowd --help)");
            return ExitCode::from(2);
        }
    };
    let every = args.progress.then_some(Duration::from_secs(10));
    let report = crowd::run_with_progress(&args.config, every, |p| {
        eprintln!(
            "t={:>5.0}s real={:>7.1}s events={} arrived={} watching={} started={} queue={} \
             conns={} origin={} MiB",
            p.virtual_secs,
            p.real_secs,
            p.events,
            p.arrived,
            p.watching,
            p.started,
            p.pending_events,
            p.live_connections,
            p.origin_bytes >> 20,
        );
    });
    match report {
        Ok(report) if args.json => println!("{}", report.to_json()),
        Ok(report) => println!("{}", report.summary()),
        Err(e) => {
            eprintln!("crowd: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The arguments, or `None` for `--help`.
fn parse(argv: Vec<String>) -> Result<Option<Args>, String> {
    // The scenario decides defaults of other flags: find it first.
    let mut scenario = Scenario::Flash;
    for pair in argv.windows(2) {
        if pair[0] == "--scenario" {
            scenario = Scenario::parse(&pair[1])
                .ok_or_else(|| format!("unknown scenario {:?} (flash or steady)", pair[1]))?;
        }
    }
    let mut config = CrowdConfig::new(scenario, 1000);
    let (mut arrival, mut duration) = (None, None);
    let (mut json, mut progress) = (false, false);
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--progress" => progress = true,
            "--no-spread" => config.spread = false,
            "--scenario" => {
                value()?;
            }
            "--viewers" => config.viewers = number(&flag, &value()?)?,
            "--seed" => config.seed = number(&flag, &value()?)?,
            "--arrival-secs" => arrival = Some(seconds(&flag, &value()?)?),
            "--duration" => duration = Some(seconds(&flag, &value()?)?),
            "--file-size" => config.file_size = size(&flag, &value()?)?,
            "--piece-size" => {
                let bytes = size(&flag, &value()?)?;
                config.piece_size =
                    u32::try_from(bytes).map_err(|_| format!("{flag}: {bytes} is too large"))?;
            }
            "--bitrate" => config.bitrate = rate(&flag, &value()?)?,
            "--origin-upload" => config.origin_upload = rate(&flag, &value()?)?,
            "--origin-connections" => config.origin_connections = number(&flag, &value()?)?,
            "--uplink-min" => config.uplink.0 = rate(&flag, &value()?)?,
            "--uplink-max" => config.uplink.1 = rate(&flag, &value()?)?,
            "--downlink-min" => config.downlink.0 = rate(&flag, &value()?)?,
            "--downlink-max" => config.downlink.1 = rate(&flag, &value()?)?,
            "--max-connections" => config.max_connections = number(&flag, &value()?)?,
            "--peers-per-announce" => config.peers_per_announce = number(&flag, &value()?)?,
            "--reannounce" => {
                let every = seconds(&flag, &value()?)?;
                config.reannounce = (!every.is_zero()).then_some(every);
            }
            "--watch-mean" => config.watch_mean = seconds(&flag, &value()?)?,
            "--tab-memory" => config.tab_memory = size(&flag, &value()?)?,
            "--readahead" => config.readahead = size(&flag, &value()?)?,
            "--web-seed" => config.web_seed = Some(rate(&flag, &value()?)?),
            "--latency" => config.latency = seconds(&flag, &value()?)?,
            "--web-seed-latency" => config.web_seed_latency = seconds(&flag, &value()?)?,
            "--player-delay" => config.player_delay = seconds(&flag, &value()?)?,
            "--peer-delay" => config.peer_delay = seconds(&flag, &value()?)?,
            "--mesh-delay" => config.mesh_delay = seconds(&flag, &value()?)?,
            "--verify" => {
                config.verify = match value()?.as_str() {
                    "identity" => Verify::Identity,
                    "sha1" => Verify::Sha1,
                    other => return Err(format!("--verify: {other:?} is not identity or sha1")),
                }
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if let Some(arrival) = arrival {
        config.arrival = arrival;
    }
    config.duration = duration.unwrap_or(config.arrival + DEFAULT_TAIL);
    config.validate()?;
    Ok(Some(Args { config, json, progress }))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{flag}: {text:?} is not a whole number in range"))
}

fn float(flag: &str, text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{flag}: {text:?} is not a non-negative number")),
    }
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    let secs = float(flag, text)?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{flag}: {text:?} is out of range"))
}

/// Megabits per second to bytes per second.
fn rate(flag: &str, text: &str) -> Result<u64, String> {
    let mbit = float(flag, text)?;
    if mbit > 1e6 {
        return Err(format!("{flag}: {text} Mbit/s is out of range"));
    }
    Ok(crowd::mbit(mbit))
}

/// Bytes, optionally with a binary unit (`256KiB`, `1MiB`, `1GiB`; `K`, `M`, `G` too).
fn size(flag: &str, text: &str) -> Result<u64, String> {
    let bad = || format!("{flag}: {text:?} is not a size (bytes, or with KiB, MiB, GiB)");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        parse(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn flags_set_the_configuration() {
        let a = args(&["--scenario", "steady", "--viewers", "50", "--piece-size", "256KiB"])
            .ok()
            .flatten()
            .map(|a| a.config);
        let c = a.unwrap_or_else(|| panic!("rejected"));
        assert_eq!((c.viewers, c.piece_size), (50, 256 * 1024));
        assert_eq!(c.arrival, Duration::from_secs(600));
        assert_eq!(c.duration, Duration::from_secs(900));
        assert_eq!(size("x", "1GiB"), Ok(1 << 30));
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(args(&["--viewers"]).is_err());
        assert!(args(&["--viewers", "many"]).is_err());
        assert!(args(&["--scenario", "riot"]).is_err());
        assert!(args(&["--piece-size", "1000"]).is_err());
        assert!(args(&["--bitrate", "-4"]).is_err());
        assert!(args(&["--frobnicate"]).is_err());
        assert!(matches!(args(&["--help"]), Ok(None)));
    }
}
