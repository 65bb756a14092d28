//! The simulation: nodes, the event queue and the virtual clock.
//!
//! Everything that takes time is an event in one queue ordered by (time, insertion order):
//! frames finishing on an upload link, crossing a link, finishing on a download link; TCP
//! connection setup; storage reads and hash checks; each core's own timer. The clock jumps
//! from one event to the next, so an hour of swarm life costs only the work done in it, and
//! since nothing depends on wall-clock time, hash-map order or threads, a seed always replays
//! the same run.
//!
//! Each node is driven the way the native driver (`shoal::torrent_task`) drives its core: feed
//! one event, then drain every action the core queued and carry it out.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shoal_proto::bitfield::Bitfield;
use shoal_proto::torrent::{Action, Refusal, Torrent, TorrentConfig};
use shoal_proto::wire::{self, BlockRef, Handshake, Message};
use shoal_proto::{Instant, PeerId, PeerKey, PeerSource};

use crate::fixture::TestTorrent;
use crate::link::{
    transmit_time, Conn, ConnId, ConnTable, End, EndState, Frame, Uplink, DIALER, LISTENER,
};
use crate::node::{
    Behaviour, DisconnectRecord, DriverCloseRecord, InitialData, Node, NodeConfig, NodeId, NodeLog,
    NodeState, RefusalRecord,
};
use crate::rng::SimRng;
use crate::store::{PieceStore, Verify};
use crate::webseed::{PendingFetch, SimWebSeed, WebSeedConfig};
use shoal_proto::torrent::WebSeedFetch;
use shoal_proto::webseed::WebSeedError;

mod playing;
mod queue;

use queue::EventQueue;

/// The port every simulated node listens on.
pub const LISTEN_PORT: u16 = 6881;

/// The network between nodes.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way delay every connection has at least.
    pub latency: Duration,
    /// Each connection adds a fixed extra delay drawn from `0..latency_spread`.
    pub latency_spread: Duration,
    /// A dial that has not completed both handshakes after this long fails (the native
    /// driver's `HANDSHAKE_TIMEOUT`).
    pub connect_timeout: Duration,
    /// Time a storage read, a hash check or a recheck takes.
    pub disk_latency: Duration,
    /// Encode every message to bytes and decode it with the core's `FrameDecoder` on arrival,
    /// instead of handing the `Message` value over. Slower; exercises the codec.
    pub codec: bool,
    /// How completed pieces (and the pieces a recheck finds) are checked: real SHA-1 (the
    /// default), or `Verify::Identity`, which gives the same verdict without hashing, for
    /// swarms where SHA-1 would be most of the run's cost.
    pub verify: Verify,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(20),
            latency_spread: Duration::from_millis(30),
            connect_timeout: Duration::from_secs(10),
            disk_latency: Duration::ZERO,
            codec: false,
            verify: Verify::Sha1,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub net: NetConfig,
    /// The core configuration nodes get unless their [`NodeConfig`] says otherwise. The listen
    /// port is always set to [`LISTEN_PORT`].
    pub torrent: TorrentConfig,
    /// A single `run_until` call gives up after this many events (a guard against a livelock
    /// that would keep virtual time from advancing).
    pub max_events_per_run: u64,
    /// Disconnects, driver closes and refusals each node's log keeps, per kind; later ones
    /// are only counted (`NodeLog::records_omitted`). Bounds memory in long runs of big
    /// swarms; lower it for ten thousand nodes.
    pub max_log_records: usize,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            net: NetConfig::default(),
            torrent: TorrentConfig::default(),
            max_events_per_run: 50_000_000,
            max_log_records: 1000,
        }
    }
}

/// Why `run_until` stopped without its condition becoming true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeoutReason {
    /// The time limit passed.
    Deadline,
    /// Nothing is left to happen (every node stopped or crashed).
    Idle,
    /// The event budget ran out (see [`SimConfig::max_events_per_run`]).
    EventBudget,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the simulation stopped at {:?} ({reason:?}) before the condition held", at.since_epoch())]
pub struct Timeout {
    pub at: Instant,
    pub reason: TimeoutReason,
}

/// Counters over the whole simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Peer wire messages handed to cores.
    pub messages: u64,
    /// Block payload bytes handed to cores.
    pub payload_bytes: u64,
    /// Everything that crossed the network (messages, handshakes), in bytes.
    pub wire_bytes: u64,
    /// Dials the cores asked for.
    pub dials: u64,
    /// Connections that completed both handshakes.
    pub connections: u64,
    /// Frames that arrived at an end that was closed, or at a node that no longer runs.
    pub dropped_frames: u64,
}

#[derive(Debug)]
enum Event {
    Timer {
        node: NodeId,
    },
    /// The dialler's SYN reached the listener.
    Syn {
        conn: ConnId,
    },
    /// The listener's SYN-ACK reached the dialler: it sends its handshake.
    SynAck {
        conn: ConnId,
    },
    HandshakeTimeout {
        conn: ConnId,
    },
    /// A dial to an address nobody has.
    Unreachable {
        node: NodeId,
        key: PeerKey,
    },
    UplinkDone {
        node: NodeId,
        conn: ConnId,
        side: usize,
        frame: Frame,
    },
    Arrive {
        conn: ConnId,
        to: usize,
        frame: Frame,
    },
    Deliver {
        conn: ConnId,
        to: usize,
        frame: Frame,
    },
    DiskRead {
        node: NodeId,
        peer: PeerKey,
        block: BlockRef,
    },
    DiskVerify {
        node: NodeId,
        piece: u32,
    },
    /// Storage is open: check what is there and start the core.
    Recheck {
        node: NodeId,
    },
    /// A web seed's answer to a fetch is complete.
    /// A web seed fetch's answer is complete (unless the node cancelled it: see
    /// `Sim::web_fetches`).
    WebSeedDone {
        node: NodeId,
        id: u64,
    },
    /// The driver's answer to a cancelled fetch: what had arrived.
    WebSeedCancelled {
        node: NodeId,
        seed: PeerKey,
        id: u64,
        prefix: Bytes,
    },
    /// A node's player looks again: its playback reaches a piece boundary (`timer`), or a
    /// piece its reads wait for was verified.
    Player {
        node: NodeId,
        timer: bool,
    },
}

