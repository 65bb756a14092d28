//! WebTorrent 3 in headless Chromium as a peer: `tests/web/browser_peer.mjs` (playwright-core
//! drives `/usr/bin/chromium`), with the same JSON-lines contract as the drivers in
//! `tests/peers`.
//!
//! Browser peers talk WebRTC, found through a WebSocket tracker: give them one with
//! [`BrowserOpts::announce`]. WebRTC needs an interface other than loopback, so run the test in
//! a network namespace ([`crate::netns::run_test_in_netns`]). A browser has no listening port:
//! a seed's `ready` event carries its magnet and info hash instead ([`BrowserPeer::magnet`]).
//!
//! ```no_run
//! use shoal_testkit::*;
//! # fn main() -> Result<()> {
//! # let (file, out) = (std::path::Path::new("a.bin"), std::path::Path::new("out"));
//! let opts = BrowserOpts::default().announce("ws://127.0.0.1:8000");
//! let seed = browser_seed(file, &opts)?;
//! let mut leech = browser_leech(seed.magnet().unwrap_or_default(), out, &opts)?;
//! let done = leech.wait_done(std::time::Duration::from_secs(120))?;
//! assert_eq!(done["sha1"].as_str(), Some(sha1_file(file)?.as_str()));
//! # Ok(()) }
//! ```
//!
//! WebTorrent 3 in node, with WebRTC from `@roamhq/wrtc` (`tests/web/node_peer.mjs`), is the
//! same kind of peer without a browser: [`node_seed`], [`node_leech`] take the same
//! [`BrowserOpts`] (the Chromium fields aside) and return a [`BrowserPeer`] too.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::paths::{repo_root, require_tool};
use crate::peers::{wait_download, Role};
use crate::process::ChildGuard;

/// The browser the driver runs unless `CHROMIUM` is set (what install-test-deps.sh installs).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `tests/web`: the npm side of the tests (driver, page, node_modules).
pub fn web_dir() -> PathBuf {
    repo_root().join("tests").join("web")
}

/// `web/pkg`: the browser engine built by scripts/build-web.sh.
pub fn web_pkg() -> PathBuf {
    repo_root().join("web").join("pkg")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from)
}

/// Which program a WebTorrent peer runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// `browser_peer.mjs`: headless Chromium.
    Chromium,
    /// `node_peer.mjs`: node with `@roamhq/wrtc`.
    Node,
    /// `shoal_app_peer.mjs`: Shoal's own web engine (web/shoal.js + wasm) in Chromium.
    ShoalWeb,
}

impl Driver {
    fn script(self) -> &'static str {
        match self {
            Driver::Chromium => "browser_peer.mjs",
            Driver::Node => "node_peer.mjs",
            Driver::ShoalWeb => "shoal_app_peer.mjs",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Driver::Chromium => "webtorrent",
            Driver::Node => "webtorrent-node",
            Driver::ShoalWeb => "shoal-web",
        }
    }

    /// The npm packages (under tests/web/node_modules) the driver loads.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Driver::Chromium => &["playwright-core", "webtorrent"],
            // The binary package is an optional dependency: npm skips it on other platforms.
            Driver::Node => &["webtorrent", "@roamhq/wrtc", "@roamhq/wrtc-linux-x64"],
            Driver::ShoalWeb => &["playwright-core"],
        }
    }

    fn unavailable(self) -> Option<String> {
        if let Err(e) = require_tool("node") {
            return Some(e.to_string());
        }
        let browser = chromium();
        let wasm = web_pkg().join("shoal_web_bg.wasm");
        if self == Driver::ShoalWeb && !wasm.is_file() {
            return Some(format!("{} is not built (scripts/build-web.sh)", wasm.display()));
        }
        if self != Driver::Node && !browser.is_file() {
            return Some(format!(
                "no Chromium at {} (scripts/install-test-deps.sh, or set CHROMIUM)",
                browser.display()
            ));
        }
        let modules = web_dir().join("node_modules");
        self.packages().iter().find(|p| !modules.join(p).is_dir()).map(|package| {
            format!(
                "{} lacks {package} (run `npm ci --ignore-scripts` in tests/web)",
                modules.display()
            )
        })
    }
}

/// Why browser peers cannot run here (node, Chromium or the npm packages missing), or `None`.
pub fn browser_unavailable() -> Option<String> {
    Driver::Chromium.unavailable()
}

/// Why Shoal's web engine cannot run here in Chromium (the above, or web/pkg not built).
pub fn shoal_web_unavailable() -> Option<String> {
    Driver::ShoalWeb.unavailable()
}

/// Why node WebTorrent peers cannot run here (node, or the npm packages, among them
/// `@roamhq/wrtc`, missing), or `None`.
pub fn node_webtorrent_unavailable() -> Option<String> {
    Driver::Node.unavailable()
}

