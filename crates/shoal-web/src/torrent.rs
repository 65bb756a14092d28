//! The browser driver of one torrent: it owns the sans-IO [`Torrent`] and carries out its
//! actions with WebRTC data channels, the in-memory store and SubtleCrypto.
//!
//! Everything runs on the page's one thread. Browser callbacks (a channel message, a digest
//! finishing, the tick) borrow the driver, feed the core, then drain its actions; a callback
//! that finds the driver already borrowed (a browser event delivered inside another) is
//! re-queued for the next turn instead of panicking.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use crate::offer_pool::{OfferPool, PooledOffer, Shortfall};
use bytes::Bytes;
use futures_channel::oneshot;
use shoal_proto::bitfield::Bitfield;
use shoal_proto::metainfo::Info;
use shoal_proto::streaming::{ReaderId, ReaderWindow};
use shoal_proto::torrent::{Action, Stats, Torrent};
use shoal_proto::webseed::{FetchEnd, WebSeedError};
use shoal_proto::wire::{self, BlockRef};
use shoal_proto::PeerSource;
use shoal_proto::{InfoHash, Instant, PeerKey};
use shoal_tracker_proto::announce_request;
use shoal_tracker_proto::announcer::{Announcer, AnnouncerConfig};
use shoal_tracker_proto::tiers::TrackerTiers;
use shoal_tracker_proto::types::{AnnounceEvent, AnnounceRequest, AnnounceResponse};
use shoal_tracker_proto::ws::client::{OfferDrop, OfferId};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::RtcDataChannelEvent;

use crate::budget::ConnectionBudget;
use crate::clock::Clock;
use crate::conn::{sink_to, Conn, ConnEvent, ConnId, ConnState};
use crate::framing::Inbound;
use crate::store::PieceStore;
use crate::tracker::{AnnounceKind, Hub};
use crate::{hash, log, rtc};

/// Tunables shared by a client's torrents.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub ice_servers: Vec<String>,
    /// Bytes of pieces a torrent may hold; larger torrents stream through this budget.
    pub max_memory: u64,
    /// Offers made with each announce.
    pub offers_per_announce: u32,
    pub max_connections: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            ice_servers: Vec::new(),
            max_memory: 512 * 1024 * 1024,
            offers_per_announce: 5,
            max_connections: 40,
        }
    }
}

/// A connection that has not opened its channel in this long is given up.
const OPEN_TIMEOUT_SECS: u64 = 60;
/// Read-ahead of a reader unless the caller asks otherwise.
pub const DEFAULT_READAHEAD: u64 = 8 * 1024 * 1024;

/// Bytes a reader asks for at torrent offset `offset`: all `len` of them, or (`partial`) as
/// many of them as are verified in a row from there, at least one.
#[derive(Clone, Copy, Debug)]
pub struct ReadRequest {
    pub offset: u64,
    pub len: usize,
    pub partial: bool,
}

pub struct TorrentDriver {
    me: Weak<RefCell<TorrentDriver>>,
    hub: Weak<RefCell<Hub>>,
    clock: Clock,
    config: Rc<DriverConfig>,
    /// The client's connection budget, shared with its other torrents and the offer pool.
    budget: Rc<ConnectionBudget>,
    core: Torrent,
    store: Option<PieceStore>,
    conns: HashMap<ConnId, Conn>,
    by_peer: HashMap<PeerKey, ConnId>,
    offers: HashMap<OfferId, ConnId>,
    next_conn: ConnId,
    /// Readers waiting for a piece; all are woken when any piece is verified.
    waiters: Vec<oneshot::Sender<()>>,
    listener: Option<js_sys::Function>,
    announcer: Announcer,
    /// Tracker URLs with an announce under way (offers being made or sent).
    announcing: HashSet<String>,
    /// Per tracker URL, the offers its announce under way went out without.
    shortfalls: HashMap<String, Shortfall>,
    announce_key: u32,
    next_reader: u64,
    /// Readers made and not closed: a read still waiting when its reader is closed must not
    /// put the reader's window back into the deadlines.
    open_readers: HashSet<ReaderId>,
    destroyed: bool,
    failed: Option<String>,
    /// Web seed fetches under way, to stop one the core no longer needs.
    web_fetches: HashMap<u64, web_sys::AbortController>,
}