impl Event {
    /// The connection the event is about, which is kept until the event is handled (see
    /// `ConnTable`). No wildcard: a new event naming a connection must be listed here.
    fn conn(&self) -> Option<ConnId> {
        match self {
            Event::Syn { conn }
            | Event::SynAck { conn }
            | Event::HandshakeTimeout { conn }
            | Event::UplinkDone { conn, .. }
            | Event::Arrive { conn, .. }
            | Event::Deliver { conn, .. } => Some(*conn),
            Event::Timer { .. }
            | Event::Unreachable { .. }
            | Event::DiskRead { .. }
            | Event::DiskVerify { .. }
            | Event::Recheck { .. }
            | Event::WebSeedDone { .. }
            | Event::WebSeedCancelled { .. }
            | Event::Player { .. } => None,
        }
    }
}

pub struct Sim {
    config: SimConfig,
    torrent: TestTorrent,
    rng: SimRng,
    now: Instant,
    queue: EventQueue<Event>,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    conns: ConnTable,
    next_conn: u64,
    /// Established connections ever, per unordered pair of nodes.
    pair_connections: BTreeMap<(NodeId, NodeId), u64>,
    stats: SimStats,
    web_seeds: Vec<SimWebSeed>,
    /// Web seed fetches under way, by node and fetch id.
    web_fetches: BTreeMap<(NodeId, u64), PendingFetch>,
    /// Running nodes, in no particular order, and each node's index in it (`usize::MAX` once
    /// it stopped or crashed): a tracker answer picks among them with `count` draws instead
    /// of walking and shuffling every node, which dominated at 10,000 nodes.
    running: Vec<NodeId>,
    running_at: Vec<usize>,
}

impl Sim {
    /// A simulation of `torrent` with default settings.
    pub fn new(seed: u64, torrent: TestTorrent) -> Sim {
        Sim::with_config(SimConfig::new(seed), torrent)
    }

    pub fn with_config(config: SimConfig, torrent: TestTorrent) -> Sim {
        Sim {
            rng: SimRng::new(config.seed),
            config,
            torrent,
            now: Instant::ZERO,
            queue: EventQueue::new(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            conns: ConnTable::default(),
            next_conn: 1,
            pair_connections: BTreeMap::new(),
            stats: SimStats::default(),
            web_seeds: Vec::new(),
            web_fetches: BTreeMap::new(),
            running: Vec::new(),
            running_at: Vec::new(),
        }
    }

    // ---- looking ----

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now.since_epoch()
    }

    pub fn torrent(&self) -> &TestTorrent {
        &self.torrent
    }

    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Events scheduled and not yet handled (what the queue holds).
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Connections the simulation still keeps: open, closing, or with frames in flight.
    pub fn live_connections(&self) -> usize {
        self.conns.live()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Whether every running node has every wanted piece.
    pub fn all_complete(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_running()).all(Node::is_complete)
    }

    /// Connections between `a` and `b` that completed both handshakes, ever.
    pub fn connections_between(&self, a: NodeId, b: NodeId) -> u64 {
        self.pair_connections.get(&(a.min(b), a.max(b))).copied().unwrap_or(0)
    }

    /// Whether `a` and `b` have an open connection right now (as seen from `a`).
    pub fn is_connected(&self, a: NodeId, b: NodeId) -> bool {
        self.open_conn(a, b).is_some()
    }

    /// Bytes `from` has queued on its upload link for its open connections to `to`: what
    /// the peer will receive before anything `from` sends it from now on.
    pub fn queued_bytes(&self, from: NodeId, to: NodeId) -> u64 {
        self.nodes[from]
            .conns
            .values()
            .filter_map(|id| self.conns.get(id))
            .flat_map(|c| (0..2).map(move |s| (c, s)))
            .filter(|(c, s)| c.ends[*s].node == from && c.ends[Conn::other(*s)].node == to)
            .map(|(c, s)| c.ends[s].out_bytes)
            .sum()
    }

    // ---- changing the world ----

