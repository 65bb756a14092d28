//! Tracker wire types shared by Shoal's tracker clients and its tracker server, sans-IO:
//! HTTP announce and scrape (BEP 3, 7, 23, 48), UDP (BEP 15, with BEP 41 URL data),
//! WebSocket (WebTorrent signalling, [`ws`]), announce-list tiers (BEP 12), the per-torrent
//! announce schedule, and what a torrent's announce says ([`announce_request`]).
//!
//! Nothing here touches a socket or a clock; time is passed in as [`shoal_proto::Instant`].

pub mod announcer;
mod compact;
pub mod http;
pub mod percent;
pub mod tiers;
mod torrent_announce;
pub mod types;
pub mod udp;
pub mod ws;

pub use announcer::{AnnounceJob, Announcer, AnnouncerConfig, TrackerStatus};
pub use tiers::TrackerTiers;
pub use torrent_announce::announce_request;
pub use types::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeResponse, ScrapeStats,
    LEFT_WHEN_UNKNOWN,
};