/// Counters for the page.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub info_hash: String,
    pub name: Option<String>,
    pub ready: bool,
    pub done: bool,
    pub progress: f64,
    pub length: Option<u64>,
    pub downloaded: u64,
    pub uploaded: u64,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers: usize,
    pub seeds: usize,
    pub connecting: usize,
    pub web_seeds: usize,
    pub web_seed_downloaded: u64,
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub readers: usize,
    pub memory_resident: u64,
    pub memory_peak: u64,
    pub memory_budget: Option<u64>,
    pub error: Option<String>,
}

impl TorrentDriver {
    /// A driver for `core`, announcing to `trackers` (WebSocket URLs) through `hub`.
    pub fn new(
        core: Torrent,
        trackers: Vec<String>,
        hub: Weak<RefCell<Hub>>,
        clock: Clock,
        config: Rc<DriverConfig>,
        budget: Rc<ConnectionBudget>,
        seed: u64,
    ) -> Rc<RefCell<TorrentDriver>> {
        let announcer = Announcer::new(
            TrackerTiers::new(trackers.into_iter().map(|t| vec![t]).collect(), seed),
            AnnouncerConfig::default(),
        );
        let driver = Rc::new_cyclic(|me| {
            RefCell::new(TorrentDriver {
                me: me.clone(),
                hub,
                clock,
                config,
                budget,
                core,
                store: None,
                conns: HashMap::new(),
                by_peer: HashMap::new(),
                offers: HashMap::new(),
                next_conn: 1,
                waiters: Vec::new(),
                listener: None,
                announcer,
                announcing: HashSet::new(),
                shortfalls: HashMap::new(),
                announce_key: (seed >> 32) as u32,
                next_reader: 1,
                open_readers: HashSet::new(),
                destroyed: false,
                failed: None,
                web_fetches: HashMap::new(),
            })
        });
        {
            let mut d = driver.borrow_mut();
            if d.core.info().is_some() {
                d.open_store(None);
            }
            d.drain();
        }
        driver
    }

    pub fn info_hash(&self) -> InfoHash {
        self.core.info_hash()
    }

    pub fn info(&self) -> Option<&Info> {
        self.core.info()
    }

    pub fn info_bytes(&self) -> Option<&Bytes> {
        self.core.info_bytes()
    }

    pub fn have(&self) -> &Bitfield {
        self.core.have()
    }

    /// Adds HTTP web seeds (BEP 19); bad URLs are skipped with a console line.
    pub fn add_web_seeds(&mut self, urls: &[String]) {
        let now = self.clock.now();
        for url in urls {
            if let Err(e) = self.core.add_web_seed(now, url) {
                log(&format!("web seed {url} skipped: {e}"));
            }
        }
        self.drain();
    }

    /// The WebSocket trackers it announces to.
    pub fn trackers(&self) -> Vec<String> {
        self.announcer.tiers().iter().map(|(_, url)| url.to_owned()).collect()
    }

    /// Fires when a piece is verified, the metadata arrives, or the torrent ends.
    pub fn wait(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        rx
    }