    /// Adds a node; it opens its storage (a recheck), then starts.
    pub fn add_node(&mut self, config: NodeConfig) -> NodeId {
        let id = self.nodes.len();
        let addr = node_addr(id);
        let mut random = [0u8; 12];
        self.rng.fill(&mut random);
        let mut core_config = config.torrent.clone().unwrap_or_else(|| self.config.torrent.clone());
        core_config.listen_port = Some(LISTEN_PORT);
        let info_bytes = (!config.magnet).then(|| self.torrent.info_bytes.clone());
        let torrent = Torrent::new(
            core_config,
            self.torrent.info_hash(),
            PeerId::generate(random),
            info_bytes,
            self.rng.next_u64(),
        )
        .expect("the fixture's info dictionary was parsed once already");
        self.nodes.push(Node {
            id,
            addr,
            torrent,
            state: NodeState::Running,
            config,
            store: None,
            conns: BTreeMap::new(),
            timer_at: None,
            uplink: Uplink::default(),
            downlink_free: self.now,
            added_at: self.now,
            completed_at: None,
            metadata_at: None,
            log: NodeLog::default(),
            player: None,
        });
        self.by_addr.insert(addr, id);
        self.running_at.push(self.running.len());
        self.running.push(id);
        // As the native task does: open storage (recheck in the background), then tick once.
        if self.nodes[id].torrent.info().is_some() {
            self.schedule_in(self.config.net.disk_latency, Event::Recheck { node: id });
        }
        let now = self.now;
        self.nodes[id].torrent.handle_timeout(now);
        self.drain(id);
        id
    }

    /// Starts a web seed server; give its URL to nodes with [`Sim::use_web_seed`].
    pub fn add_web_seed(&mut self, config: WebSeedConfig) {
        self.web_seeds.push(SimWebSeed { config, busy_until: self.now, fetches: 0, bytes_sent: 0 });
    }

    /// `node` is told about a web seed URL (as from a torrent's `url-list`).
    pub fn use_web_seed(&mut self, node: NodeId, url: &str) {
        let now = self.now;
        if let Err(e) = self.nodes[node].torrent.add_web_seed(now, url) {
            panic!("the core refused web seed {url}: {e}");
        }
        self.drain(node);
    }

    /// Fetches served by the web seed at `url` so far.
    pub fn web_seed_fetches(&self, url: &str) -> u64 {
        self.web_seeds.iter().find(|w| w.config.url == url).map_or(0, |w| w.fetches)
    }

    /// Body bytes the web seed at `url` sent so far (cancelled fetches count what went out).
    pub fn web_seed_bytes(&self, url: &str) -> u64 {
        self.web_seeds.iter().find(|w| w.config.url == url).map_or(0, |w| w.bytes_sent)
    }

    /// `node` learns `other`'s address (as from a tracker) and may dial it.
    pub fn introduce(&mut self, node: NodeId, other: NodeId) {
        let addr = self.nodes[other].addr;
        self.add_peer_addrs(node, vec![addr]);
    }

    /// Every node learns every other node's address.
    pub fn connect_all(&mut self) {
        for node in 0..self.nodes.len() {
            let addrs: Vec<SocketAddr> =
                self.nodes.iter().filter(|n| n.id != node).map(|n| n.addr).collect();
            self.add_peer_addrs(node, addrs);
        }
    }

    /// `node` learns up to `count` addresses of other running nodes, picked at random (a
    /// tracker's answer).
    pub fn introduce_random(&mut self, node: NodeId, count: usize) {
        // A partial Fisher-Yates over the running nodes, in place: `node` itself is first
        // moved past the end of the candidates.
        let mut candidates = self.running.len();
        if let Some(&at) = self.running_at.get(node).filter(|&&at| at != usize::MAX) {
            candidates -= 1;
            self.swap_running(at, candidates);
        }
        let take = count.min(candidates);
        let mut addrs = Vec::with_capacity(take);
        for k in 0..take {
            let pick = k + self.rng.below((candidates - k) as u64) as usize;
            self.swap_running(k, pick);
            addrs.push(self.nodes[self.running[k]].addr);
        }
        self.add_peer_addrs(node, addrs);
    }

    fn swap_running(&mut self, a: usize, b: usize) {
        self.running.swap(a, b);
        self.running_at[self.running[a]] = a;
        self.running_at[self.running[b]] = b;
    }

    /// `node` no longer runs: tracker answers leave it out.
    fn leave_running(&mut self, node: NodeId) {
        let at = std::mem::replace(&mut self.running_at[node], usize::MAX);
        if at == usize::MAX {
            return;
        }
        self.running.swap_remove(at);
        if let Some(&moved) = self.running.get(at) {
            self.running_at[moved] = at;
        }
    }

    /// `node` learns arbitrary addresses (nobody may live there: dials to them time out).
    pub fn add_peer_addrs(&mut self, node: NodeId, addrs: Vec<SocketAddr>) {
        if !self.nodes[node].is_running() {
            return;
        }
        let now = self.now;
        self.nodes[node].torrent.add_peer_addrs(now, PeerSource::Tracker, addrs);
        self.drain(node);
    }

    /// The node vanishes: no goodbye, nothing queued leaves it, nothing reaches it. Its peers
    /// find out only through their own timeouts. Frames already on the wire still arrive.
    pub fn kill(&mut self, node: NodeId) {
        self.nodes[node].state = NodeState::Crashed;
        self.leave_running(node);
        self.nodes[node].uplink = Uplink::default();
        self.nodes[node].conns.clear();
        for conn in self.conns.values_mut() {
            for end in conn.ends.iter_mut().filter(|e| e.node == node) {
                end.state = EndState::Closed;
                end.clear_out();
            }
        }
    }

    /// The node shuts down cleanly: its core says goodbye to every peer (their connections
    /// close in order, after what was queued), then it stops reacting.
    pub fn stop(&mut self, node: NodeId) {
        if !self.nodes[node].is_running() {
            return;
        }
        let now = self.now;
        self.nodes[node].torrent.shutdown(now);
        self.drain(node);
        self.nodes[node].state = NodeState::Stopped;
        self.leave_running(node);
    }

