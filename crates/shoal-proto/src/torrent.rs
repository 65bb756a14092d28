//! The per-torrent state machine.
//!
//! A driver feeds it what happened (a connection finished its handshake, a message arrived, a
//! piece was hashed, a block was read from storage, time passed) and drains what to do next
//! with [`Torrent::poll_action`]: send a message, write or read a block, hash a piece, dial an
//! address, drop a peer. It owns the picker, the choker and the peer book, and it never blocks,
//! allocates per byte, or looks at a clock.
//!
//! Lifecycle: a torrent made from a `.torrent` knows its info dictionary at once; one made
//! from a magnet learns it from peers (BEP 9) and reports [`Action::MetadataReceived`]. Either
//! way, the driver opens storage, rechecks what is already there, and calls
//! [`Torrent::start`] with the verified pieces; only then are pieces requested or served.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::bitfield::Bitfield;
use crate::choker::{Candidate, Choker};
use crate::extension::{self, ExtendedHandshake, LocalExtension, MetadataMessage, PexMessage};
use crate::metadata::{self, MetadataDownload};
use crate::metainfo::Info;
use crate::peer::{Direction, Peer};
use crate::peer_book::PeerBook;
use crate::picker::{BlockOutcome, Geometry, PickFor, Picker};
use crate::streaming::{ReaderId, ReaderWindow};

mod readers;
mod spread;
#[cfg(test)]
mod testing;
mod uploads;
mod webseeds;
use crate::time::Instant;
use crate::types::{InfoHash, PeerId, PeerKey};
use crate::wire::{BlockRef, Handshake, Message};
pub use spread::{SpreadState, BACKGROUND_DECLINE_MEMORY, DECLINE_MEMORY, GRANT_MEMORY};
pub use uploads::SEND_BACKLOG_LIMIT;
pub use webseeds::{WebSeedFetch, WebSeedState, WebSeedStatus, VIEWER_WEB_SEED_GRACE};

/// Tunables; the defaults suit a desktop client.
#[derive(Clone, Debug)]
pub struct TorrentConfig {
    /// Open connections (both directions) at most.
    pub max_connections: usize,
    /// Peers unchoked at once.
    pub upload_slots: usize,
    /// A peer that delivers nothing for this long while we wait on it is snubbed and its
    /// requests go elsewhere.
    pub request_timeout: Duration,
    /// A peer that sends nothing at all for this long is dropped.
    pub idle_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Requests from one peer we queue before refusing more.
    pub max_upload_queue: usize,
    /// Storage reads in flight for one peer's requests.
    pub max_upload_reads: usize,
    /// Addresses remembered.
    pub max_known_peers: usize,
    /// Sent as `v` in the extended handshake.
    pub client_name: String,
    /// Our listen port, sent as `p` in the extended handshake.
    pub listen_port: Option<u16>,
    /// Fetch the first and last piece of every wanted file before rarest-first takes over:
    /// where a player reads before it says where it reads (container headers, an MP4's
    /// index at the end), and what it asks for first once it does. Streaming clients turn
    /// this on; a reader's deadlines still come before it.
    pub file_ends_first: bool,
    /// As a seed, send each piece about once and let the peers pass it on: a peer's first
    /// request for a piece another connected peer has is refused (see `torrent/spread.rs`).
    /// For an origin whose audience serves itself (`shoal serve`, `shoal seed`).
    pub spread: bool,
    /// For this long after the start, web seeds fetch only the pieces a reader is stalled on
    /// (critical ones) and peers get the chance to bring the rest: a viewer who joins a swarm
    /// takes little from the server, whose bytes no peer can spread. Non-zero also means a
    /// viewer: until its first reader comes (at most [`webseeds::READER_PATIENCE`]), nothing
    /// is urgent and web seeds wait. Zero: web seeds start in full at once (a download that
    /// uses the server as a mirror). The tab uses [`webseeds::VIEWER_WEB_SEED_GRACE`].
    pub web_seed_grace: Duration,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            max_connections: 80,
            upload_slots: 8,
            request_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(150),
            keepalive_interval: Duration::from_secs(60),
            max_upload_queue: 1024,
            max_upload_reads: 32,
            max_known_peers: 2000,
            client_name: concat!("Shoal ", env!("CARGO_PKG_VERSION")).to_string(),
            listen_port: None,
            file_ends_first: false,
            spread: false,
            web_seed_grace: Duration::ZERO,
        }
    }
}

/// Why a peer was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// It broke the protocol; the text says how.
    Protocol(String),
    /// It sent data that failed verification and is banned.
    Banned,
    /// Connected to ourselves.
    SelfConnection,
    /// A second connection to a peer we already talk to.
    Duplicate,
    /// Silent for too long.
    Idle,
    /// Neither side needs anything from the other.
    NothingToExchange,
    /// The torrent is shutting down.
    Shutdown,
}

/// Why an incoming connection was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Banned,
    SelfConnection,
    Duplicate,
    TooManyConnections,
    WrongTorrent,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Dial `addr`; report with [`Torrent::on_connected`] or [`Torrent::on_connect_failed`].
    Connect {
        peer: PeerKey,
        addr: SocketAddr,
    },
    Send {
        peer: PeerKey,
        message: Message,
    },
    /// Close the connection. The core has already forgotten the peer.
    Disconnect {
        peer: PeerKey,
        reason: DisconnectReason,
    },
    WriteBlock {
        piece: u32,
        offset: u32,
        data: Bytes,
    },
    /// Read a block for a peer's request; answer with [`Torrent::on_block_read`].
    ReadBlock {
        peer: PeerKey,
        block: BlockRef,
    },
    /// Every block of `piece` was written: hash it, answer with [`Torrent::on_piece_verified`].
    VerifyPiece {
        piece: u32,
    },
    /// A piece passed its hash check (readers waiting on it can proceed).
    PieceVerified {
        piece: u32,
    },
    /// A piece failed its hash check; it will be downloaded again.
    PieceFailed {
        piece: u32,
    },
    /// The info dictionary arrived (magnet): open storage, recheck, then call `start`.
    MetadataReceived {
        info_bytes: Bytes,
    },
    /// Every wanted piece is verified.
    Completed,
    /// Fetch a run of blocks from a web seed over HTTP; answer with
    /// [`Torrent::on_web_seed_data`] or [`Torrent::on_web_seed_failed`].
    FetchWebSeed(WebSeedFetch),
    /// Stop fetch `id` from `seed`: peers brought (or will bring) its blocks. Answer with
    /// [`Torrent::on_web_seed_cancelled`] and the bytes that had arrived (or, if it finished
    /// meanwhile, with [`Torrent::on_web_seed_data`]).
    CancelWebSeed {
        seed: PeerKey,
        id: u64,
    },
}

