//! What JavaScript sees (through wasm-bindgen): a client, its torrents, and readers. The
//! ES module in `web/shoal.js` wraps these in the public API; this layer stays thin and
//! turns every failure into a JS `Error` with a message a person can act on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use js_sys::{Array, Promise, Reflect, Uint8Array};
use serde::Deserialize;
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;
use shoal_proto::streaming::ReaderId;
use shoal_proto::torrent::{Torrent, TorrentConfig, VIEWER_WEB_SEED_GRACE};
use shoal_proto::{InfoHash, PeerId};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::budget::{self, ConnectionBudget};
use crate::clock::Clock;
use crate::offer_pool::OfferPool;
use crate::rtc;
use crate::seed::{self, SeedOptions};
use crate::timer::Interval;
use crate::torrent::{DriverConfig, ReadRequest, TorrentDriver, DEFAULT_READAHEAD};
use crate::tracker::Hub;

/// How often torrents and tracker sockets look at their timers.
const TICK_MS: i32 = 100;
/// The most bytes one `read` returns (larger ranges are read in several calls).
const MAX_READ: u64 = 16 * 1024 * 1024;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ClientOptions {
    /// WebSocket trackers every torrent announces to, besides its own.
    trackers: Option<Vec<String>>,
    ice_servers: Option<Vec<String>>,
    max_memory: Option<f64>,
    offers_per_announce: Option<u32>,
    max_connections: Option<u32>,
    /// `RTCPeerConnection`s the client holds at most, over all its torrents.
    max_peer_connections: Option<u32>,
    /// Offers kept gathered while idle (default: one announce's worth).
    ready_offers: Option<u32>,
}

struct ClientInner {
    clock: Clock,
    peer_id: PeerId,
    hub: Rc<RefCell<Hub>>,
    config: Rc<DriverConfig>,
    budget: Rc<ConnectionBudget>,
    trackers: Vec<String>,
    torrents: RefCell<HashMap<InfoHash, Rc<RefCell<TorrentDriver>>>>,
    ticker: RefCell<Option<Interval>>,
}

/// A Shoal client in this page: its torrents share the tracker sockets and the peer id.
#[wasm_bindgen]
pub struct WasmClient {
    inner: Rc<ClientInner>,
}

