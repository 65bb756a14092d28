//! The task that drives one torrent: it owns the sans-IO [`Torrent`] and carries out its
//! actions with sockets, the disk worker and tracker announces.
//!
//! Everything that happens to the torrent arrives on a channel (peer messages, disk results,
//! dial and announce outcomes, commands); the task feeds it to the core, then drains the
//! core's actions. The core is never shared, so there are no locks on the hot path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::bitfield::Bitfield;
use shoal_proto::metainfo::Info;
use shoal_proto::mse::EncryptionPolicy;
use shoal_proto::torrent::{Action, Stats, Torrent, WebSeedFetch, WebSeedStatus};
use shoal_proto::webseed::FetchEnd;
use shoal_proto::wire::{self, Handshake};
use shoal_proto::{PeerKey, PeerSource};
use shoal_tracker_proto::announce_request;
use shoal_tracker_proto::announcer::{Announcer, AnnouncerConfig};
use shoal_tracker_proto::tiers::TrackerTiers;
use shoal_tracker_proto::types::{AnnounceEvent, AnnounceRequest, AnnounceResponse};
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::dht::{Dht, Lookups};
use crate::disk::{DiskDone, DiskHandle, DiskJob};
use crate::lsd::{Announces as LsdAnnounces, Lsd};
use crate::mse::PeerStream;
use crate::peer_conn::{dial, ConnError, PeerInput, PeerLink};
use crate::port_mapping::AnnouncedPort;
use crate::rate::LinkCaps;
use crate::resume::ResumeFile;
use crate::storage::{
    FileSpec, FileStorage, FileStorageOptions, MemoryStorage, PieceStorage, StorageLayout,
};
use crate::stream::shared::StreamShared;
use crate::tracker::TrackerClient;
use crate::utp::UtpSocket;
use crate::webseed::WebSeedClient;
use shoal_proto::eviction;
use shoal_proto::streaming::{ReaderId, ReaderWindow};

/// Where a torrent's data lives.
#[derive(Clone, Debug)]
pub enum StorageTarget {
    /// Files under this folder (the torrent's own name/folder is created inside it).
    Dir(PathBuf),
    /// Pieces in memory, all of them.
    Memory,
    /// Pieces in memory within a budget: only what readers wait for is fetched, and pieces are
    /// dropped as readers move on (see [`crate::stream`]). For streaming files larger than the
    /// memory one wants to spend.
    BoundedMemory { max_bytes: u64 },
}

/// How soon a selected file is fetched beside the torrent's other files.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FilePriority {
    Low,
    #[default]
    Normal,
    High,
}

impl FilePriority {
    /// The picker's level for the file's pieces: three apart, so that the steps a player's
    /// file ends get (`TorrentConfig::file_ends_first`, two at most) stay within the level.
    fn level(self) -> u8 {
        match self {
            FilePriority::Low => 1,
            FilePriority::Normal => 4,
            FilePriority::High => 7,
        }
    }
}

/// What a torrent is doing, for progress displays and for waiting on completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the info dictionary from peers (magnet).
    FetchingMetadata,
    /// Hashing data already on disk.
    Checking {
        done: u32,
        total: u32,
    },
    Downloading,
    /// Every wanted piece is verified; uploading to whoever asks.
    Seeding,
    /// Stopped after an error that needs the user (e.g. the disk is full).
    Failed(String),
    Stopped,
}

/// A snapshot published by the task.
#[derive(Clone, Debug)]
pub struct TorrentStatus {
    pub phase: Phase,
    pub stats: Stats,
    pub info: Option<Arc<Info>>,
    /// The info dictionary as bencoded, once known: what a library keeps so that a magnet's
    /// metadata is not fetched again after a restart.
    pub info_bytes: Option<bytes::Bytes>,
    /// The verified pieces, once the metadata is known: what per-file progress is made of
    /// (`Info::file_bytes_done`).
    pub have: Option<Arc<Bitfield>>,
    /// Where files are written, once storage is open.
    pub storage_root: Option<PathBuf>,
    /// A bounded in-memory store's usage.
    pub memory: Option<MemoryUsage>,
    /// Streaming readers open on the torrent's files.
    pub readers: usize,
    /// Connected peers that speak over WebRTC (browsers, WebTorrent); the rest are TCP.
    pub webrtc_peers: usize,
    /// Connected peers by transport ([`Transport::name`]).
    pub peers_by_transport: BTreeMap<&'static str, usize>,
    /// Connected peers whose stream is encrypted end to end: RC4 (protocol encryption) on
    /// TCP, DTLS on WebRTC.
    pub encrypted_peers: usize,
    /// Every peer connection made since the start, by transport, and how many of them were
    /// encrypted.
    pub connections_by_transport: BTreeMap<&'static str, u64>,
    pub encrypted_connections: u64,
    /// HTTP web seeds (BEP 19) and how each fares.
    pub web_seeds: Vec<WebSeedStatus>,
    /// How the start found the data already there: `Some(true)` from the resume record
    /// (files unchanged since it was saved), `Some(false)` by hashing it; `None` until then.
    pub resumed: Option<bool>,
}

