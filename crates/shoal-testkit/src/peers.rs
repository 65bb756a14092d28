//! Third-party BitTorrent clients as peers for interop tests: libtorrent (Debian
//! python3-libtorrent 2.0), aria2 1.36 and Transmission 3.00, each run by its driver in
//! `tests/peers` and stopped when its [`Peer`] is dropped. Also libtorrent 2.1 from PyPI, which
//! speaks WebRTC to peers met on WebSocket trackers ([`lt21_seed`], [`lt21_leech`]).
//!
//! How each of them can be connected, on loopback:
//!
//! | client | dials peers it is told about | finds peers via tracker | is dialed by others |
//! |---|---|---|---|
//! | libtorrent | yes (`PeerOpts::connect`, [`Peer::dial`]) | yes | yes |
//! | aria2 | no | yes | yes |
//! | Transmission | never on 127.x, even from a tracker | announces only | yes, from another IP |
//!
//! Every peer gets an address of its own in 127.0.0.0/8 by default ([`loopback_ip`]):
//! Transmission and trackers tell peers apart by IP alone.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::net::loopback_ip;
use crate::paths::{lt21_python, peer_script, require_tool, PYTHON};
use crate::process::{event_name, ChildGuard};

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    Libtorrent,
    /// libtorrent 2.1 (PyPI wheel, WebTorrent built in), in its own virtualenv
    /// ([`lt21_python`]); TCP as `Libtorrent`, plus WebRTC through `ws://` trackers.
    Libtorrent21,
    Aria2,
    Transmission,
}

impl PeerKind {
    fn script(self) -> &'static str {
        match self {
            PeerKind::Libtorrent => "lt_peer.py",
            PeerKind::Libtorrent21 => "lt21_peer.py",
            PeerKind::Aria2 => "aria2_peer.py",
            PeerKind::Transmission => "transmission_peer.py",
        }
    }

    /// What must be installed for this kind (checked before starting it).
    fn program(self) -> PathBuf {
        match self {
            PeerKind::Libtorrent => PathBuf::from(PYTHON),
            PeerKind::Libtorrent21 => lt21_python(),
            PeerKind::Aria2 => PathBuf::from("aria2c"),
            PeerKind::Transmission => PathBuf::from("transmission-cli"),
        }
    }

    /// The Python that runs the driver: libtorrent 2.1 lives in a virtualenv of its own, so
    /// that the system Python keeps Debian's 2.0 for the classic tests.
    fn interpreter(self) -> PathBuf {
        match self {
            PeerKind::Libtorrent21 => lt21_python(),
            _ => PathBuf::from(PYTHON),
        }
    }

    fn label(self) -> &'static str {
        match self {
            PeerKind::Libtorrent => "libtorrent",
            PeerKind::Libtorrent21 => "libtorrent2.1",
            PeerKind::Aria2 => "aria2",
            PeerKind::Transmission => "transmission",
        }
    }
}

/// Seeding existing data, or downloading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Seed,
    Leech,
}

/// How to run a reference peer. `PeerOpts::default()` is TCP only, no limits, no trackers
/// beyond the torrent's own, a fresh loopback address and a driver-chosen port.
#[derive(Clone, Debug)]
pub struct PeerOpts {
    /// Address to listen on and dial from; `None` = a fresh [`loopback_ip`].
    pub ip: Option<Ipv4Addr>,
    /// Listen port; 0 = any free port (reported by [`Peer::addr`]).
    pub port: u16,
    /// Enable uTP (libtorrent, Transmission). Off by default: TCP only.
    pub utp: bool,
    /// Upload cap, bytes per second.
    pub upload_limit: Option<u64>,
    /// Download cap, bytes per second.
    pub download_limit: Option<u64>,
    /// Peers to dial (libtorrent only; the driver re-dials until connected).
    pub connect: Vec<SocketAddr>,
    /// Announce to these instead of the torrent's trackers.
    pub trackers: Vec<String>,
    /// Leech: the driver gives up (exit 3) after this long.
    pub timeout: Duration,
    /// How long to wait for the peer to be listening (and, for a seed, verified).
    pub ready_timeout: Duration,
    /// Leech: keep seeding after the download instead of exiting.
    pub keep_seeding: bool,
    /// libtorrent seed: skip the initial hash check of the data.
    pub trust_data: bool,
    /// Upper bound on the driver's whole life (it exits by itself after that).
    pub max_lifetime: Duration,
    /// Extra driver arguments (see each driver's `--help`).
    pub extra_args: Vec<String>,
}

