//! What the torrent state machine knows about one connected peer.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::bitfield::Bitfield;
use crate::time::Instant;
use crate::types::{PeerId, PeerKey};
use crate::wire::BlockRef;

/// A byte rate over a sliding window of one-second buckets.
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    /// Completed seconds, oldest first; the last is the second just before `second`.
    buckets: [u64; RATE_BUCKETS],
    /// Bytes in the second numbered `second` (whole seconds since the driver's epoch).
    current: u64,
    second: u64,
    total: u64,
    /// When the first sample arrived: a young meter divides by its age, not the full window,
    /// or a new peer would look several times slower than it is.
    first_sample: Option<Instant>,
}

const RATE_BUCKETS: usize = 5;

impl RateMeter {
    pub fn record(&mut self, now: Instant, bytes: u64) {
        self.first_sample.get_or_insert(now);
        self.roll(now);
        self.current += bytes;
        self.total += bytes;
    }

    /// Bytes per second over the last `RATE_BUCKETS` seconds plus the current partial one.
    pub fn rate(&self, now: Instant) -> u64 {
        let Some(first) = self.first_sample else { return 0 };
        let age = now.since_epoch().as_secs().saturating_sub(self.second) as usize;
        if age > RATE_BUCKETS {
            return 0;
        }
        // `current` is `age` seconds old; buckets older than the window fall out as time passes.
        let kept: u64 =
            self.buckets.iter().rev().take(RATE_BUCKETS - age).sum::<u64>() + self.current;
        let window = Duration::from_secs(RATE_BUCKETS as u64)
            + Duration::from_millis(u64::from(now.since_epoch().subsec_millis()));
        let lived = now.saturating_since(first).max(Duration::from_secs(1));
        let span_ms = window.min(lived).as_millis().max(1) as u64;
        kept.saturating_mul(1000) / span_ms
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    fn roll(&mut self, now: Instant) {
        let second = now.since_epoch().as_secs();
        if second == self.second {
            return;
        }
        let steps = second.saturating_sub(self.second).min(RATE_BUCKETS as u64 + 1);
        for _ in 0..steps {
            self.buckets.rotate_left(1);
            self.buckets[RATE_BUCKETS - 1] = self.current;
            self.current = 0;
        }
        self.second = second;
    }
}

/// How a connection came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// Extension ids the peer assigned in its BEP 10 handshake (0 = not supported).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerExtensions {
    pub ut_metadata: u8,
    pub ut_pex: u8,
    pub lt_donthave: u8,
}

/// A block the peer asked us for that we have not sent yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadRequest {
    pub block: BlockRef,
    /// The driver has been asked to read it from storage.
    pub reading: bool,
}

pub struct Peer {
    pub key: PeerKey,
    pub addr: Option<SocketAddr>,
    pub peer_id: PeerId,
    pub direction: Direction,
    pub supports_fast: bool,
    pub supports_extensions: bool,
    pub extensions: PeerExtensions,
    pub client: Option<String>,
    /// Their `reqq`: how many requests they accept queued.
    pub max_requests: u32,
    pub metadata_size: Option<u64>,

    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,

    /// Pieces the peer has; sized once the piece count is known.
    pub has: Bitfield,
    /// True when it has every piece (counted as a seed in the picker's availability).
    pub is_seed: bool,
    /// A bitfield or haves that arrived before we knew the piece count (magnet).
    pub early_bitfield: Option<bytes::Bytes>,
    pub early_haves: Vec<u32>,
    pub early_have_all: bool,
    /// Whether anything past the handshake arrived (a bitfield is only valid first).
    pub got_first_message: bool,

    /// Our requests to the peer, oldest first.
    pub requests: VecDeque<BlockRef>,
    /// How many requests we keep queued at the peer, from its measured rate.
    pub queue_target: u32,
    /// Pieces we may request while choked (BEP 6).
    pub allowed_fast: Vec<u32>,
    /// The peer stopped delivering: it is given a single request at a time until it does.
    pub snubbed: bool,
    pub last_block_at: Instant,