#[wasm_bindgen]
impl WasmClient {
    /// `options`: `{ trackers?: string[], iceServers?: string[], maxMemory?: number,
    /// offersPerAnnounce?: number, maxConnections?: number, maxPeerConnections?: number,
    /// readyOffers?: number }`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<WasmClient, JsError> {
        let options: ClientOptions = if options.is_undefined() || options.is_null() {
            ClientOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| JsError::new(&format!("bad client options: {e}")))?
        };
        let mut config = DriverConfig {
            ice_servers: options.ice_servers.unwrap_or_default(),
            ..Default::default()
        };
        if let Some(max) = options.max_memory.filter(|m| *m >= 1_048_576.0) {
            config.max_memory = max as u64;
        }
        if let Some(n) = options.offers_per_announce {
            config.offers_per_announce = n.min(10);
        }
        if let Some(n) = options.max_connections {
            config.max_connections = (n as usize).clamp(1, 200);
        }
        let trackers = options.trackers.unwrap_or_default();
        for url in &trackers {
            check_tracker(url)?;
        }
        // Before any connection exists, so that they all share one (see `rtc`).
        wasm_bindgen_futures::spawn_local(rtc::prepare_certificate());
        let clock = Clock::new();
        let peer_id = PeerId::generate(crate::random::bytes());
        let ready_offers = options.ready_offers.unwrap_or(config.offers_per_announce);
        let max_peer_connections = options
            .max_peer_connections
            .map_or(budget::DEFAULT_MAX, |n| (n as usize).clamp(1, budget::DEFAULT_MAX * 2));
        let budget = ConnectionBudget::new(max_peer_connections);
        let offers = OfferPool::new(
            clock,
            config.ice_servers.clone(),
            budget.clone(),
            ready_offers as usize,
        );
        let inner = Rc::new(ClientInner {
            clock,
            peer_id,
            hub: Hub::new(clock, peer_id, offers),
            budget,
            config: Rc::new(config),
            trackers,
            torrents: RefCell::new(HashMap::new()),
            ticker: RefCell::new(None),
        });
        // The client's own trackers are known now: their sockets open while the page is idle
        // (or the first offers are gathered), not after the first magnet arrives.
        {
            let mut hub = inner.hub.borrow_mut();
            for url in &inner.trackers {
                hub.prepare(url);
            }
        }
        let weak = Rc::downgrade(&inner);
        let ticker = Interval::new(TICK_MS, move || {
            if let Some(inner) = weak.upgrade() {
                inner.tick();
            }
        });
        *inner.ticker.borrow_mut() = ticker;
        Ok(WasmClient { inner })
    }

    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        hex(&self.inner.peer_id.0)
    }

    /// Adds a torrent from a magnet URI (string) or a `.torrent` file (Uint8Array). With a
    /// magnet, `torrent_file` may carry the bytes of its `.torrent` (fetched from its `xs`):
    /// they must be the magnet's torrent, and the torrent then starts with its metadata, its
    /// trackers and web seeds those of both.
    pub fn add(
        &self,
        source: JsValue,
        torrent_file: Option<Uint8Array>,
    ) -> Result<WasmTorrent, JsError> {
        let parse_torrent = |bytes: &Uint8Array| {
            Metainfo::from_bytes(&bytes.to_vec())
                .map_err(|e| JsError::new(&format!("not a valid .torrent file: {e}")))
        };
        let (info_hash, meta, mut trackers, mut web_seeds) = if let Some(text) = source.as_string()
        {
            let magnet = Magnet::parse(text.trim())
                .map_err(|e| JsError::new(&format!("not a valid magnet link: {e}")))?;
            let meta = torrent_file.as_ref().map(parse_torrent).transpose()?;
            if meta.as_ref().is_some_and(|m| m.info_hash != magnet.info_hash) {
                return Err(JsError::new("the .torrent file is not the magnet's torrent"));
            }
            (magnet.info_hash, meta, magnet.trackers, magnet.web_seeds)
        } else if let Some(bytes) = source.dyn_ref::<Uint8Array>() {
            let meta = parse_torrent(bytes)?;
            (meta.info_hash, Some(meta), Vec::new(), Vec::new())
        } else {
            return Err(JsError::new("add() takes a magnet link or the bytes of a .torrent file"));
        };
        if let Some(existing) = self.inner.torrents.borrow().get(&info_hash) {
            return Ok(self.handle(existing.clone()));
        }
        let info_bytes = meta.map(|meta| {
            trackers.extend(meta.trackers.into_iter().flatten());
            web_seeds.extend(meta.web_seeds);
            Bytes::from(meta.info_bytes)
        });
        trackers.extend(self.inner.trackers.iter().cloned());
        let torrent = self.insert(info_hash, info_bytes, trackers, None)?;
        torrent.driver.borrow_mut().add_web_seeds(&web_seeds);
        Ok(torrent)
    }

    /// Makes a torrent of `files` (`[{ path: "dir/name.ext", data: Uint8Array }]`, one or
    /// more, in order) named `name`, and seeds it: a promise of the torrent. `options`:
    /// `{ pieceLength?: number, trackers?: string[] }`. Pieces are hashed with SubtleCrypto
    /// (~3 × the speed of SHA-1 in wasm here), and the page gets a turn every
    /// [`HASH_SLICE`](seed::HASH_SLICE) of it, so it stays responsive while a large file is
    /// hashed.
    #[wasm_bindgen(js_name = seedFiles)]
    pub fn seed_files(
        &self,
        name: String,
        files: Array,
        options: JsValue,
    ) -> Result<Promise, JsError> {
        let options = SeedOptions::read(options)?;
        let files = seed::read_files(&files)?;
        let mut trackers = options.trackers.unwrap_or_default();
        for url in &trackers {
            check_tracker(url)?;
        }
        trackers.extend(self.inner.trackers.iter().cloned());
        let total = seed::total_length(&files)?;
        let hasher = seed::start_torrent(&name, &files, total, options.piece_length, &trackers)?;
        let client = WasmClient { inner: self.inner.clone() };
        let clock = self.inner.clock;
        Ok(future_to_promise(async move {
            let mut turns = crate::timer::PageTurns::new(clock, seed::HASH_SLICE);
            let all = seed::copy_into_memory(files, total, &mut turns).await?;
            let (pieces, hashes) =
                seed::hash_pieces(&all, hasher.piece_length(), &mut turns).await?;
            let torrent_bytes = hasher
                .finish_with_hashes(&hashes)
                .map_err(|e| JsError::new(&format!("cannot make a torrent: {e}")))?;
            let meta = Metainfo::from_bytes(&torrent_bytes)
                .map_err(|e| JsError::new(&format!("made a torrent we cannot read: {e}")))?;
            let info = Some(Bytes::from(meta.info_bytes));
            Ok(client.insert(meta.info_hash, info, trackers, Some(pieces))?.into())
        }))
    }

    /// The torrent with this info hash (40 hex digits), if added.
    pub fn get(&self, info_hash: &str) -> Option<WasmTorrent> {
        let info_hash = InfoHash::from_hex(info_hash)?;
        let driver = self.inner.torrents.borrow().get(&info_hash).cloned()?;
        Some(self.handle(driver))
    }

    /// Stops everything: torrents, connections, tracker sockets.
    pub fn destroy(&self) {
        self.inner.ticker.borrow_mut().take();
        let torrents: Vec<_> = self.inner.torrents.borrow_mut().drain().map(|(_, t)| t).collect();
        for torrent in torrents {
            TorrentDriver::dispatch(&torrent, |d| d.destroy());
        }
        // The stopped announces go out on the next turn; close the sockets after them.
        let hub = self.inner.hub.clone();
        wasm_bindgen_futures::spawn_local(async move {
            crate::timer::sleep(200).await;
            hub.borrow_mut().close();
        });
    }
}

