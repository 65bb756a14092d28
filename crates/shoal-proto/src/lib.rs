//! Shoal's sans-IO BitTorrent protocol core.
//!
//! Nothing in this crate touches a socket, a file, a clock or an async runtime: state machines
//! are fed events (bytes from a peer, a timer, a verified piece) with the current time passed
//! in, and produce actions for a driver to carry out. The same core runs under the native tokio
//! driver, in the browser (wasm32) and in the deterministic simulation.

pub mod bencode;
pub mod types;
pub mod time;

pub use types::{InfoHash, PeerId};
pub use time::Instant;