/// How much a bounded in-memory store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes of pieces held now (verified and being assembled).
    pub resident: u64,
    /// The most ever held at once, sampled whenever a piece completes.
    pub peak: u64,
    pub budget: u64,
}

pub(crate) enum Command {
    Incoming {
        stream: PeerStream,
        addr: SocketAddr,
        handshake: Handshake,
    },
    /// A peer that reached us over a WebRTC data channel; handshakes already exchanged.
    IncomingWebRtc {
        channel: crate::webrtc::DataChannel,
        handshake: Handshake,
    },
    /// A streaming reader moved (see [`crate::stream::FileStream`]).
    SetReader {
        id: ReaderId,
        window: ReaderWindow,
    },
    RemoveReader {
        id: ReaderId,
    },
    /// A peer on the LAN announced this torrent (BEP 14).
    LsdPeer(SocketAddr),
    Shutdown(oneshot::Sender<()>),
}

/// Outcomes of work the task started in the background.
enum Background {
    Dialed { peer: PeerKey, result: Result<(PeerStream, Handshake), ConnError> },
    Announced { url: String, event: AnnounceEvent, result: Result<AnnounceResponse, String> },
    WebSeedFetched { seed: PeerKey, id: u64, end: FetchEnd },
    DhtPeers(Vec<SocketAddr>),
}

pub(crate) struct TorrentSetup {
    pub core: Torrent,
    pub target: StorageTarget,
    /// Indices of the files to download; `None` for all.
    pub only_files: Option<Vec<usize>>,
    pub file_priorities: Option<Vec<FilePriority>>,
    pub trackers: Vec<Vec<String>>,
    pub peers: Vec<SocketAddr>,
    /// The port trackers and the DHT are told (the listen port, or the router's for it).
    pub announced_port: AnnouncedPort,
    /// The specific IP the session listens on, which peers are dialled from.
    pub local_ip: Option<IpAddr>,
    pub tracker_client: Arc<TrackerClient>,
    pub clock: Clock,
    pub random_seed: u64,
    pub shared: Arc<StreamShared>,
    /// Web seed URLs (BEP 19).
    pub web_seeds: Vec<String>,
    pub web_seed_client: Arc<WebSeedClient>,
    /// Where the task publishes [`Torrent::connection_room`] for the session's signalling.
    pub room: Arc<AtomicUsize>,
    /// The process's upload cap, shared by every connection's writer.
    /// The session's upload and download caps, for every peer connection.
    pub caps: LinkCaps,
    /// The session's DHT node, when the DHT is on.
    pub dht: Option<Dht>,
    /// The session's LSD socket, when local service discovery is on.
    pub lsd: Option<Lsd>,
    /// Protocol encryption for the peers this torrent dials.
    pub encryption: EncryptionPolicy,
    /// The session's uTP socket, tried before TCP when dialling.
    pub utp: Option<Arc<UtpSocket>>,
    /// Where resume records are kept ([`crate::resume`]); `None` to keep none.
    pub resume_dir: Option<PathBuf>,
}

/// What carries a peer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Utp,
    WebRtc,
}

