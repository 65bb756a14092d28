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
//!
//! This file holds the state, the driver's entry points for the torrent as a whole (start,
//! timers, the action queue, shutdown) and the types drivers see. One `impl Torrent` per
//! concern lives beside it in `torrent/`:
//!
//! - `peers.rs`: dialling, admitting and forgetting peers;
//! - `messages.rs`: the wire messages, and [`ProtocolViolation`]s (`violation.rs`);
//! - `extended.rs` and `metadata_exchange.rs`: BEP 10 extensions, BEP 9 metadata;
//! - `requests.rs`: interest and request queues; `verification.rs`: hash results;
//! - `choking.rs` and `uploads.rs`: whom we serve, and when a block is read for them;
//! - `spread.rs`: a seed sending each piece about once; `readers.rs`: streaming deadlines;
//! - `webseeds.rs`: HTTP web seeds (BEP 19).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::bitfield::Bitfield;
use crate::choker::Choker;
use crate::metadata::MetadataDownload;
use crate::metainfo::Info;
use crate::peer::Peer;
use crate::peer_book::PeerBook;
use crate::picker::Picker;
use crate::streaming::{ReaderId, ReaderWindow};

mod choking;
mod extended;
mod messages;
mod metadata_exchange;
mod peers;
mod pex;
mod readers;
mod requests;
mod spread;
#[cfg(test)]
mod testing;
mod uploads;
mod verification;
mod violation;
mod webseeds;
use crate::time::Instant;
use crate::types::{InfoHash, PeerId, PeerKey};
use crate::wire::{BlockRef, Handshake, Message};
pub use pex::{PexSent, MAX_PEX_PER_MESSAGE, PEX_INTERVAL};
pub use spread::{SpreadState, BACKGROUND_DECLINE_MEMORY, DECLINE_MEMORY, GRANT_MEMORY};
pub use uploads::SEND_BACKLOG_LIMIT;
pub use violation::{FastMessage, ProtocolViolation};
use violation::{Handled, Stop};
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
    /// Send peer exchange (BEP 11, `torrent/pex.rs`) to peers that speak it. Off only where
    /// the peers have no addresses to share but the simulation gives them some: the crowd
    /// simulator's tabs, whose real connections are WebRTC.
    pub peer_exchange: bool,
    /// For this long after the start, web seeds fetch only the pieces a reader is stalled on
    /// (critical ones) and peers get the chance to bring the rest: a viewer who joins a swarm
    /// takes little from the server, whose bytes no peer can spread. Non-zero also means a
    /// viewer: until its first reader comes and a peer with something it wants connects (at
    /// most [`webseeds::READER_PATIENCE`]), the grace goes on. Zero: web seeds start in full at once (a download that
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
            peer_exchange: true,
            web_seed_grace: Duration::ZERO,
        }
    }
}

/// Why a peer was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// It broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolViolation),
    /// It sent data that failed verification and is banned.
    #[error("banned for sending data that failed verification")]
    Banned,
    /// Connected to ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// A second connection to a peer we already talk to.
    #[error("duplicate connection")]
    Duplicate,
    /// Silent for too long.
    #[error("idle")]
    Idle,
    /// Neither side needs anything from the other.
    #[error("nothing to exchange")]
    NothingToExchange,
    /// The torrent is shutting down.
    #[error("shutting down")]
    Shutdown,
}

/// Why an incoming connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("banned address")]
    Banned,
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("already connected to this peer")]
    Duplicate,
    #[error("no room for more connections")]
    TooManyConnections,
    #[error("handshake for another torrent")]
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
    /// Peers dropped for breaking the protocol, by [`ProtocolViolation::kind`].
    pub protocol_violations: BTreeMap<&'static str, u64>,
    /// Connected peers by where we learnt of them ([`crate::PeerSource::name`]).
    pub peers_by_source: BTreeMap<&'static str, usize>,
    /// Every peer connection made since the start, by where we learnt of the peer.
    pub connections_by_source: BTreeMap<&'static str, u64>,
}