impl WasmClient {
    fn handle(&self, driver: Rc<RefCell<TorrentDriver>>) -> WasmTorrent {
        WasmTorrent { driver, client: Rc::downgrade(&self.inner) }
    }

    fn insert(
        &self,
        info_hash: InfoHash,
        info_bytes: Option<Bytes>,
        mut trackers: Vec<String>,
        pieces: Option<Vec<Bytes>>,
    ) -> Result<WasmTorrent, JsError> {
        // A browser reaches peers only through WebSocket trackers.
        trackers.retain(|t| t.starts_with("ws://") || t.starts_with("wss://"));
        let mut seen = std::collections::HashSet::new();
        trackers.retain(|t| seen.insert(t.clone()));
        let config = TorrentConfig {
            max_connections: self.inner.config.max_connections,
            client_name: concat!("Shoal web ", env!("CARGO_PKG_VERSION")).to_owned(),
            // A page mostly plays what it adds: the head of each file is wanted first.
            file_ends_first: true,
            // The origin's web seed is for what peers cannot bring in time.
            web_seed_grace: VIEWER_WEB_SEED_GRACE,
            ..TorrentConfig::default()
        };
        let seed = u64::from_le_bytes(crate::random::bytes::<8>());
        let core = Torrent::new(config, info_hash, self.inner.peer_id, info_bytes, seed)
            .map_err(|e| JsError::new(&format!("not a usable torrent: {e}")))?;
        let driver = TorrentDriver::new(
            core,
            trackers.clone(),
            Rc::downgrade(&self.inner.hub),
            self.inner.clock,
            self.inner.config.clone(),
            self.inner.budget.clone(),
            seed,
        );
        if let Some(pieces) = pieces {
            driver.borrow_mut().seed_pieces(pieces);
        }
        {
            let mut hub = self.inner.hub.borrow_mut();
            hub.add_torrent(info_hash, Rc::downgrade(&driver));
            for url in &trackers {
                hub.prepare(url);
            }
        }
        // The first announce goes out now, not at the next tick.
        driver.borrow_mut().tick();
        self.inner.torrents.borrow_mut().insert(info_hash, driver.clone());
        Ok(self.handle(driver))
    }
}

impl ClientInner {
    fn tick(&self) {
        let torrents: Vec<_> = self.torrents.borrow().values().cloned().collect();
        for torrent in torrents {
            TorrentDriver::dispatch(&torrent, |d| d.tick());
        }
        Hub::tick(&self.hub);
    }
}