    /// The peer's requests to us.
    pub uploads: VecDeque<UploadRequest>,
    /// Bytes we sent that the peer's transport still holds, as the driver last reported
    /// (plus blocks sent since); see `torrent/uploads.rs`.
    pub send_backlog: u64,

    pub download: RateMeter,
    pub upload: RateMeter,
    pub last_received: Instant,
    pub last_sent: Instant,
    pub connected_at: Instant,
    /// Bytes of blocks the peer sent that we never asked for.
    pub unrequested_bytes: u64,
    /// Requests we cancelled recently: the peer may have sent them before it saw the cancel,
    /// so their arrival is late, not unrequested. Bounded by [`MAX_CANCELLED_REMEMBERED`];
    /// the queue keeps the order for forgetting the oldest, the set makes lookups O(1).
    pub cancelled: VecDeque<BlockRef>,
    pub cancelled_set: HashSet<BlockRef>,
    /// The shortest time from sending a request to receiving its block: a round trip plus the
    /// peer's service time, the floor under any request queue that keeps it busy.
    pub min_latency: Option<Duration>,
    /// Metadata pieces requested from this peer and not answered yet.
    pub metadata_in_flight: u32,
    /// Pieces granted, refused and declined under the spreading rules (`torrent/spread.rs`).
    pub spread: crate::torrent::SpreadState,
    /// Where we learnt of it (set by the torrent when it is added).
    pub source: crate::types::PeerSource,
    /// The port it accepts connections on, from its extended handshake (`p`).
    pub listen_port: Option<u16>,
    /// What peer exchange has told it (`torrent/pex.rs`).
    pub pex: crate::torrent::PexSent,
}

impl Peer {
    pub fn new(
        key: PeerKey,
        addr: Option<SocketAddr>,
        peer_id: PeerId,
        direction: Direction,
        now: Instant,
    ) -> Self {
        Peer {
            key,
            addr,
            peer_id,
            direction,
            supports_fast: false,
            supports_extensions: false,
            extensions: PeerExtensions::default(),
            client: None,
            max_requests: DEFAULT_PEER_REQQ,
            metadata_size: None,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            has: Bitfield::new(0),
            is_seed: false,
            early_bitfield: None,
            early_haves: Vec::new(),
            early_have_all: false,
            got_first_message: false,
            requests: VecDeque::new(),
            queue_target: INITIAL_QUEUE_TARGET,
            allowed_fast: Vec::new(),
            snubbed: false,
            last_block_at: now,
            uploads: VecDeque::new(),
            send_backlog: 0,
            download: RateMeter::default(),
            upload: RateMeter::default(),
            last_received: now,
            last_sent: now,
            source: crate::types::PeerSource::Manual,
            listen_port: None,
            pex: crate::torrent::PexSent::default(),
            connected_at: now,
            unrequested_bytes: 0,
            cancelled: VecDeque::new(),
            cancelled_set: HashSet::new(),
            min_latency: None,
            metadata_in_flight: 0,
            spread: Default::default(),
        }
    }

    /// Whether the peer has `piece` (seeds have everything).
    pub fn has_piece(&self, piece: u32) -> bool {
        self.is_seed || self.has.get(piece)
    }