/// Counters for progress displays and tracker announces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payload bytes received in blocks we kept.
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Payload bytes thrown away (failed pieces, duplicates, unrequested blocks).
    pub wasted: u64,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers: usize,
    pub seeds: usize,
    pub connecting: usize,
    pub known_peers: usize,
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub pieces_wanted_missing: u32,
    /// Bytes still needed of the wanted pieces (what `left` means to a tracker).
    pub bytes_left: Option<u64>,
    pub banned: usize,
    /// Web seeds in use (not disabled).
    pub web_seeds: usize,
    /// Payload bytes of `downloaded` that came from web seeds.
    pub web_seed_downloaded: u64,
    /// Spreading (a seed with [`TorrentConfig::spread`]): requests refused because another
    /// peer has the piece or is being sent it.
    pub spread_refused: u64,
    /// Spreading: pieces granted to a peer that another peer had or was being sent (the
    /// peer asked again for a block we had refused: nobody else would send it in time).
    pub spread_granted_again: u64,
}

/// How often the torrent wants [`Torrent::handle_timeout`] called.
const TICK: Duration = Duration::from_secs(1);
/// Metadata pieces requested from one peer at a time.
const METADATA_REQUESTS_PER_PEER: u32 = 2;
/// A peer may send this many unrequested bytes before it is dropped.
const MAX_UNREQUESTED_BYTES: u64 = 16 * 1024 * 1024;
/// Allowed-fast pieces remembered per peer.
const MAX_ALLOWED_FAST: usize = 64;
/// Haves remembered per peer before the metadata (and thus the piece count) is known.
const MAX_EARLY_HAVES: usize = 100_000;

pub struct Torrent {
    config: TorrentConfig,
    info_hash: InfoHash,
    peer_id: PeerId,
    info: Option<Info>,
    info_bytes: Option<Bytes>,
    started: bool,
    /// When [`Torrent::start`] was first called.
    started_at: Option<Instant>,
    /// When the first reader came (see `TorrentConfig::web_seed_grace`).
    first_reader_at: Option<Instant>,
    have: Bitfield,
    picker: Option<Picker>,
    choker: Choker,
    book: PeerBook,
    peers: BTreeMap<PeerKey, Peer>,
    connecting: BTreeMap<PeerKey, SocketAddr>,
    metadata: Option<MetadataDownload>,
    actions: VecDeque<Action>,
    next_key: u64,
    next_tick: Option<Instant>,
    completed: bool,
    stats: Stats,
    download_rate: crate::peer::RateMeter,
    upload_rate: crate::peer::RateMeter,
    random_seed: u64,
    scratch: Vec<BlockRef>,
    /// The latest time any event carried, for stamping what is sent.
    clock: Instant,
    /// Addresses of recently departed peers, so a peer that sent a bad block and left before
    /// the piece was hashed is still blamed. Keys only grow, so the oldest go first.
    departed: BTreeMap<PeerKey, std::net::IpAddr>,
    /// Streaming readers and where they are (see [`crate::streaming`]).
    readers: BTreeMap<ReaderId, ReaderWindow>,
    /// Fetch only what readers wait for (bounded in-memory store).
    deadline_only: bool,
    /// When critical pieces are next checked for late or slow requests.
    next_stream_check: Option<Instant>,
    /// Until when the torrent counts as streamed after its last reader left (players open a
    /// new reader per request).
    streaming_until: Option<Instant>,
    /// Payload bytes of pieces no reader waited for, to pace them while streaming.
    background_rate: crate::peer::RateMeter,
    /// The highest download rate seen: what the peers can deliver, as far as we know.
    peak_download_rate: u64,
    /// The best peer download rate at the last stream check; peers much slower than it do
    /// not get critical pieces while a faster peer has them.
    best_peer_rate: u64,
    /// HTTP web seeds (BEP 19), keyed like peers (see `torrent/webseeds.rs`).
    web_seeds: BTreeMap<PeerKey, webseeds::WebSeed>,
    next_fetch_id: u64,
    /// Peers whose requests wait for their transport (see `torrent/uploads.rs`).
    backlogged: uploads::Backlogged,
}

/// Departed peers remembered for blame.
const MAX_DEPARTED: usize = 512;

impl Torrent {
    /// A torrent identified by `info_hash`. `info_bytes` is its info dictionary when known
    /// (from a `.torrent`), `None` for a magnet. `random_seed` feeds tie-breaking: the core has
    /// no randomness of its own, which keeps the simulation deterministic.
    pub fn new(
        config: TorrentConfig,
        info_hash: InfoHash,
        peer_id: PeerId,
        info_bytes: Option<Bytes>,
        random_seed: u64,
    ) -> Result<Self, crate::metainfo::MetainfoError> {
        let mut torrent = Torrent {
            choker: Choker::new(config.upload_slots, random_seed ^ 0x5eed),
            book: PeerBook::new(config.max_known_peers),
            config,
            info_hash,
            peer_id,
            info: None,
            info_bytes: None,
            started: false,
            started_at: None,
            first_reader_at: None,
            have: Bitfield::new(0),
            picker: None,
            peers: BTreeMap::new(),
            connecting: BTreeMap::new(),
            metadata: None,
            actions: VecDeque::new(),
            next_key: 1,
            next_tick: None,
            completed: false,
            stats: Stats::default(),
            download_rate: Default::default(),
            upload_rate: Default::default(),
            random_seed,
            scratch: Vec::new(),
            clock: Instant::ZERO,
            departed: BTreeMap::new(),
            readers: BTreeMap::new(),
            deadline_only: false,
            next_stream_check: None,
            streaming_until: None,
            background_rate: Default::default(),
            peak_download_rate: 0,
            best_peer_rate: 0,
            web_seeds: BTreeMap::new(),
            next_fetch_id: 1,
            backlogged: Default::default(),
        };
        if let Some(bytes) = info_bytes {
            torrent.install_info(bytes)?;
        }
        Ok(torrent)
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The info dictionary, once known.
    pub fn info(&self) -> Option<&Info> {
        self.info.as_ref()
    }

    pub fn info_bytes(&self) -> Option<&Bytes> {
        self.info_bytes.as_ref()
    }

    /// The handshake the driver sends on every connection of this torrent.
    pub fn handshake(&self) -> Handshake {
        Handshake::new(self.info_hash, self.peer_id)
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Connections this torrent would still take, over any transport: what a driver checks
    /// before it spends a WebRTC negotiation on an offer (the check that counts is the one in
    /// [`Torrent::on_incoming`]).
    pub fn connection_room(&self) -> usize {
        self.config.max_connections.saturating_sub(self.peers.len() + self.connecting.len())
    }

    /// True once every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.as_ref().is_some_and(Picker::is_complete)
    }

    pub fn stats(&self, now: Instant) -> Stats {
        let mut s = self.stats.clone();
        s.download_rate = self.download_rate.rate(now);
        s.upload_rate = self.upload_rate.rate(now);
        s.peers = self.peers.len();
        s.seeds = self.peers.values().filter(|p| p.is_seed).count();
        s.connecting = self.connecting.len();
        s.known_peers = self.book.len();
        s.pieces_have = self.have.count_ones();
        s.pieces_total = self.have.len();
        s.banned = self.book.banned_count();
        s.web_seeds = self.active_web_seeds();
        if let (Some(picker), Some(info)) = (&self.picker, &self.info) {
            s.pieces_wanted_missing = picker.wanted_missing();
            let left: u64 = (0..info.piece_count())
                .filter(|&p| picker.is_wanted(p))
                .map(|p| u64::from(info.piece_len(p)))
                .sum();
            s.bytes_left = Some(left);
        }
        s
    }

    /// Connected peers' addresses and keys, for status displays.
    pub fn peer_addrs(&self) -> impl Iterator<Item = (PeerKey, Option<SocketAddr>)> + '_ {
        self.peers.values().map(|p| (p.key, p.addr))
    }