    /// Sends `message` from `from` to `to` on their open connection, whatever `from`'s core
    /// thinks (for scripting misbehaviour). False if they are not connected.
    pub fn inject(&mut self, from: NodeId, to: NodeId, message: Message) -> bool {
        let Some((conn, side)) = self.open_conn(from, to) else { return false };
        let frame = self.frame_for(message);
        self.enqueue(conn, side, frame);
        true
    }

    /// Sends raw bytes from `from` to `to`: the receiver runs them through its frame decoder.
    pub fn inject_bytes(&mut self, from: NodeId, to: NodeId, bytes: Bytes) -> bool {
        let Some((conn, side)) = self.open_conn(from, to) else { return false };
        self.enqueue(conn, side, Frame::Bytes(bytes));
        true
    }

    fn open_conn(&self, from: NodeId, to: NodeId) -> Option<(ConnId, usize)> {
        self.nodes[from].conns.values().find_map(|&id| {
            let conn = self.conns.get(&id)?;
            let side = if conn.ends[DIALER].node == from { DIALER } else { LISTENER };
            let other = &conn.ends[Conn::other(side)];
            let open = conn.ends[side].state == EndState::Open && other.state == EndState::Open;
            (open && other.node == to).then_some((id, side))
        })
    }

    // ---- running ----

