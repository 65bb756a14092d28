//! Shoal in the browser: the same sans-IO core as the native engine ([`shoal_proto`]),
//! driven by the page.
//!
//! - [`torrent`]: the driver of one torrent (data channels, store, hashing, readers)
//! - [`conn`], [`framing`], [`rtc`]: one WebRTC peer, the wire protocol as a byte stream over
//!   its data channel, and `RTCPeerConnection` offers and answers without trickle
//! - [`tracker`]: WebSocket trackers (WebTorrent signalling) around the shared `WsClient`
//! - [`webseed`]: HTTP web seeds with `fetch()`, planned by the core
//! - [`store`]: pieces in memory, within a budget, evicted by the native rules
//! - [`seed`]: a torrent of the page's own files, hashed while the page stays responsive
//! - [`api`]: the wasm-bindgen surface that `web/shoal.js` wraps
//!
//! It builds for the host too, so the pure parts (store, framing) are tested with
//! `cargo test`; everything that touches the browser is exercised by the Chromium tests.

pub mod api;
pub mod budget;
pub mod clock;
pub mod conn;
pub mod framing;
pub mod hash;
pub mod offer_pool;
pub mod random;
pub mod rtc;
pub mod seed;
pub mod store;
pub mod timer;
pub mod torrent;
pub mod tracker;
pub mod webseed;

/// A line in the browser console at debug level (hidden unless asked for).
pub(crate) fn log(message: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::debug_1(&message.into());
    #[cfg(not(target_arch = "wasm32"))]
    let _ = message;
}