/// One torrent of a client.
#[wasm_bindgen]
pub struct WasmTorrent {
    driver: Rc<RefCell<TorrentDriver>>,
    client: Weak<ClientInner>,
}

#[wasm_bindgen]
impl WasmTorrent {
    #[wasm_bindgen(getter, js_name = infoHash)]
    pub fn info_hash(&self) -> String {
        self.driver.borrow().info_hash().to_hex()
    }

    /// A magnet link for this torrent with its name and trackers.
    pub fn magnet(&self) -> String {
        let d = self.driver.borrow();
        let mut magnet = Magnet::new(d.info_hash());
        magnet.display_name = d.info().map(|i| i.name.clone());
        magnet.trackers = d.trackers();
        magnet.to_uri()
    }

    /// The `.torrent` file, once the metadata is known.
    #[wasm_bindgen(js_name = torrentFile)]
    pub fn torrent_file(&self) -> Option<Uint8Array> {
        let d = self.driver.borrow();
        let mut meta = Metainfo::from_info_bytes(d.info_bytes()?).ok()?;
        meta.trackers = d.trackers().into_iter().map(|t| vec![t]).collect();
        Some(Uint8Array::from(meta.to_torrent_bytes().as_slice()))
    }

    /// `[{ index, name, path, length, offset }]` (empty until the metadata is known); BEP 47
    /// padding files are left out.
    pub fn files(&self) -> JsValue {
        let d = self.driver.borrow();
        let list = Array::new();
        if let Some(info) = d.info() {
            for (index, file) in info.files.iter().enumerate().filter(|(_, f)| !f.padding) {
                let entry = js_sys::Object::new();
                let name = file.path.last().cloned().unwrap_or_default();
                let _ = Reflect::set(&entry, &"index".into(), &(index as u32).into());
                let _ = Reflect::set(&entry, &"name".into(), &name.into());
                let _ = Reflect::set(&entry, &"path".into(), &file.path.join("/").into());
                let _ = Reflect::set(&entry, &"length".into(), &(file.length as f64).into());
                let _ = Reflect::set(&entry, &"offset".into(), &(file.offset as f64).into());
                list.push(&entry);
            }
        }
        list.into()
    }

    /// Progress and peers; see `Status` in `shoal.d.ts`.
    pub fn status(&self) -> JsValue {
        let status = self.driver.borrow().status();
        serde_wasm_bindgen::to_value(&status).unwrap_or(JsValue::NULL)
    }

    /// The verified pieces as a bitfield (piece 0 is the high bit of byte 0).
    pub fn pieces(&self) -> Uint8Array {
        Uint8Array::from(self.driver.borrow().have().as_bytes())
    }

    /// `listener(name, detail)` for `metadata`, `wire`, `done`.
    #[wasm_bindgen(js_name = setListener)]
    pub fn set_listener(&self, listener: Option<js_sys::Function>) {
        self.driver.borrow_mut().set_listener(listener);
    }