/// How to run a browser peer.
#[derive(Clone, Debug)]
pub struct BrowserOpts {
    /// WebSocket trackers (`ws://` or `wss://`) to announce to.
    pub announce: Vec<String>,
    /// Leech: the driver gives up (exit 3) after this long.
    pub timeout: Duration,
    /// How long to wait for `ready` (Chromium started; a seed hashed and announced).
    pub ready_timeout: Duration,
    /// Leech: keep seeding after the download instead of exiting.
    pub keep_seeding: bool,
    /// Seed: piece length in bytes (a power of two); `None` lets WebTorrent choose.
    pub piece_length: Option<u32>,
    /// Upper bound on the driver's whole life.
    pub max_lifetime: Duration,
    /// Extra Chromium flags.
    pub chromium_args: Vec<String>,
    /// Let Chromium hide its host addresses behind mDNS names, as it does for users (the
    /// harness turns that off by default: nobody in a test namespace resolves the names).
    pub mdns: bool,
    /// Shoal web leech: also stream the first media file into a `<video>` while it
    /// downloads, and seek near its end (events `canplay`, `playing`, `seeked`).
    pub play: bool,
    /// `HOST:PORT` of a STUN server every `RTCPeerConnection` of the page uses (none by
    /// default: host candidates only).
    pub stun: Option<String>,
    /// Program and arguments the driver runs under (`nsenter -t PID -n --` to put it and its
    /// Chromium on a [`crate::nat::NatHost`]); empty to run it directly.
    pub launcher: Vec<std::ffi::OsString>,
    /// Shoal web peer: a JSON object merged into `createClient`'s options.
    pub client_options: Option<serde_json::Value>,
    /// Shoal web leech: how long the client exists before the torrent is added (an open page
    /// where someone then pastes a magnet: its offer pool has filled).
    pub idle_before_add: Duration,
}

impl Default for BrowserOpts {
    fn default() -> Self {
        BrowserOpts {
            announce: Vec::new(),
            timeout: Duration::from_secs(120),
            ready_timeout: Duration::from_secs(60),
            keep_seeding: false,
            piece_length: None,
            max_lifetime: Duration::from_secs(600),
            chromium_args: Vec::new(),
            mdns: false,
            stun: None,
            launcher: Vec::new(),
            play: false,
            client_options: None,
            idle_before_add: Duration::ZERO,
        }
    }
}

impl BrowserOpts {
    /// Adds a tracker to announce to.
    pub fn announce(mut self, url: impl Into<String>) -> Self {
        self.announce.push(url.into());
        self
    }

    /// Sets the leech timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A running browser peer; stopped (stdin closed, SIGTERM, SIGKILL) when dropped, and its
/// Chromium with it.
pub struct BrowserPeer {
    role: Role,
    ready: Value,
    keep_running: bool,
    process: ChildGuard,
}

impl BrowserPeer {
    pub fn role(&self) -> Role {
        self.role
    }

    /// The driver's `ready` event (a seed's has `magnet`, `info_hash`, `name`, `length`,
    /// `piece_length`, `files`).
    pub fn ready_event(&self) -> &Value {
        &self.ready
    }

    /// A seed's magnet URI (with its trackers).
    pub fn magnet(&self) -> Option<&str> {
        self.ready.get("magnet").and_then(Value::as_str)
    }

    /// A seed's info hash, hex.
    pub fn info_hash(&self) -> Option<&str> {
        self.ready.get("info_hash").and_then(Value::as_str)
    }

    /// The driver process: its events so far, its output, raw waits.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    /// Waits for a leech to finish; returns the `done` event (`seconds`, `bytes`, `files` with
    /// each file's `path`, `size` and `sha1`, and `sha1` for a single-file torrent). The driver
    /// has then written every file under its output folder and checked it against the bytes
    /// WebTorrent verified. Unless keeping on seeding, also waits for the driver to exit.
    pub fn wait_done(&mut self, timeout: Duration) -> Result<Value> {
        wait_download(&mut self.process, self.keep_running, timeout)
    }

    /// Stops the peer now; returns its exit status.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.process.stop()
    }
}

/// WebTorrent in Chromium seeding `file` (one file; the torrent is named after it). Returns
/// once it has hashed the file and a tracker has answered its announce.
pub fn browser_seed(file: &Path, opts: &BrowserOpts) -> Result<BrowserPeer> {
    if !file.is_file() {
        return Err(Error::Setup(format!("browser seed: {} is not a file", file.display())));
    }
    start(Driver::Chromium, Role::Seed, &[file.as_os_str()], opts)
}