    /// Runs until `done` holds (checked whenever the clock is about to advance) or `limit` of
    /// virtual time has passed. Returns the virtual time at which `done` held.
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&Sim) -> bool,
        limit: Duration,
    ) -> Result<Instant, Timeout> {
        let deadline = self.now + limit;
        let budget = self.stats.events + self.config.max_events_per_run;
        loop {
            if done(self) {
                return Ok(self.now);
            }
            let Some(next) = self.queue.peek_at() else {
                return Err(Timeout { at: self.now, reason: TimeoutReason::Idle });
            };
            if next > deadline {
                self.now = deadline;
                return Err(Timeout { at: self.now, reason: TimeoutReason::Deadline });
            }
            self.now = next;
            while let Some(event) = self.queue.pop_at(next) {
                self.stats.events += 1;
                let conn = event.conn();
                self.handle(event);
                if let Some(conn) = conn {
                    self.conns.release(conn);
                }
                if self.stats.events >= budget {
                    return Err(Timeout { at: self.now, reason: TimeoutReason::EventBudget });
                }
            }
        }
    }

    /// Lets `duration` of virtual time pass.
    pub fn run_for(&mut self, duration: Duration) {
        let _ = self.run_until(|_| false, duration);
    }

    fn schedule_in(&mut self, delay: Duration, event: Event) {
        let at = self.now + delay;
        self.schedule(at, event);
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        if let Some(conn) = event.conn() {
            self.conns.hold(conn);
        }
        self.queue.push(at.max(self.now), self.now, event);
    }

    fn running(&self, node: NodeId) -> bool {
        self.nodes[node].is_running()
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Timer { node } => {
                let n = &mut self.nodes[node];
                if n.is_running() && n.timer_at == Some(now) {
                    n.timer_at = None;
                    n.torrent.handle_timeout(now);
                    self.drain(node);
                }
            }
            Event::Syn { conn } => self.on_syn(conn),
            Event::SynAck { conn } => {
                let Some(c) = self.conns.get(&conn) else { return };
                let dialer = c.ends[DIALER].node;
                if c.ends[DIALER].state == EndState::Dialing && self.running(dialer) {
                    let hs = self.nodes[dialer].torrent.handshake();
                    self.enqueue(conn, DIALER, Frame::Handshake(hs));
                }
            }
            Event::HandshakeTimeout { conn } => {
                if self.conns.get(&conn).is_some_and(|c| c.ends[DIALER].state == EndState::Dialing)
                {
                    self.fail_dial(conn);
                }
            }
            Event::Unreachable { node, key } => {
                if self.running(node) {
                    self.nodes[node].log.connect_failures += 1;
                    self.nodes[node].torrent.on_connect_failed(now, key);
                    self.drain(node);
                }
            }
            Event::UplinkDone { node, conn, side, frame } => {
                if self.nodes[node].state == NodeState::Crashed {
                    return;
                }
                self.launch(conn, side, frame);
                self.uplink_next(node);
            }
            Event::Arrive { conn, to, frame } => self.on_arrive(conn, to, frame),
            Event::Deliver { conn, to, frame } => {
                let Some(node) = self.conns.get(&conn).map(|c| c.ends[to].node) else { return };
                if self.running(node) {
                    self.deliver(conn, to, frame);
                } else {
                    self.stats.dropped_frames += 1;
                }
            }
            Event::DiskRead { node, peer, block } => {
                if !self.running(node) {
                    return;
                }
                let n = &mut self.nodes[node];
                let mut data =
                    n.store.as_ref().and_then(|s| s.read(block.piece, block.offset, block.length));
                if n.config.behaviour == Behaviour::CorruptBlocks {
                    data = data.map(corrupt);
                }
                n.torrent.on_block_read(now, peer, block, data);
                self.drain(node);
            }
            Event::DiskVerify { node, piece } => {
                if !self.running(node) {
                    return;
                }
                let n = &mut self.nodes[node];
                let expected = n.torrent.info().and_then(|i| i.piece_hash(piece)).copied();
                let Some(store) = n.store.as_mut() else { return };
                let ok = store.verify(piece, self.config.net.verify, expected.as_ref());
                if !ok {
                    store.clear(piece);
                }
                n.torrent.on_piece_verified(now, piece, ok);
                self.drain(node);
            }
            Event::Recheck { node } => self.recheck(node),
            Event::Player { node, timer } => self.on_player_wake(node, timer),
            Event::WebSeedDone { node, id } => {
                let Some(fetch) = self.web_fetches.remove(&(node, id)) else { return };
                if let (Ok(data), Some(server)) = (&fetch.result, fetch.server) {
                    self.web_seeds[server].bytes_sent += data.len() as u64;
                }
                if !self.running(node) {
                    return;
                }
                let torrent = &mut self.nodes[node].torrent;
                match fetch.result {
                    Ok(data) => torrent.on_web_seed_data(now, fetch.seed, id, data),
                    Err(e) => torrent.on_web_seed_failed(now, fetch.seed, id, &e),
                }
                self.drain(node);
            }
            Event::WebSeedCancelled { node, seed, id, prefix } => {
                if !self.running(node) {
                    return;
                }
                self.nodes[node].torrent.on_web_seed_cancelled(now, seed, id, prefix);
                self.drain(node);
            }
        }
    }

    // ---- storage ----

    fn recheck(&mut self, node: NodeId) {
        if !self.running(node) {
            return;
        }
        let torrent = &self.torrent;
        let n = &mut self.nodes[node];
        let Some(info) = n.torrent.info().cloned() else { return };
        if n.store.is_none() {
            // Knowing the content lets the store keep pieces that equal it as bits.
            let mut store = PieceStore::with_content(&info, torrent.content.clone());
            let pieces: Vec<u32> = match &n.config.initial {
                InitialData::Nothing => Vec::new(),
                InitialData::Everything => (0..info.piece_count()).collect(),
                InitialData::Pieces(list) => list.clone(),
            };
            for piece in pieces {
                store.write(piece, 0, torrent.piece(piece));
            }
            n.store = Some(store);
        }
        let mut have = Bitfield::new(info.piece_count());
        if let Some(store) = &n.store {
            for piece in 0..info.piece_count() {
                if store.verify(piece, self.config.net.verify, info.piece_hash(piece)) {
                    have.set(piece);
                }
            }
        }
        let now = self.now;
        n.torrent.start(now, &have);
        self.drain(node);
        // What the recheck found came with no `PieceVerified`.
        self.player_pieces_verified(node, None);
    }

    // ---- carrying out the core's actions ----

    fn drain(&mut self, node: NodeId) {
        while let Some(action) = self.nodes[node].torrent.poll_action() {
            self.apply(node, action);
        }
        self.report_backlogs(node);
        let now = self.now;
        let n = &mut self.nodes[node];
        // One live timer per node; events for a time that is no longer wanted are skipped.
        let next = n.torrent.poll_timeout().map(|at| at.max(now));
        if next != n.timer_at && n.is_running() {
            n.timer_at = next;
            if let Some(at) = next {
                self.schedule(at, Event::Timer { node });
            }
        }
    }

    /// After the core's actions are carried out, it learns what the uplink really holds for
    /// each peer whose requests wait (as the native driver reports after each batch): its
    /// own count only adds what it sent. Later reports come as frames leave the uplink.
    fn report_backlogs(&mut self, node: NodeId) {
        if self.nodes[node].torrent.backlogged_peers().next().is_none() {
            return;
        }
        let waiting: Vec<PeerKey> = self.nodes[node].torrent.backlogged_peers().collect();
        let now = self.now;
        for peer in waiting {
            let queued = self.nodes[node]
                .conns
                .get(&peer)
                .and_then(|&conn| Some((conn, self.side_of(conn, node, peer)?)))
                .map_or(0, |(conn, side)| self.conns[&conn].ends[side].out_bytes);
            self.nodes[node].torrent.on_send_backlog(now, peer, queued);
        }
        while let Some(action) = self.nodes[node].torrent.poll_action() {
            self.apply(node, action);
        }
    }

    fn apply(&mut self, node: NodeId, action: Action) {
        let now = self.now;
        match action {
            Action::Connect { peer, addr } => self.dial(node, peer, addr),
            Action::Send { peer, message } => self.send(node, peer, message),
            Action::Disconnect { peer, reason } => {
                let Some(conn) = self.nodes[node].conns.remove(&peer) else { return };
                let Some(side) = self.side_of(conn, node, peer) else { return };
                let remote = self.conns[&conn].ends[Conn::other(side)].node;
                let record = DisconnectRecord { at: now, remote, reason };
                self.nodes[node].log.add_disconnect(self.config.max_log_records, record);
                self.close_end(conn, side);
            }
            Action::WriteBlock { piece, offset, data } => {
                if let Some(store) = &mut self.nodes[node].store {
                    store.write(piece, offset, data);
                }
            }
            Action::ReadBlock { peer, block } => {
                // The core asks only while the connection's uplink queue has room.
                let read = Event::DiskRead { node, peer, block };
                self.schedule_in(self.config.net.disk_latency, read);
            }
            Action::VerifyPiece { piece } => {
                self.nodes[node].log.verify_requests += 1;
                self.schedule_in(self.config.net.disk_latency, Event::DiskVerify { node, piece });
            }
            Action::PieceVerified { piece } => {
                self.nodes[node].log.pieces_verified += 1;
                self.player_pieces_verified(node, Some(piece));
            }
            Action::PieceFailed { .. } => self.nodes[node].log.pieces_failed += 1,
            Action::MetadataReceived { .. } => {
                self.nodes[node].metadata_at.get_or_insert(now);
                self.schedule_in(self.config.net.disk_latency, Event::Recheck { node });
            }
            Action::Completed => {
                self.nodes[node].completed_at.get_or_insert(now);
            }
            Action::FetchWebSeed(fetch) => self.fetch_web_seed(node, fetch),
            Action::CancelWebSeed { seed, id } => self.cancel_web_seed(node, seed, id),
        }
    }

    fn fetch_web_seed(&mut self, node: NodeId, fetch: WebSeedFetch) {
        let now = self.now;
        let url = fetch.plan.requests.first().map(|r| r.url.clone()).unwrap_or_default();
        let piece_length = u64::from(self.torrent.metainfo.info.piece_length);
        let WebSeedFetch { seed, id, .. } = fetch;
        let Some(server) = self.web_seeds.iter().position(|w| w.config.url == url) else {
            let refused = WebSeedError::Transport("connection refused".into());
            let pending =
                PendingFetch { seed, server: None, start: now, done: now, result: Err(refused) };
            self.web_fetches.insert((node, id), pending);
            self.schedule(now, Event::WebSeedDone { node, id });
            return;
        };
        let (start, done, result) =
            self.web_seeds[server].serve(now, &fetch, &self.torrent.content, piece_length);
        let server = Some(server);
        self.web_fetches.insert((node, id), PendingFetch { seed, server, start, done, result });
        self.schedule(done, Event::WebSeedDone { node, id });
    }

    /// The node stops a fetch: it gets what arrived so far, and the server stops sending
    /// (its link is free again if this was the last fetch queued on it).
    fn cancel_web_seed(&mut self, node: NodeId, seed: PeerKey, id: u64) {
        let now = self.now;
        let Some(fetch) = self.web_fetches.remove(&(node, id)) else { return };
        let prefix = fetch.arrived(now);
        if let Some(server) = fetch.server.and_then(|s| self.web_seeds.get_mut(s)) {
            server.bytes_sent += prefix.len() as u64;
            if server.busy_until == fetch.done {
                server.busy_until = now.max(fetch.start);
            }
        }
        self.schedule(now, Event::WebSeedCancelled { node, seed, id, prefix });
    }

    /// Tells the core what a connection's uplink queue still holds when its requests wait
    /// for it (the core's one rule, `SEND_BACKLOG_LIMIT`, as in the native and browser
    /// drivers).
    fn report_backlog(&mut self, conn: ConnId, side: usize) {
        let Some(c) = self.conns.get(&conn) else { return };
        let end = &c.ends[side];
        let (node, Some(peer)) = (end.node, end.key) else { return };
        if !self.running(node) || !self.nodes[node].torrent.is_send_backlogged(peer) {
            return;
        }
        let queued = end.out_bytes;
        let now = self.now;
        self.nodes[node].torrent.on_send_backlog(now, peer, queued);
        self.drain(node);
    }

    fn side_of(&self, conn: ConnId, node: NodeId, key: PeerKey) -> Option<usize> {
        let c = self.conns.get(&conn)?;
        (0..2).find(|&s| c.ends[s].node == node && c.ends[s].key == Some(key))
    }

    fn frame_for(&self, message: Message) -> Frame {
        if self.config.net.codec {
            let mut buf = BytesMut::with_capacity(message.encoded_len());
            message.encode(&mut buf);
            Frame::Bytes(buf.freeze())
        } else {
            Frame::Message(message)
        }
    }

    fn send(&mut self, node: NodeId, peer: PeerKey, message: Message) {
        let Some(&conn) = self.nodes[node].conns.get(&peer) else { return };
        let Some(side) = self.side_of(conn, node, peer) else { return };
        if self.conns[&conn].ends[side].state != EndState::Open {
            return;
        }
        let n = &mut self.nodes[node];
        if n.config.behaviour == Behaviour::Puppet {
            return;
        }
        n.log.sent.add(&message);
        let frame = self.frame_for(message);
        self.enqueue(conn, side, frame);
    }

    // ---- connections ----

    fn dial(&mut self, node: NodeId, key: PeerKey, addr: SocketAddr) {
        self.stats.dials += 1;
        let timeout = self.config.net.connect_timeout;
        let Some(&target) = self.by_addr.get(&addr) else {
            self.schedule_in(timeout, Event::Unreachable { node, key });
            return;
        };
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let spread = self.config.net.latency_spread.as_nanos() as u64;
        let latency = self.config.net.latency + Duration::from_nanos(self.rng.below(spread));
        let conn = Conn {
            ends: [
                End::new(node, Some(key), EndState::Dialing),
                // Nobody listens on it until the SYN arrives.
                End::new(target, None, EndState::Closed),
            ],
            latency,
        };
        self.conns.insert(id, conn);
        self.nodes[node].conns.insert(key, id);
        self.schedule_in(latency, Event::Syn { conn: id });
        self.schedule_in(timeout, Event::HandshakeTimeout { conn: id });
    }

    fn on_syn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let listener = c.ends[LISTENER].node;
        // A vanished host never answers; the dialler times out.
        if self.nodes[listener].is_running() && c.ends[DIALER].state == EndState::Dialing {
            c.ends[LISTENER].state = EndState::Accepting;
            let latency = c.latency;
            self.schedule_in(latency, Event::SynAck { conn });
        }
    }

    /// The dial failed before both handshakes were done.
    fn fail_dial(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let end = &mut c.ends[DIALER];
        end.state = EndState::Closed;
        let (node, key) = (end.node, end.key);
        self.enqueue(conn, DIALER, Frame::Fin);
        let Some(key) = key else { return };
        self.nodes[node].conns.remove(&key);
        if self.running(node) {
            self.nodes[node].log.connect_failures += 1;
            let now = self.now;
            self.nodes[node].torrent.on_connect_failed(now, key);
            self.drain(node);
        }
    }

    /// Our core dropped the peer: close our end after what is queued.
    fn close_end(&mut self, conn: ConnId, side: usize) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.ends[side].state == EndState::Closed {
            return;
        }
        c.ends[side].state = EndState::Closed;
        self.enqueue(conn, side, Frame::Fin);
    }

    /// The connection ended from under the core (the peer closed it, or what it sent cannot be
    /// decoded): tell the core as the native reader task does.
    fn lost(&mut self, conn: ConnId, side: usize, send_fin: bool) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let end = &mut c.ends[side];
        let was = end.state;
        end.state = EndState::Closed;
        let (node, key) = (end.node, end.key);
        if send_fin {
            self.enqueue(conn, side, Frame::Fin);
        } else {
            end.clear_out();
        }
        let Some(key) = key else { return };
        self.nodes[node].conns.remove(&key);
        let now = self.now;
        match was {
            EndState::Open => self.nodes[node].torrent.on_disconnected(now, key),
            EndState::Dialing => {
                self.nodes[node].log.connect_failures += 1;
                self.nodes[node].torrent.on_connect_failed(now, key);
            }
            EndState::Accepting | EndState::Closed => return,
        }
        self.drain(node);
    }

    fn protocol_close(&mut self, conn: ConnId, side: usize, reason: String) {
        let Some(c) = self.conns.get(&conn) else { return };
        let node = c.ends[side].node;
        let remote = c.ends[Conn::other(side)].node;
        let at = self.now;
        let record = DriverCloseRecord { at, remote, reason };
        self.nodes[node].log.add_driver_close(self.config.max_log_records, record);
        self.lost(conn, side, true);
    }

    /// The listener read the dialler's handshake.
    fn accept(&mut self, conn: ConnId, remote: Handshake) {
        let c = &self.conns[&conn];
        let (node, dialer) = (c.ends[LISTENER].node, c.ends[DIALER].node);
        let remote_addr = SocketAddr::new(self.nodes[dialer].addr.ip(), ephemeral_port(conn));
        let now = self.now;
        let result = if remote.info_hash == self.nodes[node].torrent.info_hash() {
            self.nodes[node].torrent.on_incoming(
                now,
                Some(remote_addr),
                PeerSource::Incoming,
                &remote,
            )
        } else {
            Err(Refusal::WrongTorrent)
        };
        match result {
            Ok(key) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.ends[LISTENER].key = Some(key);
                    c.ends[LISTENER].state = EndState::Open;
                }
                self.nodes[node].conns.insert(key, conn);
                self.nodes[node].log.connections += 1;
                // Our handshake goes first, then whatever the core queued (bitfield, ...).
                let ours = self.nodes[node].torrent.handshake();
                self.enqueue(conn, LISTENER, Frame::Handshake(ours));
                self.drain(node);
            }
            Err(refusal) => {
                self.nodes[node].log.add_refusal(
                    self.config.max_log_records,
                    RefusalRecord { at: now, remote: dialer, refusal },
                );
                self.close_end(conn, LISTENER);
            }
        }
    }

    /// The dialler read the listener's handshake.
    fn connected(&mut self, conn: ConnId, remote: Handshake) {
        let c = &self.conns[&conn];
        let (node, listener) = (c.ends[DIALER].node, c.ends[LISTENER].node);
        let Some(key) = c.ends[DIALER].key else { return };
        if remote.info_hash != self.nodes[node].torrent.info_hash() {
            return self.fail_dial(conn);
        }
        let now = self.now;
        if self.nodes[node].torrent.on_connected(now, key, &remote) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.ends[DIALER].state = EndState::Open;
            }
            self.nodes[node].log.connections += 1;
            self.stats.connections += 1;
            *self.pair_connections.entry((node.min(listener), node.max(listener))).or_default() +=
                1;
            self.drain(node);
        } else {
            // Refused (duplicate, banned, ourselves): the core queued a `Disconnect`, which
            // closes the connection as the native driver drops the stream.
            self.drain(node);
            if self.nodes[node].conns.remove(&key).is_some() {
                self.close_end(conn, DIALER);
            }
        }
    }

    // ---- moving frames ----

    /// Queues a frame on `side`'s upload link (or puts it on the wire at once when the link is
    /// unlimited).
    fn enqueue(&mut self, conn: ConnId, side: usize, frame: Frame) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let node = c.ends[side].node;
        let n = &mut self.nodes[node];
        if n.state == NodeState::Crashed {
            return;
        }
        if n.config.upload_rate.is_none() {
            self.launch(conn, side, frame);
            return;
        }
        let end = &mut c.ends[side];
        end.push_out(frame);
        if end.out.len() == 1 {
            n.uplink.ring.push_back((conn, side));
        }
        if !n.uplink.busy {
            self.uplink_next(node);
        }
    }

    /// Starts sending the next frame, taking connections in turn.
    fn uplink_next(&mut self, node: NodeId) {
        let rate = self.nodes[node].config.upload_rate;
        loop {
            let uplink = &mut self.nodes[node].uplink;
            let Some((conn, side)) = uplink.ring.pop_front() else {
                uplink.busy = false;
                return;
            };
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            let Some(frame) = c.ends[side].pop_out() else { continue };
            if !c.ends[side].out.is_empty() {
                uplink.ring.push_back((conn, side));
            }
            uplink.busy = true;
            let done = transmit_time(frame.wire_len(), rate);
            self.schedule_in(done, Event::UplinkDone { node, conn, side, frame });
            self.report_backlog(conn, side);
            return;
        }
    }

    /// The frame left the sender: it crosses the link.
    fn launch(&mut self, conn: ConnId, side: usize, frame: Frame) {
        let Some(c) = self.conns.get(&conn) else { return };
        let latency = c.latency;
        self.nodes[c.ends[side].node].log.wire_bytes_sent += frame.wire_len();
        self.schedule_in(latency, Event::Arrive { conn, to: Conn::other(side), frame });
    }

    /// The frame reached the receiver: it waits for the download link.
    fn on_arrive(&mut self, conn: ConnId, to: usize, frame: Frame) {
        let Some(c) = self.conns.get(&conn) else { return };
        let node = c.ends[to].node;
        if !self.running(node) || c.ends[to].state == EndState::Closed {
            self.stats.dropped_frames += 1;
            return;
        }
        let n = &mut self.nodes[node];
        match n.config.download_rate {
            None => self.deliver(conn, to, frame),
            rate => {
                let start = n.downlink_free.max(self.now);
                let done = start + transmit_time(frame.wire_len(), rate);
                n.downlink_free = done;
                self.schedule(done, Event::Deliver { conn, to, frame });
            }
        }
    }

    fn deliver(&mut self, conn: ConnId, to: usize, frame: Frame) {
        let Some(c) = self.conns.get(&conn) else { return };
        let state = c.ends[to].state;
        if state == EndState::Closed {
            self.stats.dropped_frames += 1;
            return;
        }
        self.stats.wire_bytes += frame.wire_len();
        let frame = match frame {
            // In codec mode the handshake goes through its byte form too.
            Frame::Handshake(hs) if self.config.net.codec => match Handshake::parse(&hs.encode()) {
                Ok(Some(parsed)) => Frame::Handshake(parsed),
                _ => return self.protocol_close(conn, to, "handshake does not parse".into()),
            },
            frame => frame,
        };
        match (state, frame) {
            (_, Frame::Fin) => self.lost(conn, to, false),
            (EndState::Accepting, Frame::Handshake(hs)) => self.accept(conn, hs),
            (EndState::Dialing, Frame::Handshake(hs)) => self.connected(conn, hs),
            (EndState::Open, Frame::Message(m)) => self.on_message(conn, to, m),
            (EndState::Open, Frame::Bytes(bytes)) => self.on_bytes(conn, to, &bytes),
            (EndState::Open, Frame::Handshake(_)) => {
                // Read as a message its length prefix would be absurd.
                self.protocol_close(conn, to, "a second handshake".into())
            }
            (_, _) => self.protocol_close(conn, to, "data before the handshake".into()),
        }
    }

    fn max_frame(&self, node: NodeId) -> u32 {
        match self.nodes[node].torrent.info() {
            Some(info) => wire::max_frame_for_pieces(info.piece_count()),
            None => wire::DEFAULT_MAX_FRAME,
        }
    }

    fn on_bytes(&mut self, conn: ConnId, to: usize, bytes: &[u8]) {
        let node = self.conns[&conn].ends[to].node;
        let max = self.max_frame(node);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ends[to].decoder.set_max_len(max);
            c.ends[to].inbuf.extend_from_slice(bytes);
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let end = &mut c.ends[to];
            if end.state != EndState::Open {
                return;
            }
            match end.decoder.decode(&mut end.inbuf) {
                Ok(Some(message)) => self.on_message(conn, to, message),
                Ok(None) => return,
                Err(e) => return self.protocol_close(conn, to, format!("protocol error: {e}")),
            }
        }
    }

    fn on_message(&mut self, conn: ConnId, to: usize, message: Message) {
        let end = &self.conns[&conn].ends[to];
        let (node, Some(key)) = (end.node, end.key) else { return };
        // The codec refuses oversized frames; carried as values they must be refused too.
        let body = message.encoded_len() - 4;
        if body > self.max_frame(node) as usize {
            return self.protocol_close(conn, to, format!("frame of {body} bytes"));
        }
        self.stats.messages += 1;
        if let Message::Piece { data, .. } = &message {
            self.stats.payload_bytes += data.len() as u64;
        }
        let n = &mut self.nodes[node];
        n.log.received.add(&message);
        n.torrent.on_message(self.now, key, message);
        self.drain(node);
    }
}

/// Node `id` lives at 10.0.x.y:6881 (each node its own IP, so bans by IP hit only it).
pub fn node_addr(id: NodeId) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (id / 62_500) as u8, (id / 250 % 250) as u8, (id % 250 + 1) as u8);
    SocketAddr::new(ip.into(), LISTEN_PORT)
}

/// The source port a dialler's connection shows the listener.
fn ephemeral_port(conn: ConnId) -> u16 {
    49_152 + (conn.0 % 16_384) as u16
}

/// A block with its first byte flipped.
fn corrupt(data: Bytes) -> Bytes {
    let mut bytes = data.to_vec();
    if let Some(b) = bytes.first_mut() {
        *b ^= 0xff;
    }
    Bytes::from(bytes)
}

/// A short name for a message's kind, for counters.
pub fn kind(message: &Message) -> &'static str {
    crate::node::KINDS[crate::node::kind_index(message)]
}
