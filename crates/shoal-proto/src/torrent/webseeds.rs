//! Web seeds (BEP 19) in the torrent: an HTTP server is a source that has every piece and
//! never chokes. It has a `PeerKey` of its own, so the picker's bookkeeping (who has which
//! block requested, who contributed to a piece that failed its hash) works unchanged; it is
//! not in `peers` and sends no messages.
//!
//! A seed gets runs of contiguous blocks from the picker ([`Picker::pick_run`]), which become
//! [`Action::FetchWebSeed`]; the driver carries out the HTTP requests (see [`crate::webseed`])
//! and answers with [`Torrent::on_web_seed_data`] or [`Torrent::on_web_seed_failed`]. The data
//! goes through the same write and verify path as blocks from peers.
//!
//! A fetch that stopped being useful is cancelled ([`Action::CancelWebSeed`]): every block of
//! it arrived from peers first, or (while streaming, with peers serving us) none of its pieces
//! is critical and connected peers have them all. The driver stops the transfer and answers
//! [`Torrent::on_web_seed_cancelled`] with the bytes that had arrived; whole blocks among them
//! are kept, the rest go back to the pool.
//!
//! Policy: with no peer serving us, a seed gets [`PIPELINE`] runs in flight (full speed from a
//! server, pipelined), each about a second of its measured rate (1 MiB until measured, at most
//! [`MAX_RUN_BYTES`]), so a slow seed does not sit on pieces that peers joining a moment later
//! could bring sooner; while peers serve us, one short run, so
//! the swarm keeps pieces to trade and the server's bandwidth is spared. One more slot is kept
//! for pieces readers wait for, which come first.
//!
//! A viewer spares the server further, since the server's bytes are the ones no peer can
//! spread. With [`TorrentConfig::web_seed_grace`] set (the tab), it asks the server only for
//! the nearest piece its reader is about to stall on, a piece at a time (or
//! [`NEAREST_FETCH_BYTES`] of small pieces): for that long after
//! the start, then until its first reader comes and a peer with pieces it wants connects (at
//! most [`READER_PATIENCE`]), and whenever connected peers with what it wants do not deliver
//! (a plain streaming client then asks for all its critical pieces). Once peers serve a
//! streaming viewer: only pieces no connected peer has and the nearest critical piece still
//! to arrive. In the simulated crowd of `benches/crowd.py` (six tabs,
//! `crates/shoal-sim/tests/crowd.rs`) the server sends 0.3 of the video instead of 0.9-1.4,
//! and the tabs start sooner.
//!
//! Failures back off (5 s doubling to 5 min);
//! a seed whose data fails the hash check [`MAX_HASH_FAILURES`] times is disabled, and a piece
//! that failed from one seed is not asked of it again while another source may have it.
//!
//! [`Picker::pick_run`]: crate::picker::Picker::pick_run
//! [`TorrentConfig::web_seed_grace`]: super::TorrentConfig::web_seed_grace

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use super::{Action, Torrent};
use crate::metainfo::MAX_WEB_SEEDS;
use crate::peer::RateMeter;
use crate::picker::BlockOutcome;
use crate::time::Instant;
use crate::types::PeerKey;
use crate::webseed::{self, FetchEnd, FetchPlan, WebSeedError};
use crate::wire::BlockRef;

/// Largest run one fetch asks for when no peer serves us.
pub const MAX_RUN_BYTES: u64 = 4 << 20;
/// Runs while peers serve us or a reader streams: short, so they neither take the swarm's
/// pieces away nor delay a seek.
pub const SHARED_RUN_BYTES: u64 = 1 << 20;
/// Shortest run once a seed's rate is known: a slow seed's runs cover about a second of its
/// rate, so it holds few pieces peers could fetch sooner.
pub const MIN_RUN_BYTES: u64 = 256 << 10;
/// What a viewer asks the server for in one fetch while it leaves the rest to its peers: the
/// nearest critical piece still to arrive and, when pieces are smaller than this, the critical
/// pieces right after it up to this size; two such fetches may be in flight. A fetch costs a
/// round trip (half a second in a busy tab): one 16 KiB piece at a time streams slower than a
/// 1 Mbit/s video plays, and one 64 KiB fetch at a time just as fast, so a tab whose peers
/// did not deliver yet stalled.
pub const NEAREST_FETCH_BYTES: u64 = 64 << 10;
/// Fetches of [`NEAREST_FETCH_BYTES`] a viewer may have in flight while it leaves the rest to
/// its peers.
const NEAREST_FETCHES: u64 = 2;
/// Fetches in flight per seed when it is the only source.
pub const PIPELINE: usize = 2;
/// Fetches in flight per seed while peers serve us.
pub const SHARED_PIPELINE: usize = 1;
/// A viewer's [`TorrentConfig::web_seed_grace`]: how long its web seeds fetch only the
/// pieces its player stalls on (critical ones) after the torrent starts. A viewer who joins a
/// swarm gets the rest from peers, whom the origin's spreading steers to send each piece
/// once, instead of from a server that would send every viewer the same bytes. A second: a
/// WebRTC peer answers within it on a good network, and the critical pieces cover the first
/// frame meanwhile.
///
/// [`TorrentConfig::web_seed_grace`]: super::TorrentConfig::web_seed_grace
pub const VIEWER_WEB_SEED_GRACE: Duration = Duration::from_secs(1);
/// How long a viewer's web seeds wait for its first reader, and for its first peer with
/// pieces it wants, before they serve it as a download. A tab adds the torrent when its page
/// loads and the player asks for data seconds later (four on a busy machine); in between, six
/// real tabs fetched most of the video from the server as if they were downloading it. Its
/// WebRTC channels take as long to open: six tabs whose early reader (`streamTo`) asked for
/// the file's start at once streamed 0.5-5 MiB each from the server before their peers came.
pub const READER_PATIENCE: Duration = Duration::from_secs(10);
/// A seed whose data failed this many hash checks is not used again.
pub const MAX_HASH_FAILURES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the driver fetches: `plan`'s requests from the seed, assembled into `plan.range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSeedFetch {
    pub seed: PeerKey,
    /// Names this fetch in the answer.
    pub id: u64,
    pub plan: FetchPlan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebSeedState {
    Active,
    /// The last fetch failed; none is started before `until`.
    BackingOff {
        until: Instant,
    },
    /// Too much of its data failed the hash check.
    Disabled,
}