/// WebTorrent in Chromium downloading `source` (a magnet URI or a .torrent path) into
/// `out_dir`. Returns once the torrent is added; then [`BrowserPeer::wait_done`].
pub fn browser_leech(
    source: impl AsRef<OsStr>,
    out_dir: &Path,
    opts: &BrowserOpts,
) -> Result<BrowserPeer> {
    start(Driver::Chromium, Role::Leech, &[source.as_ref(), out_dir.as_os_str()], opts)
}

/// WebTorrent in node seeding `file` (one file, seeded in place); like [`browser_seed`].
pub fn node_seed(file: &Path, opts: &BrowserOpts) -> Result<BrowserPeer> {
    if !file.is_file() {
        return Err(Error::Setup(format!("node seed: {} is not a file", file.display())));
    }
    start(Driver::Node, Role::Seed, &[file.as_os_str()], opts)
}

/// WebTorrent in node downloading `source` into `out_dir`; like [`browser_leech`].
pub fn node_leech(
    source: impl AsRef<OsStr>,
    out_dir: &Path,
    opts: &BrowserOpts,
) -> Result<BrowserPeer> {
    start(Driver::Node, Role::Leech, &[source.as_ref(), out_dir.as_os_str()], opts)
}

/// Shoal's web engine in Chromium seeding `file` (made into a torrent in the page).
pub fn shoal_web_seed(file: &Path, opts: &BrowserOpts) -> Result<BrowserPeer> {
    if !file.is_file() {
        return Err(Error::Setup(format!("shoal web seed: {} is not a file", file.display())));
    }
    start(Driver::ShoalWeb, Role::Seed, &[file.as_os_str()], opts)
}

/// Shoal's web engine in Chromium downloading `source`; its files are hashed in the page and,
/// with `out_dir`, written there.
pub fn shoal_web_leech(
    source: impl AsRef<OsStr>,
    out_dir: Option<&Path>,
    opts: &BrowserOpts,
) -> Result<BrowserPeer> {
    let mut positional = vec![source.as_ref()];
    positional.extend(out_dir.map(Path::as_os_str));
    start(Driver::ShoalWeb, Role::Leech, &positional, opts)
}

fn start(
    driver: Driver,
    role: Role,
    positional: &[&OsStr],
    opts: &BrowserOpts,
) -> Result<BrowserPeer> {
    if let Some(why) = driver.unavailable() {
        return Err(Error::Setup(why));
    }
    if opts.announce.is_empty() {
        return Err(Error::Setup("a browser peer needs a WebSocket tracker to announce to".into()));
    }
    let role_arg = match role {
        Role::Seed => "seed",
        Role::Leech => "leech",
    };
    let secs = |d: Duration| format!("{:.1}", d.as_secs_f64().max(1.0));
    let mut cmd = match opts.launcher.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg("node");
            cmd
        }
        None => Command::new("node"),
    };
    cmd.current_dir(web_dir())
        .arg(web_dir().join(driver.script()))
        .arg(role_arg)
        .args(positional)
        .arg("--max-seconds")
        .arg(secs(opts.max_lifetime))
        .arg("--ready-timeout")
        .arg(secs(opts.ready_timeout));
    for url in &opts.announce {
        cmd.arg("--announce").arg(url);
    }
    if driver != Driver::Node {
        cmd.arg("--chromium").arg(chromium());
        for flag in &opts.chromium_args {
            cmd.arg(format!("--chromium-arg={flag}"));
        }
        if opts.mdns {
            cmd.arg("--mdns");
        }
        if let Some(stun) = &opts.stun {
            cmd.arg("--stun").arg(stun);
        }
    }
    if role == Role::Leech {
        cmd.arg("--timeout").arg(secs(opts.timeout));
        if opts.keep_seeding {
            cmd.arg("--keep-seeding");
        }
        if opts.play && driver == Driver::ShoalWeb {
            cmd.arg("--play");
        }
        if !opts.idle_before_add.is_zero() && driver == Driver::ShoalWeb {
            cmd.arg("--idle-ms").arg(opts.idle_before_add.as_millis().to_string());
        }
    }
    if let (Role::Seed, Some(len)) = (role, opts.piece_length) {
        cmd.arg("--piece-length").arg(len.to_string());
    }
    if let (Driver::ShoalWeb, Some(options)) = (driver, &opts.client_options) {
        cmd.arg("--client-options").arg(options.to_string());
    }
    let mut process = ChildGuard::spawn(format!("{}-{role_arg}", driver.label()), cmd)?;
    // The driver applies `ready_timeout` to the page load and to the seed's announce in turn.
    let ready = process.wait_event("ready", opts.ready_timeout * 2 + Duration::from_secs(10))?;
    Ok(BrowserPeer { role, ready, keep_running: role == Role::Seed || opts.keep_seeding, process })
}