    /// Removes our request for `block` if outstanding. Blocks usually arrive in the order
    /// requested, so the front is checked first.
    pub fn take_request(&mut self, block: &BlockRef) -> bool {
        if self.requests.front() == Some(block) {
            self.requests.pop_front();
            return true;
        }
        match self.requests.iter().position(|r| r == block) {
            Some(i) => {
                self.requests.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether we may send requests now: unchoked, or choked with allowed-fast pieces.
    pub fn can_request(&self) -> bool {
        !self.peer_choking || !self.allowed_fast.is_empty()
    }

    /// Recomputes how deep the request queue should be from the download rate: enough requests
    /// to cover `QUEUE_TIME` of transfer, so the peer never idles waiting for our next request.
    ///
    /// While someone streams, the queue is kept short instead: peers serve requests in order and
    /// most ignore cancels for requests already queued, so every queued byte is waited for by
    /// the next seek. Short means a few round trips ([`Peer::min_latency`]), at least
    /// [`STREAMING_MIN_QUEUE_TIME`] and [`STREAMING_MIN_QUEUE`] blocks.
    pub fn update_queue_target(&mut self, now: Instant, streaming: bool) {
        if self.snubbed {
            self.queue_target = 1;
            return;
        }
        let rate = self.download.rate(now);
        let queue_time = if streaming {
            let trips = self.min_latency.map_or(QUEUE_TIME, |l| l * STREAMING_ROUND_TRIPS);
            trips.clamp(STREAMING_MIN_QUEUE_TIME, QUEUE_TIME)
        } else {
            QUEUE_TIME
        };
        let mut covering =
            (rate as f64 * queue_time.as_secs_f64() / f64::from(crate::picker::BLOCK_SIZE)) as u32;
        if streaming {
            covering = covering.max(STREAMING_MIN_QUEUE);
            if self.download.total() == 0 {
                // Nothing delivered yet: the first block is what playback waits for, and a
                // peer handed many requests at once may read them all before it sends any
                // (WebTorrent in Chromium: 64 requests, first block after 130 ms; 8, 25 ms).
                self.queue_target = STREAMING_FIRST_QUEUE.min(self.max_requests.max(1));
                return;
            }
        }
        let cap = self.max_requests.clamp(1, MAX_QUEUE_TARGET);
        // Until the rate has been measured for a while, keep the initial depth; after that the
        // queue follows the rate down to a small floor, so a slow peer does not sit on seconds
        // of our requests that faster peers could serve.
        let learned = now.saturating_since(self.connected_at) >= RATE_LEARNING_TIME
            && self.download.total() > 0;
        let floor = if learned { MIN_QUEUE_TARGET } else { INITIAL_QUEUE_TARGET };
        self.queue_target = covering.max(floor.min(cap)).min(cap);
    }
}

/// Cancelled requests remembered per peer (the deepest request queue we keep).
pub const MAX_CANCELLED_REMEMBERED: usize = 4 * MAX_QUEUE_TARGET as usize;

impl Peer {
    /// Notes that we cancelled `block`, forgetting the oldest such note when full.
    pub fn remember_cancel(&mut self, block: BlockRef) {
        if !self.cancelled_set.insert(block) {
            return;
        }
        if self.cancelled.len() == MAX_CANCELLED_REMEMBERED {
            if let Some(old) = self.cancelled.pop_front() {
                self.cancelled_set.remove(&old);
            }
        }
        self.cancelled.push_back(block);
    }

    /// Whether `block` was one we cancelled (and forgets it: a block arrives once). The queue
    /// entry stays until it ages out; a stale entry is harmless.
    pub fn take_cancelled(&mut self, block: &BlockRef) -> bool {
        self.cancelled_set.remove(block)
    }

    /// Notes how long a delivered request took.
    pub fn record_latency(&mut self, latency: Duration) {
        self.min_latency = Some(self.min_latency.map_or(latency, |m| m.min(latency)));
    }
}

/// While streaming: request queue in round trips of the peer's latency...
pub const STREAMING_ROUND_TRIPS: u32 = 3;
/// ...but covering at least this long at the peer's rate...
pub const STREAMING_MIN_QUEUE_TIME: Duration = Duration::from_millis(20);
/// ...and at least this many blocks (1 MiB): small enough to wait behind, large enough that
/// a fast peer on a short path is never idle.
pub const STREAMING_MIN_QUEUE: u32 = 64;
/// While streaming, the requests a peer gets before it delivered its first block.
pub const STREAMING_FIRST_QUEUE: u32 = 8;
/// A peer's request queue size when it does not say (`reqq`), as libtorrent assumes.
pub const DEFAULT_PEER_REQQ: u32 = 250;
/// Requests kept queued at a new peer before its rate is known.
pub const INITIAL_QUEUE_TARGET: u32 = 32;
/// The smallest queue once a peer's rate is known: enough to hide one round trip.
pub const MIN_QUEUE_TARGET: u32 = 4;
/// How long a peer's rate is measured before the queue may shrink below the initial depth.
pub const RATE_LEARNING_TIME: Duration = Duration::from_secs(5);
/// Upper bound on requests queued at any one peer.
pub const MAX_QUEUE_TARGET: u32 = 2000;
/// The transfer time the request queue should cover.
pub const QUEUE_TIME: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn rate_meter_tracks_and_decays() {
        let mut m = RateMeter::default();
        for s in 0..5u64 {
            m.record(at(s * 1000), 1000);
        }
        let r = m.rate(at(5000));
        assert!((800..=1000).contains(&r), "rate {r}");
        // The last second still counts after the clock moves past it.
        let mut young = RateMeter::default();
        young.record(at(10_000), 100_000);
        let r = young.rate(at(11_000));
        assert!((90_000..=100_000).contains(&r), "young rate {r}");
        assert_eq!(m.rate(at(20_000)), 0);
        assert_eq!(m.total(), 5000);
    }

    #[test]
    fn queue_target_follows_rate_within_bounds() {
        let mut p = Peer::new(PeerKey(1), None, PeerId([0; 20]), Direction::Outgoing, at(0));
        p.max_requests = 500;
        for ms in (0..5000).step_by(10) {
            p.download.record(at(ms), 160 * 1024); // 16 MB/s
        }
        p.update_queue_target(at(5000), false);
        assert!(
            p.queue_target > INITIAL_QUEUE_TARGET && p.queue_target <= 500,
            "{}",
            p.queue_target
        );
        p.snubbed = true;
        p.update_queue_target(at(5000), false);
        assert_eq!(p.queue_target, 1);
    }

    #[test]
    fn streaming_keeps_the_queue_a_few_round_trips_deep() {
        let mut p = Peer::new(PeerKey(1), None, PeerId([0; 20]), Direction::Outgoing, at(0));
        p.max_requests = 2000;
        for ms in (0..5000).step_by(10) {
            p.download.record(at(ms), 320 * 1024); // 32 MiB/s
        }
        p.update_queue_target(at(5000), false);
        let normal = p.queue_target;
        assert!(normal > 1500, "a second of transfer: {normal}");
        // A short path: the floor of 1 MiB (20 ms at this rate is less).
        p.record_latency(Duration::from_millis(1));
        p.update_queue_target(at(5000), true);
        assert_eq!(p.queue_target, STREAMING_MIN_QUEUE);
        // A long path: three round trips of 100 ms.
        p.min_latency = Some(Duration::from_millis(100));
        p.update_queue_target(at(5000), true);
        assert!((400..=650).contains(&p.queue_target), "{}", p.queue_target);
    }

    #[test]
    fn cancelled_blocks_are_excused_once() {
        let mut p = Peer::new(PeerKey(1), None, PeerId([0; 20]), Direction::Outgoing, at(0));
        let block = |piece| BlockRef { piece, offset: 0, length: 16384 };
        p.remember_cancel(block(1));
        p.remember_cancel(block(1));
        assert!(p.take_cancelled(&block(1)));
        assert!(!p.take_cancelled(&block(1)), "a block arrives once");
        for i in 0..(MAX_CANCELLED_REMEMBERED as u32 + 10) {
            p.remember_cancel(block(i + 10));
        }
        assert!(!p.take_cancelled(&block(10)), "the oldest are forgotten");
        assert!(p.take_cancelled(&block(MAX_CANCELLED_REMEMBERED as u32 + 19)));
        assert!(p.cancelled_set.len() <= MAX_CANCELLED_REMEMBERED);
    }
}
