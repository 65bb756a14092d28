//! One simulated client: a [`Torrent`] core, its storage, its links and what happened to it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::OnceLock;

use shoal_proto::torrent::{DisconnectReason, Refusal, Stats, Torrent, TorrentConfig};
use shoal_proto::wire::Message;
use shoal_proto::{Instant, PeerKey};

use crate::player::{Player, PlayerStats};
use crate::store::PieceStore;

/// Index of a node in its simulation, in the order nodes were added.
pub type NodeId = usize;

/// What the node starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitialData {
    Nothing,
    Everything,
    /// These pieces are on "disk" at start (a recheck finds them).
    Pieces(Vec<u32>),
}

/// How the node behaves towards its peers, beyond what its core decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Every block it serves has its first byte flipped: pieces built from it fail their hash.
    CorruptBlocks,
    /// Its core runs (handshakes are answered, incoming messages processed), but nothing the
    /// core wants to send leaves the node: only what a test injects with
    /// [`crate::Sim::inject`] does. For scripting a misbehaving peer.
    Puppet,
}

/// How to add a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Bytes per second it can send; `None` for unlimited.
    pub upload_rate: Option<u64>,
    /// Bytes per second it can receive; `None` for unlimited.
    pub download_rate: Option<u64>,
    pub initial: InitialData,
    /// Starts from the magnet (info hash only) and fetches the info dictionary from peers.
    pub magnet: bool,
    pub behaviour: Behaviour,
    /// Overrides the simulation's default core configuration.
    pub torrent: Option<TorrentConfig>,
}

impl NodeConfig {
    /// Has every piece, unlimited links.
    pub fn seeder() -> Self {
        NodeConfig {
            upload_rate: None,
            download_rate: None,
            initial: InitialData::Everything,
            magnet: false,
            behaviour: Behaviour::Honest,
            torrent: None,
        }
    }

    /// Has nothing but the `.torrent`.
    pub fn leecher() -> Self {
        NodeConfig { initial: InitialData::Nothing, ..NodeConfig::seeder() }
    }

    /// Has nothing but the magnet.
    pub fn magnet() -> Self {
        NodeConfig { magnet: true, ..NodeConfig::leecher() }
    }

    pub fn with_pieces(mut self, pieces: impl IntoIterator<Item = u32>) -> Self {
        self.initial = InitialData::Pieces(pieces.into_iter().collect());
        self
    }

    pub fn upload(mut self, bytes_per_second: u64) -> Self {
        self.upload_rate = Some(bytes_per_second);
        self
    }

    pub fn download(mut self, bytes_per_second: u64) -> Self {
        self.download_rate = Some(bytes_per_second);
        self
    }

    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    pub fn torrent_config(mut self, config: TorrentConfig) -> Self {
        self.torrent = Some(config);
        self
    }
}

/// Whether the node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// Shut down cleanly: it said goodbye and its queued data still drains, but it no longer
    /// reacts to anything.
    Stopped,
    /// Vanished: nothing more leaves it, nothing reaches it, nobody is told.
    Crashed,
}

/// The core dropped a peer (an `Action::Disconnect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectRecord {
    pub at: Instant,
    pub remote: NodeId,
    pub reason: DisconnectReason,
}

/// The driver closed a connection because of what arrived on it (a frame the codec refused, a
/// message before the handshake), as the native driver's reader does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverCloseRecord {
    pub at: Instant,
    pub remote: NodeId,
    pub reason: String,
}

/// The core refused an incoming connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalRecord {
    pub at: Instant,
    pub remote: NodeId,
    pub refusal: Refusal,
}

/// Names of message kinds (see [`crate::kind`]), in the order of [`kind_index`].
pub(crate) const KINDS: [&str; 18] = [
    "keep-alive",
    "choke",
    "unchoke",
    "interested",
    "not-interested",
    "have",
    "bitfield",
    "request",
    "piece",
    "cancel",
    "port",
    "suggest",
    "have-all",
    "have-none",
    "reject",
    "allowed-fast",
    "extended",
    "unknown",
];

/// Where a message's kind is in [`KINDS`].
pub(crate) fn kind_index(message: &Message) -> usize {
    match message {
        Message::KeepAlive => 0,
        Message::Choke => 1,
        Message::Unchoke => 2,
        Message::Interested => 3,
        Message::NotInterested => 4,
        Message::Have(_) => 5,
        Message::Bitfield(_) => 6,
        Message::Request(_) => 7,
        Message::Piece { .. } => 8,
        Message::Cancel(_) => 9,
        Message::Port(_) => 10,
        Message::Suggest(_) => 11,
        Message::HaveAll => 12,
        Message::HaveNone => 13,
        Message::Reject(_) => 14,
        Message::AllowedFast(_) => 15,
        Message::Extended { .. } => 16,
        Message::Unknown { .. } => 17,
    }
}

/// Messages counted by kind. Counting is an array increment (a map keyed by name cost a few
/// string comparisons per message, every message of a big swarm); reading it gives the
/// `BTreeMap` of kinds seen, built when first looked at after a change.
#[derive(Clone, Default)]
pub struct KindCounts {
    counts: [u64; KINDS.len()],
    map: OnceLock<BTreeMap<&'static str, u64>>,
}