    /// Restricts the download to some pieces (from the files the user selected). Pieces not
    /// wanted are neither requested nor required for completion. Call before `start`.
    pub fn set_wanted_pieces(&mut self, wanted: &[bool]) {
        if let Some(picker) = &mut self.picker {
            for (piece, &w) in wanted.iter().enumerate() {
                picker.set_priority(piece as u32, u8::from(w));
            }
        }
    }

    /// Storage is open and `have` holds the pieces verified on disk: begin exchanging pieces.
    pub fn start(&mut self, now: Instant, have: &Bitfield) {
        self.clock = self.clock.max(now);
        let Some(picker) = &mut self.picker else { return };
        for piece in have.iter_ones() {
            if piece < self.have.len() {
                picker.set_have(piece);
                self.have.set(piece);
            }
        }
        if self.config.file_ends_first {
            if let Some(info) = &self.info {
                raise_file_ends(picker, info);
            }
        }
        self.started = true;
        self.started_at.get_or_insert(now);
        self.update_deadlines(now);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            // Peers that connected while we only knew the magnet saw no pieces from us.
            let pieces: Vec<u32> = self.have.iter_ones().collect();
            for piece in pieces {
                self.send(key, Message::Have(piece));
            }
            self.update_interest(key);
            self.fill_requests(now, key);
        }
        self.check_completed();
        self.fill_web_seeds(now);
        self.connect_more(now);
    }

    // ---- peers arriving and leaving ----

    /// Learns addresses to dial (trackers, `--peer`, PEX).
    pub fn add_peer_addrs(&mut self, now: Instant, addrs: impl IntoIterator<Item = SocketAddr>) {
        for addr in addrs {
            self.book.add(addr, now);
        }
        self.connect_more(now);
    }

    /// An outgoing connection finished its handshake.
    pub fn on_connected(&mut self, now: Instant, key: PeerKey, remote: &Handshake) -> bool {
        self.clock = self.clock.max(now);
        let Some(addr) = self.connecting.remove(&key) else { return false };
        self.resolve_simultaneous_open(now, remote, Direction::Outgoing);
        if let Err(refusal) = self.admit(remote, Some(addr)) {
            if refusal == Refusal::SelfConnection || refusal == Refusal::WrongTorrent {
                self.book.forget(addr);
            } else {
                self.book.on_disconnected(addr, now);
            }
            let reason = match refusal {
                Refusal::SelfConnection => DisconnectReason::SelfConnection,
                Refusal::Banned => DisconnectReason::Banned,
                Refusal::Duplicate => DisconnectReason::Duplicate,
                _ => DisconnectReason::Protocol(format!("refused: {refusal:?}")),
            };
            self.actions.push_back(Action::Disconnect { peer: key, reason });
            return false;
        }
        self.add_peer(now, key, Some(addr), remote, Direction::Outgoing);
        true
    }

    /// A dial failed or its handshake did.
    pub fn on_connect_failed(&mut self, now: Instant, key: PeerKey) {
        if let Some(addr) = self.connecting.remove(&key) {
            self.book.on_failed(addr, now);
            self.connect_more(now);
        }
    }

    /// A peer dialled us and sent a handshake for this torrent. On success the driver sends
    /// our handshake back and treats the connection as `PeerKey`.
    pub fn on_incoming(
        &mut self,
        now: Instant,
        addr: Option<SocketAddr>,
        remote: &Handshake,
    ) -> Result<PeerKey, Refusal> {
        self.clock = self.clock.max(now);
        if self.peers.len() + self.connecting.len() >= self.config.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        if remote.info_hash == self.info_hash && !addr.is_some_and(|a| self.book.is_banned(a.ip()))
        {
            self.resolve_simultaneous_open(now, remote, Direction::Incoming);
        }
        self.admit(remote, addr)?;
        let key = self.new_key();
        self.add_peer(now, key, addr, remote, Direction::Incoming);
        Ok(key)
    }

    fn admit(&self, remote: &Handshake, addr: Option<SocketAddr>) -> Result<(), Refusal> {
        if remote.info_hash != self.info_hash {
            return Err(Refusal::WrongTorrent);
        }
        if remote.peer_id == self.peer_id {
            return Err(Refusal::SelfConnection);
        }
        if addr.is_some_and(|a| self.book.is_banned(a.ip())) {
            return Err(Refusal::Banned);
        }
        if self.peers.values().any(|p| p.peer_id == remote.peer_id) {
            return Err(Refusal::Duplicate);
        }
        Ok(())
    }

    /// Two peers that dialled each other at the same time each end up with two connections.
    /// Both sides must keep the same one, or each drops the one the other kept: the rule is
    /// to keep the connection dialled by the peer with the lower peer id.
    fn resolve_simultaneous_open(&mut self, now: Instant, remote: &Handshake, new: Direction) {
        let Some(existing) = self.peers.values().find(|p| p.peer_id == remote.peer_id) else {
            return;
        };
        if existing.direction == new {
            return; // a plain duplicate: `admit` refuses the new one
        }
        let new_is_ours = new == Direction::Outgoing;
        let we_are_lower = self.peer_id.0 < remote.peer_id.0;
        if new_is_ours == we_are_lower {
            let key = existing.key;
            self.drop_peer(now, key, DisconnectReason::Duplicate);
        }
    }

    fn new_key(&mut self) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        key
    }

    fn add_peer(
        &mut self,
        now: Instant,
        key: PeerKey,
        addr: Option<SocketAddr>,
        remote: &Handshake,
        direction: Direction,
    ) {
        let mut peer = Peer::new(key, addr, remote.peer_id, direction, now);
        peer.supports_fast = remote.supports_fast();
        peer.supports_extensions = remote.supports_extension_protocol();
        if let Some(info) = &self.info {
            peer.has = Bitfield::new(info.piece_count());
        }
        self.peers.insert(key, peer);

        // Our bitfield first: it is only valid as the first message.
        let have_count = self.have.count_ones();
        let fast = remote.supports_fast();
        if self.started && have_count > 0 {
            if fast && self.have.is_full() {
                self.send(key, Message::HaveAll);
            } else {
                self.send(key, Message::Bitfield(Bytes::copy_from_slice(self.have.as_bytes())));
            }
        } else if fast {
            self.send(key, Message::HaveNone);
        }
        if remote.supports_extension_protocol() {
            let hs = self.our_extended_handshake(addr);
            self.send(key, Message::Extended { id: 0, payload: hs });
        }
    }

    fn our_extended_handshake(&self, addr: Option<SocketAddr>) -> Bytes {
        let mut hs = ExtendedHandshake::ours(
            self.info_bytes.as_ref().map(|b| b.len() as u64),
            &self.config.client_name,
            self.config.listen_port,
        );
        hs.request_queue =
            Some(crate::peer::MAX_QUEUE_TARGET.min(self.config.max_upload_queue as u32));
        hs.your_ip = addr.map(|a| a.ip());
        hs.encode()
    }

    /// The connection closed (or the driver gave up on it).
    pub fn on_disconnected(&mut self, now: Instant, key: PeerKey) {
        if let Some(addr) = self.connecting.remove(&key) {
            self.book.on_failed(addr, now);
            self.connect_more(now);
            return;
        }
        self.forget_peer(now, key);
        self.connect_more(now);
    }

    fn forget_peer(&mut self, now: Instant, key: PeerKey) -> Option<Peer> {
        let peer = self.peers.remove(&key)?;
        self.forget_uploads(key);
        if let Some(addr) = peer.addr {
            self.departed.insert(key, addr.ip());
            if self.departed.len() > MAX_DEPARTED {
                self.departed.pop_first();
            }
        }
        if let Some(picker) = &mut self.picker {
            for block in &peer.requests {
                picker.on_unrequest(*block, key);
            }
            if peer.is_seed {
                picker.remove_seed();
            } else {
                for piece in peer.has.iter_ones() {
                    picker.remove_available(piece);
                }
            }
        }
        if let Some(md) = &mut self.metadata {
            md.on_peer_gone(key.0);
        }
        self.choker.remove(key);
        if let (Some(addr), Direction::Outgoing) = (peer.addr, peer.direction) {
            self.book.on_disconnected(addr, now);
        }
        // Its blocks are free again: let the others pick them up.
        if !peer.requests.is_empty() {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for other in keys {
                self.fill_requests(now, other);
            }
            self.fill_web_seeds(now);
        }
        Some(peer)
    }

    fn drop_peer(&mut self, now: Instant, key: PeerKey, reason: DisconnectReason) {
        if self.forget_peer(now, key).is_some() {
            self.actions.push_back(Action::Disconnect { peer: key, reason });
        }
    }

    // ---- messages ----

    /// A message arrived from a connected peer.
    pub fn on_message(&mut self, now: Instant, key: PeerKey, message: Message) {
        self.clock = self.clock.max(now);
        let Some(peer) = self.peers.get_mut(&key) else { return };
        peer.last_received = now;
        let first = !peer.got_first_message;
        if !matches!(message, Message::KeepAlive | Message::Extended { .. }) {
            peer.got_first_message = true;
        }
        if let Err(problem) = self.handle_message(now, key, message, first) {
            self.drop_peer(now, key, DisconnectReason::Protocol(problem));
        }
    }

    fn handle_message(
        &mut self,
        now: Instant,
        key: PeerKey,
        message: Message,
        first: bool,
    ) -> Result<(), String> {
        match message {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Unknown { .. } => {}
            Message::Choke => {
                let peer = self.peer_mut(key)?;
                peer.peer_choking = true;
                if !peer.supports_fast {
                    // Without the Fast extension a choke discards every pending request.
                    let dropped: Vec<BlockRef> = peer.requests.drain(..).collect();
                    if let Some(picker) = &mut self.picker {
                        for block in dropped {
                            picker.on_unrequest(block, key);
                        }
                    }
                }
            }
            Message::Unchoke => {
                let peer = self.peer_mut(key)?;
                peer.peer_choking = false;
                peer.last_block_at = now;
                self.fill_requests(now, key);
            }
            Message::Interested => {
                self.peer_mut(key)?.peer_interested = true;
                let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
                if self.choker.has_free_slot(unchoked) {
                    self.set_choke(key, false);
                }
            }
            Message::NotInterested => {
                self.peer_mut(key)?.peer_interested = false;
            }
            Message::Have(piece) => self.on_have(now, key, piece)?,
            Message::Bitfield(bits) => {
                if first {
                    self.on_bitfield(now, key, bits)?;
                } else {
                    self.on_late_bitfield(now, key, bits)?;
                }
            }
            Message::HaveAll | Message::HaveNone => {
                let peer = self.peer_mut(key)?;
                if !peer.supports_fast {
                    return Err("have-all/have-none without the Fast extension".into());
                }
                if !first {
                    // WebTorrent joining from a magnet sends its have-none (or have-all) only
                    // once it knows the piece count, after the extended handshake and the
                    // metadata exchange: as late as a late bitfield, and taken the same way.
                    if matches!(message, Message::HaveAll) {
                        self.on_late_have_all(now, key)?;
                    }
                    return Ok(());
                }
                if matches!(message, Message::HaveAll) {
                    self.on_have_all(now, key);
                }
            }
            Message::Request(block) => self.on_request(now, key, block)?,
            Message::Cancel(block) => {
                let peer = self.peer_mut(key)?;
                if let Some(i) = peer.uploads.iter().position(|u| u.block == block) {
                    peer.uploads.remove(i);
                }
            }
            Message::Piece { piece, offset, data } => {
                self.on_piece(now, key, piece, offset, data)?
            }
            Message::Reject(block) => {
                let peer = self.peer_mut(key)?;
                if !peer.supports_fast {
                    return Err("reject without the Fast extension".into());
                }
                let outstanding = peer.take_request(&block);
                // Noted even for a request we cancelled meanwhile (a reader moved, another
                // peer delivered): the peer refuses the piece, and asking it again soon would
                // read as "nobody else will send it" to a spreading origin.
                self.note_declined(now, key, block.piece);
                if outstanding {
                    if let Some(picker) = &mut self.picker {
                        picker.on_unrequest(block, key);
                    }
                    self.offer_declined(now, key, block.piece);
                }
            }
            Message::AllowedFast(piece) => {
                let peer = self.peer_mut(key)?;
                if peer.allowed_fast.len() < MAX_ALLOWED_FAST && !peer.allowed_fast.contains(&piece)
                {
                    peer.allowed_fast.push(piece);
                }
                self.fill_requests(now, key);
            }
            Message::Extended { id, payload } => self.on_extended(now, key, id, payload)?,
        }
        Ok(())
    }

    fn peer_mut(&mut self, key: PeerKey) -> Result<&mut Peer, String> {
        self.peers.get_mut(&key).ok_or_else(|| "unknown peer".to_string())
    }

    fn piece_count(&self) -> Option<u32> {
        self.info.as_ref().map(Info::piece_count)
    }

    fn on_have(&mut self, now: Instant, key: PeerKey, piece: u32) -> Result<(), String> {
        let Some(count) = self.piece_count() else {
            let peer = self.peer_mut(key)?;
            if peer.early_haves.len() < MAX_EARLY_HAVES {
                peer.early_haves.push(piece);
            }
            return Ok(());
        };
        if piece >= count {
            return Err(format!("have for piece {piece} of {count}"));
        }
        let peer = self.peer_mut(key)?;
        if peer.is_seed || !peer.has.set(piece) {
            return Ok(());
        }
        let became_seed = peer.has.is_full();
        if let Some(picker) = &mut self.picker {
            picker.add_available(piece);
            if became_seed {
                self.promote_to_seed(key);
            }
            let wanted = self.picker.as_ref().is_some_and(|p| p.is_wanted(piece));
            if wanted {
                self.set_interested(key, true);
                self.fill_requests(now, key);
            }
        }
        self.maybe_drop_useless(now, key);
        Ok(())
    }

    /// A peer with every piece is counted once as a seed rather than once per piece.
    fn promote_to_seed(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.is_seed {
            return;
        }
        peer.is_seed = true;
        if let Some(picker) = &mut self.picker {
            for piece in peer.has.iter_ones() {
                picker.remove_available(piece);
            }
            picker.add_seed();
        }
    }

    fn on_bitfield(&mut self, now: Instant, key: PeerKey, bits: Bytes) -> Result<(), String> {
        let Some(count) = self.piece_count() else {
            self.peer_mut(key)?.early_bitfield = Some(bits);
            return Ok(());
        };
        let has = Bitfield::from_bytes(&bits, count).map_err(|e| format!("bad bitfield: {e}"))?;
        self.apply_bitfield(now, key, has);
        Ok(())
    }

    /// BEP 3 allows a bitfield only first, but aria2 sends one after `have none` once it has
    /// pieces. Like libtorrent we accept it as a batch of `have`s: bits are only ever added.
    fn on_late_bitfield(&mut self, now: Instant, key: PeerKey, bits: Bytes) -> Result<(), String> {
        let Some(count) = self.piece_count() else {
            // Before the metadata, it replaces what we noted so far.
            self.peer_mut(key)?.early_bitfield = Some(bits);
            return Ok(());
        };
        let has = Bitfield::from_bytes(&bits, count).map_err(|e| format!("bad bitfield: {e}"))?;
        for piece in has.iter_ones() {
            self.on_have(now, key, piece)?;
        }
        Ok(())
    }

    fn apply_bitfield(&mut self, now: Instant, key: PeerKey, has: Bitfield) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let full = has.is_full();
        peer.has = has;
        if full {
            peer.is_seed = true;
            if let Some(picker) = &mut self.picker {
                picker.add_seed();
            }
        } else if let Some(picker) = &mut self.picker {
            for piece in peer.has.iter_ones() {
                picker.add_available(piece);
            }
        }
        self.update_interest(key);
        self.fill_requests(now, key);
        self.maybe_drop_useless(now, key);
    }

    /// A have-all after other messages: whatever the peer did not announce yet, as haves.
    fn on_late_have_all(&mut self, now: Instant, key: PeerKey) -> Result<(), String> {
        let Some(count) = self.piece_count() else {
            self.peer_mut(key)?.early_have_all = true;
            return Ok(());
        };
        let missing: Vec<u32> = {
            let peer = self.peer_mut(key)?;
            (0..count).filter(|&p| !peer.has.get(p)).collect()
        };
        for piece in missing {
            self.on_have(now, key, piece)?;
        }
        Ok(())
    }

    fn on_have_all(&mut self, now: Instant, key: PeerKey) {
        match self.piece_count() {
            Some(count) => self.apply_bitfield(now, key, Bitfield::full(count)),
            None => {
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.early_have_all = true;
                }
            }
        }
    }

    fn on_piece(
        &mut self,
        now: Instant,
        key: PeerKey,
        piece: u32,
        offset: u32,
        data: Bytes,
    ) -> Result<(), String> {
        let block = BlockRef { piece, offset, length: data.len() as u32 };
        let len = data.len() as u64;
        let peer = self.peer_mut(key)?;
        // A block we no longer have requested from this peer (cancelled after a timeout, or a
        // race with a choke) is still welcome if nobody delivered it yet; the picker decides.
        let requested = peer.take_request(&block);
        if requested {
            peer.last_block_at = now;
            peer.snubbed = false;
        }
        let Some(picker) = &mut self.picker else { return Ok(()) };
        if requested {
            if let (Some(sent), Some(peer)) =
                (picker.requested_at(&block), self.peers.get_mut(&key))
            {
                peer.record_latency(now.saturating_since(sent));
            }
        }
        match picker.on_block(block, key) {
            BlockOutcome::Unwanted => {
                self.stats.wasted += len;
                let peer = self.peer_mut(key)?;
                // A block we cancelled was sent before the cancel reached the peer: late,
                // not unrequested.
                if !requested && !peer.take_cancelled(&block) {
                    peer.unrequested_bytes += len;
                    if peer.unrequested_bytes > MAX_UNREQUESTED_BYTES {
                        return Err("too many unrequested blocks".into());
                    }
                }
            }
            BlockOutcome::Accepted { cancel, piece_complete } => {
                // Only useful data earns a peer rate (and with it, unchoke slots).
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.download.record(now, len);
                }
                self.keep_block(now, block, data, cancel, piece_complete);
            }
        }
        self.fill_requests(now, key);
        Ok(())
    }

    /// A block the picker accepted (from a peer or a web seed): count it, write it, verify
    /// the piece when it is complete, and cancel the duplicate request elsewhere.
    fn keep_block(
        &mut self,
        now: Instant,
        block: BlockRef,
        data: Bytes,
        cancel: Option<PeerKey>,
        piece_complete: bool,
    ) {
        let BlockRef { piece, offset, length } = block;
        let len = u64::from(length);
        self.download_rate.record(now, len);
        self.peak_download_rate = self.peak_download_rate.max(self.download_rate.rate(now));
        if self.picker.as_ref().is_some_and(|p| !p.is_deadline(piece)) {
            self.background_rate.record(now, len);
        }
        self.stats.downloaded += len;
        self.actions.push_back(Action::WriteBlock { piece, offset, data });
        if piece_complete {
            self.actions.push_back(Action::VerifyPiece { piece });
        }
        if let Some(other) = cancel {
            if let Some(p) = self.peers.get_mut(&other) {
                if p.take_request(&block) {
                    self.send(other, Message::Cancel(block));
                }
            }
        }
    }

    fn on_extended(
        &mut self,
        now: Instant,
        key: PeerKey,
        id: u8,
        payload: Bytes,
    ) -> Result<(), String> {
        if id == extension::HANDSHAKE_ID {
            return self.on_extended_handshake(now, key, &payload);
        }
        match LocalExtension::from_id(id) {
            Some(LocalExtension::Metadata) => {
                let msg = MetadataMessage::decode(&payload)
                    .map_err(|e| format!("bad ut_metadata message: {e}"))?;
                self.on_metadata_message(now, key, msg)?;
            }
            Some(LocalExtension::DontHave) => {
                let piece = extension::decode_dont_have(&payload)
                    .map_err(|e| format!("bad lt_donthave: {e}"))?;
                self.on_donthave(key, piece)?;
            }
            Some(LocalExtension::Pex) => {
                // PEX is advice, not protocol: a malformed message is ignored, not fatal.
                if let Ok(pex) = PexMessage::decode(&payload) {
                    self.add_peer_addrs(now, pex.added.iter().copied());
                }
            }
            None => {} // an extension we did not offer: ignore
        }
        Ok(())
    }

    fn on_extended_handshake(
        &mut self,
        now: Instant,
        key: PeerKey,
        payload: &[u8],
    ) -> Result<(), String> {
        {
            {
                let hs = ExtendedHandshake::decode(payload)
                    .map_err(|e| format!("bad extended handshake: {e}"))?;
                let peer = self.peer_mut(key)?;
                for (name, id) in &hs.extensions {
                    match name.as_str() {
                        extension::UT_METADATA => peer.extensions.ut_metadata = *id,
                        extension::UT_PEX => peer.extensions.ut_pex = *id,
                        extension::LT_DONTHAVE => peer.extensions.lt_donthave = *id,
                        _ => {}
                    }
                }
                if let Some(reqq) = hs.request_queue {
                    peer.max_requests = reqq.clamp(1, crate::peer::MAX_QUEUE_TARGET);
                }
                peer.client = hs.client.clone();
                peer.metadata_size = hs.metadata_size;
                if let (Some(port), Some(addr), Direction::Incoming) =
                    (hs.listen_port, peer.addr, peer.direction)
                {
                    // It dialled us: don't dial it back.
                    self.book.mark_busy(SocketAddr::new(addr.ip(), port));
                }
                if self.info.is_none() {
                    self.start_metadata(now, key);
                }
            }
        }
        Ok(())
    }

    fn on_donthave(&mut self, key: PeerKey, piece: u32) -> Result<(), String> {
        let Some(count) = self.piece_count() else { return Ok(()) };
        if piece >= count {
            return Err(format!("donthave for piece {piece} of {count}"));
        }
        let peer = self.peer_mut(key)?;
        let was_seed = peer.is_seed;
        if was_seed {
            // Demote from the seed count to per-piece availability.
            peer.is_seed = false;
            peer.has = Bitfield::full(count);
        }
        let had = peer.has.clear(piece);
        if let Some(picker) = &mut self.picker {
            if was_seed {
                picker.remove_seed();
                for p in (0..count).filter(|&p| p != piece) {
                    picker.add_available(p);
                }
            } else if had {
                picker.remove_available(piece);
            }
        }
        Ok(())
    }

    // ---- metadata (BEP 9) ----

    fn start_metadata(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else { return };
        let (Some(size), true) = (peer.metadata_size, peer.extensions.ut_metadata != 0) else {
            return;
        };
        if self.metadata.is_none() {
            match MetadataDownload::new(self.info_hash, size) {
                Ok(md) => self.metadata = Some(md),
                Err(_) => {
                    self.drop_peer(
                        now,
                        key,
                        DisconnectReason::Protocol("absurd metadata size".into()),
                    );
                    return;
                }
            }
        }
        self.request_metadata(now, key);
    }

    fn request_metadata(&mut self, now: Instant, key: PeerKey) {
        let Some(md) = &mut self.metadata else { return };
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.extensions.ut_metadata == 0 {
            return;
        }
        let mut out = Vec::new();
        while peer.metadata_in_flight < METADATA_REQUESTS_PER_PEER {
            let Some(piece) = md.next_request(key.0, now) else { break };
            peer.metadata_in_flight += 1;
            out.push((peer.extensions.ut_metadata, piece));
        }
        for (id, piece) in out {
            let payload = MetadataMessage::Request { piece }.encode();
            self.send(key, Message::Extended { id, payload });
        }
    }

    fn on_metadata_message(
        &mut self,
        now: Instant,
        key: PeerKey,
        msg: MetadataMessage,
    ) -> Result<(), String> {
        match msg {
            MetadataMessage::Request { piece } => {
                let their_id = self.peer_mut(key)?.extensions.ut_metadata;
                if their_id == 0 {
                    return Ok(());
                }
                let reply =
                    match self.info_bytes.as_ref().and_then(|b| metadata::metadata_piece(b, piece))
                    {
                        Some(data) => MetadataMessage::Data {
                            piece,
                            total_size: self.info_bytes.as_ref().map_or(0, |b| b.len() as u64),
                            data: Bytes::copy_from_slice(data),
                        },
                        None => MetadataMessage::Reject { piece },
                    };
                self.send(key, Message::Extended { id: their_id, payload: reply.encode() });
            }
            MetadataMessage::Reject { piece } => {
                let peer = self.peer_mut(key)?;
                peer.metadata_in_flight = peer.metadata_in_flight.saturating_sub(1);
                if let Some(md) = &mut self.metadata {
                    md.on_reject(key.0, piece);
                }
            }
            MetadataMessage::Data { piece, total_size, data } => {
                let peer = self.peer_mut(key)?;
                peer.metadata_in_flight = peer.metadata_in_flight.saturating_sub(1);
                let Some(md) = &mut self.metadata else { return Ok(()) };
                match md.on_data(key.0, piece, total_size, &data) {
                    Ok(Some(info_bytes)) => {
                        self.metadata = None;
                        let bytes = Bytes::from(info_bytes);
                        if let Err(e) = self.install_info(bytes.clone()) {
                            // The hash matched, so the torrent itself is bad: nothing to retry.
                            return Err(format!("metadata is not a valid torrent: {e}"));
                        }
                        self.after_metadata(now);
                        self.actions.push_back(Action::MetadataReceived { info_bytes: bytes });
                    }
                    Ok(None) => self.request_metadata(now, key),
                    Err(e) => {
                        let culprits = e.peers().to_vec();
                        for culprit in culprits {
                            self.drop_peer(
                                now,
                                PeerKey(culprit),
                                DisconnectReason::Protocol(format!("bad metadata: {e}")),
                            );
                        }
                        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                        for k in keys {
                            self.request_metadata(now, k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn install_info(&mut self, bytes: Bytes) -> Result<(), crate::metainfo::MetainfoError> {
        let info = Info::from_bytes(&bytes)?;
        let geometry = Geometry::new(info.piece_length, info.total_length);
        self.have = Bitfield::new(info.piece_count());
        let mut picker = Picker::new(geometry, self.random_seed);
        picker.set_deadline_only(self.deadline_only);
        self.picker = Some(picker);
        self.info = Some(info);
        self.info_bytes = Some(bytes);
        Ok(())
    }

    /// Piece information that arrived before the metadata can be applied now.
    fn after_metadata(&mut self, now: Instant) {
        let Some(count) = self.piece_count() else { return };
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            peer.has = Bitfield::new(count);
            let early_bitfield = peer.early_bitfield.take();
            let early_haves = std::mem::take(&mut peer.early_haves);
            let have_all = peer.early_have_all;
            if have_all {
                self.apply_bitfield(now, key, Bitfield::full(count));
            } else if let Some(bits) = early_bitfield {
                match Bitfield::from_bytes(&bits, count) {
                    Ok(has) => self.apply_bitfield(now, key, has),
                    Err(e) => {
                        self.drop_peer(
                            now,
                            key,
                            DisconnectReason::Protocol(format!("bad bitfield: {e}")),
                        );
                        continue;
                    }
                }
            }
            for piece in early_haves {
                if self.on_have(now, key, piece).is_err() {
                    self.drop_peer(
                        now,
                        key,
                        DisconnectReason::Protocol("have out of range".into()),
                    );
                    break;
                }
            }
        }
    }

    // ---- verification ----

    /// The driver hashed `piece`: `ok` when it matched.
    pub fn on_piece_verified(&mut self, now: Instant, piece: u32, ok: bool) {
        self.clock = self.clock.max(now);
        let Some(picker) = &mut self.picker else { return };
        let blamed = picker.on_verified(piece, ok);
        if ok {
            self.have.set(piece);
            self.actions.push_back(Action::PieceVerified { piece });
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.send(key, Message::Have(piece));
            }
            self.check_completed();
            return;
        }
        let piece_len = self.info.as_ref().map_or(0, |i| u64::from(i.piece_len(piece)));
        self.stats.wasted += piece_len;
        self.stats.downloaded = self.stats.downloaded.saturating_sub(piece_len);
        self.actions.push_back(Action::PieceFailed { piece });
        // A piece from a single peer convicts it; shared blame accumulates strikes. Web seeds
        // have no address to ban: they count failures of their own.
        let sole = blamed.len() == 1;
        for key in blamed {
            if self.is_web_seed(key) {
                self.on_web_seed_bad_piece(key, piece);
                continue;
            }
            let ip = self.peers.get(&key).and_then(|p| p.addr).map(|a| a.ip());
            let Some(ip) = ip.or_else(|| self.departed.get(&key).copied()) else {
                if sole {
                    self.drop_peer(now, key, DisconnectReason::Banned);
                }
                continue;
            };
            let banned = if sole {
                self.book.ban(ip);
                true
            } else {
                self.book.strike(ip)
            };
            if banned {
                let same_ip: Vec<PeerKey> = self
                    .peers
                    .values()
                    .filter(|p| p.addr.map(|a| a.ip()) == Some(ip))
                    .map(|p| p.key)
                    .collect();
                for k in same_ip {
                    self.drop_peer(now, k, DisconnectReason::Banned);
                }
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(now, key);
        }
        self.fill_web_seeds(now);
    }

    fn check_completed(&mut self) {
        if self.completed || !self.is_complete() {
            return;
        }
        self.completed = true;
        self.actions.push_back(Action::Completed);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.set_interested(key, false);
        }
    }

    // ---- requesting ----

    fn update_interest(&mut self, key: PeerKey) {
        let Some(picker) = &self.picker else { return };
        let Some(peer) = self.peers.get(&key) else { return };
        let wants = self.started && picker.wants_any(|p| peer.has.get(p), peer.is_seed);
        self.set_interested(key, wants);
    }

    fn set_interested(&mut self, key: PeerKey, interested: bool) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.am_interested != interested {
            peer.am_interested = interested;
            let msg = if interested { Message::Interested } else { Message::NotInterested };
            self.send(key, msg);
        }
    }

    fn fill_requests(&mut self, now: Instant, key: PeerKey) {
        self.fill_requests_beyond(now, key, 0);
    }

    /// Tops up `key`'s request queue; `extra` blocks beyond its target are allowed (late
    /// critical blocks must not wait for a full queue to drain).
    fn fill_requests_beyond(&mut self, now: Instant, key: PeerKey, extra: u32) {
        if !self.started {
            return;
        }
        let critical_ok = self.critical_ok(now, key);
        let streaming = self.is_streaming(now);
        let background_ok = !streaming || self.background_has_headroom(now);
        if self.picker.is_none() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if !peer.am_interested || !peer.can_request() {
            return;
        }
        peer.update_queue_target(now, streaming);
        let outstanding = peer.requests.len() as u32;
        let target = peer.queue_target + extra;
        // Refill in batches rather than one block at a time: picking has a fixed cost.
        let slack = (target / 8).clamp(1, 16);
        if outstanding + slack > target && outstanding != 0 && extra == 0 {
            return;
        }
        let room = (target - outstanding.min(target)) as usize;
        if room == 0 {
            return;
        }
        let who =
            PickFor { peer: key, max: room, idle: outstanding == 0, critical_ok, background_ok };
        let avoided = match peer.spread.has_declined() {
            true => self.avoided_pieces(now, key),
            false => Vec::new(),
        };
        let (Some(picker), Some(peer)) = (&mut self.picker, self.peers.get_mut(&key)) else {
            return;
        };
        self.scratch.clear();
        if peer.peer_choking {
            let allowed = peer.allowed_fast.clone();
            picker.pick(now, who, |p| allowed.contains(&p) && peer.has_piece(p), &mut self.scratch);
        } else {
            let has = &peer.has;
            let seed = peer.is_seed;
            let offered = |p| (seed || has.get(p)) && !avoided.contains(&p);
            picker.pick(now, who, offered, &mut self.scratch);
        }
        if self.scratch.is_empty() {
            return;
        }
        if peer.requests.is_empty() {
            peer.last_block_at = now;
        }
        peer.requests.extend(self.scratch.iter().copied());
        let blocks = std::mem::take(&mut self.scratch);
        for block in &blocks {
            self.send(key, Message::Request(*block));
        }
        self.scratch = blocks;
    }

    fn send(&mut self, key: PeerKey, message: Message) {
        if let Message::Cancel(block) = &message {
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.remember_cancel(*block);
            }
        }
        self.actions.push_back(Action::Send { peer: key, message });
    }

    fn set_choke(&mut self, key: PeerKey, choke: bool) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.am_choking == choke {
            return;
        }
        peer.am_choking = choke;
        if choke {
            // Pending requests die with the choke; Fast peers are told so explicitly.
            let pending: Vec<BlockRef> =
                peer.uploads.iter().filter(|u| !u.reading).map(|u| u.block).collect();
            peer.uploads.retain(|u| u.reading);
            let fast = peer.supports_fast;
            self.send(key, Message::Choke);
            if fast {
                for block in pending {
                    self.send(key, Message::Reject(block));
                }
            }
            // Nothing of its waits for the transport any more.
            self.pump_uploads(key);
        } else {
            self.send(key, Message::Unchoke);
        }
    }

    /// Two seeds have nothing to say to each other.
    fn maybe_drop_useless(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else { return };
        if self.completed && peer.is_seed && self.have.is_full() {
            self.drop_peer(now, key, DisconnectReason::NothingToExchange);
        }
    }

    // ---- time ----

    /// When the driver should call [`Torrent::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tick, self.next_stream_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Periodic work: request timeouts, rate-based queue sizing, choking rounds, keep-alives,
    /// idle peers, dialling more peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if self.next_stream_check.is_some_and(|at| now >= at) {
            self.stream_check(now);
        }
        if let Some(at) = self.next_tick {
            if now < at {
                return;
            }
        }
        self.next_tick = Some(now + TICK);

        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            if now.saturating_since(peer.last_received) >= self.config.idle_timeout {
                self.drop_peer(now, key, DisconnectReason::Idle);
                continue;
            }
            if now.saturating_since(peer.last_sent) >= self.config.keepalive_interval {
                self.send(key, Message::KeepAlive);
            }
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            if !peer.requests.is_empty()
                && now.saturating_since(peer.last_block_at) >= self.config.request_timeout
            {
                // Snubbed: its requests go back to the pool for faster peers.
                peer.snubbed = true;
                let dropped: Vec<BlockRef> = peer.requests.drain(..).collect();
                if let Some(picker) = &mut self.picker {
                    for block in &dropped {
                        picker.on_unrequest(*block, key);
                    }
                }
                for block in dropped {
                    self.send(key, Message::Cancel(block));
                }
            }
            let streaming = self.is_streaming(now);
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.update_queue_target(now, streaming);
            }
            self.forget_old_declines(now, key);
            self.update_interest(key);
            self.fill_requests(now, key);
            if self.metadata.is_some() {
                self.request_metadata(now, key);
            }
        }

        self.fill_web_seeds(now);
        if self.choker.round_due(now) {
            self.choke_round(now);
        }
        self.connect_more(now);
    }

    fn choke_round(&mut self, now: Instant) {
        let candidates: Vec<Candidate> = self
            .peers
            .values()
            .map(|p| Candidate {
                peer: p.key,
                interested: p.peer_interested,
                download_rate: p.download.rate(now),
                upload_rate: p.upload.rate(now),
            })
            .collect();
        let unchoke = self.choker.round(now, &candidates, self.completed);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.set_choke(key, !unchoke.contains(&key));
        }
    }

    fn connect_more(&mut self, now: Instant) {
        // A magnet has to talk to peers before it can start; a torrent waits for its recheck.
        if !self.started && self.info.is_some() {
            return;
        }
        // A seed dials too: some peers never dial (Transmission ignores loopback peers, and
        // peers behind NAT cannot be reached otherwise). Seeds it reaches are dropped once
        // their bitfield shows it.
        while self.peers.len() + self.connecting.len() < self.config.max_connections {
            let Some(addr) = self.book.next_to_connect(now) else { break };
            let key = self.new_key();
            self.connecting.insert(key, addr);
            self.actions.push_back(Action::Connect { peer: key, addr });
        }
    }

    /// Drains the next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front()?;
        if let Action::Send { peer, .. } = &action {
            if let Some(p) = self.peers.get_mut(peer) {
                p.last_sent = self.clock;
            }
        }
        Some(action)
    }

    /// Says goodbye to every peer.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.drop_peer(now, key, DisconnectReason::Shutdown);
        }
        for (key, _) in std::mem::take(&mut self.connecting) {
            self.actions
                .push_back(Action::Disconnect { peer: key, reason: DisconnectReason::Shutdown });
        }
    }
}

