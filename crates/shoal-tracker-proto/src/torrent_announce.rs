//! What a torrent says when it announces, built from the core's counts: one rule for every
//! driver (native and browser), so trackers hear the same from both. Only where a driver can
//! be reached differs, and it says so through the parameters.

use shoal_proto::torrent::Torrent;
use shoal_proto::Instant;

use crate::types::{AnnounceEvent, AnnounceRequest};

/// The announce `torrent` makes at `now` with `event`.
///
/// - `port`: where we accept peer connections. A browser accepts none (it meets peers through
///   the WebRTC offers a WebSocket tracker relays, and that wire has no port), so it passes 0.
/// - `key`: the session's random announce key, fixed for the torrent's lifetime.
///
/// A `stopped` announce asks for no peers: we are leaving. The peer list is asked for in the
/// compact form (BEP 23) whatever the driver: it only matters on HTTP, and the browser, which
/// speaks WebSocket only, never sends it.
pub fn announce_request(
    torrent: &Torrent,
    now: Instant,
    event: AnnounceEvent,
    port: u16,
    key: u32,
) -> AnnounceRequest {
    let stats = torrent.stats(now);
    AnnounceRequest {
        uploaded: stats.uploaded,
        downloaded: stats.downloaded,
        left: stats.bytes_left,
        event,
        key,
        num_want: (event == AnnounceEvent::Stopped).then_some(0),
        compact: true,
        ..AnnounceRequest::new(torrent.info_hash(), torrent.peer_id(), port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::torrent::TorrentConfig;
    use shoal_proto::{InfoHash, PeerId};

    fn magnet_torrent() -> Torrent {
        let config = TorrentConfig::default();
        Torrent::new(config, InfoHash([7; 20]), PeerId([b'p'; 20]), None, 1).expect("no info")
    }

    #[test]
    fn carries_the_torrent_and_the_driver() {
        let torrent = magnet_torrent();
        let req = announce_request(&torrent, Instant::ZERO, AnnounceEvent::Started, 6881, 42);
        assert_eq!((req.info_hash, req.peer_id), (InfoHash([7; 20]), PeerId([b'p'; 20])));
        assert_eq!((req.port, req.key, req.event), (6881, 42, AnnounceEvent::Started));
        assert_eq!((req.uploaded, req.downloaded), (0, 0));
        assert_eq!(req.left, None, "a magnet without metadata does not know what is left");
        assert!(req.compact);
        assert_eq!(req.num_want, None, "the tracker chooses how many peers");
        assert_eq!(req.tracker_id, None);
    }

    #[test]
    fn a_stop_asks_for_no_peers() {
        let torrent = magnet_torrent();
        let req = announce_request(&torrent, Instant::ZERO, AnnounceEvent::Stopped, 0, 1);
        assert_eq!((req.num_want, req.port), (Some(0), 0));
    }
}