impl Default for PeerOpts {
    fn default() -> Self {
        PeerOpts {
            ip: None,
            port: 0,
            utp: false,
            upload_limit: None,
            download_limit: None,
            connect: Vec::new(),
            trackers: Vec::new(),
            timeout: Duration::from_secs(120),
            ready_timeout: Duration::from_secs(60),
            keep_seeding: false,
            trust_data: false,
            max_lifetime: Duration::from_secs(1800),
            extra_args: Vec::new(),
        }
    }
}

impl PeerOpts {
    /// Adds a peer to dial.
    pub fn connect(mut self, peer: SocketAddr) -> Self {
        self.connect.push(peer);
        self
    }

    /// Adds a tracker (replacing the torrent's own).
    pub fn tracker(mut self, url: impl Into<String>) -> Self {
        self.trackers.push(url.into());
        self
    }

    /// Sets the leech timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A running reference peer; stopped (stdin closed, SIGTERM, SIGKILL) when dropped.
pub struct Peer {
    kind: PeerKind,
    role: Role,
    addr: SocketAddr,
    ready: Value,
    keep_running: bool,
    process: ChildGuard,
}

impl Peer {
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the peer listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The driver's `ready` event (port, ip, and for libtorrent the info hash).
    pub fn ready_event(&self) -> &Value {
        &self.ready
    }

    /// The driver process: its events so far, its output, raw waits.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    /// Asks the peer to connect to `peer` (libtorrent only; re-dialed until connected).
    /// This is how aria2 and Transmission leechers get their data: they are dialed.
    pub fn dial(&mut self, peer: SocketAddr) -> Result<()> {
        if !matches!(self.kind, PeerKind::Libtorrent | PeerKind::Libtorrent21) {
            return Err(Error::Setup(format!(
                "{} cannot be told to dial a peer",
                self.kind.label()
            )));
        }
        self.process.send_line(&json!({"cmd": "connect", "peer": peer.to_string()}).to_string())
    }

    /// Waits for a leech to finish its download; returns the `done` event (`seconds`,
    /// `bytes`, ...). Unless it was asked to keep seeding, also waits for the driver to exit
    /// cleanly, so that every file is closed before the caller compares them.
    pub fn wait_done(&mut self, timeout: Duration) -> Result<Value> {
        wait_download(&mut self.process, self.keep_running, timeout)
    }

    /// Stops the peer now; returns its exit status.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.process.stop()
    }
}

/// Waits for a leech driver's `done` (a `timeout` event is an error); then, unless it keeps
/// running as a seed, for the driver to exit cleanly, so every file is closed before the
/// caller compares them.
pub(crate) fn wait_download(
    process: &mut ChildGuard,
    keep_running: bool,
    timeout: Duration,
) -> Result<Value> {
    let name = process.name().to_owned();
    let event = process.wait_for("download completion", timeout, |v| {
        matches!(event_name(v), Some("done" | "timeout"))
    })?;
    if event_name(&event) == Some("timeout") {
        return Err(Error::Reported {
            name,
            message: format!("download timed out: {event}"),
            tail: process.output_tail(),
        });
    }
    if !keep_running {
        process.wait_success(Duration::from_secs(60))?;
    }
    Ok(event)
}

/// libtorrent seeding `torrent` from `data_dir` (which holds the torrent's top file or folder).
/// Returns once it listens and has verified the data.
///
/// Debian's libtorrent 2.0 binding now and then dies of SIGSEGV while starting; a seed that
/// crashed before it was ready has exchanged nothing, so it gets one more try.
pub fn lt_seed(torrent: &Path, data_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    match start_peer(PeerKind::Libtorrent, Role::Seed, torrent.as_os_str(), data_dir, opts) {
        Err(Error::Exited { status, .. }) if status.contains("signal") => {
            eprintln!("libtorrent seed crashed while starting ({status}); starting it again");
            start_peer(PeerKind::Libtorrent, Role::Seed, torrent.as_os_str(), data_dir, opts)
        }
        other => other,
    }
}

