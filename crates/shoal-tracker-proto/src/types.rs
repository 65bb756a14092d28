//! What an announce and a scrape carry, whatever the transport (HTTP, UDP, later WebSocket).

use std::net::SocketAddr;
use std::time::Duration;

use shoal_proto::{InfoHash, PeerId};

/// What a client sends as `left` when it does not know the torrent's size yet (a magnet link
/// before the metadata arrived). It must not be 0, or the tracker would count us as a seeder
/// and hand us no seeds; libtorrent sends one block (16 KiB) in this case and we do the same.
pub const LEFT_WHEN_UNKNOWN: u64 = 16 * 1024;

/// Interval used when a tracker's answer does not say (BEP 3 makes `interval` mandatory, but
/// some trackers omit it).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// The shortest re-announce interval we honour: a tracker asking for less would make every
/// client hammer it (and us burn battery).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest interval we honour: past this our peer list would go stale.
pub const MAX_INTERVAL: Duration = Duration::from_secs(4 * 60 * 60);
/// The shortest `min interval` we honour for on-demand announces.
pub const MIN_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// How many peers one announce response may carry before we reject it.
pub const MAX_PEERS: usize = 10_000;
/// How many torrents one scrape may ask about or answer.
pub const MAX_SCRAPE_FILES: usize = 10_000;
/// How long a tracker's warning or failure text may be before we cut it.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// How long a tracker id may be (it is echoed back verbatim on every announce).
pub const MAX_TRACKER_ID_LEN: usize = 256;

/// The `event` of an announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AnnounceEvent {
    /// A regular re-announce.
    #[default]
    None,
    /// The first announce of a session to this tracker.
    Started,
    /// The download just finished (sent once, not when starting as a seeder).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

impl AnnounceEvent {
    /// The value of the HTTP `event` parameter, `None` for a regular announce (no parameter).
    pub fn http_name(self) -> Option<&'static str> {
        match self {
            AnnounceEvent::None => None,
            AnnounceEvent::Started => Some("started"),
            AnnounceEvent::Completed => Some("completed"),
            AnnounceEvent::Stopped => Some("stopped"),
        }
    }
}

/// One announce, as the client means it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// The port we accept peer connections on.
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still to download; `None` when unknown (magnet without metadata), sent as
    /// [`LEFT_WHEN_UNKNOWN`].
    pub left: Option<u64>,
    pub event: AnnounceEvent,
    /// How many peers we would like; `None` lets the tracker choose.
    pub num_want: Option<u32>,
    /// A random value fixed for the session, so the tracker can recognise us when our IP
    /// changes.
    pub key: u32,
    /// Ask for the compact peer list (BEP 23). HTTP only; UDP is always compact.
    pub compact: bool,
    /// The `tracker id` the tracker gave us last time, echoed back (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

impl AnnounceRequest {
    /// A `started`-less regular announce with nothing transferred and the size unknown; set
    /// the remaining fields directly.
    pub fn new(info_hash: InfoHash, peer_id: PeerId, port: u16) -> Self {
        AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: None,
            event: AnnounceEvent::None,
            num_want: None,
            key: 0,
            compact: true,
            tracker_id: None,
        }
    }

    /// The `left` value to put on the wire.
    pub fn left_on_wire(&self) -> u64 {
        self.left.unwrap_or(LEFT_WHEN_UNKNOWN)
    }
}

/// A tracker's successful answer to an announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// How long to wait before the next regular announce (already clamped to sane bounds).
    pub interval: Duration,
    /// The tracker's floor for on-demand announces, if it gave one.
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    /// Peers with the whole torrent (`complete`).
    pub seeders: Option<u32>,
    /// Peers still downloading (`incomplete`).
    pub leechers: Option<u32>,
    pub warning: Option<String>,
    /// To be echoed back on the next announce (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

impl AnnounceResponse {
    /// An answer with no peers and the default interval.
    pub fn empty() -> Self {
        AnnounceResponse {
            interval: DEFAULT_INTERVAL,
            min_interval: None,
            peers: Vec::new(),
            seeders: None,
            leechers: None,
            warning: None,
            tracker_id: None,
        }
    }
}

/// Swarm counts for one torrent, from a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Peers with the whole torrent (`complete`).
    pub seeders: u32,
    /// How many times the tracker saw a `completed` event (`downloaded`).
    pub completed: u32,
    /// Peers still downloading (`incomplete`).
    pub leechers: u32,
}

/// A tracker's answer to a scrape: counts for each torrent it knows, in its order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    pub files: Vec<(InfoHash, ScrapeStats)>,
}

impl ScrapeResponse {
    /// The counts for one torrent, if the tracker reported it.
    pub fn get(&self, info_hash: &InfoHash) -> Option<ScrapeStats> {
        self.files.iter().find(|(h, _)| h == info_hash).map(|(_, s)| *s)
    }
}

/// Clamps a tracker-supplied interval to [`MIN_INTERVAL`, `MAX_INTERVAL`].
pub fn clamp_interval(secs: u64) -> Duration {
    Duration::from_secs(secs).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Clamps a tracker-supplied `min interval`: at least [`MIN_MIN_INTERVAL`], at most the
/// (clamped) regular interval.
pub fn clamp_min_interval(secs: u64, interval: Duration) -> Duration {
    Duration::from_secs(secs).clamp(MIN_MIN_INTERVAL, interval.max(MIN_MIN_INTERVAL))
}

/// Cuts a tracker's message to [`MAX_MESSAGE_LEN`] bytes on a character boundary.
pub(crate) fn bounded_message(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= MAX_MESSAGE_LEN {
        return text.into_owned();
    }
    let mut end = MAX_MESSAGE_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_clamped() {
        assert_eq!(clamp_interval(0), MIN_INTERVAL);
        assert_eq!(clamp_interval(1800), Duration::from_secs(1800));
        assert_eq!(clamp_interval(u64::MAX), MAX_INTERVAL);
        let interval = Duration::from_secs(600);
        assert_eq!(clamp_min_interval(1, interval), MIN_MIN_INTERVAL);
        assert_eq!(clamp_min_interval(120, interval), Duration::from_secs(120));
        assert_eq!(clamp_min_interval(9999, interval), interval);
    }

    #[test]
    fn unknown_left_is_not_zero() {
        let req = AnnounceRequest::new(InfoHash([1; 20]), PeerId([2; 20]), 6881);
        assert_eq!(req.left_on_wire(), LEFT_WHEN_UNKNOWN);
        let req = AnnounceRequest { left: Some(0), ..req };
        assert_eq!(req.left_on_wire(), 0);
    }

    #[test]
    fn messages_are_bounded_on_char_boundaries() {
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let cut = bounded_message(long.as_bytes());
        assert!(cut.len() <= MAX_MESSAGE_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded_message(b"ok"), "ok");
    }
}
