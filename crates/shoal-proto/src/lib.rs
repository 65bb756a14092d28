//! Shoal's sans-IO BitTorrent protocol core.
//!
//! Nothing in this crate touches a socket, a file, a clock or an async runtime: state machines
//! are fed events (bytes from a peer, a timer, a verified piece) with the current time passed
//! in, and produce actions for a driver to carry out. The same core runs under the native tokio
//! driver, in the browser (wasm32) and in the deterministic simulation.

pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod create;
pub mod eviction;
pub mod extension;
pub mod lsd;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod mse;
pub mod peer;
pub mod peer_book;
pub mod percent;
pub mod picker;
pub mod piece_sizes;
pub mod rate;
pub mod streaming;
pub mod time;
pub mod torrent;
pub mod types;
pub mod utp;
pub mod webseed;
pub mod wire;

pub use bitfield::Bitfield;
pub use piece_sizes::PieceSizes;
pub use time::Instant;
pub use types::{InfoHash, PeerId, PeerKey, PeerSource};