/// libtorrent downloading `source` (a .torrent path or a magnet URI) into `out_dir`.
/// Returns once it listens; then [`Peer::wait_done`].
pub fn lt_leech(source: impl AsRef<OsStr>, out_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    start_peer(PeerKind::Libtorrent, Role::Leech, source.as_ref(), out_dir, opts)
}

/// libtorrent downloading `source` into `out_dir` until it is done, within `timeout`.
///
/// Where libtorrent is not what a test is about (a tracker's test, say), a leecher that Debian's
/// 2.0 binding crashed (SIGSEGV) gets one more try; what it verified before stays in
/// `out_dir` and is checked again on start.
pub fn lt_download(
    source: impl AsRef<OsStr>,
    out_dir: &Path,
    opts: &PeerOpts,
    timeout: Duration,
) -> Result<Peer> {
    let mut crashed = false;
    loop {
        let started = lt_leech(source.as_ref(), out_dir, opts);
        let done = started.and_then(|mut peer| peer.wait_done(timeout).map(|_| peer));
        match done {
            Err(Error::Exited { status, .. }) if status.contains("signal") && !crashed => {
                eprintln!("libtorrent leecher crashed ({status}); starting it again");
                crashed = true;
            }
            other => return other,
        }
    }
}

/// libtorrent 2.1 seeding `torrent` from `data_dir`, announcing to `opts.trackers` (give it a
/// `ws://` tracker to meet WebRTC peers). Extra driver options (`--no-tcp`, `--stun`,
/// `--max-offers`) go in `opts.extra_args`. WebRTC needs a network namespace
/// ([`crate::netns`]); check [`lt21_unavailable`] first.
pub fn lt21_seed(torrent: &Path, data_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    start_peer(PeerKind::Libtorrent21, Role::Seed, torrent.as_os_str(), data_dir, opts)
}

/// libtorrent 2.1 downloading `source` into `out_dir` (see [`lt21_seed`]).
pub fn lt21_leech(source: impl AsRef<OsStr>, out_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    start_peer(PeerKind::Libtorrent21, Role::Leech, source.as_ref(), out_dir, opts)
}

/// Why libtorrent 2.1 cannot run here (its virtualenv is missing), or `None`. A virtualenv
/// whose libtorrent lacks WebTorrent is not a reason to skip: its driver then fails loudly.
pub fn lt21_unavailable() -> Option<String> {
    let python = lt21_python();
    (!python.is_file()).then(|| {
        format!(
            "no libtorrent 2.1 virtualenv ({} is missing): run scripts/install-test-deps.sh, \
             or set {}",
            python.display(),
            crate::paths::LT21_VENV_ENV
        )
    })
}

/// aria2 seeding (after hashing the data). It does not dial: leechers dial it or use a tracker.
pub fn aria2_seed(torrent: &Path, data_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    start_peer(PeerKind::Aria2, Role::Seed, torrent.as_os_str(), data_dir, opts)
}

/// aria2 downloading. It does not dial: the seed must dial [`Peer::addr`], or use a tracker.
pub fn aria2_leech(source: impl AsRef<OsStr>, out_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    start_peer(PeerKind::Aria2, Role::Leech, source.as_ref(), out_dir, opts)
}

/// Transmission seeding (after verifying the data). Leechers must dial it from another IP.
pub fn transmission_seed(torrent: &Path, data_dir: &Path, opts: &PeerOpts) -> Result<Peer> {
    start_peer(PeerKind::Transmission, Role::Seed, torrent.as_os_str(), data_dir, opts)
}

/// Transmission downloading. The seed must dial [`Peer::addr`] (Transmission never dials
/// loopback peers). Transmission 3.00 does not create zero-length files, and takes about ten
/// seconds (its rechoke interval) to start.
pub fn transmission_leech(
    source: impl AsRef<OsStr>,
    out_dir: &Path,
    opts: &PeerOpts,
) -> Result<Peer> {
    start_peer(PeerKind::Transmission, Role::Leech, source.as_ref(), out_dir, opts)
}