/// One web seed, for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSeedStatus {
    pub key: PeerKey,
    pub url: String,
    pub state: WebSeedState,
    /// Payload bytes it delivered that we kept.
    pub downloaded: u64,
    pub download_rate: u64,
    pub in_flight: usize,
    /// Failed fetches in a row.
    pub failures: u32,
    pub hash_failures: u32,
    /// Why the last fetch failed (cleared by a success), or why it was disabled.
    pub last_error: Option<String>,
}

pub(super) struct WebSeed {
    url: String,
    in_flight: Vec<InFlight>,
    failures: u32,
    retry_at: Option<Instant>,
    hash_failures: u32,
    /// Pieces whose data from this seed failed the hash check.
    bad_pieces: BTreeSet<u32>,
    disabled: bool,
    last_error: Option<String>,
    downloaded: u64,
    rate: RateMeter,
}

struct InFlight {
    id: u64,
    range: Range<u64>,
    blocks: Vec<BlockRef>,
    /// We asked the driver to stop it; its answer (what arrived) is still to come.
    cancelling: bool,
}

impl WebSeed {
    fn new(url: String) -> Self {
        WebSeed {
            url,
            in_flight: Vec::new(),
            failures: 0,
            retry_at: None,
            hash_failures: 0,
            bad_pieces: BTreeSet::new(),
            disabled: false,
            last_error: None,
            downloaded: 0,
            rate: RateMeter::default(),
        }
    }

    fn usable(&self, now: Instant) -> bool {
        !self.disabled && self.retry_at.is_none_or(|t| now >= t)
    }
}

impl Torrent {
    /// Adds a web seed (the torrent's `url-list`, a magnet's `ws=`, or the user's). It starts
    /// fetching once the torrent has started; adding a URL twice returns the same key.
    pub fn add_web_seed(&mut self, now: Instant, url: &str) -> Result<PeerKey, WebSeedError> {
        self.clock = self.clock.max(now);
        webseed::check_url(url)?;
        if let Some((&key, _)) = self.web_seeds.iter().find(|(_, s)| s.url == url) {
            return Ok(key);
        }
        if self.web_seeds.len() >= MAX_WEB_SEEDS {
            return Err(WebSeedError::BadUrl(format!("more than {MAX_WEB_SEEDS} web seeds")));
        }
        let key = self.new_key();
        self.web_seeds.insert(key, WebSeed::new(url.to_owned()));
        self.fill_web_seeds(now);
        Ok(key)
    }