/// How often the torrent wants [`Torrent::handle_timeout`] called.
const TICK: Duration = Duration::from_secs(1);

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
        s.peers_by_source = BTreeMap::new();
        for peer in self.peers.values() {
            *s.peers_by_source.entry(peer.source.name()).or_default() += 1;
        }
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
        let priorities: Vec<u8> = wanted.iter().map(|&w| u8::from(w)).collect();
        self.set_piece_priorities(&priorities);
    }

    /// How much each piece is wanted: 0 not at all (as [`Torrent::set_wanted_pieces`]), higher
    /// sooner (rarest first within a level; a reader's deadlines come before any of it). Call
    /// before `start`.
    pub fn set_piece_priorities(&mut self, priorities: &[u8]) {
        if let Some(picker) = &mut self.picker {
            for (piece, &p) in priorities.iter().enumerate() {
                picker.set_priority(piece as u32, p);
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

    /// The peer a message came from, unless handling it dropped the peer already.
    fn peer_mut(&mut self, key: PeerKey) -> Result<&mut Peer, Stop> {
        self.peers.get_mut(&key).ok_or(Stop::PeerGone)
    }

    fn piece_count(&self) -> Option<u32> {
        self.info.as_ref().map(Info::piece_count)
    }

    fn send(&mut self, key: PeerKey, message: Message) {
        if let Message::Cancel(block) = &message {
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.remember_cancel(*block);
            }
        }
        self.actions.push_back(Action::Send { peer: key, message });
    }

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

        self.send_pex(now);
        self.fill_web_seeds(now);
        if self.choker.round_due(now) {
            self.choke_round(now);
        }
        self.connect_more(now);
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
    let sizes = info.piece_sizes();
    for file in info.files.iter().filter(|f| !f.padding && f.length > 0) {
        let pieces = sizes.pieces_overlapping(file.offset..file.offset + file.length);
        let (first, last) = (pieces.start, pieces.end - 1);
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
        requested_pieces(file_ends_first, rng_seed, None)
    }

    /// The pieces a fresh torrent of one file asks a seed for, in order, with `priorities`
    /// per piece if given.
    fn requested_pieces(
        file_ends_first: bool,
        rng_seed: u64,
        priorities: Option<&[u8]>,
    ) -> Vec<u32> {
        let len = u64::from(PIECE * PIECES) - 100;
        let mut hasher =
            TorrentBuilder::single_file("v.mp4", len).unwrap().piece_length(PIECE).start().unwrap();
        hasher.update(&vec![7u8; len as usize]).unwrap();
        let meta = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
        let config = TorrentConfig { file_ends_first, ..TorrentConfig::default() };
        let info = Some(Bytes::from(meta.info_bytes.clone()));
        let mut t = Torrent::new(config, meta.info_hash, PeerId([1; 20]), info, rng_seed).unwrap();
        if let Some(priorities) = priorities {
            t.set_piece_priorities(priorities);
        }
        let now = Instant::from_duration(Duration::from_secs(1));
        t.start(now, &Bitfield::new(PIECES));
        let remote = Handshake::new(meta.info_hash, PeerId([2; 20]));
        let key = t.on_incoming(now, None, crate::PeerSource::WebRtc, &remote).unwrap();
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

    /// Pieces of a higher priority are all asked for before any of a lower one, and pieces of
    /// priority 0 never.
    #[test]
    fn higher_priorities_are_asked_for_first_and_zero_never() {
        // Pieces 48..64 high, 16..48 normal, 8..16 low, 0..8 not wanted.
        let level = |p: u32| match p {
            48.. => 7,
            16..48 => 4,
            8..16 => 1,
            _ => 0,
        };
        let priorities: Vec<u8> = (0..PIECES).map(level).collect();
        for rng_seed in 1..10 {
            let pieces = requested_pieces(false, rng_seed, Some(&priorities));
            let levels: Vec<u8> = pieces.iter().map(|&p| level(p)).collect();
            assert!(levels.windows(2).all(|w| w[0] >= w[1]), "seed {rng_seed}: {pieces:?}");
            assert!(!levels.contains(&0), "seed {rng_seed}: an unwanted piece was asked for");
            assert_eq!(levels.first(), Some(&7), "seed {rng_seed}: {pieces:?}");
        }
    }
}