/// Starts any reference peer; returns once its driver reports `ready`.
pub fn start_peer(
    kind: PeerKind,
    role: Role,
    source: &OsStr,
    dir: &Path,
    opts: &PeerOpts,
) -> Result<Peer> {
    check_supported(kind, opts)?;
    require_tool(&kind.interpreter().to_string_lossy())?;
    require_tool(&kind.program().to_string_lossy())?;
    let ip = opts.ip.unwrap_or_else(loopback_ip);
    let role_arg = match role {
        Role::Seed => "seed",
        Role::Leech => "leech",
    };
    let mut cmd = Command::new(kind.interpreter());
    cmd.arg(peer_script(kind.script())?)
        .arg(role_arg)
        .arg(source)
        .arg(dir)
        .arg("--ip")
        .arg(ip.to_string())
        .arg("--port")
        .arg(opts.port.to_string())
        .arg("--max-seconds")
        .arg(opts.max_lifetime.as_secs().max(1).to_string());
    if opts.utp {
        cmd.arg("--utp");
    }
    if let Some(limit) = opts.upload_limit {
        cmd.arg("--upload-limit").arg(limit.to_string());
    }
    if let Some(limit) = opts.download_limit {
        cmd.arg("--download-limit").arg(limit.to_string());
    }
    for peer in &opts.connect {
        cmd.arg("--connect").arg(peer.to_string());
    }
    for url in &opts.trackers {
        cmd.arg("--tracker").arg(url);
    }
    if role == Role::Leech {
        cmd.arg("--timeout").arg(format!("{:.1}", opts.timeout.as_secs_f64()));
        if opts.keep_seeding {
            cmd.arg("--keep-seeding");
        }
    }
    let libtorrent = matches!(kind, PeerKind::Libtorrent | PeerKind::Libtorrent21);
    if role == Role::Seed && opts.trust_data && libtorrent {
        cmd.arg("--trust-data");
    }
    cmd.args(&opts.extra_args);

    let name = format!("{}-{}@{ip}", kind.label(), role_arg);
    let mut process = ChildGuard::spawn(name, cmd)?;
    let ready = process.wait_event("ready", opts.ready_timeout)?;
    let port = ready
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| Error::Setup(format!("ready event without a port: {ready}")))?;
    Ok(Peer {
        kind,
        role,
        addr: SocketAddr::from((ip, port)),
        ready,
        keep_running: role == Role::Seed || opts.keep_seeding,
        process,
    })
}

/// A libtorrent session with no torrent, only its Mainline DHT node (UDP on `addr`): the
/// bootstrap node of a DHT on loopback. Peers join it with `--dht-bootstrap ADDR`
/// (`lt_peer.py`'s and `shoal`'s).
pub struct DhtNode {
    pub addr: SocketAddr,
    pub process: ChildGuard,
}

/// Starts a [`DhtNode`] on `ip` (any port), living at most `max_lifetime`.
pub fn lt_dht_node(ip: Ipv4Addr, max_lifetime: Duration) -> Result<DhtNode> {
    let kind = PeerKind::Libtorrent;
    require_tool(&kind.interpreter().to_string_lossy())?;
    let mut cmd = Command::new(kind.interpreter());
    cmd.arg(peer_script(kind.script())?)
        .arg("dht-node")
        .arg("--ip")
        .arg(ip.to_string())
        .arg("--port")
        .arg("0")
        .arg("--max-seconds")
        .arg(max_lifetime.as_secs().max(1).to_string());
    let mut process = ChildGuard::spawn(format!("libtorrent-dht-node@{ip}"), cmd)?;
    let ready = process.wait_event("ready", Duration::from_secs(30))?;
    let port = ready
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| Error::Setup(format!("ready event without a port: {ready}")))?;
    Ok(DhtNode { addr: SocketAddr::from((ip, port)), process })
}

fn check_supported(kind: PeerKind, opts: &PeerOpts) -> Result<()> {
    let refuse = |what: &str| {
        Err(Error::Setup(format!("{} {what}: see the table in shoal_testkit::peers", kind.label())))
    };
    match kind {
        PeerKind::Libtorrent | PeerKind::Libtorrent21 => Ok(()),
        PeerKind::Aria2 if !opts.connect.is_empty() => {
            refuse("cannot dial peers (let the other side dial it, or use a tracker)")
        }
        PeerKind::Aria2 if opts.utp => refuse("has no uTP"),
        PeerKind::Transmission if !opts.connect.is_empty() => {
            refuse("never dials loopback peers (let the other side dial it)")
        }
        _ => Ok(()),
    }
}