    /// Every web seed and how it fares.
    pub fn web_seeds(&self, now: Instant) -> Vec<WebSeedStatus> {
        self.web_seeds
            .iter()
            .map(|(&key, s)| WebSeedStatus {
                key,
                url: s.url.clone(),
                state: if s.disabled {
                    WebSeedState::Disabled
                } else {
                    match s.retry_at {
                        Some(until) if now < until => WebSeedState::BackingOff { until },
                        _ => WebSeedState::Active,
                    }
                },
                downloaded: s.downloaded,
                download_rate: s.rate.rate(now),
                in_flight: s.in_flight.len(),
                failures: s.failures,
                hash_failures: s.hash_failures,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// Whether a web seed could start a fetch now (not disabled, not backing off).
    pub(super) fn has_usable_web_seed(&self, now: Instant) -> bool {
        self.web_seeds.values().any(|s| s.usable(now))
    }

    pub(super) fn active_web_seeds(&self) -> usize {
        self.web_seeds.values().filter(|s| !s.disabled).count()
    }

    /// The driver fetched `id` from `seed`: `data` is the fetch's whole range.
    pub fn on_web_seed_data(&mut self, now: Instant, seed: PeerKey, id: u64, data: Bytes) {
        self.clock = self.clock.max(now);
        let Some(ws) = self.web_seeds.get_mut(&seed) else { return };
        let Some(pos) = ws.in_flight.iter().position(|f| f.id == id) else { return };
        let expected = ws.in_flight[pos].range.end - ws.in_flight[pos].range.start;
        if data.len() as u64 != expected {
            let error = if data.len() as u64 > expected {
                WebSeedError::TooLong(expected)
            } else {
                WebSeedError::TooShort { got: data.len() as u64, expected }
            };
            return self.on_web_seed_failed(now, seed, id, &error);
        }
        let fetch = ws.in_flight.swap_remove(pos);
        ws.failures = 0;
        ws.retry_at = None;
        ws.last_error = None;
        self.accept_fetched(now, seed, fetch, &data);
        self.fill_web_seeds(now);
    }

    /// How fetch `id` from `seed` ended, whichever way.
    pub fn on_web_seed_end(&mut self, now: Instant, seed: PeerKey, id: u64, end: FetchEnd) {
        match end {
            FetchEnd::Complete(data) => self.on_web_seed_data(now, seed, id, data),
            FetchEnd::Cancelled(prefix) => self.on_web_seed_cancelled(now, seed, id, prefix),
            FetchEnd::Failed(error) => self.on_web_seed_failed(now, seed, id, &error),
        }
    }

    /// The driver stopped fetch `id` as asked ([`Action::CancelWebSeed`]): `prefix` is what had
    /// arrived, from the start of the fetch's range. Its whole blocks are kept, the others go
    /// back to the pool; the seed is not blamed.
    pub fn on_web_seed_cancelled(&mut self, now: Instant, seed: PeerKey, id: u64, prefix: Bytes) {
        self.clock = self.clock.max(now);
        let Some(ws) = self.web_seeds.get_mut(&seed) else { return };
        let Some(pos) = ws.in_flight.iter().position(|f| f.id == id) else { return };
        let fetch = ws.in_flight.swap_remove(pos);
        let expected = fetch.range.end - fetch.range.start;
        let prefix = prefix.slice(..(prefix.len() as u64).min(expected) as usize);
        self.accept_fetched(now, seed, fetch, &prefix);
        self.after_blocks_freed(now);
    }

    /// Keeps the blocks of `fetch` that `data` (from the start of its range) holds whole and
    /// releases the rest.
    fn accept_fetched(&mut self, now: Instant, seed: PeerKey, fetch: InFlight, data: &Bytes) {
        let piece_length = self.info.as_ref().map_or(0, |i| u64::from(i.piece_length));
        let mut missing = Vec::new();
        for block in fetch.blocks {
            let at = u64::from(block.piece) * piece_length + u64::from(block.offset);
            let from = (at - fetch.range.start) as usize;
            let to = from + block.length as usize;
            if to <= data.len() {
                self.accept_web_seed_block(now, seed, block, data.slice(from..to));
            } else {
                if let Some(part) = data.len().checked_sub(from) {
                    self.stats.wasted += part as u64;
                }
                missing.push(block);
            }
        }
        self.release_blocks(seed, &missing);
    }

    fn accept_web_seed_block(&mut self, now: Instant, seed: PeerKey, block: BlockRef, data: Bytes) {
        let Some(picker) = &mut self.picker else { return };
        let len = u64::from(block.length);
        match picker.on_block(block, seed) {
            // Delivered first by a peer (a late critical block duplicated), or the piece was
            // reset meanwhile.
            BlockOutcome::Unwanted => self.stats.wasted += len,
            BlockOutcome::Accepted { cancel, piece_complete } => {
                if let Some(ws) = self.web_seeds.get_mut(&seed) {
                    ws.downloaded += len;
                    ws.rate.record(now, len);
                }
                self.stats.web_seed_downloaded += len;
                self.keep_block(now, block, data, cancel, piece_complete);
            }
        }
    }

    /// The driver could not fetch `id` from `seed`: its blocks go back to the pool and the seed
    /// backs off.
    pub fn on_web_seed_failed(
        &mut self,
        now: Instant,
        seed: PeerKey,
        id: u64,
        error: &WebSeedError,
    ) {
        self.clock = self.clock.max(now);
        let Some(ws) = self.web_seeds.get_mut(&seed) else { return };
        let Some(pos) = ws.in_flight.iter().position(|f| f.id == id) else { return };
        let fetch = ws.in_flight.swap_remove(pos);
        ws.failures += 1;
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (ws.failures - 1).min(16)).min(MAX_BACKOFF);
        ws.retry_at = Some(now + backoff);
        if !ws.disabled {
            ws.last_error = Some(error.to_string());
        }
        self.release_blocks(seed, &fetch.blocks);
        self.after_blocks_freed(now);
    }

    fn release_blocks(&mut self, seed: PeerKey, blocks: &[BlockRef]) {
        if let Some(picker) = &mut self.picker {
            for block in blocks {
                picker.on_unrequest(*block, seed);
            }
        }
    }

    fn after_blocks_freed(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(now, key);
        }
        self.fill_web_seeds(now);
    }

    /// Whether `key` is one of our web seeds.
    pub(super) fn is_web_seed(&self, key: PeerKey) -> bool {
        self.web_seeds.contains_key(&key)
    }

    /// Data from `seed` failed the hash check of `piece`.
    pub(super) fn on_web_seed_bad_piece(&mut self, seed: PeerKey, piece: u32) {
        let Some(ws) = self.web_seeds.get_mut(&seed) else { return };
        ws.hash_failures += 1;
        ws.bad_pieces.insert(piece);
        if ws.hash_failures < MAX_HASH_FAILURES || ws.disabled {
            return;
        }
        ws.disabled = true;
        ws.last_error = Some(format!(
            "disabled: its data failed the hash check of {} pieces",
            ws.hash_failures
        ));
        // Answers still on their way are ignored (their ids are gone).
        let blocks: Vec<BlockRef> = ws.in_flight.drain(..).flat_map(|f| f.blocks).collect();
        self.release_blocks(seed, &blocks);
    }

    /// Starts fetches on every web seed with room, deadline pieces first.
    pub(super) fn fill_web_seeds(&mut self, now: Instant) {
        if !self.started || self.web_seeds.is_empty() {
            return;
        }
        let serving = self
            .peers
            .values()
            .any(|p| !p.peer_choking && p.am_interested && p.download.rate(now) > 0);
        let streaming = self.is_streaming(now);
        let Some(picker) = &self.picker else { return };
        let critical: Vec<u32> =
            picker.deadlines().iter().filter(|d| d.critical).map(|d| d.piece).collect();
        // Peers have not had their moment yet: only the nearest critical pieces (what a reader
        // is about to stall on), so that peers arriving meanwhile take over the rest.
        // A viewer's moment lasts its grace, and then (up to `READER_PATIENCE`) while its
        // player has not asked or no peer with something it wants has connected: a tab's
        // WebRTC channels take seconds to open on a busy machine, and a tab that streamed
        // from the server meanwhile fetched most of the video there.
        let grace = self.config.web_seed_grace;
        let viewer = !grace.is_zero();
        let awaiting_reader = self.first_reader_at.is_none();
        let awaiting_peers = !self.peers.values().any(|p| p.am_interested);
        let in_grace = viewer
            && self.started_at.is_some_and(|t| {
                now < t + grace
                    || ((awaiting_reader || awaiting_peers) && now < t + READER_PATIENCE)
            });
        // Peers that have what we want are connected but do not deliver yet (their channels
        // just opened, or a spreading origin refuses what the audience has): a streaming
        // client asks the server only for critical pieces, so that it plays meanwhile but
        // leaves the rest to the peers. A viewer asks for the nearest ones only, as in its
        // grace: its reader runs ahead of playback (the browser buffers what
        // it can), so the whole critical window would be streamed from the server; and the
        // server's answers take a capped origin's upload from the peer that spreads.
        let peers_waiting = streaming && !serving && !awaiting_peers;
        let nearest_only = in_grace || (viewer && peers_waiting);
        let critical_only = nearest_only || peers_waiting;
        // A viewer whose peers deliver asks the server only for what they cannot bring
        // (`spread.rs`): pieces no connected peer has, and the nearest critical piece still to
        // arrive (its free blocks: what peers were not asked for). A plain download keeps
        // using the server as a mirror.
        let peers_serve = serving && streaming;
        // Made when a seed first has room for a fetch (most calls find none).
        let mut crowded: Option<Vec<bool>> = None;
        let next_critical: Option<u32> = critical.iter().copied().find(|&p| picker.is_to_arrive(p));
        let piece_bytes = self.info.as_ref().map_or(1, |i| u64::from(i.piece_length).max(1));
        let nearest_pieces = (NEAREST_FETCHES * NEAREST_FETCH_BYTES).div_ceil(piece_bytes) as u32;
        let nearest = |p: u32| next_critical.is_some_and(|n| p >= n && p - n < nearest_pieces);
        self.cancel_displaced_fetches(peers_serve, &critical);
        let background_ok = !streaming || self.background_has_headroom(now);
        let (slots, mut run_bytes) =
            if serving { (SHARED_PIPELINE, SHARED_RUN_BYTES) } else { (PIPELINE, MAX_RUN_BYTES) };
        if streaming {
            run_bytes = run_bytes.min(SHARED_RUN_BYTES);
        }
        // A piece that failed from a seed is retried there only when nothing else may have it.
        let retry_bad = self.active_web_seeds() <= 1 && self.peers.is_empty();
        let keys: Vec<PeerKey> = self.web_seeds.keys().copied().collect();
        for key in keys {
            loop {
                let (Some(info), Some(picker)) = (&self.info, &mut self.picker) else { return };
                let Some(ws) = self.web_seeds.get_mut(&key) else { break };
                let busy = ws.in_flight.len();
                // A seed that just failed is probed with one fetch before it gets its pipeline.
                let slots = if ws.failures > 0 { 1 } else { slots };
                let measured = ws.rate.rate(now);
                let mut run = match measured {
                    0 => SHARED_RUN_BYTES,
                    rate => rate.clamp(MIN_RUN_BYTES, MAX_RUN_BYTES),
                }
                .min(run_bytes);
                if nearest_only {
                    run = run.min(u64::from(info.piece_length).max(NEAREST_FETCH_BYTES));
                }
                if !ws.usable(now) || busy > slots {
                    break;
                }
                if peers_serve && crowded.is_none() {
                    let pieces = picker.geometry().piece_count;
                    crowded = Some((0..pieces).map(|p| picker.peers_have(p)).collect());
                }
                let crowded = crowded.as_deref().unwrap_or_default();
                let bad = &ws.bad_pieces;
                let allowed = |p: u32| {
                    (retry_bad || !bad.contains(&p))
                        && (!nearest_only || nearest(p))
                        && (!critical_only || critical.contains(&p))
                        && (!crowded.get(p as usize).copied().unwrap_or(false)
                            || next_critical == Some(p))
                };
                let background = background_ok && busy < slots;
                let blocks = picker.pick_run(now, key, run, background, allowed);
                let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else { break };
                let piece_length = u64::from(info.piece_length);
                let start = u64::from(first.piece) * piece_length + u64::from(first.offset);
                let end = u64::from(last.piece) * piece_length
                    + u64::from(last.offset)
                    + u64::from(last.length);
                let plan = webseed::plan(info, &ws.url, start..end);
                let id = self.next_fetch_id;
                self.next_fetch_id += 1;
                ws.in_flight.push(InFlight { id, range: start..end, blocks, cancelling: false });
                self.actions.push_back(Action::FetchWebSeed(WebSeedFetch { seed: key, id, plan }));
            }
        }
    }

    /// Asks the drivers to stop fetches that bring nothing more: every block of them arrived
    /// from a peer first, or, when `peers_serve` (a streaming viewer whose peers deliver), none
    /// of their pieces is `critical` and connected peers have all of them. An HTTP body comes in
    /// order and cannot skip what arrived elsewhere, so a fetch runs on while any block of it
    /// is still wanted from it.
    fn cancel_displaced_fetches(&mut self, peers_serve: bool, critical: &[u32]) {
        let Some(picker) = &self.picker else { return };
        for (&key, ws) in &mut self.web_seeds {
            for fetch in ws.in_flight.iter_mut().filter(|f| !f.cancelling) {
                let useless = !fetch.blocks.iter().any(|b| picker.is_requested_from(b, key));
                let displaced = peers_serve
                    && fetch
                        .blocks
                        .iter()
                        .all(|b| !critical.contains(&b.piece) && picker.peers_have(b.piece));
                if useless || displaced {
                    fetch.cancelling = true;
                    self.actions.push_back(Action::CancelWebSeed { seed: key, id: fetch.id });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use sha1::{Digest, Sha1};

    use super::*;
    use crate::bitfield::Bitfield;
    use crate::create::TorrentBuilder;
    use crate::metainfo::Metainfo;
    use crate::streaming::{ReaderId, ReaderWindow};
    use crate::torrent::TorrentConfig;
    use crate::types::PeerId;
    use crate::wire::{Handshake, Message};

    /// A torrent with web seeds only, a fake disk that hashes for real, and the fetches the
    /// core asked for (answered by the tests).
    struct Harness {
        t: Torrent,
        content: Vec<u8>,
        piece_length: u64,
        store: Vec<u8>,
        fetches: VecDeque<WebSeedFetch>,
        failed: Vec<u32>,
        completed: bool,
        now: Instant,
        /// Cancels the core asked for, by fetch id.
        cancels: Vec<u64>,
        /// Requests the core sent to peers, not yet answered.
        requests: VecDeque<(PeerKey, BlockRef)>,
    }

    fn at(secs: f64) -> Instant {
        Instant::from_duration(Duration::from_secs_f64(secs))
    }

    impl Harness {
        fn new(len: usize, piece_length: u32, seeds: &[&str]) -> Harness {
            Harness::with_config(len, piece_length, seeds, TorrentConfig::default())
        }

        fn with_config(
            len: usize,
            piece_length: u32,
            seeds: &[&str],
            config: TorrentConfig,
        ) -> Harness {
            let content: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
            let mut hasher = TorrentBuilder::single_file("f.bin", len as u64)
                .unwrap()
                .piece_length(piece_length)
                .start()
                .unwrap();
            hasher.update(&content).unwrap();
            let meta = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
            let count = meta.info.piece_count();
            let mut t = Torrent::new(
                config,
                meta.info_hash,
                PeerId([1; 20]),
                Some(Bytes::from(meta.info_bytes.clone())),
                7,
            )
            .unwrap();
            for url in seeds {
                t.add_web_seed(at(0.0), url).unwrap();
            }
            t.start(at(0.0), &Bitfield::new(count));
            let mut h = Harness {
                t,
                store: vec![0; len],
                content,
                piece_length: u64::from(piece_length),
                fetches: VecDeque::new(),
                failed: Vec::new(),
                completed: false,
                now: at(0.0),
                cancels: Vec::new(),
                requests: VecDeque::new(),
            };
            h.drain();
            h
        }

        fn seed(&self, url: &str) -> PeerKey {
            let all = self.t.web_seeds(self.now);
            all.iter().find(|s| s.url == url).unwrap().key
        }

        fn status(&self, url: &str) -> WebSeedStatus {
            self.t.web_seeds(self.now).into_iter().find(|s| s.url == url).unwrap()
        }

        /// Carries out actions; pieces are hashed at once.
        fn drain(&mut self) {
            let mut verify = VecDeque::new();
            loop {
                while let Some(action) = self.t.poll_action() {
                    match action {
                        Action::WriteBlock { piece, offset, data } => {
                            let at = piece as usize * self.piece_length as usize + offset as usize;
                            self.store[at..at + data.len()].copy_from_slice(&data);
                        }
                        Action::VerifyPiece { piece } => verify.push_back(piece),
                        Action::FetchWebSeed(f) => self.fetches.push_back(f),
                        Action::PieceFailed { piece } => self.failed.push(piece),
                        Action::Completed => self.completed = true,
                        Action::CancelWebSeed { id, .. } => self.cancels.push(id),
                        Action::Send { peer, message: Message::Request(block) } => {
                            self.requests.push_back((peer, block))
                        }
                        _ => {}
                    }
                }
                let Some(piece) = verify.pop_front() else { return };
                let info = self.t.info().unwrap();
                let range = info.piece_range(piece);
                let digest: [u8; 20] =
                    Sha1::digest(&self.store[range.start as usize..range.end as usize]).into();
                let ok = info.piece_hash(piece) == Some(&digest);
                self.t.on_piece_verified(self.now, piece, ok);
            }
        }

        /// The fetch's bytes as a good server sends them, with `corrupt` bytes flipped.
        fn body(&self, f: &WebSeedFetch, corrupt: impl Fn(u64) -> bool) -> Bytes {
            let r = f.plan.range.clone();
            let mut data = self.content[r.start as usize..r.end as usize].to_vec();
            for (i, b) in data.iter_mut().enumerate() {
                if corrupt(r.start + i as u64) {
                    *b ^= 0xff;
                }
            }
            Bytes::from(data)
        }

        fn answer(&mut self, f: &WebSeedFetch, corrupt: impl Fn(u64) -> bool) {
            let body = self.body(f, corrupt);
            self.t.on_web_seed_data(self.now, f.seed, f.id, body);
            self.drain();
        }

        /// Answers every fetch until none is left; `corrupt(seed, offset)` picks wrong bytes.
        fn serve_all(&mut self, corrupt: impl Fn(PeerKey, u64) -> bool) {
            let mut rounds = 0;
            while let Some(f) = self.fetches.pop_front() {
                rounds += 1;
                assert!(rounds < 100, "bounded");
                assert!(f.plan.len() <= MAX_RUN_BYTES);
                self.answer(&f, |at| corrupt(f.seed, at));
                let at_seed = self.fetches.iter().filter(|g| g.seed == f.seed).count();
                assert!(at_seed <= PIPELINE + 1);
            }
        }

        /// A seed connects and unchokes us.
        fn seed_peer(&mut self) -> PeerKey {
            let info_hash = self.t.info_hash();
            let remote = Handshake::new(info_hash, PeerId([9; 20]));
            let key = self
                .t
                .on_incoming(self.now, None, crate::types::PeerSource::WebRtc, &remote)
                .unwrap();
            self.t.on_message(self.now, key, Message::HaveAll);
            self.t.on_message(self.now, key, Message::Unchoke);
            self.drain();
            key
        }

        /// Peers answer every request they were sent.
        fn peers_answer(&mut self) {
            while let Some((peer, block)) = self.requests.pop_front() {
                let at = block.piece as usize * self.piece_length as usize + block.offset as usize;
                let data = Bytes::copy_from_slice(&self.content[at..at + block.length as usize]);
                let piece = Message::Piece { piece: block.piece, offset: block.offset, data };
                self.t.on_message(self.now, peer, piece);
                self.drain();
            }
        }

        fn tick(&mut self, secs: f64) {
            self.now = at(secs);
            self.t.handle_timeout(self.now);
            self.drain();
        }
    }

    #[test]
    fn a_lone_web_seed_fetches_everything_pipelined_front_to_back() {
        let mut h = Harness::new(10 << 20, 256 << 10, &["http://s/f.bin"]);
        assert_eq!(h.fetches.len(), PIPELINE, "two runs in flight at once");
        assert_eq!(h.fetches[0].plan.range, 0..SHARED_RUN_BYTES, "1 MiB until measured");
        assert_eq!(h.fetches[1].plan.range, SHARED_RUN_BYTES..2 * SHARED_RUN_BYTES);
        assert_eq!(h.fetches[0].plan.requests[0].url, "http://s/f.bin");
        // 2 MiB delivered at once: runs grow to a second of that rate.
        for _ in 0..PIPELINE {
            let f = h.fetches.pop_front().unwrap();
            h.answer(&f, |_| false);
        }
        assert!(h.fetches.back().unwrap().plan.len() >= 2 << 20, "{:?}", h.fetches);
        h.serve_all(|_, _| false);
        assert!(h.completed && h.failed.is_empty());
        assert_eq!(h.store, h.content);
        let stats = h.t.stats(h.now);
        assert_eq!(stats.web_seed_downloaded, 10 << 20);
        assert_eq!(stats.web_seeds, 1);
        assert_eq!(h.status("http://s/f.bin").downloaded, 10 << 20);
    }

    #[test]
    fn failures_back_off_and_double() {
        let mut h = Harness::new(1 << 20, 64 << 10, &["http://s/f.bin"]);
        let url = "http://s/f.bin";
        let f = h.fetches.pop_front().unwrap();
        assert!(h.fetches.is_empty(), "the whole 1 MiB torrent is one run");
        h.t.on_web_seed_failed(h.now, f.seed, f.id, &WebSeedError::Status(503));
        h.drain();
        assert!(h.fetches.is_empty(), "no new fetch while backing off");
        assert!(matches!(h.status(url).state, WebSeedState::BackingOff { .. }));
        assert_eq!(h.status(url).last_error.as_deref(), Some("the server answered HTTP 503"));
        h.tick(4.0);
        assert!(h.fetches.is_empty());
        h.tick(5.5);
        let f = h.fetches.pop_front().expect("retried after 5 s");
        h.t.on_web_seed_failed(h.now, f.seed, f.id, &WebSeedError::Transport("reset".into()));
        h.tick(14.0);
        assert!(h.fetches.is_empty(), "the second failure doubled the wait to 10 s");
        h.tick(16.0);
        assert_eq!(h.fetches.len(), 1);
        let f = h.fetches.pop_front().unwrap();
        // A body of the wrong length is a failure too, never written.
        h.t.on_web_seed_data(h.now, f.seed, f.id, Bytes::from_static(b"short"));
        h.drain();
        assert!(h.status(url).last_error.unwrap().contains("ended after 5"));
        h.tick(40.0);
        let f = h.fetches.pop_front().expect("retried after 20 s");
        h.answer(&f, |_| false);
        assert!(h.completed);
        assert_eq!(h.status(url).last_error, None);
        assert_eq!(h.status(url).state, WebSeedState::Active);
    }

    #[test]
    fn a_corrupt_piece_is_refetched_from_another_seed() {
        let (bad, good) = ("http://bad/f.bin", "http://good/f.bin");
        let mut h = Harness::new(2 << 20, 64 << 10, &[bad, good]);
        let bad_key = h.seed(bad);
        // The bad seed's copy has one wrong byte in piece 3.
        h.serve_all(|seed, at| seed == bad_key && at == 3 * (64 << 10) + 5);
        assert_eq!(h.failed, vec![3]);
        assert!(h.completed);
        assert_eq!(h.store, h.content);
        let status = h.status(bad);
        assert_eq!((status.hash_failures, status.state), (1, WebSeedState::Active));
        assert!(h.t.stats(h.now).wasted >= 64 << 10);
    }

    #[test]
    fn a_seed_that_keeps_failing_hash_checks_is_disabled() {
        let (bad, good) = ("http://bad/f.bin", "http://good/f.bin");
        let mut h = Harness::new(8 << 20, 64 << 10, &[bad, good]);
        let bad_key = h.seed(bad);
        h.serve_all(|seed, at| seed == bad_key && at % (64 << 10) == 0);
        assert!(h.completed);
        assert_eq!(h.store, h.content);
        let status = h.status(bad);
        assert_eq!(status.state, WebSeedState::Disabled);
        assert!(status.last_error.unwrap().contains("hash check"));
        assert_eq!(h.t.stats(h.now).web_seeds, 1);
    }

    #[test]
    fn a_lone_seed_retries_a_failed_piece_until_it_is_disabled() {
        let url = "http://s/f.bin";
        let mut h = Harness::new(64 << 10, 16 << 10, &[url]);
        for _ in 0..MAX_HASH_FAILURES {
            let f = h.fetches.pop_front().expect("retried: no other source");
            h.answer(&f, |at| at == 0);
        }
        assert_eq!(h.status(url).state, WebSeedState::Disabled);
        h.tick(400.0);
        assert!(h.fetches.is_empty() && !h.completed);
    }

    #[test]
    fn readers_deadlines_reach_web_seeds_first() {
        let url = "http://s/f.bin";
        let mut h = Harness::new(16 << 20, 256 << 10, &[url]);
        // The first two runs are under way; a reader jumps to 10 MiB.
        let window = ReaderWindow { position: 10 << 20, end: 16 << 20, readahead: 2 << 20 };
        h.t.set_reader(h.now, ReaderId(1), window);
        h.drain();
        let f = h.fetches.back().unwrap().clone();
        assert_eq!(f.plan.range.start, 10 << 20, "the reserved slot serves the reader at once");
        assert!(f.plan.len() <= SHARED_RUN_BYTES, "short runs while streaming");
        assert_eq!(h.fetches.len(), PIPELINE + 1);
    }

    fn viewer_config() -> TorrentConfig {
        TorrentConfig { web_seed_grace: VIEWER_WEB_SEED_GRACE, ..TorrentConfig::default() }
    }

    fn viewer(len: usize, url: &str) -> Harness {
        let config = viewer_config();
        let mut h = Harness::with_config(len, 256 << 10, &[url], config);
        let window = ReaderWindow { position: 0, end: len as u64, readahead: 8 << 20 };
        h.t.set_reader(h.now, ReaderId(1), window);
        h.drain();
        h
    }

    #[test]
    fn a_viewer_asks_the_server_only_for_the_piece_under_its_reader_while_peers_may_come() {
        let url = "http://s/f.bin";
        let mut h = viewer(16 << 20, url);
        let f = h.fetches.pop_front().expect("the piece the player needs first");
        assert_eq!(f.plan.range, 0..256 << 10, "one piece, not a run");
        assert!(h.fetches.is_empty(), "{:?}", h.fetches);
        h.now = at(0.3);
        h.answer(&f, |_| false);
        let f = h.fetches.pop_front().expect("then the next one under the reader");
        assert_eq!(f.plan.range, 256 << 10..512 << 10);
        assert!(h.fetches.is_empty());
        // Nobody came within the grace, but the tab's peers may take seconds to connect: the
        // server still sends a piece at a time, the one the player needs next.
        h.now = at(1.5);
        h.answer(&f, |_| false);
        h.tick(1.6);
        let f = h.fetches.pop_front().expect("the next piece under the reader");
        assert_eq!(f.plan.range, 512 << 10..768 << 10);
        assert!(h.fetches.is_empty(), "{:?}", h.fetches);
        // Nobody came at all: the server is the only source and gets its pipeline.
        h.tick(READER_PATIENCE.as_secs_f64() + 0.5);
        assert!(h.fetches.len() >= PIPELINE, "{:?}", h.fetches);
    }

    #[test]
    fn a_viewer_asks_for_small_pieces_a_fetch_s_worth_at_a_time_two_at_once() {
        let url = "http://s/f.bin";
        let config = viewer_config();
        let mut h = Harness::with_config(4 << 20, 16 << 10, &[url], config);
        let window = ReaderWindow { position: 0, end: 4 << 20, readahead: 8 << 20 };
        h.t.set_reader(h.now, ReaderId(1), window);
        h.drain();
        let ranges: Vec<Range<u64>> = h.fetches.iter().map(|f| f.plan.range.clone()).collect();
        let step = NEAREST_FETCH_BYTES;
        assert_eq!(ranges, [0..step, step..2 * step], "two fetches of the pieces under the reader");
        h.now = at(0.2);
        let f = h.fetches.pop_front().unwrap();
        h.answer(&f, |_| false);
        let ranges: Vec<Range<u64>> = h.fetches.iter().map(|f| f.plan.range.clone()).collect();
        assert_eq!(ranges, [step..2 * step, 2 * step..3 * step], "then the next ones");
    }

    #[test]
    fn a_viewer_whose_reader_came_first_waits_for_a_peer_with_pieces() {
        let url = "http://s/f.bin";
        let mut h = viewer(16 << 20, url);
        let first = h.fetches.pop_front().expect("the piece the player needs first");
        assert!(h.fetches.is_empty());
        // Its grace is over and a peer with nothing it wants connected: still a piece at a
        // time (a peer with pieces may come any moment).
        h.tick(2.0);
        let info_hash = h.t.info_hash();
        let empty = Handshake::new(info_hash, PeerId([8; 20]));
        let key = h.t.on_incoming(h.now, None, crate::types::PeerSource::WebRtc, &empty).unwrap();
        h.t.on_message(h.now, key, Message::HaveNone);
        h.drain();
        h.tick(2.1);
        assert!(h.fetches.is_empty(), "the first piece is still on its way: {:?}", h.fetches);
        // A seed connects: it brings what is not critical; the server only what a stall waits
        // for, and none of it twice.
        let seed = h.seed_peer();
        h.answer(&first, |_| false);
        let asked: Vec<u32> =
            h.requests.iter().filter(|(p, _)| *p == seed).map(|(_, b)| b.piece).collect();
        assert!(!asked.is_empty());
        for f in &h.fetches {
            assert!(f.plan.range.end <= 1 << 20, "critical pieces only: {:?}", h.fetches);
        }
    }

    #[test]
    fn fetches_peers_took_over_are_cancelled_and_what_arrived_is_kept() {
        let url = "http://s/f.bin";
        let mut h = viewer(8 << 20, url);
        // Nobody came: the server serves it as a download.
        h.tick(READER_PATIENCE.as_secs_f64() + 0.5);
        let queued: Vec<WebSeedFetch> = h.fetches.drain(..).collect();
        assert!(queued.len() >= 2, "{queued:?}");
        let background = queued.iter().find(|f| f.plan.range.start >= 1 << 20).unwrap().clone();
        // A seed joins and delivers: the fetches of pieces it has and no reader stalls on are
        // stopped.
        let seed = h.seed_peer();
        assert!(!h.requests.is_empty() && h.requests.iter().all(|(p, _)| *p == seed));
        h.peers_answer();
        h.tick(READER_PATIENCE.as_secs_f64() + 1.6);
        assert!(h.cancels.contains(&background.id), "{:?} of {queued:?}", h.cancels);
        // The server had sent 40 KiB: two whole blocks are kept, the rest goes to the peer.
        let before = h.t.stats(h.now).web_seed_downloaded;
        let body = h.body(&background, |_| false).slice(..40 << 10);
        h.t.on_web_seed_cancelled(h.now, background.seed, background.id, body);
        h.drain();
        assert_eq!(h.t.stats(h.now).web_seed_downloaded - before, 32 << 10);
        assert_eq!(h.status(url).failures, 0, "a cancel is not the server's fault");
        // Everything else comes from the peer (and the fetch under the reader).
        for _ in 0..64 {
            h.peers_answer();
            for f in std::mem::take(&mut h.fetches).into_iter().chain([queued[0].clone()]) {
                if !h.cancels.contains(&f.id) {
                    h.answer(&f, |_| false);
                }
            }
            h.tick(h.now.since_epoch().as_secs_f64() + 0.5);
            if h.completed {
                break;
            }
        }
        assert!(h.completed && h.failed.is_empty());
        assert_eq!(h.store, h.content);
    }

    #[test]
    fn a_viewer_without_a_reader_leaves_the_server_alone_for_a_while() {
        let url = "http://s/f.bin";
        let config = viewer_config();
        let mut h = Harness::with_config(4 << 20, 256 << 10, &[url], config);
        // The page added the torrent; its player has not asked for anything yet.
        h.tick(5.0);
        assert!(h.fetches.is_empty(), "nothing is urgent: {:?}", h.fetches);
        // The player asks, and no peer came in five seconds: the piece it needs first, and
        // once no peer came in ten, the server is the only source.
        let window = ReaderWindow { position: 0, end: 4 << 20, readahead: 8 << 20 };
        h.t.set_reader(h.now, ReaderId(1), window);
        h.drain();
        assert_eq!(h.fetches.len(), 1, "{:?}", h.fetches);
        assert_eq!(h.fetches[0].plan.range, 0..256 << 10);
        h.tick(READER_PATIENCE.as_secs_f64() + 0.5);
        assert!(h.fetches.len() > PIPELINE, "{:?}", h.fetches);

        // A viewer whose player never comes downloads from the server after a while.
        let config = viewer_config();
        let mut h = Harness::with_config(4 << 20, 256 << 10, &[url], config);
        h.tick(READER_PATIENCE.as_secs_f64() + 1.0);
        assert!(h.fetches.len() >= PIPELINE, "{:?}", h.fetches);
    }
}