impl Transport {
    /// The name progress lines and `--json` count peers under.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Utp => "utp",
            Transport::WebRtc => "webrtc",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct LinkKind {
    transport: Transport,
    encrypted: bool,
}

/// How often the status snapshot is republished while data moves.
const STATUS_INTERVAL: Duration = Duration::from_millis(200);
/// How long the `stopped` announce may take at shutdown.
const STOP_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the resume record is saved while pieces are being verified. Only the next
/// start's speed depends on it (a record older than the files is not trusted).
const RESUME_SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a stopping torrent waits for its resume record to be written.
const RESUME_SAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Peer input batches (one socket read each, up to 256 KiB) buffered before readers wait:
/// back-pressure onto the sockets.
const PEER_INPUT_QUEUE: usize = 8;
/// Bytes queued for the disk above which peers are not read until the disk catches up.
const MAX_DISK_BACKLOG: u64 = 2 * 1024 * 1024;
/// How often a task paused on a disk backlog (or with peers' requests waiting for their
/// sockets to drain) looks again.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

pub(crate) fn spawn(
    setup: TorrentSetup,
) -> (mpsc::UnboundedSender<Command>, watch::Receiver<TorrentStatus>) {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let initial = TorrentStatus {
        phase: if setup.core.info().is_some() {
            Phase::Checking { done: 0, total: setup.core.info().map_or(0, Info::piece_count) }
        } else {
            Phase::FetchingMetadata
        },
        stats: setup.core.stats(setup.clock.now()),
        info: setup.core.info().cloned().map(Arc::new),
        info_bytes: setup.core.info_bytes().cloned(),
        have: None,
        storage_root: None,
        memory: None,
        readers: 0,
        webrtc_peers: 0,
        peers_by_transport: BTreeMap::new(),
        encrypted_peers: 0,
        connections_by_transport: BTreeMap::new(),
        encrypted_connections: 0,
        web_seeds: Vec::new(),
        resumed: None,
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let (peer_tx, peer_rx) = mpsc::channel(PEER_INPUT_QUEUE);
    let (disk_tx, disk_rx) = mpsc::unbounded_channel();
    let (bg_tx, bg_rx) = mpsc::unbounded_channel();
    let announcer = Announcer::new(
        TrackerTiers::new(setup.trackers.clone(), setup.random_seed),
        AnnouncerConfig::default(),
    );
    let mut core = setup.core;
    let now = setup.clock.now();
    for url in &setup.web_seeds {
        if let Err(e) = core.add_web_seed(now, url) {
            tracing::warn!(%url, "web seed ignored: {e}");
        }
    }
    // BEP 27: a private torrent finds peers through its trackers only. A magnet's is known
    // once its metadata arrives (see `on_metadata`).
    let private = core.info().is_some_and(|i| i.private);
    let dht_lookups = setup.dht.filter(|_| !private).map(|dht| {
        let bg = bg_tx.clone();
        let deliver = move |peers| bg.send(Background::DhtPeers(peers)).is_ok();
        Lookups::start(dht, core.info_hash(), setup.announced_port.clone(), deliver)
    });
    let lsd_announces =
        setup.lsd.filter(|_| !private).map(|lsd| LsdAnnounces::start(lsd, core.info_hash()));
    let task = TorrentTask {
        dht_lookups,
        lsd_announces,
        caps: setup.caps,
        web_seed_client: setup.web_seed_client,
        web_fetches: HashMap::new(),
        held_web_data: VecDeque::new(),
        core,
        clock: setup.clock,
        target: setup.target,
        only_files: setup.only_files,
        file_priorities: setup.file_priorities,
        announced_port: setup.announced_port,
        local_ip: setup.local_ip,
        tracker_client: setup.tracker_client,
        announcer,
        announce_key: (setup.random_seed >> 32) as u32,
        links: HashMap::new(),
        transports: HashMap::new(),
        connections_by_transport: BTreeMap::new(),
        encrypted_connections: 0,
        encryption: setup.encryption,
        utp: setup.utp,
        disk: None,
        peer_tx,
        disk_tx,
        bg_tx,
        status_tx,
        phase: Phase::FetchingMetadata,
        storage_root: None,
        max_frame: wire::DEFAULT_MAX_FRAME,
        initial_peers: setup.peers,
        hashes: None,
        shared: setup.shared,
        storage: None,
        bounded: None,
        room: setup.room,
        resume_dir: setup.resume_dir,
        resume: None,
        resume_dirty: false,
        resume_saved_at: None,
        resumed: None,
    };
    tokio::spawn(task.run(commands, peer_rx, disk_rx, bg_rx));
    (commands_tx, status_rx)
}

struct TorrentTask {
    core: Torrent,
    clock: Clock,
    target: StorageTarget,
    only_files: Option<Vec<usize>>,
    file_priorities: Option<Vec<FilePriority>>,
    announced_port: AnnouncedPort,
    local_ip: Option<IpAddr>,
    tracker_client: Arc<TrackerClient>,
    announcer: Announcer,
    announce_key: u32,
    links: HashMap<PeerKey, PeerLink>,
    /// How each of `links` is carried.
    transports: HashMap<PeerKey, LinkKind>,
    /// Connections made since the start, by transport; and the encrypted ones.
    connections_by_transport: BTreeMap<&'static str, u64>,
    encrypted_connections: u64,
    /// Which ways out (and in) protocol encryption allows.
    encryption: EncryptionPolicy,
    utp: Option<Arc<UtpSocket>>,
    disk: Option<DiskHandle>,
    peer_tx: mpsc::Sender<PeerInput>,
    disk_tx: mpsc::UnboundedSender<DiskDone>,
    bg_tx: mpsc::UnboundedSender<Background>,
    status_tx: watch::Sender<TorrentStatus>,
    phase: Phase,
    storage_root: Option<PathBuf>,
    max_frame: u32,
    /// The process's upload cap (see `rate.rs`).
    caps: LinkCaps,
    initial_peers: Vec<SocketAddr>,
    hashes: Option<Arc<Vec<[u8; 20]>>>,
    /// What readers see: verified pieces and the storage to read them from.
    shared: Arc<StreamShared>,
    /// The open storage, handed to readers once the recheck finished.
    storage: Option<Arc<dyn PieceStorage>>,
    bounded: Option<BoundedStore>,
    web_seed_client: Arc<WebSeedClient>,
    /// Web seed fetches under way, by fetch id, so shutdown can stop them.
    /// Web seed fetches under way: the task, and the way to ask it to stop with what arrived.
    web_fetches: HashMap<u64, (tokio::task::AbortHandle, oneshot::Sender<()>)>,
    room: Arc<AtomicUsize>,
    /// Where this torrent's resume record goes, and the task that keeps it.
    resume_dir: Option<PathBuf>,
    resume: Option<ResumeFile>,
    /// Pieces were verified (or the start hashed) since the record was last saved.
    resume_dirty: bool,
    /// When the last save was queued; `None` before the first.
    resume_saved_at: Option<tokio::time::Instant>,
    /// How the start found the data: `Some(true)` from the resume record, `Some(false)` by
    /// hashing; `None` before the check is over.
    resumed: Option<bool>,
    /// Web seed answers waiting for the disk to catch up.
    held_web_data: VecDeque<(PeerKey, u64, FetchEnd)>,
    /// The torrent's DHT lookups and announces; stopped with the task.
    dht_lookups: Option<Lookups>,
    /// Its LSD announces (none for a private torrent); stopped with the task.
    lsd_announces: Option<LsdAnnounces>,
}

/// The bounded in-memory store and its budget in bytes.
struct BoundedStore {
    memory: Arc<MemoryStorage>,
    budget: u64,
    peak: u64,
}

impl TorrentTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut peer_rx: mpsc::Receiver<PeerInput>,
        mut disk_rx: mpsc::UnboundedReceiver<DiskDone>,
        mut bg_rx: mpsc::UnboundedReceiver<Background>,
    ) {
        let now = self.clock.now();
        if self.core.info().is_some() {
            self.open_storage();
        } else {
            self.phase = Phase::FetchingMetadata;
        }
        let peers = std::mem::take(&mut self.initial_peers);
        self.core.add_peer_addrs(now, PeerSource::Manual, peers);
        self.core.handle_timeout(now);
        self.drain_actions();
        let mut last_status = tokio::time::Instant::now();
        self.publish();

        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        // Every handle is gone: stop as if asked to.
                        self.shutdown().await;
                        return;
                    }
                },
                Some(input) = peer_rx.recv(), if !self.disk_backlogged() => {
                    self.on_peer_input(input);
                    // Take whatever else is already queued before draining actions, so
                    // requests go out in batches.
                    for _ in 0..64 {
                        match peer_rx.try_recv() {
                            Ok(input) => self.on_peer_input(input),
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = disk_rx.recv() => self.on_disk(done),
                Some(bg) = bg_rx.recv() => self.on_background(bg),
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.core.handle_timeout(now);
                    self.poll_announces(now);
                }
            }
            self.drain_actions();
            let save_due = self.resume_saved_at.is_none_or(|t| t.elapsed() >= RESUME_SAVE_INTERVAL);
            if self.resume_dirty && save_due {
                self.save_resume(None);
            }
            self.report_send_backlogs();
            self.release_web_seed_data();
            self.room.store(self.core.connection_room(), Ordering::Relaxed);
            if last_status.elapsed() >= STATUS_INTERVAL {
                last_status = tokio::time::Instant::now();
                self.publish();
            }
        }
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        let now = self.clock.now();
        let far = now + Duration::from_secs(3600);
        let core = self.core.poll_timeout().unwrap_or(far);
        let announce = match self.announces_allowed() {
            true => self.announcer.next_deadline().unwrap_or(far),
            false => far,
        };
        let mut deadline = core.min(announce);
        if self.disk_backlogged() || self.core.backlogged_peers().next().is_some() {
            deadline = deadline.min(now + BACKLOG_POLL);
        }
        self.clock.tokio_instant(deadline)
    }

    /// Tells the core how much each peer whose requests wait on its socket still has queued
    /// there (the core's one rule, `SEND_BACKLOG_LIMIT`, decides when to read for it).
    fn report_send_backlogs(&mut self) {
        let peers: Vec<PeerKey> = self.core.backlogged_peers().collect();
        if peers.is_empty() {
            return;
        }
        let now = self.clock.now();
        for peer in peers {
            let queued = self.links.get(&peer).map_or(0, |l| l.queued_bytes());
            self.core.on_send_backlog(now, peer, queued as u64);
        }
        self.drain_actions();
    }

    /// Hands web seed data held during a disk backlog to the core once the disk caught up.
    fn release_web_seed_data(&mut self) {
        while !self.disk_backlogged() {
            let Some((seed, id, end)) = self.held_web_data.pop_front() else { return };
            self.on_background(Background::WebSeedFetched { seed, id, end });
            self.drain_actions();
        }
    }

    fn disk_backlogged(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.backlog() > MAX_DISK_BACKLOG)
    }

    fn publish(&self) {
        let status = TorrentStatus {
            phase: self.phase.clone(),
            stats: self.core.stats(self.clock.now()),
            info: self
                .status_tx
                .borrow()
                .info
                .clone()
                .or_else(|| self.core.info().cloned().map(Arc::new)),
            info_bytes: self.core.info_bytes().cloned(),
            have: self.core.info().map(|_| Arc::new(self.core.have().clone())),
            storage_root: self.storage_root.clone(),
            memory: self.bounded.as_ref().map(|b| MemoryUsage {
                resident: b.memory.resident_bytes(),
                peak: b.peak.max(b.memory.resident_bytes()),
                budget: b.budget,
            }),
            readers: self.core.readers().count(),
            webrtc_peers: self
                .transports
                .values()
                .filter(|kind| kind.transport == Transport::WebRtc)
                .count(),
            peers_by_transport: self.transports.values().fold(BTreeMap::new(), |mut by, kind| {
                *by.entry(kind.transport.name()).or_default() += 1;
                by
            }),
            encrypted_peers: self.transports.values().filter(|kind| kind.encrypted).count(),
            connections_by_transport: self.connections_by_transport.clone(),
            encrypted_connections: self.encrypted_connections,
            web_seeds: self.core.web_seeds(self.clock.now()),
            resumed: self.resumed,
        };
        let _ = self.status_tx.send(status);
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.publish();
        }
    }

    // ---- storage ----

    fn open_storage(&mut self) {
        let Some(info) = self.core.info().cloned() else { return };
        let files: Vec<FileSpec> = info
            .files
            .iter()
            .map(|f| FileSpec { path: f.path.clone(), length: f.length, padding: f.padding })
            .collect();
        let selection: Vec<bool> = match &self.only_files {
            None => vec![true; files.len()],
            Some(only) => {
                let mut selection = vec![false; files.len()];
                for &i in only {
                    if let Some(s) = selection.get_mut(i) {
                        *s = true;
                    }
                }
                selection
            }
        };
        let result = StorageLayout::new(info.piece_length, files).and_then(|layout| {
            let storage: Arc<dyn PieceStorage> = match &self.target {
                StorageTarget::Dir(root) => {
                    let options = FileStorageOptions {
                        part_dir: Some(format!(".shoal-parts-{}", self.core.info_hash().to_hex())),
                        ..FileStorageOptions::default()
                    };
                    let fs = FileStorage::open_with(root, layout, &selection, options)?;
                    self.storage_root = Some(fs.root().to_path_buf());
                    Arc::new(fs)
                }
                StorageTarget::Memory => Arc::new(MemoryStorage::new(layout)),
                StorageTarget::BoundedMemory { max_bytes } => {
                    let memory = Arc::new(MemoryStorage::new(layout));
                    let budget = *max_bytes;
                    self.bounded = Some(BoundedStore { memory: memory.clone(), budget, peak: 0 });
                    memory
                }
            };
            Ok(storage)
        });
        let storage = match result {
            Ok(s) => s,
            Err(e) => return self.fail(format!("cannot open storage: {e}")),
        };
        // Wanted pieces: those overlapping a selected file, each as soon as its most wanted
        // file says.
        if self.only_files.is_some() || self.file_priorities.is_some() {
            let mut priorities = vec![0u8; info.piece_count() as usize];
            let layout = storage.layout();
            let selected = selection.iter().enumerate().filter(|(_, s)| **s);
            for (file, _) in selected {
                let level = self
                    .file_priorities
                    .as_ref()
                    .and_then(|p| p.get(file))
                    .map_or(FilePriority::Normal.level(), |p| p.level());
                for piece in layout.file_pieces(file).into_iter().flatten() {
                    if let Some(p) = priorities.get_mut(piece as usize) {
                        *p = (*p).max(level);
                    }
                }
            }
            self.core.set_piece_priorities(&priorities);
        }
        if self.bounded.is_some() {
            self.core.set_deadline_only(true);
        }
        self.storage = Some(storage.clone());
        let disk = match DiskHandle::spawn(storage, self.disk_tx.clone()) {
            Ok(d) => d,
            Err(e) => return self.fail(format!("cannot start the disk thread: {e}")),
        };
        self.max_frame = wire::max_frame_for_pieces(info.piece_count());
        let hashes = Arc::new(info.piece_hashes.clone());
        self.hashes = Some(hashes.clone());
        self.resume = self
            .resume_dir
            .as_deref()
            .map(|dir| ResumeFile::in_dir(dir, self.core.info_hash(), info.piece_length));
        disk.send(DiskJob::Recheck { hashes, resume: self.resume.clone() });
        self.disk = Some(disk);
        self.set_phase(Phase::Checking { done: 0, total: info.piece_count() });
    }

    fn fail(&mut self, message: String) {
        tracing::error!(torrent = %self.core.info_hash(), "{message}");
        self.shared.close();
        self.set_phase(Phase::Failed(message));
        let now = self.clock.now();
        self.core.shutdown(now);
    }

    fn on_disk(&mut self, done: DiskDone) {
        let now = self.clock.now();
        match done {
            DiskDone::Read { peer, block, data } => self.core.on_block_read(now, peer, block, data),
            DiskDone::Verified { piece, ok } => {
                self.resume_dirty |= ok;
                self.core.on_piece_verified(now, piece, ok);
            }
            DiskDone::RecheckProgress { done, total } => {
                self.phase = Phase::Checking { done, total };
            }
            DiskDone::Rechecked { have, resumed } => match have {
                Ok(have) => {
                    self.resumed = Some(resumed);
                    // Hashed: the next start need not hash again.
                    self.resume_dirty = !resumed;
                    let mut bits = Bitfield::new(have.len() as u32);
                    for (i, _) in have.iter().enumerate().filter(|(_, h)| **h) {
                        bits.set(i as u32);
                    }
                    if let Some(storage) = &self.storage {
                        self.shared.open(storage.clone(), bits.clone());
                    }
                    self.core.start(now, &bits);
                    // Already complete: the core's `Completed` finishes the files and the
                    // disk's answer makes it `Seeding`. It must also reach the announcer before
                    // the first announce, so trackers never hear `completed` from a seeder.
                    if !self.core.is_complete() {
                        self.set_phase(Phase::Downloading);
                    }
                    self.drain_actions();
                    self.poll_announces(now);
                }
                Err(e) => self.fail(format!("checking existing data failed: {e}")),
            },
            // Saved again at the next save's turn (or at shutdown), once the files settled.
            DiskDone::ResumeRacy => self.resume_dirty = true,
            DiskDone::Completed => {
                self.resume_dirty = true;
                self.save_resume(None);
                self.set_phase(Phase::Seeding);
                self.poll_announces(now);
            }
            DiskDone::Failed { error } => self.fail(format!("storage error: {error}")),
        }
    }

    // ---- peers ----

    fn on_command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::LsdPeer(peer) => {
                // Not for a private torrent (nor once LSD stopped for one).
                if self.lsd_announces.is_some() {
                    self.core.add_peer_addrs(now, PeerSource::Lsd, [peer]);
                }
            }
            Command::Incoming { stream, addr, handshake } => {
                if matches!(self.phase, Phase::Failed(_) | Phase::Stopped) {
                    return;
                }
                if let Ok(key) =
                    self.core.on_incoming(now, Some(addr), PeerSource::Incoming, &handshake)
                {
                    let ours = self.core.handshake().encode().to_vec();
                    let kind = LinkKind {
                        transport: stream.transport(),
                        encrypted: stream.is_encrypted(),
                    };
                    self.count_link(key, kind);
                    let link = PeerLink::spawn(
                        stream,
                        key,
                        Some(ours),
                        self.max_frame,
                        self.peer_tx.clone(),
                        self.caps.clone(),
                    );
                    self.links.insert(key, link);
                }
            }
            Command::IncomingWebRtc { channel, handshake } => {
                if matches!(self.phase, Phase::Failed(_) | Phase::Stopped) {
                    return;
                }
                let remote = channel.remote_addr();
                let addr = (!remote.ip().is_unspecified()).then_some(remote);
                match self.core.on_incoming(now, addr, PeerSource::WebRtc, &handshake) {
                    Ok(key) => {
                        let link = PeerLink::spawn_stream(
                            channel,
                            key,
                            self.max_frame,
                            self.peer_tx.clone(),
                            self.caps.clone(),
                        );
                        self.links.insert(key, link);
                        let kind = LinkKind { transport: Transport::WebRtc, encrypted: true };
                        self.count_link(key, kind);
                        // A new browser peer is news to whoever shows the swarm; do not
                        // make it wait for the next periodic snapshot.
                        self.publish();
                    }
                    Err(refusal) => tracing::debug!(?remote, ?refusal, "WebRTC peer refused"),
                }
            }
            Command::SetReader { id, mut window } => {
                if let Some(bounded) = &self.bounded {
                    window.readahead = window.readahead.min(self.bounded_window(bounded.budget));
                }
                self.core.set_reader(now, id, window);
            }
            Command::RemoveReader { id } => self.core.remove_reader(now, id),
            Command::Shutdown(_) => {}
        }
    }

    /// Notes how a new connection is carried, for the counts users see.
    fn count_link(&mut self, peer: PeerKey, kind: LinkKind) {
        *self.connections_by_transport.entry(kind.transport.name()).or_default() += 1;
        self.encrypted_connections += u64::from(kind.encrypted);
        self.transports.insert(peer, kind);
    }

    fn on_peer_input(&mut self, input: PeerInput) {
        let now = self.clock.now();
        match input {
            PeerInput::Messages { peer, messages } => {
                for message in messages {
                    self.core.on_message(now, peer, message);
                }
            }
            PeerInput::Closed { peer, reason } => {
                tracing::debug!(?peer, "peer closed: {reason}");
                self.links.remove(&peer);
                self.transports.remove(&peer);
                self.core.on_disconnected(now, peer);
            }
        }
    }

    fn on_background(&mut self, bg: Background) {
        let now = self.clock.now();
        match bg {
            Background::Dialed { peer, result } => match result {
                Ok((stream, handshake)) => {
                    if self.core.on_connected(now, peer, &handshake) {
                        let encrypted = stream.is_encrypted();
                        let transport = stream.transport();
                        self.count_link(peer, LinkKind { transport, encrypted });
                        let link = PeerLink::spawn(
                            stream,
                            peer,
                            None,
                            self.max_frame,
                            self.peer_tx.clone(),
                            self.caps.clone(),
                        );
                        self.links.insert(peer, link);
                    }
                }
                Err(e) => {
                    tracing::debug!(?peer, "dial failed: {e}");
                    self.core.on_connect_failed(now, peer);
                }
            },
            Background::WebSeedFetched { seed, id, end } => {
                self.web_fetches.remove(&id);
                if self.disk_backlogged() {
                    // A server can outrun the disk: the next fetch starts only once this data
                    // is handed over, so holding it here bounds what waits in memory.
                    self.held_web_data.push_back((seed, id, end));
                    return;
                }
                if let FetchEnd::Failed(e) = &end {
                    tracing::debug!(?seed, "web seed fetch failed: {e}");
                }
                self.core.on_web_seed_end(now, seed, id, end);
            }
            Background::DhtPeers(peers) => {
                if self.dht_lookups.is_some() {
                    tracing::debug!(peers = peers.len(), "peers from the DHT");
                    self.core.add_peer_addrs(now, PeerSource::Dht, peers);
                }
            }
            Background::Announced { url, event, result } => match result {
                Ok(response) => {
                    tracing::debug!(%url, peers = response.peers.len(), "announce ok");
                    self.announcer.on_response(&url, &response, now);
                    if event != AnnounceEvent::Stopped {
                        self.core.add_peer_addrs(
                            now,
                            PeerSource::Tracker,
                            response.peers.iter().copied(),
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(%url, "announce failed: {e}");
                    self.announcer.on_failure(&url, &e, now);
                }
            },
        }
    }

    // ---- trackers ----

    fn announce_request(&self, event: AnnounceEvent) -> AnnounceRequest {
        let now = self.clock.now();
        announce_request(&self.core, now, event, self.announced_port.get(), self.announce_key)
    }

    /// A torrent checking its data has no `left` to report yet; a stopped one has nothing to
    /// say but `stopped`, which `shutdown` sends itself.
    fn announces_allowed(&self) -> bool {
        !matches!(self.phase, Phase::Checking { .. } | Phase::Failed(_) | Phase::Stopped)
    }

    fn poll_announces(&mut self, now: shoal_proto::Instant) {
        if !self.announces_allowed() {
            return;
        }
        while let Some(job) = self.announcer.poll(now) {
            let mut req = self.announce_request(job.event);
            req.tracker_id = job.tracker_id.clone();
            if crate::tracker::is_websocket(&job.url) && req.num_want.is_none() {
                // There `numwant` is the number of WebRTC offers we make: no more than the
                // connections we would still take.
                let room = self.core.connection_room();
                req.num_want = Some(room.min(crate::tracker::ws::DEFAULT_OFFERS as usize) as u32);
            }
            let client = self.tracker_client.clone();
            let bg = self.bg_tx.clone();
            tokio::spawn(async move {
                let result = client.announce(&job.url, &req).await.map_err(|e| e.to_string());
                let _ = bg.send(Background::Announced { url: job.url, event: job.event, result });
            });
        }
    }

    // ---- actions ----

    fn drain_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { peer, message } => {
                    if let Some(link) = self.links.get(&peer) {
                        link.send(message);
                    }
                }
                Action::Connect { peer, addr } => {
                    let ours = self.core.handshake();
                    let bg = self.bg_tx.clone();
                    let local = self.local_ip;
                    let policy = self.encryption;
                    let utp = self.utp.clone();
                    tokio::spawn(async move {
                        let result = dial(addr, local, &ours, policy, utp.as_deref()).await;
                        let _ = bg.send(Background::Dialed { peer, result });
                    });
                }
                Action::Disconnect { peer, reason } => {
                    tracing::debug!(?peer, %reason, "disconnecting");
                    self.transports.remove(&peer);
                    if let Some(link) = self.links.remove(&peer) {
                        link.close();
                    }
                }
                Action::WriteBlock { piece, offset, data } => {
                    if let Some(disk) = &self.disk {
                        disk.send(DiskJob::Write { piece, offset, data });
                    }
                }
                Action::ReadBlock { peer, block } => {
                    // The core asks only while the peer's socket has room.
                    if let Some(disk) = &self.disk {
                        disk.send(DiskJob::Read { peer, block });
                    }
                }
                Action::VerifyPiece { piece } => {
                    let expected =
                        self.hashes.as_ref().and_then(|h| h.get(piece as usize)).copied();
                    if let (Some(disk), Some(expected)) = (&self.disk, expected) {
                        disk.send(DiskJob::Verify { piece, expected });
                    }
                }
                Action::PieceVerified { piece } => {
                    self.shared.set_have(piece);
                    self.enforce_memory_budget();
                }
                Action::PieceFailed { piece } => {
                    tracing::warn!(piece, "piece failed its hash check");
                }
                Action::MetadataReceived { .. } => {
                    if self.core.info().is_some_and(|i| i.private) {
                        // BEP 27: its peers come from its trackers only.
                        self.dht_lookups = None;
                        self.lsd_announces = None;
                    }
                    let info = self.core.info().cloned().map(Arc::new);
                    let info_bytes = self.core.info_bytes().cloned();
                    self.status_tx.send_modify(|s| {
                        s.info = info;
                        s.info_bytes = info_bytes;
                    });
                    self.open_storage();
                }
                Action::FetchWebSeed(fetch) => {
                    let client = self.web_seed_client.clone();
                    let bg = self.bg_tx.clone();
                    let WebSeedFetch { seed, id, plan } = fetch;
                    let (stop, cancel) = oneshot::channel();
                    let task = tokio::spawn(async move {
                        let end = client.fetch(&plan, cancel).await;
                        let _ = bg.send(Background::WebSeedFetched { seed, id, end });
                    });
                    self.web_fetches.insert(id, (task.abort_handle(), stop));
                }
                Action::CancelWebSeed { id, .. } => {
                    // The task answers with what arrived; the entry goes when it does.
                    if let Some((task, stop)) = self.web_fetches.remove(&id) {
                        if stop.send(()).is_err() {
                            task.abort(); // already answering: its answer is on the way
                        }
                    }
                }
                Action::Completed => {
                    let now = self.clock.now();
                    self.announcer.on_completed(now);
                    if let Some(disk) = &self.disk {
                        disk.send(DiskJob::Complete);
                    }
                    self.poll_announces(now);
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        let now = self.clock.now();
        self.core.shutdown(now);
        self.drain_actions();
        self.dht_lookups = None;
        self.lsd_announces = None;
        for (_, (fetch, _)) in self.web_fetches.drain() {
            fetch.abort();
        }
        for (_, link) in self.links.drain() {
            link.close();
        }
        if let Some(disk) = &self.disk {
            disk.send(DiskJob::Flush);
        }
        // The record of what is verified, once the writes before it are done; waited for, so
        // a clean exit always leaves one the next start can trust.
        let (saved_tx, saved) = oneshot::channel();
        self.resume_dirty = true;
        if self.save_resume(Some(saved_tx)) {
            let _ = tokio::time::timeout(RESUME_SAVE_TIMEOUT, saved).await;
        }
        // Say goodbye to trackers, briefly.
        self.announcer.stop(now);
        let mut goodbyes = Vec::new();
        while let Some(job) = self.announcer.poll(now) {
            let req = self.announce_request(AnnounceEvent::Stopped);
            let client = self.tracker_client.clone();
            goodbyes.push(tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(STOP_ANNOUNCE_TIMEOUT, client.announce(&job.url, &req))
                        .await;
            }));
        }
        for g in goodbyes {
            let _ = g.await;
        }
        self.disk = None;
        self.shared.close();
        self.set_phase(Phase::Stopped);
    }

    /// Queues a save of the resume record (after the disk's queued writes); `true` if one was
    /// queued (`done` is then told when it is written).
    fn save_resume(&mut self, done: Option<oneshot::Sender<()>>) -> bool {
        let (Some(disk), Some(resume)) = (&self.disk, &self.resume) else { return false };
        // Only once the start's check is over: before, the core knows nothing of the disk.
        if self.resumed.is_none() || !self.resume_dirty {
            return false;
        }
        let bits = self.core.have();
        let have = (0..bits.len()).map(|i| bits.get(i)).collect();
        disk.send(DiskJob::SaveResume { resume: resume.clone(), have, done });
        self.resume_dirty = false;
        self.resume_saved_at = Some(tokio::time::Instant::now());
        true
    }

    // ---- the bounded in-memory store ----

    /// Read-ahead one reader may have in a bounded store: the windows together take at most a
    /// share of the budget, and each at least two pieces so a reader always makes progress.
    fn bounded_window(&self, budget: u64) -> u64 {
        let readers = self.core.readers().count().max(1) as u64;
        let piece = self.core.info().map_or(0, |i| u64::from(i.piece_length));
        (eviction::windows_budget(budget) / readers).max(2 * piece)
    }

    /// Drops verified pieces readers no longer need while the store is over its budget.
    fn enforce_memory_budget(&mut self) {
        let Some(bounded) = &mut self.bounded else { return };
        let resident_bytes = bounded.memory.resident_bytes();
        bounded.peak = bounded.peak.max(resident_bytes);
        let memory = &bounded.memory;
        let target = eviction::resident_target(bounded.budget);
        if resident_bytes <= target {
            return;
        }
        let layout = memory.layout();
        // Pieces still being assembled are not candidates: only verified ones.
        let verified: Vec<u32> =
            memory.resident_pieces().into_iter().filter(|&p| self.core.have().get(p)).collect();
        let windows: Vec<ReaderWindow> = self.core.readers().map(|(_, w)| w).collect();
        let evict = eviction::choose(
            &verified,
            resident_bytes,
            target,
            layout.piece_length(),
            &windows,
            |p| layout.piece_len(p).map_or(0, u64::from),
        );
        let memory = memory.clone();
        let now = self.clock.now();
        for piece in evict {
            self.shared.clear_have(piece);
            memory.evict(piece);
            self.core.on_piece_evicted(now, piece);
        }
    }
}