impl KindCounts {
    pub(crate) fn add(&mut self, message: &Message) {
        self.counts[kind_index(message)] += 1;
        self.map.take();
    }
}

impl Deref for KindCounts {
    type Target = BTreeMap<&'static str, u64>;

    fn deref(&self) -> &Self::Target {
        self.map.get_or_init(|| {
            KINDS.iter().zip(self.counts).filter(|(_, n)| *n > 0).map(|(k, n)| (*k, n)).collect()
        })
    }
}

impl fmt::Debug for KindCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// What happened to a node, for assertions.
#[derive(Clone, Debug, Default)]
pub struct NodeLog {
    /// The first `SimConfig::max_log_records` disconnects (later ones are only counted in
    /// `records_omitted`, so a long run of a big swarm does not grow without bound).
    pub disconnects: Vec<DisconnectRecord>,
    /// The first `SimConfig::max_log_records` closes by the driver.
    pub driver_closes: Vec<DriverCloseRecord>,
    /// The first `SimConfig::max_log_records` refusals.
    pub refusals: Vec<RefusalRecord>,
    /// Disconnects, driver closes and refusals beyond the limit, not kept.
    pub records_omitted: u64,
    /// Connections that completed both handshakes, either direction.
    pub connections: u64,
    pub connect_failures: u64,
    /// Pieces handed to the "disk" for hashing (`Action::VerifyPiece`).
    pub verify_requests: u32,
    pub pieces_verified: u32,
    pub pieces_failed: u32,
    /// Messages handed to the core, by kind.
    pub received: KindCounts,
    /// Messages the core sent (what left the node), by kind.
    pub sent: KindCounts,
    /// Bytes that left its upload link (messages and handshakes as on the wire): what the
    /// node really sent, unlike the core's `uploaded`, which counts blocks handed to the
    /// driver, some still queued or dropped with a closed connection.
    pub wire_bytes_sent: u64,
}

impl NodeLog {
    pub fn received(&self, kind: &str) -> u64 {
        self.received.get(kind).copied().unwrap_or(0)
    }

    pub fn sent(&self, kind: &str) -> u64 {
        self.sent.get(kind).copied().unwrap_or(0)
    }

    pub(crate) fn add_disconnect(&mut self, limit: usize, record: DisconnectRecord) {
        keep(&mut self.disconnects, &mut self.records_omitted, limit, record);
    }

    pub(crate) fn add_driver_close(&mut self, limit: usize, record: DriverCloseRecord) {
        keep(&mut self.driver_closes, &mut self.records_omitted, limit, record);
    }

    pub(crate) fn add_refusal(&mut self, limit: usize, record: RefusalRecord) {
        keep(&mut self.refusals, &mut self.records_omitted, limit, record);
    }
}

fn keep<T>(list: &mut Vec<T>, omitted: &mut u64, limit: usize, record: T) {
    if list.len() < limit {
        list.push(record);
    } else {
        *omitted += 1;
    }
}

pub struct Node {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) torrent: Torrent,
    pub(crate) state: NodeState,
    pub(crate) config: NodeConfig,
    pub(crate) store: Option<PieceStore>,
    /// The connection behind each of the core's peer keys (dialling or open).
    pub(crate) conns: BTreeMap<PeerKey, crate::link::ConnId>,
    /// The timer event currently scheduled for the core.
    pub(crate) timer_at: Option<Instant>,
    pub(crate) uplink: crate::link::Uplink,
    /// When the download link finishes what it is receiving.
    pub(crate) downlink_free: Instant,
    pub(crate) added_at: Instant,
    pub(crate) completed_at: Option<Instant>,
    pub(crate) metadata_at: Option<Instant>,
    pub(crate) log: NodeLog,
    /// A media player reading the torrent at this node, if one was started.
    pub(crate) player: Option<Player>,
}

impl Node {
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn torrent(&self) -> &Torrent {
        &self.torrent
    }

    pub fn state(&self) -> NodeState {
        self.state
    }

    pub fn is_running(&self) -> bool {
        self.state == NodeState::Running
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Every wanted piece verified.
    pub fn is_complete(&self) -> bool {
        self.torrent.is_complete()
    }

    pub fn added_at(&self) -> Instant {
        self.added_at
    }

    /// When the core reported `Completed` (a seeder: at its first recheck).
    pub fn completed_at(&self) -> Option<Instant> {
        self.completed_at
    }

    /// When a magnet node received the info dictionary.
    pub fn metadata_at(&self) -> Option<Instant> {
        self.metadata_at
    }

    pub fn log(&self) -> &NodeLog {
        &self.log
    }

    /// What the node's player went through, if it has one.
    pub fn player(&self) -> Option<&PlayerStats> {
        self.player.as_ref().map(Player::stats)
    }

    pub fn stats(&self, now: Instant) -> Stats {
        self.torrent.stats(now)
    }

    /// The node's web seeds and how they fare.
    pub fn web_seeds(&self, now: Instant) -> Vec<shoal_proto::torrent::WebSeedStatus> {
        self.torrent.web_seeds(now)
    }

    /// Open peer connections as the core counts them.
    pub fn peer_count(&self) -> usize {
        self.torrent.peer_addrs().count()
    }

    /// The whole content as stored, if every piece is there.
    pub fn data(&self) -> Option<Vec<u8>> {
        self.store.as_ref()?.assemble()
    }
}
