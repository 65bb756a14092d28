//! The `shoal` command: create and inspect torrents, download, seed and stream them, and run a
//! tracker.
//!
//! Exit codes: 0 success, 1 the command failed, 2 the command line was wrong. Errors go to
//! stderr as `shoal: <message>: <cause>...`.

mod create;
mod download;
mod html;
mod info;
mod made;
mod output;
mod seed;
mod serve;
mod signals;
mod stream;
mod tracker;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use output::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "BitTorrent for the web: create, inspect, download and seed torrents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a .torrent from a file or a folder.
    Create(CreateArgs),
    /// Show what a .torrent or a magnet link describes.
    Info(InfoArgs),
    /// Download a torrent (a .torrent file, a magnet link or an http(s) URL of a .torrent).
    Download(DownloadArgs),
    /// Share a torrent's content with others.
    Seed(SeedArgs),
    /// Watch a torrent's video (or any file) while it downloads: serves its files over HTTP
    /// with byte ranges, for any player.
    Stream(StreamArgs),
    /// Run a tracker: HTTP, UDP and WebSocket (WebTorrent signalling) listeners in one process.
    Tracker(tracker::TrackerArgs),
    /// Serve the web app, run the tracker and seed FILES (or a sample video) for browsers and
    /// classic clients alike; prints a link that plays each file in the browser.
    Serve(serve::ServeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file or folder to share.
    pub path: PathBuf,
    /// Where to write the .torrent [default: NAME.torrent in the current folder].
    #[arg(short, long, value_name = "OUT.torrent")]
    pub output: Option<PathBuf>,
    /// A tracker announce URL; each one gets its own tier. Repeat for several.
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// An HTTP web seed (BEP 19). Repeat for several.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Piece size: a power of two from 16KiB to 256MiB, e.g. 16384, 256KiB, 1MiB
    /// [default: chosen for about 1000-2000 pieces].
    #[arg(long, value_name = "SIZE", value_parser = parse_piece_size)]
    pub piece_size: Option<u32>,
    /// The torrent's name [default: the file or folder name].
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Mark the torrent private (BEP 27: trackers only, no DHT or peer exchange).
    #[arg(long)]
    pub private: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A .torrent file or a magnet link.
    #[arg(value_name = "TORRENT|MAGNET")]
    pub source: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// A .torrent file, a magnet link or an http(s) URL of a .torrent.
    #[arg(value_name = "TORRENT|MAGNET|URL")]
    pub source: String,
    /// The folder to download into.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// A peer to connect to directly. Repeat for several.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Address to accept incoming peer connections on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Keep seeding once the download is complete.
    #[arg(long)]
    pub seed: bool,
    /// Print JSON lines (progress, then a summary) instead of text.
    #[arg(long)]
    pub json: bool,
    /// An extra tracker announce URL. Repeat for several.
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Download only these files (indices as `shoal info` lists them).
    #[arg(long, value_name = "INDEX,...", value_delimiter = ',')]
    pub only: Vec<u32>,
    /// An HTTP web seed (BEP 19 url-list style: the file's URL, or the folder holding the
    /// torrent's name for multi-file torrents), besides the torrent's own. Repeat for several.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    #[command(flatten)]
    pub rates: RateArgs,
    #[command(flatten)]
    pub webrtc: WebRtcArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// A .torrent file (its content is looked for in DIR), or a file or folder to share (a
    /// torrent is made for it first).
    #[arg(value_name = "TORRENT|PATH")]
    pub source: PathBuf,
    /// The folder holding the content of TORRENT [default: the current folder].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Address to accept incoming peer connections on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// A tracker announce URL. Repeat for several.
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// A peer to connect to directly. Repeat for several.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Answer every request, even for pieces the peers could pass on to each other (by
    /// default each piece is sent about once and the swarm shares it).
    #[arg(long)]
    pub no_spread: bool,
    #[command(flatten)]
    pub rates: RateArgs,
    /// Piece size of the torrent made for a PATH, as `create --piece-size` (16KiB to 256MiB)
    /// [default: as `create`].
    #[arg(long, value_name = "SIZE", value_parser = parse_piece_size)]
    pub piece_size: Option<u32>,
    #[command(flatten)]
    pub webrtc: WebRtcArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// A .torrent file, a magnet link or an http(s) URL of a .torrent.
    #[arg(value_name = "TORRENT|MAGNET|URL")]
    pub source: String,
    /// Address of the HTTP server (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    pub http: SocketAddr,
    /// The file to play: an index (as `shoal info` lists them), a path or a file name
    /// [default: the largest video, else the largest audio file, else the largest file].
    #[arg(long, value_name = "INDEX|NAME")]
    pub file: Option<String>,
    /// A player to start on the file's URL, e.g. mpv or vlc; shoal stops when it exits.
    #[arg(long, value_name = "PROGRAM")]
    pub player: Option<String>,
    /// Keep pieces in memory, at most this much (e.g. 64MiB, 1GiB); played pieces are
    /// dropped first [default: 512MiB when -o is not given].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "output")]
    pub max_memory: Option<u64>,
    /// Write the files to this folder instead (the whole torrent is downloaded and kept).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// A peer to connect to directly. Repeat for several.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Address to accept incoming peer connections on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// An extra tracker announce URL. Repeat for several.
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// An HTTP web seed (BEP 19 url-list style: the file's URL, or the folder holding the
    /// torrent's name for multi-file torrents), besides the torrent's own. Repeat for several.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Print JSON lines (the URLs once ready, then progress) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub rates: RateArgs,
    #[command(flatten)]
    pub webrtc: WebRtcArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// How WebRTC peers (browsers, WebTorrent) are reached; shared by download, seed and stream.
#[derive(Debug, Args, Clone, Default)]
pub struct WebRtcArgs {
    /// Speak TCP only: no WebRTC, and `ws://`/`wss://` trackers are skipped.
    #[arg(long)]
    pub no_webrtc: bool,
    /// UDP address for WebRTC connections [default: the default route's address, any port].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_webrtc")]
    pub webrtc_bind: Option<SocketAddr>,
    /// A STUN server (HOST:PORT) to learn our public address from, for peers behind other
    /// networks' NATs.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_webrtc")]
    pub stun: Option<String>,
    /// Largest UDP payload WebRTC connections send, 576-1500 [default: 1150, safe on any
    /// path; 1500 for a peer on this machine]. Raise it (e.g. 1400) only where the path MTU
    /// is known: fewer, larger packets, but packets above the path's MTU are lost. When given,
    /// it applies to every peer, local ones included.
    #[arg(long, value_name = "BYTES", conflicts_with = "no_webrtc")]
    pub webrtc_mtu: Option<usize>,
}

impl WebRtcArgs {
    /// The session's WebRTC settings; `None` when turned off.
    pub fn config(&self) -> Option<shoal::webrtc::WebRtcConfig> {
        if self.no_webrtc {
            return None;
        }
        let mut config = shoal::webrtc::WebRtcConfig::default();
        if let Some(bind) = self.webrtc_bind {
            config.bind = bind;
        }
        config.stun = self.stun.clone();
        if let Some(mtu) = self.webrtc_mtu {
            config.mtu = mtu;
            // The size asked for is the size used, peers on this host included.
            config.full_size_on_this_host = false;
        }
        Some(config)
    }
}

/// How peers are found besides trackers, how they find us, and how they are spoken to: the
/// Mainline DHT (BEP 5), local service discovery (BEP 14), port mapping, protocol encryption;
/// and what is kept between runs (resume records); shared by download, seed, stream and serve.
#[derive(Debug, Args, Clone, Default)]
pub struct DiscoveryArgs {
    /// No DHT: peers come from trackers, --peer, peer exchange and the LAN only.
    #[arg(long, env = "SHOAL_NO_DHT", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_dht: bool,
    /// A DHT node to join through instead of the well-known routers. Repeat for several.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", conflicts_with = "no_dht")]
    pub dht_bootstrap: Vec<String>,
    /// Where the DHT's nodes are kept between runs, so a restart needs no router
    /// [default: $XDG_STATE_HOME/shoal/dht.json, else ~/.local/state/shoal/dht.json].
    #[arg(long, value_name = "FILE", conflicts_with = "no_dht")]
    pub dht_state: Option<PathBuf>,
    /// No local service discovery: do not announce torrents on the LAN's multicast group,
    /// nor take peers from it.
    #[arg(long, env = "SHOAL_NO_LSD", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_lsd: bool,
    /// Do not ask the home router (PCP, NAT-PMP, UPnP IGD) to forward the listen port.
    #[arg(
        long,
        env = "SHOAL_NO_PORT_MAPPING",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_port_mapping: bool,
    /// Protocol encryption (MSE/PE) with TCP peers. prefer: connect encrypted (RC4), retry in
    /// plaintext when the peer will not, accept both; require: RC4 only, both ways (plaintext
    /// peers get nothing); disable: plaintext only.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Encryption::Prefer)]
    pub encryption: Encryption,
    /// Speak TCP only: no uTP (BEP 29, LEDBAT) on the listen port's UDP side, and none tried
    /// beside TCP when dialling.
    #[arg(long, env = "SHOAL_NO_UTP", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_utp: bool,
    /// Where each torrent's resume record is kept (which pieces are verified, beside its files'
    /// sizes and times), so a restart with unchanged files does not hash them again
    /// [default: $XDG_STATE_HOME/shoal/resume, else ~/.local/state/shoal/resume].
    #[arg(long, value_name = "DIR", conflicts_with = "no_resume")]
    pub resume_dir: Option<PathBuf>,
    /// Keep no resume record: every start hashes the data already there.
    #[arg(long, env = "SHOAL_NO_RESUME", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_resume: bool,
}

/// The process's byte rate caps (`download`, `seed`, `stream`, `serve`).
#[derive(Debug, Clone, Copy, Args)]
pub struct RateArgs {
    /// Cap on everything sent, per second, e.g. 2MiB: to peers (TCP, uTP and WebRTC together)
    /// and, for `serve`, to web seed clients [default: no cap].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
    /// Cap on everything received from peers and web seeds together, per second, e.g. 5MiB
    /// [default: no cap].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download_rate: Option<u64>,
}

/// `--encryption`'s values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encryption {
    #[default]
    Prefer,
    Require,
    Disable,
}