/// Puts the first piece of each wanted file two priority steps above the rest of it, and its
/// last piece one: a player reads the head first, then perhaps an index at the end.
fn raise_file_ends(picker: &mut Picker, info: &Info) {
    let piece_length = u64::from(info.piece_length);
    for file in info.files.iter().filter(|f| !f.padding && f.length > 0) {
        let first = (file.offset / piece_length) as u32;
        let last = ((file.offset + file.length - 1) / piece_length) as u32;
        for (piece, steps) in [(last, 1), (first, 2)] {
            let priority = picker.priority(piece);
            if priority > 0 && !picker.has(piece) {
                picker.set_priority(piece, priority.saturating_add(steps));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::TorrentBuilder;
    use crate::metainfo::Metainfo;

    const PIECE: u32 = 16 * 1024;
    const PIECES: u32 = 64;

    /// The pieces of the first requests a fresh torrent sends a seed that unchokes it.
    fn first_requested_pieces(file_ends_first: bool, rng_seed: u64) -> Vec<u32> {
        let len = u64::from(PIECE * PIECES) - 100;
        let mut hasher =
            TorrentBuilder::single_file("v.mp4", len).unwrap().piece_length(PIECE).start().unwrap();
        hasher.update(&vec![7u8; len as usize]).unwrap();
        let meta = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
        let config = TorrentConfig { file_ends_first, ..TorrentConfig::default() };
        let info = Some(Bytes::from(meta.info_bytes.clone()));
        let mut t = Torrent::new(config, meta.info_hash, PeerId([1; 20]), info, rng_seed).unwrap();
        let now = Instant::from_duration(Duration::from_secs(1));
        t.start(now, &Bitfield::new(PIECES));
        let remote = Handshake::new(meta.info_hash, PeerId([2; 20]));
        let key = t.on_incoming(now, None, &remote).unwrap();
        t.on_message(now, key, Message::HaveAll);
        t.on_message(now, key, Message::Unchoke);
        let mut pieces = Vec::new();
        while let Some(action) = t.poll_action() {
            if let Action::Send { message: Message::Request(block), .. } = action {
                if pieces.last() != Some(&block.piece) {
                    pieces.push(block.piece);
                }
            }
        }
        pieces
    }

    #[test]
    fn file_ends_come_first_when_asked() {
        for rng_seed in 1..20 {
            let pieces = first_requested_pieces(true, rng_seed);
            assert_eq!(pieces[..2], [0, PIECES - 1], "seed {rng_seed}: {pieces:?}");
        }
        // Without it, rarest-first among equals is random: not always the ends.
        let random = (1..20).filter(|&s| first_requested_pieces(false, s)[..2] != [0, PIECES - 1]);
        assert!(random.count() > 10);
    }
}