    pub fn set_listener(&mut self, listener: Option<js_sys::Function>) {
        self.listener = listener;
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// Installs pieces we already hold (a torrent made from local files) and starts.
    pub fn seed_pieces(&mut self, pieces: Vec<Bytes>) {
        let mut have = Bitfield::new(pieces.len() as u32);
        self.open_store_unbounded();
        if let Some(store) = &mut self.store {
            for (i, data) in pieces.into_iter().enumerate() {
                store.verified(i as u32, data);
                have.set(i as u32);
            }
        }
        let now = self.clock.now();
        self.core.start(now, &have);
        self.drain();
    }

    fn open_store_unbounded(&mut self) {
        if let Some(info) = self.core.info() {
            self.store = Some(PieceStore::new(info.piece_length, info.total_length, None));
        }
    }

    /// Storage for a torrent whose info is known; `have` the pieces already verified.
    fn open_store(&mut self, have: Option<Bitfield>) {
        let Some(info) = self.core.info() else { return };
        let budget = self.config.max_memory;
        // A torrent that fits is kept whole (and downloaded whole, to seed it); a larger one
        // streams through the budget, fetching what readers ask for.
        let bounded = info.total_length > budget;
        let store =
            PieceStore::new(info.piece_length, info.total_length, bounded.then_some(budget));
        let pieces = info.piece_count();
        self.store = Some(store);
        self.core.set_deadline_only(bounded);
        let now = self.clock.now();
        self.core.start(now, &have.unwrap_or_else(|| Bitfield::new(pieces)));
        // Readers that waited for the metadata can now place their windows.
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
        self.emit("metadata", JsValue::UNDEFINED);
    }

    pub fn status(&self) -> Status {
        let now = self.clock.now();
        let stats: Stats = self.core.stats(now);
        let info = self.core.info();
        let length = info.map(|i| i.total_length);
        let progress = match (stats.pieces_total, length) {
            (0, _) | (_, None) => 0.0,
            (total, _) => f64::from(stats.pieces_have) / f64::from(total),
        };
        Status {
            info_hash: self.core.info_hash().to_hex(),
            name: info.map(|i| i.name.clone()),
            ready: self.store.is_some(),
            done: self.core.is_complete(),
            progress,
            length,
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            download_rate: stats.download_rate,
            upload_rate: stats.upload_rate,
            peers: stats.peers,
            seeds: stats.seeds,
            connecting: self.conns.values().filter(|c| c.key.is_none()).count(),
            web_seeds: stats.web_seeds,
            web_seed_downloaded: stats.web_seed_downloaded,
            pieces_have: stats.pieces_have,
            pieces_total: stats.pieces_total,
            readers: self.core.readers().count(),
            memory_resident: self.store.as_ref().map_or(0, PieceStore::resident),
            memory_peak: self.store.as_ref().map_or(0, PieceStore::peak),
            memory_budget: self.store.as_ref().and_then(PieceStore::budget),
            error: self.failed.clone(),
        }
    }

    /// Tells the page, on a later turn: the driver is borrowed now, and a listener may well
    /// call back into it (`status()` from a `metadata` handler).
    fn emit(&self, name: &str, detail: JsValue) {
        if let Some(listener) = self.listener.clone() {
            let name = JsValue::from_str(name);
            wasm_bindgen_futures::spawn_local(async move {
                let _ = listener.call2(&JsValue::NULL, &name, &detail);
            });
        }
    }

    // ---- the event loop ----

    /// Runs `f` on the driver now, or on the next turn if it is busy.
    pub fn dispatch(rc: &Rc<RefCell<TorrentDriver>>, f: impl FnOnce(&mut TorrentDriver) + 'static) {
        match rc.try_borrow_mut() {
            Ok(mut driver) => {
                if !driver.destroyed {
                    f(&mut driver);
                    driver.drain();
                }
            }
            Err(_) => {
                let weak = Rc::downgrade(rc);
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(rc) = weak.upgrade() {
                        TorrentDriver::dispatch(&rc, f);
                    }
                });
            }
        }
    }

    /// Called every ~100 ms by the client.
    pub fn tick(&mut self) {
        if self.destroyed {
            return;
        }
        let now = self.clock.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !matches!(c.state, ConnState::Open)
                    && now.saturating_since(c.created).as_secs() >= OPEN_TIMEOUT_SECS
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.close_conn(id, "did not open in time");
        }
        self.poll_announces(now);
        self.drain();
    }

    /// Carries out what the core asked for; then the core learns what the channels of peers
    /// whose requests wait still hold (its own count only adds what it sent), and what that
    /// releases is carried out too.
    pub fn drain(&mut self) {
        self.apply_actions();
        let waiting: Vec<PeerKey> = self.core.backlogged_peers().collect();
        if waiting.is_empty() {
            return;
        }
        let now = self.clock.now();
        for peer in waiting {
            let conn = self.by_peer.get(&peer).and_then(|id| self.conns.get(id));
            let unsent = conn.map_or(0, |c| c.unsent() as u64);
            self.core.on_send_backlog(now, peer, unsent);
        }
        self.apply_actions();
    }

    fn apply_actions(&mut self) {
        let mut dirty: HashSet<ConnId> = HashSet::new();
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { peer, message } => {
                    if let Some(id) = self.by_peer.get(&peer).copied() {
                        if let Some(conn) = self.conns.get_mut(&id) {
                            conn.writer.message(&message);
                            dirty.insert(id);
                        }
                    }
                }
                // A browser cannot dial addresses; peers reach us through the tracker.
                Action::Connect { peer, .. } => {
                    let now = self.clock.now();
                    self.core.on_connect_failed(now, peer);
                }
                Action::Disconnect { peer, reason } => {
                    if let Some(id) = self.by_peer.remove(&peer) {
                        if let Some(conn) = self.conns.remove(&id) {
                            log(&format!("dropping peer: {reason}"));
                            conn.close();
                        }
                    }
                }
                Action::WriteBlock { piece, offset, data } => {
                    if let Some(store) = &mut self.store {
                        if let Err(e) = store.write(piece, offset, &data) {
                            log(&format!("block refused: {e}"));
                        }
                    }
                }
                Action::ReadBlock { peer, block } => self.read_block(peer, block, &mut dirty),
                Action::VerifyPiece { piece } => self.verify(piece),
                Action::PieceVerified { .. } => {
                    for waiter in self.waiters.drain(..) {
                        let _ = waiter.send(());
                    }
                    self.enforce_budget();
                }
                Action::PieceFailed { piece } => {
                    log(&format!("piece {piece} failed its hash check"))
                }
                Action::MetadataReceived { .. } => self.open_store(None),
                Action::FetchWebSeed(fetch) => {
                    let Ok(controller) = web_sys::AbortController::new() else {
                        let e = WebSeedError::Transport("no AbortController".into());
                        let now = self.clock.now();
                        self.core.on_web_seed_failed(now, fetch.seed, fetch.id, &e);
                        continue;
                    };
                    let signal = controller.signal();
                    self.web_fetches.insert(fetch.id, controller);
                    let me = self.me.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let end = crate::webseed::fetch(&fetch.plan, &signal).await;
                        let Some(rc) = me.upgrade() else { return };
                        TorrentDriver::dispatch(&rc, move |d| {
                            d.web_fetches.remove(&fetch.id);
                            if let FetchEnd::Failed(e) = &end {
                                log(&format!("web seed: {e}"));
                            }
                            let now = d.clock.now();
                            d.core.on_web_seed_end(now, fetch.seed, fetch.id, end);
                        });
                    });
                }
                Action::CancelWebSeed { id, .. } => {
                    // The fetch answers with what had arrived.
                    if let Some(controller) = self.web_fetches.remove(&id) {
                        controller.abort();
                    }
                }
                Action::Completed => {
                    let now = self.clock.now();
                    self.announcer.on_completed(now);
                    self.poll_announces(now);
                    self.emit("done", JsValue::UNDEFINED);
                }
            }
        }
        for id in dirty {
            self.flush(id);
        }
    }

    fn flush(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if let Err(e) = conn.flush() {
            self.close_conn(id, &e);
        }
    }

    /// The core asks for a block only while the peer's channel has room (its one rule,
    /// `SEND_BACKLOG_LIMIT`); the store answers at once.
    fn read_block(&mut self, peer: PeerKey, block: BlockRef, dirty: &mut HashSet<ConnId>) {
        let Some(id) = self.by_peer.get(&peer).copied() else { return };
        let data = self.store.as_ref().and_then(|s| block_of(s, block));
        let now = self.clock.now();
        self.core.on_block_read(now, peer, block, data);
        dirty.insert(id);
    }

    /// The channel drained below its low mark: the core learns what it still holds, and reads
    /// for the requests that waited.
    fn report_backlog(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(&id) else { return };
        let Some(peer) = conn.key else { return };
        let unsent = conn.unsent() as u64;
        let now = self.clock.now();
        self.core.on_send_backlog(now, peer, unsent);
        self.drain();
    }

    fn verify(&mut self, piece: u32) {
        let expected = self.core.info().and_then(|i| i.piece_hashes.get(piece as usize)).copied();
        let data = self.store.as_mut().and_then(|s| s.take_assembled(piece));
        let (Some(expected), Some(data)) = (expected, data) else {
            let now = self.clock.now();
            self.core.on_piece_verified(now, piece, false);
            return;
        };
        let me = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let ok = match hash::sha1(&data).await {
                Ok(digest) => digest == expected,
                Err(e) => {
                    log(&format!("hashing piece {piece} failed: {e:?}"));
                    false
                }
            };
            let Some(rc) = me.upgrade() else { return };
            TorrentDriver::dispatch(&rc, move |d| {
                if let Some(store) = &mut d.store {
                    match ok {
                        true => store.verified(piece, Bytes::from(data)),
                        false => store.discard(piece),
                    }
                }
                let now = d.clock.now();
                d.core.on_piece_verified(now, piece, ok);
            });
        });
    }

    fn enforce_budget(&mut self) {
        let windows: Vec<ReaderWindow> = self.core.readers().map(|(_, w)| w).collect();
        let Some(store) = &mut self.store else { return };
        let evicted = store.enforce_budget(&windows);
        let now = self.clock.now();
        for piece in evicted {
            self.core.on_piece_evicted(now, piece);
        }
    }

    // ---- connections ----

    fn conn_sink(&self) -> Rc<crate::conn::Sink> {
        sink_to(self.me.clone(), |rc, id, event| {
            TorrentDriver::dispatch(rc, move |d| d.on_conn_event(id, event))
        })
    }

    fn on_conn_event(&mut self, id: ConnId, event: ConnEvent) {
        match event {
            ConnEvent::ChannelOpen => self.channel_opened(id),
            ConnEvent::Data(bytes) => self.on_data(id, &bytes),
            ConnEvent::Writable => {
                self.flush(id);
                self.report_backlog(id);
            }
            ConnEvent::Closed(reason) => self.close_conn(id, &reason),
        }
    }

    fn channel_opened(&mut self, id: ConnId) {
        let handshake = self.core.handshake();
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if matches!(conn.state, ConnState::Open) {
            return;
        }
        conn.state = ConnState::Open;
        // Both sides send their handshake as soon as the channel opens, as WebTorrent does.
        conn.writer.handshake(&handshake);
        if let Some(info) = self.core.info() {
            conn.reader.set_max_frame(wire::max_frame_for_pieces(info.piece_count()));
        }
        self.flush(id);
    }

    fn on_data(&mut self, id: ConnId, bytes: &[u8]) {
        let now = self.clock.now();
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.bytes_in += bytes.len() as u64;
        let inbound = match conn.reader.feed(bytes) {
            Ok(inbound) => inbound,
            Err(e) => return self.close_conn(id, &format!("bad data from peer: {e}")),
        };
        for item in inbound {
            let Some(conn) = self.conns.get_mut(&id) else { return };
            match item {
                Inbound::Handshake(handshake) => {
                    match self.core.on_incoming(now, None, PeerSource::WebRtc, &handshake) {
                        Ok(key) => {
                            conn.key = Some(key);
                            self.by_peer.insert(key, id);
                            self.emit("wire", JsValue::UNDEFINED);
                        }
                        Err(refusal) => {
                            return self.close_conn(id, &format!("refused: {refusal:?}"));
                        }
                    }
                }
                Inbound::Message(message) => match conn.key {
                    Some(key) => self.core.on_message(now, key, message),
                    None => return self.close_conn(id, "message before handshake"),
                },
            }
        }
    }

    fn close_conn(&mut self, id: ConnId, reason: &str) {
        let Some(conn) = self.conns.remove(&id) else { return };
        if let ConnState::Offered { offer_id } = conn.state {
            self.offers.remove(&OfferId(offer_id));
        }
        if let Some(key) = conn.key {
            self.by_peer.remove(&key);
            let now = self.clock.now();
            self.core.on_disconnected(now, key);
        }
        log(&format!("connection {id} closed: {reason}"));
        conn.close();
    }

    /// A new `RTCPeerConnection` in `state`, watched, for the caller to finish and keep;
    /// `None` once destroyed or without room.
    fn open_conn(
        &mut self,
        state: ConnState,
    ) -> Option<(ConnId, web_sys::RtcPeerConnection, Conn)> {
        if self.destroyed || !self.has_room() {
            return None;
        }
        let (pc, slot) = rtc::peer_connection(&self.config.ice_servers, &self.budget).ok()?;
        let id = self.new_conn_id();
        let mut conn = Conn::new(pc.clone(), slot, state, self.clock.now());
        conn.watch_connection(id, self.conn_sink());
        Some((id, pc, conn))
    }

    fn new_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Under this torrent's own connection limit (enough to adopt a pooled offer, which
    /// brings its slot of the client's budget with it).
    fn under_limit(&self) -> bool {
        self.conns.len() < self.config.max_connections
    }

    /// Room for a new `RTCPeerConnection`: under the limit, and a slot of the client's budget
    /// is free or a pooled offer gives its up.
    fn has_room(&self) -> bool {
        if !self.under_limit() {
            return false;
        }
        if self.budget.has_room() {
            return true;
        }
        let pool = self.hub.upgrade().and_then(|h| h.try_borrow().ok().map(|h| h.offer_pool()));
        pool.is_some_and(|p| p.try_borrow_mut().is_ok_and(|mut p| p.yield_slot()))
            && self.budget.has_room()
    }

    /// Makes one offer for an announce: a connection waiting for whoever answers.
    async fn make_offer(me: Weak<RefCell<TorrentDriver>>) -> Option<(OfferId, String)> {
        let pool = {
            let rc = me.upgrade()?;
            let d = rc.try_borrow().ok()?;
            if d.destroyed || !d.under_limit() {
                return None;
            }
            d.hub.upgrade().map(|hub| hub.borrow().offer_pool())
        };
        if let Some(pooled) = match pool {
            Some(pool) => OfferPool::take(&pool).await,
            None => None,
        } {
            let rc = me.upgrade();
            let Some(mut d) = rc.as_ref().and_then(|rc| rc.try_borrow_mut().ok()) else {
                pooled.close();
                return None;
            };
            if d.destroyed || !d.under_limit() {
                pooled.close();
                return None;
            }
            return Some(d.adopt_offer(pooled));
        }
        let rc = me.upgrade()?;
        let (id, pc) = {
            let mut d = rc.try_borrow_mut().ok()?;
            let offer_id = OfferId(crate::random::bytes());
            let state = ConnState::Offered { offer_id: offer_id.0 };
            let (id, pc, conn) = d.open_conn(state)?;
            d.conns.insert(id, conn);
            d.offers.insert(offer_id, id);
            (id, pc)
        };
        drop(rc);
        let made = rtc::make_offer(&pc).await;
        let rc = me.upgrade()?;
        let mut d = rc.try_borrow_mut().ok()?;
        let sink = d.conn_sink();
        match made {
            Ok((channel, sdp)) => {
                let conn = d.conns.get_mut(&id)?;
                conn.attach_channel(id, channel, sink);
                let ConnState::Offered { offer_id } = conn.state else { return None };
                Some((OfferId(offer_id), sdp))
            }
            Err(e) => {
                d.close_conn(id, &format!("making an offer failed: {e:?}"));
                None
            }
        }
    }

    /// Makes a pooled offer (gathered before it was needed) one of this torrent's.
    fn adopt_offer(&mut self, pooled: PooledOffer) -> (OfferId, String) {
        let offer_id = OfferId(crate::random::bytes());
        let id = self.new_conn_id();
        let now = self.clock.now();
        let sink = self.conn_sink();
        let state = ConnState::Offered { offer_id: offer_id.0 };
        let mut conn = Conn::new(pooled.pc, pooled.slot, state, now);
        conn.watch_connection(id, sink.clone());
        conn.attach_channel(id, pooled.channel, sink);
        self.conns.insert(id, conn);
        self.offers.insert(offer_id, id);
        (offer_id, pooled.sdp)
    }

    /// The tracker relayed an answer to our offer.
    pub fn on_answer(&mut self, offer_id: OfferId, sdp: String) {
        let Some(id) = self.offers.remove(&offer_id) else { return };
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.state = ConnState::Connecting;
        let pc = conn.pc.clone();
        let me = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = rtc::accept_answer(&pc, &sdp).await {
                if let Some(rc) = me.upgrade() {
                    TorrentDriver::dispatch(&rc, move |d| {
                        d.close_conn(id, &format!("bad answer: {e:?}"))
                    });
                }
            }
        });
    }

    /// Our offer will get no answer.
    pub fn on_offer_dropped(&mut self, offer_id: OfferId, reason: OfferDrop) {
        if let Some(id) = self.offers.remove(&offer_id) {
            // The reason goes to the debug log: a connection that never opens is explained.
            self.close_conn(id, &format!("offer dropped: {reason}"));
        }
    }

    /// Answers a remote peer's offer; `None` when we have no room or the offer is unusable.
    pub async fn answer_offer(me: Weak<RefCell<TorrentDriver>>, sdp: String) -> Option<String> {
        let rc = me.upgrade()?;
        let (id, pc) = {
            let mut d = rc.try_borrow_mut().ok()?;
            let (id, pc, mut conn) = d.open_conn(ConnState::Connecting)?;
            // The offerer made the channel; it arrives here.
            let weak = d.me.clone();
            let on_channel = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let Ok(event) = event.dyn_into::<RtcDataChannelEvent>() else { return };
                let Some(rc) = weak.upgrade() else { return };
                let channel = event.channel();
                TorrentDriver::dispatch(&rc, move |d| d.attach_incoming_channel(id, channel));
            });
            pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
            conn.keep(on_channel);
            d.conns.insert(id, conn);
            (id, pc)
        };
        drop(rc);
        let answer = rtc::make_answer(&pc, &sdp).await;
        let rc = me.upgrade()?;
        match answer {
            Ok(sdp) => Some(sdp),
            Err(e) => {
                TorrentDriver::dispatch(&rc, move |d| {
                    d.close_conn(id, &format!("answering failed: {e:?}"))
                });
                None
            }
        }
    }

    fn attach_incoming_channel(&mut self, id: ConnId, channel: web_sys::RtcDataChannel) {
        let sink = self.conn_sink();
        let Some(conn) = self.conns.get_mut(&id) else {
            channel.close();
            return;
        };
        conn.attach_channel(id, channel, sink);
        if conn.channel_is_open() {
            self.channel_opened(id);
        }
    }

    // ---- announces ----

    fn announce_request(&self, event: AnnounceEvent) -> AnnounceRequest {
        // Port 0: a page accepts no connections, it meets peers through the offers its
        // WebSocket trackers relay (and their wire has no port).
        announce_request(&self.core, self.clock.now(), event, 0, self.announce_key)
    }

    fn poll_announces(&mut self, now: Instant) {
        while let Some(job) = self.announcer.poll(now) {
            if !self.announcing.insert(job.url.clone()) {
                continue;
            }
            let req = self.announce_request(job.event);
            let offers = match job.event {
                AnnounceEvent::Stopped => 0,
                _ => self.config.offers_per_announce,
            };
            let me = self.me.clone();
            let hub = self.hub.clone();
            wasm_bindgen_futures::spawn_local(async move {
                // The offers the pool has ready go at once. With none ready (a client that
                // has just started), the announce goes with the first one gathered, and the
                // rest follow if the tracker's answer shows peers they could reach.
                let mut made = TorrentDriver::take_ready_offers(&me, offers as usize);
                if made.is_empty() && offers > 0 {
                    made.extend(TorrentDriver::make_offer(me.clone()).await);
                }
                let lacking = (offers as usize).saturating_sub(made.len());
                if let Some(rc) = me.upgrade().filter(|_| lacking > 0) {
                    if let Ok(mut d) = rc.try_borrow_mut() {
                        d.shortfalls
                            .insert(job.url.clone(), Shortfall { lacking, sent: made.len() });
                    }
                }
                let Some(hub) = hub.upgrade() else { return };
                Hub::announce(&hub, &job.url, &req, made, AnnounceKind::Scheduled);
            });
        }
    }

    /// Up to `max` of the offers the client's pool has ready, made this torrent's.
    fn take_ready_offers(me: &Weak<RefCell<TorrentDriver>>, max: usize) -> Vec<(OfferId, String)> {
        let mut made = Vec::new();
        let rc = me.upgrade();
        let Some(mut d) = rc.as_ref().and_then(|rc| rc.try_borrow_mut().ok()) else { return made };
        let hub = d.hub.upgrade();
        let Some(pool) = hub.as_ref().and_then(|h| h.try_borrow().ok()).map(|h| h.offer_pool())
        else {
            return made;
        };
        while made.len() < max && !d.destroyed && d.under_limit() {
            let Some(pooled) = pool.try_borrow_mut().ok().and_then(|mut p| p.take_ready()) else {
                break;
            };
            made.push(d.adopt_offer(pooled));
        }
        made
    }

    /// A second announce to `url` with `count` more offers, made side by side (one after the
    /// other, each would wait for the gathering before it).
    fn announce_more_offers(&mut self, url: &str, count: usize) {
        let req = self.announce_request(AnnounceEvent::None);
        let (me, hub, url) = (self.me.clone(), self.hub.clone(), url.to_owned());
        wasm_bindgen_futures::spawn_local(async move {
            let pending: Vec<_> = (0..count)
                .map(|_| {
                    let (tx, rx) = oneshot::channel();
                    let me = me.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let _ = tx.send(TorrentDriver::make_offer(me).await);
                    });
                    rx
                })
                .collect();
            let mut made = Vec::new();
            for rx in pending {
                if let Ok(Some(offer)) = rx.await {
                    made.push(offer);
                }
            }
            let Some(hub) = hub.upgrade().filter(|_| !made.is_empty()) else { return };
            Hub::announce(&hub, &url, &req, made, AnnounceKind::MoreOffers);
        });
    }

    /// The tracker at `url` answered (or failed) an announce.
    pub fn on_announced(&mut self, url: &str, result: Result<AnnounceResponse, String>) {
        let now = self.clock.now();
        self.announcing.remove(url);
        let shortfall = self.shortfalls.remove(url);
        match result {
            Ok(response) => {
                self.announcer.on_response(url, &response, now);
                let more = shortfall.map_or(0, |s| s.worth_sending(&response));
                if more > 0 && !self.destroyed {
                    self.announce_more_offers(url, more);
                }
            }
            Err(e) => {
                log(&format!("announce to {url} failed: {e}"));
                self.announcer.on_failure(url, &e, now);
            }
        }
    }

    /// `url`'s socket reopened and rejoined us without offers: peers that announced while it
    /// was down would meet us only at our next announce, minutes away, so fresh offers go out
    /// now (as WebTorrent's client announces with offers after a reconnect; Shoal's native
    /// driver sends them with the rejoin itself).
    pub fn on_rejoined(&mut self, url: &str) {
        let count = self.config.offers_per_announce as usize;
        if count > 0 && !self.destroyed && self.under_limit() {
            self.announce_more_offers(url, count);
        }
    }

    /// The tracker answered (or failed) an announce of [`AnnounceKind::MoreOffers`]: the
    /// regular schedule does not move for it.
    pub fn on_more_offers_announced(
        &mut self,
        url: &str,
        result: Result<AnnounceResponse, String>,
    ) {
        if let Err(e) = result {
            log(&format!("announce with more offers to {url} failed: {e}"));
        }
    }

    /// The offers we made for `url`'s announce that it refused at once.
    pub fn drop_offers(&mut self, refused: &[(OfferId, OfferDrop)]) {
        for &(offer_id, reason) in refused {
            self.on_offer_dropped(offer_id, reason);
        }
    }

    // ---- readers ----

    pub fn new_reader(&mut self) -> ReaderId {
        let id = ReaderId(self.next_reader);
        self.next_reader += 1;
        self.open_readers.insert(id);
        id
    }

    pub fn remove_reader(&mut self, id: ReaderId) {
        self.open_readers.remove(&id);
        let now = self.clock.now();
        self.core.remove_reader(now, id);
    }

    /// `len` bytes at torrent offset `offset` if verified; otherwise the reader's window moves
    /// there and the returned receiver fires when a piece arrives.
    pub fn try_read(
        &mut self,
        reader: ReaderId,
        read: ReadRequest,
        end: u64,
        readahead: u64,
    ) -> Result<Result<Vec<u8>, oneshot::Receiver<()>>, String> {
        let ReadRequest { offset, len, partial } = read;
        if self.destroyed {
            return Err("the torrent was destroyed".into());
        }
        if !self.open_readers.contains(&reader) {
            return Err("the reader was closed".into());
        }
        let Some(store) = &self.store else {
            // No metadata yet: the waiter is woken when the store opens (`open_store`).
            let (tx, rx) = oneshot::channel();
            self.waiters.push(tx);
            return Ok(Err(rx));
        };
        let readahead = store.max_readahead().map_or(readahead, |m| readahead.min(m));
        let now = self.clock.now();
        self.core.set_reader(now, reader, ReaderWindow { position: offset, end, readahead });
        let bytes = match partial {
            true => store.read_prefix(offset, len),
            false => store.read(offset, len),
        };
        if let Some(bytes) = bytes {
            return Ok(Ok(bytes));
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        self.drain();
        Ok(Err(rx))
    }

    /// Drops every connection and wakes readers with an error.
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        let now = self.clock.now();
        self.announcer.stop(now);
        let req = self.announce_request(AnnounceEvent::Stopped);
        if let Some(hub) = self.hub.upgrade() {
            let urls: Vec<String> =
                self.announcer.tiers().iter().map(|(_, url)| url.to_owned()).collect();
            let hub = Rc::downgrade(&hub);
            wasm_bindgen_futures::spawn_local(async move {
                let Some(hub) = hub.upgrade() else { return };
                for url in urls {
                    Hub::announce(&hub, &url, &req, Vec::new(), AnnounceKind::Scheduled);
                }
            });
        }
        self.destroyed = true;
        self.core.shutdown(now);
        while self.core.poll_action().is_some() {}
        for (_, conn) in self.conns.drain() {
            conn.close();
        }
        for (_, fetch) in self.web_fetches.drain() {
            fetch.abort();
        }
        self.by_peer.clear();
        self.offers.clear();
        self.store = None;
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

/// A block of a verified piece, if the request fits it.
fn block_of(store: &PieceStore, block: BlockRef) -> Option<Bytes> {
    let piece = store.piece(block.piece)?;
    let start = block.offset as usize;
    let end = start.checked_add(block.length as usize)?;
    (end <= piece.len()).then(|| piece.slice(start..end))
}