impl DiscoveryArgs {
    /// What the session turns on, from these flags.
    pub fn discovery(&self) -> crate::transfer::Discovery {
        crate::transfer::Discovery {
            dht: self.dht(),
            lsd: !self.no_lsd,
            port_mapping: !self.no_port_mapping,
            encryption: match self.encryption {
                Encryption::Prefer => shoal::EncryptionPolicy::Prefer,
                Encryption::Require => shoal::EncryptionPolicy::Require,
                Encryption::Disable => shoal::EncryptionPolicy::Disable,
            },
            utp: !self.no_utp,
            resume_dir: match self.no_resume {
                true => None,
                false => self.resume_dir.clone().or_else(|| default_state("resume")),
            },
        }
    }

    /// The session's DHT settings; `None` when turned off.
    fn dht(&self) -> Option<shoal::dht::DhtConfig> {
        if self.no_dht {
            return None;
        }
        Some(shoal::dht::DhtConfig {
            bootstrap: (!self.dht_bootstrap.is_empty()).then(|| self.dht_bootstrap.clone()),
            state_file: self.dht_state.clone().or_else(|| default_state("dht.json")),
            ..shoal::dht::DhtConfig::default()
        })
    }
}

/// `name` in `$XDG_STATE_HOME/shoal`, else in `~/.local/state/shoal` (the XDG base directory
/// rule for state that outlives a run but is not worth a backup).
fn default_state(name: &str) -> Option<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state").map(|d| d.join("shoal").join(name))
}