    /// Resolves once the metadata is known (at once for a `.torrent`).
    pub fn ready(&self) -> Promise {
        let weak = Rc::downgrade(&self.driver);
        future_to_promise(async move {
            wait_ready(&weak).await.map_err(|e| JsError::new(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Bytes `start..end` of file `index`, once verified: a `Promise<Uint8Array>`.
    pub fn read(&self, index: u32, start: f64, end: f64) -> Promise {
        let reader = self.create_reader(index);
        future_to_promise(async move {
            let result = reader.read_now(start, end, false).await;
            reader.close();
            result
        })
    }

    /// A reader of file `index` that keeps its place in the torrent's deadlines between
    /// reads (for streaming: what it reads next is fetched first).
    #[wasm_bindgen(js_name = createReader)]
    pub fn create_reader(&self, index: u32) -> WasmReader {
        let id = self.driver.borrow_mut().new_reader();
        WasmReader { driver: Rc::downgrade(&self.driver), id, file: index, closed: false }
    }

    /// Leaves the swarm and drops the data.
    pub fn destroy(&self) {
        let info_hash = self.driver.borrow().info_hash();
        TorrentDriver::dispatch(&self.driver, |d| d.destroy());
        if let Some(client) = self.client.upgrade() {
            client.torrents.borrow_mut().remove(&info_hash);
            client.hub.borrow_mut().remove_torrent(&info_hash);
        }
    }
}

/// A streaming reader of one file; see [`WasmTorrent::create_reader`].
#[wasm_bindgen]
pub struct WasmReader {
    driver: Weak<RefCell<TorrentDriver>>,
    id: ReaderId,
    file: u32,
    closed: bool,
}

#[wasm_bindgen]
impl WasmReader {
    /// Bytes `start..end` of the file (end exclusive, at most 16 MiB at once), waiting for
    /// them to be downloaded and verified.
    pub fn read(&self, start: f64, end: f64) -> Promise {
        let reader =
            WasmReader { driver: self.driver.clone(), id: self.id, file: self.file, closed: false };
        future_to_promise(async move { reader.read_now(start, end, false).await })
    }

    /// Some of bytes `start..end`: as soon as the piece under `start` is verified, the bytes
    /// from there that are verified in a row (at least one, at most `end - start`). What a
    /// stream to a media element wants: the demuxer starts on the first piece rather than
    /// waiting for a whole chunk behind a slow seeder.
    #[wasm_bindgen(js_name = readSome)]
    pub fn read_some(&self, start: f64, end: f64) -> Promise {
        let reader =
            WasmReader { driver: self.driver.clone(), id: self.id, file: self.file, closed: false };
        future_to_promise(async move { reader.read_now(start, end, true).await })
    }

    /// Frees the reader's place in the deadlines.
    pub fn close(mut self) {
        self.closed = true;
        if let Some(rc) = self.driver.upgrade() {
            let id = self.id;
            TorrentDriver::dispatch(&rc, move |d| d.remove_reader(id));
        }
    }
}

impl WasmReader {
    async fn read_now(&self, start: f64, end: f64, partial: bool) -> Result<JsValue, JsValue> {
        if !(start >= 0.0 && end >= start && end.is_finite()) {
            return Err(JsError::new("read(start, end) needs 0 <= start <= end").into());
        }
        wait_ready(&self.driver).await.map_err(|e| JsError::new(&e))?;
        let (file_offset, file_len) = {
            let rc = self.driver.upgrade().ok_or_else(|| JsError::new("the torrent is gone"))?;
            let d = rc.borrow();
            let info = d.info().ok_or_else(|| JsError::new("no metadata"))?;
            let file = info
                .files
                .get(self.file as usize)
                .ok_or_else(|| JsError::new(&format!("no file {} in this torrent", self.file)))?;
            (file.offset, file.length)
        };
        let (start, end) = (start as u64, (end as u64).min(file_len));
        if start >= end {
            return Ok(Uint8Array::new_with_length(0).into());
        }
        if end - start > MAX_READ {
            return Err(JsError::new("read at most 16 MiB at once").into());
        }
        let read =
            ReadRequest { offset: file_offset + start, len: (end - start) as usize, partial };
        let file_end = file_offset + file_len;
        loop {
            let rc = self.driver.upgrade().ok_or_else(|| JsError::new("the torrent is gone"))?;
            let step = rc
                .borrow_mut()
                .try_read(self.id, read, file_end, DEFAULT_READAHEAD)
                .map_err(|e| JsError::new(&e))?;
            drop(rc);
            match step {
                Ok(bytes) => return Ok(Uint8Array::from(bytes.as_slice()).into()),
                Err(woken) => {
                    let _ = woken.await;
                }
            }
        }
    }
}

async fn wait_ready(driver: &Weak<RefCell<TorrentDriver>>) -> Result<(), String> {
    loop {
        let rc = driver.upgrade().ok_or("the torrent is gone")?;
        let waiter = {
            let mut d = rc.borrow_mut();
            if d.is_destroyed() {
                return Err("the torrent was destroyed".into());
            }
            if d.info().is_some() && d.status().ready {
                return Ok(());
            }
            d.wait()
        };
        drop(rc);
        let _ = waiter.await;
    }
}

fn check_tracker(url: &str) -> Result<(), JsError> {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        Ok(())
    } else {
        Err(JsError::new(&format!("{url}: a browser can only use ws:// and wss:// trackers")))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