/// `$XDG_DATA_HOME/shoal/NAME`, else `~/.local/share/shoal/NAME`: what a person keeps (the
/// server's library).
pub(crate) fn default_data(name: &str) -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("shoal").join(name))
}

/// `~/Downloads`, where downloads go unless told otherwise.
pub(crate) fn default_downloads() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute())?;
    Some(home.join("Downloads"))
}

/// An XDG base folder: the variable when it holds an absolute path, else `$HOME/FALLBACK`.
fn xdg_dir(variable: &str, fallback: &str) -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os(variable)
        .and_then(absolute)
        .or_else(|| std::env::var_os("HOME").and_then(absolute).map(|h| h.join(fallback)))
}

/// A byte count: `1000`, `64KiB`, `64MiB`, `2GiB` (`K`, `KB`, `M`, `MB`... are binary too).
fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} (use KiB, MiB or GiB)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is not a size"))
}

/// A rate in bytes per second: a size (`2MiB`, `500k`), optionally followed by `/s`.
fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let size = trimmed.strip_suffix("/s").unwrap_or(trimmed);
    parse_size(size).map_err(|_| format!("{text:?} is not a rate (e.g. 2MiB, 500KiB/s)"))
}

/// `16384`, `256KiB`, `256k`, `1MiB`, `1M`: piece sizes are always binary, so `KB` and `MB`
/// mean KiB and MiB too.
pub(crate) fn parse_piece_size(text: &str) -> Result<u32, String> {
    let size = parse_size(text)?;
    let min = u64::from(shoal_proto::create::MIN_PIECE_LENGTH);
    let max = u64::from(shoal_proto::metainfo::MAX_PIECE_LENGTH);
    if !size.is_power_of_two() || !(min..=max).contains(&size) {
        return Err(format!("{size} bytes is not a power of two between 16KiB and 256MiB"));
    }
    Ok(size as u32)
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The DHT crate logs what remote nodes get wrong as errors: not the user's
                // business (RUST_LOG=mainline=debug shows it).
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mainline=off")),
        )
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::with_source("cannot start the async runtime", e))
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", output::format_error(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    // The commands that run until stopped stop cleanly on Ctrl-C and SIGTERM from now on.
    if !matches!(command, Command::Create(_) | Command::Info(_)) {
        signals::listen();
    }
    match command {
        Command::Create(args) => tokio::task::spawn_blocking(move || create::run(args))
            .await
            .map_err(|e| CliError::with_source("hashing stopped", e))?,
        Command::Info(args) => info::run(args),
        Command::Download(args) => download::run(args).await,
        Command::Seed(args) => seed::run(args).await,
        Command::Stream(args) => stream::run(args).await,
        Command::Tracker(args) => tracker::run(args).await,
        Command::Serve(args) => serve::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn piece_sizes_parse() {
        assert_eq!(parse_piece_size("16384"), Ok(16384));
        assert_eq!(parse_piece_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_piece_size("256k"), Ok(256 << 10));
        assert_eq!(parse_piece_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_piece_size("4 MB"), Ok(4 << 20));
        assert!(parse_piece_size("1000").is_err());
        assert!(parse_piece_size("8KiB").is_err());
        assert!(parse_piece_size("512MiB").is_err());
        assert!(parse_piece_size("1GiB").is_err());
        assert!(parse_piece_size("lots").is_err());
        assert!(parse_piece_size("99999999999999999999").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("2MiB"), Ok(2 << 20));
        assert_eq!(parse_rate("500KiB/s"), Ok(500 << 10));
        assert_eq!(parse_rate(" 1000 "), Ok(1000));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        let err = Cli::try_parse_from(["shoal", "seed", "f", "--max-upload-rate", "fast"]);
        assert!(err.is_err_and(|e| e.to_string().contains("is not a rate")));
        let cli = Cli::try_parse_from(["shoal", "seed", "f", "--max-upload-rate", "2MiB"]);
        match cli.map(|c| c.command) {
            Ok(Command::Seed(args)) => assert_eq!(args.rates.max_upload_rate, Some(2 << 20)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "shoal",
            "download",
            "x.torrent",
            "--only",
            "1,3",
            "--peer",
            "[::1]:1",
        ])
        .unwrap();
        match cli.command {
            Command::Download(args) => {
                assert_eq!(args.only, vec![1, 3]);
                assert_eq!(args.peers, vec!["[::1]:1"]);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
